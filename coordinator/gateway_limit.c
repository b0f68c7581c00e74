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
 * burst.  Buckets are never freed: the table grows with distinct clients.
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define LIMIT_BUCKETS	4096

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

bool
GwLimitTake(const char *client, int n, int *retry_after)
{
	unsigned	h = limit_hash(client);
	double		now = GwNow();
	Bucket	   *b;
	bool		ok;

	pthread_mutex_lock(&limit_lock);
	for (b = limit_table[h]; b; b = b->next)
		if (strcmp(b->client, client) == 0)
			break;
	if (b == NULL)
	{
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
	pthread_mutex_unlock(&limit_lock);
}
