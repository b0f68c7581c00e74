/*-------------------------------------------------------------------------
 *
 * gateway_main.c
 *		guid_gateway: the HTTP API of guid (README, "HTTP API").
 *
 *	guid_gateway --config /etc/guid/gateway.conf
 *
 * The main thread only starts the parts and waits for signals, which every
 * other thread blocks (sigwait): SIGTERM or SIGINT stop accepting
 * connections, let the requests in flight finish (up to drain_timeout),
 * then exit 0; SIGHUP reads the config file again and applies its keys,
 * auth and limits (the listen address, TLS files, conninfo, pool and thread
 * sizes need a restart).  A config that fails to load is logged and the old
 * one stays.  Logs go to stderr, one line each.
 *
 *-------------------------------------------------------------------------
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "gateway.h"

void
GwLog(const char *fmt,...)
{
	char		line[1024];
	char		when[40];
	struct timespec ts;
	va_list		ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	GwFormatTime(when, sizeof(when), (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s guid_gateway: %s\n", when, line);
}

double
GwNow(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Escapes src as the inside of a JSON string (truncating to fit). */
void
GwJsonEscape(char *dst, size_t dstlen, const char *src)
{
	size_t		n = 0;

	for (; *src && n + 7 < dstlen; src++)
	{
		unsigned char c = (unsigned char) *src;

		if (c == '"' || c == '\\')
		{
			dst[n++] = '\\';
			dst[n++] = (char) c;
		}
		else if (c < 0x20)
			n += snprintf(dst + n, dstlen - n, "\\u%04x", c);
		else
			dst[n++] = (char) c;
	}
	dst[n] = '\0';
}

/* RFC 3339 in UTC, to the millisecond. */
void
GwFormatTime(char *dst, size_t dstlen, int64_t unix_ms)
{
	time_t		secs = (time_t) (unix_ms / 1000);
	struct tm	tm;
	char		buf[32];

	gmtime_r(&secs, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(dst, dstlen, "%s.%03dZ", buf, (int) (unix_ms % 1000));
}

/* SIGHUP: applies the reloadable part of path's config. */
static void
gw_reload(const char *path)
{
	GwConfig	fresh;
	GwConfig	old;
	char		err[1024];

	if (!GwConfigLoad(path, &fresh, err, sizeof(err)))
	{
		GwLog("reload failed, keeping the old config: %s", err);
		return;
	}
	pthread_rwlock_wrlock(&gw_config_lock);
	old = *gw_config;
	/* keep the start-time fields, take the reloadable ones */
	gw_config->auth = fresh.auth;
	gw_config->hs256_secret = fresh.hs256_secret;
	gw_config->hs256_len = fresh.hs256_len;
	gw_config->rs256_key = fresh.rs256_key;
	gw_config->rs256_len = fresh.rs256_len;
	gw_config->es256_key = fresh.es256_key;
	gw_config->es256_len = fresh.es256_len;
	gw_config->issuer = fresh.issuer;
	gw_config->audience = fresh.audience;
	gw_config->leeway = fresh.leeway;
	gw_config->rate = fresh.rate;
	gw_config->burst = fresh.burst;
	gw_config->limits = fresh.limits;
	gw_config->retry_after = fresh.retry_after;
	pthread_rwlock_unlock(&gw_config_lock);

	/* free what was replaced: the old reloadable fields, fresh's others */
	fresh.hs256_secret = old.hs256_secret;
	fresh.rs256_key = old.rs256_key;
	fresh.es256_key = old.es256_key;
	fresh.issuer = old.issuer;
	fresh.audience = old.audience;
	fresh.limits = old.limits;
	GwConfigFree(&fresh);
	GwLimitReconfigure();
	GwLog("reloaded %s", path);
}

/* Stops accepting, waits for the requests in flight, stops. */
static void
gw_drain(struct MHD_Daemon *d, int timeout)
{
	MHD_socket	s = MHD_quiesce_daemon(d);
	double		until = GwNow() + timeout;

	if (s != MHD_INVALID_SOCKET)
		close(s);
	GwHttpDrain();
	GwLog("draining %d requests", GwHttpInFlight());
	while (GwHttpInFlight() > 0 && GwNow() < until)
	{
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	if (GwHttpInFlight() > 0)
		GwLog("drain timed out with %d requests in flight", GwHttpInFlight());
	GwPoolStop();
	MHD_stop_daemon(d);
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	char		err[1024];
	sigset_t	set;
	struct MHD_Daemon *d;
	int			sig;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
		else
			path = NULL, i = argc;
	}
	if (path == NULL)
	{
		fprintf(stderr, "usage: guid_gateway --config FILE\n");
		return 2;
	}
	gw_config = calloc(1, sizeof(GwConfig));
	if (!GwConfigLoad(path, gw_config, err, sizeof(err)))
	{
		GwLog("%s", err);
		return 1;
	}

	/* every thread started from here on blocks these; main sigwaits */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!GwPoolStart(gw_config->conninfo, gw_config->pool_size, err, sizeof(err)) ||
		(d = GwHttpStart(gw_config, err, sizeof(err))) == NULL)
	{
		GwLog("%s", err);
		return 1;
	}
	GwLog("listening on %s:%d%s, auth %s, pool %d", gw_config->listen_address,
		  gw_config->port, gw_config->tls_cert_file ? " (TLS)" : "",
		  gw_config->auth ? "on" : "off", gw_config->pool_size);

	for (;;)
	{
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP)
			gw_reload(path);
		else
			break;
	}
	gw_drain(d, gw_config->drain_timeout);
	GwLog("stopped");
	return 0;
}
