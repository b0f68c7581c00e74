/*-------------------------------------------------------------------------
 *
 * gateway_http.c
 *		guid_gateway's HTTP side over libmicrohttpd (its internal thread
 *		pool, epoll, keep-alive): routing, the life of a request, JSON
 *		responses, and the hand-off to the pool.
 *
 * A request that needs PostgreSQL is suspended (MHD_suspend_connection)
 * after its job is queued; the pool worker that answers the job resumes it
 * (MHD_resume_connection, safe from any thread) and libmicrohttpd calls the
 * handler again, which then writes the response.  So a handful of HTTP
 * threads carry any number of waiting requests, and the requests waiting
 * at a moment are in the queue together, to be coalesced.
 *
 * The handler never blocks and never calls libpq.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "gateway.h"

static atomic_int http_in_flight;
static atomic_bool http_draining;
static int	http_max_body;

/*
 * SIGTERM: from now on a request that reaches the router is refused with
 * 503, and every response closes its connection, so that keep-alive
 * clients cannot keep the drain from ending.
 */
void
GwHttpDrain(void)
{
	atomic_store(&http_draining, true);
}

int
GwHttpInFlight(void)
{
	return atomic_load(&http_in_flight);
}

int
GwRespond(GwRequest *req, int status, const char *json, const char *header, const char *value)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(json), (void *) json, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
							req->ep == GW_EP_METRICS && status == 200 ?
							"text/plain; version=0.0.4; charset=utf-8" : "application/json");
	if (header)
		MHD_add_response_header(resp, header, value);
	if (atomic_load(&http_draining))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(req->conn, (unsigned int) status, resp);
	MHD_destroy_response(resp);
	GwMetricsRequest(req->ep, status, GwNow() - req->start);
	return ret;
}

/*
 * An error: {"error": "<short code>", "message": "<what>"}.  503 and 429
 * carry Retry-After (429's is set by the caller through the header args of
 * GwRespond instead), 401 WWW-Authenticate, 405 Allow.
 */
int
GwRespondError(GwRequest *req, int status, const char *error, const char *message)
{
	char		msg[600];
	char		body[800];
	char		retry[16];
	const char *header = NULL;
	const char *value = NULL;

	GwJsonEscape(msg, sizeof(msg), message);
	snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", error, msg);
	if (status == 503)
	{
		pthread_rwlock_rdlock(&gw_config_lock);
		snprintf(retry, sizeof(retry), "%d", gw_config->retry_after);
		pthread_rwlock_unlock(&gw_config_lock);
		header = MHD_HTTP_HEADER_RETRY_AFTER;
		value = retry;
	}
	else if (status == 401)
	{
		header = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
		value = "Bearer realm=\"guid\", error=\"invalid_token\"";
	}
	else if (status == 405)
	{
		header = MHD_HTTP_HEADER_ALLOW;
		value = req->ep == GW_EP_GENERATE ? "POST" : "GET";
	}
	if (status != 429)
		GwLog("%d %s: %s", status, error, message);
	return GwRespond(req, status, body, header, value);
}

/* Called by a pool worker when req's job is answered. */
static void
http_job_done(GwJob *job)
{
	GwRequest  *req = job->arg;

	__atomic_store_n(&req->waiting, 0, __ATOMIC_RELEASE);
	MHD_resume_connection(req->conn);
}

int
GwSubmit(GwRequest *req)
{
	req->job.done = http_job_done;
	req->job.arg = req;
	req->waiting = 1;
	req->submitted = true;
	MHD_suspend_connection(req->conn);
	GwPoolSubmit(&req->job);
	return MHD_YES;
}

bool
GwAuthenticate(GwRequest *req, char *client, size_t clientlen)
{
	const char *authz = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
													MHD_HTTP_HEADER_AUTHORIZATION);
	char		err[256];
	bool		ok;

	pthread_rwlock_rdlock(&gw_config_lock);
	if (!gw_config->auth)
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const struct sockaddr *sa = ci ? ci->client_addr : NULL;

		pthread_rwlock_unlock(&gw_config_lock);
		snprintf(client, clientlen, "unknown");
		if (sa && sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, client, clientlen);
		else if (sa && sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, client, clientlen);
		return true;
	}
	ok = GwAuthCheck(gw_config, authz, client, clientlen, err, sizeof(err));
	pthread_rwlock_unlock(&gw_config_lock);
	if (!ok)
	{
		GwMetricsAuthFailure();
		GwRespondError(req, 401, "unauthorized", err);
	}
	return ok;
}

/* Routes a complete request (headers and body read). */
static int
http_route(GwRequest *req, const char *url, const char *method)
{
	bool		get = strcmp(method, "GET") == 0;

	if (atomic_load(&http_draining))
		return GwRespondError(req, 503, "unavailable", "the gateway is shutting down");
	if (strcmp(url, "/guid/generate") == 0)
	{
		req->ep = GW_EP_GENERATE;
		if (strcmp(method, "POST") != 0)
			return GwRespondError(req, 405, "method_not_allowed", "use POST");
	}
	else if (strncmp(url, "/guid/status/", 13) == 0)
		req->ep = GW_EP_STATUS;
	else if (strcmp(url, "/healthz") == 0)
		req->ep = GW_EP_HEALTHZ;
	else if (strcmp(url, "/metrics") == 0)
		req->ep = GW_EP_METRICS;
	else
		return GwRespondError(req, 404, "not_found", "no such endpoint");
	if (req->ep != GW_EP_GENERATE && !get)
		return GwRespondError(req, 405, "method_not_allowed", "use GET");
	if (req->body_len > (size_t) http_max_body)
		return GwRespondError(req, 413, "body_too_large", "the request body is too large");

	switch (req->ep)
	{
		case GW_EP_GENERATE:
			return GwGenerateStart(req);
		case GW_EP_STATUS:
			return GwStatusStart(req, url + 13);
		case GW_EP_HEALTHZ:
			return GwHealthStart(req);
		default:
			req->job.kind = GW_STATUS;
			req->job.count = 1;
			return GwSubmit(req);
	}
}

/* Writes the response of a request whose job is done. */
static int
http_finish(GwRequest *req)
{
	switch (req->ep)
	{
		case GW_EP_GENERATE:
			return GwGenerateFinish(req);
		case GW_EP_STATUS:
			return GwStatusFinish(req);
		case GW_EP_HEALTHZ:
			return GwHealthFinish(req);
		default:
			return GwMetricsFinish(req);
	}
}

static enum MHD_Result
http_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			 const char *version, const char *upload_data, size_t *upload_data_size,
			 void **con_cls)
{
	GwRequest  *req = *con_cls;

	if (req == NULL)
	{
		req = calloc(1, sizeof(*req));
		req->conn = conn;
		req->start = GwNow();
		req->ep = GW_EP_OTHER;
		*con_cls = req;
		atomic_fetch_add(&http_in_flight, 1);
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		req->body_len += *upload_data_size;	/* no endpoint reads a body */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->submitted)
	{
		if (__atomic_load_n(&req->waiting, __ATOMIC_ACQUIRE))
			return MHD_YES;		/* cannot happen: suspended until done */
		return http_finish(req) == MHD_YES ? MHD_YES : MHD_NO;
	}
	return http_route(req, url, method) == MHD_YES ? MHD_YES : MHD_NO;
}

static void
http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			   enum MHD_RequestTerminationCode toe)
{
	GwRequest  *req = *con_cls;

	if (req == NULL)
		return;
	GwJobFreeResult(&req->job);
	free(req);
	*con_cls = NULL;
	atomic_fetch_sub(&http_in_flight, 1);
}

static char *
http_read_file(const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char	   *buf;
	size_t		n;

	if (f == NULL)
	{
		snprintf(err, errlen, "could not open \"%s\"", path);
		return NULL;
	}
	buf = calloc(1, 256 * 1024);
	n = fread(buf, 1, 256 * 1024 - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/*
 * GwHttpStart: listens on cfg's address and port.  Returns the daemon, or
 * NULL with err set.
 */
struct MHD_Daemon *
GwHttpStart(const GwConfig *cfg, char *err, size_t errlen)
{
	struct sockaddr_in addr;
	struct MHD_Daemon *d;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
		MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	char	   *cert = NULL;
	char	   *key = NULL;

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) cfg->port);
	if (inet_pton(AF_INET, cfg->listen_address, &addr.sin_addr) != 1)
	{
		snprintf(err, errlen, "listen_address \"%s\" is not an IPv4 address", cfg->listen_address);
		return NULL;
	}
	if (cfg->tls_cert_file)
	{
		if ((cert = http_read_file(cfg->tls_cert_file, err, errlen)) == NULL ||
			(key = http_read_file(cfg->tls_key_file, err, errlen)) == NULL)
		{
			free(cert);
			return NULL;
		}
		flags |= MHD_USE_TLS;
	}
	http_max_body = cfg->max_body;
	d = MHD_start_daemon(flags, 0, NULL, NULL, http_handler, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
						 MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) cfg->threads,
						 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) cfg->max_header,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
						 MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
						 cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
						 MHD_OPTION_HTTPS_MEM_KEY, key,
						 MHD_OPTION_END);
	/* cert and key stay allocated for the daemon's life */
	if (d == NULL)
		snprintf(err, errlen, "could not listen on %s:%d (port in use, or bad TLS files)",
				 cfg->listen_address, cfg->port);
	return d;
}
