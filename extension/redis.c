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
 * Host names are resolved with glibc's getaddrinfo_a() and waited for on
 * the latch, so a slow DNS server is bounded by guid.redis_timeout and a
 * cancel interrupts it; hiredis itself is only ever given numeric
 * addresses (its own lookup is a blocking getaddrinfo()).  A lookup that is
 * abandoned is left to its helper thread and reaped later: the thread
 * calls nothing of PostgreSQL, and blocks all signals.
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

char	   *guid_redis = NULL;
static char *guid_redis_password_file = NULL;

/* What kind of failure the last err describes (set next to each message). */
static RedisFailure redis_failure = REDIS_UNAVAILABLE;
int			guid_redis_timeout = 1000;

static redisContext *redis_conn = NULL;
static char *redis_conn_spec = NULL;	/* guid.redis it was made from */
static char *redis_conn_pwfile = NULL;	/* and guid.redis_password_file */

/*
 * A host name lookup in progress: the request and everything it points to
 * must outlive an abandoned wait, until glibc's helper thread is done.
 */
typedef struct RedisLookup
{
	struct gaicb cb;
	struct addrinfo hints;
	struct RedisLookup *next;	/* in redis_abandoned */
	char		host[FLEXIBLE_ARRAY_MEMBER];
} RedisLookup;

static RedisLookup *redis_lookup = NULL;	/* the one being waited for */
static RedisLookup *redis_abandoned = NULL; /* lookups not yet released */

/*
 * The latch, postmaster death and the connection's socket, kept for the
 * connection's life: WaitLatchOrSocket() would build and tear down an epoll
 * set on every wait, a measurable part of one round trip to a nearby Redis.
 */
static WaitEventSet *redis_wes = NULL;
static int	redis_sock_pos = -1;
static int	redis_sock_event = 0;

/*
 * RedisInit: define the Redis settings.
 */
void
RedisInit(void)
{
	DefineCustomStringVariable("guid.redis",
							   gettext_noop("Redis for idempotency keys: [password@]host[:port] or [password@]/path/to/redis.sock."),
							   NULL,
							   &guid_redis,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("guid.redis_password_file",
							   gettext_noop("File holding the Redis password (AUTH); only the server's OS user may read it."),
							   gettext_noop("Preferred to a password in guid.redis, which roles with pg_read_all_settings can read."),
							   &guid_redis_password_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress && guid_redis != NULL && strchr(guid_redis, '@') != NULL)
		ereport(WARNING,
				(errmsg("guid.redis holds a password that every role with pg_read_all_settings can read"),
				 errhint("Put the password in a file only the server's OS user can read, and name it in guid.redis_password_file; passwords in guid.redis are refused in a later release.")));
	DefineCustomIntVariable("guid.redis_timeout",
							gettext_noop("Timeout for connecting to Redis and for each request."),
							NULL,
							&guid_redis_timeout,
							1000, 1, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* RedisAddress: guid.redis without its password, for messages. */
const char *
RedisAddress(void)
{
	const char *at = guid_redis ? strrchr(guid_redis, '@') : NULL;

	return at ? at + 1 : (guid_redis ? guid_redis : "");
}

/*
 * Release a lookup: free it when glibc's helper thread is done with it,
 * else keep it on redis_abandoned for a later call to free.
 */
static void
redis_lookup_release(RedisLookup *lookup)
{
	if (gai_cancel(&lookup->cb) == EAI_NOTCANCELED)
	{
		lookup->next = redis_abandoned;
		redis_abandoned = lookup;
		return;
	}
	if (lookup->cb.ar_result != NULL)
		freeaddrinfo(lookup->cb.ar_result);
	free(lookup);
}

/* Free the abandoned lookups that have finished since. */
static void
redis_lookup_reap(void)
{
	RedisLookup *list = redis_abandoned;

	redis_abandoned = NULL;
	while (list != NULL)
	{
		RedisLookup *next = list->next;

		redis_lookup_release(list);
		list = next;
	}
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
	struct addrinfo *ai;
	struct addrinfo *pick = NULL;
	struct gaicb *list[1];
	struct sigevent sev;
	instr_time	deadline = redis_deadline();
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

	redis_lookup_reap();
	redis_lookup = malloc(offsetof(RedisLookup, host) + strlen(host) + 1);
	if (redis_lookup == NULL)
	{
		snprintf(err, errlen, "could not resolve Redis host \"%s\": out of memory", host);
		return false;
	}
	memset(redis_lookup, 0, offsetof(RedisLookup, host));
	strcpy(redis_lookup->host, host);
	redis_lookup->hints.ai_socktype = SOCK_STREAM;
	redis_lookup->cb.ar_name = redis_lookup->host;
	redis_lookup->cb.ar_request = &redis_lookup->hints;
	list[0] = &redis_lookup->cb;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_NONE;
	rc = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev);
	if (rc != 0)
	{
		free(redis_lookup);
		redis_lookup = NULL;
		snprintf(err, errlen, "could not resolve Redis host \"%s\": %s", host, gai_strerror(rc));
		return false;
	}

	/*
	 * glibc can notify only by a signal or a new thread; a short poll on the
	 * latch is simpler, and a lookup happens once per connection.
	 */
	while ((rc = gai_error(&redis_lookup->cb)) == EAI_INPROGRESS)
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

	if (rc == 0)
	{
		for (ai = redis_lookup->cb.ar_result; ai != NULL; ai = ai->ai_next)
			if (ai->ai_family == AF_INET || (pick == NULL && ai->ai_family == AF_INET6))
			{
				pick = ai;
				if (ai->ai_family == AF_INET)
					break;
			}
		if (pick == NULL)
			rc = EAI_NONAME;
		else
			rc = getnameinfo(pick->ai_addr, pick->ai_addrlen, addr, addrlen,
							 NULL, 0, NI_NUMERICHOST);
	}
	redis_lookup_release(redis_lookup);
	redis_lookup = NULL;
	if (rc != 0)
	{
		snprintf(err, errlen, "could not resolve Redis host \"%s\": %s", host,
				 gai_strerror(rc));
		return false;
	}
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
