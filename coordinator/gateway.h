/*-------------------------------------------------------------------------
 *
 * gateway.h
 *		What the parts of guid_gateway, the HTTP API in front of one
 *		PostgreSQL cluster running guid, share.  A client program: nothing
 *		here is linked into guid.so, and nothing here calls PostgreSQL's
 *		server code.
 *
 * The parts, one file each:
 *
 *	gateway_main.c		arguments, signals (SIGTERM drains, SIGHUP reloads),
 *						the HTTP daemon's life
 *	gateway_config.c	the config file (key = value lines), reloadable parts
 *	gateway_http.c		routing, request state, suspend/resume, responses
 *	gateway_endpoints.c	what each endpoint checks, asks and answers
 *	gateway_pool.c		the libpq pool and the coalescing of waiting requests
 *	gateway_auth.c		JWT (libjwt): HS256, RS256, ES256; exp/nbf/iss/aud
 *	gateway_limit.c		a token bucket per client
 *	gateway_published.c	"published" in status: samples, the proof
 *	gateway_metrics.c	counters, the latency histogram, /metrics text
 *
 * Threads: libmicrohttpd's pool threads run the HTTP side; the pool's
 * worker threads (one per PostgreSQL connection) run the queries.  A
 * request that needs PostgreSQL becomes a GwJob on one queue, its
 * connection is suspended, and the worker that runs it resumes it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_H
#define GATEWAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The ID layout (DESIGN.md section 1, include/guid.h). */
#define GW_EPOCH_UNIX_MS	INT64_C(1735689600000)
#define GW_SEQUENCE_BITS	12
#define GW_NODE_BITS		10
#define GW_TIME_BITS		41

#define GW_MAX_COUNT		1000	/* count=1..1000 */
#define GW_MAX_SERVICE		200		/* bytes; the extension checks the rest */
#define GW_MAX_KEY			512
#define GW_MAX_CLIENT		256

/* ---- config (gateway_config.c) ---- */

typedef struct GwClientLimit
{
	char	   *client;
	double		rate;			/* tokens (IDs) per second */
	double		burst;			/* bucket size */
	struct GwClientLimit *next;
} GwClientLimit;

typedef struct GwConfig
{
	/* read at start only */
	char	   *listen_address;
	int			port;
	char	   *conninfo;
	int			pool_size;
	int			threads;
	char	   *tls_cert_file;
	char	   *tls_key_file;
	int			drain_timeout;	/* seconds */
	int			max_body;		/* bytes */
	int			max_header;		/* bytes of request headers */
	int			rate_clients_max;	/* buckets held at most */
	/* reloaded by SIGHUP */
	bool		auth;
	char	   *hs256_secret;	/* file contents */
	size_t		hs256_len;
	char	   *rs256_key;		/* PEM public key */
	size_t		rs256_len;
	char	   *es256_key;
	size_t		es256_len;
	char	   *issuer;
	char	   *audience;
	int			leeway;			/* seconds */
	double		rate;
	double		burst;
	GwClientLimit *limits;
	int			retry_after;	/* seconds, for 503 */
} GwConfig;

extern bool GwConfigLoad(const char *path, GwConfig *cfg, char *err, size_t errlen);
extern void GwConfigFree(GwConfig *cfg);

/* The live config: start-time fields never change; take the lock to read
 * the reloadable ones. */
extern pthread_rwlock_t gw_config_lock;
extern GwConfig *gw_config;

/* ---- auth (gateway_auth.c) ---- */

/*
 * Checks "Authorization: Bearer <jwt>" (authz may be NULL).  Caller holds
 * gw_config_lock for reading.  Returns true and the sub claim in client, or
 * false and why in err.
 */
extern bool GwAuthCheck(const GwConfig *cfg, const char *authz,
						char *client, size_t clientlen,
						char *err, size_t errlen);

/* ---- rate limit (gateway_limit.c) ---- */

/*
 * Spends n tokens of client's bucket.  Returns true if it had them; else
 * false and, in retry_after, the whole seconds until it will (-1: never).
 * table_full: refused because the client has no bucket and the table holds
 * rate_clients_max buckets, none of them full.
 */
extern bool GwLimitTake(const char *client, int n, int *retry_after, bool *table_full);
extern void GwLimitReconfigure(void);

/* Frees the buckets idle long enough; returns how many are left. */
extern int	GwLimitBuckets(void);

/* ---- the pool (gateway_pool.c) ---- */

typedef enum GwKind
{
	GW_SNOWFLAKE,				/* guid_next() */
	GW_UUID,					/* guid_uuid() */
	GW_SERVICE,					/* guid_next(service) */
	GW_IDEMPOTENT,				/* guid_next(service, key) */
	GW_LOOKUP,					/* guid_decode(id), guid.audit, guid.status */
	GW_HEALTH,					/* guid.status mode */
	GW_STATUS					/* guid.status figures for /metrics */
} GwKind;

typedef struct GwJob
{
	/* set by the caller before GwPoolSubmit */
	GwKind		kind;
	int			count;			/* IDs asked for (1 for the other kinds) */
	char		service[GW_MAX_SERVICE + 1];
	char		key[GW_MAX_KEY + 1];
	int64_t		id;				/* GW_LOOKUP */
	void		(*done) (struct GwJob *job);	/* called by the worker */
	void	   *arg;

	/* set by the worker before done() */
	int			http_status;	/* 0: ok; else the error's status */
	char		sqlstate[6];
	char		error[512];
	int			rows;
	int			cols;
	char	  **cells;			/* rows * cols strings, NULL for SQL null */

	struct GwJob *next;			/* the queue; the pool's lock */
} GwJob;

extern bool GwPoolStart(const char *conninfo, int size, char *err, size_t errlen);
extern void GwPoolSubmit(GwJob *job);
extern void GwPoolStop(void);
extern void GwJobFreeResult(GwJob *job);

/* ---- published to Kafka (gateway_published.c) ---- */

/* One sample the pool takes, in one statement (gateway_published.c). */
typedef struct GwSample
{
	double		taken;			/* GwNow() before the statement was sent */
	double		done;			/* GwNow() after its answer */
	uint64_t	xmin;			/* pg_snapshot_xmin, a full (64-bit) xid */
	uint64_t	lsn;			/* pg_current_wal_insert_lsn() */
	int64_t		incarnation;	/* guid.status started_at, microseconds */
	uint64_t	xmax;			/* pg_snapshot_xmax, a full xid */
	bool		slot;			/* the publisher's slot existed, consistent */
} GwSample;

extern void GwPublishedSample(const GwSample *sample);

/*
 * Whether a guid.audit row with this xmin, seen by a snapshot with this
 * full xmax, is provably in Kafka given the publisher's checkpoint (an
 * LSN) and the guid.status started_at (microseconds) read with it.
 */
extern bool GwPublishedProven(uint32_t xmin, uint64_t snap_xmax,
							  uint64_t published_lsn, int64_t incarnation);

/* ---- metrics (gateway_metrics.c) ---- */

typedef enum GwEndpoint
{
	GW_EP_GENERATE,
	GW_EP_STATUS,
	GW_EP_HEALTHZ,
	GW_EP_METRICS,
	GW_EP_OTHER,
	GW_EP_COUNT
} GwEndpoint;

extern void GwMetricsRequest(GwEndpoint ep, int status, double seconds);
extern void GwMetricsIds(GwKind kind, int n);
extern void GwMetricsRateLimited(void);
extern void GwMetricsAuthFailure(void);
extern void GwMetricsQuery(int jobs);

/* Renders /metrics; status is a finished GW_STATUS job (or failed).
 * Returns a malloc'd string. */
extern char *GwMetricsRender(const GwJob *status);

/* ---- HTTP (gateway_http.c, gateway_endpoints.c) ---- */

struct MHD_Connection;
struct MHD_Daemon;

/* One HTTP request, from its headers to its completion. */
typedef struct GwRequest
{
	struct MHD_Connection *conn;
	double		start;			/* GwNow() at the headers */
	GwEndpoint	ep;
	size_t		body_len;
	volatile int waiting;		/* 1 while the job is queued or running */
	bool		submitted;
	bool		array;			/* generate: count given and above 1 */
	char		id_text[40];	/* status: the id as asked, to echo */
	GwJob		job;
} GwRequest;

extern struct MHD_Daemon *GwHttpStart(const GwConfig *cfg, char *err, size_t errlen);
extern int	GwHttpInFlight(void);
extern void GwHttpDrain(void);

/* Queues a JSON response (body copied) and counts it; returns MHD's result. */
extern int	GwRespond(GwRequest *req, int status, const char *json,
					  const char *header, const char *value);
extern int	GwRespondError(GwRequest *req, int status, const char *error,
						   const char *message);

/* Submits req's job and suspends its connection until the pool answers. */
extern int	GwSubmit(GwRequest *req);

/* The endpoints: each starts a request or, once its job is done, answers. */
extern int	GwGenerateStart(GwRequest *req);
extern int	GwGenerateFinish(GwRequest *req);
extern int	GwStatusStart(GwRequest *req, const char *id);
extern int	GwStatusFinish(GwRequest *req);
extern int	GwHealthStart(GwRequest *req);
extern int	GwHealthFinish(GwRequest *req);
extern int	GwMetricsFinish(GwRequest *req);

/* A client's identity for the rate limit: its sub, or its address. */
extern bool GwAuthenticate(GwRequest *req, char *client, size_t clientlen);

/* ---- small helpers (gateway_main.c) ---- */

extern void GwLog(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern double GwNow(void);		/* CLOCK_MONOTONIC, seconds */
extern void GwJsonEscape(char *dst, size_t dstlen, const char *src);
extern void GwFormatTime(char *dst, size_t dstlen, int64_t unix_ms);

#endif							/* GATEWAY_H */
