/*-------------------------------------------------------------------------
 *
 * audit.c
 *		guid_next(service): issue a guid and record it in guid.audit in the
 *		caller's transaction.
 *
 * guid.audit is a transactional outbox: a row exists if and only if the
 * transaction that issued the guid committed, and the publisher
 * (coordinator/publisher.c) streams committed rows to Kafka from the WAL.
 *
 * The insert runs through one SPI plan per backend, prepared on first use
 * and kept (SPI_keepplan), so a call parses no SQL; the plan cache re-plans
 * by itself if the table is re-created.  The functions are SECURITY DEFINER:
 * callers cannot write guid.audit directly.
 *
 * What it must not do: write anything for an invalid service name (it is
 * checked before an ID is issued), or touch guid.audit from plain
 * guid_next().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "guid.h"

#define SERVICE_MAX_CHARS		50

/* Saved plans, per backend: a plain insert, and one that tolerates a row
 * already there (the idempotent forms may settle on a guid issued earlier). */
static SPIPlanPtr audit_insert_plan = NULL;
static SPIPlanPtr audit_upsert_plan = NULL;
static Oid	audit_plan_type = InvalidOid;	/* the guid type they were made for */

/*
 * GuidCheckService: raise an error unless service is a valid service name:
 * 1 to 50 characters, no control characters, no ':' (it separates the parts
 * of an idempotency key in Redis).
 */
void
GuidCheckService(const char *service)
{
	const unsigned char *p;
	int			chars = pg_mbstrlen(service);

	if (chars == 0 || chars > SERVICE_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid service name \"%s\"", service),
				 errdetail("A service name has 1 to %d characters.", SERVICE_MAX_CHARS)));
	for (p = (const unsigned char *) service; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == ':')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid service name \"%s\"", service),
					 errdetail("A service name may not contain control characters or \":\".")));
}

static SPIPlanPtr
audit_prepare(Oid guid_type, bool if_absent)
{
	Oid			argtypes[4] = {guid_type, INT4OID, TIMESTAMPTZOID, TEXTOID};
	SPIPlanPtr	plan;

	plan = SPI_prepare(if_absent ?
					   "INSERT INTO guid.audit (guid, node_id, created_at, service) "
					   "VALUES ($1, $2, $3, $4) ON CONFLICT (guid) DO NOTHING" :
					   "INSERT INTO guid.audit (guid, node_id, created_at, service) "
					   "VALUES ($1, $2, $3, $4)",
					   4, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for the guid.audit insert: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for the guid.audit insert");
	return plan;
}

/*
 * GuidAuditRequireSlot: when the publisher is configured, refuse to write an
 * audit row while its replication slot does not exist: the row would never
 * be decoded, and so never reach Kafka.  (The publisher creates the slot at
 * start, and again after an operator dropped it.)
 */
void
GuidAuditRequireSlot(void)
{
	Oid			database = InvalidOid;

	if (!PublisherConfigured())
		return;
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
}

/*
 * GuidAuditWrite: insert one guid.audit row per id, in the current
 * transaction.  guid_type is the OID of type guid.  With if_absent, an id
 * already recorded is left alone (ON CONFLICT DO NOTHING).  Raises an error
 * if an insert fails; the caller's transaction then writes nothing.
 */
void
GuidAuditWrite(Oid guid_type, const guid *ids, int n, const char *service,
			   bool if_absent)
{
	SPIPlanPtr	plan;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			i;

	if (n == 0)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* The extension was dropped and created again: its type is new. */
	if (guid_type != audit_plan_type)
	{
		if (audit_insert_plan)
			SPI_freeplan(audit_insert_plan);
		if (audit_upsert_plan)
			SPI_freeplan(audit_upsert_plan);
		audit_insert_plan = audit_upsert_plan = NULL;
		audit_plan_type = guid_type;
	}

	if (if_absent)
	{
		if (audit_upsert_plan == NULL)
			audit_upsert_plan = audit_prepare(guid_type, true);
		plan = audit_upsert_plan;
	}
	else
	{
		if (audit_insert_plan == NULL)
			audit_insert_plan = audit_prepare(guid_type, false);
		plan = audit_insert_plan;
	}

	values[3] = CStringGetTextDatum(service);
	for (i = 0; i < n; i++)
	{
		int			rc;

		values[0] = GuidGetDatum(ids[i]);
		values[1] = Int32GetDatum(GuidNode(ids[i]));
		values[2] = TimestampTzGetDatum(GuidMsToTimestamp(GuidMs(ids[i])));
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "guid.audit insert failed: %s", SPI_result_code_string(rc));
	}
	SPI_finish();
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
	GuidAuditRequireSlot();

	id = GuidNext();
	GuidAuditWrite(get_func_rettype(fcinfo->flinfo->fn_oid), &id, 1, service, false);
	PG_RETURN_GUID(id);
}
