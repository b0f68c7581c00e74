/*-------------------------------------------------------------------------
 *
 * guid_lease.h
 *		The node id lease in ZooKeeper.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_LEASE_H
#define GUID_LEASE_H

#include <stdbool.h>
#include <stdint.h>

/* guid.status's view of the lease: the status area "lease". */
#define LEASE_STATUS_AREA		"lease"

typedef struct LeaseStatus
{
	char		state[32];		/* ZooKeeper connection state */
	int64_t		session_id;		/* current ZooKeeper session, 0 if none */
	int			timeout_ms;		/* session timeout granted */
} LeaseStatus;

/* coordinator/lease_worker.c: the coordinator's loop in leased mode */
extern void LeaseWorkerLoop(void);

#endif							/* GUID_LEASE_H */
