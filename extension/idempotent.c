/*-------------------------------------------------------------------------
 *
 * idempotent.c
 *		guid_next(service, idempotency_key) and its batch form: the same ID
 *		for the same (service, key) while Redis holds the key.
 *
 * A call issues a fresh guid, then asks Redis (extension/redis.c)
 *
 *		SET guid:idem:<namespace>:<service>:<key> <guid> NX GET EX <ttl>
 *
 * and returns its own guid if Redis stored it, or the guid Redis already
 * held (the winner of an earlier call or of a race).  One round trip; the
 * batch form pipelines all its keys in one.  A value read back that is not a
 * guid is an error, never an ID.  The guarantee is only as strong as Redis's:
 * the key lives guid.idempotency_ttl, and a failover of an asynchronously
 * replicated Redis can lose it (the README says so).
 *
 * Every guid a call returns is recorded in this cluster's guid.audit, once
 * per cluster, in the caller's transaction (see idem_settle()).
 *
 * Plain guid_next() never comes here: Redis down costs only these calls.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "guid_audit.h"
#include "guid_core.h"
#include "guid_generator.h"
#include "guid_redis.h"

#define KEY_MAX_BYTES			255

int			guid_idempotency_ttl = 86400;
char	   *guid_redis = NULL;
char	   *guid_redis_password_file = NULL;
int			guid_redis_timeout = 1000;

/*
 * IdempotentInit: define the settings of idempotency keys and of the Redis
 * they are kept in.
 */
void
IdempotentInit(void)
{
	DefineCustomIntVariable("guid.idempotency_ttl",
							gettext_noop("How long an idempotency key keeps its guid in Redis."),
							NULL,
							&guid_idempotency_ttl,
							86400, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	/* the Redis adapter's (extension/redis.c) */
	DefineCustomStringVariable("guid.redis",
							   gettext_noop("Redis for idempotency keys: [password@]host[:port] or [password@]/path/to/redis.sock."),
							   NULL,
							   &guid_redis,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("guid.redis_password_file",
							   gettext_noop("File holding the Redis password (AUTH); only the server's OS user may read it."),
							   gettext_noop("Preferred to a password in guid.redis, which roles with pg_read_all_settings can read."),
							   &guid_redis_password_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress && guid_redis != NULL && strchr(guid_redis, '@') != NULL)
		ereport(WARNING,
				(errmsg("guid.redis holds a password that every role with pg_read_all_settings can read"),
				 errhint("Put the password in a file only the server's OS user can read, and name it in guid.redis_password_file; passwords in guid.redis are refused in a later release.")));
	DefineCustomIntVariable("guid.redis_timeout",
							gettext_noop("Timeout for connecting to Redis and for each request."),
							NULL,
							&guid_redis_timeout,
							1000, 1, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* RedisAddress: guid.redis without its password, for messages. */
const char *
RedisAddress(void)
{
	const char *at = guid_redis ? strrchr(guid_redis, '@') : NULL;

	return at ? at + 1 : (guid_redis ? guid_redis : "");
}

static void
idem_check_key(size_t len)
{
	if (len == 0 || len > KEY_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid idempotency key of %zu bytes", len),
				 errdetail("An idempotency key has 1 to %d bytes.", KEY_MAX_BYTES)));
}

/* Parse a guid from Redis without raising the type's own error. */
static bool
idem_parse(const char *s, guid *out)
{
	int64		v = 0;
	const char *p = s;

	if (*p == '\0')
		return false;
	for (; *p; p++)
	{
		if (*p < '0' || *p > '9' || v > (PG_INT64_MAX - (*p - '0')) / 10)
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return true;
}

/*
 * Issue fresh guids for n keys of one service and settle each with Redis.
 * Returns the guids to use, in order.
 *
 * When guid.audit exists (version 1.3 on), every guid returned is recorded
 * in this cluster's guid.audit, once (ON CONFLICT (guid) DO NOTHING, which
 * waits for another transaction inserting the same guid): whichever
 * transaction commits with it, here or on another cluster, records it in
 * its own cluster, so no committed use is missing from the stream.  Which
 * cluster issued the guid does not matter (its node id may have moved on).
 */
static guid *
idem_settle(const char *service, int n, text *const *keys)
{
	const char **rkeys = palloc(sizeof(char *) * n);
	const char **values = palloc(sizeof(char *) * n);
	char	  **existing = palloc0(sizeof(char *) * n);
	guid	   *ids = palloc(sizeof(guid) * n);
	bool	   *mine = palloc(sizeof(bool) * n);
	char	   *prefix;
	size_t		prefix_len;
	size_t		total;
	char	   *buf;
	int32		our_node = -1;
	bool		audited;
	char		err[256];
	RedisFailure failure;
	int			i;

	GuidCheckService(service);
	GuidRequirePrimary();
	audited = GuidAuditBegin();

	/* Redis keys and values, in one allocation (a batch may be large) */
	prefix = psprintf("guid:idem:%s:%s:", GuidNamespace(), service);
	prefix_len = strlen(prefix);
	total = 0;
	for (i = 0; i < n; i++)
	{
		size_t		len = VARSIZE_ANY_EXHDR(keys[i]);

		idem_check_key(len);
		total += prefix_len + len + 1 + MAXINT8LEN + 1;
	}
	buf = MemoryContextAllocHuge(CurrentMemoryContext, total);
	for (i = 0; i < n; i++)
	{
		size_t		len = VARSIZE_ANY_EXHDR(keys[i]);

		rkeys[i] = buf;
		memcpy(buf, prefix, prefix_len);
		memcpy(buf + prefix_len, VARDATA_ANY(keys[i]), len);
		buf[prefix_len + len] = '\0';
		buf += prefix_len + len + 1;

		ids[i] = GuidNext();
		our_node = GuidNode(ids[i]);
		values[i] = buf;
		buf += pg_lltoa((int64) ids[i], buf) + 1;
	}

	if (!RedisSetNxGet(n, rkeys, values, guid_idempotency_ttl, existing, &failure, err, sizeof(err)))
	{
		/*
		 * Never class 08: drivers and poolers would take this connection to
		 * PostgreSQL for dead.  Redis away is "try again later" (53000).
		 */
		if (failure == REDIS_BAD_VALUE)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("an idempotency key in Redis does not hold a guid"),
					 errdetail("%s.", err),
					 errhint("Delete the key in Redis; guid keeps only guids under guid:idem:.")));
		ereport(ERROR,
				(errcode(failure == REDIS_MISCONFIGURED ? ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
						 : ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not settle idempotency key with Redis"),
				 errdetail("%s.", err),
				 failure == REDIS_MISCONFIGURED ?
				 errhint("Check guid.redis (\"%s\") and guid.redis_password_file. guid_next() without a key does not need Redis.",
						 RedisAddress()) :
				 errhint("Check that Redis is reachable at guid.redis (\"%s\"), or guid.redis_timeout; retry later. guid_next() without a key does not need Redis.",
						 RedisAddress())));
	}

	for (i = 0; i < n; i++)
	{
		mine[i] = existing[i] == NULL;
		if (!mine[i] && !idem_parse(existing[i], &ids[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("Redis key \"%s\" does not hold a guid", rkeys[i]),
					 errdetail("It holds \"%s\".", existing[i]),
					 errhint("Delete the key in Redis; guid keeps only guids under guid:idem:.")));
	}

	if (audited)
		GuidAuditWrite(ids, mine, n, service, our_node, true);
	return ids;
}

static char *
idem_text_arg(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * guid_next(service text, idempotency_key text): the same guid for the same
 * service and key while Redis holds the key.
 */
PG_FUNCTION_INFO_V1(guid_next_idempotent);
Datum
guid_next_idempotent(PG_FUNCTION_ARGS)
{
	const char *service = idem_text_arg(fcinfo, 0, "service");
	text	   *key;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("idempotency key must not be null")));
	key = PG_GETARG_TEXT_PP(1);
	PG_RETURN_GUID(idem_settle(service, 1, &key)[0]);
}

/*
 * guid_next(service text, idempotency_keys text[]): one guid per key, in
 * order, settled with Redis in one pipelined round trip.
 */
PG_FUNCTION_INFO_V1(guid_next_idempotent_batch);
Datum
guid_next_idempotent_batch(PG_FUNCTION_ARGS)
{
	const char *service = idem_text_arg(fcinfo, 0, "service");
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	text	  **keys;
	guid	   *ids;
	Datum	   *out;
	int			i;
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("idempotency keys must not be null")));
	elemtype = get_element_type(get_fn_expr_rettype(fcinfo->flinfo));
	if (!OidIsValid(elemtype))
		elog(ERROR, "could not determine the result type of guid_next(text, text[])");
	arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("idempotency keys must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);

	keys = palloc(sizeof(text *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("idempotency key %d must not be null", i + 1)));
		keys[i] = (text *) DatumGetPointer(elems[i]);
	}

	if (n == 0)
	{
		GuidCheckService(service);
		GuidRequirePrimary();
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(elemtype));
	}
	ids = idem_settle(service, n, keys);

	out = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		out[i] = GuidGetDatum(ids[i]);
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	PG_RETURN_ARRAYTYPE_P(construct_array(out, n, elemtype, typlen, typbyval, typalign));
}
