/*-------------------------------------------------------------------------
 *
 * publisher_int.h
 *		What the files of the audit stream's publisher share, and nothing
 *		else: other modules use include/guid.h, and the message format is
 *		include/guid_stream.h's.
 *
 *		publisher.c				the worker: sessions, backoff, fencing
 *		publisher_kafka.c		the Kafka transaction: rows, checkpoint,
 *								commit, then confirm; reading the
 *								checkpoint back
 *		repl_client.c			the replication connection and its protocol
 *		publisher_status.c		every write of guid.status's figures
 *		publisher_settings.c	settings, worker registration, slot lookups
 *
 * Everything here runs in the publisher worker only (publisher_settings.c
 * aside), on one thread: nothing is locked but its status area.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISHER_INT_H
#define PUBLISHER_INT_H

#include <libpq-fe.h>

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

#include "guid_stream.h"
#include "kafka_sink.h"

/* A Kafka transaction is committed at the first PostgreSQL transaction
 * boundary after this many rows, even while more are arriving. */
#define PUB_BATCH_ROWS			20000
/* Standby status updates at least this often, ms */
#define PUB_STATUS_MS			1000
/* Read ahead from the walsender while Kafka is waited for: at most this */
#define PUB_PREFETCH_MAX		((uint64) 64 * 1024 * 1024)
/* Repeat an unchanged error or the retained-WAL warning this often, ms */
#define PUB_WARN_MS				60000
/* A librdkafka step still retrying this long is logged (then every
 * PUB_WARN_MS), ms */
#define PUB_STALL_LOG_MS		10000

/* A mark records at most this many partitions of the data topic; a data
 * topic with more is refused (they would not fit in a checkpoint). */
#define PUB_MARK_PARTS			GUID_CHECKPOINT_MAX_PARTS
/* Marks are taken at most this often, ms, and this many are kept. */
#define PUB_MARK_MS				10000
#define PUB_MARK_HISTORY		16

/*
 * A mark (coordinator/publisher_failover.c): every audit row whose xmin
 * precedes xmin is in Kafka once the checkpoint reaches at, and every row
 * this cluster publishes with a later xmin lies at or after offsets[] in
 * the data topic.
 */
typedef struct PubMark
{
	bool		valid;
	TransactionId xmin;
	TransactionId from;			/* valid: xids from here up to xmin were
								 * used again after a promotion (rows with
								 * them are candidates, counted) */
	XLogRecPtr	at;				/* in memory only: the insert position */
	int			nparts;
	int64		offsets[PUB_MARK_PARTS];
} PubMark;

/* The data topic's ends, then the next xid: a candidate for a mark. */
typedef struct PubMarkPoint
{
	TransactionId next_xid;
	int			nparts;
	int64		offsets[PUB_MARK_PARTS];
} PubMarkPoint;

/* A checkpoint value, parsed. */
typedef struct PubCheckpoint
{
	bool		init;			/* "init": nothing published yet */
	XLogRecPtr	lsn;
	TimeLineID	tli;			/* 0: not recorded (before 1.5) */
	bool		recovering;		/* a failover recovery had begun */
	PubMark		mark;
} PubCheckpoint;

/*
 * One session: a producer and a replication connection, from their creation
 * to the first failure.  Allocated in the session's memory context.
 */
typedef struct PubSession
{
	KafkaSink  *ks;
	PGconn	   *conn;
	bool		copying;		/* START_REPLICATION is running on conn */
	char		tid[NAMEDATALEN * 3];	/* transactional.id */
	char		ckpt_group[NAMEDATALEN * 3 + 16];	/* the checkpoint's
													 * consumer group */
	char		ckpt_topic[GUID_KAFKA_TOPIC_MAX + 1];	/* before 1.6 */
	bool		legacy_ckpt;	/* the checkpoint came from ckpt_topic: the
								 * next commit deletes that record */
	XLogRecPtr	checkpoint;		/* last end LSN committed to Kafka */
	XLogRecPtr	confirmed;		/* last LSN sent as flushed */
	XLogRecPtr	server_end;		/* walsender position from keepalives */
	bool		in_xact;		/* between 'B' and 'C' */
	XLogRecPtr	xact_end;		/* end LSN of that transaction */
	bool		skipping;		/* that transaction is already in Kafka */
	bool		kafka_open;		/* a Kafka transaction is open */
	XLogRecPtr	pending_end;	/* end LSN of the last whole transaction in
								 * the open Kafka transaction */
	uint64		batch_rows;
	uint64		batch_xacts;
	TimestampTz last_status;
	TimestampTz last_idle_confirm;
	TimestampTz last_commit;	/* of a checkpoint, by this session */
	bool		reply_wanted;
	uint64		prefetched;		/* bytes ReplPrefetch read ahead, less what
								 * ReplRead took since */
	int			step_ms;		/* timeout of pub_retry's current step */
	/* failover (coordinator/publisher_failover.c) */
	TimeLineID	tli;			/* this server's timeline */
	PubMark		mark;			/* recorded in every checkpoint */
	PubMark		pending;		/* recorded once the checkpoint reaches at */
	TimestampTz last_mark;
	PubMarkPoint *points;		/* PUB_MARK_HISTORY, a ring */
	int			npoints;
} PubSession;

/* coordinator/publisher_settings.c: settings only the publisher reads (the
 * shared ones are the core's: guid_core.h) */
extern char *guid_kafka_topic;
extern char *guid_kafka_properties;
extern char *guid_kafka_properties_file;
extern char *guid_publisher_conninfo;
extern char *guid_publisher_standby_slots;
#ifdef GUID_FAULT_INJECTION
extern char *guid_publisher_test_pause;
#endif

/* coordinator/publisher.c: waiting in the worker */
extern void PubProcessInterrupts(void);
extern void PubWait(PubSession *s, long ms);
extern void PubWarnLag(PubSession *s);

/* coordinator/publisher_kafka.c: the session's Kafka transactions */
extern bool PubKafkaStart(PubSession *s);
extern bool PubReadCheckpoint(PubSession *s, const char *file_properties,
							  char *value, size_t len, bool *found);
extern bool PubCommitInitCheckpoint(PubSession *s);
extern bool PubCommitCheckpointValue(PubSession *s, const char *value);
extern bool PubCommit(PubSession *s, XLogRecPtr end_lsn);
extern bool PubConfirmIdle(PubSession *s, XLogRecPtr end_lsn);
extern bool PubOnBegin(PubSession *s, XLogRecPtr end_lsn, TimestampTz commit_time);
extern bool PubOnRow(PubSession *s, const char *key, uint32 keylen,
					 const char *value, int valuelen);
extern void PubOnCommit(PubSession *s, XLogRecPtr end_lsn);
extern void PubKafkaSettle(PubSession *s);
extern void PubStuck(const char *err) pg_attribute_noreturn();

/* coordinator/publisher_failover.c: checkpoints, marks, recovery */
extern bool PubCheckpointParse(const char *value, PubCheckpoint *c);
extern void PubCheckpointFormat(PubSession *s, XLogRecPtr end_lsn, bool recovering,
								char *buf, size_t len);
extern bool PubMarkMaybe(PubSession *s);
extern bool PubFailoverRecover(PubSession *s, const PubCheckpoint *c, bool drop_slot);
extern bool PubTimelineSwitch(PubSession *s, TimeLineID tli, XLogRecPtr *switchpoint);

/* coordinator/publisher_standby.c: guid.publisher_standby_slots */
extern bool PubStandbysFlushed(XLogRecPtr lsn, char *why, size_t whylen);
extern bool PubWaitForStandbys(PubSession *s, XLogRecPtr lsn);

/* coordinator/repl_client.c: the replication connection */
extern bool ReplConnect(PubSession *s);
extern bool ReplCreateSlot(PubSession *s, XLogRecPtr *consistent_point, bool use_snapshot);
extern bool ReplDropSlot(PubSession *s);
extern PGresult *ReplExec(PubSession *s, const char *command, ExecStatusType expect);
extern bool ReplStart(PubSession *s);
extern bool ReplRead(PubSession *s, bool *drained);
extern void ReplPrefetch(PubSession *s);
extern bool ReplSendStatus(PubSession *s, bool force);

/*
 * coordinator/publisher_status.c: every write of the publisher's figures in
 * guid.status (its status area)
 */
extern void PubStatusInit(void);
extern void PubSetState(const char *state);
extern const char *PubState(void);
extern void PubNoteError(const char *msg);
extern void PubFail(int elevel, const char *fmt,...) pg_attribute_printf(2, 3);
extern void PubClearError(void);
extern void PubAttach(void);
extern void PubDetach(int code, Datum arg);
extern void PubPending(TimestampTz commit_time);
extern void PubPublished(uint64 rows, uint64 xacts, XLogRecPtr lsn,
						 TimestampTz now, double ms);
extern void PubCaughtUp(TimestampTz now);
extern void PubRetrying(void);
extern void PubFailoverCounted(uint64 republished, uint64 duplicates, uint64 missing);

#endif							/* PUBLISHER_INT_H */
