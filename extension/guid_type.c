/*-------------------------------------------------------------------------
 *
 * guid_type.c
 *		Input, output and binary receive of the guid type, and the cast
 *		from bigint.
 *
 * A guid is stored as an int8 (CREATE TYPE ... LIKE = pg_catalog.int8) whose
 * sign bit is always clear.  Text form is plain decimal digits: no sign, no
 * exponent, surrounding whitespace allowed as for int8.  Every way in (text,
 * binary, cast) rejects a negative value, so a stored guid is always one
 * that could have been generated.  Sending is core's int8send.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"

#include "guid.h"

/*
 * guid_parse: parse the text form of a guid.
 *
 * Raises ERRCODE_INVALID_TEXT_REPRESENTATION for anything but optional
 * whitespace around one or more decimal digits, and
 * ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE above 2^63-1.
 */
static guid
guid_parse(const char *str)
{
	const char *p = str;
	int64		value = 0;
	bool		overflow = false;
	int			digits = 0;

	while (isspace((unsigned char) *p))
		p++;

	for (; isdigit((unsigned char) *p); p++, digits++)
	{
		int			d = *p - '0';

		if (value > (PG_INT64_MAX - d) / 10)
			overflow = true;
		else
			value = value * 10 + d;
	}

	while (isspace((unsigned char) *p))
		p++;

	if (digits == 0 || *p != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s: \"%s\"", "guid", str),
				 errdetail("A guid is written as a non-negative decimal integer without a sign.")));

	if (overflow)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value \"%s\" is out of range for type %s", str, "guid"),
				 errdetail("A guid is at most 9223372036854775807.")));

	return (guid) value;
}

PG_FUNCTION_INFO_V1(guid_in);
Datum
guid_in(PG_FUNCTION_ARGS)
{
	PG_RETURN_GUID(guid_parse(PG_GETARG_CSTRING(0)));
}

PG_FUNCTION_INFO_V1(guid_out);
Datum
guid_out(PG_FUNCTION_ARGS)
{
	guid		id = PG_GETARG_GUID(0);
	char	   *buf = palloc(MAXINT8LEN + 1);

	snprintf(buf, MAXINT8LEN + 1, INT64_FORMAT, (int64) id);
	PG_RETURN_CSTRING(buf);
}

/* A guid from a number, refusing the negative ones. */
static guid
guid_from_number(int64 value)
{
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value \"" INT64_FORMAT "\" is out of range for type %s",
						value, "guid"),
				 errdetail("A guid is never negative.")));
	return value;
}

PG_FUNCTION_INFO_V1(guid_recv);
Datum
guid_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);

	PG_RETURN_GUID(guid_from_number(pq_getmsgint64(buf)));
}

PG_FUNCTION_INFO_V1(guid_from_bigint);
Datum
guid_from_bigint(PG_FUNCTION_ARGS)
{
	PG_RETURN_GUID(guid_from_number(PG_GETARG_INT64(0)));
}

PG_FUNCTION_INFO_V1(guid_from_int4);
Datum
guid_from_int4(PG_FUNCTION_ARGS)
{
	PG_RETURN_GUID(guid_from_number(PG_GETARG_INT32(0)));
}
