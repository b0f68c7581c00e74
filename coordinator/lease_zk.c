/*-------------------------------------------------------------------------
 *
 * lease_zk.c
 *		The lease client's requests to ZooKeeper, each waited for, and the
 *		pump that drives the single-threaded ZooKeeper C client.
 *
 * The client is ZooKeeper's single-threaded C library: no thread of its own,
 * every callback runs inside zookeeper_process() on the caller's thread,
 * driven by zookeeper_interest() -> env->wait() -> zookeeper_process()
 * (lease_zk_pump).  Callbacks only copy results into the LeaseClient.
 * Requests are issued one at a time and waited for in that loop
 * (zk_call_wait); env->wait is the only place the client blocks, so the
 * host's stop request (a latch, a signal, postmaster death) is honoured
 * throughout.
 *
 * Only answers to writes and syncs move the lease deadline, to the send
 * time of the request + timeout/2 (see lease_protocol.c for why).
 *
 * Plain C: no PostgreSQL header, and no global state but one thread-local
 * pointer, lease_zk_current, which names the client whose ZooKeeper call is
 * running on this thread: the library's log callback is given no context,
 * and the completions are given the request's sequence number, so both
 * find their client through it.
 *
 * What this file must not do: block anywhere but env->wait, or let a late
 * answer to a request given up on pass for the answer to a newer one.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "lease_client.h"

/* The lease is trusted for this fraction of the granted session timeout
 * after the send time of the last answered write or sync. */
#define LEASE_TRUST_NUM			1
#define LEASE_TRUST_DEN			2

/* The client whose ZooKeeper call runs on this thread (for zk_log). */
static __thread LeaseClient *lease_zk_current = NULL;

/* ----------
 * Callbacks: they run inside zookeeper_process() on this thread and only
 * copy what they are given.
 * ----------
 */

static void
zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	LeaseClient *c = (LeaseClient *) ctx;

	if (type != ZOO_SESSION_EVENT || c == NULL)
		return;
	if (state == ZOO_CONNECTED_STATE)
		c->connected = true;
	else
	{
		c->connected = false;
		if (state == ZOO_EXPIRED_SESSION_STATE)
			c->expired = true;
		else if (state == ZOO_AUTH_FAILED_STATE)
			c->auth_failed = true;
	}
}

static void
zk_log(const char *message)
{
	LeaseClient *c = lease_zk_current;

	if (c != NULL)
		snprintf(c->client_log, sizeof(c->client_log), "%s", message);
}

/*
 * The data pointer handed to the client is the request's sequence number;
 * callbacks run only inside a ZooKeeper call on this thread, made for
 * lease_zk_current.  A result is for the request in flight, not one given
 * up on: a late answer to an abandoned request is dropped.
 */
static LeaseCall *
zk_mine(const void *data)
{
	LeaseClient *c = lease_zk_current;

	if (c == NULL || c->call.done || (uint64_t) (uintptr_t) data != c->call.seq)
		return NULL;
	return &c->call;
}

static void
zk_stat_done(int rc, const struct Stat *stat, const void *data)
{
	LeaseCall  *r = zk_mine(data);

	if (r == NULL)
		return;
	r->rc = rc;
	r->has_stat = (rc == ZOK && stat != NULL);
	if (r->has_stat)
		r->stat = *stat;
	r->done = true;
}

static void
zk_data_done(int rc, const char *value, int value_len, const struct Stat *stat,
			 const void *data)
{
	LeaseCall  *r = zk_mine(data);

	if (r == NULL)
		return;
	r->rc = rc;
	r->has_stat = (rc == ZOK && stat != NULL);
	if (r->has_stat)
		r->stat = *stat;
	r->value_len = 0;
	if (rc == ZOK && value != NULL && value_len > 0)
	{
		r->value_len = value_len < (int) sizeof(r->value) - 1 ?
			value_len : (int) sizeof(r->value) - 1;
		memcpy(r->value, value, r->value_len);
	}
	r->value[r->value_len] = '\0';
	r->done = true;
}

static void
zk_string_done(int rc, const char *value, const void *data)
{
	LeaseCall  *r = zk_mine(data);

	if (r == NULL)
		return;
	r->rc = rc;
	r->has_stat = false;
	r->done = true;
}

static void
zk_void_done(int rc, const void *data)
{
	(void) rc;
	(void) data;
}

static void
zk_children_done(int rc, const struct String_vector *strings, const void *data)
{
	LeaseCall  *r = zk_mine(data);
	int			i;

	if (r == NULL)
		return;
	r->rc = rc;
	r->nchildren = 0;
	if (rc == ZOK && strings != NULL)
		for (i = 0; i < strings->count; i++)
		{
			char	   *end;
			long		id = strtol(strings->data[i], &end, 10);

			if (*end == '\0' && id >= 0 && id < LEASE_MAX_IDS &&
				r->nchildren < LEASE_MAX_IDS)
				r->children[r->nchildren++] = (int32_t) id;
		}
	r->done = true;
}

/* ----------
 * The event loop
 * ----------
 */

/*
 * lease_zk_pump: wait up to max_ms for ZooKeeper's socket or a timeout (in
 * env->wait), then let the client process what happened (this is where
 * callbacks run).  Sets c->stopping when the host asks to stop.
 */
void
lease_zk_pump(LeaseClient *c, long max_ms)
{
	int			fd = -1;
	int			interest = 0;
	struct timeval tv = {0, 0};
	int			events = 0;
	int			ready = 0;
	long		wait_ms = max_ms;

	lease_zk_current = c;
	if (c->zk != NULL && zookeeper_interest(c->zk, &fd, &interest, &tv) == ZOK)
	{
		long		client_ms = tv.tv_sec * 1000 + tv.tv_usec / 1000;

		/*
		 * Without a socket the client only waits to try the next server; it
		 * would retry a refused one every few ms, so pace it.
		 */
		if (client_ms < wait_ms)
			wait_ms = client_ms;
		if (fd < 0 && wait_ms < (max_ms < 100 ? max_ms : 100))
			wait_ms = max_ms < 100 ? max_ms : 100;
		if (fd >= 0 && (interest & ZOOKEEPER_READ))
			events |= LEASE_WAIT_READ;
		if (fd >= 0 && (interest & ZOOKEEPER_WRITE))
			events |= LEASE_WAIT_WRITE;
	}
	lease_zk_current = NULL;
	if (events == 0)
		fd = -1;

	if (c->env.wait(c->env.arg, fd, events, wait_ms > 0 ? wait_ms : 0, &ready))
		c->stopping = true;

	if (c->zk != NULL)
	{
		int			zevents = 0;

		if (ready & LEASE_WAIT_READ)
			zevents |= ZOOKEEPER_READ;
		if (ready & LEASE_WAIT_WRITE)
			zevents |= ZOOKEEPER_WRITE;
		lease_zk_current = c;
		(void) zookeeper_process(c->zk, zevents);
		lease_zk_current = NULL;
	}
}

/* Start a request: returns the data pointer to hand to the client. */
static const void *
zk_call_begin(LeaseClient *c)
{
	memset(&c->call, 0, sizeof(c->call));
	c->call.seq = ++c->seq;
	return (const void *) (uintptr_t) c->call.seq;
}

/* An answer from the server itself (not a client-side failure). */
static bool
zk_answered(int rc)
{
	return rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT &&
		rc != ZCLOSING && rc != ZSESSIONEXPIRED && rc != ZINVALIDSTATE &&
		rc != ZAUTHFAILED && rc != ZSYSTEMERROR && rc != ZMARSHALLINGERROR;
}

/*
 * Wait for the request started at sent (env->monotonic_ns) with submit
 * result rc.  Returns its result code.  When the request had to reach the
 * leader (a write or a sync: via_leader), an answer moves last_ack, and so
 * the lease deadline, to the send time; an answer to a read proves nothing
 * about the leader and moves nothing.
 */
static int
zk_call_wait(LeaseClient *c, int rc, uint64_t sent, bool via_leader)
{
	if (rc != ZOK)
	{
		c->call.done = true;	/* nothing will come back */
		return rc;
	}
	while (!c->call.done)
	{
		if ((c->stopping && c->env.monotonic_ns(c->env.arg) >= c->grace_until) ||
			c->expired || c->auth_failed)
		{
			c->call.done = true;	/* a late answer is ignored */
			return c->expired ? ZSESSIONEXPIRED : ZCLOSING;
		}
		lease_zk_pump(c, 1000);
	}
	if (via_leader && zk_answered(c->call.rc))
	{
		uint64_t	timeout_ns = (uint64_t) zoo_recv_timeout(c->zk) * 1000000;

		if (sent > c->last_ack)
			c->last_ack = sent;
		c->env.extend(c->env.arg, c->last_ack,
					  c->installed ?
					  c->last_ack + timeout_ns * LEASE_TRUST_NUM / LEASE_TRUST_DEN : 0);
	}
	return c->call.rc;
}

/* ----------
 * Requests, each waited for
 * ----------
 */

static struct ACL_vector *
zk_acl(LeaseClient *c)
{
	if (c->auth[0] == '\0')
		return &ZOO_OPEN_ACL_UNSAFE;
	/* all rights for the authenticated creator, read for everyone */
	c->acl[0].perms = ZOO_PERM_ALL;
	c->acl[0].id.scheme = "auth";
	c->acl[0].id.id = "";
	c->acl[1].perms = ZOO_PERM_READ;
	c->acl[1].id.scheme = "world";
	c->acl[1].id.id = "anyone";
	c->acl_vector.count = 2;
	c->acl_vector.data = c->acl;
	return &c->acl_vector;
}

/* The send time of a request (env->monotonic_ns). */
static uint64_t
zk_now(LeaseClient *c)
{
	return c->env.monotonic_ns(c->env.arg);
}

int
lease_zk_create(LeaseClient *c, const char *path, const char *value, int flags)
{
	uint64_t	sent = zk_now(c);
	const void *d = zk_call_begin(c);

	return zk_call_wait(c, zoo_acreate(c->zk, path, value, value ? (int) strlen(value) : -1,
									   zk_acl(c), flags, zk_string_done, d), sent, true);
}

int
lease_zk_get(LeaseClient *c, const char *path)
{
	uint64_t	sent = zk_now(c);
	const void *d = zk_call_begin(c);

	return zk_call_wait(c, zoo_aget(c->zk, path, 0, zk_data_done, d), sent, false);
}

int
lease_zk_set(LeaseClient *c, const char *path, const char *value, int version)
{
	uint64_t	sent = zk_now(c);
	const void *d = zk_call_begin(c);

	return zk_call_wait(c, zoo_aset(c->zk, path, value, (int) strlen(value), version,
									zk_stat_done, d), sent, true);
}

int
lease_zk_exists(LeaseClient *c, const char *path)
{
	uint64_t	sent = zk_now(c);
	const void *d = zk_call_begin(c);

	return zk_call_wait(c, zoo_aexists(c->zk, path, 0, zk_stat_done, d), sent, false);
}

int
lease_zk_children(LeaseClient *c, const char *path)
{
	uint64_t	sent = zk_now(c);
	const void *d = zk_call_begin(c);

	return zk_call_wait(c, zoo_aget_children(c->zk, path, 0, zk_children_done, d), sent, false);
}

/* sync: the server we talk to catches up with the leader, through it. */
int
lease_zk_sync(LeaseClient *c, const char *path)
{
	uint64_t	sent = zk_now(c);
	const void *d = zk_call_begin(c);

	return zk_call_wait(c, zoo_async(c->zk, path, zk_string_done, d), sent, true);
}

/* ----------
 * The handle
 * ----------
 */

/*
 * lease_zk_open: start a client for connect (numeric addresses), reattaching
 * saved when not NULL, with c->auth as credentials.  Returns NULL (errno
 * set, or 0 for an invalid connect string) when it cannot start.
 */
zhandle_t *
lease_zk_open(LeaseClient *c, const char *connect, const clientid_t *saved)
{
	zhandle_t  *zh;

	c->connected = c->expired = c->auth_failed = false;
	lease_zk_current = c;
	zh = zookeeper_init2(connect, zk_watcher, c->cfg.session_timeout_ms,
						 saved, c, 0, zk_log);
	lease_zk_current = NULL;
	if (zh == NULL)
		return NULL;
	/* The addresses are numeric: re-resolving them while connected is moot. */
	(void) zoo_set_servers_resolution_delay(zh, -1);
	if (c->auth[0] != '\0')
		(void) zoo_add_auth(zh, "digest", c->auth, (int) strlen(c->auth), zk_void_done, NULL);
	return zh;
}

/* lease_zk_close: close the handle, which ends the session. */
void
lease_zk_close(LeaseClient *c)
{
	if (c->zk != NULL)
	{
		lease_zk_current = c;
		zookeeper_close(c->zk);
		lease_zk_current = NULL;
	}
	c->zk = NULL;
	c->connected = c->expired = c->auth_failed = false;
}

int64_t
lease_zk_session_id(const LeaseClient *c)
{
	return c->zk ? zoo_client_id(c->zk)->client_id : 0;
}

int
lease_zk_timeout(const LeaseClient *c)
{
	return c->zk ? zoo_recv_timeout(c->zk) : 0;
}
