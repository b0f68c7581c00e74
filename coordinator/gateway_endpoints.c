/*-------------------------------------------------------------------------
 *
 * gateway_endpoints.c
 *		What each endpoint of guid_gateway checks, asks the pool, and
 *		answers (README, "HTTP API").
 *
 * Every check that can refuse a request (method, path, auth, parameters,
 * rate limit) runs before its job is queued: a refused request generates
 * nothing and spends no tokens.  IDs travel as JSON strings (JavaScript
 * numbers lose precision above 2^53).
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "gateway.h"

/* ---- small parsers ---- */

typedef struct ArgCheck
{
	const char *const *allowed;
	const char *unknown;
	bool		nul;			/* a name or value holds an encoded NUL */
	const char *twice;			/* a parameter given more than once */
	unsigned	seen;			/* bit i: allowed[i] given */
} ArgCheck;

static enum MHD_Result
ep_arg_cb(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
		  const char *value, size_t value_size)
{
	ArgCheck   *ac = cls;

	/* "%00" decodes to a NUL that would cut the C string short */
	if (strlen(key) != key_size || (value && strlen(value) != value_size))
	{
		ac->nul = true;
		return MHD_NO;
	}
	for (int i = 0; ac->allowed[i]; i++)
		if (strcmp(key, ac->allowed[i]) == 0)
		{
			/* count=1&count=1000: which one was meant? */
			if (ac->seen & (1u << i))
			{
				ac->twice = ac->allowed[i];
				return MHD_NO;
			}
			ac->seen |= 1u << i;
			return MHD_YES;
		}
	ac->unknown = key;
	return MHD_NO;
}

/*
 * Checks the query parameters against allowed: returns NULL when they are
 * fine, else why not (in msg).
 */
static const char *
ep_check_args(GwRequest *req, const char *const *allowed, char *msg, size_t msglen)
{
	ArgCheck	ac = {allowed, NULL, false, NULL, 0};

	MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, ep_arg_cb, &ac);
	if (ac.nul)
		snprintf(msg, msglen, "a query parameter holds a NUL byte (%%00)");
	else if (ac.twice)
		snprintf(msg, msglen, "parameter \"%s\" is given more than once", ac.twice);
	else if (ac.unknown)
		snprintf(msg, msglen, "unknown parameter \"%.100s\" (type, service, count)", ac.unknown);
	else
		return NULL;
	return msg;
}

/* Strict decimal in [min, max]; false otherwise. */
static bool
ep_parse_int(const char *s, long long min, long long max, long long *out)
{
	char	   *end;
	long long	v;

	if (!isdigit((unsigned char) s[0]) || strlen(s) > 19)
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int
ep_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char) tolower((unsigned char) c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/*
 * Parses a UUID in its 8-4-4-4-12 form.  Returns 0 and its two halves, or
 * -1 when it is not a UUID.
 */
static int
ep_parse_uuid(const char *s, uint64_t *hi, uint64_t *lo)
{
	int			nibbles = 0;

	*hi = *lo = 0;
	if (strlen(s) != 36)
		return -1;
	for (int i = 0; i < 36; i++)
	{
		int			h;

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return -1;
			continue;
		}
		if ((h = ep_hex(s[i])) < 0)
			return -1;
		if (nibbles < 16)
			*hi = (*hi << 4) | (uint64_t) h;
		else
			*lo = (*lo << 4) | (uint64_t) h;
		nibbles++;
	}
	return 0;
}

/* The parts of a guid (DESIGN.md section 1). */
static void
ep_decode(int64_t id, int64_t *unix_ms, int *node, int *seq)
{
	*unix_ms = (id >> (GW_SEQUENCE_BITS + GW_NODE_BITS)) + GW_EPOCH_UNIX_MS;
	*node = (int) ((id >> GW_SEQUENCE_BITS) & ((1 << GW_NODE_BITS) - 1));
	*seq = (int) (id & ((1 << GW_SEQUENCE_BITS) - 1));
}

/*
 * The guid a guid_uuid() UUIDv7 was made from (extension/generator.c):
 * unix_ts_ms, rand_a = sequence, top 10 bits of rand_b = node.  Returns
 * 0, or -1 when it is not a version 7 / variant 10 UUID, or -2 when its
 * millisecond lies outside the guid range.
 */
static int
ep_uuid_to_guid(uint64_t hi, uint64_t lo, int64_t *id)
{
	int64_t		ms = (int64_t) (hi >> 16) - GW_EPOCH_UNIX_MS;

	if (((hi >> 12) & 0xF) != 7 || (lo >> 62) != 2)
		return -1;
	if (ms < 0 || ms >= (INT64_C(1) << GW_TIME_BITS))
		return -2;
	*id = (ms << (GW_SEQUENCE_BITS + GW_NODE_BITS)) |
		((int64_t) ((lo >> 52) & 0x3FF) << GW_SEQUENCE_BITS) | (int64_t) (hi & 0xFFF);
	return 0;
}

/* Answers a failed job: the caller's fault (400) or try later (503). */
static int
ep_job_error(GwRequest *req)
{
	if (req->job.http_status == 400)
		return GwRespondError(req, 400, "invalid_argument", req->job.error);
	if (req->job.http_status == 503)
		return GwRespondError(req, 503, "unavailable", req->job.error);
	return GwRespondError(req, 500, "internal_error", req->job.error);
}

/* ---- POST /guid/generate ---- */

int
GwGenerateStart(GwRequest *req)
{
	static const char *const allowed[] = {"type", "service", "count", NULL};
	const char *type = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "type");
	const char *service = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "service");
	const char *count = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "count");
	const char *key = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Idempotency-Key");
	char		client[GW_MAX_CLIENT + 64];
	char		msg[400];
	long long	n = 1;
	int			retry;
	bool		table_full;

	if (!GwAuthenticate(req, client, sizeof(client)))
		return MHD_YES;
	if (ep_check_args(req, allowed, msg, sizeof(msg)) != NULL)
		return GwRespondError(req, 400, "invalid_argument", msg);
	if (type == NULL || strcmp(type, "snowflake") == 0)
		req->job.kind = GW_SNOWFLAKE;
	else if (strcmp(type, "uuid") == 0)
		req->job.kind = GW_UUID;
	else
		return GwRespondError(req, 400, "invalid_argument", "type must be snowflake or uuid");
	if (count && !ep_parse_int(count, 1, GW_MAX_COUNT, &n))
		return GwRespondError(req, 400, "invalid_argument", "count must be an integer from 1 to 1000");
	if (service)
	{
		if (service[0] == '\0' || strlen(service) > GW_MAX_SERVICE)
			return GwRespondError(req, 400, "invalid_argument", "service must be 1 to 200 bytes");
		if (req->job.kind == GW_UUID)
			return GwRespondError(req, 400, "invalid_argument",
								  "service is supported with type=snowflake only");
		req->job.kind = GW_SERVICE;
		strcpy(req->job.service, service);
	}
	if (key)
	{
		if (!service)
			return GwRespondError(req, 400, "invalid_argument", "Idempotency-Key requires service");
		if (n != 1)
			return GwRespondError(req, 400, "invalid_argument", "Idempotency-Key requires count=1");
		if (key[0] == '\0' || strlen(key) > GW_MAX_KEY)
			return GwRespondError(req, 400, "invalid_argument", "Idempotency-Key must be 1 to 512 bytes");
		req->job.kind = GW_IDEMPOTENT;
		strcpy(req->job.key, key);
	}
	if (!GwLimitTake(client, (int) n, &retry, &table_full))
	{
		char		body[300];
		char		ra[16];

		GwMetricsRateLimited();
		if (table_full)
			snprintf(body, sizeof(body), "{\"error\":\"rate_limited\",\"message\":\"the gateway holds rate_clients_max buckets and none has refilled yet\"}");
		else if (retry < 0)
		{
			snprintf(body, sizeof(body), "{\"error\":\"rate_limited\",\"message\":\"count %lld exceeds this client's burst\"}", n);
			return GwRespond(req, 429, body, NULL, NULL);
		}
		snprintf(ra, sizeof(ra), "%d", retry);
		if (!table_full)
			snprintf(body, sizeof(body), "{\"error\":\"rate_limited\",\"message\":\"over this client's rate limit\"}");
		return GwRespond(req, 429, body, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	req->job.count = (int) n;
	req->array = count != NULL && n > 1;
	return GwSubmit(req);
}

/* Appends one ID object for row r of the job to out; returns bytes. */
static int
ep_id_json(GwRequest *req, int r, char *out, size_t outlen)
{
	const char *v = req->job.cells[r];
	int64_t		id = 0;
	int64_t		unix_ms;
	int			node;
	int			seq;
	char		when[40];
	bool		uuid = req->job.kind == GW_UUID;

	if (v == NULL)
		return -1;
	if (uuid)
	{
		uint64_t	hi;
		uint64_t	lo;

		if (ep_parse_uuid(v, &hi, &lo) != 0 || ep_uuid_to_guid(hi, lo, &id) != 0)
			return -1;
	}
	else
		id = strtoll(v, NULL, 10);
	ep_decode(id, &unix_ms, &node, &seq);
	GwFormatTime(when, sizeof(when), unix_ms);
	return snprintf(out, outlen,
					"{\"guid\":\"%s\",\"type\":\"%s\",\"created_at\":\"%s\",\"node_id\":%d,\"sequence\":%d}",
					v, uuid ? "uuid" : "snowflake", when, node, seq);
}

int
GwGenerateFinish(GwRequest *req)
{
	GwJob	   *job = &req->job;
	bool		array = req->array;
	size_t		cap = (size_t) job->rows * 160 + 16;
	char	   *body;
	size_t		len = 0;
	int			ret;

	if (job->http_status != 0)
		return ep_job_error(req);
	if (job->rows != job->count)
		return GwRespondError(req, 500, "internal_error", "postgresql returned too few rows");
	body = malloc(cap);
	if (array)
		body[len++] = '[';
	for (int r = 0; r < job->rows; r++)
	{
		int			n = ep_id_json(req, r, body + len, cap - len - 2);

		if (n < 0 || (size_t) n >= cap - len - 2)
		{
			free(body);
			return GwRespondError(req, 500, "internal_error", "postgresql returned a bad id");
		}
		len += n;
		if (array)
			body[len++] = r + 1 < job->rows ? ',' : ']';
	}
	body[len] = '\0';
	GwMetricsIds(job->kind, job->rows);
	ret = GwRespond(req, 200, body, NULL, NULL);
	free(body);
	return ret;
}

/* ---- GET /guid/status/{id} ---- */

int
GwStatusStart(GwRequest *req, const char *id)
{
	char		client[GW_MAX_CLIENT + 64];
	long long	v;
	uint64_t	hi;
	uint64_t	lo;
	int			rc;

	if (!GwAuthenticate(req, client, sizeof(client)))
		return MHD_YES;
	if (isdigit((unsigned char) id[0]) && strspn(id, "0123456789") == strlen(id))
	{
		if (!ep_parse_int(id, 0, INT64_MAX, &v))
			return GwRespondError(req, 400, "out_of_range", "the id is out of range for a guid");
		req->job.id = v;
	}
	else if (ep_parse_uuid(id, &hi, &lo) == 0)
	{
		if ((rc = ep_uuid_to_guid(hi, lo, &req->job.id)) == -1)
			return GwRespondError(req, 400, "invalid_id", "the UUID is not a UUIDv7 of guid_uuid()");
		if (rc == -2)
			return GwRespondError(req, 400, "out_of_range", "the UUID's time is out of the guid range");
	}
	else
		return GwRespondError(req, 400, "invalid_id",
							  "the id must be a decimal guid or a UUIDv7 (8-4-4-4-12 hex)");
	snprintf(req->id_text, sizeof(req->id_text), "%s", id);
	req->job.kind = GW_LOOKUP;
	req->job.count = 1;
	return GwSubmit(req);
}

/*
 * "published" of a status answer (cells of a GW_LOOKUP row): null when the
 * row is not recorded here or no publisher is configured; true when the
 * row is provably in Kafka (GwPublishedProven); false otherwise (not
 * proven yet: the publisher is behind, stopped, or has not committed since
 * the server started).
 */
static const char *
ep_published(char **cells)
{
	unsigned long long xmin;
	unsigned long long xmax;
	unsigned long long lsn;
	long long	inc;
	char	   *end;

	if (cells[3] == NULL || cells[4] == NULL || cells[7] == NULL || strcmp(cells[7], "t") != 0)
		return "null";
	if (cells[5] == NULL || cells[6] == NULL || cells[8] == NULL)
		return "false";
	errno = 0;
	xmin = strtoull(cells[4], &end, 10);
	if (errno || *end || xmin > UINT32_MAX)
		return "false";
	xmax = strtoull(cells[5], &end, 10);
	if (errno || *end)
		return "false";
	lsn = strtoull(cells[6], &end, 10);
	if (errno || *end)
		return "false";
	inc = strtoll(cells[8], &end, 10);
	if (errno || *end)
		return "false";
	return GwPublishedProven((uint32_t) xmin, xmax, lsn, inc) ? "true" : "false";
}

int
GwStatusFinish(GwRequest *req)
{
	GwJob	   *job = &req->job;
	char		body[1024];
	char		service[2 * GW_MAX_SERVICE + 8];
	char		svc[2 * GW_MAX_SERVICE + 1];
	char		uuid[64] = "";

	if (job->http_status != 0)
		return ep_job_error(req);
	if (job->rows != 1 || job->cols != 9)
		return GwRespondError(req, 500, "internal_error", "postgresql returned no row");
	if (job->cells[3])
	{
		GwJsonEscape(svc, sizeof(svc), job->cells[3]);
		snprintf(service, sizeof(service), "\"%s\"", svc);
	}
	else
		strcpy(service, "null");
	if (strchr(req->id_text, '-'))
		snprintf(uuid, sizeof(uuid), "\"uuid\":\"%s\",", req->id_text);
	snprintf(body, sizeof(body),
			 "{\"guid\":\"%lld\",%s\"created_at\":\"%s\",\"node_id\":%s,\"sequence\":%s,"
			 "\"recorded\":%s,\"service\":%s,\"published\":%s}",
			 (long long) job->id, uuid, job->cells[0], job->cells[1], job->cells[2],
			 job->cells[3] ? "true" : "false", service, ep_published(job->cells));
	return GwRespond(req, 200, body, NULL, NULL);
}

/* ---- GET /healthz, GET /metrics ---- */

/*
 * /healthz answers from the last answer PostgreSQL gave while it is under
 * HEALTH_CACHE_S old: a load balancer polling it, or a benchmark measuring
 * the HTTP floor, costs no query then.  An older one is asked again by a
 * pool worker (the requests waiting meanwhile share that query), so the
 * answer lags the cluster's mode by at most HEALTH_CACHE_S plus a query.
 */
#define HEALTH_CACHE_S	0.1

static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static double health_stamp = -1;	/* GwNow() of the cached answer */
static bool health_ready;
static char health_text[600];		/* the mode when ready, else why not */

static int
ep_health_respond(GwRequest *req, bool ready, const char *text)
{
	char		body[sizeof(health_text) + 64];

	if (ready)
	{
		snprintf(body, sizeof(body), "{\"status\":\"ready\",\"mode\":\"%s\"}", text);
		return GwRespond(req, 200, body, NULL, NULL);
	}
	return GwRespondError(req, 503, "unavailable", text);
}

int
GwHealthStart(GwRequest *req)
{
	double		now = GwNow();
	bool		ready;
	char		text[sizeof(health_text)];

	pthread_mutex_lock(&health_lock);
	if (health_stamp < 0 || now - health_stamp >= HEALTH_CACHE_S)
	{
		pthread_mutex_unlock(&health_lock);
		req->job.kind = GW_HEALTH;
		req->job.count = 1;
		return GwSubmit(req);
	}
	ready = health_ready;
	memcpy(text, health_text, sizeof(text));
	pthread_mutex_unlock(&health_lock);
	return ep_health_respond(req, ready, text);
}

int
GwHealthFinish(GwRequest *req)
{
	GwJob	   *job = &req->job;
	const char *mode = job->http_status == 0 && job->rows == 1 ? job->cells[0] : NULL;
	bool		ready = mode && (strcmp(mode, "standalone") == 0 || strcmp(mode, "leased") == 0);
	char		text[sizeof(health_text)];

	if (ready)
		snprintf(text, sizeof(text), "%s", mode);
	else if (mode)
		snprintf(text, sizeof(text), "the cluster cannot issue IDs now (mode %s)", mode);
	else
		snprintf(text, sizeof(text), "%s", job->error);
	pthread_mutex_lock(&health_lock);
	health_stamp = GwNow();
	health_ready = ready;
	memcpy(health_text, text, sizeof(text));
	pthread_mutex_unlock(&health_lock);
	return ep_health_respond(req, ready, text);
}

int
GwMetricsFinish(GwRequest *req)
{
	char	   *text = GwMetricsRender(&req->job);
	int			ret = GwRespond(req, 200, text, NULL, NULL);

	free(text);
	return ret;
}
