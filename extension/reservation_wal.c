/*-------------------------------------------------------------------------
 *
 * reservation_wal.c
 *		The reservation in the WAL: a custom WAL resource manager, so that a
 *		physical standby knows how far the primary may have issued IDs.
 *
 * A physical standby copies the data directory, guid.reservation included,
 * once, at base-backup time; after that the file is frozen while the primary
 * goes on issuing.  A standby promoted with that file and a clock behind the
 * old primary's would repeat IDs that are in the data it replicated.  So the
 * reservation travels with the WAL:
 *
 *	primary		GuidWriteReservation (reservation.c), called under
 *				reserve_lock (standalone) or by the coordinator alone
 *				(leased, after the versioned write of hwm/<id> in ZooKeeper):
 *				1. write guid.reservation durably,
 *				2. XLogInsert one record (node, reserved_ms, system
 *				   identifier, timeline) and XLogFlush it,
 *				3. only then raise reserved_ms in shared memory.
 *				Every ID is issued at or below reserved_ms, so the record
 *				covering an ID is in the WAL, flushed, before the ID exists;
 *				any row holding the ID comes later in the WAL.  A base
 *				backup, which replays only the WAL after its checkpoint,
 *				finds a record older than that checkpoint in the file it
 *				copied (hence the file first), and every reservation
 *				published after the copy in a record after it (hence a
 *				record for every write).  One record per reservation write:
 *				about once a second under load, none when idle.
 *	redo		(standby, and crash recovery on the primary: the same
 *				records) GeneratorReplayReservation: raise, never lower, the
 *				standby's own guid.reservation, its reserved_ms and its
 *				state word.  Replaying a record twice changes nothing.
 *	promotion	a standby has replayed every record that precedes any row
 *				it has, so its generator already stands above every ID in
 *				its data, whatever its clock says; no restart needed.  In
 *				leased mode ZooKeeper's hwm/<id> stays the authority for the
 *				id: the promoted standby leases an id the normal way (above
 *				that id's mark) and starts above the replayed reservation
 *				as well (GuidInstallLease keeps the larger).
 *
 * A hot standby never issues (GuidRequirePrimary, generator.c) and its
 * coordinator neither leases nor writes until recovery ends (worker.c).
 *
 * The resource manager must be loaded wherever the WAL is replayed: guid in
 * shared_preload_libraries on every standby and on any server restored from
 * a backup.  PostgreSQL stops recovery at the first record of an rmgr id it
 * does not know ("resource manager with ID 187 not registered").  Its id,
 * GUID_RMGR_ID, is in include/guid_generator.h; README.md, "High
 * availability", says why that one.
 *
 * What this file must not do: write a record during recovery, or anything
 * but the reservation (no page references: the record changes no relation).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xloginsert.h"
#include "access/xlogreader.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "generator_int.h"

/* xl_info: the only record type */
#define XLOG_GUID_RESERVATION	0x00

/* A reservation: node may have issued up to reserved_ms. */
typedef struct xl_guid_reservation
{
	int64		reserved_ms;	/* milliseconds since the guid epoch */
	uint64		system_identifier;	/* of the server that wrote it */
	int32		node_id;
	uint32		timeline;		/* its WAL insertion timeline */
} xl_guid_reservation;

static void reservation_redo(XLogReaderState *record);
static void reservation_desc(StringInfo buf, XLogReaderState *record);
static const char *reservation_identify(uint8 info);

static const RmgrData reservation_rmgr = {
	.rm_name = GUID_RMGR_NAME,
	.rm_redo = reservation_redo,
	.rm_desc = reservation_desc,
	.rm_identify = reservation_identify,
};

/*
 * ReservationWalInit: register the resource manager.  Only when preloaded
 * (PostgreSQL allows nothing else); without the preload nothing issues IDs
 * and nothing writes a record.
 */
void
ReservationWalInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	RegisterCustomRmgr(GUID_RMGR_ID, (RmgrData *) &reservation_rmgr);
}

/*
 * GeneratorLogReservation: write the record and flush it.  Caller is the
 * primary's reservation writer (GuidWriteReservation) and publishes the
 * reservation only after this returns.
 */
void
GeneratorLogReservation(int32 node, int64 reserved_ms, uint64 sysid, uint32 tli)
{
	xl_guid_reservation xlrec;
	XLogRecPtr	lsn;

	memset(&xlrec, 0, sizeof(xlrec));
	xlrec.reserved_ms = reserved_ms;
	xlrec.system_identifier = sysid;
	xlrec.node_id = node;
	xlrec.timeline = tli;

	XLogBeginInsert();
	XLogRegisterData((char *) &xlrec, sizeof(xlrec));
	lsn = XLogInsert(GUID_RMGR_ID, XLOG_GUID_RESERVATION);
	XLogFlush(lsn);
}

static void
reservation_redo(XLogReaderState *record)
{
	uint8		info = XLogRecGetInfo(record) & ~XLR_INFO_MASK;
	xl_guid_reservation xlrec;

	if (info != XLOG_GUID_RESERVATION || XLogRecGetDataLen(record) != sizeof(xlrec))
		elog(PANIC, "guid reservation redo: unknown record (info %u, length %u)",
			 info, (unsigned) XLogRecGetDataLen(record));
	if (GuidState == NULL)
		elog(PANIC, "guid reservation redo: guid shared memory is not initialised");

	memcpy(&xlrec, XLogRecGetData(record), sizeof(xlrec));
	GeneratorReplayReservation(xlrec.reserved_ms, xlrec.system_identifier, xlrec.timeline);
}

/* pg_walinspect and the server's WAL debugging show this. */
static void
reservation_desc(StringInfo buf, XLogReaderState *record)
{
	xl_guid_reservation xlrec;

	if (XLogRecGetDataLen(record) != sizeof(xlrec))
		return;
	memcpy(&xlrec, XLogRecGetData(record), sizeof(xlrec));
	appendStringInfo(buf, "node %d reserved_ms %lld (%s) system_identifier %llu timeline %u",
					 xlrec.node_id, (long long) xlrec.reserved_ms,
					 timestamptz_to_str(GuidMsToTimestamp(xlrec.reserved_ms)),
					 (unsigned long long) xlrec.system_identifier, xlrec.timeline);
}

static const char *
reservation_identify(uint8 info)
{
	if ((info & ~XLR_INFO_MASK) == XLOG_GUID_RESERVATION)
		return "RESERVATION";
	return NULL;
}
