/*-------------------------------------------------------------------------
 *
 * kafka_checkpoint.c
 *		The publisher's checkpoint in Kafka: sent inside its transactions as
 *		the metadata of a consumer-group offset, read back with a stable
 *		offset fetch; and the read of the checkpoint topic of releases
 *		before 1.6, which the upgrade needs once.
 *
 * Why an offset: a consumer group per publisher (per transactional.id) is a
 * place no other cluster writes, and Kafka already commits a group's offsets
 * atomically with a transaction (send_offsets_to_transaction, as
 * consume-transform-produce applications do).  Reading it is one
 * OffsetFetch to the group's coordinator, whatever the number of clusters,
 * and with require_stable (KIP-447) the answer is never older than a
 * transaction that committed.  A record in a partition shared by every
 * cluster (what releases before 1.6 wrote) is read up to its last stable
 * offset, which any other cluster's open transaction holds back.
 *
 * Like coordinator/kafka_sink.c: nothing here runs on librdkafka's threads,
 * every blocking call is a short step followed by CHECK_FOR_INTERRUPTS(),
 * and errors fill err and return a KafkaStatus.  The one call that can
 * block past its timeout, send_offsets_to_transaction, runs on a helper
 * thread with a watchdog (coordinator/kafka_call.c).
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
 * KafkaSinkSendCheckpoint: put the checkpoint value in the open
 * transaction, as the metadata of the offset (offset of partition 0 of
 * topic) of consumer group group: the broker makes it visible when, and only
 * if, the transaction commits.  No consumer runs in that group: the group
 * metadata needs only its name.  A value longer than
 * KAFKA_OFFSET_METADATA_MAX is refused (KAFKA_FATAL) before it is sent.
 *
 * librdkafka's call runs on a helper thread (coordinator/kafka_call.c: it
 * can block past timeout_ms); this waits for it one step of wait_ms (at
 * most KAFKA_QUERY_STEP_MAX_MS).  KAFKA_RETRY means call again with the same
 * arguments: the call is either still running (waited for again, not
 * repeated) or returned a retriable error (librdkafka resumes it).
 * KAFKA_STUCK: it has not returned long past timeout_ms; exit.
 */
KafkaStatus
KafkaSinkSendCheckpoint(KafkaSink *ks, const char *group, const char *topic, int64 offset,
						const char *value, int timeout_ms, int wait_ms, char *err, size_t errlen)
{
	int			socket_timeout_ms;
	KafkaCall **call = KafkaSinkCall(ks, &socket_timeout_ms);
	rd_kafka_error_t *error;
	size_t		len = strlen(value);
	KafkaStatus status;
	bool		hang = false;

	if (*call == NULL)
	{
		if (len > KAFKA_OFFSET_METADATA_MAX)
		{
			snprintf(err, errlen, "checkpoint of %zu bytes exceeds the %d bytes of an offset's metadata (offset.metadata.max.bytes)",
					 len, KAFKA_OFFSET_METADATA_MAX);
			return KAFKA_FATAL;
		}
#ifdef GUID_FAULT_INJECTION
		hang = KafkaSinkTestHanging(ks);
#endif
		/* a negative offset would be skipped */
		*call = KafkaCallSendOffsets(KafkaSinkHandle(ks), group, topic, Max(offset, 0), value,
									 timeout_ms, socket_timeout_ms, hang, err, errlen);
		if (*call == NULL)
			return KAFKA_FATAL;
	}
	status = KafkaCallWait(*call, Min(wait_ms, KAFKA_QUERY_STEP_MAX_MS), &error, err, errlen);
	if (status != KAFKA_OK)
		return status;
	*call = NULL;
	status = KafkaSinkClassify(ks, error, "send_offsets_to_transaction", err, errlen);
	if (status != KAFKA_OK && strstr(err, "etadata string too large") != NULL)
	{
		size_t		n = strlen(err);

		snprintf(err + n, errlen - n, "; the brokers' offset.metadata.max.bytes must be at least %d",
				 KAFKA_OFFSET_METADATA_MAX);
		status = KAFKA_FATAL;
	}
	return status;
}

/*
 * KafkaSinkReadGroupCheckpoint: the checkpoint committed for consumer group
 * group on partition 0 of topic: one OffsetFetch to the group's
 * coordinator, from a read_committed consumer in that group that never
 * subscribes (so it never joins the group).  librdkafka then asks with
 * require_stable (KIP-447): while a transaction that sent offsets for this
 * group is not complete the broker answers UNSTABLE_OFFSET_COMMIT rather
 * than an older offset, and librdkafka asks again.  Only the producer with
 * this group's transactional.id sends offsets for it, and its
 * init_transactions has completed or aborted what it left open, so that
 * wait is short; no other producer's transaction is involved.
 *
 * Not the admin API's ListConsumerGroupOffsets through the producer's
 * handle: a handle without a group.id dereferences its missing group when
 * the coordinator moves during the fetch (NOT_COORDINATOR, a broker just
 * started or lost), a segmentation fault in librdkafka (its issue #5040).
 *
 * *found is false when the group has no offset there.  KAFKA_FATAL when
 * refused (configuration, ACLs), KAFKA_RETRY on a timeout or another error.
 */
KafkaStatus
KafkaSinkReadGroupCheckpoint(const char *brokers, const char *properties,
							 const char *file_properties, const char *group,
							 const char *topic, char *value, size_t valuelen,
							 bool *found, int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR__TIMED_OUT;
	KafkaStatus status = KAFKA_RETRY;
	int			waited = 0;
	int			step = KAFKA_STEP_MS;

	*found = false;
	value[0] = '\0';
	rk = KafkaSinkReader(brokers, properties, file_properties, group, NULL, err, errlen);
	if (rk == NULL)
		return KAFKA_FATAL;
	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, topic, 0);

	/* rd_kafka_committed() blocks without looking at signals: short steps */
	while (waited < timeout_ms)
	{
		CHECK_FOR_INTERRUPTS();
		code = rd_kafka_committed(rk, parts, step);
		if (code != RD_KAFKA_RESP_ERR__TIMED_OUT)
			break;
		waited += step;
		step = Min(step * 2, KAFKA_QUERY_STEP_MAX_MS);
	}
	if (code == RD_KAFKA_RESP_ERR_NO_ERROR)
		code = parts->elems[0].err;

	if (code == RD_KAFKA_RESP_ERR__TIMED_OUT)
		snprintf(err, errlen, "reading the checkpoint of group %s timed out after %d ms", group, waited);
	else if (code == RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT)
		snprintf(err, errlen, "reading the checkpoint of group %s: a transaction of this publisher is still completing",
				 group);
	else if (code != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(err, errlen, "reading the checkpoint of group %s: %s", group, rd_kafka_err2str(code));
	else
	{
		const rd_kafka_topic_partition_t *p = &parts->elems[0];

		if (p->offset >= 0)
		{
			size_t		len = p->metadata ? Min(p->metadata_size, valuelen - 1) : 0;

			if (len > 0)
				memcpy(value, p->metadata, len);
			value[len] = '\0';
			*found = true;
		}
		status = KAFKA_OK;
	}
	if (code == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
		code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
		status = KAFKA_FATAL;
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return status;
}

/*
 * kafka_query_high_watermark: rd_kafka_query_watermark_offsets() of
 * partition 0 of topic, which blocks without looking at signals, in steps
 * with CHECK_FOR_INTERRUPTS() before each.  A step that times out adds its
 * timeout to *waited and is tried again with a longer one (up to
 * KAFKA_QUERY_STEP_MAX_MS, so that a slow broker's answer can still arrive),
 * until *waited reaches timeout_ms.
 */
static rd_kafka_resp_err_t
kafka_query_high_watermark(rd_kafka_t *rk, const char *topic, int64_t *lo,
						   int64_t *hi, int timeout_ms, int *waited)
{
	int			step = KAFKA_STEP_MS;
	rd_kafka_resp_err_t werr;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		werr = rd_kafka_query_watermark_offsets(rk, topic, 0, lo, hi, step);
		if (werr != RD_KAFKA_RESP_ERR__TIMED_OUT)
			return werr;
		*waited += step;
		if (*waited >= timeout_ms)
			return werr;
		step = Min(step * 2, KAFKA_QUERY_STEP_MAX_MS);
	}
}

/*
 * kafka_topic_exists: whether the consumer rk finds topic in the cluster's
 * metadata (a consumer: asking does not create it, as a producer's request
 * may).  KAFKA_RETRY if the brokers did not answer in timeout_ms.
 */
static KafkaStatus
kafka_topic_exists(rd_kafka_t *rk, const char *topic, bool *exists, int timeout_ms,
				   char *err, size_t errlen)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR__TIMED_OUT;
	KafkaStatus status = KAFKA_RETRY;
	int			waited = 0;

	while (waited < timeout_ms)
	{
		CHECK_FOR_INTERRUPTS();
		rerr = rd_kafka_metadata(rk, 0, rkt, &md, KAFKA_QUERY_STEP_MAX_MS);
		if (rerr != RD_KAFKA_RESP_ERR__TIMED_OUT)
			break;
		waited += KAFKA_QUERY_STEP_MAX_MS;
	}
	if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
		(md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR ||
		 md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
	{
		*exists = md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR;
		status = KAFKA_OK;
	}
	else
		snprintf(err, errlen, "metadata of topic %s: %s", topic,
				 rerr ? rd_kafka_err2str(rerr) :
				 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no answer");
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return status;
}

/*
 * KafkaSinkReadCheckpoint: the checkpoint as releases before 1.6 wrote it:
 * the last committed value of key in partition 0 of the compacted topic,
 * read from the beginning with isolation.level=read_committed up to the end.
 * Only the upgrade reads it, once (coordinator/publisher_kafka.c).  Every
 * publisher of an older release shares that partition, and one's open
 * transaction holds its last stable offset back for all; librdkafka's
 * watermark query in read_committed answers that offset, not the high
 * watermark, so the read then ends there, with an older value if newer ones
 * lie past it (the README says to upgrade while none is open).  A topic that does not exist
 * holds nothing.  *found tells whether there was one.  KAFKA_RETRY if the
 * end was not reached in timeout_ms.
 */
KafkaStatus
KafkaSinkReadCheckpoint(const char *brokers, const char *properties,
						const char *file_properties,
						const char *topic, const char *key,
						char *value, size_t valuelen, bool *found,
						int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *parts;
	KafkaStatus status = KAFKA_RETRY;
	int			waited = 0;
	size_t		keylen = strlen(key);
	bool		exists = false;

	*found = false;
	rk = KafkaSinkReader(brokers, properties, file_properties, "guid-checkpoint-reader", NULL,
						 err, errlen);
	if (rk == NULL)
		return KAFKA_FATAL;
	status = kafka_topic_exists(rk, topic, &exists, timeout_ms, err, errlen);
	if (status != KAFKA_OK || !exists)
	{
		rd_kafka_destroy(rk);
		return status;
	}
	status = KAFKA_RETRY;
	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);

	snprintf(err, errlen, "reading checkpoint topic %s timed out", topic);
	while (waited < timeout_ms)
	{
		rd_kafka_message_t *m;

		CHECK_FOR_INTERRUPTS();
		m = rd_kafka_consumer_poll(rk, KAFKA_STEP_MS);
		if (m == NULL)
		{
			waited += KAFKA_STEP_MS;
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			int64_t		end = m->offset;	/* the fetch position reached */
			int64_t		lo,
						hi;
			rd_kafka_resp_err_t werr;

			rd_kafka_message_destroy(m);

			/*
			 * read_committed stops at the last stable offset: another
			 * publisher's open transaction on this partition would hide
			 * newer checkpoints.  Done only once the high watermark is
			 * reached.
			 */
			werr = kafka_query_high_watermark(rk, topic, &lo, &hi, timeout_ms, &waited);
			if (werr == RD_KAFKA_RESP_ERR_NO_ERROR && end >= hi)
			{
				status = KAFKA_OK;
				break;
			}
			if (werr != RD_KAFKA_RESP_ERR_NO_ERROR)
				snprintf(err, errlen, "reading checkpoint topic %s: high watermark: %s",
						 topic, rd_kafka_err2str(werr));
			else
				snprintf(err, errlen, "reading checkpoint topic %s: waiting for an open transaction to end (at offset %lld of %lld)",
						 topic, (long long) end, (long long) hi);
			waited += KAFKA_STEP_MS;
			continue;
		}
		if (m->err)
		{
			snprintf(err, errlen, "reading checkpoint topic %s: %s", topic, rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			waited += KAFKA_STEP_MS;
			continue;
		}
		if (m->key_len == keylen && memcmp(m->key, key, keylen) == 0)
		{
			size_t		n = Min(m->len, valuelen - 1);

			if (n > 0)
				memcpy(value, m->payload, n);
			value[n] = '\0';
			*found = m->len > 0;	/* a tombstone: deleted by the upgrade */
		}
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return status;
}
