/*-------------------------------------------------------------------------
 *
 * repl_client.c
 *		The publisher's replication connection to its own server: connect,
 *		CREATE_REPLICATION_SLOT, START_REPLICATION, reading the CopyData
 *		stream, standby status updates, and the parsing of the output
 *		plugin's messages into calls on the session.
 *
 * The connection is libpq with replication=database, as PostgreSQL's apply
 * worker uses.  Every wait is a latch wait (PubWait) on the connection's
 * socket, so that signals and postmaster death are noticed; nothing blocks
 * in libpq.  The stream carries XLogData ('w') messages, each one message
 * of the "guid" output plugin (include/guid_stream.h), and keepalives
 * ('k'), whose walsender position lets the session confirm idle WAL.
 *
 * A standby status update confirms s->checkpoint and never more: the
 * session moves s->checkpoint only after the Kafka transaction holding that
 * checkpoint committed (coordinator/publisher_kafka.c), so the slot is never
 * ahead of Kafka.
 *
 * What this file must not do: talk to Kafka, or raise an error.  Failures
 * are reported with PubFail and end the session (the functions return
 * false or NULL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/ioctl.h>

#include <libpq-fe.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guid_core.h"
#include "guid_stream.h"
#include "publisher_int.h"

/* Connecting to this server may take this long, ms */
#define REPL_CONNECT_MS			30000

/*
 * The walsender's CopyData messages (PostgreSQL's streaming replication
 * protocol): XLogData is 'w' start(8) end(8) send_time(8) and one message
 * of the output plugin; a keepalive is 'k' end(8) send_time(8) reply(1).
 */
#define REPL_XLOGDATA_HEADER_LEN	25
#define REPL_KEEPALIVE_LEN			18
#define REPL_KEEPALIVE_REPLY		17

/*
 * ReplSendStatus: send a standby status update: everything up to
 * s->checkpoint is done.  Unless force, only when something changed, the
 * walsender asked for a reply, or PUB_STATUS_MS passed.  Returns false
 * after reporting a failure.
 */
bool
ReplSendStatus(PubSession *s, bool force)
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
repl_result(PubSession *s)
{
	while (PQisBusy(s->conn))
	{
		PubWait(s, 1000);
		if (!PQconsumeInput(s->conn))
			return NULL;
	}
	return PQgetResult(s->conn);
}

/* ReplExec: run a replication command (or SQL, outside of COPY); returns
 * its result (caller clears) or NULL after reporting the error. */
PGresult *
ReplExec(PubSession *s, const char *command, ExecStatusType expect)
{
	PGresult   *res;
	PGresult   *extra;

	if (!PQsendQuery(s->conn, command))
	{
		PubFail(LOG, "could not send \"%s\": %s", command, PQerrorMessage(s->conn));
		return NULL;
	}
	res = repl_result(s);
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
		while ((extra = repl_result(s)) != NULL)
			PQclear(extra);
	return res;
}

/* value with ' and \ escaped, for a single-quoted conninfo value */
static char *
repl_conninfo_quote(const char *value)
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

/*
 * ReplConnect: connect to this server for replication, without blocking the
 * latch; give up after REPL_CONNECT_MS.  Returns false after reporting a
 * failure (s->conn may still need PQfinish).
 */
bool
ReplConnect(PubSession *s)
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
						repl_conninfo_quote(socket_dir ? socket_dir : "localhost"), PostPortNumber,
						repl_conninfo_quote(guid_database), guid_publisher_conninfo);
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
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), REPL_CONNECT_MS))
		{
			PubFail(LOG, "replication connection to database \"%s\" timed out", guid_database);
			return false;
		}
		(void) WaitLatchOrSocket(MyLatch, events | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 PQsocket(s->conn), 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		PubProcessInterrupts();
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

/*
 * ReplCreateSlot: create the slot guid.slot_name with the "guid" plugin.
 * Sets *consistent_point to where its decoding starts.  With use_snapshot
 * (caller has begun a REPEATABLE READ transaction on the connection and run
 * nothing in it yet), that transaction's snapshot becomes the slot's: every
 * transaction committed before the consistent point is visible in it, every
 * later one comes through the slot.  Returns false after reporting a
 * failure.
 */
bool
ReplCreateSlot(PubSession *s, XLogRecPtr *consistent_point, bool use_snapshot)
{
	PGresult   *res;
	char	   *cmd;
	uint32		hi,
				lo;

	cmd = psprintf("CREATE_REPLICATION_SLOT \"%s\" LOGICAL guid %s", guid_slot_name,
				   use_snapshot ? "USE_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
	res = ReplExec(s, cmd, PGRES_TUPLES_OK);
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
	*consistent_point = ((uint64) hi << 32) | lo;
	return true;
}

/*
 * ReplDropSlot: drop the slot guid.slot_name (a failover recovery that did
 * not finish left it).  Returns false after reporting a failure.
 */
bool
ReplDropSlot(PubSession *s)
{
	PGresult   *res;
	char	   *cmd;

	cmd = psprintf("DROP_REPLICATION_SLOT \"%s\" WAIT", guid_slot_name);
	res = ReplExec(s, cmd, PGRES_COMMAND_OK);
	pfree(cmd);
	if (res == NULL)
		return false;
	PQclear(res);
	ereport(LOG, (errmsg("guid publisher: dropped replication slot \"%s\" to recover again", guid_slot_name)));
	return true;
}

/*
 * ReplStart: START_REPLICATION on guid.slot_name from s->checkpoint.
 * Returns false after reporting a failure.
 */
bool
ReplStart(PubSession *s)
{
	PGresult   *res;
	char	   *cmd;

	cmd = psprintf("START_REPLICATION SLOT \"%s\" LOGICAL %X/%X",
				   guid_slot_name, LSN_FORMAT_ARGS(s->checkpoint));
	res = ReplExec(s, cmd, PGRES_COPY_BOTH);
	pfree(cmd);
	if (res == NULL)
		return false;
	PQclear(res);
	s->copying = true;
	s->confirmed = InvalidXLogRecPtr;
	return true;
}

/* ----------
 * The stream
 * ----------
 */

/*
 * repl_decoded: parse one message of the output plugin (m, len bytes) into
 * a call on the session.  Returns false on failure (reported).
 */
static bool
repl_decoded(PubSession *s, const char *m, int len)
{
	switch (m[0])
	{
		case GUID_STREAM_BEGIN:
			{
				XLogRecPtr	end_lsn;
				TimestampTz commit_time;

				if (!GuidStreamReadBegin(m, len, &end_lsn, &commit_time))
					break;
				return PubOnBegin(s, end_lsn, commit_time);
			}
		case GUID_STREAM_ROW:
			{
				const char *key;
				const char *value;
				uint32		keylen;
				int			valuelen;

				if (len < GUID_STREAM_ROW_HEADER_LEN)
					break;
				/* a row of a transaction already in Kafka is not read */
				if (s->skipping)
					return true;
				if (!GuidStreamReadRow(m, len, &key, &keylen, &value, &valuelen))
					break;
				return PubOnRow(s, key, keylen, value, valuelen);
			}
		case GUID_STREAM_COMMIT:
			{
				XLogRecPtr	end_lsn;

				if (!GuidStreamReadCommit(m, len, &end_lsn))
					break;
				PubOnCommit(s, end_lsn);
				return true;
			}
	}
	PubFail(LOG, "malformed message from the guid output plugin (type %c, %d bytes)", m[0], len);
	return false;
}

/*
 * repl_undecodable: true if sqlstate, ending the replication stream, is one
 * the output plugin raises for a guid.audit row it cannot decode (a column
 * missing, retyped or null; coordinator/decoder.c).
 */
static bool
repl_undecodable(const char *sqlstate)
{
	return strcmp(sqlstate, "42703") == 0 ||	/* undefined_column */
		strcmp(sqlstate, "42804") == 0 ||	/* datatype_mismatch */
		strcmp(sqlstate, "23502") == 0;	/* not_null_violation */
}

/*
 * ReplPrefetch: while Kafka is waited for, move what the walsender has sent
 * from the socket into libpq's buffer (which grows), without parsing it:
 * ReplRead takes it from there in order, as if it had just arrived.  The
 * walsender, whose socket buffer is small (about 200 kB on a Unix socket,
 * net.core.wmem_max), then goes on decoding instead of blocking until the
 * commit is over, and the next Kafka transaction starts with everything
 * committed meanwhile.  It stops once s->prefetched (what was read ahead,
 * less the messages ReplRead took) reaches half of PUB_PREFETCH_MAX; libpq's
 * buffer, which grows by doubling and is kept for the session, then stays
 * within about PUB_PREFETCH_MAX.  Past that the walsender waits, as without
 * this.  A
 * connection error is left for ReplRead to report.
 */
void
ReplPrefetch(PubSession *s)
{
	int			sock;
	int			i;

	if (s->conn == NULL || !s->copying || (sock = PQsocket(s->conn)) < 0)
		return;
	/*
	 * A few reads at most: this runs between two short Kafka steps.  Half
	 * the bound: PQconsumeInput reads past what FIONREAD saw (all the
	 * socket holds by then), and libpq doubles its buffer to make room and
	 * keeps it for the session.
	 */
	for (i = 0; i < 16 && s->prefetched < PUB_PREFETCH_MAX / 2; i++)
	{
		int			avail = 0;

		if (ioctl(sock, FIONREAD, &avail) < 0 || avail <= 0)
			return;
		if (!PQconsumeInput(s->conn))
			return;
		s->prefetched += (uint64) avail;
	}
}

/*
 * ReplRead: take what the walsender sent so far.  Sets *drained when the
 * connection has nothing more right now.  Returns false on failure.
 */
bool
ReplRead(PubSession *s, bool *drained)
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
				s->prefetched = 0;
				return true;
			}
			must_read = true;
			continue;
		}
		just_read = false;
		/* what ReplPrefetch counts as buffered, less what was taken */
		if (len > 0)
			s->prefetched -= Min(s->prefetched, (uint64) len);
		if (len < 0)
		{
			PGresult   *res = PQgetResult(s->conn);
			const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

			if (sqlstate && repl_undecodable(sqlstate))
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
		if (buf[0] == 'w' && len > REPL_XLOGDATA_HEADER_LEN)
			ok = repl_decoded(s, buf + REPL_XLOGDATA_HEADER_LEN,
							  len - REPL_XLOGDATA_HEADER_LEN);
		else if (buf[0] == 'k' && len >= REPL_KEEPALIVE_LEN)
		{
			XLogRecPtr	end = GuidStreamGet64(buf + 1);

			if (end > s->server_end)
				s->server_end = end;
			if (buf[REPL_KEEPALIVE_REPLY])
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
