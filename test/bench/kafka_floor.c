/*
 * kafka_floor.c: what one Kafka round costs on this machine, without guid:
 * the floor under the publisher's commit-to-consumer latency.  For each of
 * three forms, N rounds one after the other, each with one small record:
 *
 *   produce   a record with acks=all, waited for until delivered
 *   txn       begin_transaction, the record, commit_transaction
 *   txn+ofs   the same with send_offsets_to_transaction before the commit
 *             (what the publisher does: its checkpoint rides on it)
 *
 * and prints "FORM p50 p99 max" in milliseconds.  Then the throughput floor
 * under a drained backlog:
 *
 *   bulk      BULK_RECORDS records of 300 bytes produced as fast as
 *             librdkafka takes them (acks=all, no transaction; it batches
 *             what queues up), flushed: "bulk RECORDS_PER_SECOND"
 *  Used by
 * test/bench/fleet_stream.sh; not a test.
 *
 * Usage: kafka_floor BROKERS TOPIC ROUNDS REPLICAS
 *
 * TOPIC is created first (one partition, REPLICAS replicas and, with 3,
 * min.insync.replicas 2, as guid's defaults make its data topic) unless it
 * exists.  KAFKA_FLOOR_DEBUG (e.g. "eos,protocol") turns librdkafka's
 * debug log on, to stderr: it shows where a round's time goes (with one
 * broker, most of a transaction is the next one's AddPartitionsToTxn
 * refused with CONCURRENT_TRANSACTIONS until the broker has written the
 * previous one's markers, and retried after librdkafka's fixed 20 ms).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static int	delivered;
static rd_kafka_resp_err_t delivery_err;

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void) rk;
	(void) opaque;
	delivered = 1;
	if (m->err && !delivery_err)
		delivery_err = m->err;	/* the first error sticks */
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

static void
die(const char *what, const char *why)
{
	fprintf(stderr, "kafka_floor: %s: %s\n", what, why);
	exit(1);
}

static void
check(rd_kafka_error_t *error, const char *what)
{
	if (error)
		die(what, rd_kafka_error_string(error));
}

static rd_kafka_t *
producer(const char *brokers, const char *txn_id)
{
	char		errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "acks", "all", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "linger.ms", "0", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "retry.backoff.ms", "5", errstr, sizeof(errstr)) ||
		(txn_id && rd_kafka_conf_set(conf, "transactional.id", txn_id, errstr, sizeof(errstr))) ||
		(getenv("KAFKA_FLOOR_DEBUG") &&
		 rd_kafka_conf_set(conf, "debug", getenv("KAFKA_FLOOR_DEBUG"), errstr, sizeof(errstr))))
		die("config", errstr);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))))
		die("rd_kafka_new", errstr);
	if (txn_id)
		check(rd_kafka_init_transactions(rk, 60000), "init_transactions");
	return rk;
}

static void
produce(rd_kafka_t *rk, const char *topic, int wait)
{
	rd_kafka_resp_err_t err;

	delivered = 0;
	delivery_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
							RD_KAFKA_V_VALUE("floor", 5), RD_KAFKA_V_END);
	if (err)
		die("produce", rd_kafka_err2str(err));
	while (wait && !delivered)
		rd_kafka_poll(rk, 1);
	if (wait && delivery_err)
		die("delivery", rd_kafka_err2str(delivery_err));
}

static void
create_topic(rd_kafka_t *rk, const char *topic, int replicas)
{
	char		errstr[512];
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, replicas, errstr, sizeof(errstr));
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev;
	const rd_kafka_topic_result_t **res;
	size_t		nres;

	if (!nt)
		die("NewTopic", errstr);
	if (replicas >= 3)
		rd_kafka_NewTopic_set_config(nt, "min.insync.replicas", "2");
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 60000);
	if (!ev)
		die("CreateTopics", "no answer in 60 s");
	res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
	if (nres == 1 && rd_kafka_topic_result_error(res[0]) &&
		rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
		die("CreateTopics", rd_kafka_topic_result_error_string(res[0]));
	rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
}

/*
 * warm_group: ask for group's committed offset until a coordinator answers.
 * On a new Kafka the first send_offsets_to_transaction for a group finds
 * no __consumer_offsets yet; librdkafka 2.0.2 was seen blocking in it past
 * its timeout then (issue #5456), so the coordinator is found first.
 */
static void
warm_group(const char *brokers, const char *group, const char *topic)
{
	char		errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)))
		die("config", errstr);
	if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))))
		die("rd_kafka_new", errstr);
	for (int i = 0; i < 60 && err; i++)
	{
		rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);

		rd_kafka_topic_partition_list_add(parts, topic, 0);
		err = rd_kafka_committed(rk, parts, 2000);
		rd_kafka_topic_partition_list_destroy(parts);
		if (err)
			sleep(1);
	}
	if (err)
		die("finding the group's coordinator", rd_kafka_err2str(err));
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

#define BULK_RECORDS	200000

static void
bulk(const char *brokers, const char *topic)
{
	rd_kafka_t *rk = producer(brokers, NULL);
	char		value[300];
	double		t;
	rd_kafka_resp_err_t err;

	memset(value, 'x', sizeof(value));
	produce(rk, topic, 1);		/* connections first */
	delivery_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	t = now_ms();
	for (int i = 0; i < BULK_RECORDS; i++)
	{
		while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
										RD_KAFKA_V_VALUE(value, sizeof(value)),
										RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
										RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 10);
		if (err)
			die("produce", rd_kafka_err2str(err));
		rd_kafka_poll(rk, 0);
	}
	if (rd_kafka_flush(rk, 120000))
		die("flush", "records not delivered in 120 s");
	if (delivery_err)
		die("delivery", rd_kafka_err2str(delivery_err));
	printf("bulk %.0f\n", BULK_RECORDS / ((now_ms() - t) / 1000.0));
	fflush(stdout);
	rd_kafka_destroy(rk);
}

static void
report(const char *form, double *ms, int n)
{
	qsort(ms, n, sizeof(double), cmp_double);
	printf("%s %.1f %.1f %.1f\n", form, ms[n / 2], ms[(int) (n * 0.99) < n ? (int) (n * 0.99) : n - 1],
		   ms[n - 1]);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	const char *brokers;
	const char *topic;
	int			n;
	double	   *ms;
	rd_kafka_t *rk;
	char		txn_id[64];
	rd_kafka_consumer_group_metadata_t *cgmd;

	if (argc != 5 || (n = atoi(argv[3])) < 1 || atoi(argv[4]) < 1)
	{
		fprintf(stderr, "usage: kafka_floor BROKERS TOPIC ROUNDS REPLICAS\n");
		return 2;
	}
	brokers = argv[1];
	topic = argv[2];
	ms = calloc(n, sizeof(double));

	rk = producer(brokers, NULL);
	create_topic(rk, topic, atoi(argv[4]));
	produce(rk, topic, 1);		/* metadata and connections first */
	for (int i = 0; i < n; i++)
	{
		double		t = now_ms();

		produce(rk, topic, 1);
		ms[i] = now_ms() - t;
	}
	report("produce", ms, n);
	rd_kafka_destroy(rk);

	snprintf(txn_id, sizeof(txn_id), "kafka-floor-%d", (int) getpid());
	warm_group(brokers, txn_id, topic);
	rk = producer(brokers, txn_id);
	cgmd = rd_kafka_consumer_group_metadata_new(txn_id);
	for (int form = 0; form < 2; form++)
	{
		for (int i = -1; i < n; i++)	/* round -1 warms up */
		{
			double		t = now_ms();

			rd_kafka_error_t *error;

			check(rd_kafka_begin_transaction(rk), "begin_transaction");
			produce(rk, topic, 0);
			error = NULL;
			if (form == 1)
			{
				rd_kafka_topic_partition_list_t *ofs = rd_kafka_topic_partition_list_new(1);

				rd_kafka_topic_partition_list_add(ofs, topic, 0)->offset = i + 1;
				error = rd_kafka_send_offsets_to_transaction(rk, ofs, cgmd, 60000);
				rd_kafka_topic_partition_list_destroy(ofs);
			}
			if (!error)
				error = rd_kafka_commit_transaction(rk, 60000);
			if (error && rd_kafka_error_txn_requires_abort(error))
			{
				/* e.g. the group's coordinator still loading: round again */
				rd_kafka_error_destroy(error);
				check(rd_kafka_abort_transaction(rk, 60000), "abort_transaction");
				i--;
				continue;
			}
			check(error, "send_offsets_to_transaction or commit_transaction");
			if (i >= 0)
				ms[i] = now_ms() - t;
		}
		report(form == 0 ? "txn" : "txn+ofs", ms, n);
	}
	rd_kafka_consumer_group_metadata_destroy(cgmd);
	rd_kafka_destroy(rk);
	bulk(brokers, topic);
	free(ms);
	return 0;
}
