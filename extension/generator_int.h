/*-------------------------------------------------------------------------
 *
 * generator_int.h
 *		The generator's shared state, private to extension/generator.c,
 *		reservation.c and generator_state.c.
 *
 * Other modules see the generator only through include/guid_generator.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GENERATOR_INT_H
#define GENERATOR_INT_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "guid.h"
#include "guid_core.h"
#include "guid_generator.h"

/* ----------
 * Generator state word
 *
 * The generator keeps the last issued (node, millisecond, sequence) in one
 * 64-bit word so that a single compare-and-swap both claims the next value
 * and proves the node id did not change underneath:
 *
 *	 63 | 62       53 | 52                  12 | 11        0
 *	  0 |  node (10)  |  milliseconds (41)     | sequence (12)
 *
 * Adding one to the word moves to the next sequence and, after 4095, to
 * sequence 0 of the next millisecond: borrowing is a plain increment.
 * ----------
 */
#define GUID_STATE_MS_SHIFT		GUID_SEQUENCE_BITS
#define GUID_STATE_NODE_SHIFT	(GUID_SEQUENCE_BITS + GUID_TIME_BITS)	/* 53 */
#define GUID_STATE_TICK_MASK	((INT64CONST(1) << GUID_STATE_NODE_SHIFT) - 1)

static inline uint64
GuidStateMake(int32 node, int64 ms, int32 sequence)
{
	return ((uint64) node << GUID_STATE_NODE_SHIFT) |
		((uint64) ms << GUID_STATE_MS_SHIFT) |
		(uint64) sequence;
}

static inline int64
GuidStateMs(uint64 state)
{
	return (int64) ((state & GUID_STATE_TICK_MASK) >> GUID_STATE_MS_SHIFT);
}

static inline int32
GuidStateNode(uint64 state)
{
	return (int32) (state >> GUID_STATE_NODE_SHIFT);
}

static inline int32
GuidStateSequence(uint64 state)
{
	return (int32) (state & GUID_MAX_SEQUENCE);
}

static inline guid
GuidFromState(uint64 state)
{
	return GuidPack(GuidStateMs(state), GuidStateNode(state),
					GuidStateSequence(state));
}

/* The reservation is kept ahead only while IDs were issued this recently
 * (or a backend asks). */
#define GUID_IDLE_MS			10000

/* One cache line per backend for its issued-IDs counter. */
typedef union GuidBackendCounter
{
	pg_atomic_uint64 issued;	/* written only by the owning backend */
	char		pad[PG_CACHE_LINE_SIZE];
} GuidBackendCounter;

typedef struct GuidShared
{
	/*
	 * The hot word: last issued (node, ms, seq).  Lock-free: read it, compute
	 * the successor, compare-and-swap.  Alone on its cache line (the registry
	 * aligns every area to one).
	 */
	pg_atomic_uint64 state;
	char		pad0[PG_CACHE_LINE_SIZE - sizeof(pg_atomic_uint64)];

	/*
	 * Read on every call, written rarely.  reserved_ms is the durable
	 * high-water millisecond: no ID above it is ever issued.  It is only
	 * raised after the reservation is on disk (under reserve_lock in
	 * standalone mode; only the worker raises it in leased mode).
	 */
	pg_atomic_uint64 reserved_ms;
	pg_atomic_uint32 mode;		/* GuidMode; set at startup, then only by the
								 * worker */
	pg_atomic_uint32 worker_pgprocno;	/* worker's latch owner, or
										 * INVALID_PGPROCNO; only the worker
										 * writes it */
	pg_atomic_uint32 reserve_wanted;	/* a backend asked the worker to
										 * extend the reservation; set by
										 * backends, cleared by the worker */
	char		pad1[PG_CACHE_LINE_SIZE - 2 * sizeof(pg_atomic_uint64) -
					 3 * sizeof(pg_atomic_uint32)];

	/* Slow-path statistics, atomics. */
	pg_atomic_uint64 issued_other;	/* IDs issued by processes without a
									 * counter slot */
	pg_atomic_uint64 borrowed_ms;	/* times a full millisecond moved to the
									 * next one */
	pg_atomic_uint64 clock_steps;	/* wall clock seen stepping backwards;
									 * only the coordinator adds to it */
	pg_atomic_uint64 clock_waits;	/* calls that waited for the clock */
	pg_atomic_uint64 reserve_waits; /* calls that wrote the reservation
									 * themselves */
	pg_atomic_uint64 reserve_writes;	/* reservations written (files, or
										 * ZooKeeper marks when leased) */

	/*
	 * Where the durable reservation was written (reservation_wal.c):
	 * res_sysid and res_tli are the system identifier and timeline of the
	 * server that wrote it (0 when unknown: no file, or the format of 1.4);
	 * written with the file.  Advisory, for guid.status.
	 */
	pg_atomic_uint64 res_sysid;
	pg_atomic_uint32 res_tli;

	LWLock	   *reserve_lock;	/* serialises reservation writes */
	TimestampTz started_at;		/* set at shared-memory init */

	/*
	 * Lease (leased mode only).  lease_deadline is a CLOCK_BOOTTIME time in
	 * ns after which no ID may be issued; 0 when there is no lease.  Only the
	 * worker writes it; backends check it on every call.
	 */
	pg_atomic_uint64 lease_deadline;
	pg_atomic_uint64 last_ack;	/* GuidMonotonicNs() of the send time of the
								 * last write or sync ZooKeeper's leader
								 * answered; worker writes */
	pg_atomic_uint64 lease_ceiling; /* the high-water mark durable in
									 * ZooKeeper: no ID above it, and the
									 * local reservation (reserved_ms) is
									 * extended up to it only; worker writes
									 * (before mode is set LEASED) */

	int			nslots;			/* size of counters[] */
	GuidBackendCounter counters[FLEXIBLE_ARRAY_MEMBER];
} GuidShared;

/* Attached in every process by the core's shmem startup; NULL when guid is
 * not in shared_preload_libraries. */
extern GuidShared *GuidState;

/* Settings (generator_state.c) */
extern int	guid_max_clock_ahead;	/* ms */
extern int	guid_max_clock_wait;	/* ms */

/* reservation.c */
extern bool GeneratorReadReservation(int64 *reserved_ms, int32 *node_id,
									 uint64 *sysid, uint32 *tli,
									 char *err, size_t errlen);
extern void GeneratorReplayReservation(int64 reserved_ms, uint64 sysid,
									   uint32 tli);

/* reservation_wal.c */
extern void GeneratorLogReservation(int32 node, int64 reserved_ms,
									uint64 sysid, uint32 tli);

/* generator_state.c */
extern void GeneratorWakeWorker(void);
extern bool GuidExtendLeasedReservation(int64 need_ms, int elevel);

#endif							/* GENERATOR_INT_H */
