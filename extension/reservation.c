/*-------------------------------------------------------------------------
 *
 * reservation.c
 *		The generator's durable reservation: the file guid.reservation, and
 *		when to extend it.
 *
 * reserved_ms is a high-water millisecond that is on disk (guid.reservation
 * in the data directory, written with GuidWriteFileDurably) before any ID at
 * or below it is issued.  At shared-memory initialisation -- server start,
 * and again after a crash when restart_after_crash reinitialises shared
 * memory -- the generator starts above the reservation, whatever the wall
 * clock says: no ID can repeat after a restart, even with the clock behind.
 *
 * The coordinator worker extends the reservation about a second ahead of
 * need (GuidReservationTarget), so backends almost never write it.  A
 * backend that does reach the reservation writes it itself under
 * reserve_lock; it never waits for the worker, so a dead worker costs
 * speed, not availability.  In leased mode the same holds below the
 * high-water mark durable in ZooKeeper (lease_ceiling), which the worker
 * writes much further ahead (5/6 of the session timeout): the reservation
 * is extended up to the mark, never above it, without ZooKeeper, so a
 * ZooKeeper outage shorter than the lease's deadline stops nothing, and a
 * restart or a promotion still starts at most about a second ahead.
 *
 * The reservation also travels with the WAL (reservation_wal.c): a new
 * reservation is written to the file, then logged and flushed, then
 * published in reserved_ms.  A standby replays the record into its own file,
 * reservation and state word (GeneratorReplayReservation), so that once
 * promoted it starts above every ID the old primary could have put into the
 * WAL it replayed; crash recovery replays the same records on the primary.
 * The file (format 2) names the system identifier and timeline of the server
 * that wrote the reservation; format 1 (1.4 and before) is still read.
 *
 * Locking rules: reserved_ms only grows, and in standalone mode only under
 * reserve_lock, after the file and the WAL record are durable.  Replay takes
 * reserve_lock too.
 *
 * What this file must not do: raise reserved_ms before the file and the WAL
 * record are durable, log the record before the file is durable, or lower
 * the file on replay.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "storage/fd.h"

#include "generator_int.h"

/* The durable reservation, in the data directory. */
#define RESERVATION_FILE		"guid.reservation"
#define RESERVATION_MAGIC_1	"guid reservation 1"
#define RESERVATION_MAGIC		"guid reservation 2"

/*
 * GeneratorReadReservation: read the reservation file.  Returns true and
 * sets *reserved_ms, *node_id, *sysid and *tli (all 0 when there is no file
 * yet; *sysid and *tli 0 for a file of format 1); returns false with a
 * message in err when the file exists but cannot be trusted.
 */
bool
GeneratorReadReservation(int64 *reserved_ms, int32 *node_id, uint64 *sysid,
						 uint32 *tli, char *err, size_t errlen)
{
	FILE	   *file;
	char		buf[256];
	size_t		len;
	int			node;
	long long	ms;
	unsigned long long sid = 0;
	unsigned int timeline = 0;
	int			consumed = 0;
	bool		ok;

	*reserved_ms = 0;
	*node_id = 0;
	*sysid = 0;
	*tli = 0;
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

	if (strncmp(buf, RESERVATION_MAGIC "\n", strlen(RESERVATION_MAGIC) + 1) == 0)
		ok = sscanf(buf, RESERVATION_MAGIC "\nnode_id %d\nreserved_ms %lld\n"
					"system_identifier %llu\ntimeline %u\n%n",
					&node, &ms, &sid, &timeline, &consumed) == 4;
	else
		ok = sscanf(buf, RESERVATION_MAGIC_1 "\nnode_id %d\nreserved_ms %lld\n%n",
					&node, &ms, &consumed) == 2;
	if (!ok || consumed == 0 ||
		(size_t) consumed != len || ms < 0 || ms > GUID_MAX_MS ||
		node < 0 || node > GUID_MAX_NODE)
	{
		snprintf(err, errlen, "file \"%s\" is corrupt", RESERVATION_FILE);
		return false;
	}
	*reserved_ms = (int64) ms;
	*node_id = node;
	*sysid = (uint64) sid;
	*tli = (uint32) timeline;
	return true;
}

/*
 * Write the file (format 2) and remember where the reservation came from.
 * Callers serialise.  Returns true on success; on failure reports at elevel.
 */
static bool
reservation_write_file(int32 node, int64 reserved_ms, uint64 sysid,
					   uint32 tli, int elevel)
{
	char		buf[200];

	snprintf(buf, sizeof(buf), RESERVATION_MAGIC "\nnode_id %d\nreserved_ms %lld\n"
			 "system_identifier %llu\ntimeline %u\n",
			 node, (long long) reserved_ms, (unsigned long long) sysid, tli);
	if (!GuidWriteFileDurably(RESERVATION_FILE, buf, elevel))
		return false;
	pg_atomic_write_u64(&GuidState->res_sysid, sysid);
	pg_atomic_write_u32(&GuidState->res_tli, tli);
	return true;
}

/*
 * GuidWriteReservation: make "node may have issued up to reserved_ms"
 * durable: the file first, then a WAL record, flushed.  Only the primary
 * writes.  Callers serialise (reserve_lock in standalone mode; only the
 * worker writes in leased mode) and publish reserved_ms afterwards.
 *
 * The file comes first and every write logs its record, because a base
 * backup copies the file at some moment and replays only the WAL after its
 * checkpoint: a record written before that checkpoint reaches the copy only
 * through the file.  File first, a record before the checkpoint means a
 * file at least as high before the copy; a record for every write means a
 * reservation published after the copy is in the WAL after the checkpoint
 * (never left out because an older record, before the checkpoint, was as
 * high: test/tap/029_backup_reservation.pl).  A crash between the two
 * leaves the file ahead of the WAL, and nothing issued above the WAL.
 *
 * Returns true on success; on failure reports at elevel (ERROR does not
 * return) and logs nothing.  A failure to write WAL is not survivable and
 * does not return.
 */
bool
GuidWriteReservation(int32 node, int64 reserved_ms, int elevel)
{
	uint64		sysid = GetSystemIdentifier();
	uint32		tli;

	GuidRequirePrimary();
	tli = GetWALInsertionTimeLine();
	if (!reservation_write_file(node, reserved_ms, sysid, tli, elevel))
		return false;
	GeneratorLogReservation(node, reserved_ms, sysid, tli);
	return true;
}

/*
 * GuidLogStartReservation: (coordinator only, once recovery has ended) put
 * the reservation this server started from into the WAL.  A reservation file
 * written by guid 1.4 has no record behind it: without this, a standby
 * whose file is older, promoted before this server's first new record,
 * could start below IDs issued before the upgrade.  Once a record is in the
 * WAL this changes nothing (redo only ever raises).
 */
void
GuidLogStartReservation(void)
{
	GuidShared *gs = GuidState;
	int64		reserved;

	LWLockAcquire(gs->reserve_lock, LW_EXCLUSIVE);
	reserved = (int64) pg_atomic_read_u64(&gs->reserved_ms);
	if (reserved > 0)
		GeneratorLogReservation(GuidStateNode(pg_atomic_read_u64(&gs->state)), reserved,
								GetSystemIdentifier(), GetWALInsertionTimeLine());
	LWLockRelease(gs->reserve_lock);
}

/*
 * GeneratorReplayReservation: redo of a reservation record (the startup
 * process, on a standby or in crash recovery).  Raises, never lowers, the
 * durable file, reserved_ms and the state word, in that order, so
 * that the generator starts above reserved_ms after a promotion (no restart)
 * as after a restart.  Idempotent.  A file that cannot be written stops
 * recovery (ERROR in the startup process): a standby that went on without it
 * could, after a restart and a promotion, repeat IDs.
 */
void
GeneratorReplayReservation(int64 reserved_ms, uint64 sysid, uint32 tli)
{
	GuidShared *gs = GuidState;
	uint64		old;
	uint64		floor;

	LWLockAcquire(gs->reserve_lock, LW_EXCLUSIVE);
	old = pg_atomic_read_u64(&gs->state);
	if (reserved_ms > (int64) pg_atomic_read_u64(&gs->reserved_ms))
	{
		(void) reservation_write_file(GuidStateNode(old), reserved_ms, sysid, tli, ERROR);
		pg_atomic_write_u64(&gs->reserved_ms, (uint64) reserved_ms);
	}
	LWLockRelease(gs->reserve_lock);

	/* every ID at or below reserved_ms may have been issued */
	floor = GuidStateMake(0, reserved_ms, (int32) GUID_MAX_SEQUENCE);
	while ((old & GUID_STATE_TICK_MASK) < floor &&
		   !pg_atomic_compare_exchange_u64(&gs->state, &old,
										   GuidStateMake(GuidStateNode(old), reserved_ms,
														 (int32) GUID_MAX_SEQUENCE)))
		;
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
 * Were IDs issued in the last GUID_IDLE_MS?  (Worker only: it samples the
 * state word at every look.)
 */
static bool
reservation_active(uint64 state, int64 wall)
{
	static bool have_state = false;
	static uint64 last_state = 0;
	static int64 last_change = 0;

	/* the state found at start is no use: a server just started is idle */
	if (!have_state)
	{
		have_state = true;
		last_state = state;
		last_change = wall - GUID_IDLE_MS - 1;
	}
	if (state != last_state)
	{
		last_state = state;
		last_change = wall;
	}
	return wall - last_change <= GUID_IDLE_MS;
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
	uint64		state = pg_atomic_read_u64(&GuidState->state);
	int64		wall = GuidWallClockMs();
	int64		used_to = Max(GuidStateMs(state), wall);
	int64		reserved = (int64) pg_atomic_read_u64(&GuidState->reserved_ms);
	bool		active = reservation_active(state, wall);

	if (reserved - used_to >= GUID_RESERVE_WINDOW_MS / 2)
		return false;
	if (pg_atomic_exchange_u32(&GuidState->reserve_wanted, 0) != 0)
		return true;
	return active;
}

/*
 * GuidLeaseMarkTarget: (worker, leased mode) the millisecond a high-water
 * mark written to ZooKeeper now should cover: window_ms beyond both the
 * clock and the last issued millisecond.
 */
int64
GuidLeaseMarkTarget(int window_ms)
{
	int64		ms = GuidStateMs(pg_atomic_read_u64(&GuidState->state));
	int64		target = Max(ms, GuidWallClockMs()) + window_ms;

	return Min(target, GUID_MAX_MS);
}

/*
 * GuidLeaseMarkDue: (worker, leased mode) should the mark mark_ms be
 * extended now?  Yes once less than low_ms of it is left, busy or idle:
 * unlike the local reservation, the mark is kept ahead on an idle cluster
 * too, so that its first call during a ZooKeeper outage finds it covered
 * (at the price of one ZooKeeper write per window less low_ms, 12 a minute
 * at the default 30 s timeout, whether IDs are issued or not).
 */
bool
GuidLeaseMarkDue(int64 mark_ms, int low_ms)
{
	uint64		state = pg_atomic_read_u64(&GuidState->state);
	int64		used_to = Max(GuidStateMs(state), GuidWallClockMs());

	return mark_ms - used_to < low_ms;
}

/*
 * GuidExtendLeasedReservation: (leased mode, worker or backend) make the
 * durable reservation cover need_ms, and a window beyond it, but never more
 * than the mark durable in ZooKeeper (lease_ceiling): the local reservation
 * is extended without ZooKeeper, so a ZooKeeper outage does not stop it.
 * Returns false when need_ms is above the mark (nothing written) or on a
 * write failure (reported at elevel; ERROR does not return).
 */
bool
GuidExtendLeasedReservation(int64 need_ms, int elevel)
{
	GuidShared *gs = GuidState;
	bool		ok = true;

	LWLockAcquire(gs->reserve_lock, LW_EXCLUSIVE);
	if ((int64) pg_atomic_read_u64(&gs->reserved_ms) < need_ms)
	{
		int64		ceiling = (int64) pg_atomic_read_u64(&gs->lease_ceiling);
		int64		target = Min(Max(need_ms, GuidReservationTarget()), ceiling);

		ok = need_ms <= ceiling &&
			GuidWriteReservation(GuidStateNode(pg_atomic_read_u64(&gs->state)),
								 target, elevel);
		if (ok)
			pg_atomic_write_u64(&gs->reserved_ms, (uint64) target);
	}
	LWLockRelease(gs->reserve_lock);
	return ok;
}

/*
 * GuidKeepLeasedReservation: (worker, leased mode) keep the local
 * reservation a window ahead, up to the mark in ZooKeeper, as in standalone
 * mode.  Called at every wait of the lease, so it goes on while a request
 * to ZooKeeper is outstanding.  A first write failure is a WARNING.
 */
void
GuidKeepLeasedReservation(void)
{
	static bool failing = false;
	GuidShared *gs = GuidState;
	uint64		state = pg_atomic_read_u64(&gs->state);
	int64		wall = GuidWallClockMs();
	int64		used_to = Max(GuidStateMs(state), wall);
	int64		reserved = (int64) pg_atomic_read_u64(&gs->reserved_ms);
	int64		ceiling = (int64) pg_atomic_read_u64(&gs->lease_ceiling);
	bool		active = reservation_active(state, wall);
	int64		need;

	if (pg_atomic_read_u32(&gs->mode) != GUID_MODE_LEASED ||
		reserved - used_to >= GUID_RESERVE_WINDOW_MS / 2 || ceiling <= reserved)
		return;
	if (pg_atomic_exchange_u32(&gs->reserve_wanted, 0) == 0 && !active)
		return;
	need = Min(GuidReservationTarget(), ceiling);
	if (need <= reserved)
		return;
	if (!GuidExtendLeasedReservation(need, failing ? DEBUG1 : WARNING))
	{
		if (!failing)
			GuidSetLastError("could not write the reservation file guid.reservation; see the server log");
		failing = true;
	}
	else if (failing)
	{
		GuidSetLastError("");
		failing = false;
	}
}

/*
 * GuidRecordLeasedReservation: (worker, leased mode) a mark up to mark_ms
 * is durable in ZooKeeper for node: record the node in guid.reservation,
 * with the reservation in use extended a window ahead (never above the
 * mark), and publish it.  Returns false after a write failure (reported at
 * elevel).  Once the file records node, an idle cluster writes nothing: the
 * mark is kept ahead while idle, the local reservation (file and WAL) is
 * not, and GuidKeepLeasedReservation or a backend extends it when needed.
 */
bool
GuidRecordLeasedReservation(int32 node, int64 mark_ms, int elevel)
{
	static int32 recorded_node = -1;
	GuidShared *gs = GuidState;
	uint64		state = pg_atomic_read_u64(&gs->state);
	int64		reserved;
	int64		value;
	bool		ok;

	if (node == recorded_node && GuidStateNode(state) == node &&
		!reservation_active(state, GuidWallClockMs()) &&
		pg_atomic_read_u32(&gs->reserve_wanted) == 0)
		return true;

	LWLockAcquire(gs->reserve_lock, LW_EXCLUSIVE);
	reserved = (int64) pg_atomic_read_u64(&gs->reserved_ms);
	value = Max(reserved, Min(mark_ms, GuidReservationTarget()));
	ok = GuidWriteReservation(node, value, elevel);
	if (ok)
		pg_atomic_write_u64(&gs->reserved_ms, (uint64) value);
	LWLockRelease(gs->reserve_lock);
	recorded_node = ok ? node : -1;
	return ok;
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
