/*-------------------------------------------------------------------------
 *
 * redis.c
 *		The Redis adapter behind idempotency keys: one lazily opened
 *		connection per backend, and a pipelined "SET key value NX GET EX ttl".
 *
 * Redis 7 answers "SET key value NX GET" with nil when it stored our value
 * and with the value already there otherwise, so one round trip tells a
 * caller both whether it won and, if not, the winner's value.  Several keys
 * go out as one pipeline: all commands written, then all replies read.
 *
 * I/O is hiredis in non-blocking mode, waited for on a WaitEventSet (latch,
 * postmaster death, socket) kept with the connection: a cancel or a
 * terminate interrupts a slow Redis, postmaster death ends the wait, and
 * guid.redis_timeout bounds the connect and each wait for progress.
 *
 * The connection is only ever in one of two states between calls: absent,
 * or connected, authenticated and with no reply outstanding.  Any exchange
 * that fails, or that an interrupt (a cancel, statement_timeout) ends with
 * an ERROR in the middle, drops it together with every reply read so far
 * (PG_CATCH below), so the next call starts afresh: a connection
 * interrupted before its AUTH went out is never used unauthenticated.
 *
 * guid.redis is a reload setting, and a reload changes it in every backend
 * at its next command.  The connection remembers the guid.redis it was made
 * from; a call that finds another value drops it and connects to the new
 * one, so old and new backends never settle one key with two Redis servers.
 *
 * Host names are resolved off this thread (extension/core/resolve.c, as
 * the lease does) and waited for on the latch: a slow DNS server is bounded
 * by guid.redis_timeout and a cancel interrupts it; hiredis, whose own
 * lookup blocks, is only given numeric addresses.
 *
 * Like Redis's anet.c, the functions here return a status and fill an error
 * buffer; the SQL functions (extension/idempotent.c) turn that into
 * ereport.  This file never raises an error itself, except through
 * CHECK_FOR_INTERRUPTS().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <sys/socket.h>
#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "guid_core.h"
#include "guid_redis.h"
#include "guid_resolve.h"

/* What kind of failure the last err describes (set next to each message). */
static RedisFailure redis_failure = REDIS_UNAVAILABLE;

static redisContext *redis_conn = NULL;
static char *redis_conn_spec = NULL;	/* guid.redis it was made from */
static char *redis_conn_pwfile = NULL;	/* and guid.redis_password_file */

/*
 * Host name lookups (extension/core/resolve.c): the one being waited for,
 * and abandoned ones the resolver thread was still working on, freed by a
 * later call once it is done (beyond REDIS_MAX_ABANDONED they are left to
 * it: a leak of a few hundred bytes, only while DNS keeps timing out).
 */
#define REDIS_MAX_ABANDONED		16

static GuidResolve *redis_lookup = NULL;
static GuidResolve *redis_abandoned[REDIS_MAX_ABANDONED];
static int	redis_nabandoned = 0;

/*
 * The latch, postmaster death and the connection's socket, kept for the
 * connection's life: WaitLatchOrSocket() would build and tear down an epoll
 * set on every wait, a measurable part of one round trip to a nearby Redis.
 */
static WaitEventSet *redis_wes = NULL;
static int	redis_sock_pos = -1;
static int	redis_sock_event = 0;

/*
 * Release a lookup: free it when the resolver thread is done with it, else
 * keep it for a later call to free.
 */
static void
redis_lookup_release(GuidResolve *lookup)
{
	if (!GuidResolveFree(lookup) && redis_nabandoned < REDIS_MAX_ABANDONED)
		redis_abandoned[redis_nabandoned++] = lookup;
}

/* Free the abandoned lookups that have finished since. */
static void
redis_lookup_reap(void)
{
	int			i;
	int			kept = 0;

	for (i = 0; i < redis_nabandoned; i++)
		if (!GuidResolveFree(redis_abandoned[i]))
			redis_abandoned[kept++] = redis_abandoned[i];
	redis_nabandoned = kept;
}

/*
 * Drop the connection, and any lookup in progress: the next call starts
 * afresh.  Safe in error recovery (frees only; raises nothing).
 */
static void
redis_drop(void)
{
	if (redis_lookup != NULL)
		redis_lookup_release(redis_lookup);
	redis_lookup = NULL;
	if (redis_wes != NULL)
		FreeWaitEventSet(redis_wes);
	redis_wes = NULL;
	if (redis_conn != NULL)
		redisFree(redis_conn);
	redis_conn = NULL;
	if (redis_conn_spec != NULL)
		pfree(redis_conn_spec);
	if (redis_conn_pwfile != NULL)
		pfree(redis_conn_pwfile);
	redis_conn_spec = redis_conn_pwfile = NULL;
}

/* Milliseconds left before the deadline (at least 0). */
static long
redis_remaining(instr_time deadline)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(deadline, now);
	return Max((long) INSTR_TIME_GET_MILLISEC(deadline), 0);
}

/* Now plus guid.redis_timeout. */
static instr_time
redis_deadline(void)
{
	instr_time	deadline;
	instr_time	timeout;

	INSTR_TIME_SET_CURRENT(deadline);
	timeout.tv_sec = guid_redis_timeout / 1000;
	timeout.tv_nsec = (long) (guid_redis_timeout % 1000) * 1000000;
	INSTR_TIME_ADD(deadline, timeout);
	return deadline;
}

/*
 * Wait up to guid.redis_timeout for the socket to become readable or
 * writable (event), serving the latch and interrupts meanwhile.  Returns
 * false on timeout.  The timeout counts from each wait, so a long pipeline
 * fails only when Redis stops making progress.
 */
static bool
redis_wait(int event)
{
	instr_time	deadline = redis_deadline();

	if (redis_wes == NULL)
	{
		redis_wes = CreateWaitEventSet(TopMemoryContext, 3);
		AddWaitEventToSet(redis_wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(redis_wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		redis_sock_pos = AddWaitEventToSet(redis_wes, event, redis_conn->fd, NULL, NULL);
		redis_sock_event = event;
	}
	else if (redis_sock_event != event)
	{
		ModifyWaitEvent(redis_wes, redis_sock_pos, event, NULL);
		redis_sock_event = event;
	}

	for (;;)
	{
		long		left = redis_remaining(deadline);
		WaitEvent	ev;

		if (left <= 0)
			return false;
		if (WaitEventSetWait(redis_wes, left, &ev, 1, PG_WAIT_EXTENSION) == 0)
			continue;			/* timed out: the loop sees it */
		if (ev.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (ev.events & event)
			return true;
	}
}

/*
 * Resolve host to a numeric address (IPv4 preferred, as hiredis does) in
 * addr, waiting on the latch: bounded by guid.redis_timeout, interrupted by
 * a cancel.  A numeric host is used as is, without a lookup.  Returns false
 * with err set.
 */
static bool
redis_resolve(const char *host, char *addr, size_t addrlen, char *err, size_t errlen)
{
	struct addrinfo hints;
	struct addrinfo *res;
	instr_time	deadline = redis_deadline();
	char		spec[NI_MAXHOST + 8];
	char		found[GUID_RESOLVE_MAX_HOSTS * (NI_MAXHOST + 8)];
	char		why[256];
	char	   *entry;
	char	   *pick = NULL;
	char	   *save = NULL;
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(host, NULL, &hints, &res) == 0)
	{
		freeaddrinfo(res);
		strlcpy(addr, host, addrlen);
		return true;
	}

	/* the port is only there for the connect string's syntax */
	redis_lookup_reap();
	snprintf(spec, sizeof(spec), "%s:6379", host);
	redis_lookup = GuidResolveStart(spec, why, sizeof(why));
	if (redis_lookup == NULL)
	{
		snprintf(err, errlen, "could not resolve Redis host \"%s\": %s", host, why);
		return false;
	}

	/*
	 * glibc can notify only by a signal or a new thread; a short poll on the
	 * latch is simpler, and a lookup happens once per connection.
	 */
	while ((rc = GuidResolvePoll(redis_lookup, found, sizeof(found), why, sizeof(why))) == 0)
	{
		long		left = redis_remaining(deadline);

		if (left <= 0)
		{
			snprintf(err, errlen, "could not resolve Redis host \"%s\": timed out after %d ms",
					 host, guid_redis_timeout);
			redis_drop();
			return false;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	redis_lookup_release(redis_lookup);
	redis_lookup = NULL;
	if (rc < 0)
	{
		snprintf(err, errlen, "could not resolve Redis host \"%s\": %s", host, why);
		return false;
	}

	/* "addr:port,...": the first IPv4 address, as hiredis would, else the first */
	for (entry = strtok_r(found, ",", &save); entry != NULL; entry = strtok_r(NULL, ",", &save))
	{
		*strrchr(entry, ':') = '\0';
		if (pick == NULL || (strchr(pick, ':') != NULL && strchr(entry, ':') == NULL))
			pick = entry;
	}
	strlcpy(addr, pick, addrlen);
	return true;
}

/*
 * Was the open connection made from the current guid.redis and
 * guid.redis_password_file?  A reload that changes either makes the next
 * call reconnect.  Compares without allocating: it runs on every call.
 */
static bool
redis_conn_current(void)
{
	return strcmp(redis_conn_spec, guid_redis ? guid_redis : "") == 0 &&
		strcmp(redis_conn_pwfile, guid_redis_password_file ? guid_redis_password_file : "") == 0;
}

/*
 * Connect to guid.redis.  Caller has dropped any previous connection.
 * Returns false with err set.  On success *password is the password in
 * guid.redis (palloc'd), or NULL.
 */
static bool
redis_connect(char **password, char *err, size_t errlen)
{
	char	   *spec;
	char	   *at;
	char	   *addr;
	char	   *colon;
	int			soerr = 0;
	socklen_t	len = sizeof(soerr);

	*password = NULL;
	if (guid_redis == NULL || guid_redis[0] == '\0')
	{
		snprintf(err, errlen, "guid.redis is not set");
		redis_failure = REDIS_MISCONFIGURED;
		return false;
	}

	spec = pstrdup(guid_redis);
	at = strrchr(spec, '@');
	addr = spec;
	if (at != NULL)
	{
		*at = '\0';
		*password = spec;
		addr = at + 1;
	}
	/* The file wins over a password written into guid.redis. */
	if (guid_redis_password_file != NULL && guid_redis_password_file[0] != '\0')
	{
		*password = GuidReadSecretFile("guid.redis_password_file", guid_redis_password_file,
									   err, errlen);
		if (*password == NULL)
		{
			redis_failure = REDIS_MISCONFIGURED;
			return false;
		}
	}

	if (addr[0] == '/')
		redis_conn = redisConnectUnixNonBlock(addr);
	else
	{
		int			port = 6379;
		char		numeric[NI_MAXHOST];

		colon = strrchr(addr, ':');
		if (colon != NULL)
		{
			char	   *end;
			long		p = strtol(colon + 1, &end, 10);

			if (*end != '\0' || p <= 0 || p > 65535)
			{
				snprintf(err, errlen, "invalid port in guid.redis \"%s\"", RedisAddress());
				redis_failure = REDIS_MISCONFIGURED;
				return false;
			}
			*colon = '\0';
			port = (int) p;
		}
		if (!redis_resolve(addr, numeric, sizeof(numeric), err, errlen))
			return false;
		redis_conn = redisConnectNonBlock(numeric, port);
	}
	if (redis_conn == NULL || redis_conn->err)
	{
		snprintf(err, errlen, "could not connect to Redis at %s: %s", RedisAddress(),
				 redis_conn ? redis_conn->errstr : "out of memory");
		redis_drop();
		return false;
	}
	redis_conn_spec = MemoryContextStrdup(TopMemoryContext, guid_redis);
	redis_conn_pwfile = MemoryContextStrdup(TopMemoryContext,
											guid_redis_password_file ? guid_redis_password_file : "");

	/* A non-blocking connect completes when the socket becomes writable. */
	if (!redis_wait(WL_SOCKET_WRITEABLE))
	{
		snprintf(err, errlen, "could not connect to Redis at %s: timed out after %d ms",
				 RedisAddress(), guid_redis_timeout);
		redis_drop();
		return false;
	}
	if (getsockopt(redis_conn->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0)
	{
		snprintf(err, errlen, "could not connect to Redis at %s: %s", RedisAddress(),
				 strerror(soerr ? soerr : errno));
		redis_drop();
		return false;
	}
	return true;
}

/*
 * Send everything appended to the connection, then read nreplies replies
 * into replies[].  Returns false with err set (the connection is dropped).
 */
static bool
redis_roundtrip(int nreplies, redisReply **replies, char *err, size_t errlen)
{
	int			done = 0;
	int			i;

	do
	{
		if (redisBufferWrite(redis_conn, &done) != REDIS_OK)
			goto io_error;
		if (!done && !redis_wait(WL_SOCKET_WRITEABLE))
			goto timeout;
	} while (!done);

	for (i = 0; i < nreplies; i++)
	{
		void	   *reply = NULL;

		for (;;)
		{
			if (redisGetReplyFromReader(redis_conn, &reply) != REDIS_OK)
				goto io_error;
			if (reply != NULL)
				break;
			if (!redis_wait(WL_SOCKET_READABLE))
				goto timeout;
			if (redisBufferRead(redis_conn) != REDIS_OK)
				goto io_error;
		}
		replies[i] = (redisReply *) reply;
	}
	return true;

io_error:
	snprintf(err, errlen, "Redis at %s: %s", RedisAddress(),
			 redis_conn->errstr[0] ? redis_conn->errstr : "connection lost");
	redis_drop();
	return false;

timeout:
	snprintf(err, errlen, "Redis at %s did not answer within guid.redis_timeout (%d ms)",
			 RedisAddress(), guid_redis_timeout);
	redis_drop();
	return false;
}

/*
 * One exchange of RedisSetNxGet: connect if needed (AUTH goes first in the
 * pipeline then), send the n SETs, read all replies into replies[] (room
 * for n + 1) and fill existing[].  Returns false with err set.  Caller
 * frees the replies, and drops the connection on failure or on an ERROR
 * from an interrupt.
 */
static bool
redis_exchange(int n, const char **keys, const char **values, int ttl_s,
			   redisReply **replies, char **existing, char *err, size_t errlen)
{
	char	   *password = NULL;
	char		ttl[16];
	int			first = 0;
	int			i;

	if (redis_conn == NULL)
	{
		if (!redis_connect(&password, err, errlen))
			return false;
		if (password != NULL)
		{
			const char *argv[2] = {"AUTH", password};

			redisAppendCommandArgv(redis_conn, 2, argv, NULL);
			first = 1;
		}
	}

	snprintf(ttl, sizeof(ttl), "%d", ttl_s);
	for (i = 0; i < n; i++)
	{
		const char *argv[7] = {"SET", keys[i], values[i], "NX", "GET", "EX", ttl};

		redisAppendCommandArgv(redis_conn, 7, argv, NULL);
	}

	if (!redis_roundtrip(first + n, replies, err, errlen))
		return false;

	for (i = 0; i < first + n; i++)
	{
		redisReply *r = replies[i];

		if (r->type == REDIS_REPLY_ERROR)
		{
			snprintf(err, errlen, "Redis at %s refused %s: %s", RedisAddress(),
					 i < first ? "the password (guid.redis_password_file or guid.redis)" : "SET NX GET", r->str);
			/* a refused password is configuration; a key of another type is corrupt data */
			if (i < first)
				redis_failure = REDIS_MISCONFIGURED;
			else if (strncmp(r->str, "WRONGTYPE", 9) == 0)
				redis_failure = REDIS_BAD_VALUE;
			return false;
		}
		if (i < first)
			continue;
		if (r->type == REDIS_REPLY_NIL)
			existing[i - first] = NULL;
		else if (r->type == REDIS_REPLY_STRING)
			existing[i - first] = pnstrdup(r->str, r->len);
		else
		{
			snprintf(err, errlen, "Redis at %s answered SET NX GET with reply type %d",
					 RedisAddress(), r->type);
			redis_failure = REDIS_BAD_VALUE;
			return false;
		}
	}
	return true;
}

/*
 * RedisSetNxGet: for each i, "SET keys[i] values[i] NX GET EX ttl_s", all in
 * one pipeline.  On success existing[i] is NULL when values[i] was stored,
 * else a palloc'd copy of the value already there.  Returns false with err
 * set when Redis could not be asked or refused (nothing may be assumed
 * about which keys were set), and *failure saying whether that is worth a
 * retry (REDIS_UNAVAILABLE), a configuration problem or a key holding
 * something else.  Raises only what CHECK_FOR_INTERRUPTS() and palloc
 * raise; the connection is then dropped first.
 */
bool
RedisSetNxGet(int n, const char **keys, const char **values, int ttl_s,
			  char **existing, RedisFailure *failure, char *err, size_t errlen)
{
	redisReply **replies;
	volatile bool ok = false;
	int			i;

	redis_failure = REDIS_UNAVAILABLE;

	/* A reload changed guid.redis: the connection is to the old one. */
	if (redis_conn != NULL && !redis_conn_current())
		redis_drop();

	replies = palloc0(sizeof(redisReply *) * (n + 1));
	PG_TRY();
	{
		ok = redis_exchange(n, keys, values, ttl_s, replies, existing, err, errlen);
	}
	PG_CATCH();
	{
		for (i = 0; i < n + 1; i++)
			if (replies[i] != NULL)
				freeReplyObject(replies[i]);
		redis_drop();
		PG_RE_THROW();
	}
	PG_END_TRY();

	for (i = 0; i < n + 1; i++)
		if (replies[i] != NULL)
			freeReplyObject(replies[i]);
	pfree(replies);
	if (!ok)
		redis_drop();			/* whatever failed, start afresh */
	*failure = redis_failure;
	return ok;
}
