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
 * in network byte order.  key is the row's service (the Kafka message key)
 * and value its JSON, made here with PostgreSQL's own escape_json():
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
 * It runs in a walsender, so it may use PostgreSQL freely; it keeps no
 * state across transactions, and frees what each row allocates.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"

#include "guid.h"

typedef struct DecoderState
{
	MemoryContext context;		/* reset after every row */
	bool		xact_started;	/* 'B' written for the current transaction */
	StringInfoData json;
} DecoderState;

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static void
decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				bool is_init)
{
	DecoderState *st = palloc0(sizeof(DecoderState));

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
	pq_sendbyte(ctx->out, 'B');
	pq_sendint64(ctx->out, txn->end_lsn);
	pq_sendint32(ctx->out, txn->xid);
	pq_sendint64(ctx->out, txn->xact_time.commit_time);
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
	pq_sendbyte(ctx->out, 'C');
	pq_sendint64(ctx->out, txn->end_lsn);
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
	Datum		values[4];
	bool		isnull[4];
	MemoryContext old;
	char	   *service;
	int64		id;

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		change->data.tp.newtuple == NULL || desc->natts < 4)
		return;

	old = MemoryContextSwitchTo(st->context);
	if (!decoder_is_audit(rel))
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(st->context);
		return;
	}
	heap_deform_tuple(&change->data.tp.newtuple->tuple, desc, values, isnull);
	if (isnull[0] || isnull[1] || isnull[2] || isnull[3])
		elog(ERROR, "guid.audit row with a null column");
	id = DatumGetInt64(values[0]);
	service = TextDatumGetCString(values[3]);

	decoder_json(&st->json, id, DatumGetInt32(values[1]),
				 DatumGetTimestampTz(values[2]), service, txn);

	if (!st->xact_started)
		decoder_write_begin(ctx, txn);
	OutputPluginPrepareWrite(ctx, true);
	pq_sendbyte(ctx->out, 'I');
	pq_sendint64(ctx->out, id);
	pq_sendint32(ctx->out, strlen(service));
	pq_sendbytes(ctx->out, service, strlen(service));
	pq_sendbytes(ctx->out, st->json.data, st->json.len);
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
