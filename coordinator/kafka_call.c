/*-------------------------------------------------------------------------
 *
 * kafka_call.c
 *		A watchdog for the librdkafka call that can block past its own
 *		timeout: rd_kafka_send_offsets_to_transaction() runs on a helper
 *		thread while the worker waits on its latch.
 *
 * librdkafka 2.0.2 (Debian 12's) can block indefinitely inside
 * rd_kafka_send_offsets_to_transaction() when the consumer group's
 * coordinator is down or decommissioned: its timeout is not honoured
 * (librdkafka issues #5456 and #5511).  A worker blocked in a library call
 * runs no CHECK_FOR_INTERRUPTS(): it would answer no SIGTERM, and a fast
 * shutdown of the cluster would wait for it for ever.
 *
 * So the call runs on a thread of its own.  The worker waits for it in
 * short steps (WaitLatchOrSocket on an eventfd the thread writes when the
 * call returns, and on its latch, so that signals are served); a step that
 * ends before the call is KAFKA_RETRY, and the caller repeats it with
 * CHECK_FOR_INTERRUPTS() in between, as with any retriable step.  A call
 * still running KAFKA_CALL_MARGIN_MS after its own timeout and the
 * producer's socket.timeout.ms is stuck (KAFKA_STUCK): the process must
 * then exit without touching the handle again (rd_kafka_destroy() would
 * wait for the stuck call), and the postmaster starts a new worker.  Why
 * exactly-once survives that is PubStuck's (coordinator/publisher_kafka.c).
 *
 * The helper thread calls nothing of PostgreSQL (no palloc, no elog, not
 * even SetLatch): it gets malloc'd copies of its arguments, runs with every
 * signal blocked, makes the librdkafka call, stores its result, and writes
 * to the eventfd.  The worker owns the KafkaCall: it frees it once the
 * thread has been joined, and leaves it (and the thread) alone when the
 * call is stuck.  One call at a time per producer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

#include "kafka_sink.h"

struct KafkaCall
{
	/* set by the worker before the thread starts, then read-only */
	rd_kafka_t *rk;
	char	   *group;
	char	   *topic;
	int64		offset;
	char	   *value;
	size_t		len;
	int			timeout_ms;
	int64		deadline_ms;	/* stuck once running this long */
	bool		hang;			/* test builds: block for ever instead */
	int			efd;			/* eventfd the thread writes when done */
	pthread_t	thread;
	/* the worker's */
	int64		started_ms;		/* CLOCK_MONOTONIC */
	/* written by the thread before done is set */
	rd_kafka_error_t *error;
	bool		done;			/* __atomic, release/acquire */
};

/* kafka_call_now_ms: CLOCK_MONOTONIC in ms (a deadline never follows the
 * wall clock). */
static int64
kafka_call_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* kafka_call_thread: the helper thread.  Nothing of PostgreSQL here. */
static void *
kafka_call_thread(void *arg)
{
	KafkaCall  *call = arg;
	rd_kafka_topic_partition_list_t *offsets;
	rd_kafka_topic_partition_t *part;
	rd_kafka_consumer_group_metadata_t *cgmd;
	uint64_t	one = 1;

	if (call->hang)
	{
		/* the fault this watchdog is for, on demand: every signal is
		 * blocked here, so pause() never returns */
		for (;;)
			pause();
	}
	offsets = rd_kafka_topic_partition_list_new(1);
	part = rd_kafka_topic_partition_list_add(offsets, call->topic, 0);
	part->offset = call->offset;
	part->metadata = call->value;
	part->metadata_size = call->len;
	cgmd = rd_kafka_consumer_group_metadata_new(call->group);
	call->error = rd_kafka_send_offsets_to_transaction(call->rk, offsets, cgmd, call->timeout_ms);
	rd_kafka_consumer_group_metadata_destroy(cgmd);
	part->metadata = NULL;		/* ours, not the list's to free */
	part->metadata_size = 0;
	rd_kafka_topic_partition_list_destroy(offsets);

	__atomic_store_n(&call->done, true, __ATOMIC_RELEASE);
	if (write(call->efd, &one, sizeof(one)) < 0)
	{
		/* the worker also looks at done after every step */
	}
	return NULL;
}

/* kafka_call_free: free a call whose thread has been joined (or never
 * started). */
static void
kafka_call_free(KafkaCall *call)
{
	if (call->efd >= 0)
		close(call->efd);
	free(call->group);
	free(call->topic);
	free(call->value);
	free(call);
}

/*
 * KafkaCallSendOffsets: start rd_kafka_send_offsets_to_transaction(rk,
 * offset of partition 0 of topic with metadata value, group, timeout_ms) on
 * a helper thread.  It is stuck once it has run timeout_ms plus
 * socket_timeout_ms (rk's socket.timeout.ms: a request librdkafka sent is
 * waited for that long, whatever the call's timeout; seen here: a 1 s call
 * that returned after 60 s with the broker frozen) plus
 * KAFKA_CALL_MARGIN_MS.  With hang (test builds), the thread blocks for ever
 * instead, as librdkafka's bug does.  Returns NULL and fills err if the
 * thread could not be started.
 */
KafkaCall *
KafkaCallSendOffsets(rd_kafka_t *rk, const char *group, const char *topic, int64 offset,
					 const char *value, int timeout_ms, int socket_timeout_ms, bool hang,
					 char *err, size_t errlen)
{
	KafkaCall  *call = calloc(1, sizeof(KafkaCall));
	sigset_t	all;
	sigset_t	old;
	int			rc;

	if (call == NULL)
	{
		snprintf(err, errlen, "send_offsets_to_transaction: out of memory");
		return NULL;
	}
	call->efd = -1;
	call->rk = rk;
	call->group = strdup(group);
	call->topic = strdup(topic);
	call->len = strlen(value);
	call->value = malloc(call->len + 1);
	if (call->value)
		memcpy(call->value, value, call->len + 1);
	call->offset = offset;
	call->timeout_ms = timeout_ms;
	call->deadline_ms = (int64) timeout_ms + socket_timeout_ms + KAFKA_CALL_MARGIN_MS;
	call->hang = hang;
	call->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (call->group == NULL || call->topic == NULL || call->value == NULL || call->efd < 0)
	{
		snprintf(err, errlen, "send_offsets_to_transaction: cannot prepare its thread: %m");
		kafka_call_free(call);
		return NULL;
	}

	/* the thread inherits the mask: no signal handler of PostgreSQL runs
	 * on it */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&call->thread, NULL, kafka_call_thread, call);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		snprintf(err, errlen, "send_offsets_to_transaction: cannot start its thread: %s", strerror(rc));
		kafka_call_free(call);
		return NULL;
	}
	call->started_ms = kafka_call_now_ms();
	return call;
}

/*
 * KafkaCallWait: wait up to wait_ms for call to return, on the latch too
 * (a signal ends the wait early; the caller runs CHECK_FOR_INTERRUPTS()).
 * KAFKA_OK: it returned; the call is freed and *error is its result (NULL
 * on success), for KafkaSinkClassify.  KAFKA_RETRY: still running, wait
 * again.  KAFKA_STUCK: still running past its deadline (KafkaCallSendOffsets);
 * err says so, and the caller must leave call, its thread and the handle
 * alone and exit.
 */
KafkaStatus
KafkaCallWait(KafkaCall *call, int wait_ms, rd_kafka_error_t **error, char *err, size_t errlen)
{
	int64		age;

	*error = NULL;
	if (!__atomic_load_n(&call->done, __ATOMIC_ACQUIRE))
	{
		(void) WaitLatchOrSocket(MyLatch,
								 WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 call->efd, wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	if (__atomic_load_n(&call->done, __ATOMIC_ACQUIRE))
	{
		pthread_join(call->thread, NULL);
		*error = call->error;
		kafka_call_free(call);
		return KAFKA_OK;
	}
	age = kafka_call_now_ms() - call->started_ms;
	if (age > call->deadline_ms)
	{
		snprintf(err, errlen, "send_offsets_to_transaction has not returned after %lld ms, although its timeout is %d ms "
				 "and socket.timeout.ms %lld ms (librdkafka issues #5456, #5511: a lost group coordinator)",
				 (long long) age, call->timeout_ms,
				 (long long) (call->deadline_ms - call->timeout_ms - KAFKA_CALL_MARGIN_MS));
		return KAFKA_STUCK;
	}
	snprintf(err, errlen, "send_offsets_to_transaction: no answer after %lld ms (its timeout is %d ms)",
			 (long long) age, call->timeout_ms);
	return KAFKA_RETRY;
}

/* KafkaCallDescribe: what call is and how long it has run, for a log
 * line. */
void
KafkaCallDescribe(KafkaCall *call, char *buf, size_t len)
{
	snprintf(buf, len, "send_offsets_to_transaction (running for %lld ms, its timeout is %d ms)",
			 (long long) (kafka_call_now_ms() - call->started_ms), call->timeout_ms);
}
