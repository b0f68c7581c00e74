/*-------------------------------------------------------------------------
 *
 * guid_generator.h
 *		The generator's API: issuing IDs, and the narrow interface through
 *		which the coordinator installs a lease, fences, and raises the
 *		reservation.
 *
 * The generator (extension/generator.c, reservation.c, generator_state.c)
 * owns the shared state word and the durable reservation.  Nothing outside
 * it touches them: backends call GuidNext(); the coordinator worker calls
 * the functions under "Coordinator only".
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_GENERATOR_H
#define GUID_GENERATOR_H

#include "guid.h"

/*
 * How far ahead of need the durable reservation (guid.reservation and its
 * WAL record) is written, in both modes.  After a restart or a promotion
 * the generator starts at most this far ahead of the clock it had, well
 * inside the default guid.max_clock_ahead.  The coordinator rewrites it once
 * less than half of it is left.  (In leased mode the high-water mark in
 * ZooKeeper runs further ahead, sized from the session timeout, and the
 * reservation is extended up to it locally, without ZooKeeper.)
 */
#define GUID_RESERVE_WINDOW_MS	1000

/* How the generator gets its node id, and whether it may issue. */
typedef enum GuidMode
{
	GUID_MODE_UNASSIGNED = 0,	/* no node id: guid.node_id = -1, no
								 * guid.zookeeper */
	GUID_MODE_STANDALONE,		/* guid.node_id set by hand, file reservation */
	GUID_MODE_BROKEN,			/* reservation file unreadable: refuse */
	GUID_MODE_CONNECTING,		/* waiting for a node id lease from ZooKeeper */
	GUID_MODE_LEASED			/* node id leased; valid until the deadline */
} GuidMode;

/*
 * The custom WAL resource manager that carries the reservation to standbys
 * (extension/reservation_wal.c; README.md, "High availability").  An id of
 * PostgreSQL's custom range (128-255): not RM_EXPERIMENTAL_ID (128), which
 * every extension in development shares.
 */
#define GUID_RMGR_ID			187
#define GUID_RMGR_NAME			"guid"

/* guid.status's view of the generator (GeneratorStatus). */
typedef struct GuidGeneratorStatus
{
	GuidMode	mode;
	int32		node;			/* node id of the last issued ID */
	int64		last_ms;		/* millisecond of the last issued ID */
	int64		reserved_ms;	/* the durable high-water millisecond */
	uint64		lease_deadline; /* GuidMonotonicNs() deadline, 0 if none */
	uint64		last_ack;		/* send time of the last answered request */
	int64		issued;
	int64		borrowed_ms;
	int64		clock_steps;
	int64		clock_waits;
	int64		reserve_waits;
	int64		reserve_writes;
	TimestampTz started_at;
	uint64		reservation_sysid;	/* where the reservation was written: */
	uint32		reservation_tli;	/* system identifier, timeline; 0 unknown */
} GuidGeneratorStatus;

/* extension/generator_state.c */
extern void GeneratorInit(void);
extern GuidMode GeneratorMode(void);
extern bool GuidLeaseMode(void);
extern void GeneratorStatus(GuidGeneratorStatus *status);

/* extension/generator.c */
extern guid GuidNext(void);
extern void GuidRequirePrimary(void);

/* extension/reservation_wal.c: register the resource manager (_PG_init) */
extern void ReservationWalInit(void);

/* ----------
 * Coordinator only
 * ----------
 */

/* The worker's latch: backends wake it when the reservation runs short. */
extern void GeneratorAttachWorker(void);

/* Standalone mode: the reservation in guid.reservation (reservation.c). */
extern int64 GuidReservationTarget(void);
extern bool GuidReservationDue(void);
extern int64 GuidLeaseMarkTarget(int window_ms);
extern bool GuidLeaseMarkDue(int64 mark_ms, int low_ms);
extern void GuidKeepLeasedReservation(void);
extern bool GuidRecordLeasedReservation(int32 node, int64 mark_ms, int elevel);
extern bool GuidExtendReservation(int64 need_ms, int elevel);
extern bool GuidWriteReservation(int32 node, int64 reserved_ms, int elevel);
extern void GuidLogStartReservation(void);
extern void GuidSampleClock(void);

/* Leased mode (generator_state.c). */
extern void GuidInstallLease(int32 node, int64 floor_ms, int64 mark_ms,
							 uint64 deadline);
extern void GuidRaiseReservation(int64 mark_ms);
extern void GuidRenewLease(uint64 deadline);
extern void GuidFence(GuidMode mode);
extern int64 GuidSeal(void);
extern uint64 GuidNoteAck(uint64 sent);
extern void GuidNoteReservationWrite(void);
extern int32 GuidLastNode(void);

#endif							/* GUID_GENERATOR_H */
