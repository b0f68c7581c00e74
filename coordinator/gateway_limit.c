/*-------------------------------------------------------------------------
 *
 * gateway_limit.c
 *		A token bucket per client (the JWT sub, or the peer address when
 *		authentication is off), counted in IDs: count=N spends N tokens.
 *		Refilled from CLOCK_MONOTONIC at the client's rate, up to its burst.
 *
 * Locking: one mutex over the table; a take is a hash lookup and a few
 * arithmetic operations.  Rates come from the config (limit.CLIENT, else
 * rate_limit / rate_burst); a reload bumps a generation and each bucket
 * picks up its new rate at its next take, its tokens clamped to the new
 * burst.
 *
 * Eviction: a bucket refilled to its burst is the same as a new one (a new
 * bucket starts full), so freeing it changes no decision.  At most every
 * LIMIT_SWEEP_S (on a take, or when /metrics asks for the count) a sweep
 * frees the buckets that have been full for LIMIT_IDLE_S; a bucket that is
 * not full is never freed, so no client over its limit is let off.  The
 * table holds at most rate_clients_max buckets: a new client that finds it
 * full, after a sweep that frees every full bucket, is refused (429) until
 * the first bucket fills up, rather than resetting someone's bucket.
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define LIMIT_BUCKETS	16384	/* hash chains */
#define LIMIT_SWEEP_S	1.0
#define LIMIT_IDLE_S	5.0

typedef struct Bucket
{
	char	   *client;
	double		tokens;
	double		stamp;			/* GwNow() of the last refill */
	double		rate;
	double		burst;
	unsigned	generation;
	struct Bucket *next;
} Bucket;

static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static Bucket *limit_table[LIMIT_BUCKETS];
static unsigned limit_generation = 1;
static int	limit_count;		/* buckets in the table */
static double limit_last_sweep;
static double limit_room_at;	/* table full: when its first bucket is */

static unsigned
limit_hash(const char *s)
{
	unsigned	h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	return h % LIMIT_BUCKETS;
}

/* The client's rate and burst from the config.  Takes the config lock. */
static void
limit_lookup(Bucket *b)
{
	GwClientLimit *l;

	pthread_rwlock_rdlock(&gw_config_lock);
	b->rate = gw_config->rate;
	b->burst = gw_config->burst;
	for (l = gw_config->limits; l; l = l->next)
		if (strcmp(l->client, b->client) == 0)
		{
			b->rate = l->rate;
			b->burst = l->burst;
			break;
		}
	pthread_rwlock_unlock(&gw_config_lock);
}

/*
 * When b is full, as its next take would see it: its rate re-read after a
 * reload, then refilled from its stamp.  Caller holds limit_lock.
 */
static double
limit_full_at(Bucket *b)
{
	if (b->generation != limit_generation)
	{
		limit_lookup(b);
		b->generation = limit_generation;
	}
	return b->stamp + (b->burst - fmin(b->tokens, b->burst)) / b->rate;
}

/*
 * Frees every bucket full for idle seconds or more; returns when the
 * soonest of the others is full.  Caller holds limit_lock.
 */
static double
limit_sweep(double now, double idle)
{
	double		soonest = INFINITY;

	for (int h = 0; h < LIMIT_BUCKETS; h++)
	{
		Bucket	  **p = &limit_table[h];

		while (*p)
		{
			Bucket	   *b = *p;
			double		full_at = limit_full_at(b);

			if (now - full_at >= idle)
			{
				*p = b->next;
				free(b->client);
				free(b);
				limit_count--;
				continue;
			}
			soonest = fmin(soonest, full_at);
			p = &b->next;
		}
	}
	limit_last_sweep = now;
	return soonest;
}

bool
GwLimitTake(const char *client, int n, int *retry_after, bool *table_full)
{
	unsigned	h = limit_hash(client);
	double		now = GwNow();
	Bucket	   *b;
	bool		ok;

	*table_full = false;
	pthread_mutex_lock(&limit_lock);
	if (now - limit_last_sweep >= LIMIT_SWEEP_S)
		limit_sweep(now, LIMIT_IDLE_S);
	for (b = limit_table[h]; b; b = b->next)
		if (strcmp(b->client, client) == 0)
			break;
	if (b == NULL && limit_count >= gw_config->rate_clients_max)
	{
		/*
		 * Room only by freeing full buckets, never one that is not; and one
		 * walk of the table until the soonest of them is full, not one per
		 * refused request.
		 */
		if (now >= limit_room_at)
			limit_room_at = limit_sweep(now, 0);
		if (limit_count >= gw_config->rate_clients_max)
		{
			double		wait = ceil(limit_room_at - now);

			pthread_mutex_unlock(&limit_lock);
			*table_full = true;
			*retry_after = wait < 1 ? 1 : wait < INT_MAX ? (int) wait : INT_MAX;
			return false;
		}
	}
	if (b == NULL)
	{
		limit_count++;
		b = calloc(1, sizeof(*b));
		b->client = strdup(client);
		limit_lookup(b);
		b->tokens = b->burst;
		b->stamp = now;
		b->generation = limit_generation;
		b->next = limit_table[h];
		limit_table[h] = b;
	}
	else if (b->generation != limit_generation)
	{
		limit_lookup(b);
		b->generation = limit_generation;
	}
	b->tokens = fmin(b->burst, b->tokens + (now - b->stamp) * b->rate);
	b->stamp = now;
	ok = b->tokens >= n;
	if (ok)
		b->tokens -= n;
	else if (n > b->burst)
		*retry_after = -1;		/* never: the request is larger than the burst */
	else
	{
		/* a very slow bucket: whole seconds, clamped rather than wrapped */
		double		wait = ceil((n - b->tokens) / b->rate);

		*retry_after = wait < INT_MAX ? (int) wait : INT_MAX;
	}
	pthread_mutex_unlock(&limit_lock);
	if (!ok && *retry_after == 0)
		*retry_after = 1;
	return ok;
}

/* After a reload: every bucket re-reads its rate at its next take. */
void
GwLimitReconfigure(void)
{
	pthread_mutex_lock(&limit_lock);
	limit_generation++;
	limit_room_at = 0;			/* new rates: when buckets fill changes */
	pthread_mutex_unlock(&limit_lock);
}

int
GwLimitBuckets(void)
{
	double		now = GwNow();
	int			n;

	pthread_mutex_lock(&limit_lock);
	if (now - limit_last_sweep >= LIMIT_SWEEP_S)
		limit_sweep(now, LIMIT_IDLE_S);
	n = limit_count;
	pthread_mutex_unlock(&limit_lock);
	return n;
}
