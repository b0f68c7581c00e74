/*-------------------------------------------------------------------------
 *
 * decode.c
 *		Take a guid apart (creation time, node, sequence) and build one from
 *		its parts.
 *
 * Pure functions of their arguments: they work without the preload and
 * never touch shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/timestamp.h"

#include "guid.h"

PG_FUNCTION_INFO_V1(guid_timestamp);
Datum
guid_timestamp(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(GuidMsToTimestamp(GuidMs(PG_GETARG_GUID(0))));
}

PG_FUNCTION_INFO_V1(guid_node);
Datum
guid_node(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GuidNode(PG_GETARG_GUID(0)));
}

PG_FUNCTION_INFO_V1(guid_sequence);
Datum
guid_sequence(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GuidSequence(PG_GETARG_GUID(0)));
}

PG_FUNCTION_INFO_V1(guid_decode);
Datum
guid_decode(PG_FUNCTION_ARGS)
{
	guid		id = PG_GETARG_GUID(0);
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	values[0] = TimestampTzGetDatum(GuidMsToTimestamp(GuidMs(id)));
	values[1] = Int32GetDatum(GuidNode(id));
	values[2] = Int32GetDatum(GuidSequence(id));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * Refuse a guid-millisecond that a guid cannot hold (-1 stands for an
 * infinite timestamp).
 */
static void
decode_check_ms(int64 ms)
{
	if (ms < 0 || ms > GUID_MAX_MS)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for type %s", "guid"),
				 errdetail("A guid holds a time from 2025-01-01 00:00:00 UTC to 2094-09-07 15:47:35.551 UTC.")));
}

/*
 * guid_from_parts(created_at, node_id, sequence): the guid of that
 * millisecond (created_at rounded down), node and sequence.
 */
PG_FUNCTION_INFO_V1(guid_from_parts);
Datum
guid_from_parts(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	int32		node = PG_GETARG_INT32(1);
	int32		sequence = PG_GETARG_INT32(2);
	int64		ms = -1;

	if (!TIMESTAMP_NOT_FINITE(ts))
	{
		int64		rel = ts - GUID_EPOCH_PG_USEC;

		ms = rel >= 0 ? rel / 1000 : -((-rel + 999) / 1000);
	}
	decode_check_ms(ms);

	if (node < 0 || node > GUID_MAX_NODE)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("node id %d is out of range for type %s", node, "guid"),
				 errdetail("A node id is between 0 and %d.", (int) GUID_MAX_NODE)));

	if (sequence < 0 || sequence > GUID_MAX_SEQUENCE)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("sequence %d is out of range for type %s", sequence, "guid"),
				 errdetail("A sequence is between 0 and %d.", (int) GUID_MAX_SEQUENCE)));

	PG_RETURN_GUID(GuidPack(ms, node, sequence));
}

/*
 * guid_from_time(ts): the smallest guid created at or after ts, that is the
 * first guid of the first millisecond not before it.  id >= guid_from_time(ts)
 * is therefore id >= ts, which makes it the bound of a range partition.
 */
PG_FUNCTION_INFO_V1(guid_from_time);
Datum
guid_from_time(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	int64		ms;

	/* Every guid is created at or after a time before the epoch: guid 0. */
	if (TIMESTAMP_IS_NOBEGIN(ts) || ts <= GUID_EPOCH_PG_USEC)
		PG_RETURN_GUID(0);
	if (TIMESTAMP_IS_NOEND(ts))
		ms = -1;				/* no guid: out of range */
	else
		ms = (ts - GUID_EPOCH_PG_USEC + 999) / 1000;
	decode_check_ms(ms);
	PG_RETURN_GUID(GuidPack(ms, 0, 0));
}
