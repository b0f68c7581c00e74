/*-------------------------------------------------------------------------
 *
 * generator_state.c
 *		The generator's shared state: its settings, its creation at server
 *		start, its mode, the lease API the coordinator drives it with, and
 *		its status snapshot.
 *
 * The generator's state is registered with the core's shared-memory
 * registry and created at server start and after every crash-restart
 * (generator_shmem_init, in the postmaster): the mode comes from the
 * settings and the reservation file, and the state word starts above the
 * reservation.  Recovery then raises both to the reservations it replays
 * from the WAL (reservation.c, reservation_wal.c) before any ID is issued.
 *
 * The lease API (worker only): GuidInstallLease starts issuing for a newly
 * leased node id, GuidRenewLease moves the deadline, GuidRaiseReservation
 * publishes a high-water mark made durable in ZooKeeper, GuidFence stops
 * issuing now, GuidSeal (clean shutdown) makes sure of it and says up to
 * which millisecond IDs were issued.  The deadline is written before the mode and read after it
 * (the barriers pair with GuidNext).
 *
 * Locking rules: see generator_int.h; every field is an atomic, written as
 * its comment says.
 *
 * What this file must not do: touch an outside service, or lower the
 * reservation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"

#include "generator_int.h"

/* Backward clock movements smaller than this are not counted as steps:
 * two backends racing between reading the clock and comparing it can see
 * small inversions. */
#define CLOCK_STEP_TOLERANCE_MS	5

GuidShared *GuidState = NULL;

int			guid_max_clock_ahead = 5000;
int			guid_max_clock_wait = 1000;

static void generator_shmem_init(void *area, LWLockPadded *locks);

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

/*
 * GeneratorInit: define the generator's settings and, when preloaded,
 * register its shared state.
 */
void
GeneratorInit(void)
{
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

	GuidShmemRegister("guid", generator_shmem_size, 1, (void **) &GuidState,
					  generator_shmem_init);
}

/*
 * Set up the generator when shared memory is created: at server start and
 * again after every crash-restart.  Runs in the postmaster.
 */
static void
generator_shmem_init(void *area, LWLockPadded *locks)
{
	GuidShared *gs = (GuidShared *) area;
	int64		reserved = 0;
	int32		file_node = 0;
	uint64		file_sysid = 0;
	uint32		file_tli = 0;
	char		err[GUID_ERROR_LEN];
	GuidMode	mode;
	int32		node;
	int			i;

	gs->reserve_lock = &locks[0].lock;
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
	pg_atomic_init_u64(&gs->lease_ceiling, 0);
	gs->started_at = GetCurrentTimestamp();

	if (!GeneratorReadReservation(&reserved, &file_node, &file_sysid, &file_tli,
								  err, sizeof(err)))
	{
		mode = GUID_MODE_BROKEN;
		GuidSetLastError(err);
		ereport(LOG,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("guid: %s; generation is disabled", err),
				 errhint("Restore the file, or remove it only if the wall clock is certainly past every guid this cluster issued.")));
	}
	else if (guid_node_id >= 0)
		mode = GUID_MODE_STANDALONE;
	else if (GuidLeaseConfigured())
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
	/* the WAL may hold more: recovery replays it (reservation_wal.c) */
	pg_atomic_init_u64(&gs->reserved_ms, (uint64) reserved);
	pg_atomic_init_u64(&gs->res_sysid, file_sysid);
	pg_atomic_init_u32(&gs->res_tli, file_tli);
	pg_atomic_init_u32(&gs->mode, (uint32) mode);
}

/* GeneratorMode: how the generator gets its node id (see GuidMode). */
GuidMode
GeneratorMode(void)
{
	return (GuidMode) pg_atomic_read_u32(&GuidState->mode);
}

/* GuidLeaseMode: true when node ids come from ZooKeeper. */
bool
GuidLeaseMode(void)
{
	GuidMode	mode = (GuidMode) pg_atomic_read_u32(&GuidState->mode);

	return mode == GUID_MODE_CONNECTING || mode == GUID_MODE_LEASED;
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

/*
 * GeneratorStatus: a snapshot of the generator for guid.status.  Each field
 * is an atomic read: near-instant, not consistent.
 */
void
GeneratorStatus(GuidGeneratorStatus *status)
{
	GuidShared *gs = GuidState;
	uint64		state = pg_atomic_read_u64(&gs->state);
	int64		issued = (int64) pg_atomic_read_u64(&gs->issued_other);
	int			i;

	for (i = 0; i < gs->nslots; i++)
		issued += (int64) pg_atomic_read_u64(&gs->counters[i].issued);

	status->mode = (GuidMode) pg_atomic_read_u32(&gs->mode);
	status->node = GuidStateNode(state);
	status->last_ms = GuidStateMs(state);
	status->reserved_ms = (int64) pg_atomic_read_u64(&gs->reserved_ms);
	status->lease_deadline = pg_atomic_read_u64(&gs->lease_deadline);
	status->last_ack = pg_atomic_read_u64(&gs->last_ack);
	status->issued = issued;
	status->borrowed_ms = (int64) pg_atomic_read_u64(&gs->borrowed_ms);
	status->clock_steps = (int64) pg_atomic_read_u64(&gs->clock_steps);
	status->clock_waits = (int64) pg_atomic_read_u64(&gs->clock_waits);
	status->reserve_waits = (int64) pg_atomic_read_u64(&gs->reserve_waits);
	status->reserve_writes = (int64) pg_atomic_read_u64(&gs->reserve_writes);
	status->started_at = gs->started_at;
	status->reservation_sysid = pg_atomic_read_u64(&gs->res_sysid);
	status->reservation_tli = pg_atomic_read_u32(&gs->res_tli);
}

/* Stop advertising the worker's latch on exit. */
static void
generator_detach_worker(int code, Datum arg)
{
	pg_atomic_write_u32(&GuidState->worker_pgprocno, INVALID_PGPROCNO);
}

/*
 * GeneratorAttachWorker: (coordinator only) backends wake this process when
 * the reservation runs short, until it exits.
 */
void
GeneratorAttachWorker(void)
{
	if (GuidState == NULL)
		elog(ERROR, "guid shared memory is not initialised");
	pg_atomic_write_u32(&GuidState->worker_pgprocno, (uint32) MyProc->pgprocno);
	before_shmem_exit(generator_detach_worker, (Datum) 0);
}

/* GeneratorWakeWorker: ask the coordinator to extend the reservation. */
void
GeneratorWakeWorker(void)
{
	uint32		procno = pg_atomic_read_u32(&GuidState->worker_pgprocno);

	if (pg_atomic_read_u32(&GuidState->reserve_wanted) == 0)
		pg_atomic_write_u32(&GuidState->reserve_wanted, 1);
	if (procno != INVALID_PGPROCNO)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* GuidLastNode: the node id of the last issued ID (or the one held last). */
int32
GuidLastNode(void)
{
	return GuidStateNode(pg_atomic_read_u64(&GuidState->state));
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
 * GuidSeal: (worker only, after GuidFence, at a clean shutdown) make sure no
 * ID is issued any more, and return the millisecond of the last one issued.
 * A backend may have passed its lease check just before the fence and not
 * yet swapped the state word: moving the word on by one (a sequence nobody
 * is given) makes that swap fail, and its retry sees the fence.  Every ID
 * issued is therefore at or below the millisecond returned.
 */
int64
GuidSeal(void)
{
	uint64		old = pg_atomic_read_u64(&GuidState->state);

	while (!pg_atomic_compare_exchange_u64(&GuidState->state, &old, old + 1))
		;
	return GuidStateMs(old);
}

/*
 * GuidInstallLease: start issuing IDs for a newly leased node id (worker
 * only).  floor_ms is the id's high-water mark in ZooKeeper: the next ID is
 * above it and above everything this cluster issued before.  mark_ms
 * (> floor_ms) is already durable in ZooKeeper: no ID above it.  The local
 * reservation is extended to cover the floor (up to the mark) before
 * anything is issued.  deadline is the monotonic time until which the
 * session is known to be alive.
 */
void
GuidInstallLease(int32 node, int64 floor_ms, int64 mark_ms, uint64 deadline)
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

	pg_atomic_write_u64(&gs->lease_ceiling, (uint64) mark_ms);
	/* a failure is reported; backends then try again themselves */
	(void) GuidExtendLeasedReservation(Min(GuidReservationTarget(), mark_ms), WARNING);
	pg_atomic_write_u64(&gs->lease_deadline, deadline);
	pg_memory_barrier();
	pg_atomic_write_u32(&gs->mode, (uint32) GUID_MODE_LEASED);
}

/*
 * GuidRaiseReservation: in leased mode, publish a high-water mark the
 * worker has made durable in ZooKeeper: the local reservation may now be
 * extended up to it.  Never lowers it.
 */
void
GuidRaiseReservation(int64 mark_ms)
{
	uint64		old = pg_atomic_read_u64(&GuidState->lease_ceiling);

	while ((int64) old < mark_ms &&
		   !pg_atomic_compare_exchange_u64(&GuidState->lease_ceiling, &old, (uint64) mark_ms))
		;
	GuidKeepLeasedReservation();
}

/*
 * GuidRenewLease: (worker only) an answer from ZooKeeper's leader moved the
 * deadline; it takes effect only while leased.
 */
void
GuidRenewLease(uint64 deadline)
{
	if (pg_atomic_read_u32(&GuidState->mode) == GUID_MODE_LEASED)
		pg_atomic_write_u64(&GuidState->lease_deadline, deadline);
}

/*
 * GuidNoteAck: (worker only) ZooKeeper's leader answered a request sent at
 * sent (GuidMonotonicNs).  Returns the latest such send time.
 */
uint64
GuidNoteAck(uint64 sent)
{
	uint64		last = pg_atomic_read_u64(&GuidState->last_ack);

	if (sent > last)
	{
		pg_atomic_write_u64(&GuidState->last_ack, sent);
		last = sent;
	}
	return last;
}

/* GuidNoteReservationWrite: (worker only) count a mark written to ZooKeeper. */
void
GuidNoteReservationWrite(void)
{
	pg_atomic_fetch_add_u64(&GuidState->reserve_writes, 1);
}
