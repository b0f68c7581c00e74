/*-------------------------------------------------------------------------
 *
 * kafka_sink.h
 *		The publisher's adapter to librdkafka (coordinator/kafka_sink.c).
 *
 * Every call returns a KafkaStatus and fills err; the publisher decides
 * what to do and reports it in one place.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_SINK_H
#define KAFKA_SINK_H

typedef enum KafkaStatus
{
	KAFKA_OK = 0,
	KAFKA_RETRY,				/* retriable (a timeout, a full queue): call
								 * again; for a commit the outcome is unknown
								 * until it is retried */
	KAFKA_ABORT,				/* the transaction must be aborted */
	KAFKA_FATAL,				/* the producer is unusable (fenced, bad
								 * configuration): destroy it */
	KAFKA_REFUSED,				/* the cluster or a topic is not what the
								 * settings ask (under-replicated): end the
								 * session, try again later */
	KAFKA_STUCK					/* a librdkafka call has not returned long
								 * past its timeout: never touch the handle
								 * again (not even to destroy it); the
								 * process must exit */
} KafkaStatus;

/*
 * The replication of every topic guid creates, and the least it accepts of
 * a topic that exists (coordinator/publisher_settings.c defines them): -1
 * is automatic, min(3, brokers) and 2 where that is 3 or more, else 1.
 */
extern int	guid_kafka_replication_factor;
extern int	guid_kafka_min_insync_replicas;

typedef struct KafkaSink KafkaSink;

/*
 * The longest offset metadata a broker accepts by default
 * (offset.metadata.max.bytes): the checkpoint's limit.
 */
#define KAFKA_OFFSET_METADATA_MAX	4096

extern const char *KafkaStatusName(KafkaStatus status);
extern KafkaSink *KafkaSinkCreate(const char *brokers, const char *properties,
								  const char *file_properties,
								  const char *transactional_id,
								  char *err, size_t errlen);
extern void KafkaSinkDestroy(KafkaSink *ks);
extern void KafkaSinkPoll(KafkaSink *ks);
extern const char *KafkaSinkLastError(KafkaSink *ks);
extern void KafkaSinkClearLastError(KafkaSink *ks);
extern bool KafkaSinkFenced(KafkaSink *ks);
extern long KafkaSinkFencedOpen(KafkaSink *ks, int *timeout_ms);
extern KafkaStatus KafkaSinkEnsureTopic(KafkaSink *ks, const char *topic,
										int timeout_ms, char *err, size_t errlen);
extern KafkaStatus KafkaSinkInitTransactions(KafkaSink *ks, int timeout_ms,
											 char *err, size_t errlen);
extern KafkaStatus KafkaSinkBegin(KafkaSink *ks, char *err, size_t errlen);
extern KafkaStatus KafkaSinkProduce(KafkaSink *ks, const char *topic,
									int32 partition,
									const char *key, size_t keylen,
									const char *value, size_t len,
									const char *lsn,
									char *err, size_t errlen);
extern KafkaStatus KafkaSinkCommit(KafkaSink *ks, int timeout_ms,
								   char *err, size_t errlen);
struct rd_kafka_error_s;
extern KafkaStatus KafkaSinkClassify(KafkaSink *ks, struct rd_kafka_error_s *error,
									 const char *what, char *err, size_t errlen);

/*
 * coordinator/kafka_call.c: a librdkafka call that can block past its
 * timeout, on a helper thread, given up as stuck this long after its
 * timeout and the producer's socket.timeout.ms (the longest a request of
 * it may wait for an answer) have both passed
 */
#define KAFKA_CALL_MARGIN_MS	30000
typedef struct KafkaCall KafkaCall;
struct rd_kafka_s;
struct rd_kafka_error_s;
extern KafkaCall *KafkaCallSendOffsets(struct rd_kafka_s *rk, const char *group,
									   const char *topic, int64 offset,
									   const char *value, int timeout_ms,
									   int socket_timeout_ms, bool hang,
									   char *err, size_t errlen);
extern KafkaStatus KafkaCallWait(KafkaCall *call, int wait_ms,
								 struct rd_kafka_error_s **error,
								 char *err, size_t errlen);
extern void KafkaCallDescribe(KafkaCall *call, char *buf, size_t len);
extern KafkaCall **KafkaSinkCall(KafkaSink *ks, int *socket_timeout_ms);
extern KafkaStatus KafkaSinkSettle(KafkaSink *ks, int wait_ms, char *err, size_t errlen);
extern bool KafkaSinkPendingCall(KafkaSink *ks, char *buf, size_t len);
#ifdef GUID_FAULT_INJECTION
extern void KafkaSinkTestHang(KafkaSink *ks, bool hang);
extern bool KafkaSinkTestHanging(KafkaSink *ks);
#endif

/* coordinator/kafka_checkpoint.c: the checkpoint */
extern KafkaStatus KafkaSinkSendCheckpoint(KafkaSink *ks, const char *group,
										   const char *topic, int64 offset,
										   const char *value, int timeout_ms,
										   int wait_ms, char *err, size_t errlen);
extern KafkaStatus KafkaSinkReadGroupCheckpoint(const char *brokers,
												const char *properties,
												const char *file_properties,
												const char *group, const char *topic,
												char *value, size_t valuelen,
												bool *found, int timeout_ms,
												char *err, size_t errlen);
/* The checkpoint topic of releases before 1.6, read once on upgrade */
extern KafkaStatus KafkaSinkReadCheckpoint(const char *brokers,
										   const char *properties,
										   const char *file_properties,
										   const char *topic, const char *key,
										   char *value, size_t valuelen,
										   bool *found, int timeout_ms,
										   char *err, size_t errlen);

/* A read_committed consumer of the same cluster (kafka_readback.c too). */
struct rd_kafka_s;
extern struct rd_kafka_s *KafkaSinkReader(const char *brokers, const char *properties,
										  const char *file_properties, const char *group,
										  const char *offset_reset, char *err, size_t errlen);
extern struct rd_kafka_s *KafkaSinkHandle(KafkaSink *ks);

/* coordinator/kafka_readback.c: reading the data topic back (failover) */
typedef void (*KafkaReadbackCallback) (void *arg, const char *value, size_t len);
extern int	KafkaTopicPartitions(KafkaSink *ks, const char *topic, int timeout_ms,
								 char *err, size_t errlen);
extern KafkaStatus KafkaTopicEnds(KafkaSink *ks, const char *topic,
								  int64 *ends, int maxparts, int *nparts,
								  int timeout_ms, char *err, size_t errlen);
extern KafkaStatus KafkaReadback(const char *brokers, const char *properties,
								 const char *file_properties,
								 const char *topic, const int64 *from, int nfrom,
								 KafkaReadbackCallback cb, void *arg,
								 int64 *ends, int maxparts, int *nends,
								 bool *undecidable,
								 int timeout_ms, char *err, size_t errlen);

#endif							/* KAFKA_SINK_H */
