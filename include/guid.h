/*-------------------------------------------------------------------------
 *
 * guid.h
 *		The guid type: its bit layout, pack/unpack helpers and Datum macros.
 *
 * Layout of a guid (README.md, "The ID"):
 *
 *	 63  62                              22 21        12 11          0
 *	+---+----------------------------------+------------+-------------+
 *	| 0 | milliseconds since 2025-01-01 UTC |  node (10) | sequence(12)|
 *	+---+----------------------------------+------------+-------------+
 *
 * Bit 63 is always zero, so a guid is a positive int8 and guid order is
 * int8 order.  The 41 bits of milliseconds run out on 2094-09-07.
 *
 * Every module includes it.  Nothing here may pull in a client library
 * (ZooKeeper, librdkafka, hiredis) or describe shared state: each module's
 * own header does (README.md, "Layout").
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_H
#define GUID_H

#include "fmgr.h"
#include "utils/timestamp.h"

/* ----------
 * Bit layout
 * ----------
 */
#define GUID_SEQUENCE_BITS		12
#define GUID_NODE_BITS			10
#define GUID_TIME_BITS			41

#define GUID_MAX_SEQUENCE		((INT64CONST(1) << GUID_SEQUENCE_BITS) - 1)	/* 4095 */
#define GUID_MAX_NODE			((INT64CONST(1) << GUID_NODE_BITS) - 1)	/* 1023 */
#define GUID_MAX_MS				((INT64CONST(1) << GUID_TIME_BITS) - 1)

#define GUID_NODE_SHIFT			GUID_SEQUENCE_BITS	/* 12 */
#define GUID_TIME_SHIFT			(GUID_SEQUENCE_BITS + GUID_NODE_BITS)	/* 22 */

/* The epoch, 2025-01-01 00:00:00 UTC, in Unix milliseconds and in
 * PostgreSQL's microseconds since 2000-01-01. */
#define GUID_EPOCH_UNIX_MS		INT64CONST(1735689600000)
#define GUID_EPOCH_PG_USEC		(INT64CONST(9132) * USECS_PER_DAY)

typedef int64 guid;

#define DatumGetGuid(X)			((guid) DatumGetInt64(X))
#define GuidGetDatum(X)			Int64GetDatum((int64) (X))
#define PG_GETARG_GUID(n)		DatumGetGuid(PG_GETARG_DATUM(n))
#define PG_RETURN_GUID(x)		return GuidGetDatum(x)

static inline guid
GuidPack(int64 ms, int32 node, int32 sequence)
{
	return (ms << GUID_TIME_SHIFT) |
		((int64) node << GUID_NODE_SHIFT) |
		(int64) sequence;
}

static inline int64
GuidMs(guid id)
{
	return id >> GUID_TIME_SHIFT;
}

static inline int32
GuidNode(guid id)
{
	return (int32) ((id >> GUID_NODE_SHIFT) & GUID_MAX_NODE);
}

static inline int32
GuidSequence(guid id)
{
	return (int32) (id & GUID_MAX_SEQUENCE);
}

/* Creation time of a guid-millisecond as a TimestampTz. */
static inline TimestampTz
GuidMsToTimestamp(int64 ms)
{
	return GUID_EPOCH_PG_USEC + ms * 1000;
}

#endif							/* GUID_H */
