/*-------------------------------------------------------------------------
 *
 * decoder.c
 *		The "guid" logical decoding output plugin: committed guid.audit
 *		inserts, whole transactions at a time, for the publisher.
 *
 * PostgreSQL hands an output plugin a transaction only after it committed,
 * and in commit order; this plugin writes, for each transaction that
 * inserted into guid.audit:
 *
 *		'B' end_lsn(8) xid(4) commit_time(8)
 *		'I' guid(8) key_len(4) key value		(once per row)
 *		'C' end_lsn(8)
 *
 * in network byte order, with the writers of include/guid_stream.h, which
 * defines the format for both sides.  key is the row's service (the Kafka
 * message key) and value its JSON, made here with PostgreSQL's own
 * escape_json():
 *
 *		{"guid":"<decimal>","node_id":N,"system_identifier":"<decimal>",
 *		 "guid_node_id":N,"created_at":"<RFC 3339, UTC>","service":"...",
 *		 "lsn":"<end LSN>","xid":N}
 *
 * (see decoder_json() for what each field means)
 *
 * end_lsn is the end of the commit record, the position to confirm once the
 * transaction is in Kafka (a restart at it skips exactly this transaction
 * and those before it).  Transactions without audit rows write nothing; the
 * walsender still reports its position in keepalives, so the publisher can
 * confirm past them.  Rows of other tables, updates, deletes and truncates
 * are ignored.  Streaming of in-progress transactions and two-phase decoding
 * are not offered: a transaction is never split.
 *
 * The four columns are read by name, never by position: guid.audit may
 * have been altered since it was made.  The tuple descriptor PostgreSQL
 * hands us is the table's as of the decoded change, with one slot per
 * attribute ever added, dropped ones included, so a column added, or dropped
 * and added back (a new attribute number), changes the layout.  Extra
 * columns are ignored.  A missing, retyped or null one of the four is an
 * ERROR (SQLSTATE 42703, 42804, 23502) raised before anything of the row is
 * sent: the walsender ends the stream with it, the publisher shows it in
 * guid.status (state "error") and confirms nothing past that transaction.
 * The attribute numbers are looked up once per relation and forgotten on
 * any relcache invalidation of it (an ALTER TABLE decoded from the WAL sends
 * one) and at every start of decoding; each row still checks that they name
 * the same live columns of the same types, and looks them up again if not.
 *
 * It runs in a walsender, so it may use PostgreSQL freely; apart from those
 * attribute numbers it keeps no state across transactions, and frees what
 * each row allocates.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guid_core.h"
#include "guid_stream.h"

typedef struct DecoderState
{
	MemoryContext context;		/* reset after every row */
	bool		xact_started;	/* 'B' written for the current transaction */
	StringInfoData json;
} DecoderState;

/* The columns of guid.audit the plugin reads, in this order. */
enum
{
	AUDIT_GUID,
	AUDIT_NODE_ID,
	AUDIT_CREATED_AT,
	AUDIT_SERVICE,
	AUDIT_NCOLUMNS
};

static const char *const audit_column_names[AUDIT_NCOLUMNS] = {
	"guid", "node_id", "created_at", "service"
};

/*
 * Where those columns are in guid.audit's tuple descriptor.  relid is
 * InvalidOid until they are looked up, and again after a relcache
 * invalidation of that relation (decoder_relcache_cb) or a new decoding
 * start.  Static: a relcache callback cannot be unregistered, so it must not
 * point into a decoding context's memory.
 */
static struct
{
	Oid			relid;
	AttrNumber	attnum[AUDIT_NCOLUMNS];
	Oid			atttypid[AUDIT_NCOLUMNS];
}			audit_columns;

static bool decoder_callback_registered = false;

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Forget the column numbers when guid.audit's definition may have changed. */
static void
decoder_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == audit_columns.relid)
		audit_columns.relid = InvalidOid;
}

static void
decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				bool is_init)
{
	DecoderState *st = palloc0(sizeof(DecoderState));

	/* the catalog as of where this decoding starts: look the columns up again */
	audit_columns.relid = InvalidOid;
	if (!decoder_callback_registered)
	{
		CacheRegisterRelcacheCallback(decoder_relcache_cb, (Datum) 0);
		decoder_callback_registered = true;
	}

	st->context = AllocSetContextCreate(ctx->context, "guid decoder",
										ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&st->json);
	ctx->output_plugin_private = st;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
	/* Options (such as a subscriber's proto_version) are accepted and
	 * ignored: the format above is the only one. */
}

static void
decoder_shutdown(LogicalDecodingContext *ctx)
{
	DecoderState *st = ctx->output_plugin_private;

	MemoryContextDelete(st->context);
}

/* Write 'B' lazily, before the transaction's first audit row. */
static void
decoder_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *st = ctx->output_plugin_private;

	st->xact_started = false;
}

static void
decoder_write_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *st = ctx->output_plugin_private;

	OutputPluginPrepareWrite(ctx, false);
	GuidStreamWriteBegin(ctx->out, txn->end_lsn, txn->xid,
						 txn->xact_time.commit_time);
	OutputPluginWrite(ctx, false);
	st->xact_started = true;
}

static void
decoder_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   XLogRecPtr commit_lsn)
{
	DecoderState *st = ctx->output_plugin_private;

	if (!st->xact_started)
	{
		/* let the walsender report progress past a skipped transaction */
		OutputPluginUpdateProgress(ctx, true);
		return;
	}
	OutputPluginUpdateProgress(ctx, false);
	OutputPluginPrepareWrite(ctx, true);
	GuidStreamWriteCommit(ctx->out, txn->end_lsn);
	OutputPluginWrite(ctx, true);
	st->xact_started = false;
}

/* Is rel guid.audit? */
static bool
decoder_is_audit(Relation rel)
{
	char	   *nspname;

	if (strcmp(RelationGetRelationName(rel), "audit") != 0)
		return false;
	nspname = get_namespace_name(RelationGetNamespace(rel));
	return nspname != NULL && strcmp(nspname, "guid") == 0;
}

/* Append ts to buf in RFC 3339, UTC, microseconds. */
static void
decoder_rfc3339(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "guid.audit created_at out of range");
	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* Is typid the extension's guid type (an 8-byte by-value type named guid)? */
static bool
decoder_is_guid_type(Oid typid)
{
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	bool		ok = false;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_type typ = (Form_pg_type) GETSTRUCT(tup);

		ok = strcmp(NameStr(typ->typname), "guid") == 0 &&
			typ->typlen == sizeof(int64) && typ->typbyval;
		ReleaseSysCache(tup);
	}
	return ok;
}

/* Do the remembered attribute numbers still fit desc? */
static bool
decoder_columns_fit(TupleDesc desc)
{
	int			c;

	for (c = 0; c < AUDIT_NCOLUMNS; c++)
	{
		Form_pg_attribute att;

		if (audit_columns.attnum[c] < 1 || audit_columns.attnum[c] > desc->natts)
			return false;
		att = TupleDescAttr(desc, audit_columns.attnum[c] - 1);
		if (att->attisdropped || att->atttypid != audit_columns.atttypid[c] ||
			strcmp(NameStr(att->attname), audit_column_names[c]) != 0)
			return false;
	}
	return true;
}

/*
 * decoder_audit_columns: find the four columns of guid.audit (rel) in its
 * descriptor by name, check their types and remember their attribute
 * numbers.  Raises an ERROR, naming the transaction that cannot be decoded,
 * if one is missing or has another type.
 */
static void
decoder_audit_columns(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					  Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	static const Oid expected[AUDIT_NCOLUMNS] = {
		InvalidOid, INT4OID, TIMESTAMPTZOID, TEXTOID
	};
	int			c;

	audit_columns.relid = InvalidOid;
	for (c = 0; c < AUDIT_NCOLUMNS; c++)
	{
		Form_pg_attribute att = NULL;
		bool		type_ok;
		int			i;

		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute a = TupleDescAttr(desc, i);

			if (!a->attisdropped &&
				strcmp(NameStr(a->attname), audit_column_names[c]) == 0)
			{
				att = a;
				break;
			}
		}
		if (att == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("guid.audit has no column \"%s\"", audit_column_names[c]),
					 errdetail("The transaction ending at %X/%X wrote a guid.audit row that the guid output plugin cannot decode; nothing from it on is published.",
							   LSN_FORMAT_ARGS(txn->end_lsn)),
					 errhint("Give guid.audit back its columns guid, node_id, created_at and service, then drop the replication slot \"%s\" to publish from now on.",
							 NameStr(ctx->slot->data.name))));
		type_ok = c == AUDIT_GUID ? decoder_is_guid_type(att->atttypid) :
			att->atttypid == expected[c];
		if (!type_ok)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of guid.audit has type %s, not %s",
							audit_column_names[c], format_type_be(att->atttypid),
							c == AUDIT_GUID ? "guid" : format_type_be(expected[c])),
					 errdetail("The transaction ending at %X/%X wrote a guid.audit row that the guid output plugin cannot decode; nothing from it on is published.",
							   LSN_FORMAT_ARGS(txn->end_lsn)),
					 errhint("Give guid.audit back its columns guid, node_id, created_at and service, then drop the replication slot \"%s\" to publish from now on.",
							 NameStr(ctx->slot->data.name))));
		audit_columns.attnum[c] = att->attnum;
		audit_columns.atttypid[c] = att->atttypid;
	}
	audit_columns.relid = RelationGetRelid(rel);
}

/*
 * The message value of one audit row, into buf (reset first):
 *
 *		{"guid":"<decimal>","node_id":N,"system_identifier":"<decimal>",
 *		 "guid_node_id":N,"created_at":"<RFC 3339, UTC>","service":"...",
 *		 "lsn":"<end LSN>","xid":N}
 *
 * node_id and system_identifier name the cluster that recorded the row and
 * publishes it: node_id is the row's (the node id that cluster held when it
 * wrote the row), system_identifier this cluster's, as a string (it exceeds
 * 2^53).  guid_node_id is the node id in the guid's own bits, the node that
 * issued it; it differs from node_id when a cluster records an idempotent
 * guid another node issued.  created_at is the guid's time.
 */
static void
decoder_json(StringInfo buf, int64 id, int32 node_id, TimestampTz created_at,
			 const char *service, ReorderBufferTXN *txn)
{
	resetStringInfo(buf);
	appendStringInfo(buf, "{\"guid\":\"" INT64_FORMAT "\",\"node_id\":%d,"
					 "\"system_identifier\":\"" UINT64_FORMAT "\",\"guid_node_id\":%d,"
					 "\"created_at\":\"",
					 id, node_id, GetSystemIdentifier(), GuidNode(id));
	decoder_rfc3339(buf, created_at);
	appendStringInfoString(buf, "\",\"service\":");
	escape_json(buf, service);
	appendStringInfo(buf, ",\"lsn\":\"%X/%X\",\"xid\":%u}",
					 LSN_FORMAT_ARGS(txn->end_lsn), txn->xid);
}

static void
decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   Relation rel, ReorderBufferChange *change)
{
	DecoderState *st = ctx->output_plugin_private;
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTuple	tuple;
	Datum		values[AUDIT_NCOLUMNS];
	MemoryContext old;
	char	   *service;
	int64		id;
	int			c;

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		change->data.tp.newtuple == NULL)
		return;

	old = MemoryContextSwitchTo(st->context);
	if (RelationGetRelid(rel) != audit_columns.relid)
	{
		if (!decoder_is_audit(rel))
		{
			MemoryContextSwitchTo(old);
			MemoryContextReset(st->context);
			return;
		}
		decoder_audit_columns(ctx, txn, rel);
	}
	else if (!decoder_columns_fit(desc))
		decoder_audit_columns(ctx, txn, rel);

	/*
	 * values[] in the order of audit_column_names, read by attribute number:
	 * other columns, dropped or added, are never touched
	 */
	tuple = &change->data.tp.newtuple->tuple;
	for (c = 0; c < AUDIT_NCOLUMNS; c++)
	{
		bool		isnull;

		values[c] = heap_getattr(tuple, audit_columns.attnum[c], desc, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("guid.audit row with a null %s", audit_column_names[c])));
	}
	id = DatumGetInt64(values[0]);
	service = TextDatumGetCString(values[3]);

	decoder_json(&st->json, id, DatumGetInt32(values[1]),
				 DatumGetTimestampTz(values[2]), service, txn);

	if (!st->xact_started)
		decoder_write_begin(ctx, txn);
	OutputPluginPrepareWrite(ctx, true);
	GuidStreamWriteRow(ctx->out, id, service, strlen(service),
					   st->json.data, st->json.len);
	OutputPluginWrite(ctx, true);

	MemoryContextSwitchTo(old);
	MemoryContextReset(st->context);
}

/*
 * _PG_output_plugin_init: the entry point PostgreSQL looks up when a slot
 * names the plugin "guid".
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = decoder_startup;
	cb->begin_cb = decoder_begin;
	cb->change_cb = decoder_change;
	cb->commit_cb = decoder_commit;
	cb->shutdown_cb = decoder_shutdown;
}
