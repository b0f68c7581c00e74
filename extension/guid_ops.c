/*-------------------------------------------------------------------------
 *
 * guid_ops.c
 *		Comparisons between guid and timestamptz, for time-range scans.
 *
 * guid against guid needs no code here: a guid is a non-negative int8, and
 * the install script binds its operators, btree/hash support and
 * sortsupport to core's int8 functions (as contrib/isn does).
 *
 * guid and timestamptz share one btree family, which promises a single total
 * order over both types, consistent with timestamptz's own order (PostgreSQL
 * documentation, "Behavior of B-Tree Operator Classes").  The planner relies
 * on it: it combines two bounds by comparing them with each other, derives
 * equalities through equivalence classes, proves partial-index predicates and
 * prunes partitions.  So a timestamptz must stand for one point of the guid
 * order, and distinct timestamps for distinct points:
 *
 *	- a timestamp exactly on a millisecond boundary m is the point of the
 *	  first guid of that millisecond, guid_from_parts(m, 0, 0);
 *	- a timestamp inside millisecond m (not on its boundary) lies after every
 *	  guid of m and before the first guid of m + 1, ordered among the other
 *	  timestamps of that gap by its microseconds (no guid lies there);
 *	- -infinity and infinity lie below and above every guid.
 *
 * That embedding is strictly increasing in both types, so every law of the
 * family holds.  (Mapping a whole millisecond's timestamps onto one guid, as
 * version 1.3 did, makes many unequal timestamps "equal" to one guid and
 * breaks transitivity: index and sequential scans then disagree.)  It reads:
 *
 *		id >= ts	is exactly "created at or after ts"
 *		id <  ts	is exactly "created before ts"
 *		id >  ts, id <= ts	are "created after ts" and "created at or before
 *					ts", except when ts lies exactly on a millisecond:
 *					then the first guid of that millisecond counts as
 *					equal to ts (and the rest of it as after ts)
 *		id =  ts	only when ts lies exactly on a millisecond, and then
 *					only for guid_from_parts(ts, 0, 0).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/timestamp.h"

#include "guid.h"

/*
 * Compare a guid with a timestamptz.  Returns <0, 0 or >0 as the guid sorts
 * before, at or after the point that stands for the timestamp (see above).
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

	/*
	 * Microseconds since the guid epoch, split into the millisecond that
	 * holds the timestamp (rounded down) and what is left of it.  No
	 * overflow: a finite timestamptz is far inside int64's range.
	 */
	rel = ts - GUID_EPOCH_PG_USEC;
	ts_ms = rel / 1000;
	if (rel % 1000 < 0)
		ts_ms--;

	if (id_ms < ts_ms)
		return -1;
	if (id_ms > ts_ms)
		return 1;
	/* Same millisecond. Inside it, the timestamp follows all of its guids. */
	if (rel - ts_ms * 1000 != 0)
		return -1;
	/* On its boundary: only (ms, node 0, sequence 0) is the point itself. */
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
