/*-------------------------------------------------------------------------
 *
 * publisher_int.h
 *		What the files of the audit stream's publisher share, and nothing
 *		else: not for other modules (they use include/guid.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISHER_INT_H
#define PUBLISHER_INT_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

/* Repeat an unchanged error or the retained-WAL warning this often, ms */
#define PUB_WARN_MS				60000

/* coordinator/publisher_settings.c: settings only the publisher reads */
extern char *guid_kafka_properties;
extern char *guid_kafka_properties_file;
extern char *guid_publisher_conninfo;
#ifdef GUID_FAULT_INJECTION
extern char *guid_publisher_test_pause;
#endif

/*
 * coordinator/publisher_status.c: every write of the publisher's figures in
 * guid.status (GuidState->pub)
 */
extern void PubSetState(const char *state);
extern void PubFail(int elevel, const char *fmt,...) pg_attribute_printf(2, 3);
extern void PubClearError(void);
extern void PubAttach(void);
extern void PubDetach(int code, Datum arg);
extern void PubPending(TimestampTz commit_time);
extern void PubPublished(uint64 rows, uint64 xacts, XLogRecPtr lsn,
						 TimestampTz now, double ms);
extern void PubCaughtUp(TimestampTz now);
extern void PubRetrying(void);

#endif							/* PUBLISHER_INT_H */
