/*-------------------------------------------------------------------------
 *
 * guid.h
 *		The guid bit layout, its pack/unpack helpers, the shared generator
 *		state, and the prototypes that extension/ and coordinator/ share.
 *
 * Layout of a guid (README.md, "The ID"):
 *
 *	 63  62                              22 21        12 11          0
 *	+---+----------------------------------+------------+-------------+
 *	| 0 | milliseconds since 2025-01-01 UTC |  node (10) | sequence(12)|
 *	+---+----------------------------------+------------+-------------+
 *
 * Bit 63 is always zero, so a guid is a positive int8 and guid order is
 * int8 order.  The 41 bits of milliseconds run out on 2094-09-07.
 *
 * This is the only header shared across folders; nothing here may pull in
 * a client library (ZooKeeper, librdkafka, hiredis).
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_H
#define GUID_H

#include "access/xlogdefs.h"
#include "fmgr.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

/* ----------
 * Bit layout
 * ----------
 */
#define GUID_SEQUENCE_BITS		12
#define GUID_NODE_BITS			10
#define GUID_TIME_BITS			41

#define GUID_MAX_SEQUENCE		((INT64CONST(1) << GUID_SEQUENCE_BITS) - 1)	/* 4095 */
#define GUID_MAX_NODE			((INT64CONST(1) << GUID_NODE_BITS) - 1)	/* 1023 */
#define GUID_MAX_MS				((INT64CONST(1) << GUID_TIME_BITS) - 1)

#define GUID_NODE_SHIFT			GUID_SEQUENCE_BITS	/* 12 */
#define GUID_TIME_SHIFT			(GUID_SEQUENCE_BITS + GUID_NODE_BITS)	/* 22 */

/* The epoch, 2025-01-01 00:00:00 UTC, in Unix milliseconds and in
 * PostgreSQL's microseconds since 2000-01-01. */
#define GUID_EPOCH_UNIX_MS		INT64CONST(1735689600000)
#define GUID_EPOCH_PG_USEC		(INT64CONST(9132) * USECS_PER_DAY)

typedef int64 guid;

#define DatumGetGuid(X)			((guid) DatumGetInt64(X))
#define GuidGetDatum(X)			Int64GetDatum((int64) (X))
#define PG_GETARG_GUID(n)		DatumGetGuid(PG_GETARG_DATUM(n))
#define PG_RETURN_GUID(x)		return GuidGetDatum(x)

static inline guid
GuidPack(int64 ms, int32 node, int32 sequence)
{
	return (ms << GUID_TIME_SHIFT) |
		((int64) node << GUID_NODE_SHIFT) |
		(int64) sequence;
}

static inline int64
GuidMs(guid id)
{
	return id >> GUID_TIME_SHIFT;
}

static inline int32
GuidNode(guid id)
{
	return (int32) ((id >> GUID_NODE_SHIFT) & GUID_MAX_NODE);
}

static inline int32
GuidSequence(guid id)
{
	return (int32) (id & GUID_MAX_SEQUENCE);
}

/* Creation time of a guid-millisecond as a TimestampTz. */
static inline TimestampTz
GuidMsToTimestamp(int64 ms)
{
	return GUID_EPOCH_PG_USEC + ms * 1000;
}

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

/*
 * How far ahead of need the durable reservation is written.  After a restart
 * the generator starts at most this far ahead of the clock it had, well
 * inside the default guid.max_clock_ahead.  The coordinator rewrites it once
 * less than half of it is left.
 */
#define GUID_RESERVE_WINDOW_MS	1000

/* The reservation is kept ahead only while IDs were issued this recently
 * (or a backend asks). */
#define GUID_IDLE_MS			10000

/* ----------
 * Shared memory
 * ----------
 */
typedef enum GuidMode
{
	GUID_MODE_UNASSIGNED = 0,	/* no node id: guid.node_id = -1, no
								 * guid.zookeeper */
	GUID_MODE_STANDALONE,		/* guid.node_id set by hand, file reservation */
	GUID_MODE_BROKEN,			/* reservation file unreadable: refuse */
	GUID_MODE_CONNECTING,		/* waiting for a node id lease from ZooKeeper */
	GUID_MODE_LEASED			/* node id leased; valid until lease_deadline */
} GuidMode;

#define GUID_ERROR_LEN			256

/* One cache line per backend for its issued-IDs counter. */
typedef union GuidBackendCounter
{
	pg_atomic_uint64 issued;	/* written only by the owning backend */
	char		pad[PG_CACHE_LINE_SIZE];
} GuidBackendCounter;

/*
 * The Kafka publisher's figures for guid.status (coordinator/publisher.c).
 * Only the publisher writes them, under pub_mutex.
 */
typedef struct GuidPublisherShared
{
	slock_t		mutex;			/* protects every field below */
	char		state[48];		/* what it is doing; "" when not configured */
	int			pid;			/* the publisher's pid, 0 if none */
	uint64		rows;			/* audit rows committed to Kafka */
	uint64		xacts;			/* PostgreSQL transactions committed to Kafka */
	uint64		commits;		/* Kafka transactions committed */
	XLogRecPtr	published_lsn;	/* end LSN of the last transaction in Kafka:
								 * the checkpoint */
	TimestampTz oldest_pending; /* commit time of the oldest transaction read
								 * but not yet in Kafka; 0 if none */
	TimestampTz caught_up_at;	/* last time nothing was waiting */
	double		commit_ms;		/* duration of the last Kafka commit */
	char		error[GUID_ERROR_LEN];	/* last error, "" once it publishes */
} GuidPublisherShared;

typedef struct GuidShared
{
	/*
	 * The hot word: last issued (node, ms, seq).  Lock-free: read it, compute
	 * the successor, compare-and-swap.  Alone on its cache line.
	 */
	pg_atomic_uint64 state;
	char		pad0[PG_CACHE_LINE_SIZE - sizeof(pg_atomic_uint64)];

	/*
	 * Read on every call, written rarely.  reserved_ms is the durable
	 * high-water millisecond: no ID above it is ever issued.  It is only
	 * raised, under reserve_lock, after the reservation is on disk.
	 */
	pg_atomic_uint64 reserved_ms;
	pg_atomic_uint32 mode;		/* GuidMode; set at startup */
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
	pg_atomic_uint64 reserve_writes;	/* reservation files written */

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

	slock_t		mutex;			/* protects everything below */
	char		last_error[GUID_ERROR_LEN];
	int64		zk_session_id;	/* current ZooKeeper session, 0 if none */
	int			zk_timeout;		/* session timeout granted, ms */
	char		zk_state[32];	/* ZooKeeper connection state, for status */

	GuidPublisherShared pub;	/* the Kafka publisher, its own spinlock */

	int			nslots;			/* size of counters[] */
	GuidBackendCounter counters[FLEXIBLE_ARRAY_MEMBER];
} GuidShared;

/* Attached in every process by the shmem startup hook; NULL when guid is
 * not in shared_preload_libraries. */
extern GuidShared *GuidState;

/* ----------
 * Settings (extension/guid.c owns the definitions)
 * ----------
 */
extern int	guid_node_id;
extern int	guid_max_clock_ahead;	/* ms */
extern int	guid_max_clock_wait;	/* ms */

/* ----------
 * Prototypes
 * ----------
 */

/* extension/generator.c */
extern void GeneratorInit(void);
extern guid GuidNext(void);
extern int64 GuidWallClockMs(void);
extern void GuidSampleClock(void);

/* settings.c: restart-only settings are strict */
extern void GuidSettingsCapture(void);
extern void GuidSettingsEnforce(void);
extern const char *GuidHostPortProblem(const char *value, bool zookeeper);
extern char *GuidReadSecretFile(const char *setting, const char *path, char *err, size_t errlen);
extern void GuidRequirePreloaded(void);
extern bool GuidExtendReservation(int64 need_ms, int elevel);
extern int64 GuidReservationTarget(void);
extern bool GuidReservationDue(void);
extern void GuidSetLastError(const char *msg);

extern bool GuidWriteFileDurably(const char *path, const char *content, int elevel);
extern bool GuidWriteReservation(int32 node, int64 reserved_ms, int elevel);
extern void GuidInstallLease(int32 node, int64 floor_ms, int64 reserved_ms,
							 uint64 deadline);
extern void GuidRaiseReservation(int64 reserved_ms);
extern void GuidFence(GuidMode mode);
extern uint64 GuidMonotonicNs(void);
extern bool GuidLeaseMode(void);

/* coordinator/worker.c */
extern void WorkerInit(void);
extern PGDLLEXPORT void GuidWorkerMain(Datum main_arg);

/* extension/audit.c */
extern void GuidCheckService(const char *service);
extern bool GuidAuditBegin(void);
extern void GuidAuditWrite(const guid *ids, const bool *mine, int n,
						   const char *service, int32 node_id, bool if_absent);

/* extension/idempotent.c */
extern int	guid_idempotency_ttl;
extern void IdempotentInit(void);

/* coordinator/redis_idem.c */
extern char *guid_redis;
extern int	guid_redis_timeout;
extern void RedisInit(void);
extern const char *RedisAddress(void);
typedef enum RedisFailure
{
	REDIS_UNAVAILABLE,			/* not reachable, too slow, or refused for now */
	REDIS_MISCONFIGURED,		/* guid.redis unset or malformed, a bad password */
	REDIS_BAD_VALUE				/* a key holds something that is not a guid */
} RedisFailure;
extern bool RedisSetNxGet(int n, const char **keys, const char **values, int ttl_s,
						  char **existing, RedisFailure *failure, char *err, size_t errlen);

/* coordinator/publisher.c */
extern char *guid_kafka_brokers;
extern char *guid_kafka_topic;
extern char *guid_slot_name;
extern char *guid_database;
extern void PublisherInit(void);
extern bool PublisherConfigured(void);
extern bool GuidSlotPosition(const char *name, XLogRecPtr *confirmed,
							 char *plugin, size_t pluginlen);
extern bool GuidSlotReady(const char *name, Oid *database);
extern PGDLLEXPORT void GuidPublisherMain(Datum main_arg);

/* coordinator/zk_lease.c */
extern char *guid_zookeeper;
extern const char *GuidNamespace(void);
extern void LeaseInit(void);
extern bool LeaseConfigured(void);
extern void LeaseWorkerLoop(void);

#endif							/* GUID_H */
