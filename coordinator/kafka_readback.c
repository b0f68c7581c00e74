/*-------------------------------------------------------------------------
 *
 * kafka_readback.c
 *		Reading the data topic back, for the publisher's failover recovery:
 *		the end offsets of every partition (a "mark" the checkpoint
 *		records), and a read_committed read of every partition from given
 *		offsets to its end.
 *
 * After a promotion (or a slot recreated over a checkpoint) the publisher
 * must find which audit rows Kafka already holds (coordinator/
 * publisher_failover.c).  Its checkpoint records the data topic's end
 * offsets at an earlier moment; everything this cluster published later
 * lies at or after them, so reading from there to the end finds it.  A
 * partition whose start offset retention has already deleted cannot be
 * decided: the caller is told (*undecidable), and counts what it
 * republishes as possible duplicates.
 *
 * Like coordinator/kafka_sink.c, nothing here runs on librdkafka's
 * threads (logs go to the consumer queue, served by consumer_poll on the
 * worker's thread), and every blocking call is a short step followed by
 * CHECK_FOR_INTERRUPTS().  Errors fill err and return a KafkaStatus.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "miscadmin.h"

#include "kafka_sink.h"

#define RB_STEP_MS			100

/* Number of partitions of topic, or -1 (err filled). */
static int
rb_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR__TIMED_OUT;
	int			n = -1;
	int			waited = 0;

	while (waited < timeout_ms)
	{
		CHECK_FOR_INTERRUPTS();
		rerr = rd_kafka_metadata(rk, 0, rkt, &md, RB_STEP_MS * 5);
		if (rerr != RD_KAFKA_RESP_ERR__TIMED_OUT)
			break;
		waited += RB_STEP_MS * 5;
	}
	if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0)
		n = md->topics[0].partition_cnt;
	else
		snprintf(err, errlen, "metadata of topic %s: %s", topic,
				 rerr ? rd_kafka_err2str(rerr) :
				 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no such topic");
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return n;
}

/* Low and high watermarks of one partition, in interruptible steps. */
static bool
rb_watermarks(rd_kafka_t *rk, const char *topic, int partition, int64 *lo, int64 *hi,
			  int timeout_ms, char *err, size_t errlen)
{
	int			waited = 0;
	int64_t		l,
				h;
	rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR__TIMED_OUT;

	while (waited < timeout_ms)
	{
		CHECK_FOR_INTERRUPTS();
		rerr = rd_kafka_query_watermark_offsets(rk, topic, partition, &l, &h, RB_STEP_MS * 5);
		if (rerr != RD_KAFKA_RESP_ERR__TIMED_OUT)
			break;
		waited += RB_STEP_MS * 5;
	}
	if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		snprintf(err, errlen, "offsets of %s [%d]: %s", topic, partition, rd_kafka_err2str(rerr));
		return false;
	}
	*lo = l;
	*hi = h;
	return true;
}

/*
 * KafkaTopicPartitions: the number of partitions of topic, through the
 * producer ks; -1 with err filled if the brokers did not say.
 */
int
KafkaTopicPartitions(KafkaSink *ks, const char *topic, int timeout_ms, char *err, size_t errlen)
{
	return rb_partitions(KafkaSinkHandle(ks), topic, timeout_ms, err, errlen);
}

/*
 * KafkaTopicEnds: the high watermark of every partition of topic (at most
 * maxparts), through the producer ks.  Returns KAFKA_OK and sets *nparts,
 * or KAFKA_RETRY with err filled (the caller tries again later).
 */
KafkaStatus
KafkaTopicEnds(KafkaSink *ks, const char *topic, int64 *ends, int maxparts, int *nparts,
			   int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_t *rk = KafkaSinkHandle(ks);
	int			n = rb_partitions(rk, topic, timeout_ms, err, errlen);
	int			p;

	if (n < 0)
		return KAFKA_RETRY;
	if (n > maxparts)
	{
		snprintf(err, errlen, "topic %s has %d partitions, more than the %d a checkpoint records",
				 topic, n, maxparts);
		return KAFKA_FATAL;
	}
	for (p = 0; p < n; p++)
	{
		int64		lo;

		if (!rb_watermarks(rk, topic, p, &lo, &ends[p], timeout_ms, err, errlen))
			return KAFKA_RETRY;
	}
	*nparts = n;
	return KAFKA_OK;
}

/*
 * KafkaReadback: read every partition of topic with read_committed, from
 * from[p] (p < nfrom; later partitions from their beginning) to its end,
 * calling cb for each message.  Sets *undecidable if a start offset was
 * already deleted (retention), and ends[] / *nends to where it read up to.
 * KAFKA_RETRY if the end was not reached in timeout_ms.
 */
KafkaStatus
KafkaReadback(const char *brokers, const char *properties, const char *file_properties,
			  const char *topic, const int64 *from, int nfrom,
			  KafkaReadbackCallback cb, void *arg,
			  int64 *ends, int maxparts, int *nends, bool *undecidable,
			  int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *parts;
	KafkaStatus status = KAFKA_RETRY;
	int			n;
	int			p;
	int			open = 0;
	int			waited = 0;
	bool	   *done;

	*undecidable = false;
	/* an offset retention deleted is an error, not a silent skip */
	rk = KafkaSinkReader(brokers, properties, file_properties, "guid-failover-readback", "error",
						 err, errlen);
	if (rk == NULL)
		return KAFKA_FATAL;

	n = rb_partitions(rk, topic, timeout_ms, err, errlen);
	if (n < 0 || n > maxparts)
	{
		if (n > maxparts)
			snprintf(err, errlen, "topic %s has %d partitions, more than %d", topic, n, maxparts);
		rd_kafka_destroy(rk);
		return n < 0 ? KAFKA_RETRY : KAFKA_FATAL;
	}
	done = palloc0(sizeof(bool) * Max(n, 1));
	parts = rd_kafka_topic_partition_list_new(Max(n, 1));
	for (p = 0; p < n; p++)
	{
		int64		lo,
					hi;
		int64		start = p < nfrom ? from[p] : 0;

		if (!rb_watermarks(rk, topic, p, &lo, &hi, timeout_ms, err, errlen))
		{
			rd_kafka_topic_partition_list_destroy(parts);
			rd_kafka_destroy(rk);
			return KAFKA_RETRY;
		}
		if (start < lo)
		{
			/* retention deleted what we would have to read */
			*undecidable = true;
			start = lo;
		}
		ends[p] = hi;
		if (start >= hi)
		{
			done[p] = true;
			continue;
		}
		rd_kafka_topic_partition_list_add(parts, topic, p)->offset = start;
		open++;
	}
	*nends = n;
	if (open == 0)
		status = KAFKA_OK;
	else
		rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);

	snprintf(err, errlen, "reading topic %s back timed out", topic);
	while (open > 0 && waited < timeout_ms)
	{
		rd_kafka_message_t *m;

		CHECK_FOR_INTERRUPTS();
		m = rd_kafka_consumer_poll(rk, RB_STEP_MS);
		if (m == NULL)
		{
			waited += RB_STEP_MS;
			continue;
		}
		p = m->partition;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			/* read_committed stops at the last stable offset: done only
			 * once the high watermark seen at the start is reached */
			if (p >= 0 && p < n && !done[p] && m->offset >= ends[p])
			{
				done[p] = true;
				open--;
			}
			else
				waited += RB_STEP_MS;
		}
		else if (m->err)
		{
			snprintf(err, errlen, "reading topic %s back: %s", topic, rd_kafka_message_errstr(m));
			waited += RB_STEP_MS;
		}
		else if (p >= 0 && p < n && !done[p])
		{
			if (m->offset < ends[p])
				cb(arg, m->payload, m->len);
			if (m->offset + 1 >= ends[p])
			{
				done[p] = true;
				open--;
			}
		}
		rd_kafka_message_destroy(m);
	}
	if (open == 0)
		status = KAFKA_OK;
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	pfree(done);
	return status;
}
