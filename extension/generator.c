/*-------------------------------------------------------------------------
 *
 * generator.c
 *		The shared-memory guid generator: guid_next(), guid_uuid(), and the
 *		durable reservation that keeps it unique across restarts.
 *
 * One generator per cluster.  Its state is a single 64-bit word in shared
 * memory holding the last issued (node, millisecond, sequence); see guid.h.
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
 * Restart safety.  reserved_ms is a high-water millisecond that is on disk
 * (guid.reservation in the data directory, written to a temporary file and
 * moved with durable_rename(), which fsyncs the file and the directory)
 * before any ID at or below it is issued.  At shared-memory initialisation
 * -- server start, and again after a crash when restart_after_crash
 * reinitialises shared memory -- the generator starts above the reservation,
 * whatever the wall clock says: no ID can repeat after a restart, even with
 * the clock behind.
 *
 * The coordinator worker extends the reservation about a second ahead of
 * need (GuidReservationTarget), so backends almost never write it.  A
 * backend that does reach the reservation writes it itself under
 * reserve_lock; it never waits for the worker, so a dead worker costs
 * speed, not availability.
 *
 * Locking rules: state, reserved_ms, mode and the counters are
 * atomics.  reserved_ms only grows, and only under reserve_lock, after the
 * file is durable.  last_error is protected by the spinlock mutex.  Each
 * backend's issued counter is written only by that backend.
 *
 * What this file must not do: call anything that may block on the fast
 * path, or touch an outside service.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "common/pg_prng.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/uuid.h"
#include "utils/wait_event.h"

#include "guid.h"

/* The durable reservation, in the data directory. */
#define RESERVATION_FILE		"guid.reservation"
#define RESERVATION_MAGIC		"guid reservation 1"

/* The lease check's margin: a backend may check just before the deadline
 * and issue just after it. */
#define LEASE_CHECK_MARGIN_NS	(UINT64CONST(10) * 1000000)

/* Backward clock movements smaller than this are not counted as steps:
 * two backends racing between reading the clock and comparing it can see
 * small inversions. */
#define CLOCK_STEP_TOLERANCE_MS	5

GuidShared *GuidState = NULL;

int			guid_node_id = -1;
int			guid_max_clock_ahead = 5000;
int			guid_max_clock_wait = 1000;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void generator_shmem_request(void);
static void generator_shmem_startup(void);
static void generator_wake_worker(void);

/*
 * GeneratorInit: define the generator's settings and, when preloaded,
 * request its shared memory.
 */
void
GeneratorInit(void)
{
	/*
	 * A PGC_POSTMASTER setting can only be defined while preloading; loaded
	 * later, the library has no generator and no use for it.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("guid.node_id",
								gettext_noop("Node id of this cluster (0..1023), or -1 to lease one from ZooKeeper."),
								gettext_noop("Every cluster of a namespace must have a different node id."),
								&guid_node_id,
								-1, -1, (int) GUID_MAX_NODE,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	}

	DefineCustomIntVariable("guid.max_clock_ahead",
							gettext_noop("How far the generator may run ahead of the system clock."),
							gettext_noop("Bursts above 4096 IDs per millisecond and a clock stepping backwards borrow future milliseconds up to this bound."),
							&guid_max_clock_ahead,
							5000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("guid.max_clock_wait",
							gettext_noop("How long guid_next() waits for the system clock before it raises an error."),
							NULL,
							&guid_max_clock_wait,
							1000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = generator_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = generator_shmem_startup;
}

static int
generator_nslots(void)
{
	/* MyBackendId runs from 1 to MaxBackends. */
	return MaxBackends + 1;
}

static Size
generator_shmem_size(void)
{
	return add_size(offsetof(GuidShared, counters),
					mul_size(generator_nslots(), sizeof(GuidBackendCounter)));
}

static void
generator_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(generator_shmem_size());
	RequestNamedLWLockTranche("guid", 1);
}

/*
 * Read the reservation file.  Returns true and sets *reserved_ms and
 * *node_id (0 and 0 when there is no file yet); returns false with a message
 * in err when the file exists but cannot be trusted.
 */
static bool
generator_read_reservation(int64 *reserved_ms, int32 *node_id, char *err, size_t errlen)
{
	FILE	   *file;
	char		buf[256];
	size_t		len;
	int			node;
	long long	ms;
	int			consumed = 0;

	*reserved_ms = 0;
	*node_id = 0;
	file = AllocateFile(RESERVATION_FILE, "r");
	if (file == NULL)
	{
		if (errno == ENOENT)
			return true;
		snprintf(err, errlen, "could not open file \"%s\": %m", RESERVATION_FILE);
		return false;
	}
	len = fread(buf, 1, sizeof(buf) - 1, file);
	FreeFile(file);
	buf[len] = '\0';

	if (sscanf(buf, RESERVATION_MAGIC "\nnode_id %d\nreserved_ms %lld\n%n",
			   &node, &ms, &consumed) != 2 || consumed == 0 ||
		(size_t) consumed != len || ms < 0 || ms > GUID_MAX_MS ||
		node < 0 || node > GUID_MAX_NODE)
	{
		snprintf(err, errlen, "file \"%s\" is corrupt", RESERVATION_FILE);
		return false;
	}
	*reserved_ms = (int64) ms;
	*node_id = node;
	return true;
}

/*
 * GuidWriteFileDurably: replace the file at path (relative to the data
 * directory) with content, crash-safely: write a temporary file, then
 * durable_rename(), which fsyncs it, renames it and fsyncs the directory.
 * Returns true on success; on failure reports at elevel (ERROR does not
 * return).  Callers serialise writes to the same path.
 */
bool
GuidWriteFileDurably(const char *path, const char *content, int elevel)
{
	char		tmp[MAXPGPATH];
	int			len = strlen(content);
	int			fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
		return false;
	}
	errno = 0;
	if (write(fd, content, len) != len)
	{
		int			save_errno = errno ? errno : ENOSPC;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
		return false;
	}
	if (CloseTransientFile(fd) != 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmp)));
		return false;
	}
	return durable_rename(tmp, path, elevel) == 0;
}

/*
 * GuidWriteReservation: write the reservation file: the node id and the
 * highest millisecond it may issue.  Callers serialise (reserve_lock in
 * standalone mode; only the worker writes in leased mode).  Returns true on
 * success; on failure reports at elevel (ERROR does not return).
 */
bool
GuidWriteReservation(int32 node, int64 reserved_ms, int elevel)
{
	char		buf[128];

	snprintf(buf, sizeof(buf), RESERVATION_MAGIC "\nnode_id %d\nreserved_ms %lld\n",
			 node, (long long) reserved_ms);
	return GuidWriteFileDurably(RESERVATION_FILE, buf, elevel);
}

/*
 * Set up the generator when shared memory is created: at server start and
 * again after every crash-restart.  Runs in the postmaster.
 */
static void
generator_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	GuidState = ShmemInitStruct("guid", generator_shmem_size(), &found);
	if (!found)
	{
		GuidShared *gs = GuidState;
		int64		reserved = 0;
		int32		file_node = 0;
		char		err[GUID_ERROR_LEN];
		GuidMode	mode;
		int32		node;

		memset(gs, 0, offsetof(GuidShared, counters));
		gs->reserve_lock = &(GetNamedLWLockTranche("guid"))->lock;
		SpinLockInit(&gs->mutex);
		SpinLockInit(&gs->pub.mutex);
		gs->pub.caught_up_at = GetCurrentTimestamp();
		gs->nslots = generator_nslots();
		for (i = 0; i < gs->nslots; i++)
			pg_atomic_init_u64(&gs->counters[i].issued, 0);
		pg_atomic_init_u64(&gs->issued_other, 0);
		pg_atomic_init_u64(&gs->borrowed_ms, 0);
		pg_atomic_init_u64(&gs->clock_steps, 0);
		pg_atomic_init_u64(&gs->clock_waits, 0);
		pg_atomic_init_u64(&gs->reserve_waits, 0);
		pg_atomic_init_u64(&gs->reserve_writes, 0);
		pg_atomic_init_u32(&gs->worker_pgprocno, INVALID_PGPROCNO);
		pg_atomic_init_u32(&gs->reserve_wanted, 0);
		pg_atomic_init_u64(&gs->lease_deadline, 0);
		pg_atomic_init_u64(&gs->last_ack, 0);
		strlcpy(gs->zk_state, LeaseConfigured() ? "connecting" : "", sizeof(gs->zk_state));
		gs->started_at = GetCurrentTimestamp();

		if (!generator_read_reservation(&reserved, &file_node, err, sizeof(err)))
		{
			mode = GUID_MODE_BROKEN;
			strlcpy(gs->last_error, err, sizeof(gs->last_error));
			ereport(LOG,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("guid: %s; generation is disabled", err),
					 errhint("Restore the file, or remove it only if the wall clock is certainly past every guid this cluster issued.")));
		}
		else if (guid_node_id >= 0)
			mode = GUID_MODE_STANDALONE;
		else if (LeaseConfigured())
			mode = GUID_MODE_CONNECTING;
		else
			mode = GUID_MODE_UNASSIGNED;

		/*
		 * The node id set by hand; when leasing, the id held last, which the
		 * lease tries first.
		 */
		node = guid_node_id >= 0 ? guid_node_id : file_node;

		/*
		 * Every ID issued before has a millisecond at or below the
		 * reservation: pretend the last one was its final sequence, so the
		 * next is above it whatever the clock says.
		 */
		pg_atomic_init_u64(&gs->state,
						   GuidStateMake(node, reserved, (int32) GUID_MAX_SEQUENCE));
		pg_atomic_init_u64(&gs->reserved_ms, (uint64) reserved);
		pg_atomic_init_u32(&gs->mode, (uint32) mode);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * GuidRequirePreloaded: raise the standard error when guid is not in
 * shared_preload_libraries.
 */
void
GuidRequirePreloaded(void)
{
	if (GuidState == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("guid must be loaded via shared_preload_libraries"),
				 errhint("Add guid to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* GuidWallClockMs: the system clock, in milliseconds since the guid epoch. */
int64
GuidWallClockMs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - GUID_EPOCH_UNIX_MS;
}

/*
 * GuidSampleClock: (coordinator only) count a backward step of the system
 * clock for guid.status.
 *
 * A step moves the wall clock against the monotonic clock; drift and slewing
 * move it by microseconds between two samples.  So the worker compares the
 * offset between the two clocks with the one it saw last, and counts a drop
 * of more than CLOCK_STEP_TOLERANCE_MS.  Backends do not count: one that read
 * the clock and was then descheduled would hold an old reading and see a
 * "step" that never happened.  A sample whose two monotonic readings lie
 * more than a millisecond apart (the worker itself was descheduled between
 * them) is not trusted.  The generator never relies on this count.
 */
void
GuidSampleClock(void)
{
	static bool have_offset = false;
	static int64 last_offset_us;
	struct timespec before;
	struct timespec wall;
	struct timespec after;
	int64		before_us;
	int64		after_us;
	int64		offset_us;

	clock_gettime(CLOCK_MONOTONIC, &before);
	clock_gettime(CLOCK_REALTIME, &wall);
	clock_gettime(CLOCK_MONOTONIC, &after);
	before_us = (int64) before.tv_sec * 1000000 + before.tv_nsec / 1000;
	after_us = (int64) after.tv_sec * 1000000 + after.tv_nsec / 1000;
	if (after_us - before_us > 1000)
		return;
	offset_us = (int64) wall.tv_sec * 1000000 + wall.tv_nsec / 1000 - before_us;
	if (have_offset && offset_us < last_offset_us - CLOCK_STEP_TOLERANCE_MS * 1000)
		pg_atomic_fetch_add_u64(&GuidState->clock_steps, 1);
	last_offset_us = offset_us;
	have_offset = true;
}

/* GuidSetLastError: remember msg for guid.status. */
void
GuidSetLastError(const char *msg)
{
	SpinLockAcquire(&GuidState->mutex);
	strlcpy(GuidState->last_error, msg, sizeof(GuidState->last_error));
	SpinLockRelease(&GuidState->mutex);
}

/*
 * GuidReservationTarget: the millisecond a reservation written now should
 * cover: a window beyond both the clock and the last issued millisecond.
 */
int64
GuidReservationTarget(void)
{
	int64		ms = GuidStateMs(pg_atomic_read_u64(&GuidState->state));
	int64		target = Max(ms, GuidWallClockMs()) + GUID_RESERVE_WINDOW_MS;

	return Min(target, GUID_MAX_MS);
}

/*
 * GuidReservationDue: (worker only) should the reservation be extended now?
 * Yes when less than half of its window is left and either a backend asked
 * or IDs were issued in the last GUID_IDLE_MS: an idle cluster writes
 * nothing, a busy one never runs into its reservation.
 */
bool
GuidReservationDue(void)
{
	static uint64 last_state = 0;
	static int64 last_change = 0;
	uint64		state = pg_atomic_read_u64(&GuidState->state);
	int64		wall = GuidWallClockMs();
	int64		used_to = Max(GuidStateMs(state), wall);
	int64		reserved = (int64) pg_atomic_read_u64(&GuidState->reserved_ms);

	if (state != last_state)
	{
		last_state = state;
		last_change = wall;
	}
	if (reserved - used_to >= GUID_RESERVE_WINDOW_MS / 2)
		return false;
	if (pg_atomic_exchange_u32(&GuidState->reserve_wanted, 0) != 0)
		return true;
	return wall - last_change <= GUID_IDLE_MS;
}

/*
 * GuidExtendReservation: make the durable reservation cover need_ms (and a
 * window beyond it).  Returns true when it does; on a write failure reports
 * at elevel and returns false (ERROR does not return).
 */
bool
GuidExtendReservation(int64 need_ms, int elevel)
{
	GuidShared *gs = GuidState;
	bool		ok = true;

	LWLockAcquire(gs->reserve_lock, LW_EXCLUSIVE);
	if ((int64) pg_atomic_read_u64(&gs->reserved_ms) < need_ms)
	{
		int64		target = Max(need_ms, GuidReservationTarget());

		ok = GuidWriteReservation(GuidStateNode(pg_atomic_read_u64(&gs->state)),
								  target, elevel);
		if (ok)
		{
			pg_atomic_write_u64(&gs->reserved_ms, (uint64) target);
			pg_atomic_fetch_add_u64(&gs->reserve_writes, 1);
		}
	}
	LWLockRelease(gs->reserve_lock);
	return ok;
}

/* Raise the error for a generator that may not issue IDs. */
static void
generator_refuse(GuidMode mode)
{
	GuidShared *gs = GuidState;
	char		err[GUID_ERROR_LEN];

	SpinLockAcquire(&gs->mutex);
	strlcpy(err, gs->last_error, sizeof(err));
	SpinLockRelease(&gs->mutex);

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
 * GuidMonotonicNs: CLOCK_BOOTTIME in nanoseconds.  The same clock in every
 * process, it never steps, and unlike CLOCK_MONOTONIC it keeps counting
 * while the machine is suspended: ZooKeeper's clock does not stop either, so
 * a lease deadline counted on CLOCK_MONOTONIC would outlive a suspend.
 * Lease deadlines are counted on it.
 */
uint64
GuidMonotonicNs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64) ts.tv_sec * 1000000000 + ts.tv_nsec;
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

/* GuidLeaseMode: true when node ids come from ZooKeeper. */
bool
GuidLeaseMode(void)
{
	GuidMode	mode = (GuidMode) pg_atomic_read_u32(&GuidState->mode);

	return mode == GUID_MODE_CONNECTING || mode == GUID_MODE_LEASED;
}

/*
 * GuidFence: stop issuing IDs now (worker only): the lease is gone or in
 * doubt.  mode is GUID_MODE_CONNECTING when a new lease is being sought.
 */
void
GuidFence(GuidMode mode)
{
	pg_atomic_write_u64(&GuidState->lease_deadline, 0);
	pg_memory_barrier();
	pg_atomic_write_u32(&GuidState->mode, (uint32) mode);
}

/*
 * GuidInstallLease: start issuing IDs for a newly leased node id (worker
 * only).  floor_ms is the id's high-water mark in ZooKeeper: the next ID is
 * above it and above everything this cluster issued before.  reserved_ms
 * (> floor_ms) is already durable in ZooKeeper; deadline is the monotonic
 * time until which the session is known to be alive.
 */
void
GuidInstallLease(int32 node, int64 floor_ms, int64 reserved_ms, uint64 deadline)
{
	GuidShared *gs = GuidState;
	uint64		old = pg_atomic_read_u64(&gs->state);
	uint64		new;

	GuidFence(GUID_MODE_CONNECTING);
	do
	{
		new = GuidStateMake(node, Max(GuidStateMs(old), floor_ms),
							(int32) GUID_MAX_SEQUENCE);
	} while (!pg_atomic_compare_exchange_u64(&gs->state, &old, new));

	pg_atomic_write_u64(&gs->reserved_ms, (uint64) reserved_ms);
	pg_atomic_write_u64(&gs->lease_deadline, deadline);
	pg_memory_barrier();
	pg_atomic_write_u32(&gs->mode, (uint32) GUID_MODE_LEASED);
}

/*
 * GuidRaiseReservation: in leased mode, publish a reservation the worker
 * has made durable in ZooKeeper.  Never lowers it.
 */
void
GuidRaiseReservation(int64 reserved_ms)
{
	uint64		old = pg_atomic_read_u64(&GuidState->reserved_ms);

	while ((int64) old < reserved_ms &&
		   !pg_atomic_compare_exchange_u64(&GuidState->reserved_ms, &old, (uint64) reserved_ms))
		;
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

	generator_wake_worker();
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

/* Ask the coordinator to extend the reservation, and wake it. */
static void
generator_wake_worker(void)
{
	uint32		procno = pg_atomic_read_u32(&GuidState->worker_pgprocno);

	if (pg_atomic_read_u32(&GuidState->reserve_wanted) == 0)
		pg_atomic_write_u32(&GuidState->reserve_wanted, 1);
	if (procno != INVALID_PGPROCNO)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
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
	gs = GuidState;
	INSTR_TIME_SET_ZERO(wait_start);

	for (;;)
	{
		uint64		old = pg_atomic_read_u64(&gs->state);
		uint32		mode = pg_atomic_read_u32(&gs->mode);
		int64		reserved;
		int64		wall;
		int64		ms = GuidStateMs(old);
		int32		seq = GuidStateSequence(old);
		int64		next_ms;
		int32		next_seq;
		uint64		next;

		/* pairs with the barrier in GuidInstallLease: mode last, read first */
		pg_read_barrier();
		reserved = (int64) pg_atomic_read_u64(&gs->reserved_ms);
		wall = GuidWallClockMs();
		if (mode == GUID_MODE_LEASED)
		{
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

		if (unlikely(next_ms > reserved))
		{
			pg_atomic_fetch_add_u64(&gs->reserve_waits, 1);
			if (mode == GUID_MODE_STANDALONE)
				(void) GuidExtendReservation(next_ms, ERROR);
			else
				generator_wait_for_worker(next_ms, &waiting, &wait_start);
			continue;
		}

		next = GuidStateMake(GuidStateNode(old), next_ms, next_seq);
		if (!pg_atomic_compare_exchange_u64(&gs->state, &old, next))
			continue;

		if (next_seq == 0 && next_ms > wall)
			pg_atomic_fetch_add_u64(&gs->borrowed_ms, 1);
		if (unlikely(next_ms + GUID_RESERVE_WINDOW_MS / 2 > reserved))
			generator_wake_worker();
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
