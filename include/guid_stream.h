/*-------------------------------------------------------------------------
 *
 * guid_stream.h
 *		The audit stream.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_STREAM_H
#define GUID_STREAM_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

/* guid.status's view of the publisher: the status area "publisher". */
#define STREAM_STATUS_AREA		"publisher"

typedef struct StreamStatus
{
	char		state[48];		/* what it is doing; "" before it starts */
	int			pid;			/* the publisher's pid, 0 if none */
	uint64		rows;			/* audit rows committed to Kafka */
	uint64		xacts;			/* PostgreSQL transactions committed to Kafka */
	uint64		commits;		/* Kafka transactions committed */
	XLogRecPtr	published_lsn;	/* end LSN of the last transaction in Kafka:
								 * the checkpoint */
	TimestampTz oldest_pending; /* commit time of the oldest transaction read
								 * but not yet in Kafka; 0 if none */
	TimestampTz caught_up_at;	/* last time nothing was waiting */
	double		commit_ms;		/* duration of the last Kafka commit */
	char		error[256];		/* last error, "" once it publishes */
} StreamStatus;

#endif							/* GUID_STREAM_H */
