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
 * read (or the batch is large), the worker adds the checkpoint (the end LSN
 * of the last PostgreSQL transaction in the batch, as the metadata of an
 * offset of the consumer group guid-ckpt-<transactional.id>, sent with
 * send_offsets_to_transaction) and commits the Kafka transaction.  Many
 * PostgreSQL transactions may share one Kafka transaction; one PostgreSQL
 * transaction never spans two.  Only then is the slot confirmed up to that
 * LSN (a standby status update).
 *
 * Why it is exactly once
 * ----------------------
 * The rows and the checkpoint commit atomically (the transaction's markers
 * go to the data partitions and to the group's offsets alike), and
 * consumers read with isolation.level=read_committed.  The slot is only
 * ever confirmed to a position already committed to the checkpoint, so the
 * checkpoint is never behind the slot.  A new session (after any failure,
 * or a restart) creates a fresh producer, whose init_transactions fences
 * any older producer with the same transactional.id and ends its open
 * transaction, reads the checkpoint back with a stable offset fetch (never
 * older than a completed commit; only this transactional.id writes the
 * group, so no other cluster's transaction can make it wait; a cluster
 * upgraded from 1.5 reads its old record once, coordinator/
 * publisher_kafka.c), and restarts replication there:
 * transactions whose end LSN is at or below the checkpoint (the slot may
 * replay them after a crash, its position is persisted at checkpoints) are
 * skipped.  A slot found *ahead* of the checkpoint means rows may be missing
 * from Kafka: the publisher stops and says so (state "gap"), it never skips.
 * A guid.audit row the output plugin cannot decode (a column missing,
 * retyped or null) ends the stream with an ERROR; the publisher shows it
 * (state "error"), confirms nothing past it and retries with a backoff.
 *
 * The transactional.id, and so the checkpoint's group, is
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
 * idle or audit-free database does not pin WAL.  It does so at least every
 * PUB_CHECKPOINT_REFRESH_MS even when WAL stands still, so that the group's
 * offset does not expire (the brokers' offsets.retention.minutes).  With Kafka down nothing is
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
 * here, never in the postmaster.  The one librdkafka call that can block
 * past its own timeout (send_offsets_to_transaction, librdkafka issues
 * #5456 and #5511) runs on a helper thread with a deadline
 * (coordinator/kafka_call.c): past it, the worker exits and the postmaster
 * starts a new one (PubStuck in coordinator/publisher_kafka.c says why
 * exactly-once holds).
 *
 * Files
 * -----
 * This file is the worker: GuidPublisherMain, the start of a session (a
 * new producer, the checkpoint read back and held against the slot), its
 * loop (when to commit, when to confirm idle WAL), and the backoff and
 * fencing between sessions.  It neither produces to Kafka nor speaks the
 * replication protocol itself: the Kafka transactions are
 * coordinator/publisher_kafka.c's, the replication connection and the
 * parsing of the stream coordinator/repl_client.c's, every write to
 * guid.status coordinator/publisher_status.c's, and the settings
 * coordinator/publisher_settings.c's (coordinator/publisher_int.h is what
 * they share).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libpq-fe.h>

#include "access/xlog.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guid_core.h"
#include "guid_stream.h"
#include "guid_worker.h"
#include "kafka_sink.h"
#include "publisher_int.h"

/* Confirm idle WAL at most this often, ms */
#define PUB_IDLE_CONFIRM_MS		10000
/* Commit the checkpoint again at least this often, ms, WAL or not: a
 * consumer-group offset not committed again for the brokers'
 * offsets.retention.minutes (7 days by default) expires */
#define PUB_CHECKPOINT_REFRESH_MS	(3600 * 1000)
/* Backoff between sessions, ms */
#define PUB_BACKOFF_MIN_MS		500
#define PUB_BACKOFF_MAX_MS		10000
/* ... and after being fenced by another producer with our transactional.id */
#define PUB_FENCED_BACKOFF_MS	5000

/* When the retained-WAL warning was last logged; 0 once streaming starts. */
static TimestampTz pub_warned_lag_at = 0;

/* The current session, for PubProcessInterrupts' last word. */
static PubSession *pub_current = NULL;

/* ----------
 * Waiting
 * ----------
 */

/* PubProcessInterrupts: die on SIGTERM, reload the settings on SIGHUP.
 * Dying while a librdkafka call runs on a helper thread (it may be stuck)
 * says so first: the process exits without waiting for it. */
void
PubProcessInterrupts(void)
{
	char		what[160];

	if (ProcDiePending && pub_current != NULL &&
		KafkaSinkPendingCall(pub_current->ks, what, sizeof(what)))
		ereport(LOG,
				(errmsg("guid publisher: stopping while librdkafka's %s has not returned; exiting without waiting for it",
						what)));
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* PubWait: sleep up to ms on the latch (and the connection's socket, if
 * s has one). */
void
PubWait(PubSession *s, long ms)
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
	PubProcessInterrupts();
}

/* PubWarnLag: while nothing can be published, warn once a minute about
 * retained WAL. */
void
PubWarnLag(PubSession *s)
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
 * The session
 * ----------
 */

/* pub_gap: stop in state "gap" with a WARNING; returns false. */
static bool
pub_gap(PubSession *s, const char *detail)
{
	PubSetState("gap");
	PubFail(WARNING, "gap: audit rows may be missing from Kafka: %s (consumer group %s); publishing stopped. "
			"Drop the slot to start afresh from now, or restore the checkpoint",
			detail, s->ckpt_group);
	return false;
}

/*
 * pub_check_slot: compare the slot with the Kafka checkpoint (ckpt, found),
 * creating the slot if it does not exist: over an existing checkpoint (a
 * promoted standby, a dropped slot) through the failover recovery of
 * coordinator/publisher_failover.c.  Sets s->checkpoint.  Returns false if
 * the session cannot stream (after reporting why).
 */
static bool
pub_check_slot(PubSession *s, const char *ckpt, bool found)
{
	XLogRecPtr	slot_lsn;
	XLogRecPtr	switchpoint;
	char		plugin[NAMEDATALEN];
	char		detail[160];
	PubCheckpoint c;
	bool		init;
	bool		other_tli;

	memset(&c, 0, sizeof(c));
	if (found && !PubCheckpointParse(ckpt, &c))
	{
		PubSetState("gap");
		PubFail(WARNING, "checkpoint \"%s\" of consumer group %s is not an LSN; publishing stopped",
				ckpt, s->ckpt_group);
		return false;
	}
	init = found && c.init;
	s->mark = c.mark;
	other_tli = found && !init && c.tli != 0 && c.tli != s->tli;
	if (other_tli && !PubTimelineSwitch(s, c.tli, &switchpoint))
	{
		PubSetState("gap");
		PubFail(WARNING, "the Kafka checkpoint %X/%X (consumer group %s) is on timeline %u, which is not in this server's history (timeline %u): "
				"it was written by another cluster with the same system identifier (a promoted standby?); publishing stopped",
				LSN_FORMAT_ARGS(c.lsn), s->ckpt_group, c.tli, s->tli);
		return false;
	}

	if (!GuidSlotPosition(guid_slot_name, &slot_lsn, plugin, sizeof(plugin)))
	{
		if (found && !init)
			return PubFailoverRecover(s, &c, false);
		/* "init" first: a crash before the real checkpoint is not a gap */
		PubSetState("committing the first checkpoint");
		if (!PubCommitInitCheckpoint(s))
			return false;
		PubSetState("creating the slot");
		if (!ReplCreateSlot(s, &s->checkpoint, false))
			return false;
		PubSetState("confirming the new slot");
		return PubConfirmIdle(s, s->checkpoint);
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
		PubSetState("confirming the new slot");
		return PubConfirmIdle(s, slot_lsn);
	}
	/* a recovery that did not finish, or a slot from before the promotion:
	 * make it again */
	if (found && (c.recovering || other_tli))
		return PubFailoverRecover(s, &c, true);
	if (!found)
	{
		snprintf(detail, sizeof(detail), "the slot is confirmed to %X/%X and Kafka holds no checkpoint for it",
				 LSN_FORMAT_ARGS(slot_lsn));
		return pub_gap(s, detail);
	}
	if (slot_lsn > c.lsn)
	{
		snprintf(detail, sizeof(detail), "the slot is confirmed to %X/%X but Kafka holds only up to %X/%X",
				 LSN_FORMAT_ARGS(slot_lsn), LSN_FORMAT_ARGS(c.lsn));
		return pub_gap(s, detail);
	}
	if (c.lsn > GetFlushRecPtr(NULL))
	{
		PubSetState("gap");
		PubFail(WARNING, "the Kafka checkpoint %X/%X (consumer group %s) is ahead of this server's WAL (%X/%X): "
				"it was written by another cluster with the same system identifier, or before a restore; publishing stopped",
				LSN_FORMAT_ARGS(c.lsn), s->ckpt_group, LSN_FORMAT_ARGS(GetFlushRecPtr(NULL)));
		return false;
	}
	s->checkpoint = c.lsn;
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
	char		ckpt[GUID_CHECKPOINT_MAX];
	bool		found = false;
	bool		streamed = false;
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
	if (!PubKafkaStart(s))
		return false;

	PubSetState("reading checkpoint");
	if (!PubReadCheckpoint(s, file_properties, ckpt, sizeof(ckpt), &found))
		return false;

	PubSetState("connecting to PostgreSQL");
	s->tli = GetWALInsertionTimeLine();
	if (!ReplConnect(s))
		return false;
	PubSetState("checking the slot");
	if (!pub_check_slot(s, ckpt, found))
		return false;

	if (!ReplStart(s))
		return false;
	s->last_idle_confirm = s->last_commit = GetCurrentTimestamp();
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

		if (!ReplRead(s, &drained))
			return streamed;
		KafkaSinkPoll(s->ks);

		if (s->kafka_open && !s->in_xact &&
			(drained || s->batch_rows >= PUB_BATCH_ROWS) && s->batch_xacts > 0)
		{
			if (!PubCommit(s, s->pending_end))
				return streamed;
			streamed = true;
			continue;
		}

		now = GetCurrentTimestamp();
		if (!s->kafka_open && !s->in_xact)
		{
			PubCaughtUp(now);
			if (!PubMarkMaybe(s))
				return streamed;
			if ((s->server_end > s->checkpoint &&
				 TimestampDifferenceExceeds(s->last_idle_confirm, now, PUB_IDLE_CONFIRM_MS)) ||
				TimestampDifferenceExceeds(s->last_commit, now, PUB_CHECKPOINT_REFRESH_MS))
			{
				s->last_idle_confirm = now;
				if (!PubConfirmIdle(s, Max(s->server_end, s->checkpoint)))
					return streamed;
			}
		}
		if (!ReplSendStatus(s, false))
			return streamed;
		/* what a Kafka wait read ahead (ReplPrefetch) is no longer in the
		 * socket: read it before waiting on the socket */
		if (drained && s->prefetched == 0)
			PubWait(s, PUB_STATUS_MS);
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

	if (!GuidPreloaded())
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
		snprintf(s->ckpt_group, sizeof(s->ckpt_group), GUID_CHECKPOINT_GROUP_PREFIX "%s", s->tid);
		if (snprintf(s->ckpt_topic, sizeof(s->ckpt_topic), "%s" GUID_CHECKPOINT_SUFFIX,
					 guid_kafka_topic) >= (int) sizeof(s->ckpt_topic))
			elog(ERROR, "checkpoint topic name of \"%s\" is too long", guid_kafka_topic);

		pub_current = s;
		streamed = pub_session(s);
		/* a call still on a helper thread: wait for it (or exit) */
		PubKafkaSettle(s);
		fenced = s->ks != NULL && KafkaSinkFenced(s->ks);
		if (fenced)
		{
			int			timeout_ms;
			long		open_ms = KafkaSinkFencedOpen(s->ks, &timeout_ms);

			/* the coordinator rolled back a transaction open too long (a
			 * broker lost or paused): not a copy of this cluster */
			if (timeout_ms > 0 && open_ms >= timeout_ms)
			{
				PubFail(LOG, "fenced after its Kafka transaction was open %ld ms, longer than transaction.timeout.ms (%d ms): "
						"the transaction coordinator rolled it back; starting a new producer",
						open_ms, timeout_ms);
				fenced = false;
			}
			else
				PubFail(WARNING, "fenced: another producer started with transactional.id %s; "
						"if a copy of this cluster publishes too, stop one of them. Retrying in %d s",
						s->tid, PUB_FENCED_BACKOFF_MS / 1000);
		}

		/* A failed session: drop the producer (the next one's
		 * init_transactions aborts its open transaction) and the stream. */
		if (s->conn)
			PQfinish(s->conn);
		KafkaSinkDestroy(s->ks);
		pub_current = NULL;
		MemoryContextSwitchTo(old);
		MemoryContextReset(session_cxt);

		PubRetrying();

		backoff = streamed ? PUB_BACKOFF_MIN_MS : Min(backoff * 2, PUB_BACKOFF_MAX_MS);
		PubWait(NULL, fenced ? PUB_FENCED_BACKOFF_MS : backoff);
	}
}
