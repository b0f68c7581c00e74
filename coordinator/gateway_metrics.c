/*-------------------------------------------------------------------------
 *
 * gateway_metrics.c
 *		guid_gateway's own counters and the /metrics page (Prometheus text
 *		format 0.0.4): requests by endpoint and status code, a latency
 *		histogram by endpoint, IDs issued by type, rate-limit rejections,
 *		auth failures, queries and coalesced jobs; then the generator's and
 *		the stream's figures from guid.status, read when /metrics is asked.
 *
 * Counters are C11 atomics (relaxed): any thread adds, /metrics reads.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define MAX_STATUS	600

static const char *const ep_names[GW_EP_COUNT] = {
	"generate", "status", "healthz", "metrics", "other"
};

/* upper bounds in seconds, then +Inf */
static const double hist_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5
};
#define NBOUNDS ((int) (sizeof(hist_bounds) / sizeof(hist_bounds[0])))

static atomic_ulong requests[GW_EP_COUNT][MAX_STATUS];
static atomic_ulong hist[GW_EP_COUNT][NBOUNDS + 1];
static atomic_ulong hist_sum_us[GW_EP_COUNT];
static atomic_ulong ids_snowflake;
static atomic_ulong ids_uuid;
static atomic_ulong rate_limited;
static atomic_ulong auth_failures;
static atomic_ulong queries;
static atomic_ulong query_jobs;

void
GwMetricsRequest(GwEndpoint ep, int status, double seconds)
{
	int			b = 0;

	if (status >= 100 && status < MAX_STATUS)
		atomic_fetch_add_explicit(&requests[ep][status], 1, memory_order_relaxed);
	while (b < NBOUNDS && seconds > hist_bounds[b])
		b++;
	atomic_fetch_add_explicit(&hist[ep][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&hist_sum_us[ep], (unsigned long) (seconds * 1e6),
							  memory_order_relaxed);
}

void
GwMetricsIds(GwKind kind, int n)
{
	atomic_fetch_add_explicit(kind == GW_UUID ? &ids_uuid : &ids_snowflake,
							  (unsigned long) n, memory_order_relaxed);
}

void
GwMetricsRateLimited(void)
{
	atomic_fetch_add_explicit(&rate_limited, 1, memory_order_relaxed);
}

void
GwMetricsAuthFailure(void)
{
	atomic_fetch_add_explicit(&auth_failures, 1, memory_order_relaxed);
}

void
GwMetricsQuery(int jobs)
{
	atomic_fetch_add_explicit(&queries, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&query_jobs, (unsigned long) jobs, memory_order_relaxed);
}

/* A growing output buffer. */
typedef struct Out
{
	char	   *buf;
	size_t		len;
	size_t		cap;
} Out;

static void
out_printf(Out *o, const char *fmt,...)
{
	va_list		ap;
	int			n;

	for (;;)
	{
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t) n < o->cap - o->len)
			break;
		o->cap *= 2;
		o->buf = realloc(o->buf, o->cap);
	}
	o->len += n;
}

static unsigned long
load(atomic_ulong *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

static void
render_own(Out *o)
{
	out_printf(o, "# HELP guid_gateway_requests_total HTTP requests by endpoint and status code.\n"
			   "# TYPE guid_gateway_requests_total counter\n");
	for (int e = 0; e < GW_EP_COUNT; e++)
		for (int s = 100; s < MAX_STATUS; s++)
			if (load(&requests[e][s]))
				out_printf(o, "guid_gateway_requests_total{endpoint=\"%s\",code=\"%d\"} %lu\n",
						   ep_names[e], s, load(&requests[e][s]));
	out_printf(o, "# HELP guid_gateway_request_duration_seconds Time from request to response.\n"
			   "# TYPE guid_gateway_request_duration_seconds histogram\n");
	for (int e = 0; e < GW_EP_COUNT; e++)
	{
		unsigned long cum = 0;

		for (int b = 0; b <= NBOUNDS; b++)
		{
			cum += load(&hist[e][b]);
			if (b < NBOUNDS)
				out_printf(o, "guid_gateway_request_duration_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %lu\n",
						   ep_names[e], hist_bounds[b], cum);
			else
				out_printf(o, "guid_gateway_request_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %lu\n",
						   ep_names[e], cum);
		}
		out_printf(o, "guid_gateway_request_duration_seconds_sum{endpoint=\"%s\"} %.6f\n"
				   "guid_gateway_request_duration_seconds_count{endpoint=\"%s\"} %lu\n",
				   ep_names[e], load(&hist_sum_us[e]) / 1e6, ep_names[e], cum);
	}
	out_printf(o, "# HELP guid_gateway_ids_total IDs handed out by this gateway, by type.\n"
			   "# TYPE guid_gateway_ids_total counter\n"
			   "guid_gateway_ids_total{type=\"snowflake\"} %lu\n"
			   "guid_gateway_ids_total{type=\"uuid\"} %lu\n",
			   load(&ids_snowflake), load(&ids_uuid));
	out_printf(o, "# HELP guid_gateway_rate_limited_total Requests refused with 429.\n"
			   "# TYPE guid_gateway_rate_limited_total counter\n"
			   "guid_gateway_rate_limited_total %lu\n"
			   "# HELP guid_gateway_auth_failures_total Requests refused with 401.\n"
			   "# TYPE guid_gateway_auth_failures_total counter\n"
			   "guid_gateway_auth_failures_total %lu\n"
			   "# HELP guid_gateway_queries_total PostgreSQL queries the pool ran.\n"
			   "# TYPE guid_gateway_queries_total counter\n"
			   "guid_gateway_queries_total %lu\n"
			   "# HELP guid_gateway_query_jobs_total Requests those queries answered (coalesced).\n"
			   "# TYPE guid_gateway_query_jobs_total counter\n"
			   "guid_gateway_query_jobs_total %lu\n",
			   load(&rate_limited), load(&auth_failures), load(&queries), load(&query_jobs));
	out_printf(o, "# HELP guid_gateway_rate_buckets Clients with a rate-limit bucket (idle full ones are freed).\n"
			   "# TYPE guid_gateway_rate_buckets gauge\n"
			   "guid_gateway_rate_buckets %d\n", GwLimitBuckets());
}

/* The guid.status figures (columns of the GW_STATUS query, after mode). */
static void
render_status(Out *o, const GwJob *st)
{
	static const char *const modes[] = {
		"standalone", "connecting", "leased", "fenced", "unassigned", "broken", "standby"
	};
	static const struct
	{
		const char *name;
		const char *type;
		const char *help;
	}			cols[] = {
		{NULL, NULL, NULL},
		{"guid_node_id", "gauge", "The node id this cluster issues with."},
		{"guid_ids_issued_total", "counter", "IDs the cluster issued since its start."},
		{"guid_ahead_ms", "gauge", "How far the generator runs ahead of the clock."},
		{"guid_clock_steps_total", "counter", "Backward steps of the system clock absorbed."},
		{"guid_lease_deadline_seconds", "gauge", "Unix time the ZooKeeper lease lapses unless renewed."},
		{"guid_slot_lag_bytes", "gauge", "WAL the audit slot retains."},
		{"guid_publish_lag_seconds", "gauge", "Age of the oldest committed audit row not yet in Kafka."},
		{"guid_duplicates_total", "counter", "Duplicates the publisher's failover logic counted."},
		{"guid_rows_published_total", "counter", "Audit rows published to Kafka since start."},
	};
	bool		up = st->http_status == 0 && st->rows == 1;

	out_printf(o, "# HELP guid_up Whether the gateway could read guid.status.\n"
			   "# TYPE guid_up gauge\nguid_up %d\n", up ? 1 : 0);
	if (!up)
		return;
	out_printf(o, "# HELP guid_mode The generator's mode (1 for the current one).\n"
			   "# TYPE guid_mode gauge\n");
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
		out_printf(o, "guid_mode{mode=\"%s\"} %d\n", modes[m],
				   st->cells[0] && strcmp(st->cells[0], modes[m]) == 0);
	for (int c = 1; c < st->cols && c < (int) (sizeof(cols) / sizeof(cols[0])); c++)
		if (st->cells[c])
			out_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", cols[c].name, cols[c].help,
					   cols[c].name, cols[c].type, cols[c].name, st->cells[c]);
}

char *
GwMetricsRender(const GwJob *status)
{
	Out			o = {malloc(16384), 0, 16384};

	render_own(&o);
	render_status(&o, status);
	return o.buf;
}
