/*-------------------------------------------------------------------------
 *
 * gateway_pool.c
 *		guid_gateway's PostgreSQL side: a small pool of libpq connections,
 *		one worker thread each, and one queue of jobs.
 *
 * Coalescing: a worker that becomes free takes the job at the head of the
 * queue and, with it, every queued job of the same kind (and service) up to
 * POOL_MAX_BATCH IDs, and runs them as one query:
 *
 *	snowflake	SELECT guid_next()::int8 FROM generate_series(1, $1)
 *	uuid		SELECT guid_uuid() FROM generate_series(1, $1)
 *	service		SELECT guid_next($2)::int8 FROM generate_series(1, $1)
 *	idempotent	SELECT unnest(guid_next($2, $3::text[])) (one key per job, in
 *				order; at most POOL_MAX_KEYS; the batch form settles every key
 *				with Redis in one round trip, a key given twice getting one ID)
 *	health		SELECT mode FROM guid.status
 *	status		SELECT (the /metrics figures) FROM guid.status
 *
 * Each query is prepared once per connection (PQprepare at connect, then
 * PQexecPrepared): a batch costs the server no parse nor plan.
 *
 * Requests that arrive while every connection is busy thus share the next
 * round trip; nothing is fetched ahead of a request and held.  Lookup jobs
 * run one by one (each has its own id).  An idempotent batch that fails for
 * a reason other than an unavailable server (a key the extension refuses, a
 * Redis value that is not a guid) runs again one job at a time, so that one
 * client's bad key fails only its request.
 *
 * A connection that fails is dropped and opened again for a later batch,
 * at most every POOL_RECONNECT_S: meanwhile its batches fail at once with
 * 503, so a stopped server costs no waiting.  Every failure answers the
 * batch's jobs; no job is ever left waiting.
 *
 * About every POOL_SAMPLE_S a worker that becomes free takes, before any
 * batch, a sample for "published" in GET /guid/status (its statement and
 * why it proves anything: coordinator/gateway_published.c).
 *
 * Locking: pool_lock protects the queue, the stop flag and the time of the
 * next sample.  Each PGconn is used by its own worker thread only.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "gateway.h"

#define POOL_MAX_BATCH		20000	/* IDs in one query */
#define POOL_MAX_KEYS		1000	/* idempotency keys in one query */
#define POOL_RECONNECT_S	0.2
#define POOL_SAMPLE_S		1.0		/* published-to-Kafka samples, seconds */

typedef struct PoolWorker
{
	pthread_t	thread;
	PGconn	   *conn;
	double		next_connect;	/* GwNow() before which we do not retry */
} PoolWorker;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static GwJob *pool_head;
static GwJob *pool_tail;
static bool pool_stopping;
static PoolWorker *pool_workers;
static int	pool_size;
static char *pool_conninfo;
static double pool_next_sample;	/* GwNow() when a sample is due */

#define POOL_SAMPLE_SQL \
	"SELECT pg_snapshot_xmin(pg_current_snapshot())::text," \
	" (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text," \
	" (SELECT (extract(epoch FROM started_at) * 1000000)::int8 FROM guid.status)::text," \
	" pg_snapshot_xmax(pg_current_snapshot())::text," \
	" EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = current_setting('guid.slot_name', true)" \
	" AND confirmed_flush_lsn IS NOT NULL)"

static const char *const pool_sql[] = {
	[GW_SNOWFLAKE] = "SELECT guid_next()::int8 FROM generate_series(1, $1::int)",
	[GW_UUID] = "SELECT guid_uuid() FROM generate_series(1, $1::int)",
	[GW_SERVICE] = "SELECT guid_next($2::text)::int8 FROM generate_series(1, $1::int)",
	[GW_IDEMPOTENT] =
	"SELECT u.g::int8 FROM unnest(guid_next($2::text, $3::text[])) WITH ORDINALITY u(g, n)"
	" WHERE $1::int > 0 ORDER BY u.n",
	[GW_LOOKUP] =
	"SELECT to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
	" d.node_id, d.sequence,"
	" a.service, a.xmin::text, pg_snapshot_xmax(pg_current_snapshot())::text,"
	" (s.last_published_lsn - '0/0'::pg_lsn)::text, s.publisher_state IS NOT NULL,"
	" (extract(epoch FROM s.started_at) * 1000000)::int8::text"
	" FROM guid_decode($4::int8::guid) d"
	" LEFT JOIN guid.audit a ON a.guid = $4::int8::guid"
	" CROSS JOIN guid.status s WHERE $1::int = 1",
	[GW_HEALTH] = "SELECT mode FROM guid.status WHERE $1::int > 0",
	[GW_STATUS] =
	"SELECT mode, node_id, ids_issued, ahead_ms, clock_steps,"
	" extract(epoch FROM lease_deadline), slot_lag_bytes, publish_lag_seconds,"
	" publisher_failover_duplicates, rows_published"
	" FROM guid.status WHERE $1::int > 0",
};

#define POOL_NKINDS ((int) (sizeof(pool_sql) / sizeof(pool_sql[0])))

static const Oid pool_types[4] = {25, 25, 25, 25};	/* text */

static void pool_fail(GwJob *batch, int status, const char *sqlstate, const char *msg);

/* Whether two jobs can share one query. */
static bool
pool_compatible(const GwJob *a, const GwJob *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind)
	{
		case GW_SNOWFLAKE:
		case GW_UUID:
		case GW_HEALTH:
		case GW_STATUS:
			return true;
		case GW_SERVICE:
		case GW_IDEMPOTENT:
			return strcmp(a->service, b->service) == 0;
		default:
			return false;
	}
}

/*
 * Queues job, or, once GwPoolStop has begun (the workers may be gone),
 * answers it at once with 503: a job nobody will run would leave its
 * connection suspended forever, and libmicrohttpd aborts when a daemon
 * with a suspended connection is stopped.
 */
void
GwPoolSubmit(GwJob *job)
{
	job->next = NULL;
	pthread_mutex_lock(&pool_lock);
	if (pool_stopping)
	{
		pthread_mutex_unlock(&pool_lock);
		pool_fail(job, 503, NULL, "the gateway is shutting down");
		return;
	}
	if (pool_tail)
		pool_tail->next = job;
	else
		pool_head = job;
	pool_tail = job;
	pthread_cond_signal(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
}

/*
 * Takes the head job and every compatible one behind it (within the batch
 * size).  Caller holds pool_lock and the queue is not empty.
 */
static GwJob *
pool_take_batch(int *ids)
{
	GwJob	   *batch = pool_head;
	GwJob	   *last = batch;
	GwJob	   *prev;
	GwJob	   *j;

	pool_head = batch->next;
	batch->next = NULL;
	*ids = batch->count;
	prev = NULL;
	for (j = pool_head; j;)
	{
		GwJob	   *next = j->next;

		if (pool_compatible(batch, j) && *ids + j->count <= POOL_MAX_BATCH &&
			(batch->kind != GW_IDEMPOTENT || *ids < POOL_MAX_KEYS))
		{
			if (prev)
				prev->next = next;
			else
				pool_head = next;
			j->next = NULL;
			last->next = j;
			last = j;
			*ids += j->count;
		}
		else
			prev = j;
		j = next;
	}
	pool_tail = prev;			/* the last job left, having visited all */
	return batch;
}

/* Answers every job of a batch with one error. */
static void
pool_fail(GwJob *batch, int status, const char *sqlstate, const char *msg)
{
	while (batch)
	{
		GwJob	   *next = batch->next;

		batch->http_status = status;
		snprintf(batch->sqlstate, sizeof(batch->sqlstate), "%s", sqlstate ? sqlstate : "");
		snprintf(batch->error, sizeof(batch->error), "%s", msg);
		batch->done(batch);
		batch = next;
	}
}

/* Opens the worker's connection if needed; returns false with err set. */
static bool
pool_connect(PoolWorker *w, char *err, size_t errlen)
{
	const char *keys[] = {"application_name", "connect_timeout", "dbname", NULL};
	const char *vals[] = {"guid_gateway", "5", pool_conninfo, NULL};
	double		now = GwNow();

	if (w->conn && PQstatus(w->conn) == CONNECTION_OK)
		return true;
	if (w->conn)
	{
		PQfinish(w->conn);
		w->conn = NULL;
	}
	if (now < w->next_connect)
	{
		snprintf(err, errlen, "postgresql is unreachable (retrying)");
		return false;
	}
	w->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(w->conn) == CONNECTION_OK)
	{
		/* every query prepared once per connection: no parse nor plan per batch */
		for (int k = 0; k < POOL_NKINDS; k++)
		{
			char		name[16];
			PGresult   *res;

			snprintf(name, sizeof(name), "gw%d", k);
			res = PQprepare(w->conn, name, pool_sql[k], 4, pool_types);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
			{
				snprintf(err, errlen, "could not prepare the gateway's queries: %s",
						 PQresultErrorMessage(res));
				PQclear(res);
				goto fail;
			}
			PQclear(res);
		}
		return true;
	}
	snprintf(err, errlen, "could not connect to postgresql: %s", PQerrorMessage(w->conn));
fail:
	{
		char	   *nl;

		if ((nl = strchr(err, '\n')) != NULL)
			*nl = '\0';
	}
	PQfinish(w->conn);
	w->conn = NULL;
	w->next_connect = now + POOL_RECONNECT_S;
	return false;
}

/* HTTP status for a failed query: the caller's fault, or try again later. */
static int
pool_status_for(const char *sqlstate, PGconn *conn)
{
	if (PQstatus(conn) != CONNECTION_OK || sqlstate == NULL)
		return 503;
	if (strncmp(sqlstate, "22", 2) == 0)
		return 400;
	if (strncmp(sqlstate, "53", 2) == 0 || strncmp(sqlstate, "55", 2) == 0 ||
		strncmp(sqlstate, "57", 2) == 0 || strncmp(sqlstate, "25", 2) == 0 ||
		strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "40001") == 0)
		return 503;
	return 500;
}

/* Hands rows of res to the batch's jobs in order (count rows each). */
static void
pool_distribute(GwJob *batch, PGresult *res)
{
	int			row = 0;
	int			nrows = PQntuples(res);
	int			ncols = PQnfields(res);

	while (batch)
	{
		GwJob	   *next = batch->next;
		int			want = (batch->kind == GW_HEALTH || batch->kind == GW_STATUS) ? nrows : batch->count;
		int			take = (batch->kind == GW_HEALTH || batch->kind == GW_STATUS) ? 0 : want;

		batch->http_status = 0;
		batch->rows = (row + want <= nrows) ? want : 0;
		batch->cols = ncols;
		batch->cells = calloc((size_t) batch->rows * ncols + 1, sizeof(char *));
		for (int r = 0; r < batch->rows; r++)
			for (int c = 0; c < ncols; c++)
				if (!PQgetisnull(res, row + r, c))
					batch->cells[r * ncols + c] = strdup(PQgetvalue(res, row + r, c));
		row += take;
		batch->done(batch);
		batch = next;
	}
}

/*
 * The keys of an idempotent batch as a text[] literal, in job order
 * (malloc'd; NULL when out of memory).  Keys hold no NUL (the HTTP side
 * refuses it); " and \ are escaped.
 */
static char *
pool_keys_literal(const GwJob *batch)
{
	size_t		len = 3;
	char	   *lit;
	char	   *p;

	for (const GwJob *j = batch; j; j = j->next)
		len += 2 * strlen(j->key) + 3;
	if ((lit = malloc(len)) == NULL)
		return NULL;
	p = lit;
	*p++ = '{';
	for (const GwJob *j = batch; j; j = j->next)
	{
		if (j != batch)
			*p++ = ',';
		*p++ = '"';
		for (const char *c = j->key; *c; c++)
		{
			if (*c == '"' || *c == '\\')
				*p++ = '\\';
			*p++ = *c;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return lit;
}

static void pool_run(PoolWorker *w, GwJob *batch, int ids);

/* Runs each job of an idempotent batch as a batch of its own. */
static void
pool_run_each(PoolWorker *w, GwJob *batch)
{
	while (batch)
	{
		GwJob	   *next = batch->next;

		batch->next = NULL;
		pool_run(w, batch, 1);
		batch = next;
	}
}

/* Runs one batch on w's connection and answers every job in it. */
static void
pool_run(PoolWorker *w, GwJob *batch, int ids)
{
	char	   *keys = NULL;
	char		err[512];
	char		count[16];
	char		idtext[24];
	char		name[16];
	const char *params[4];
	PGresult   *res;
	int			njobs = 0;

	if (!pool_connect(w, err, sizeof(err)))
	{
		pool_fail(batch, 503, NULL, err);
		return;
	}
	snprintf(count, sizeof(count), "%d", ids);
	snprintf(idtext, sizeof(idtext), "%lld", (long long) batch->id);
	params[0] = count;
	params[1] = batch->service;
	params[2] = batch->key;
	params[3] = idtext;
	if (batch->kind == GW_IDEMPOTENT)
	{
		if ((keys = pool_keys_literal(batch)) == NULL)
		{
			pool_fail(batch, 503, NULL, "out of memory");
			return;
		}
		params[2] = keys;
	}
	/* all text: a query need not use every parameter */
	snprintf(name, sizeof(name), "gw%d", (int) batch->kind);
	res = PQexecPrepared(w->conn, name, 4, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		int			status = pool_status_for(state, w->conn);

		snprintf(err, sizeof(err), "%s", msg ? msg : PQerrorMessage(w->conn));
		if (strchr(err, '\n'))
			*strchr(err, '\n') = '\0';
		PQclear(res);
		free(keys);
		if (PQstatus(w->conn) != CONNECTION_OK)
		{
			PQfinish(w->conn);
			w->conn = NULL;
		}
		if (batch->kind == GW_IDEMPOTENT && batch->next != NULL && status != 503)
		{
			/* one key refused (or its Redis value): the others must not
			 * fail with it */
			pool_run_each(w, batch);
			return;
		}
		pool_fail(batch, status, state, err);
		return;
	}
	free(keys);
	for (GwJob *j = batch; j; j = j->next)
		njobs++;
	GwMetricsQuery(njobs);
	pool_distribute(batch, res);
	PQclear(res);
}

/* Parses an unsigned decimal; false if s is NULL or not one. */
static bool
pool_parse_u64(const char *s, uint64_t *out)
{
	char	   *end;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

/* Takes one sample on w's connection; a failure just takes none. */
static void
pool_sample(PoolWorker *w)
{
	char		err[512];
	PGresult   *res;
	GwSample	ps;
	uint64_t	inc;

	if (!pool_connect(w, err, sizeof(err)))
		return;
	ps.taken = GwNow();
	res = PQexec(w->conn, POOL_SAMPLE_SQL);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		pool_parse_u64(PQgetvalue(res, 0, 0), &ps.xmin) &&
		pool_parse_u64(PQgetvalue(res, 0, 1), &ps.lsn) &&
		!PQgetisnull(res, 0, 2) && pool_parse_u64(PQgetvalue(res, 0, 2), &inc) &&
		pool_parse_u64(PQgetvalue(res, 0, 3), &ps.xmax))
	{
		ps.done = GwNow();
		ps.incarnation = (int64_t) inc;
		ps.slot = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
		GwPublishedSample(&ps);
	}
	PQclear(res);
	if (PQstatus(w->conn) != CONNECTION_OK)
	{
		PQfinish(w->conn);
		w->conn = NULL;
	}
}

static void *
pool_main(void *arg)
{
	PoolWorker *w = arg;

	for (;;)
	{
		GwJob	   *batch = NULL;
		bool		sample = false;
		int			ids;

		pthread_mutex_lock(&pool_lock);
		for (;;)
		{
			double		now = GwNow();

			/* a sample first, so that a busy gateway still takes them */
			if (!pool_stopping && now >= pool_next_sample)
			{
				pool_next_sample = now + POOL_SAMPLE_S;
				sample = true;
				/* the job that woke us, if any, needs another worker */
				if (pool_head != NULL)
					pthread_cond_signal(&pool_cond);
				break;
			}
			if (pool_head != NULL || pool_stopping)
				break;
			{
				double		until = pool_next_sample;
				struct timespec ts;

				ts.tv_sec = (time_t) until;
				ts.tv_nsec = (long) ((until - (double) ts.tv_sec) * 1e9);
				pthread_cond_timedwait(&pool_cond, &pool_lock, &ts);
			}
		}
		if (!sample)
		{
			if (pool_head == NULL)
			{
				pthread_mutex_unlock(&pool_lock);
				break;
			}
			batch = pool_take_batch(&ids);
		}
		pthread_mutex_unlock(&pool_lock);
		if (sample)
			pool_sample(w);
		else
			pool_run(w, batch, ids);
	}
	if (w->conn)
		PQfinish(w->conn);
	return NULL;
}

bool
GwPoolStart(const char *conninfo, int size, char *err, size_t errlen)
{
	pthread_condattr_t attr;

	/* timed waits on the monotonic clock, as GwNow() */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_destroy(&pool_cond);
	pthread_cond_init(&pool_cond, &attr);
	pthread_condattr_destroy(&attr);
	pool_conninfo = strdup(conninfo);
	pool_size = size;
	pool_workers = calloc(size, sizeof(PoolWorker));
	for (int i = 0; i < size; i++)
		if (pthread_create(&pool_workers[i].thread, NULL, pool_main, &pool_workers[i]) != 0)
		{
			snprintf(err, errlen, "could not start pool thread");
			return false;
		}
	return true;
}

/* Stops the workers once the queue is empty. */
void
GwPoolStop(void)
{
	pthread_mutex_lock(&pool_lock);
	pool_stopping = true;
	pthread_cond_broadcast(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
	for (int i = 0; i < pool_size; i++)
		pthread_join(pool_workers[i].thread, NULL);
	free(pool_workers);
	free(pool_conninfo);
}

void
GwJobFreeResult(GwJob *job)
{
	if (job->cells)
		for (int i = 0; i < job->rows * job->cols; i++)
			free(job->cells[i]);
	free(job->cells);
	job->cells = NULL;
	job->rows = 0;
}
