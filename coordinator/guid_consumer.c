/*-------------------------------------------------------------------------
 *
 * guid_consumer.c
 *		The reference consumer of the audit stream: applies guid_assignments
 *		into a PostgreSQL table exactly once.  A standalone program (built
 *		by the Makefile, not part of guid.so).
 *
 * The consumer contract it follows (README, "Consuming the stream"):
 *
 *	- read with isolation.level=read_committed, so aborted Kafka
 *	  transactions (a publisher that failed half way) are never seen;
 *	- keep the Kafka position in the same PostgreSQL transaction as the
 *	  business rows (table guid_consumer_offsets), never in Kafka: a crash
 *	  anywhere leaves both or neither;
 *	- dedupe on guid in that transaction (INSERT ... ON CONFLICT (guid) DO
 *	  NOTHING): the publisher is exactly once, but a consumer must not rely
 *	  on one producer only.
 *
 * With --redis, a Redis SET NX EX filter of processed guids (keys
 * guid:seen:<name>:<table>:<guid>) lets a guid Redis has seen skip its
 * insert.  Keys are written only after the PostgreSQL commit, so Redis never
 * claims a guid whose row rolled back; if Redis is down or forgets, the
 * PostgreSQL dedupe still holds.
 *
 * Nothing is skipped silently:
 *
 *	- a stored position that is out of range (retention deleted messages
 *	  before they were read, or the topic was recreated) stops the consumer
 *	  with an error (auto.offset.reset=error); --from-earliest-on-reset
 *	  restarts such a partition from its earliest offset instead, and the
 *	  dedupe skips what was applied already;
 *	- partitions added to the topic while it runs are consumed from their
 *	  start (the partition count is read again every PARTITION_CHECK_MS).
 *
 * --table and --schema are quoted as identifiers, taken literally; --name is
 * only ever a parameter or a Redis argument, never pasted into a command.
 *
 * Usage:
 *	guid_consumer --brokers HOST:PORT --topic T --conninfo 'dbname=...'
 *		[--table guid_applied] [--schema S] [--name payments]
 *		[--redis HOST:PORT] [--from-earliest-on-reset]
 *		[--idle-exit SECONDS] [--batch N] [--latency]
 *
 * --latency prints p50/p99 of (arrival - created_at) in ms at exit, for
 * `make bench`; --latency-only does only that, without PostgreSQL.
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

typedef struct Options
{
	const char *brokers;
	const char *topic;
	const char *conninfo;
	const char *table;
	const char *schema;
	const char *name;
	const char *redis;
	int			idle_exit;
	int			batch;
	bool		latency;
	bool		latency_only;
	bool		earliest_on_reset;
} Options;

/* Look for partitions added to the topic this often, ms */
#define PARTITION_CHECK_MS	5000

static volatile sig_atomic_t stop_requested = 0;

static void
on_signal(int sig)
{
	stop_requested = 1;
}

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fprintf(stderr, "guid_consumer: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static PGresult *
pg_exec(PGconn *pg, const char *sql, ExecStatusType expect)
{
	PGresult   *res = PQexec(pg, sql);

	if (PQresultStatus(res) != expect)
		die("%s: %s", sql, PQerrorMessage(pg));
	return res;
}

/* [schema.]table quoted as identifiers, malloc'd. */
static char *
quote_table(PGconn *pg, const char *schema, const char *table)
{
	char	   *t = PQescapeIdentifier(pg, table, strlen(table));
	char	   *s = schema ? PQescapeIdentifier(pg, schema, strlen(schema)) : NULL;
	char	   *out;

	if (t == NULL || (schema && s == NULL))
		die("bad --table or --schema: %s", PQerrorMessage(pg));
	if (asprintf(&out, "%s%s%s", s ? s : "", s ? "." : "", t) < 0)
		die("out of memory");
	PQfreemem(t);
	if (s)
		PQfreemem(s);
	return out;
}

/* Parse "created_at" (RFC 3339, UTC, as the publisher writes it) into ms. */
static bool
created_ms(const char *json, size_t len, double *ms)
{
	const char *p = memmem(json, len, "\"created_at\":\"", 14);
	struct tm	tm;
	int			usec = 0;

	if (p == NULL)
		return false;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(p + 14, "%4d-%2d-%2dT%2d:%2d:%2d.%6d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &usec) != 7)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*ms = timegm(&tm) * 1000.0 + usec / 1000.0;
	return true;
}

/* The "guid" of a message, as a string (digits only), or false. */
static bool
message_guid(const char *json, size_t len, char *out, size_t outlen)
{
	const char *p = memmem(json, len, "\"guid\":\"", 8);
	size_t		n = 0;

	if (p == NULL)
		return false;
	for (p += 8; p < json + len && *p >= '0' && *p <= '9' && n + 1 < outlen; p++)
		out[n++] = *p;
	out[n] = '\0';
	return n > 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/*
 * assign_new_partitions: assign the partitions of the topic numbered
 * nassigned and up (Kafka numbers them from 0 and never removes one), each
 * at the position stored in PostgreSQL, or from its start.  Returns the
 * number of partitions now assigned; on a metadata error, nassigned (try
 * again later).
 */
static int
assign_new_partitions(rd_kafka_t *rk, PGconn *pg, const Options *o,
					  int nassigned, int timeout_ms)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
	const rd_kafka_metadata_t *md;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_error_t *error;
	int			count;
	int			i;

	rd_kafka_topic_destroy(rkt);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return nassigned;
	count = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR ?
		md->topics[0].partition_cnt : 0;
	rd_kafka_metadata_destroy(md);
	if (count <= nassigned)
		return nassigned;

	parts = rd_kafka_topic_partition_list_new(count - nassigned);
	for (i = nassigned; i < count; i++)
	{
		char		p[16];
		const char *params[3] = {o->name, o->topic, p};
		PGresult   *res;

		if (o->latency_only)
		{
			rd_kafka_topic_partition_list_add(parts, o->topic, i)->offset =
				nassigned == 0 ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
			continue;
		}
		snprintf(p, sizeof(p), "%d", i);
		res = PQexecParams(pg, "SELECT next_offset FROM guid_consumer_offsets "
						   "WHERE consumer = $1 AND topic = $2 AND partition = $3",
						   3, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			die("%s", PQerrorMessage(pg));
		rd_kafka_topic_partition_list_add(parts, o->topic, i)->offset =
			PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : RD_KAFKA_OFFSET_BEGINNING;
		PQclear(res);
	}
	/* without a subscription, partitions can be added to the assignment */
	error = rd_kafka_incremental_assign(rk, parts);
	if (error)
		die("assigning partitions %d to %d of %s: %s", nassigned, count - 1, o->topic,
			rd_kafka_error_string(error));
	rd_kafka_topic_partition_list_destroy(parts);
	if (nassigned > 0)
		fprintf(stderr, "guid_consumer: topic %s has %d partitions now; consuming partitions %d to %d from their start\n",
				o->topic, count, nassigned, count - 1);
	return count;
}

/* Queue a Redis command on a guid:seen key, in argv form (name and table
 * may hold spaces or anything else). */
static void
redis_append_seen(redisContext *redis, const char *command, const Options *o,
				  const char *guid, bool set)
{
	char	   *key;
	const char *argv[6];
	size_t		argvlen[6];
	int			argc = 0;
	int			i;

	if (asprintf(&key, "guid:seen:%s:%s:%s", o->name, o->table, guid) < 0)
		die("out of memory");
	argv[argc++] = command;
	argv[argc++] = key;
	if (set)
	{
		argv[argc++] = "1";
		argv[argc++] = "NX";
		argv[argc++] = "EX";
		argv[argc++] = "86400";
	}
	for (i = 0; i < argc; i++)
		argvlen[i] = strlen(argv[i]);
	redisAppendCommandArgv(redis, argc, argv, argvlen);
	free(key);
}

int
main(int argc, char **argv)
{
	Options		o = {.table = "guid_applied",.name = "reference",.idle_exit = 0,.batch = 500};
	static struct option longopts[] = {
		{"brokers", required_argument, NULL, 'b'},
		{"topic", required_argument, NULL, 't'},
		{"conninfo", required_argument, NULL, 'd'},
		{"table", required_argument, NULL, 'T'},
		{"schema", required_argument, NULL, 'S'},
		{"name", required_argument, NULL, 'n'},
		{"redis", required_argument, NULL, 'r'},
		{"idle-exit", required_argument, NULL, 'i'},
		{"batch", required_argument, NULL, 'B'},
		{"latency", no_argument, NULL, 'l'},
		{"latency-only", no_argument, NULL, 'L'},
		{"from-earliest-on-reset", no_argument, NULL, 'E'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	char		errstr[512];
	char	   *sql;
	char	   *table;
	int			nparts = 0;
	double		last_check;
	PGconn	   *pg = NULL;
	PGresult   *res;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	redisContext *redis = NULL;
	rd_kafka_message_t **batch;
	char		(*guids)[24];
	bool	   *seen;
	double		last_msg = now_ms();
	long		applied = 0,
				duplicates = 0,
				fast_skips = 0,
				messages = 0;
	double	   *lat = NULL;
	size_t		nlat = 0,
				caplat = 0;
	int			i;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'b': o.brokers = optarg; break;
			case 't': o.topic = optarg; break;
			case 'd': o.conninfo = optarg; break;
			case 'T': o.table = optarg; break;
			case 'S': o.schema = optarg; break;
			case 'n': o.name = optarg; break;
			case 'r': o.redis = optarg; break;
			case 'i': o.idle_exit = atoi(optarg); break;
			case 'B': o.batch = atoi(optarg); break;
			case 'l': o.latency = true; break;
			case 'L': o.latency = o.latency_only = true; break;
			case 'E': o.earliest_on_reset = true; break;
			default: die("unknown option; see the header of coordinator/guid_consumer.c");
		}
	}
	if (!o.brokers || !o.topic || (!o.conninfo && !o.latency_only) || o.batch < 1)
		die("--brokers, --topic and --conninfo are required");
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	if (o.latency_only)
		goto kafka;
	pg = PQconnectdb(o.conninfo);
	if (PQstatus(pg) != CONNECTION_OK)
		die("PostgreSQL: %s", PQerrorMessage(pg));
	PQclear(pg_exec(pg, "SET client_min_messages = warning", PGRES_COMMAND_OK));
	table = quote_table(pg, o.schema, o.table);
	if (asprintf(&sql,
				 "CREATE TABLE IF NOT EXISTS %s (guid bigint PRIMARY KEY, node_id int NOT NULL, "
				 "created_at timestamptz NOT NULL, service text NOT NULL, lsn pg_lsn NOT NULL, "
				 "xid bigint NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp());"
				 "CREATE TABLE IF NOT EXISTS guid_consumer_offsets (consumer text, topic text, "
				 "partition int, next_offset bigint NOT NULL, PRIMARY KEY (consumer, topic, partition))",
				 table) < 0)
		die("out of memory");
	PQclear(pg_exec(pg, sql, PGRES_COMMAND_OK));
	free(sql);
	if (asprintf(&sql,
				 "INSERT INTO %s (guid, node_id, created_at, service, lsn, xid) "
				 "SELECT (j->>'guid')::bigint, (j->>'node_id')::int, (j->>'created_at')::timestamptz, "
				 "j->>'service', (j->>'lsn')::pg_lsn, (j->>'xid')::bigint FROM (SELECT $1::jsonb AS j) m "
				 "ON CONFLICT (guid) DO NOTHING", table) < 0)
		die("out of memory");
	PQclear(pg_exec(pg, "SET synchronous_commit = on", PGRES_COMMAND_OK));
	res = PQprepare(pg, "apply", sql, 1, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("prepare: %s", PQerrorMessage(pg));
	PQclear(res);
	free(sql);
	free(table);
	res = PQprepare(pg, "position",
					"INSERT INTO guid_consumer_offsets VALUES ($1, $2, $3, $4) "
					"ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
					4, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("prepare: %s", PQerrorMessage(pg));
	PQclear(res);

	if (o.redis)
	{
		char		host[256];
		int			port = 6379;
		const char *colon = strrchr(o.redis, ':');
		struct timeval tv = {0, 200000};

		snprintf(host, sizeof(host), "%.*s", colon ? (int) (colon - o.redis) : (int) strlen(o.redis), o.redis);
		if (colon)
			port = atoi(colon + 1);
		redis = redisConnectWithTimeout(host, port, tv);
		if (redis == NULL || redis->err)
		{
			fprintf(stderr, "guid_consumer: Redis fast path off: %s\n", redis ? redis->errstr : "no memory");
			redisFree(redis);
			redis = NULL;
		}
		else
			redisSetTimeout(redis, tv);
	}

kafka:
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", o.brokers, errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "group.id", o.name, errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "auto.offset.reset", o.earliest_on_reset ? "earliest" : "error",
						  errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof(errstr)))
		die("%s", errstr);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		die("%s", errstr);
	rd_kafka_poll_set_consumer(rk);

	/* Assign every partition at the position stored in PostgreSQL. */
	while ((nparts = assign_new_partitions(rk, pg, &o, 0, 5000)) == 0)
	{
		if (stop_requested)
			return 0;
		fprintf(stderr, "guid_consumer: waiting for topic %s\n", o.topic);
		sleep(1);
	}
	last_check = now_ms();

	batch = calloc(o.batch, sizeof(*batch));
	guids = calloc(o.batch, sizeof(*guids));
	seen = calloc(o.batch, sizeof(*seen));
	if (!batch || !guids || !seen)
		die("out of memory");
	while (!stop_requested)
	{
		int			n = 0;

		/* between batches (all that was read is applied): new partitions? */
		if (now_ms() - last_check > PARTITION_CHECK_MS)
		{
			nparts = assign_new_partitions(rk, pg, &o, nparts, 2000);
			last_check = now_ms();
		}

		/* up to --batch messages, or what arrives in 100 ms */
		while (n < o.batch)
		{
			rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, n == 0 ? 100 : 0);

			if (m == NULL)
				break;
			if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
				die("partition %d of topic %s: the stored position is out of range (%s). "
					"Messages were deleted before they were read (retention) or the topic was recreated: "
					"rows may be missing, and nothing was applied past the stored position. "
					"Check the topic, then run with --from-earliest-on-reset to go on from its earliest "
					"offset (the dedupe on guid skips rows already applied)",
					m->partition, o.topic, rd_kafka_message_errstr(m));
			if (m->err)
			{
				if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
					fprintf(stderr, "guid_consumer: %s\n", rd_kafka_message_errstr(m));
				rd_kafka_message_destroy(m);
				continue;
			}
			batch[n++] = m;
		}
		if (n == 0)
		{
			if (o.idle_exit > 0 && now_ms() - last_msg > o.idle_exit * 1000.0)
				break;
			continue;
		}
		last_msg = now_ms();

		/* the fast path: which guids Redis has seen applied */
		if (o.latency_only)
			goto measure;
		for (i = 0; i < n; i++)
		{
			seen[i] = false;
			if (!message_guid(batch[i]->payload, batch[i]->len, guids[i], sizeof(guids[i])))
				die("message at offset %lld has no guid", (long long) batch[i]->offset);
			if (redis)
				redis_append_seen(redis, "EXISTS", &o, guids[i], false);
		}
		for (i = 0; redis && i < n; i++)
		{
			redisReply *r = NULL;

			if (redisGetReply(redis, (void **) &r) != REDIS_OK || r == NULL)
			{
				fprintf(stderr, "guid_consumer: Redis fast path off: %s\n", redis->errstr);
				redisFree(redis);
				redis = NULL;
				memset(seen, 0, o.batch * sizeof(*seen));
				break;
			}
			seen[i] = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
			freeReplyObject(r);
		}

		PQclear(pg_exec(pg, "BEGIN", PGRES_COMMAND_OK));
		for (i = 0; i < n; i++)
		{
			char	   *value = strndup(batch[i]->payload, batch[i]->len);
			const char *params[1] = {value};

			messages++;
			if (seen[i])
			{
				fast_skips++;
				free(value);
				continue;
			}
			res = PQexecPrepared(pg, "apply", 1, params, NULL, NULL, 0);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
				die("apply: %s", PQerrorMessage(pg));
			if (strcmp(PQcmdTuples(res), "1") == 0)
				applied++;
			else
				duplicates++;
			PQclear(res);
			free(value);
		}
		/* the position of each partition in this batch, same transaction */
		for (i = 0; i < n; i++)
		{
			char		p[16],
						off[24];
			const char *params[4] = {o.name, o.topic, p, off};
			int			j;
			bool		last = true;

			for (j = i + 1; j < n; j++)
				if (batch[j]->partition == batch[i]->partition)
					last = false;
			if (!last)
				continue;
			snprintf(p, sizeof(p), "%d", batch[i]->partition);
			snprintf(off, sizeof(off), "%lld", (long long) batch[i]->offset + 1);
			res = PQexecPrepared(pg, "position", 4, params, NULL, NULL, 0);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
				die("position: %s", PQerrorMessage(pg));
			PQclear(res);
		}
		PQclear(pg_exec(pg, "COMMIT", PGRES_COMMAND_OK));

		/* only now may Redis say "applied" */
		for (i = 0; redis && i < n; i++)
			redis_append_seen(redis, "SET", &o, guids[i], true);
		for (i = 0; redis && i < n; i++)
		{
			redisReply *r = NULL;

			if (redisGetReply(redis, (void **) &r) != REDIS_OK)
			{
				redisFree(redis);
				redis = NULL;
				break;
			}
			freeReplyObject(r);
		}

measure:
		for (i = 0; i < n; i++)
		{
			double		created;

			if (o.latency_only)
				messages++;
			if (o.latency && created_ms(batch[i]->payload, batch[i]->len, &created))
			{
				if (nlat == caplat)
				{
					caplat = caplat ? caplat * 2 : 4096;
					lat = realloc(lat, caplat * sizeof(double));
				}
				lat[nlat++] = last_msg - created;
			}
			rd_kafka_message_destroy(batch[i]);
		}
	}

	printf("messages %ld applied %ld duplicates %ld fast_path_skips %ld\n",
		   messages, applied, duplicates, fast_skips);
	if (o.latency && nlat > 0)
	{
		qsort(lat, nlat, sizeof(double), cmp_double);
		printf("latency_ms n %zu p50 %.1f p99 %.1f max %.1f\n", nlat,
			   lat[nlat / 2], lat[(size_t) (nlat * 0.99)], lat[nlat - 1]);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	if (pg)
		PQfinish(pg);
	if (redis)
		redisFree(redis);
	return 0;
}
