/*-------------------------------------------------------------------------
 *
 * publisher.c
 *		The guid publisher: a background worker that streams committed
 *		guid.audit rows from a logical replication slot into Kafka, exactly
 *		once.
 *
 * The cycle
 * ---------
 * The worker opens a replication connection to its own server (libpq,
 * replication=database, as PostgreSQL's apply worker does) and runs
 * START_REPLICATION on the slot guid.slot_name with the "guid" output plugin
 * (coordinator/decoder.c), which sends only committed transactions that
 * inserted audit rows, each whole: 'B', one 'I' per row, 'C' with the end
 * LSN of the commit record (the format is include/guid_stream.h's).
 *
 * Rows go into an open Kafka transaction as they arrive.  When the stream
 * has nothing more for the moment and no PostgreSQL transaction is half
 * read (or the batch is large), the worker adds a checkpoint record (key
 * the transactional.id, value the end LSN of the last PostgreSQL
 * transaction in the batch) to the compacted topic <guid.kafka_topic>_
 * checkpoints, partition 0, and commits the Kafka transaction.  Many
 * PostgreSQL transactions may share one Kafka transaction; one PostgreSQL
 * transaction never spans two.  Only then is the slot confirmed up to that
 * LSN (a standby status update).
 *
 * Why it is exactly once
 * ----------------------
 * The rows and the checkpoint commit atomically, and consumers read with
 * isolation.level=read_committed.  The slot is only ever confirmed to a
 * position already committed to the checkpoint, so the checkpoint is never
 * behind the slot.  A new session (after any failure, or a restart) creates
 * a fresh producer, whose init_transactions fences any older producer with
 * the same transactional.id and aborts its open transaction, reads the
 * checkpoint back with read_committed, and restarts replication there:
 * transactions whose end LSN is at or below the checkpoint (the slot may
 * replay them after a crash, its position is persisted at checkpoints) are
 * skipped.  A slot found *ahead* of the checkpoint means rows may be missing
 * from Kafka: the publisher stops and says so (state "gap"), it never skips.
 * A guid.audit row the output plugin cannot decode (a column missing,
 * retyped or null) ends the stream with an ERROR; the publisher shows it
 * (state "error"), confirms nothing past it and retries with a backoff.
 *
 * The transactional.id and the checkpoint key are
 * guid-<guid.namespace>-<system identifier>-<slot>: stable across restarts
 * and node id leases, and shared by a physical copy of the cluster, which is
 * what a zombie publisher is.
 *
 * Idle WAL
 * --------
 * Transactions without audit rows produce nothing, but the walsender's
 * keepalives carry its position; everything before it has been sent.  When
 * nothing is pending the worker commits a checkpoint-only Kafka transaction
 * at that position (at most every PUB_IDLE_CONFIRM_MS) and confirms it, so an
 * idle or audit-free database does not pin WAL.  With Kafka down nothing is
 * confirmed: WAL is retained, guid.status shows the lag, and a warning is
 * logged every minute.
 *
 * Rules
 * -----
 * librdkafka's threads never run PostgreSQL code (coordinator/kafka_sink.c).
 * Every wait is a latch wait or a short librdkafka step followed by
 * CHECK_FOR_INTERRUPTS(); while Kafka is slow the worker still sends status
 * updates so the walsender does not time it out.  Errors never raise: they
 * end the session, are logged once and shown in guid.status, and a new
 * session starts after a backoff (no crash loop).  The producer is created
 * here, never in the postmaster.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libpq-fe.h>

#include "access/xlog.h"
#include "access/xlogdefs.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guid.h"
#include "guid_stream.h"
#include "kafka_sink.h"
#include "publisher_int.h"

/* A Kafka transaction is committed at the first PostgreSQL transaction
 * boundary after this many rows, even while more are arriving. */
#define PUB_BATCH_ROWS			20000
/* librdkafka steps, ms */
#define PUB_STEP_MS				200
/* Confirm idle WAL at most this often, ms */
#define PUB_IDLE_CONFIRM_MS		10000
/* Standby status updates at least this often, ms */
#define PUB_STATUS_MS			1000
/* Backoff between sessions, ms */
#define PUB_BACKOFF_MIN_MS		500
#define PUB_BACKOFF_MAX_MS		10000
/* ... and after being fenced by another producer with our transactional.id */
#define PUB_FENCED_BACKOFF_MS	5000

/* Connecting to this server may take this long, ms */
#define PUB_CONNECT_MS			30000

typedef struct PubSession
{
	KafkaSink  *ks;
	PGconn	   *conn;
	bool		copying;		/* START_REPLICATION is running on conn */
	char		tid[NAMEDATALEN * 3];	/* transactional.id = checkpoint key */
	char		ckpt_topic[GUID_KAFKA_TOPIC_MAX + 1];
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
	bool		reply_wanted;
} PubSession;

static TimestampTz pub_warned_lag_at = 0;


/* ----------
 * Status
 * ----------
 */
/* While nothing can be published, warn once a minute about retained WAL. */
static void
pub_warn_lag(PubSession *s)
{
	XLogRecPtr	confirmed;
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(pub_warned_lag_at, now, PUB_WARN_MS))
		return;
	if (pub_warned_lag_at == 0)
	{
		pub_warned_lag_at = now;	/* not in the first minute */
		return;
	}
	pub_warned_lag_at = now;
	if (GuidSlotPosition(guid_slot_name, &confirmed, NULL, 0))
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("guid publisher cannot publish: replication slot \"%s\" retains %llu bytes of WAL",
						guid_slot_name,
						(unsigned long long) (GetXLogInsertRecPtr() - confirmed)),
				 errhint("Check that Kafka is reachable at guid.kafka_brokers (\"%s\"); see guid.status.",
						 guid_kafka_brokers)));
}

/* ----------
 * Waiting
 * ----------
 */
static void
pub_process_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Sleep up to ms on the latch (and the connection's socket, if any). */
static void
pub_wait(PubSession *s, long ms)
{
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
	pgsocket	sock = PGINVALID_SOCKET;

	if (s && s->conn && PQsocket(s->conn) >= 0)
	{
		events |= WL_SOCKET_READABLE;
		sock = PQsocket(s->conn);
	}
	(void) WaitLatchOrSocket(MyLatch, events, sock, ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	pub_process_interrupts();
}

/* ----------
 * The replication connection
 * ----------
 */

/* Send a standby status update: everything up to s->checkpoint is done. */
static bool
pub_send_status(PubSession *s, bool force)
{
	char		buf[1 + 8 * 4 + 1];
	char	   *p = buf;
	TimestampTz now = GetCurrentTimestamp();
	uint64		v;
	int			i;

	if (s->conn == NULL || !s->copying)
		return true;
	if (!force && !s->reply_wanted && s->confirmed == s->checkpoint &&
		!TimestampDifferenceExceeds(s->last_status, now, PUB_STATUS_MS))
		return true;

	*p++ = 'r';
	for (i = 0; i < 4; i++)
	{
		v = i < 3 ? (uint64) s->checkpoint : (uint64) now;
		v = pg_hton64(v);
		memcpy(p, &v, 8);
		p += 8;
	}
	*p++ = 0;
	if (PQputCopyData(s->conn, buf, p - buf) <= 0 || PQflush(s->conn) < 0)
	{
		PubFail(LOG, "replication connection: %s", PQerrorMessage(s->conn));
		return false;
	}
	s->confirmed = s->checkpoint;
	s->last_status = now;
	s->reply_wanted = false;
	return true;
}

/* Wait for the result of a command sent with PQsendQuery.  NULL on a lost
 * connection. */
static PGresult *
pub_result(PubSession *s)
{
	while (PQisBusy(s->conn))
	{
		pub_wait(s, 1000);
		if (!PQconsumeInput(s->conn))
			return NULL;
	}
	return PQgetResult(s->conn);
}

/* Run a replication command; returns its result (caller clears) or NULL
 * after reporting the error. */
static PGresult *
pub_exec(PubSession *s, const char *command, ExecStatusType expect)
{
	PGresult   *res;
	PGresult   *extra;

	if (!PQsendQuery(s->conn, command))
	{
		PubFail(LOG, "could not send \"%s\": %s", command, PQerrorMessage(s->conn));
		return NULL;
	}
	res = pub_result(s);
	if (res == NULL || PQresultStatus(res) != expect)
	{
		PubFail(LOG, "\"%s\" failed: %s", command,
				 res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
		PQclear(res);
		while ((extra = PQgetResult(s->conn)) != NULL)
			PQclear(extra);
		return NULL;
	}
	if (expect != PGRES_COPY_BOTH)
		while ((extra = pub_result(s)) != NULL)
			PQclear(extra);
	return res;
}

/* value with ' and \ escaped, for a single-quoted conninfo value */
static char *
pub_conninfo_quote(const char *value)
{
	StringInfoData buf;
	const char *p;

	initStringInfo(&buf);
	for (p = value; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

/* Connect to this server for replication, without blocking the latch; give
 * up after PUB_CONNECT_MS. */
static bool
pub_connect(PubSession *s)
{
	char	   *socket_dir = NULL;
	char	   *conninfo;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	TimestampTz start = GetCurrentTimestamp();

	if (Unix_socket_directories && Unix_socket_directories[0] != '\0')
	{
		char	   *comma;

		socket_dir = pstrdup(Unix_socket_directories);
		comma = strchr(socket_dir, ',');
		if (comma)
			*comma = '\0';
	}
	conninfo = psprintf("host='%s' port=%d dbname='%s' replication=database "
						"application_name='guid publisher' %s",
						pub_conninfo_quote(socket_dir ? socket_dir : "localhost"), PostPortNumber,
						pub_conninfo_quote(guid_database), guid_publisher_conninfo);
	s->conn = PQconnectStart(conninfo);
	pfree(conninfo);
	if (s->conn == NULL)
	{
		PubFail(LOG, "out of memory connecting to this server");
		return false;
	}
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
	{
		int			events = st == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;

		if (PQstatus(s->conn) == CONNECTION_BAD)
			break;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), PUB_CONNECT_MS))
		{
			PubFail(LOG, "replication connection to database \"%s\" timed out", guid_database);
			return false;
		}
		(void) WaitLatchOrSocket(MyLatch, events | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 PQsocket(s->conn), 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		pub_process_interrupts();
		st = PQconnectPoll(s->conn);
	}
	if (PQstatus(s->conn) != CONNECTION_OK)
	{
		PubFail(LOG, "replication connection to database \"%s\" failed: %s",
				 guid_database, PQerrorMessage(s->conn));
		return false;
	}
	return true;
}

/* ----------
 * Kafka steps
 * ----------
 */

/*
 * pub_retry: repeat a librdkafka step while it is retriable, keeping the
 * replication connection alive.  Returns the final status.
 */
typedef KafkaStatus (*PubStep) (PubSession *s, char *err, size_t errlen);

static KafkaStatus
pub_retry(PubSession *s, PubStep step, const char *what)
{
	char		err[GUID_ERROR_LEN];
	KafkaStatus st;

	for (;;)
	{
		st = step(s, err, sizeof(err));
		if (st != KAFKA_RETRY)
			break;
		KafkaSinkPoll(s->ks);
		if (KafkaSinkLastError(s->ks)[0] != '\0')
			PubFail(LOG, "%s: waiting for Kafka at %s: %s", what, guid_kafka_brokers,
					 KafkaSinkLastError(s->ks));
		else
			PubFail(DEBUG1, "%s: waiting for Kafka at %s: %s", what, guid_kafka_brokers, err);
		pub_warn_lag(s);
		if (!pub_send_status(s, false))
			return KAFKA_FATAL;
		pub_process_interrupts();
	}
	if (st != KAFKA_OK)
		PubFail(LOG, "%s", err);
	return st;
}

static KafkaStatus
pub_step_init(PubSession *s, char *err, size_t errlen)
{
	return KafkaSinkInitTransactions(s->ks, PUB_STEP_MS * 5, err, errlen);
}

static KafkaStatus
pub_step_commit(PubSession *s, char *err, size_t errlen)
{
	return KafkaSinkCommit(s->ks, PUB_STEP_MS, err, errlen);
}

static KafkaStatus
pub_step_topics(PubSession *s, char *err, size_t errlen)
{
	KafkaStatus st = KafkaSinkEnsureTopic(s->ks, guid_kafka_topic, false, 5000, err, errlen);

	if (st == KAFKA_OK)
		st = KafkaSinkEnsureTopic(s->ks, s->ckpt_topic, true, 5000, err, errlen);
	return st;
}

/* Produce one message, waiting while librdkafka's queue is full. */
static bool
pub_produce(PubSession *s, const char *topic, int32 partition,
			const char *key, size_t keylen, const char *value, size_t len,
			const char *lsn)
{
	char		err[GUID_ERROR_LEN];
	KafkaStatus st;

	while ((st = KafkaSinkProduce(s->ks, topic, partition, key, keylen, value, len,
								  lsn, err, sizeof(err))) == KAFKA_RETRY)
	{
		KafkaSinkPoll(s->ks);
		pub_wait(NULL, 10);
		if (!pub_send_status(s, false))
			return false;
	}
	if (st != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}
	return true;
}

#ifdef GUID_FAULT_INJECTION
/*
 * pub_pause: for fault tests, wait here while guid.publisher_test_pause
 * names this step.
 */
static void
pub_pause(PubSession *s, const char *step)
{
	char		state[48];

	if (guid_publisher_test_pause == NULL || strcmp(guid_publisher_test_pause, step) != 0)
		return;
	snprintf(state, sizeof(state), "paused %s", step);
	PubSetState(state);
	ereport(LOG, (errmsg_internal("guid publisher: paused %s", step)));
	while (strcmp(guid_publisher_test_pause, step) == 0)
	{
		(void) pub_send_status(s, false);
		pub_wait(NULL, 100);
	}
	PubSetState("streaming");
}
#else
#define pub_pause(s, step) ((void) 0)
#endif

/*
 * pub_commit: put the checkpoint end_lsn in the open Kafka transaction,
 * commit it, then confirm end_lsn to the slot.  Returns false after
 * reporting a failure (the session must end).
 */
static bool
pub_commit(PubSession *s, XLogRecPtr end_lsn)
{
	char		lsn[32];
	TimestampTz start;
	TimestampTz now;
	double		ms;

	snprintf(lsn, sizeof(lsn), "%X/%X", LSN_FORMAT_ARGS(end_lsn));
	if (!pub_produce(s, s->ckpt_topic, 0, s->tid, strlen(s->tid), lsn, strlen(lsn), NULL))
		return false;

	pub_pause(s, "before_commit");
	start = GetCurrentTimestamp();
	if (pub_retry(s, pub_step_commit, "commit") != KAFKA_OK)
		return false;
	now = GetCurrentTimestamp();
	ms = (double) (now - start) / 1000.0;

	s->kafka_open = false;
	s->checkpoint = end_lsn;
	PubPublished(s->batch_rows, s->batch_xacts, end_lsn, now, ms);
	s->batch_rows = s->batch_xacts = 0;
	PubClearError();

	pub_pause(s, "before_confirm");
	return pub_send_status(s, true);
}

/* A Kafka transaction holding only a checkpoint: confirm idle WAL. */
static bool
pub_confirm_idle(PubSession *s, XLogRecPtr end_lsn)
{
	char		err[GUID_ERROR_LEN];

	if (KafkaSinkBegin(s->ks, err, sizeof(err)) != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}
	s->kafka_open = true;
	return pub_commit(s, end_lsn);
}

/* ----------
 * The stream
 * ----------
 */
/* Handle one message from the decoder.  Returns false on failure. */
static bool
pub_decoded(PubSession *s, const char *m, int len)
{
	char		err[GUID_ERROR_LEN];

	switch (m[0])
	{
		case GUID_STREAM_BEGIN:
			{
				XLogRecPtr	end_lsn;
				TimestampTz commit_time;

				if (!GuidStreamReadBegin(m, len, &end_lsn, &commit_time))
					break;
				s->in_xact = true;
				s->xact_end = end_lsn;
				s->skipping = end_lsn <= s->checkpoint;
				if (s->skipping)
					return true;
				pub_pause(s, "before_produce");
				if (!s->kafka_open)
				{
					if (KafkaSinkBegin(s->ks, err, sizeof(err)) != KAFKA_OK)
					{
						PubFail(LOG, "%s", err);
						return false;
					}
					s->kafka_open = true;
					PubPending(commit_time);
				}
				return true;
			}
		case GUID_STREAM_ROW:
			{
				const char *key;
				const char *value;
				uint32		keylen;
				int			valuelen;
				char		lsn[32];

				if (len < GUID_STREAM_ROW_HEADER_LEN)
					break;
				if (s->skipping)
					return true;
				if (!GuidStreamReadRow(m, len, &key, &keylen, &value, &valuelen))
					break;
				/* the LSN header: the transaction's end LSN, also in the JSON */
				snprintf(lsn, sizeof(lsn), "%X/%X", LSN_FORMAT_ARGS(s->xact_end));
				return pub_produce(s, guid_kafka_topic, -1, key, keylen,
								   value, valuelen, lsn) &&
					(++s->batch_rows, true);
			}
		case GUID_STREAM_COMMIT:
			{
				XLogRecPtr	end_lsn;

				if (!GuidStreamReadCommit(m, len, &end_lsn))
					break;
				s->in_xact = false;
				if (!s->skipping)
				{
					s->pending_end = end_lsn;
					s->batch_xacts++;
				}
				s->skipping = false;
				return true;
			}
	}
	PubFail(LOG, "malformed message from the guid output plugin (type %c, %d bytes)", m[0], len);
	return false;
}

/*
 * pub_undecodable: true if sqlstate, ending the replication stream, is one
 * the output plugin raises for a guid.audit row it cannot decode (a column
 * missing, retyped or null; coordinator/decoder.c).
 */
static bool
pub_undecodable(const char *sqlstate)
{
	return strcmp(sqlstate, "42703") == 0 ||	/* undefined_column */
		strcmp(sqlstate, "42804") == 0 ||	/* datatype_mismatch */
		strcmp(sqlstate, "23502") == 0;	/* not_null_violation */
}

/*
 * pub_read: take what the walsender sent so far.  Sets *drained when the
 * connection has nothing more right now.  Returns false on failure.
 */
static bool
pub_read(PubSession *s, bool *drained)
{
	bool		must_read = true;	/* read the socket before the next message */
	bool		just_read = false;	/* socket read, no message since */

	*drained = false;
	for (;;)
	{
		char	   *buf = NULL;
		int			len;
		bool		ok = true;

		if (must_read)
		{
			if (!PQconsumeInput(s->conn))
			{
				PubFail(LOG, "replication connection lost: %s", PQerrorMessage(s->conn));
				return false;
			}
			must_read = false;
			just_read = true;
		}
		len = PQgetCopyData(s->conn, &buf, 1);
		if (len == 0)
		{
			/*
			 * Nothing complete is buffered: read the socket again, so that a
			 * batch takes everything the walsender sent while we committed
			 * (one PQconsumeInput reads only what fits in libpq's buffer).
			 */
			if (just_read)
			{
				*drained = true;
				return true;
			}
			must_read = true;
			continue;
		}
		just_read = false;
		if (len < 0)
		{
			PGresult   *res = PQgetResult(s->conn);
			const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

			if (sqlstate && pub_undecodable(sqlstate))
			{
				/* every retry stops at the same row: an operator must act */
				PubSetState("error");
				PubFail(WARNING, "cannot decode guid.audit after %X/%X: %s",
						 LSN_FORMAT_ARGS(s->checkpoint),
						 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
			}
			else
				PubFail(LOG, "replication stream ended: %s",
						 res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
			PQclear(res);
			return false;
		}
		if (buf[0] == 'w' && len > 25)
			ok = pub_decoded(s, buf + 25, len - 25);
		else if (buf[0] == 'k' && len >= 18)
		{
			XLogRecPtr	end = GuidStreamGet64(buf + 1);

			if (end > s->server_end)
				s->server_end = end;
			if (buf[17])
				s->reply_wanted = true;
		}
		PQfreemem(buf);
		if (!ok)
			return false;
		/* a large batch: commit at this transaction boundary */
		if (s->kafka_open && !s->in_xact && s->batch_rows >= PUB_BATCH_ROWS)
			return true;
	}
}

/*
 * pub_check_slot: compare the slot with the Kafka checkpoint (ckpt, found),
 * creating the slot if it does not exist.  Sets s->checkpoint.  Returns
 * false if the session cannot stream (after reporting why).
 */
static bool
pub_check_slot(PubSession *s, const char *ckpt, bool found)
{
	XLogRecPtr	slot_lsn;
	XLogRecPtr	ckpt_lsn = InvalidXLogRecPtr;
	char		plugin[NAMEDATALEN];
	uint32		hi,
				lo;
	bool		init = found && strcmp(ckpt, GUID_CHECKPOINT_INIT) == 0;

	if (found && !init)
	{
		if (sscanf(ckpt, "%X/%X", &hi, &lo) != 2)
		{
			PubSetState("gap");
			PubFail(WARNING, "checkpoint \"%s\" in topic %s is not an LSN; publishing stopped",
					 ckpt, s->ckpt_topic);
			return false;
		}
		ckpt_lsn = ((uint64) hi << 32) | lo;
	}

	if (!GuidSlotPosition(guid_slot_name, &slot_lsn, plugin, sizeof(plugin)))
	{
		PGresult   *res;
		char	   *cmd;

		if (found && !init)
			ereport(WARNING,
					(errmsg("guid publisher: replication slot \"%s\" does not exist; creating it",
							guid_slot_name),
					 errdetail("Kafka holds everything up to %X/%X; audit rows committed after that and before now are not published.",
							   LSN_FORMAT_ARGS(ckpt_lsn))));
		/* "init" first: a crash before the real checkpoint is not a gap */
		s->kafka_open = false;
		{
			char		err[GUID_ERROR_LEN];

			if (KafkaSinkBegin(s->ks, err, sizeof(err)) != KAFKA_OK)
			{
				PubFail(LOG, "%s", err);
				return false;
			}
		}
		s->kafka_open = true;
		if (!pub_produce(s, s->ckpt_topic, 0, s->tid, strlen(s->tid),
						 GUID_CHECKPOINT_INIT, strlen(GUID_CHECKPOINT_INIT), NULL) ||
			pub_retry(s, pub_step_commit, "commit") != KAFKA_OK)
			return false;
		s->kafka_open = false;

		cmd = psprintf("CREATE_REPLICATION_SLOT \"%s\" LOGICAL guid NOEXPORT_SNAPSHOT", guid_slot_name);
		res = pub_exec(s, cmd, PGRES_TUPLES_OK);
		pfree(cmd);
		if (res == NULL)
			return false;
		if (sscanf(PQgetvalue(res, 0, 1), "%X/%X", &hi, &lo) != 2)
		{
			PQclear(res);
			PubFail(LOG, "CREATE_REPLICATION_SLOT returned no consistent point");
			return false;
		}
		PQclear(res);
		ereport(LOG,
				(errmsg("guid publisher: created replication slot \"%s\" at %X/%X",
						guid_slot_name, hi, lo)));
		s->checkpoint = ((uint64) hi << 32) | lo;
		return pub_confirm_idle(s, s->checkpoint);
	}

	if (strcmp(plugin, "guid") != 0)
	{
		PubSetState("error");
		PubFail(WARNING, "replication slot \"%s\" uses plugin \"%s\", not \"guid\"; set guid.slot_name to another name",
				 guid_slot_name, plugin);
		return false;
	}
	if (init)
	{
		/* created by a previous session that stopped before its first
		 * checkpoint: nothing can have been published or confirmed */
		s->checkpoint = slot_lsn;
		return pub_confirm_idle(s, slot_lsn);
	}
	if (!found || slot_lsn > ckpt_lsn)
	{
		char		detail[128];

		if (found)
			snprintf(detail, sizeof(detail), "the slot is confirmed to %X/%X but Kafka holds only up to %X/%X",
					 LSN_FORMAT_ARGS(slot_lsn), LSN_FORMAT_ARGS(ckpt_lsn));
		else
			snprintf(detail, sizeof(detail), "the slot is confirmed to %X/%X and Kafka holds no checkpoint for it",
					 LSN_FORMAT_ARGS(slot_lsn));
		PubSetState("gap");
		PubFail(WARNING, "gap: audit rows may be missing from Kafka: %s (key %s in %s); publishing stopped. "
				 "Drop the slot to start afresh from now, or restore the checkpoint topic",
				 detail, s->tid, s->ckpt_topic);
		return false;
	}
	if (ckpt_lsn > GetFlushRecPtr(NULL))
	{
		PubSetState("gap");
		PubFail(WARNING, "the Kafka checkpoint %X/%X (key %s in %s) is ahead of this server's WAL (%X/%X): "
				 "it was written by another cluster with the same system identifier, or before a restore; publishing stopped",
				 LSN_FORMAT_ARGS(ckpt_lsn), s->tid, s->ckpt_topic, LSN_FORMAT_ARGS(GetFlushRecPtr(NULL)));
		return false;
	}
	s->checkpoint = ckpt_lsn;
	return true;
}

/*
 * pub_session: one connected session, from a new producer to a failure.
 * Returns true if it published anything (the backoff starts over).
 */
static bool
pub_session(PubSession *s)
{
	char		err[GUID_ERROR_LEN];
	char		ckpt[64];
	bool		found = false;
	bool		streamed = false;
	KafkaStatus st;
	PGresult   *res;
	char	   *cmd;
	char	   *file_properties = NULL;

	PubSetState("connecting to Kafka");
	/* Read again for every session, so that rotated credentials are used. */
	if (guid_kafka_properties_file[0] != '\0')
	{
		file_properties = GuidReadSecretFile("guid.kafka_properties_file", guid_kafka_properties_file,
											 err, sizeof(err));
		if (file_properties == NULL)
		{
			PubSetState("error");
			PubFail(WARNING, "%s", err);
			return false;
		}
	}
	s->ks = KafkaSinkCreate(guid_kafka_brokers, guid_kafka_properties, file_properties, s->tid,
							err, sizeof(err));
	if (s->ks == NULL)
	{
		PubSetState("error");
		PubFail(WARNING, "bad Kafka settings (guid.kafka_brokers, guid.kafka_properties, guid.kafka_properties_file): %s",
				 err);
		return false;
	}
	if (pub_retry(s, pub_step_init, "init_transactions") != KAFKA_OK ||
		pub_retry(s, pub_step_topics, "creating topics") != KAFKA_OK)
		return false;

	PubSetState("reading checkpoint");
	while ((st = KafkaSinkReadCheckpoint(guid_kafka_brokers, guid_kafka_properties, file_properties,
										 s->ckpt_topic, s->tid, ckpt, sizeof(ckpt),
										 &found, 10000, err, sizeof(err))) == KAFKA_RETRY)
	{
		PubFail(LOG, "%s", err);
		pub_warn_lag(s);
	}
	if (st != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}

	PubSetState("connecting to PostgreSQL");
	if (!pub_connect(s) || !pub_check_slot(s, ckpt, found))
		return false;

	cmd = psprintf("START_REPLICATION SLOT \"%s\" LOGICAL %X/%X",
				   guid_slot_name, LSN_FORMAT_ARGS(s->checkpoint));
	res = pub_exec(s, cmd, PGRES_COPY_BOTH);
	pfree(cmd);
	if (res == NULL)
		return false;
	PQclear(res);
	s->copying = true;
	s->confirmed = InvalidXLogRecPtr;
	s->last_idle_confirm = GetCurrentTimestamp();
	PubSetState("streaming");
	PubClearError();
	ereport(LOG,
			(errmsg("guid publisher: streaming slot \"%s\" from %X/%X to topic %s (transactional.id %s)",
					guid_slot_name, LSN_FORMAT_ARGS(s->checkpoint), guid_kafka_topic, s->tid)));
	pub_warned_lag_at = 0;

	for (;;)
	{
		bool		drained;
		TimestampTz now;

		if (!pub_read(s, &drained))
			return streamed;
		KafkaSinkPoll(s->ks);

		if (s->kafka_open && !s->in_xact &&
			(drained || s->batch_rows >= PUB_BATCH_ROWS) && s->batch_xacts > 0)
		{
			if (!pub_commit(s, s->pending_end))
				return streamed;
			streamed = true;
			continue;
		}

		now = GetCurrentTimestamp();
		if (!s->kafka_open && !s->in_xact)
		{
			PubCaughtUp(now);
			if (s->server_end > s->checkpoint &&
				TimestampDifferenceExceeds(s->last_idle_confirm, now, PUB_IDLE_CONFIRM_MS))
			{
				s->last_idle_confirm = now;
				if (!pub_confirm_idle(s, s->server_end))
					return streamed;
			}
		}
		if (!pub_send_status(s, false))
			return streamed;
		if (drained)
			pub_wait(s, PUB_STATUS_MS);
	}
}

/*
 * GuidPublisherMain: entry point of the publisher worker.
 */
void
GuidPublisherMain(Datum main_arg)
{
	MemoryContext session_cxt;
	long		backoff = PUB_BACKOFF_MIN_MS;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (GuidState == NULL)
		elog(ERROR, "guid shared memory is not initialised");
	PubAttach();

	session_cxt = AllocSetContextCreate(TopMemoryContext, "guid publisher session",
										ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(session_cxt);
		PubSession *s = palloc0(sizeof(PubSession));
		bool		streamed;
		bool		fenced;

		snprintf(s->tid, sizeof(s->tid), "guid-%s-" UINT64_FORMAT "-%s",
				 GuidNamespace(), GetSystemIdentifier(), guid_slot_name);
		if (snprintf(s->ckpt_topic, sizeof(s->ckpt_topic), "%s" GUID_CHECKPOINT_SUFFIX,
					 guid_kafka_topic) >= (int) sizeof(s->ckpt_topic))
			elog(ERROR, "checkpoint topic name of \"%s\" is too long", guid_kafka_topic);

		streamed = pub_session(s);
		fenced = s->ks != NULL && KafkaSinkFenced(s->ks);
		if (fenced)
			PubFail(WARNING, "fenced: another producer started with transactional.id %s; "
					 "if a copy of this cluster publishes too, stop one of them. Retrying in %d s",
					 s->tid, PUB_FENCED_BACKOFF_MS / 1000);

		/* A failed session: drop the producer (the next one's
		 * init_transactions aborts its open transaction) and the stream. */
		if (s->conn)
			PQfinish(s->conn);
		KafkaSinkDestroy(s->ks);
		MemoryContextSwitchTo(old);
		MemoryContextReset(session_cxt);

		PubRetrying();

		backoff = streamed ? PUB_BACKOFF_MIN_MS : Min(backoff * 2, PUB_BACKOFF_MAX_MS);
		pub_wait(NULL, fenced ? PUB_FENCED_BACKOFF_MS : backoff);
	}
}
