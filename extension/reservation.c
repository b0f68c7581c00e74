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
 * speed, not availability.  In leased mode the worker writes the same
 * target into ZooKeeper first, then this file, then raises the reservation
 * (GuidRaiseReservation).
 *
 * Locking rules: reserved_ms only grows, and in standalone mode only under
 * reserve_lock, after the file is durable.
 *
 * What this file must not do: raise reserved_ms before the file is durable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/fd.h"

#include "generator_int.h"

/* The durable reservation, in the data directory. */
#define RESERVATION_FILE		"guid.reservation"
#define RESERVATION_MAGIC		"guid reservation 1"

/*
 * GeneratorReadReservation: read the reservation file.  Returns true and sets *reserved_ms and
 * *node_id (0 and 0 when there is no file yet); returns false with a message
 * in err when the file exists but cannot be trusted.
 */
bool
GeneratorReadReservation(int64 *reserved_ms, int32 *node_id, char *err, size_t errlen)
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
