/*-------------------------------------------------------------------------
 *
 * status.c
 *		guid_status(), the function behind the guid.status view.
 *
 * Assembles the row from each module's snapshot: the generator's
 * (GeneratorStatus, atomic reads: near-instant, not consistent), and the
 * status areas the lease and the publisher write (guid_core.h), which it
 * finds by name and copies; it calls nothing of the coordinator.  It never
 * changes anything.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "access/xlog.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "guid_core.h"
#include "guid_generator.h"
#include "guid_lease.h"
#include "guid_stream.h"

/* 14 columns in version 1.0; 1.1 appends the lease columns, 1.3 the
 * publisher's, 1.5 the reservation's origin and the publisher's failover
 * counts.  A database not yet updated gets the columns it asks for. */
#define STATUS_COLUMNS 33

static const char *
status_mode_name(GuidMode mode, uint64 deadline)
{
	switch (mode)
	{
		case GUID_MODE_UNASSIGNED:
			return "unassigned";
		case GUID_MODE_STANDALONE:
			return "standalone";
		case GUID_MODE_BROKEN:
			return "broken";
		case GUID_MODE_CONNECTING:
			return "connecting";
		case GUID_MODE_LEASED:
			return GuidMonotonicNs() < deadline ? "leased" : "fenced";
	}
	return "unknown";
}

PG_FUNCTION_INFO_V1(guid_status);
Datum
guid_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[STATUS_COLUMNS];
	bool		nulls[STATUS_COLUMNS];
	GuidGeneratorStatus gen;
	LeaseStatus lease;
	char		last_error[GUID_ERROR_LEN];
	uint64		now_mono;
	bool		standby;
	int			i;

	GuidRequirePreloaded();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts > STATUS_COLUMNS)
		elog(ERROR, "guid_status() returns at most %d columns", STATUS_COLUMNS);

	GeneratorStatus(&gen);
	GuidGetLastError(last_error, sizeof(last_error));
	(void) GuidStatusRead(LEASE_STATUS_AREA, &lease, sizeof(lease));
	now_mono = GuidMonotonicNs();

	memset(nulls, 0, sizeof(nulls));
	/* a server in recovery issues nothing, whatever its settings say */
	standby = RecoveryInProgress();
	values[0] = CStringGetTextDatum(standby ? "standby" :
									status_mode_name(gen.mode, gen.lease_deadline));
	if (!standby && (gen.mode == GUID_MODE_STANDALONE || gen.mode == GUID_MODE_LEASED))
		values[1] = Int32GetDatum(gen.node);
	else
		nulls[1] = true;
	values[2] = Int64GetDatum(gen.issued);
	values[3] = TimestampTzGetDatum(GuidMsToTimestamp(gen.last_ms));
	values[4] = Int64GetDatum(Max(gen.last_ms - GuidWallClockMs(), 0));
	values[5] = Int64GetDatum(gen.borrowed_ms);
	values[6] = Int64GetDatum(gen.clock_steps);
	values[7] = Int64GetDatum(gen.clock_waits);
	values[8] = TimestampTzGetDatum(GuidMsToTimestamp(gen.reserved_ms));
	values[9] = Int64GetDatum(gen.reserve_writes);
	values[10] = Int64GetDatum(gen.reserve_waits);
	values[11] = TimestampTzGetDatum(gen.started_at);
	values[12] = TimestampTzGetDatum(GuidMsToTimestamp(GUID_MAX_MS + 1));
	if (last_error[0] != '\0')
		values[13] = CStringGetTextDatum(last_error);
	else
		nulls[13] = true;

	/* 1.1: the ZooKeeper lease */
	nulls[14] = nulls[15] = nulls[16] = nulls[17] = true;
	if (!standby && (gen.mode == GUID_MODE_CONNECTING || gen.mode == GUID_MODE_LEASED))
	{
		char		sid[32];

		values[14] = CStringGetTextDatum(lease.state);
		nulls[14] = false;
		if (lease.session_id != 0)
		{
			snprintf(sid, sizeof(sid), "0x%llx", (unsigned long long) lease.session_id);
			values[15] = CStringGetTextDatum(sid);
			nulls[15] = false;
		}
		if (lease.timeout_ms > 0)
		{
			values[16] = Int32GetDatum(lease.timeout_ms);
			nulls[16] = false;
		}
		if (gen.lease_deadline != 0)
		{
			/* the monotonic deadline, shown on the wall clock */
			values[17] = TimestampTzGetDatum(GetCurrentTimestamp() +
											 ((int64) gen.lease_deadline - (int64) now_mono) / 1000);
			nulls[17] = false;
		}
	}

	/* 1.3: the Kafka publisher; 1.5: the reservation's origin, failovers */
	for (i = 18; i < STATUS_COLUMNS; i++)
		nulls[i] = true;
	if (gen.reservation_sysid != 0)
	{
		char		sysid[32];

		snprintf(sysid, sizeof(sysid), UINT64_FORMAT, gen.reservation_sysid);
		values[28] = CStringGetTextDatum(sysid);
		values[29] = Int32GetDatum((int32) gen.reservation_tli);
		nulls[28] = nulls[29] = false;
	}
	if (GuidStreamConfigured())
	{
		StreamStatus snap;
		XLogRecPtr	confirmed;
		TimestampTz now = GetCurrentTimestamp();
		bool		have_slot = GuidSlotPosition(guid_slot_name, &confirmed, NULL, 0);
		double		lag_s = 0;

		(void) GuidStatusRead(STREAM_STATUS_AREA, &snap, sizeof(snap));

		values[18] = CStringGetTextDatum(snap.state[0] ? snap.state : "starting");
		nulls[18] = false;
		if (snap.pid != 0)
		{
			values[19] = Int32GetDatum(snap.pid);
			nulls[19] = false;
		}
		values[20] = Int64GetDatum((int64) snap.rows);
		values[21] = Int64GetDatum((int64) snap.xacts);
		values[22] = Int64GetDatum((int64) snap.commits);
		nulls[20] = nulls[21] = nulls[22] = false;
		if (snap.published_lsn != InvalidXLogRecPtr)
		{
			values[23] = LSNGetDatum(snap.published_lsn);
			nulls[23] = false;
		}
		if (have_slot)
		{
			XLogRecPtr	insert = GetXLogInsertRecPtr();

			values[24] = Int64GetDatum(insert > confirmed ? (int64) (insert - confirmed) : 0);
			nulls[24] = false;
		}
		/* seconds since the oldest row waiting was committed; when the
		 * publisher is not streaming, since it last had nothing waiting */
		if (snap.oldest_pending != 0)
			lag_s = (double) (now - snap.oldest_pending) / 1000000.0;
		else if (strcmp(snap.state, "streaming") != 0 && snap.caught_up_at != 0)
			lag_s = (double) (now - snap.caught_up_at) / 1000000.0;
		values[25] = Float8GetDatum(Max(lag_s, 0));
		nulls[25] = false;
		if (snap.commits > 0)
		{
			values[26] = Float8GetDatum(snap.commit_ms);
			nulls[26] = false;
		}
		if (snap.error[0] != '\0')
		{
			values[27] = CStringGetTextDatum(snap.error);
			nulls[27] = false;
		}
		/* 1.5: failover recoveries since the server started */
		values[30] = Int64GetDatum((int64) snap.failover_republished);
		values[31] = Int64GetDatum((int64) snap.failover_duplicates);
		values[32] = Int64GetDatum((int64) snap.failover_missing);
		nulls[30] = nulls[31] = nulls[32] = false;
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
