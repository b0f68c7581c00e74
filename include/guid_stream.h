/*-------------------------------------------------------------------------
 *
 * guid_stream.h
 *		The audit stream's formats: the messages the "guid" output plugin
 *		(coordinator/decoder.c) writes and the publisher's replication
 *		client (coordinator/repl_client.c) reads, and the names and limits
 *		of the Kafka topics the publisher writes.
 *
 * The output plugin writes, for each committed transaction that inserted
 * into guid.audit, in network byte order:
 *
 *		'B' end_lsn(8) xid(4) commit_time(8)
 *		'I' guid(8) key_len(4) key value		(once per row)
 *		'C' end_lsn(8)
 *
 * end_lsn is the end of the commit record; key is the row's service (the
 * Kafka message key) and value its JSON (decoder.c says what it holds).
 * Both sides use the functions below, so that this header alone defines the
 * format: change it here, and both follow.
 *
 * The rows go to the topic guid.kafka_topic.  The checkpoint, the end LSN
 * ("%X/%X") of the last transaction in Kafka, or "init" before the first,
 * is the metadata of the offset the publisher commits, inside each Kafka
 * transaction, for partition 0 of that topic in the consumer group
 * GUID_CHECKPOINT_GROUP_PREFIX<transactional.id> (coordinator/publisher.c
 * says why).  Since 1.5 the LSN is followed by what a failover needs
 * (coordinator/publisher_failover.c): " tli=N" (its timeline),
 * " xmin=N off=o0,o1,..." (a mark) and " recovering"; older values are a
 * bare LSN.  Releases before 1.6 wrote it as a record (key the
 * transactional.id) in partition 0 of the compacted topic
 * <guid.kafka_topic>_checkpoints, which 1.6 reads once, on upgrade.
 *
 * A consumer-group offset's metadata holds at most offset.metadata.max.bytes
 * (4096 by default): GUID_CHECKPOINT_MAX_PARTS is how many partitions of the
 * data topic a mark can record within that whatever their offsets (20
 * characters each, after at most 80 for the rest).
 *
 * Nothing here calls into PostgreSQL beyond pqformat's StringInfo writers:
 * a backend (the walsender running the plugin) and the publisher worker
 * both include it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_STREAM_H
#define GUID_STREAM_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "port/pg_bswap.h"

/* Kafka's longest topic name, and what the checkpoint topic of releases
 * before 1.6 appends. */
#define GUID_KAFKA_TOPIC_MAX	249
#define GUID_CHECKPOINT_SUFFIX	"_checkpoints"
/* The checkpoint's consumer group: this, then the transactional.id. */
#define GUID_CHECKPOINT_GROUP_PREFIX	"guid-ckpt-"
/* The checkpoint written before the slot exists (nothing published yet). */
#define GUID_CHECKPOINT_INIT	"init"
/* A checkpoint value ("%X/%X tli=N xmin=N off=o,o,...") and its NUL: the
 * brokers' default offset.metadata.max.bytes, plus one. */
#define GUID_CHECKPOINT_MAX		4097
/* The most data topic partitions a checkpoint's mark records. */
#define GUID_CHECKPOINT_MAX_PARTS	200

/* Message types */
#define GUID_STREAM_BEGIN		'B'
#define GUID_STREAM_ROW			'I'
#define GUID_STREAM_COMMIT		'C'

/* 'B': type, end_lsn, xid, commit_time */
#define GUID_STREAM_BEGIN_END_LSN		1
#define GUID_STREAM_BEGIN_XID			9
#define GUID_STREAM_BEGIN_COMMIT_TIME	13
#define GUID_STREAM_BEGIN_LEN			21
/* 'I': type, guid, key_len, then key_len bytes of key and the value */
#define GUID_STREAM_ROW_GUID			1
#define GUID_STREAM_ROW_KEY_LEN			9
#define GUID_STREAM_ROW_HEADER_LEN		13
/* 'C': type, end_lsn */
#define GUID_STREAM_COMMIT_END_LSN		1
#define GUID_STREAM_COMMIT_LEN			9

/* Read a 64-bit or 32-bit integer in network byte order from p. */
static inline uint64
GuidStreamGet64(const char *p)
{
	uint64		v;

	memcpy(&v, p, 8);
	return pg_ntoh64(v);
}

static inline uint32
GuidStreamGet32(const char *p)
{
	uint32		v;

	memcpy(&v, p, 4);
	return pg_ntoh32(v);
}

/* ----------
 * Writing (the output plugin)
 * ----------
 */
static inline void
GuidStreamWriteBegin(StringInfo out, XLogRecPtr end_lsn, TransactionId xid,
					 TimestampTz commit_time)
{
	pq_sendbyte(out, GUID_STREAM_BEGIN);
	pq_sendint64(out, end_lsn);
	pq_sendint32(out, xid);
	pq_sendint64(out, commit_time);
}

static inline void
GuidStreamWriteRow(StringInfo out, int64 guid, const char *key, uint32 keylen,
				   const char *value, int valuelen)
{
	pq_sendbyte(out, GUID_STREAM_ROW);
	pq_sendint64(out, guid);
	pq_sendint32(out, keylen);
	pq_sendbytes(out, key, keylen);
	pq_sendbytes(out, value, valuelen);
}

static inline void
GuidStreamWriteCommit(StringInfo out, XLogRecPtr end_lsn)
{
	pq_sendbyte(out, GUID_STREAM_COMMIT);
	pq_sendint64(out, end_lsn);
}

/* ----------
 * Reading (the replication client).  m[0] is the type; each returns false
 * if the message of len bytes is too short for its type.
 * ----------
 */
static inline bool
GuidStreamReadBegin(const char *m, int len, XLogRecPtr *end_lsn,
					TimestampTz *commit_time)
{
	if (len < GUID_STREAM_BEGIN_LEN)
		return false;
	*end_lsn = GuidStreamGet64(m + GUID_STREAM_BEGIN_END_LSN);
	*commit_time = (TimestampTz) GuidStreamGet64(m + GUID_STREAM_BEGIN_COMMIT_TIME);
	return true;
}

/* The key and the value of a row; they point into m. */
static inline bool
GuidStreamReadRow(const char *m, int len, const char **key, uint32 *keylen,
				  const char **value, int *valuelen)
{
	if (len < GUID_STREAM_ROW_HEADER_LEN)
		return false;
	*keylen = GuidStreamGet32(m + GUID_STREAM_ROW_KEY_LEN);
	if (*keylen > (uint32) (len - GUID_STREAM_ROW_HEADER_LEN))
		return false;
	*key = m + GUID_STREAM_ROW_HEADER_LEN;
	*value = *key + *keylen;
	*valuelen = len - GUID_STREAM_ROW_HEADER_LEN - *keylen;
	return true;
}

static inline bool
GuidStreamReadCommit(const char *m, int len, XLogRecPtr *end_lsn)
{
	if (len < GUID_STREAM_COMMIT_LEN)
		return false;
	*end_lsn = GuidStreamGet64(m + GUID_STREAM_COMMIT_END_LSN);
	return true;
}

/* ----------
 * guid.status's view of the publisher: the status area STREAM_STATUS_AREA,
 * written only by the publisher (coordinator/publisher_status.c).
 * ----------
 */
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
	uint64		failover_republished;	/* rows published by failover
										 * recoveries (since start) */
	uint64		failover_duplicates;	/* ... of which Kafka may already
										 * have held (undecidable) */
	uint64		failover_missing;	/* guids in Kafka the new primary's
									 * guid.audit lacks */
	char		error[256];		/* last error, "" once it publishes */
} StreamStatus;

#endif							/* GUID_STREAM_H */
