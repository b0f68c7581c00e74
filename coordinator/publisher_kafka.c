/*-------------------------------------------------------------------------
 *
 * publisher_kafka.c
 *		The publisher's Kafka transactions: the rows of whole PostgreSQL
 *		transactions into an open Kafka transaction, the checkpoint, the
 *		commit, and only then the confirmation to the slot; and reading the
 *		checkpoint back at the start of a session.
 *
 * This is where the exactly-once order is kept (coordinator/publisher.c
 * explains why it suffices): a PostgreSQL transaction whose end LSN is at
 * or below the checkpoint is skipped, never published twice; one
 * PostgreSQL transaction never spans two Kafka transactions; the
 * checkpoint (the end LSN of the last whole transaction, as the metadata of
 * the offset of the session's checkpoint group, sent to the transaction
 * with send_offsets_to_transaction) commits atomically with the rows; and
 * s->checkpoint, the position the slot is confirmed to, moves only after
 * that commit succeeded.
 *
 * Every librdkafka call is short (a step of PUB_STEP_MS, PUB_FAST_STEP_MS
 * in a checkpoint wait's first PUB_FAST_WAIT_MS, or a produce that does not block)
 * and repeated while it is retriable, with standby status updates, a read
 * ahead from the walsender (ReplPrefetch) and CHECK_FOR_INTERRUPTS() in
 * between, so that a slow Kafka
 * neither blocks signals nor lets the walsender time the connection out.
 * A step that keeps retrying is shown and logged (pub_retry).  The one
 * call that can block past its own timeout, send_offsets_to_transaction,
 * is waited for in such steps too, from a helper thread with a deadline
 * (coordinator/kafka_call.c); past it the process exits (PubStuck).
 *
 * What this file must not do: read the replication stream (ReplPrefetch
 * only moves its bytes into libpq's buffer, unparsed) or decide when
 * a session starts or ends (coordinator/publisher.c), or raise an error:
 * failures are reported with PubFail and the functions return false.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/ipc.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "guid_core.h"
#include "guid_stream.h"
#include "kafka_sink.h"
#include "publisher_int.h"

/* librdkafka steps, ms */
#define PUB_STEP_MS				200
/*
 * The first PUB_FAST_WAIT_MS of a checkpoint (send_offsets_to_transaction,
 * on a helper thread) are waited for in steps of PUB_FAST_STEP_MS, reading
 * ahead from the walsender between them (ReplPrefetch): it takes tens of ms
 * on a replicated Kafka, and the walsender must not sit blocked through it.
 * The commit is not cut so short (pub_step_commit).
 */
#define PUB_FAST_STEP_MS		5
#define PUB_FAST_WAIT_MS		1000

/*
 * pub_retry: repeat a librdkafka step while it is retriable, keeping the
 * replication connection alive.  Returns the final status.  A step whose
 * fatal failure is a setup the publisher refuses (refuse: a data topic or a
 * checkpoint it cannot keep, not a fenced producer), or KAFKA_REFUSED (a
 * topic under-replicated for the settings), leaves the state "error" and is
 * logged as a WARNING.  A step that is stuck (KAFKA_STUCK) ends the process
 * (PubStuck).
 *
 * A step that keeps retrying is never silent: while it lasts the state is
 * "waiting for Kafka: <what>" and publisher_error says what it waits for,
 * since when and the last error; that is logged once it has waited
 * PUB_STALL_LOG_MS, then every PUB_WARN_MS (and before, at once, an error
 * librdkafka's error_cb reports that was not logged yet); and the end of a
 * logged wait is logged.
 */
typedef KafkaStatus (*PubStep) (PubSession *s, char *err, size_t errlen);

/* The last librdkafka error pub_retry logged as soon as it saw it. */
static char pub_lib_logged[GUID_ERROR_LEN];

static KafkaStatus
pub_retry(PubSession *s, PubStep step, const char *what, bool refuse)
{
	char		err[GUID_ERROR_LEN];
	char		msg[GUID_ERROR_LEN];
	char		state[48];
	char		since[MAXDATELEN + 1];
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz next_log = TimestampTzPlusMilliseconds(start, PUB_STALL_LOG_MS);
	bool		logged = false;
	bool		waited = false;
	KafkaStatus st;

	s->step_ms = PUB_FAST_STEP_MS;
	for (;;)
	{
		const char *lib;
		TimestampTz now;
		long		secs;
		int			usecs;

		st = step(s, err, sizeof(err));
		if (st == KAFKA_STUCK)
			PubStuck(err);
		if (st != KAFKA_RETRY)
			break;
		KafkaSinkPoll(s->ks);
		ReplPrefetch(s);
		now = GetCurrentTimestamp();
		if (!TimestampDifferenceExceeds(start, now, PUB_FAST_WAIT_MS))
		{
			/* a short wait: no state shown, nothing logged */
			if (!ReplSendStatus(s, false))
				return KAFKA_FATAL;
			PubProcessInterrupts();
			continue;
		}
		s->step_ms = PUB_STEP_MS;
		if (!waited)
		{
			waited = true;
			strlcpy(state, PubState(), sizeof(state));
			snprintf(msg, sizeof(msg), "waiting for Kafka: %s", what);
			PubSetState(msg);
			strlcpy(since, timestamptz_to_str(start), sizeof(since));
		}
		TimestampDifference(start, now, &secs, &usecs);
		lib = KafkaSinkLastError(s->ks);
		snprintf(msg, sizeof(msg), "%s: waiting for Kafka at %s since %s (%ld s): %s%s%s",
				 what, guid_kafka_brokers, since, secs, err,
				 lib[0] != '\0' ? "; librdkafka reported: " : "", lib);
		if (now >= next_log)
		{
			/* PUB_STALL_LOG_MS, then every PUB_WARN_MS */
			PubFail(LOG, "%s", msg);
			next_log = TimestampTzPlusMilliseconds(now, PUB_WARN_MS);
			logged = true;
		}
		else if (!logged && lib[0] != '\0' && strcmp(lib, pub_lib_logged) != 0)
		{
			/* before that, what librdkafka reports is logged at once
			 * (a broker refusing connections), each error once */
			PubFail(LOG, "%s", msg);
			strlcpy(pub_lib_logged, lib, sizeof(pub_lib_logged));
		}
		else
			PubNoteError(msg);
		PubWarnLag(s);
		if (!ReplSendStatus(s, false))
			return KAFKA_FATAL;
		PubProcessInterrupts();
	}
	if (waited)
	{
		PubSetState(state);
		if (st == KAFKA_OK)
		{
			if (logged)
				ereport(LOG,
						(errmsg("guid publisher: %s: Kafka at %s answered after waiting since %s",
								what, guid_kafka_brokers, since)));
			PubClearError();
		}
	}
	/* Kafka answered: what librdkafka reported before is past, and must
	 * not be shown as the cause of a later, unrelated wait */
	if (st == KAFKA_OK)
		KafkaSinkClearLastError(s->ks);
	if (st == KAFKA_REFUSED || (st == KAFKA_FATAL && refuse && !KafkaSinkFenced(s->ks)))
	{
		PubSetState("error");
		PubFail(WARNING, "%s", err);
	}
	else if (st != KAFKA_OK)
		PubFail(LOG, "%s", err);
	return st;
}

/*
 * PubStuck: a librdkafka call has not returned long after its timeout
 * (err): log it and exit; the postmaster starts a new publisher
 * (bgw_restart_time).  The stuck handle is not destroyed (that would wait
 * for the call) and nothing is confirmed to the slot.
 *
 * Why exactly-once holds: the checkpoint committed in Kafka is the source
 * of truth, and the slot is never confirmed past it.  The Kafka transaction
 * this process left open (rows, perhaps the checkpoint's offsets) was not
 * committed: the process never got to commit_transaction, and it exits, so
 * no thread of it can commit later.  The new publisher's producer has the
 * same transactional.id: its init_transactions fences this producer's epoch
 * and aborts that transaction (or its coordinator already rolled it back
 * after transaction.timeout.ms); it then reads the checkpoint back (a
 * stable fetch) and starts at it, so the rows of the aborted transaction
 * are published once, by the new producer, and read_committed consumers
 * never see the aborted ones.
 */
void
PubStuck(const char *err)
{
	PubSetState("stuck");
	PubNoteError(err);
	ereport(WARNING,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("guid publisher: %s", err),
			 errdetail("The publisher exits without waiting for it; the postmaster starts a new one, "
					   "whose producer fences this one and aborts its open transaction.")));
	proc_exit(1);
}

/*
 * PubKafkaSettle: at the end of a session, wait for a librdkafka call that
 * still runs on a helper thread (coordinator/kafka_call.c), so that the
 * producer can be destroyed; a stuck one ends the process (PubStuck).
 */
void
PubKafkaSettle(PubSession *s)
{
	char		err[GUID_ERROR_LEN];
	KafkaStatus st;

	while ((st = KafkaSinkSettle(s->ks, 1000, err, sizeof(err))) == KAFKA_RETRY)
		PubProcessInterrupts();
	if (st == KAFKA_STUCK)
		PubStuck(err);
}

static KafkaStatus
pub_step_init(PubSession *s, char *err, size_t errlen)
{
	return KafkaSinkInitTransactions(s->ks, PUB_STEP_MS * 5, err, errlen);
}

/*
 * The commit's steps stay PUB_STEP_MS long, never PUB_FAST_STEP_MS: a call
 * that timed out while EndTxn was in flight makes the next one fail
 * ("Operation not valid in state CommittingTransaction", fatal), after
 * which librdkafka 2.0.2 abort()ed the whole process on an invalid state
 * transition (seen here with 5 ms steps).  librdkafka recommends one call
 * with the transaction's remaining time; that call can run only on the
 * worker's thread, as its flush serves callbacks that call ereport().
 */
static KafkaStatus
pub_step_commit(PubSession *s, char *err, size_t errlen)
{
	return KafkaSinkCommit(s->ks, PUB_STEP_MS, err, errlen);
}

/*
 * pub_step_topics: create the data topic unless it exists, and refuse one
 * with more partitions than a checkpoint's mark records.  No checkpoint
 * topic is made (1.6).
 */
static KafkaStatus
pub_step_topics(PubSession *s, char *err, size_t errlen)
{
	KafkaStatus st = KafkaSinkEnsureTopic(s->ks, guid_kafka_topic, 5000, err, errlen);
	int			n;

	if (st != KAFKA_OK)
		return st;
	n = KafkaTopicPartitions(s->ks, guid_kafka_topic, 5000, err, errlen);
	if (n < 0)
		return KAFKA_RETRY;
	if (n > PUB_MARK_PARTS)
	{
		snprintf(err, errlen, "topic %s has %d partitions, more than the %d a checkpoint can record "
				 "(it is the metadata of a consumer-group offset, at most offset.metadata.max.bytes = %d bytes)",
				 guid_kafka_topic, n, PUB_MARK_PARTS, KAFKA_OFFSET_METADATA_MAX);
		return KAFKA_FATAL;
	}
	return KAFKA_OK;
}

static bool pub_produce(PubSession *s, const char *topic, int32 partition,
						const char *key, size_t keylen, const char *value, size_t len,
						const char *lsn);

/* The value pub_step_checkpoint sends (a step gets only the session). */
static const char *pub_checkpoint_value;

static KafkaStatus
pub_step_checkpoint(PubSession *s, char *err, size_t errlen)
{
#ifdef GUID_FAULT_INJECTION
	KafkaSinkTestHang(s->ks, guid_publisher_test_pause != NULL &&
					  strcmp(guid_publisher_test_pause, "hang_send_offsets") == 0);
#endif
	/* the offset itself means nothing; partition 0's from the mark keeps
	 * consumer-lag tools showing a small lag for the group */
	return KafkaSinkSendCheckpoint(s->ks, s->ckpt_group, guid_kafka_topic,
								   s->mark.valid && s->mark.nparts > 0 ? s->mark.offsets[0] : 0,
								   pub_checkpoint_value, PUB_STEP_MS * 5, s->step_ms, err, errlen);
}

/*
 * pub_send_checkpoint: the checkpoint value into the open transaction.  The
 * first commit after the upgrade read also deletes the old record (a
 * tombstone for the key in <topic>_checkpoints), in the same transaction:
 * once the group holds the checkpoint, the stale record must never be read
 * again, also when the group's offset is lost later (deleted, expired).
 */
static bool
pub_send_checkpoint(PubSession *s, const char *value)
{
	if (s->legacy_ckpt &&
		!pub_produce(s, s->ckpt_topic, 0, s->tid, strlen(s->tid), NULL, 0, NULL))
		return false;
	pub_checkpoint_value = value;
	return pub_retry(s, pub_step_checkpoint, "checkpoint", true) == KAFKA_OK;
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
		PubWait(NULL, 10);
		if (!ReplSendStatus(s, false))
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
		(void) ReplSendStatus(s, false);
		PubWait(NULL, 100);
	}
	PubSetState("streaming");
}
#else
#define pub_pause(s, step) ((void) 0)
#endif

/*
 * PubCommit: put the checkpoint end_lsn in the open Kafka transaction,
 * commit it, then confirm end_lsn to the slot.  Returns false after
 * reporting a failure (the session must end).
 */
bool
PubCommit(PubSession *s, XLogRecPtr end_lsn)
{
	char		value[GUID_CHECKPOINT_MAX];
	TimestampTz start;
	TimestampTz now;
	double		ms;

	PubCheckpointFormat(s, end_lsn, false, value, sizeof(value));
	if (!pub_send_checkpoint(s, value))
		return false;

	pub_pause(s, "before_commit");
	start = GetCurrentTimestamp();
	if (pub_retry(s, pub_step_commit, "commit", false) != KAFKA_OK)
		return false;
	now = GetCurrentTimestamp();
	ms = (double) (now - start) / 1000.0;

	s->kafka_open = false;
	s->legacy_ckpt = false;
	s->checkpoint = end_lsn;
	s->last_commit = now;
	PubPublished(s->batch_rows, s->batch_xacts, end_lsn, now, ms);
	s->batch_rows = s->batch_xacts = 0;
	PubClearError();

	pub_pause(s, "before_confirm");
	return ReplSendStatus(s, true);
}

/*
 * PubConfirmIdle: a Kafka transaction holding only the checkpoint end_lsn,
 * then confirm it: idle WAL (or a new slot's start) is not pinned.
 * Returns false after reporting a failure.
 */
bool
PubConfirmIdle(PubSession *s, XLogRecPtr end_lsn)
{
	char		err[GUID_ERROR_LEN];

	if (KafkaSinkBegin(s->ks, err, sizeof(err)) != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}
	s->kafka_open = true;
	return PubCommit(s, end_lsn);
}

/*
 * PubKafkaStart: init_transactions on the session's new producer (which
 * fences an older producer with the same transactional.id and aborts its
 * open transaction), then make sure both topics exist.  Returns false
 * after reporting a failure.
 */
bool
PubKafkaStart(PubSession *s)
{
	return pub_retry(s, pub_step_init, "init_transactions", false) == KAFKA_OK &&
		pub_retry(s, pub_step_topics, "creating topics", true) == KAFKA_OK;
}

/*
 * PubCommitInitCheckpoint: commit the checkpoint "init", before the slot is
 * created, so that a crash before the real checkpoint is not a gap.
 * Returns false after reporting a failure.
 */
bool
PubCommitInitCheckpoint(PubSession *s)
{
	return PubCommitCheckpointValue(s, GUID_CHECKPOINT_INIT);
}

/*
 * PubCommitCheckpointValue: a Kafka transaction holding only the checkpoint
 * value (no rows, no confirmation).  Returns false after reporting a
 * failure.
 */
bool
PubCommitCheckpointValue(PubSession *s, const char *value)
{
	char		err[GUID_ERROR_LEN];

	s->kafka_open = false;
	if (KafkaSinkBegin(s->ks, err, sizeof(err)) != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}
	s->kafka_open = true;
	if (!pub_send_checkpoint(s, value) ||
		pub_retry(s, pub_step_commit, "commit", false) != KAFKA_OK)
		return false;
	s->kafka_open = false;
	s->legacy_ckpt = false;
	s->last_commit = GetCurrentTimestamp();
	return true;
}

/*
 * PubReadCheckpoint: the checkpoint of this session's slot, after
 * PubKafkaStart: the committed offset of its checkpoint group (one stable
 * offset fetch, which waits for no other cluster); if the group has none,
 * the record a release before 1.6 left in <topic>_checkpoints, once (the
 * next commit writes the group's).  *found is false if neither holds one.
 * Returns false after reporting a failure.
 */
bool
PubReadCheckpoint(PubSession *s, const char *file_properties, char *value, size_t len,
				  bool *found)
{
	char		err[GUID_ERROR_LEN];
	KafkaStatus st;

	while ((st = KafkaSinkReadGroupCheckpoint(guid_kafka_brokers, guid_kafka_properties,
											  file_properties, s->ckpt_group, guid_kafka_topic,
											  value, len, found, 5000, err, sizeof(err))) == KAFKA_RETRY)
	{
		PubFail(LOG, "%s", err);
		PubWarnLag(s);
		PubWait(NULL, 100);
	}
	if (st != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}
	if (*found)
		return true;

	while ((st = KafkaSinkReadCheckpoint(guid_kafka_brokers, guid_kafka_properties, file_properties,
										 s->ckpt_topic, s->tid, value, len,
										 found, 10000, err, sizeof(err))) == KAFKA_RETRY)
	{
		PubFail(LOG, "%s", err);
		PubWarnLag(s);
	}
	if (st != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}
	if (*found)
	{
		s->legacy_ckpt = true;
		ereport(LOG,
				(errmsg("guid publisher: checkpoint \"%s\" read from topic %s, as releases before 1.6 wrote it; from the next commit on it is the offset metadata of consumer group %s",
						value, s->ckpt_topic, s->ckpt_group)));
	}
	return true;
}

/* ----------
 * The stream's transactions, as the replication client parses them
 * ----------
 */

/*
 * PubOnBegin: a PostgreSQL transaction with audit rows begins; it ends at
 * end_lsn and committed at commit_time.  Opens a Kafka transaction unless
 * one is open or the transaction is already in Kafka.  Returns false after
 * reporting a failure.
 */
bool
PubOnBegin(PubSession *s, XLogRecPtr end_lsn, TimestampTz commit_time)
{
	char		err[GUID_ERROR_LEN];

	s->in_xact = true;
	s->xact_end = end_lsn;
	s->skipping = end_lsn <= s->checkpoint;
	if (s->skipping)
		return true;
	pub_pause(s, "before_produce");
	/* guid.publisher_standby_slots: nothing goes to Kafka before the
	 * standbys have it; what is open is committed first, not held open */
	if (!PubStandbysFlushed(end_lsn, err, sizeof(err)))
	{
		if (s->kafka_open && !PubCommit(s, s->pending_end))
			return false;
		if (!PubWaitForStandbys(s, end_lsn))
			return false;
	}
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

/*
 * PubOnRow: one audit row (key its service, value its JSON) of the current
 * transaction, into the open Kafka transaction.  Caller has skipped the
 * rows of a transaction already in Kafka.  Returns false after reporting a
 * failure.
 */
bool
PubOnRow(PubSession *s, const char *key, uint32 keylen,
		 const char *value, int valuelen)
{
	char		lsn[32];

	/* the LSN header: the transaction's end LSN, also in the JSON */
	snprintf(lsn, sizeof(lsn), "%X/%X", LSN_FORMAT_ARGS(s->xact_end));
	return pub_produce(s, guid_kafka_topic, -1, key, keylen,
					   value, valuelen, lsn) &&
		(++s->batch_rows, true);
}

/* PubOnCommit: the current transaction, ending at end_lsn, is whole. */
void
PubOnCommit(PubSession *s, XLogRecPtr end_lsn)
{
	s->in_xact = false;
	if (!s->skipping)
	{
		s->pending_end = end_lsn;
		s->batch_xacts++;
	}
	s->skipping = false;
}
