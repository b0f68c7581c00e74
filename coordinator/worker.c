/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The guid coordinator: a background worker that keeps the generator's
 *		durable reservation ahead of need, and holds the node id lease.
 *
 * Backends issue IDs lock-free up to the reserved high-water millisecond
 * (see extension/generator.c).  The coordinator rewrites the reservation
 * about a second ahead whenever less than half of that window is left and
 * the generator was used recently, so backends almost never write it
 * themselves.  A backend that sees the window running low sets the
 * coordinator's latch; otherwise it wakes every WORKER_NAP_MS.  An idle
 * cluster writes nothing.
 *
 * On a server in recovery (a hot standby, or crash recovery) the worker
 * waits until recovery ends: a standby neither leases a node id nor writes
 * a reservation (its reservation comes from the primary's WAL, see
 * extension/reservation_wal.c).  After a promotion it carries on as on any
 * primary.
 *
 * In leased mode (guid.node_id = -1, guid.zookeeper set) the worker runs
 * LeaseWorkerLoop() instead (coordinator/lease_worker.c), which keeps the
 * reservation in ZooKeeper by the same rule.
 *
 * The loop follows contrib/pg_prewarm's autoprewarm: PostgreSQL's own
 * signal handlers, WaitLatch with WL_EXIT_ON_PM_DEATH, a memory context
 * reset on every iteration.  It is started at postmaster start (it needs no
 * database) and restarted a second after a crash.
 *
 * What it must not do: hold reserve_lock for anything but the file write,
 * or raise an ERROR for a failed write (it logs, remembers the error for
 * guid.status and tries again; backends can still write for themselves).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "guid_core.h"
#include "guid_generator.h"
#include "guid_lease.h"
#include "guid_worker.h"

/* How often the coordinator looks at the reservation without being woken. */
#define WORKER_NAP_MS			100

/*
 * WorkerInit: register the coordinator when guid is preloaded.
 */
void
WorkerInit(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "guid", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "GuidWorkerMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "guid coordinator", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "guid coordinator", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * Extend the file reservation when it is due (standalone mode).
 */
static void
worker_maintain_reservation(void)
{
	if (GeneratorMode() != GUID_MODE_STANDALONE)
		return;
	if (GuidReservationDue() && !GuidExtendReservation(GuidReservationTarget(), LOG))
		GuidSetLastError("could not write the guid reservation file; see the server log");
}

/*
 * Wait while the server is in recovery.  Returns false on a shutdown
 * request.
 */
static bool
worker_wait_for_primary(void)
{
	while (RecoveryInProgress())
	{
		if (ShutdownRequestPending)
			return false;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WORKER_NAP_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return !ShutdownRequestPending;
}

/*
 * GuidWorkerMain: entry point of the coordinator.
 */
void
GuidWorkerMain(Datum main_arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	GeneratorAttachWorker();

	if (!worker_wait_for_primary())
		proc_exit(0);
	GuidLogStartReservation();

	if (GuidLeaseMode())
	{
		LeaseWorkerLoop();
		proc_exit(0);
	}

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "guid coordinator loop",
									 ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		MemoryContext old_cxt = MemoryContextSwitchTo(loop_cxt);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		worker_maintain_reservation();
		GuidSampleClock();

		MemoryContextSwitchTo(old_cxt);
		MemoryContextReset(loop_cxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WORKER_NAP_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	proc_exit(0);
}
