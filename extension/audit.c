/*-------------------------------------------------------------------------
 *
 * audit.c
 *		guid_next(service): issue a guid and record it in guid.audit in the
 *		caller's transaction; the audit rows of the idempotent forms.
 *
 * guid.audit is a transactional outbox: a row exists if and only if the
 * transaction that wrote it committed, and the publisher
 * (coordinator/publisher.c) streams committed rows to Kafka from the WAL.
 *
 * Rows go in through the executor's lower layers, as ExecInsert() does for
 * an INSERT: the table is opened by an OID resolved once per backend (and
 * again after a relcache invalidation names it), the row is formed in a
 * slot, inserted with table_tuple_insert() and indexed with
 * ExecInsertIndexTuples(); the idempotent forms insert speculatively, as
 * ON CONFLICT (guid) DO NOTHING does: a guid already in the table, committed
 * or still being inserted by another transaction (waited for), is left
 * alone, without an error.  No SQL is parsed, planned or executed, no
 * search_path is consulted, and no privilege on guid.audit is checked: the
 * functions need not be SECURITY DEFINER, and callers still cannot write
 * the table themselves.  Row triggers and rules on guid.audit are not
 * fired; the table is the extension's own.
 *
 * What it must not do: write anything for an invalid service name (it is
 * checked before an ID is issued), or touch guid.audit from plain
 * guid_next().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "guid_audit.h"
#include "guid_core.h"
#include "guid_generator.h"

#define SERVICE_MAX_CHARS		50

/*
 * guid.audit's OID in this backend, InvalidOid until resolved and after a
 * relcache invalidation for it (the extension dropped, the table altered).
 */
static Oid	audit_relid = InvalidOid;
static bool audit_callback_registered = false;

static bool audit_exists(void);

/*
 * Is code point c a control or an invisible formatting character?  Unicode's
 * Cc (C0, DEL and the C1 controls U+0080..U+009F, which a byte test misses),
 * the line and paragraph separators, and the bidirectional and zero-width
 * format characters: all make a service name print as something it is not.
 */
static bool
audit_control_char(pg_wchar c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f) ||
		(c >= 0x200b && c <= 0x200f) ||		/* zero-width, LRM, RLM */
		(c >= 0x2028 && c <= 0x202e) ||		/* separators, bidi embeddings */
		(c >= 0x2060 && c <= 0x206f) ||		/* word joiner, bidi isolates */
		c == 0xfeff;				/* zero-width no-break space (BOM) */
}

/*
 * GuidCheckService: raise an error unless service is a valid service name:
 * 1 to 50 characters, no control or invisible formatting characters (in any
 * server encoding: checked as Unicode), no ':' (it separates the parts of an
 * idempotency key in Redis).
 */
void
GuidCheckService(const char *service)
{
	int			len = strlen(service);
	int			chars = pg_mbstrlen(service);
	const unsigned char *utf8;
	const unsigned char *p;
	const unsigned char *end;

	if (chars == 0 || chars > SERVICE_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid service name \"%s\"", service),
				 errdetail("A service name has 1 to %d characters.", SERVICE_MAX_CHARS)));
	utf8 = (const unsigned char *) pg_server_to_any(service, len, PG_UTF8);
	end = utf8 + strlen((const char *) utf8);
	for (p = utf8; p < end; p += pg_utf_mblen(p))
	{
		pg_wchar	c = utf8_to_unicode(p);

		if (c == ':')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid service name \"%s\"", service),
					 errdetail("A service name may not contain \":\".")));
		if (audit_control_char(c))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid service name"),
					 errdetail("A service name may not contain control characters or invisible formatting characters; it holds U+%04X.",
							   (unsigned int) c)));
	}
}

/*
 * GuidAuditBegin: returns false if this database has no guid.audit (an
 * extension version before 1.3).  Otherwise raises an error unless an audit
 * row can be written now: not in a read-only transaction, and, when the
 * publisher is configured, not while its replication slot does not exist
 * (the row would never be decoded, and so never reach Kafka; the publisher
 * creates the slot at start, and again after an operator dropped it).
 * Call it before issuing the guids to record, so a refused call issues none.
 */
bool
GuidAuditBegin(void)
{
	Oid			database = InvalidOid;

	if (!audit_exists())
		return false;
	PreventCommandIfReadOnly("guid_next(service)");
	if (!GuidStreamConfigured())
		return true;
	if (!GuidSlotReady(guid_slot_name, &database))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the audit stream's replication slot \"%s\" does not exist yet", guid_slot_name),
				 errdetail("A guid.audit row written now would never reach Kafka."),
				 errhint("The guid publisher creates the slot when it starts; see guid.status.")));
	if (database != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("guid.audit rows are streamed from database \"%s\" only", guid_database),
				 errdetail("A guid.audit row written in this database would never reach Kafka."),
				 errhint("Call guid_next(service) in database \"%s\", or set guid.database.", guid_database)));
	return true;
}

/* Forget guid.audit's OID when the relcache says it changed. */
static void
audit_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == audit_relid)
		audit_relid = InvalidOid;
}

/*
 * audit_exists: true if this database has guid.audit (extension version
 * 1.3 on), the table of the extension guid.  Resolves and caches its OID.
 * The table is found by schema and name in the catalogs, never through
 * search_path, and must belong to the extension: an object a caller made
 * cannot stand in for it.
 */
static bool
audit_exists(void)
{
	Oid			nsp;
	Oid			relid;
	Oid			ext;

	if (!audit_callback_registered)
	{
		CacheRegisterRelcacheCallback(audit_relcache_callback, (Datum) 0);
		audit_callback_registered = true;
	}
	for (;;)
	{
		if (!OidIsValid(audit_relid))
		{
			nsp = get_namespace_oid("guid", true);
			if (!OidIsValid(nsp))
				return false;
			relid = get_relname_relid("audit", nsp);
			if (!OidIsValid(relid))
				return false;
			ext = get_extension_oid("guid", true);
			if (!OidIsValid(ext) || getExtensionOfObject(RelationRelationId, relid) != ext)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("table guid.audit does not belong to extension guid")));
			audit_relid = relid;
		}

		/*
		 * Lock it now, before any guid is issued: taking the lock processes
		 * the invalidations other sessions sent (the extension dropped and
		 * created again, say), which forget a stale OID; then look again, as
		 * RangeVarGetRelidExtended does.  The lock is the one the insert takes
		 * anyway, held to the end of the transaction.
		 */
		relid = audit_relid;
		LockRelationOid(relid, RowExclusiveLock);
		if (audit_relid == relid && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			return true;
		UnlockRelationOid(relid, RowExclusiveLock);
		audit_relid = InvalidOid;
	}
}

/*
 * Where guid.audit's columns are, for this call.  The four columns guid
 * writes are found by name (a user may have added, dropped or re-added
 * columns); any other live column gets its default, or NULL.
 */
typedef struct AuditShape
{
	AttrNumber	att[4];			/* guid, node_id, created_at, service */
	int			nextra;
	AttrNumber *extra;			/* the other live columns */
	ExprState **extra_default;	/* their defaults, NULL for none */
} AuditShape;

static const char *const audit_column_names[4] = {"guid", "node_id", "created_at", "service"};

/* Refuse a guid.audit that guid cannot write correctly. */
static void
audit_bad_shape(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("table guid.audit does not have the shape guid writes"),
			 errdetail("%s", detail),
			 errhint("guid.audit needs the columns guid (guid), node_id (int4), created_at (timestamptz) and service (text), with its primary key on guid.")));
}

/*
 * Open guid.audit for inserting (RowExclusiveLock, kept to the end of the
 * transaction) and find its columns; defaults of other columns are prepared
 * in estate.  Caller has called GuidAuditBegin() (true).
 */
static Relation
audit_open(EState *estate, AuditShape *shape)
{
	Relation	rel;
	TupleDesc	desc;
	static const Oid coltypes[] = {InvalidOid, INT4OID, TIMESTAMPTZOID, TEXTOID};
	int			i;
	int			c;

	rel = table_open(audit_relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	if (rel->rd_rel->relkind != RELKIND_RELATION || !OidIsValid(RelationGetPrimaryKeyIndex(rel)))
		audit_bad_shape("It is not a table with a primary key.");
	if (desc->constr && desc->constr->has_generated_stored)
		audit_bad_shape("It has generated columns, which guid does not compute.");
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		audit_bad_shape("It is not a permanent (logged) table: its rows would not be in the WAL, and so never reach Kafka.");

	memset(shape, 0, sizeof(AuditShape));
	shape->extra = palloc(sizeof(AttrNumber) * desc->natts);
	shape->extra_default = palloc0(sizeof(ExprState *) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		for (c = 0; c < 4; c++)
			if (strcmp(NameStr(att->attname), audit_column_names[c]) == 0)
				break;
		if (c == 4)
		{
			Node	   *def = build_column_default(rel, att->attnum);

			if (def != NULL)
				shape->extra_default[shape->nextra] = ExecPrepareExpr((Expr *) def, estate);
			shape->extra[shape->nextra++] = att->attnum;
			continue;
		}
		if (c == 0 ? !(att->attbyval && att->attlen == sizeof(int64)) : att->atttypid != coltypes[c])
			audit_bad_shape(psprintf("Column \"%s\" is not of the type guid writes.", NameStr(att->attname)));
		shape->att[c] = att->attnum;
	}
	for (c = 0; c < 4; c++)
		if (shape->att[c] == 0)
			audit_bad_shape(psprintf("It has no column \"%s\".", audit_column_names[c]));
	return rel;
}

/*
 * Fill slot with one audit row: the four columns, the others' defaults (or
 * NULL), and check the table's constraints (NOT NULL, CHECK).
 */
static void
audit_fill(TupleTableSlot *slot, const AuditShape *shape, ResultRelInfo *rri, EState *estate,
		   guid id, int32 node_id, Datum service)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	int			e;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * natts);
	slot->tts_values[shape->att[0] - 1] = GuidGetDatum(id);
	slot->tts_values[shape->att[1] - 1] = Int32GetDatum(node_id);
	slot->tts_values[shape->att[2] - 1] = TimestampTzGetDatum(GuidMsToTimestamp(GuidMs(id)));
	slot->tts_values[shape->att[3] - 1] = service;
	slot->tts_isnull[shape->att[0] - 1] = false;
	slot->tts_isnull[shape->att[1] - 1] = false;
	slot->tts_isnull[shape->att[2] - 1] = false;
	slot->tts_isnull[shape->att[3] - 1] = false;
	for (e = 0; e < shape->nextra; e++)
		if (shape->extra_default[e] != NULL)
		{
			AttrNumber	a = shape->extra[e];

			slot->tts_values[a - 1] = ExecEvalExprSwitchContext(shape->extra_default[e],
																GetPerTupleExprContext(estate),
																&slot->tts_isnull[a - 1]);
		}
	ExecStoreVirtualTuple(slot);
	if (rri->ri_RelationDesc->rd_att->constr)
		ExecConstraints(rri, slot, estate);
}

/* A guid to record, and whether the calling function issued it. */
typedef struct AuditId
{
	guid		id;
	bool		mine;
} AuditId;

/* qsort comparator for AuditId, by guid */
static int
audit_id_cmp(const void *a, const void *b)
{
	guid		x = ((const AuditId *) a)->id;
	guid		y = ((const AuditId *) b)->id;

	return (x > y) - (x < y);
}

/*
 * The speculative insertion lock of this backend, held across consecutive
 * inserts of one GuidAuditWrite() call: each is confirmed (or killed) before
 * the next, so one lock serves them all, and it is released before anything
 * that may wait for another transaction.  A backend that met one of our
 * unconfirmed rows waits on it, then finds the row confirmed or gone.
 */
typedef struct AuditSpecLock
{
	bool		held;
	uint32		token;
} AuditSpecLock;

static void
audit_spec_release(AuditSpecLock *lock)
{
	if (lock->held)
		SpeculativeInsertionLockRelease(GetCurrentTransactionId());
	lock->held = false;
}

/*
 * Insert the row in slot speculatively, as ON CONFLICT DO NOTHING does: if
 * a row with the same guid is there, committed or inserted by this
 * transaction, nothing is inserted; one another transaction is still
 * inserting is waited for, and settled once it ends.  With precheck false
 * the first attempt skips the probe, for a guid very likely absent; a
 * conflict found while inserting is settled the same way, by probing.
 */
static void
audit_insert_if_absent(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
					   List *arbiters, BulkInsertState bistate, bool precheck,
					   AuditSpecLock *lock)
{
	Relation	rel = rri->ri_RelationDesc;

	for (;;)
	{
		ItemPointerData conflict;
		bool		spec_conflict = false;
		List	   *recheck;

		CHECK_FOR_INTERRUPTS();
		if (precheck)
		{
			/* may wait for another inserter: hold nothing it could wait for */
			audit_spec_release(lock);
			if (!ExecCheckIndexConstraints(rri, slot, estate, &conflict, arbiters))
				return;
		}
		precheck = true;

		if (!lock->held)
		{
			lock->token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
			lock->held = true;
		}
		table_tuple_insert_speculative(rel, slot, estate->es_output_cid, 0, bistate, lock->token);
		recheck = ExecInsertIndexTuples(rri, slot, estate, false, true, &spec_conflict, arbiters);
		table_tuple_complete_speculative(rel, slot, lock->token, !spec_conflict);
		list_free(recheck);
		if (!spec_conflict)
			return;
	}
}

/*
 * GuidAuditWrite: insert one guid.audit row per id, in the current
 * transaction: (id, node_id, the id's time, service).  node_id is the node
 * id of this cluster now, which records the row.  With if_absent an id
 * already in the table, or twice in ids, is recorded once (ON CONFLICT
 * (guid) DO NOTHING), and ids are inserted in guid order (so that two
 * batches never wait for each other in a cycle); mine[i] (may be NULL)
 * says ids[i] was issued by this call, and so is very likely absent.
 * Caller has called GuidAuditBegin() (true).  Raises an error if an insert
 * fails; the caller's transaction then writes nothing.
 */
void
GuidAuditWrite(const guid *ids, const bool *mine, int n, const char *service,
			   int32 node_id, bool if_absent)
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	List	   *arbiters = NIL;
	MemoryContext old;
	Datum		service_datum;
	AuditId    *rows;
	BulkInsertState bistate = NULL;
	AuditSpecLock lock = {false, 0};
	AuditShape	shape;
	int			i;

	if (n == 0)
		return;
	estate = CreateExecutorState();
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	rel = audit_open(estate, &shape);
	estate->es_output_cid = GetCurrentCommandId(true);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 0, NULL, 0);	/* not in a range table */
	ExecOpenIndices(rri, if_absent);
	for (i = 0; i < rri->ri_NumIndices; i++)
		if (!rri->ri_IndexRelationDescs[i]->rd_index->indimmediate)
			audit_bad_shape("It has a deferrable unique or exclusion constraint, which guid does not check at commit.");
	rows = palloc(sizeof(AuditId) * n);
	for (i = 0; i < n; i++)
	{
		rows[i].id = ids[i];
		rows[i].mine = mine != NULL && mine[i];
	}
	if (if_absent)
	{
		arbiters = list_make1_oid(RelationGetPrimaryKeyIndex(rel));
		if (n > 1)
			qsort(rows, n, sizeof(AuditId), audit_id_cmp);
	}
	slot = table_slot_create(rel, NULL);
	if (n > 1)
		bistate = GetBulkInsertState();	/* keeps the target page pinned */
	service_datum = CStringGetTextDatum(service);

	for (i = 0; i < n; i++)
	{
		if (if_absent && i > 0 && rows[i].id == rows[i - 1].id)
			continue;
		audit_fill(slot, &shape, rri, estate, rows[i].id, node_id, service_datum);

		if (if_absent)
			audit_insert_if_absent(rri, slot, estate, arbiters, bistate, !rows[i].mine, &lock);
		else
		{
			table_tuple_insert(rel, slot, estate->es_output_cid, 0, bistate);
			list_free(ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL));
		}
		ResetPerTupleExprContext(estate);
	}

	audit_spec_release(&lock);
	if (bistate != NULL)
		FreeBulkInsertState(bistate);
	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(rri);
	MemoryContextSwitchTo(old);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/*
 * guid_next(service text): the next guid, recorded in guid.audit.
 */
PG_FUNCTION_INFO_V1(guid_next_audited);
Datum
guid_next_audited(PG_FUNCTION_ARGS)
{
	char	   *service;
	guid		id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("service must not be null")));
	service = text_to_cstring(PG_GETARG_TEXT_PP(0));
	GuidCheckService(service);
	GuidRequirePrimary();
	if (!GuidAuditBegin())
		elog(ERROR, "guid_next(service) without table guid.audit");

	id = GuidNext();
	GuidAuditWrite(&id, NULL, 1, service, GuidNode(id), false);
	PG_RETURN_GUID(id);
}
