/*-------------------------------------------------------------------------
 *
 * guid_redis.h
 *		Idempotency keys: the Redis adapter (extension/redis.c) that the SQL
 *		functions (extension/idempotent.c) call.
 *
 * The adapter returns a status and fills an error buffer (as Redis's anet.c
 * does); the SQL functions turn that into ereport.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_REDIS_H
#define GUID_REDIS_H

/* extension/idempotent.c: the settings (guid.idempotency_ttl, guid.redis*) */
extern int	guid_idempotency_ttl;
extern char *guid_redis;
extern char *guid_redis_password_file;
extern int	guid_redis_timeout;
extern void IdempotentInit(void);
extern const char *RedisAddress(void);

/* extension/redis.c */

typedef enum RedisFailure
{
	REDIS_UNAVAILABLE,			/* not reachable, too slow, or refused for now */
	REDIS_MISCONFIGURED,		/* guid.redis unset or malformed, a bad password */
	REDIS_BAD_VALUE				/* a key holds something that is not a guid */
} RedisFailure;

/*
 * RedisSetNxGet: for each of the n keys, "SET key value NX GET EX ttl_s",
 * pipelined.  On success returns true and sets existing[i] to the value
 * already there (palloc'd) or NULL when ours was stored.  On failure returns
 * false with *failure and a message in err.
 */
extern bool RedisSetNxGet(int n, const char **keys, const char **values, int ttl_s,
						  char **existing, RedisFailure *failure, char *err, size_t errlen);

#endif							/* GUID_REDIS_H */
