/*-------------------------------------------------------------------------
 *
 * kafka_topics.c
 *		The topics guid creates, and the replication it asks of them:
 *		KafkaSinkEnsureTopic, which every topic guid writes to goes through.
 *
 * A topic is created with guid.kafka_replication_factor replicas and
 * guid.kafka_min_insync_replicas (-1, the default, is automatic:
 * min(3, the brokers the cluster reports), and 2 where that is 3 or more,
 * else 1).  With acks=all (coordinator/kafka_sink.c) a write is then
 * acknowledged only once that many replicas have it, so the loss of one
 * broker of three loses no acknowledged row, and leaves the topic
 * writable.
 *
 * A topic that exists already is checked instead (metadata for its
 * replication factor, DescribeConfigs for its min.insync.replicas): one
 * with less than the settings ask is refused (KAFKA_REFUSED) rather than
 * streamed into, since an acknowledged write could then be lost with one
 * broker, which the user did not choose.  The user alters the topic or
 * sets the settings lower; the publisher tries again at each session.
 *
 * Like coordinator/kafka_sink.c, nothing here runs on librdkafka's
 * threads, and every blocking call is a short step followed by
 * CHECK_FOR_INTERRUPTS().  Errors fill err and return a KafkaStatus.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "miscadmin.h"

#include "kafka_sink.h"

#define KAFKA_STEP_MS		100
/* A step of a call that needs a round trip to a broker: at most this, ms */
#define KAFKA_QUERY_STEP_MAX_MS	1000

/*
 * kafka_admin_wait: the result event of an admin request on queue, polled
 * in short steps with CHECK_FOR_INTERRUPTS() for up to timeout_ms; NULL if
 * none came.
 */
static rd_kafka_event_t *
kafka_admin_wait(rd_kafka_t *rk, rd_kafka_queue_t *queue, int timeout_ms)
{
	rd_kafka_event_t *ev = NULL;
	int			waited = 0;

	while (ev == NULL && waited <= timeout_ms + KAFKA_STEP_MS)
	{
		CHECK_FOR_INTERRUPTS();
		rd_kafka_poll(rk, 0);
		ev = rd_kafka_queue_poll(queue, KAFKA_STEP_MS);
		waited += KAFKA_STEP_MS;
	}
	return ev;
}

/*
 * kafka_replicas: the number of brokers the cluster reports and, when topic
 * is not NULL, the topic's replication factor (the fewest replicas of any
 * of its partitions).  Call with a topic only once it exists: a metadata
 * request for a missing topic lets the broker create it with its defaults.
 * KAFKA_RETRY with err filled if there was no answer in timeout_ms.
 */
static KafkaStatus
kafka_replicas(rd_kafka_t *rk, const char *topic, int *brokers, int *replicas,
			   int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_topic_t *rkt = topic ? rd_kafka_topic_new(rk, topic, NULL) : NULL;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t merr;
	int			step = KAFKA_STEP_MS;
	int			waited = 0;
	int			i;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		rd_kafka_poll(rk, 0);
		merr = rd_kafka_metadata(rk, 0, rkt, &md, step);
		waited += step;
		if (merr != RD_KAFKA_RESP_ERR__TIMED_OUT || waited >= timeout_ms)
			break;
		step = Min(step * 2, KAFKA_QUERY_STEP_MAX_MS);
	}
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	if (merr != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		snprintf(err, errlen, "metadata%s%s: %s", topic ? " of topic " : "", topic ? topic : "",
				 rd_kafka_err2str(merr));
		return KAFKA_RETRY;
	}
	*brokers = md->broker_cnt;
	if (replicas)
	{
		*replicas = -1;
		for (i = 0; i < md->topic_cnt; i++)
		{
			int			p;

			if (strcmp(md->topics[i].topic, topic) != 0 || md->topics[i].err)
				continue;
			for (p = 0; p < md->topics[i].partition_cnt; p++)
				if (*replicas < 0 || md->topics[i].partitions[p].replica_cnt < *replicas)
					*replicas = md->topics[i].partitions[p].replica_cnt;
		}
	}
	rd_kafka_metadata_destroy(md);
	if (replicas && *replicas < 0)
	{
		snprintf(err, errlen, "metadata of topic %s: the topic has no partitions yet", topic);
		return KAFKA_RETRY;
	}
	return KAFKA_OK;
}

/*
 * kafka_min_isr: the topic's min.insync.replicas (DescribeConfigs), or -1
 * in *min_isr if this principal may not read its configuration (logged).
 */
static KafkaStatus
kafka_min_isr(rd_kafka_t *rk, const char *topic, int *min_isr, int timeout_ms,
			  char *err, size_t errlen)
{
	rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev;
	KafkaStatus status = KAFKA_RETRY;

	*min_isr = -1;
	rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, NULL, 0);
	rd_kafka_DescribeConfigs(rk, &res, 1, options, queue);
	snprintf(err, errlen, "describing topic %s timed out", topic);
	ev = kafka_admin_wait(rk, queue, timeout_ms);
	if (ev != NULL)
	{
		const rd_kafka_DescribeConfigs_result_t *r = rd_kafka_event_DescribeConfigs_result(ev);
		const rd_kafka_ConfigResource_t **rs = NULL;
		size_t		n = 0;
		rd_kafka_resp_err_t rerr;

		if (r)
			rs = rd_kafka_DescribeConfigs_result_resources(r, &n);
		rerr = rd_kafka_event_error(ev) ? rd_kafka_event_error(ev) :
			n > 0 ? rd_kafka_ConfigResource_error(rs[0]) : RD_KAFKA_RESP_ERR__BAD_MSG;
		if (rerr == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
			rerr == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED)
		{
			ereport(LOG,
					(errmsg("guid publisher: not allowed to describe topic %s; its min.insync.replicas is not checked", topic)));
			status = KAFKA_OK;
		}
		else if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR)
			snprintf(err, errlen, "describing topic %s: %s", topic,
					 rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev) :
					 rd_kafka_err2str(rerr));
		else
		{
			size_t		cnt;
			const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(rs[0], &cnt);
			size_t		i;

			for (i = 0; i < cnt; i++)
				if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), "min.insync.replicas") == 0 &&
					rd_kafka_ConfigEntry_value(entries[i]) != NULL)
					*min_isr = atoi(rd_kafka_ConfigEntry_value(entries[i]));
			if (*min_isr > 0)
				status = KAFKA_OK;
			else
				snprintf(err, errlen, "describing topic %s: no min.insync.replicas", topic);
		}
		rd_kafka_event_destroy(ev);
	}
	rd_kafka_queue_destroy(queue);
	rd_kafka_AdminOptions_destroy(options);
	rd_kafka_ConfigResource_destroy(res);
	return status;
}

/*
 * KafkaSinkEnsureTopic: create topic unless it exists, with the replication
 * factor and min.insync.replicas the settings ask for and the broker's
 * default partition count.  A topic that exists with less of either is refused
 * (KAFKA_REFUSED, err says what was found, what is wanted and how to fix
 * it): an acknowledged write to it could be lost with one broker, which the
 * user did not choose.
 */
KafkaStatus
KafkaSinkEnsureTopic(KafkaSink *ks, const char *topic, int timeout_ms,
					 char *err, size_t errlen)
{
	rd_kafka_t *rk = KafkaSinkHandle(ks);
	rd_kafka_NewTopic_t *nt;
	rd_kafka_AdminOptions_t *options;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *ev;
	KafkaStatus status = KAFKA_RETRY;
	bool		exists = false;
	int			brokers;
	int			rf;
	int			min_isr;
	int			have_rf;
	int			have_min_isr;
	char		value[16];

	/* what the settings ask of this cluster */
	if ((status = kafka_replicas(rk, NULL, &brokers, NULL, timeout_ms, err, errlen)) != KAFKA_OK)
		return status;
	rf = guid_kafka_replication_factor > 0 ? guid_kafka_replication_factor : Max(1, Min(3, brokers));
	min_isr = guid_kafka_min_insync_replicas > 0 ? guid_kafka_min_insync_replicas : (rf >= 3 ? 2 : 1);
	if (min_isr > rf)
	{
		snprintf(err, errlen, "topic %s: guid.kafka_min_insync_replicas %d is above the replication factor %d (%d brokers), so no write could be acknowledged; lower it",
				 topic, min_isr, rf, brokers);
		return KAFKA_REFUSED;
	}

	nt = rd_kafka_NewTopic_new(topic, -1, rf, err, errlen);
	if (nt == NULL)
		return KAFKA_FATAL;
	snprintf(value, sizeof(value), "%d", min_isr);
	if (rd_kafka_NewTopic_set_config(nt, "min.insync.replicas", value) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_NewTopic_destroy(nt);
		snprintf(err, errlen, "could not set the configuration of topic %s", topic);
		return KAFKA_FATAL;
	}
	options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, NULL, 0);
	queue = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, options, queue);

	snprintf(err, errlen, "creating topic %s timed out", topic);
	status = KAFKA_RETRY;
	ev = kafka_admin_wait(rk, queue, timeout_ms);
	if (ev != NULL)
	{
		const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);

		if (rd_kafka_event_error(ev))
			snprintf(err, errlen, "creating topic %s: %s", topic, rd_kafka_event_error_string(ev));
		else if (res)
		{
			size_t		n;
			const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
			rd_kafka_resp_err_t terr = n > 0 ? rd_kafka_topic_result_error(tr[0]) : RD_KAFKA_RESP_ERR_NO_ERROR;

			/*
			 * A principal without CREATE permission is refused even for a
			 * topic that exists: go on, a missing topic fails later, clearly.
			 */
			if (terr == RD_KAFKA_RESP_ERR_NO_ERROR)
				status = KAFKA_OK;
			else if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
				exists = true;
			else if (terr == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
					 terr == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED)
			{
				ereport(LOG,
						(errmsg("guid publisher: not allowed to create topic %s; assuming it exists", topic)));
				exists = true;
			}
			else
			{
				snprintf(err, errlen, "creating topic %s: %s", topic,
						 rd_kafka_topic_result_error_string(tr[0]));
				status = terr == RD_KAFKA_RESP_ERR_INVALID_CONFIG ? KAFKA_FATAL :
					terr == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR ? KAFKA_REFUSED : KAFKA_RETRY;
			}
		}
		rd_kafka_event_destroy(ev);
	}
	rd_kafka_queue_destroy(queue);
	rd_kafka_AdminOptions_destroy(options);
	rd_kafka_NewTopic_destroy(nt);
	if (!exists)
		return status;

	/* a topic that exists: at least what the settings ask, or refused */
	if ((status = kafka_replicas(rk, topic, &brokers, &have_rf, timeout_ms, err, errlen)) != KAFKA_OK ||
		(status = kafka_min_isr(rk, topic, &have_min_isr, timeout_ms, err, errlen)) != KAFKA_OK)
		return status;
	if (have_rf < rf || (have_min_isr > 0 && have_min_isr < min_isr))
	{
		snprintf(err, errlen, "topic %s has replication factor %d and min.insync.replicas %d, below the %d and %d wanted (%d brokers): not publishing into it; alter the topic, or set guid.kafka_replication_factor and guid.kafka_min_insync_replicas lower",
				 topic, have_rf, have_min_isr, rf, min_isr, brokers);
		return KAFKA_REFUSED;
	}
	return KAFKA_OK;
}
