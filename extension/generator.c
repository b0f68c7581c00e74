/*-------------------------------------------------------------------------
 *
 * generator.c
 *		The lock-free generator: GuidNext(), guid_next(), guid_uuid().
 *
 * One generator per cluster.  Its state is a single 64-bit word in shared
 * memory holding the last issued (node, millisecond, sequence); see
 * generator_int.h.
 * guid_next() never takes a lock on its fast path:
 *
 *	1. wall = now, in milliseconds since the guid epoch; read the word.
 *	2. If wall > ms, the next value is (wall, 0).  Else if seq < 4095 it is
 *	   (ms, seq + 1).  Else (ms + 1, 0): a future millisecond is borrowed.
 *	3. If the next millisecond is more than guid.max_clock_ahead ahead of
 *	   wall, sleep on the latch until the clock catches up; after
 *	   guid.max_clock_wait, raise an error.  A clock that steps backwards is
 *	   therefore absorbed like a burst: no duplicate, and no stall for steps
 *	   within the bound.
 *	4. If the next millisecond is above the durable reservation, extend the
 *	   reservation first (step 5) and start again.
 *	5. Compare-and-swap the word; on conflict start again.
 *
 * A server in recovery never issues (GuidRequirePrimary): a hot standby
 * shares its node id and reservation with its primary.  The check costs a
 * branch on a backend-local flag once recovery has ended.
 *
 * Restart safety: no ID above reserved_ms, the durable reservation, is
 * issued (reservation.c), nor in leased mode above lease_ceiling, the
 * high-water mark durable in ZooKeeper; the reservation is in the WAL
 * before reserved_ms moves, so a promoted standby starts above it too
 * (reservation_wal.c).
 * In leased mode, no ID after the lease deadline (generator_state.c holds
 * the lease API the coordinator calls).
 *
 * Locking rules: state, reserved_ms, mode and the counters are
 * atomics.  reserved_ms only grows, and only after the reservation is
 * durable.  Each backend's issued counter is written only by that backend.
 *
 * What this file must not do: call anything that may block on the fast
 * path, or touch an outside service.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/backendid.h"
#include "storage/latch.h"
#include "utils/uuid.h"
#include "utils/wait_event.h"

#include "generator_int.h"

/* The lease check's margin: a backend may check just before the deadline
 * and issue just after it. */
#define LEASE_CHECK_MARGIN_NS	(UINT64CONST(10) * 1000000)

/* Raise the error for a generator that may not issue IDs. */
static void
generator_refuse(GuidMode mode)
{
	GuidShared *gs = GuidState;
	char		err[GUID_ERROR_LEN];

	GuidGetLastError(err, sizeof(err));

	switch (mode)
	{
		case GUID_MODE_BROKEN:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("guid generation is disabled: the reservation cannot be read"),
					 errdetail("%s.", err),
					 errhint("Restore the file, or remove it only if the wall clock is certainly past every guid this cluster issued.")));
			break;
		case GUID_MODE_CONNECTING:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("guid has no node id lease from ZooKeeper yet"),
					 err[0] ? errdetail("Last ZooKeeper error: %s.", err) : 0,
					 errhint("Check that ZooKeeper is reachable at guid.zookeeper (\"%s\"); guid.status shows the lease.",
							 guid_zookeeper ? guid_zookeeper : "")));
			break;
		case GUID_MODE_LEASED:
			{
				uint64		now = GuidMonotonicNs();
				uint64		ack = pg_atomic_read_u64(&gs->last_ack);

				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
						 errmsg("guid node id lease is fenced: ZooKeeper has not answered for %lld ms",
								(long long) (ack && now > ack ? (now - ack) / 1000000 : 0)),
						 errdetail("Node id %d issues no IDs until ZooKeeper confirms its session, so that the id cannot be used twice.",
								   GuidStateNode(pg_atomic_read_u64(&gs->state))),
						 errhint("Check that ZooKeeper is reachable at guid.zookeeper (\"%s\").",
								 guid_zookeeper ? guid_zookeeper : "")));
			}
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("guid has no node id"),
					 errdetail("guid.node_id is -1 and guid.zookeeper is not set."),
					 errhint("Set guid.node_id to a value between 0 and %d, or set guid.zookeeper to lease one, in postgresql.conf and restart the server.",
							 (int) GUID_MAX_NODE)));
	}
}

/*
 * GuidRequirePrimary: raise an error on a server in recovery (a hot
 * standby).  Recovery never comes back to a process that saw it end, so
 * after the first call that passes this is a test of a local flag.
 */
void
GuidRequirePrimary(void)
{
	static bool primary = false;

	if (likely(primary))
		return;
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("guid cannot issue IDs on a server in recovery"),
				 errdetail("A standby shares its node id and its reservation with its primary: IDs issued here could repeat the primary's."),
				 errhint("Issue IDs on the primary. A standby issues IDs once it is promoted.")));
	primary = true;
}

/*
 * The lease is valid for one more ID.  There is no coarse CLOCK_BOOTTIME:
 * this is a full clock read (in the vDSO, about as cheap as the wall clock
 * read of every call).  The margin errs on the side of refusing.
 */
static inline bool
generator_lease_valid(void)
{
	return GuidMonotonicNs() + LEASE_CHECK_MARGIN_NS <
		pg_atomic_read_u64(&GuidState->lease_deadline);
}

/*
 * Sleep until the clock may have caught up with next_ms, or raise an error
 * once guid.max_clock_wait has passed since *wait_start.
 */
static void
generator_wait_for_clock(int64 next_ms, int64 wall, bool *waiting,
						 instr_time *wait_start)
{
	instr_time	now;
	int64		waited_ms = 0;
	int64		sleep_ms;

	if (!*waiting)
	{
		*waiting = true;
		INSTR_TIME_SET_CURRENT(*wait_start);
		pg_atomic_fetch_add_u64(&GuidState->clock_waits, 1);
	}
	else
	{
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, *wait_start);
		waited_ms = (int64) INSTR_TIME_GET_MILLISEC(now);
	}

	if (waited_ms >= guid_max_clock_wait)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("guid clock is %lld ms ahead of the system clock",
						(long long) (next_ms - wall)),
				 errdetail("guid.max_clock_ahead is %d ms, and the system clock did not catch up within guid.max_clock_wait (%d ms).",
						   guid_max_clock_ahead, guid_max_clock_wait),
				 errhint("The system clock went backwards, or IDs were requested faster than 4096 per millisecond for too long. Check the clock (NTP), or raise guid.max_clock_ahead.")));

	sleep_ms = Min(next_ms - wall - guid_max_clock_ahead,
				   guid_max_clock_wait - waited_ms);
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Max(sleep_ms, 1), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Leased mode: only the worker extends the reservation (in ZooKeeper).  Wake
 * it and sleep briefly; after guid.max_clock_wait, raise an error.
 */
static void
generator_wait_for_worker(int64 next_ms, bool *waiting, instr_time *wait_start)
{
	instr_time	now;

	if (!*waiting)
	{
		*waiting = true;
		INSTR_TIME_SET_CURRENT(*wait_start);
	}
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, *wait_start);
	if (INSTR_TIME_GET_MILLISEC(now) >= guid_max_clock_wait)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("guid reservation was not extended in time"),
				 errdetail("The next ID needs millisecond %lld to be reserved in ZooKeeper and in guid.reservation; it was not within guid.max_clock_wait (%d ms).",
						   (long long) next_ms, guid_max_clock_wait),
				 errhint("Check that ZooKeeper is reachable at guid.zookeeper (\"%s\"); guid.status shows the last error.",
						 guid_zookeeper ? guid_zookeeper : "")));

	GeneratorWakeWorker();
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static inline void
generator_count_issued(void)
{
	if (MyBackendId > 0 && MyBackendId < GuidState->nslots)
	{
		pg_atomic_uint64 *c = &GuidState->counters[MyBackendId].issued;

		/* only this backend writes its slot: no locked instruction needed */
		pg_atomic_write_u64(c, pg_atomic_read_u64(c) + 1);
	}
	else
		pg_atomic_fetch_add_u64(&GuidState->issued_other, 1);
}

/*
 * GuidNext: issue the next guid of this node.  Greater than every guid this
 * node issued before, in any backend, across restarts.  Raises an error
 * rather than risk a duplicate.
 */
guid
GuidNext(void)
{
	GuidShared *gs;
	bool		waiting = false;
	instr_time	wait_start;

	GuidRequirePreloaded();
	GuidRequirePrimary();
	gs = GuidState;
	INSTR_TIME_SET_ZERO(wait_start);

	for (;;)
	{
		uint64		old = pg_atomic_read_u64(&gs->state);
		uint32		mode;
		int64		reserved;
		int64		ceiling = GUID_MAX_MS;
		int64		wall;
		int64		ms = GuidStateMs(old);
		int32		seq = GuidStateSequence(old);
		int64		next_ms;
		int32		next_seq;
		uint64		next;

		/*
		 * The state word before the mode: a swap from this state succeeds
		 * only if nothing moved it (GuidSeal does after a fence), so the mode
		 * seen is at least as recent as that.  Then pairs with the barrier
		 * in GuidInstallLease: mode last, read first.
		 */
		pg_read_barrier();
		mode = pg_atomic_read_u32(&gs->mode);
		pg_read_barrier();
		reserved = (int64) pg_atomic_read_u64(&gs->reserved_ms);
		wall = GuidWallClockMs();
		if (mode == GUID_MODE_LEASED)
		{
			ceiling = (int64) pg_atomic_read_u64(&gs->lease_ceiling);
			if (unlikely(!generator_lease_valid()))
				generator_refuse(GUID_MODE_LEASED);
		}
		else if (unlikely(mode != GUID_MODE_STANDALONE))
			generator_refuse((GuidMode) mode);

		if (wall > ms)
		{
			next_ms = wall;
			next_seq = 0;
		}
		else if (seq < GUID_MAX_SEQUENCE)
		{
			next_ms = ms;
			next_seq = seq + 1;
		}
		else
		{
			next_ms = ms + 1;
			next_seq = 0;
		}

		if (unlikely(next_ms > GUID_MAX_MS))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("guid time space is exhausted"),
					 errdetail("The 41-bit millisecond field of a guid ran out on 2094-09-07.")));

		if (unlikely(next_ms > wall + guid_max_clock_ahead))
		{
			generator_wait_for_clock(next_ms, wall, &waiting, &wait_start);
			continue;
		}

		/*
		 * Above the durable reservation: extend it (in leased mode only up
		 * to the mark durable in ZooKeeper; above that, only the worker can
		 * help).
		 */
		if (unlikely(next_ms > reserved || next_ms > ceiling))
		{
			pg_atomic_fetch_add_u64(&gs->reserve_waits, 1);
			if (mode == GUID_MODE_STANDALONE)
				(void) GuidExtendReservation(next_ms, ERROR);
			else if (next_ms > ceiling || !GuidExtendLeasedReservation(next_ms, ERROR))
				generator_wait_for_worker(next_ms, &waiting, &wait_start);
			continue;
		}

		next = GuidStateMake(GuidStateNode(old), next_ms, next_seq);
		if (!pg_atomic_compare_exchange_u64(&gs->state, &old, next))
			continue;

		if (next_seq == 0 && next_ms > wall)
			pg_atomic_fetch_add_u64(&gs->borrowed_ms, 1);
		if (unlikely(next_ms + GUID_RESERVE_WINDOW_MS / 2 > reserved))
			GeneratorWakeWorker();
		generator_count_issued();
		return GuidFromState(next);
	}
}

PG_FUNCTION_INFO_V1(guid_next);
Datum
guid_next(PG_FUNCTION_ARGS)
{
	PG_RETURN_GUID(GuidNext());
}

/*
 * guid_uuid: an RFC 9562 UUIDv7 built from the next guid.
 *
 *	unix_ts_ms (48)  the guid's millisecond, as Unix time
 *	ver (4) = 7
 *	rand_a (12)      the guid's sequence: a counter (RFC 9562 method 1)
 *	var (2) = 0b10
 *	rand_b (62)      the node id (10 bits), then 52 pseudo-random bits
 *
 * Since guids only grow on a node, so do these UUIDs, across all backends
 * and restarts; the node id keeps them unique across the fleet.
 */
PG_FUNCTION_INFO_V1(guid_uuid);
Datum
guid_uuid(PG_FUNCTION_ARGS)
{
	guid		id = GuidNext();
	uint64		unix_ms = (uint64) (GuidMs(id) + GUID_EPOCH_UNIX_MS);
	uint64		seq = (uint64) GuidSequence(id);
	uint64		hi;
	uint64		lo;
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	int			i;

	hi = (unix_ms << 16) | (UINT64CONST(0x7) << 12) | seq;
	lo = (UINT64CONST(0x2) << 62) |
		((uint64) GuidNode(id) << 52) |
		(pg_prng_uint64(&pg_global_prng_state) & ((UINT64CONST(1) << 52) - 1));

	for (i = 0; i < 8; i++)
	{
		uuid->data[i] = (unsigned char) (hi >> (56 - 8 * i));
		uuid->data[8 + i] = (unsigned char) (lo >> (56 - 8 * i));
	}
	PG_RETURN_UUID_P(uuid);
}
