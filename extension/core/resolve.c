/*-------------------------------------------------------------------------
 *
 * resolve.c
 *		Resolve the hosts of a connect string off the caller's thread.
 *
 * Client libraries resolve host names with a blocking getaddrinfo(), which
 * a slow DNS server stalls for many seconds, deaf to whatever the caller
 * should be answering (SIGTERM, postmaster death, a lease to renew).  Here
 * the names go to glibc's getaddrinfo_a() (its resolver thread, started
 * with every signal blocked, no callback), the caller polls from its own
 * event loop, and the client library is handed numeric addresses only.
 *
 * Plain C: no PostgreSQL header, no global state, nothing here logs.  The
 * resolver thread writes into the requests (malloc'ed) until gai_error()
 * says it is done, so they are freed only then.
 *
 * What this file must not do: block, or free a request the resolver thread
 * may still write into.
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* getaddrinfo_a */
#endif
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "guid_resolve.h"

struct GuidResolve
{
	char	   *chroot;			/* "/path" or NULL */
	bool		started;		/* getaddrinfo_a() accepted the requests */
	int			nreqs;
	struct gaicb *reqs[GUID_RESOLVE_MAX_HOSTS];
};

/* Free the requests; the resolver thread must be done with them. */
static void
resolve_free_all(GuidResolve *r)
{
	int			i;

	for (i = 0; i < r->nreqs; i++)
	{
		struct gaicb *q = r->reqs[i];

		if (q->ar_result)
			freeaddrinfo(q->ar_result);
		free((void *) q->ar_name);
		free((void *) q->ar_service);
		free((void *) q->ar_request);
		free(q);
	}
	free(r->chroot);
	free(r);
}

/* Queue a lookup of host:service; false when out of memory. */
static bool
resolve_add(GuidResolve *r, const char *host, const char *service)
{
	struct gaicb *q = calloc(1, sizeof(*q));
	struct addrinfo *hints = calloc(1, sizeof(*hints));

	if (q == NULL || hints == NULL)
	{
		free(q);
		free(hints);
		return false;
	}
	hints->ai_family = AF_UNSPEC;
	hints->ai_socktype = SOCK_STREAM;
	hints->ai_protocol = IPPROTO_TCP;
	q->ar_request = hints;
	r->reqs[r->nreqs++] = q;
	q->ar_name = strdup(host);
	q->ar_service = strdup(service);
	return q->ar_name != NULL && q->ar_service != NULL;
}

/*
 * GuidResolveStart: split spec into its host:port entries and its chroot,
 * as the ZooKeeper client does, and start looking the hosts up.
 */
GuidResolve *
GuidResolveStart(const char *spec, char *err, size_t errlen)
{
	GuidResolve *r = calloc(1, sizeof(*r));
	char	   *hosts = strdup(spec ? spec : "");
	char	   *slash;
	char	   *save = NULL;
	char	   *entry;
	sigset_t	all;
	sigset_t	old;
	int			rc;

	if (r == NULL || hosts == NULL)
	{
		free(r);
		free(hosts);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	slash = strchr(hosts, '/');
	if (slash)
	{
		r->chroot = strdup(slash);
		*slash = '\0';
		if (r->chroot == NULL)
			goto oom;
	}
	for (entry = strtok_r(hosts, ",", &save); entry; entry = strtok_r(NULL, ",", &save))
	{
		char	   *colon = strrchr(entry, ':');
		char	   *end = NULL;
		long		port;

		while (isspace((unsigned char) *entry))
			entry++;
		port = colon ? strtol(colon + 1, &end, 10) : 0;
		if (colon == NULL || colon[1] == '\0' || *end != '\0' || port <= 0 || port > 65535)
		{
			snprintf(err, errlen, "invalid port in \"%s\"", entry);
			goto fail;
		}
		if (r->nreqs == GUID_RESOLVE_MAX_HOSTS)
		{
			snprintf(err, errlen, "more than %d hosts", GUID_RESOLVE_MAX_HOSTS);
			goto fail;
		}
		*colon = '\0';
		if (!resolve_add(r, entry, colon + 1))
			goto oom;
	}
	if (r->nreqs == 0)
	{
		snprintf(err, errlen, "no host");
		goto fail;
	}

	/*
	 * The resolver thread inherits the signal mask of the thread that starts
	 * it: it must never run a signal handler of the caller's.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = getaddrinfo_a(GAI_NOWAIT, r->reqs, r->nreqs, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		snprintf(err, errlen, "could not start the host name lookup: %s", gai_strerror(rc));
		goto fail;
	}
	r->started = true;
	free(hosts);
	return r;

oom:
	snprintf(err, errlen, "out of memory");
fail:
	free(hosts);
	resolve_free_all(r);
	return NULL;
}

/*
 * GuidResolvePoll: collect a finished lookup into a connect string of
 * numeric addresses, every address of every host that resolved, in order.
 */
int
GuidResolvePoll(GuidResolve *r, char *out, size_t outlen, char *err, size_t errlen)
{
	size_t		len = 0;
	int			i;
	int			first_error = 0;
	const char *failed = NULL;

	for (i = 0; i < r->nreqs; i++)
		if (gai_error(r->reqs[i]) == EAI_INPROGRESS)
			return 0;

	if (outlen > 0)
		out[0] = '\0';
	for (i = 0; i < r->nreqs; i++)
	{
		struct gaicb *q = r->reqs[i];
		struct addrinfo *ai;
		int			rc = gai_error(q);

		if (rc != 0)
		{
			if (failed == NULL)
			{
				failed = q->ar_name;
				first_error = rc;
			}
			continue;
		}
		for (ai = q->ar_result; ai; ai = ai->ai_next)
		{
			char		host[NI_MAXHOST];
			char		port[NI_MAXSERV];

			if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
				getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host),
							port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
				continue;
			/* the ZooKeeper client takes the port after the last ':', IPv6 too */
			len += snprintf(out + len, len < outlen ? outlen - len : 0,
							"%s%s:%s", len ? "," : "", host, port);
		}
	}
	if (len == 0)
	{
		snprintf(err, errlen, "host \"%s\": %s", failed ? failed : "",
				 first_error ? gai_strerror(first_error) : "no address");
		return -1;
	}
	if (r->chroot)
		len += snprintf(out + len, len < outlen ? outlen - len : 0, "%s", r->chroot);
	if (len >= outlen)
	{
		snprintf(err, errlen, "it resolves to too many addresses");
		return -1;
	}
	return 1;
}

/*
 * GuidResolveFree: cancel what is still running and free the lookup.
 * Returns true when it is freed.  If the resolver thread is in the middle of
 * a request, returns false and frees nothing: the memory is the thread's
 * until it is done, and a later call (which may be repeated) frees it.
 */
bool
GuidResolveFree(GuidResolve *r)
{
	int			i;
	bool		busy = false;

	if (r == NULL)
		return true;
	if (r->started)
		for (i = 0; i < r->nreqs; i++)
			if (gai_error(r->reqs[i]) == EAI_INPROGRESS &&
				gai_cancel(r->reqs[i]) == EAI_NOTCANCELED)
				busy = true;
	if (busy)
		return false;
	resolve_free_all(r);
	return true;
}
