/*-------------------------------------------------------------------------
 *
 * guid_worker.h
 *		The coordinator's entry points: the init calls _PG_init makes, and
 *		the background workers' main functions.
 *
 * This is all of coordinator/ that extension/ may name (README.md,
 * "Layout"): the workers register themselves and define their settings;
 * everything else they do, they do in their own processes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_WORKER_H
#define GUID_WORKER_H

#include "postgres.h"

/* coordinator/worker.c: the coordinator (reservation, lease) */
extern void WorkerInit(void);
extern PGDLLEXPORT void GuidWorkerMain(Datum main_arg);

/* coordinator/lease_worker.c: the lease's own settings */
extern void LeaseInit(void);

/* coordinator/publisher.c: the Kafka publisher */
extern void PublisherInit(void);
extern PGDLLEXPORT void GuidPublisherMain(Datum main_arg);

#endif							/* GUID_WORKER_H */
