/*-------------------------------------------------------------------------
 *
 * kafka_sink.c
 *		The publisher's adapter to librdkafka: a transactional producer and
 *		the topics it writes (coordinator/kafka_topics.c) and its checkpoint
 *		(coordinator/kafka_checkpoint.c).
 *
 * librdkafka runs threads of its own.  Nothing here runs PostgreSQL code on
 * them: logs are routed to the main queue (log.queue, set_log_queue) and,
 * like error_cb, served by rd_kafka_poll() on the worker's own thread, where
 * KafkaSinkPoll() calls it.  No delivery-report callback is set: a failed
 * message fails the transaction's commit, which is all the publisher needs.
 *
 * librdkafka's blocking calls do not return on signals, so every one is
 * made with a short timeout (KAFKA_STEP_MS, at most KAFKA_QUERY_STEP_MAX_MS
 * for a query that waits for a broker's answer) in a loop that runs
 * CHECK_FOR_INTERRUPTS(); a timeout comes back as KAFKA_RETRY and the
 * caller repeats the call, as librdkafka asks ("retry it, never guess").
 *
 * Errors are classified as librdkafka says (rd_kafka_error_is_fatal,
 * _txn_requires_abort, _is_retriable); anything else is fatal.
 *
 * The topics it writes are created, or checked, by KafkaSinkEnsureTopic
 * (coordinator/kafka_topics.c).  The producer runs with acks=all:
 * librdkafka forces it for a transactional producer (enable.idempotence),
 * and refuses any other acks setting.
 *
 * guid.kafka_properties is a list of librdkafka settings, "name=value"
 * separated by ';' (values may contain spaces and commas, as SASL and TLS
 * settings do).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "miscadmin.h"
#include "utils/timestamp.h"

#include "kafka_sink.h"

#define KAFKA_STEP_MS		100

struct KafkaSink
{
	rd_kafka_t *rk;
	char		last_error[256];	/* from error_cb; "" once cleared */
	bool		fenced;			/* a newer producer took our transactional.id,
								 * or the coordinator bumped our epoch */
	int			txn_timeout_ms; /* transaction.timeout.ms in force */
	int			socket_timeout_ms;	/* socket.timeout.ms in force: how long
									 * librdkafka waits for a request's
									 * answer, whatever a call's timeout */
	TimestampTz txn_begun;		/* when the open transaction began; 0: none */
	long		fenced_open_ms; /* how long it had been open when fenced;
								 * -1: none was */
	KafkaCall  *call;			/* a call running on a helper thread
								 * (coordinator/kafka_call.c), or NULL */
	bool		test_hang;		/* test builds: that call blocks for ever */
};

/* kafka_fenced: note that ks's producer is fenced, and how long its
 * transaction had been open then. */
static void
kafka_fenced(KafkaSink *ks)
{
	if (ks->fenced)
		return;
	ks->fenced = true;
	ks->fenced_open_ms = ks->txn_begun == 0 ? -1 :
		(long) ((GetCurrentTimestamp() - ks->txn_begun) / 1000);
}

const char *
KafkaStatusName(KafkaStatus status)
{
	switch (status)
	{
		case KAFKA_OK:
			return "ok";
		case KAFKA_RETRY:
			return "retriable";
		case KAFKA_ABORT:
			return "abortable";
		case KAFKA_FATAL:
			return "fatal";
		case KAFKA_REFUSED:
			return "refused";
		case KAFKA_STUCK:
			return "stuck";
	}
	return "unknown";
}

/*
 * kafka_apply_properties: set each "name=value" of a list separated by any
 * of seps on conf; empty entries and, in a file, lines starting with '#' are
 * skipped.  Returns false and fills err on the first bad entry.
 */
static bool
kafka_apply_properties(rd_kafka_conf_t *conf, const char *properties,
					   const char *seps, char *err, size_t errlen)
{
	char	   *copy = pstrdup(properties ? properties : "");
	char	   *item;
	char	   *save = NULL;
	bool		ok = true;

	for (item = strtok_r(copy, seps, &save); item; item = strtok_r(NULL, seps, &save))
	{
		char	   *eq;
		char	   *name = item;
		char	   *value;
		char	   *end;
		char		cerr[256];

		while (*name == ' ' || *name == '\t' || *name == '\n' || *name == '\r')
			name++;
		if (*name == '\0' || *name == '#')
			continue;
		eq = strchr(name, '=');
		if (eq == NULL || eq == name)
		{
			snprintf(err, errlen, "\"%s\" is not name=value", name);
			ok = false;
			break;
		}
		value = eq + 1;
		for (end = eq; end > name && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		while (*value == ' ' || *value == '\t')
			value++;
		for (end = value + strlen(value);
			 end > value && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'); end--)
			;
		*end = '\0';
		if (rd_kafka_conf_set(conf, name, value, cerr, sizeof(cerr)) != RD_KAFKA_CONF_OK)
		{
			snprintf(err, errlen, "%s", cerr);
			ok = false;
			break;
		}
	}
	pfree(copy);
	return ok;
}

/*
 * Build a configuration: brokers, ours, then the user's properties (the
 * setting's ';'-separated list, then the file's lines), then log.queue.
 */
static rd_kafka_conf_t *
kafka_conf(const char *brokers, const char *properties, const char *file_properties,
		   char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	/*
	 * retry.backoff.ms: a transaction that begins right after the previous
	 * commit often gets CONCURRENT_TRANSACTIONS while the broker still
	 * writes the markers; librdkafka's default 100 ms backoff for that retry
	 * would dominate the commit-to-consumer latency.  The user's properties
	 * come after ours and win.
	 */
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "retry.backoff.ms", "5", err, errlen) != RD_KAFKA_CONF_OK ||
		!kafka_apply_properties(conf, properties, ";", err, errlen) ||
		!kafka_apply_properties(conf, file_properties, "\n", err, errlen) ||
		rd_kafka_conf_set(conf, "log.queue", "true", err, errlen) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

/* Served by rd_kafka_poll() on the worker's thread (log.queue). */
static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	ereport(level <= 4 ? LOG : DEBUG1,
			(errmsg_internal("librdkafka %s: %s", fac, buf)));
}

/*
 * KafkaSinkReader: a read_committed consumer of the same cluster as the
 * producer (brokers, the user's properties, logs on the main queue), with no
 * offset commits and partition EOF events, in consumer group group.
 * offset_reset (NULL: librdkafka's default) is what to do with an offset
 * out of range.  The checkpoint reader below and coordinator/kafka_readback.c
 * use it.  NULL with err filled if refused.
 */
rd_kafka_t *
KafkaSinkReader(const char *brokers, const char *properties, const char *file_properties,
				const char *group, const char *offset_reset, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = kafka_conf(brokers, properties, file_properties, err, errlen);
	rd_kafka_t *rk;

	if (conf == NULL)
		return NULL;
	if (rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, errlen) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, errlen) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) != RD_KAFKA_CONF_OK ||
		(offset_reset &&
		 rd_kafka_conf_set(conf, "auto.offset.reset", offset_reset, err, errlen) != RD_KAFKA_CONF_OK) ||
		rd_kafka_conf_set(conf, "group.id", group, err, errlen) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_set_log_queue(rk, NULL);
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

/* KafkaSinkHandle: the producer's librdkafka handle, for metadata queries. */
rd_kafka_t *
KafkaSinkHandle(KafkaSink *ks)
{
	return ks->rk;
}

/* Served by rd_kafka_poll() on the worker's thread. */
static void
kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	KafkaSink  *ks = opaque;

	snprintf(ks->last_error, sizeof(ks->last_error), "%s: %s",
			 rd_kafka_err2name(err), reason);
}

/*
 * KafkaSinkCreate: a transactional producer.  Returns NULL and fills err if
 * the configuration is refused.  It connects lazily.
 */
KafkaSink *
KafkaSinkCreate(const char *brokers, const char *properties, const char *file_properties,
				const char *transactional_id, char *err, size_t errlen)
{
	KafkaSink  *ks = palloc0(sizeof(KafkaSink));
	rd_kafka_conf_t *conf = kafka_conf(brokers, properties, file_properties, err, errlen);

	if (conf == NULL)
		return NULL;
	if (rd_kafka_conf_set(conf, "transactional.id", transactional_id, err, errlen) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	{
		char		value[32];
		size_t		size = sizeof(value);

		ks->txn_timeout_ms = rd_kafka_conf_get(conf, "transaction.timeout.ms", value, &size) == RD_KAFKA_CONF_OK ?
			atoi(value) : 0;
		size = sizeof(value);
		ks->socket_timeout_ms = rd_kafka_conf_get(conf, "socket.timeout.ms", value, &size) == RD_KAFKA_CONF_OK ?
			atoi(value) : 60000;
	}
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
	rd_kafka_conf_set_opaque(conf, ks);

	ks->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
	if (ks->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		pfree(ks);
		return NULL;
	}
	rd_kafka_set_log_queue(ks->rk, NULL);
	return ks;
}

/*
 * KafkaSinkDestroy: drop what is queued and stop the producer.  Caller has
 * settled any call on a helper thread (KafkaSinkSettle); one still running
 * would make rd_kafka_destroy() wait for it, so the handle is then left as
 * it is (the process is about to exit).
 */
void
KafkaSinkDestroy(KafkaSink *ks)
{
	if (ks == NULL || ks->call != NULL)
		return;
	rd_kafka_purge(ks->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(ks->rk, 0);
	rd_kafka_destroy(ks->rk);
	pfree(ks);
}

/* KafkaSinkCall: where ks keeps its call on a helper thread
 * (coordinator/kafka_checkpoint.c starts and waits for it there), and
 * *socket_timeout_ms the producer's socket.timeout.ms. */
KafkaCall **
KafkaSinkCall(KafkaSink *ks, int *socket_timeout_ms)
{
	*socket_timeout_ms = ks->socket_timeout_ms;
	return &ks->call;
}

/*
 * KafkaSinkSettle: wait up to wait_ms for ks's call on a helper thread, if
 * one is running, and drop its result (the session that made it is
 * ending) once classified.  KAFKA_OK: none runs any more; KAFKA_RETRY: wait again;
 * KAFKA_STUCK: it is stuck (err says how), exit.
 */
KafkaStatus
KafkaSinkSettle(KafkaSink *ks, int wait_ms, char *err, size_t errlen)
{
	rd_kafka_error_t *error;
	KafkaStatus st;

	if (ks == NULL || ks->call == NULL)
		return KAFKA_OK;
	st = KafkaCallWait(ks->call, wait_ms, &error, err, errlen);
	if (st == KAFKA_OK)
	{
		char		dropped[256];

		/* classified, not just freed: a fence it reports is remembered
		 * (KafkaSinkFenced) for the message of the next session */
		ks->call = NULL;
		(void) KafkaSinkClassify(ks, error, "send_offsets_to_transaction",
								 dropped, sizeof(dropped));
	}
	return st;
}

/* KafkaSinkPendingCall: whether a call of ks runs on a helper thread; if so
 * buf says which and for how long. */
bool
KafkaSinkPendingCall(KafkaSink *ks, char *buf, size_t len)
{
	if (ks == NULL || ks->call == NULL)
		return false;
	KafkaCallDescribe(ks->call, buf, len);
	return true;
}

#ifdef GUID_FAULT_INJECTION
/* KafkaSinkTestHang: (fault tests) the next send_offsets_to_transaction
 * blocks for ever, as librdkafka's issues #5456 and #5511 describe. */
void
KafkaSinkTestHang(KafkaSink *ks, bool hang)
{
	ks->test_hang = hang;
}

/* KafkaSinkTestHanging: whether KafkaSinkTestHang asked for it. */
bool
KafkaSinkTestHanging(KafkaSink *ks)
{
	return ks->test_hang;
}
#endif

/* KafkaSinkPoll: serve logs and error callbacks, without blocking. */
void
KafkaSinkPoll(KafkaSink *ks)
{
	rd_kafka_poll(ks->rk, 0);
}

/* KafkaSinkFenced: true if a newer producer fenced this one (or the
 * transaction coordinator bumped its epoch, see KafkaSinkFencedOpen). */
bool
KafkaSinkFenced(KafkaSink *ks)
{
	return ks->fenced;
}

/*
 * KafkaSinkFencedOpen: after a fence, how long (ms) the producer's
 * transaction had been open when it was fenced (-1 if none was), and
 * *timeout_ms its transaction.timeout.ms.  A transaction open that long
 * may have been rolled back by its coordinator, which bumps the producer's
 * epoch: the producer then sees the same fence as from a newer producer
 * with its transactional.id, when no such producer exists.
 */
long
KafkaSinkFencedOpen(KafkaSink *ks, int *timeout_ms)
{
	*timeout_ms = ks->txn_timeout_ms;
	return ks->fenced ? ks->fenced_open_ms : -1;
}

/* The last error librdkafka reported through error_cb, or "". */
const char *
KafkaSinkLastError(KafkaSink *ks)
{
	return ks->last_error;
}

/* KafkaSinkClearLastError: what librdkafka reported is past (a step it
 * made wait has been answered); the next wait shows only newer errors. */
void
KafkaSinkClearLastError(KafkaSink *ks)
{
	ks->last_error[0] = '\0';
}

/*
 * KafkaSinkClassify: classify and free an error object of a call on ks's
 * producer; fill err.  NULL is KAFKA_OK.
 */
KafkaStatus
KafkaSinkClassify(KafkaSink *ks, rd_kafka_error_t *error, const char *what, char *err, size_t errlen)
{
	KafkaStatus status;

	if (error == NULL)
		return KAFKA_OK;
	if (rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__FENCED ||
		rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED)
		kafka_fenced(ks);
	if (rd_kafka_error_is_fatal(error))
		status = KAFKA_FATAL;
	else if (rd_kafka_error_txn_requires_abort(error))
		status = KAFKA_ABORT;
	else if (rd_kafka_error_is_retriable(error))
		status = KAFKA_RETRY;
	else
		status = KAFKA_FATAL;
	snprintf(err, errlen, "%s: %s (%s, %s)", what, rd_kafka_error_string(error),
			 rd_kafka_error_name(error), KafkaStatusName(status));
	rd_kafka_error_destroy(error);
	return status;
}

/*
 * KafkaSinkInitTransactions: register the transactional.id, fencing any
 * older producer with it and aborting its open transaction.  One short
 * step; KAFKA_RETRY means call again.
 */
KafkaStatus
KafkaSinkInitTransactions(KafkaSink *ks, int timeout_ms, char *err, size_t errlen)
{
	CHECK_FOR_INTERRUPTS();
	rd_kafka_poll(ks->rk, 0);
	return KafkaSinkClassify(ks, rd_kafka_init_transactions(ks->rk, timeout_ms),
						  "init_transactions", err, errlen);
}

KafkaStatus
KafkaSinkBegin(KafkaSink *ks, char *err, size_t errlen)
{
	KafkaStatus st = KafkaSinkClassify(ks, rd_kafka_begin_transaction(ks->rk),
									   "begin_transaction", err, errlen);

	if (st == KAFKA_OK)
		ks->txn_begun = GetCurrentTimestamp();
	return st;
}

/*
 * KafkaSinkProduce: queue one message in the open transaction, with the
 * LSN as header "lsn" when given.  partition RD_KAFKA_PARTITION_UA lets the
 * key choose.  KAFKA_RETRY means the local queue is full: poll and call
 * again.
 */
KafkaStatus
KafkaSinkProduce(KafkaSink *ks, const char *topic, int32 partition,
				 const char *key, size_t keylen,
				 const char *value, size_t len, const char *lsn,
				 char *err, size_t errlen)
{
	rd_kafka_resp_err_t rerr;
	char		fatal[256];

	if (lsn)
		rerr = rd_kafka_producev(ks->rk,
								 RD_KAFKA_V_TOPIC(topic),
								 RD_KAFKA_V_PARTITION(partition),
								 RD_KAFKA_V_KEY(key, keylen),
								 RD_KAFKA_V_VALUE((void *) value, len),
								 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								 RD_KAFKA_V_HEADER("lsn", lsn, strlen(lsn)),
								 RD_KAFKA_V_END);
	else
		rerr = rd_kafka_producev(ks->rk,
								 RD_KAFKA_V_TOPIC(topic),
								 RD_KAFKA_V_PARTITION(partition),
								 RD_KAFKA_V_KEY(key, keylen),
								 RD_KAFKA_V_VALUE((void *) value, len),
								 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								 RD_KAFKA_V_END);
	if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR)
		return KAFKA_OK;
	if (rerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
	{
		snprintf(err, errlen, "produce: local queue full");
		return KAFKA_RETRY;
	}
	if (rerr == RD_KAFKA_RESP_ERR__FATAL)
	{
		rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(ks->rk, fatal, sizeof(fatal));

		if (ferr == RD_KAFKA_RESP_ERR__FENCED || ferr == RD_KAFKA_RESP_ERR_PRODUCER_FENCED)
			kafka_fenced(ks);
		snprintf(err, errlen, "produce: %s (fatal)", fatal);
		return KAFKA_FATAL;
	}
	snprintf(err, errlen, "produce: %s (%s, abortable)", rd_kafka_err2str(rerr), rd_kafka_err2name(rerr));
	return KAFKA_ABORT;
}

/*
 * KafkaSinkCommit: flush and commit the open transaction.  One short step:
 * KAFKA_RETRY means the outcome is not known yet, call again.
 */
KafkaStatus
KafkaSinkCommit(KafkaSink *ks, int timeout_ms, char *err, size_t errlen)
{
	KafkaStatus st;

	CHECK_FOR_INTERRUPTS();
	st = KafkaSinkClassify(ks, rd_kafka_commit_transaction(ks->rk, timeout_ms),
						   "commit_transaction", err, errlen);
	if (st == KAFKA_OK)
		ks->txn_begun = 0;
	return st;
}
