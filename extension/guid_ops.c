/*-------------------------------------------------------------------------
 *
 * guid_ops.c
 *		Comparisons between guid and timestamptz, for time-range scans.
 *
 * guid against guid needs no code here: a guid is a non-negative int8, and
 * the install script binds its operators, btree/hash support and
 * sortsupport to core's int8 functions (as contrib/isn does).
 *
 * A timestamptz compared with a guid stands for one point of the guid
 * order: the smallest guid of the first millisecond not before it, that is
 * guid_from_parts(ts rounded up to the millisecond, 0, 0).  Infinities lie
 * below and above every guid.  Because that is a total order consistent with
 * guid = guid, these operators can live in the guid btree family (index
 * range scans, merge joins, partition pruning all stay correct), and
 *
 *		id >= ts	is exactly "created at or after ts"
 *		id <  ts	is exactly "created before ts".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/timestamp.h"

#include "guid.h"

/*
 * Compare a guid with a timestamptz.  Returns <0, 0 or >0 as the guid sorts
 * before, at or after the point that stands for the timestamp.
 */
static int
guid_ts_compare(guid id, TimestampTz ts)
{
	int64		rel;
	int64		ts_ms;
	int64		id_ms = GuidMs(id);

	if (TIMESTAMP_IS_NOBEGIN(ts))
		return 1;
	if (TIMESTAMP_IS_NOEND(ts))
		return -1;

	/* Microseconds since the guid epoch, rounded up to whole milliseconds. */
	rel = ts - GUID_EPOCH_PG_USEC;
	if (rel >= 0)
		ts_ms = rel / 1000 + (rel % 1000 != 0);
	else
		ts_ms = -((-rel) / 1000);

	if (id_ms < ts_ms)
		return -1;
	if (id_ms > ts_ms)
		return 1;
	/* Same millisecond: only (ms, node 0, sequence 0) is the point itself. */
	return (id & ((INT64CONST(1) << GUID_TIME_SHIFT) - 1)) == 0 ? 0 : 1;
}

#define GUID_TS_CMP(name, expr) \
PG_FUNCTION_INFO_V1(name); \
Datum \
name(PG_FUNCTION_ARGS) \
{ \
	int			c = guid_ts_compare(PG_GETARG_GUID(0), PG_GETARG_TIMESTAMPTZ(1)); \
	PG_RETURN_BOOL(expr); \
}

#define TS_GUID_CMP(name, expr) \
PG_FUNCTION_INFO_V1(name); \
Datum \
name(PG_FUNCTION_ARGS) \
{ \
	int			c = -guid_ts_compare(PG_GETARG_GUID(1), PG_GETARG_TIMESTAMPTZ(0)); \
	PG_RETURN_BOOL(expr); \
}

GUID_TS_CMP(guid_eq_timestamptz, c == 0)
GUID_TS_CMP(guid_ne_timestamptz, c != 0)
GUID_TS_CMP(guid_lt_timestamptz, c < 0)
GUID_TS_CMP(guid_le_timestamptz, c <= 0)
GUID_TS_CMP(guid_gt_timestamptz, c > 0)
GUID_TS_CMP(guid_ge_timestamptz, c >= 0)

TS_GUID_CMP(timestamptz_eq_guid, c == 0)
TS_GUID_CMP(timestamptz_ne_guid, c != 0)
TS_GUID_CMP(timestamptz_lt_guid, c < 0)
TS_GUID_CMP(timestamptz_le_guid, c <= 0)
TS_GUID_CMP(timestamptz_gt_guid, c > 0)
TS_GUID_CMP(timestamptz_ge_guid, c >= 0)

/* btree support function 1 for (guid, timestamptz) */
PG_FUNCTION_INFO_V1(guid_cmp_timestamptz);
Datum
guid_cmp_timestamptz(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(guid_ts_compare(PG_GETARG_GUID(0), PG_GETARG_TIMESTAMPTZ(1)));
}

/* btree support function 1 for (timestamptz, guid) */
PG_FUNCTION_INFO_V1(timestamptz_cmp_guid);
Datum
timestamptz_cmp_guid(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(-guid_ts_compare(PG_GETARG_GUID(1), PG_GETARG_TIMESTAMPTZ(0)));
}
