/*-------------------------------------------------------------------------
 *
 * redis_idem.c
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
 * guid.redis_timeout bounds connect and each whole pipeline.
 * A connection that saw any error, or was interrupted in the middle of a
 * pipeline, is dropped and opened again on next use.
 *
 * Like Redis's anet.c, the functions here return a status and fill an error
 * buffer; the SQL functions (extension/idempotent.c) turn that into
 * ereport.  This file never raises an error itself, except through
 * CHECK_FOR_INTERRUPTS().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "guid.h"

char	   *guid_redis = NULL;
int			guid_redis_timeout = 1000;

static redisContext *redis_conn = NULL;
static bool redis_busy = false;	/* a pipeline was interrupted midway */

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

static void
redis_drop(void)
{
	if (redis_wes != NULL)
		FreeWaitEventSet(redis_wes);
	redis_wes = NULL;
	if (redis_conn != NULL)
		redisFree(redis_conn);
	redis_conn = NULL;
	redis_busy = false;
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
 * Open the connection if there is none.  Returns false with err set.
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

	if (addr[0] == '/')
		redis_conn = redisConnectUnixNonBlock(addr);
	else
	{
		int			port = 6379;

		colon = strrchr(addr, ':');
		if (colon != NULL)
		{
			char	   *end;
			long		p = strtol(colon + 1, &end, 10);

			if (*end != '\0' || p <= 0 || p > 65535)
			{
				snprintf(err, errlen, "invalid port in guid.redis \"%s\"", RedisAddress());
				return false;
			}
			*colon = '\0';
			port = (int) p;
		}
		redis_conn = redisConnectNonBlock(addr, port);
	}
	if (redis_conn == NULL || redis_conn->err)
	{
		snprintf(err, errlen, "could not connect to Redis at %s: %s", RedisAddress(),
				 redis_conn ? redis_conn->errstr : "out of memory");
		redis_drop();
		return false;
	}

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

	redis_busy = true;
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
	redis_busy = false;
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
 * RedisSetNxGet: for each i, "SET keys[i] values[i] NX GET EX ttl_s", all in
 * one pipeline.  On success existing[i] is NULL when values[i] was stored,
 * else a palloc'd copy of the value already there.  Returns false with err
 * set when Redis could not be asked or refused (nothing may be assumed
 * about which keys were set).
 */
bool
RedisSetNxGet(int n, const char **keys, const char **values, int ttl_s,
			  char **existing, char *err, size_t errlen)
{
	char	   *password = NULL;
	redisReply **replies;
	char		ttl[16];
	int			first = 0;
	int			total;
	int			i;
	bool		ok = true;

	if (redis_busy)
		redis_drop();

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

	total = first + n;
	replies = palloc0(sizeof(redisReply *) * total);
	if (!redis_roundtrip(total, replies, err, errlen))
	{
		for (i = 0; i < total; i++)
			if (replies[i] != NULL)
				freeReplyObject(replies[i]);
		return false;
	}

	for (i = 0; i < total && ok; i++)
	{
		redisReply *r = replies[i];

		if (r->type == REDIS_REPLY_ERROR)
		{
			snprintf(err, errlen, "Redis at %s refused %s: %s", RedisAddress(),
					 i < first ? "the password in guid.redis" : "SET NX GET", r->str);
			ok = false;
		}
		else if (i >= first)
		{
			if (r->type == REDIS_REPLY_NIL)
				existing[i - first] = NULL;
			else if (r->type == REDIS_REPLY_STRING)
				existing[i - first] = pnstrdup(r->str, r->len);
			else
			{
				snprintf(err, errlen, "Redis at %s answered SET NX GET with reply type %d",
						 RedisAddress(), r->type);
				ok = false;
			}
		}
	}
	for (i = 0; i < total; i++)
		freeReplyObject(replies[i]);
	pfree(replies);
	if (!ok && first > 0)
		redis_drop();			/* not authenticated: start afresh */
	return ok;
}
