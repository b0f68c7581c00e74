/*-------------------------------------------------------------------------
 *
 * lease_hold.c
 *		Taking a node id and keeping its high-water mark ahead: the part of
 *		the lease protocol that decides what is written to ZooKeeper.
 *
 * The rules are lease_protocol.c's (read its header first): a lease znode
 * that exists is ours only when its ephemeralOwner is our session; hwm/<id>
 * is written with a version check before anything up to it is issued, then
 * the reservation file, then the generator is raised; a version we do not
 * know is a lost write of ours only when the mark is one version on, holds
 * a value we sent, and our session still holds the lease znode.
 *
 * Plain C: no PostgreSQL header; all state in the LeaseClient.
 *
 * What this file must not do: install or raise a reservation that is not
 * durable both in hwm/<id> and locally, or overwrite a mark someone else
 * wrote.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease_client.h"

/* A heartbeat request every timeout / HEARTBEAT_DIVISOR.  The lease is
 * trusted for LEASE_TRUST of the granted session timeout after the send
 * time of the last answered write or sync (see lease_zk.c). */
#define HEARTBEAT_DIVISOR		10
#define LEASE_TRUST_NUM			1
#define LEASE_TRUST_DEN			2

/*
 * The mark's window, from the granted session timeout T: written 5/6 T ahead
 * of need, extended once less than 2/3 T is left.  So it always covers the
 * fencing horizon (1/2 T, above) with 1/6 T to spare for the write itself:
 * a ZooKeeper outage shorter than the deadline never runs the generator
 * into its mark.  And it stays 1/6 T below what an expiry takes (the leader
 * expires a session at least T after it last heard of it, and that was no
 * earlier than our last write): after an expiry the new holder's clock has
 * passed the old mark unless the clocks differ by more than 1/6 T.
 */
#define LEASE_WINDOW_NUM		5
#define LEASE_WINDOW_DEN		6
#define LEASE_LOW_NUM			2
#define LEASE_LOW_DEN			3

/* A clean shutdown waits at most this long to write the mark back down. */
#define LEASE_WRITE_BACK_MS		1000
#define Max(a, b)				((a) > (b) ? (a) : (b))
#define Min(a, b)				((a) < (b) ? (a) : (b))

static int64_t
hold_session(LeaseClient *c)
{
	return lease_zk_session_id(c);
}

static bool
hold_ensure_path(LeaseClient *c, const char *path, char *err, size_t errlen)
{
	int			rc = lease_zk_create(c, path, "", ZOO_PERSISTENT);

	if (rc == ZOK || rc == ZNODEEXISTS)
		return true;
	snprintf(err, errlen, "could not create ZooKeeper node \"%s\": %s", path, zerror(rc));
	return false;
}

/*
 * Try to hold nodes/<id>.  Returns 1 when we hold it, 0 when another
 * session does, -1 on error (err set).
 */
static int
hold_try_id(LeaseClient *c, int32_t id, char *err, size_t errlen)
{
	char		path[300];
	int			rc;

	snprintf(path, sizeof(path), "%s/nodes/%d", c->base_path, (int) id);
	for (;;)
	{
		rc = lease_zk_create(c, path, c->holder, ZOO_EPHEMERAL);
		if (rc == ZOK)
			return 1;
		if (rc != ZNODEEXISTS && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT)
			break;

		/*
		 * It exists, or our create may or may not have been applied before
		 * the connection dropped: it is ours iff its owner is our session.
		 */
		rc = lease_zk_get(c, path);
		if (rc == ZOK)
			return c->call.stat.ephemeralOwner == hold_session(c) ? 1 : 0;
		if (rc == ZNONODE)
			continue;			/* gone meanwhile: try again */
		if (rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT)
			break;
		if (!c->connected && (c->expired || c->stopping))
			break;
		lease_zk_pump(c, 100);
	}
	snprintf(err, errlen, "could not lease ZooKeeper node \"%s\": %s", path, zerror(rc));
	return -1;
}

/* Read hwm/<id> into hwm_value/hwm_version, creating it at 0. */
static bool
hold_read_hwm(LeaseClient *c, int32_t id, char *err, size_t errlen)
{
	char		path[300];
	int			rc;

	snprintf(path, sizeof(path), "%s/hwm/%d", c->base_path, (int) id);
	for (;;)
	{
		char	   *end;
		long long	v;

		rc = lease_zk_get(c, path);
		if (rc == ZNONODE)
		{
			rc = lease_zk_create(c, path, "0", ZOO_PERSISTENT);
			if (rc == ZOK || rc == ZNODEEXISTS)
				continue;
			break;
		}
		if (rc != ZOK)
			break;
		v = strtoll(c->call.value, &end, 10);
		if (c->call.value_len == 0 || *end != '\0' || v < 0 || v > LEASE_MAX_MS)
		{
			snprintf(err, errlen, "ZooKeeper node \"%s\" does not hold a millisecond: \"%s\"",
					 path, c->call.value);
			return false;
		}
		c->hwm_value = v;
		c->hwm_version = c->call.stat.version;
		return true;
	}
	snprintf(err, errlen, "could not read ZooKeeper node \"%s\": %s", path, zerror(rc));
	return false;
}

/*
 * hwm/<id> is not at the version we know.  If that is because a write of
 * ours whose answer was lost was applied -- the mark is one version on and
 * holds one of those values -- and our session still holds nodes/<id> (so
 * nobody else can have written it), adopt that version.  Returns 1 when
 * adopted, 0 when someone else changed the mark, -1 on error (err set).
 */
static int
hold_recover_hwm(LeaseClient *c, const char *path, char *err, size_t errlen)
{
	char		node[300];
	char	   *end;
	long long	v;
	int32_t		version;
	int			rc;
	int			i;

	if (c->hwm_nunsure == 0)
		return 0;
	rc = lease_zk_get(c, path);
	if (rc != ZOK)
	{
		snprintf(err, errlen, "could not read ZooKeeper node \"%s\": %s", path, zerror(rc));
		return -1;
	}
	v = strtoll(c->call.value, &end, 10);
	version = c->call.stat.version;
	if (c->call.value_len == 0 || *end != '\0' || version != c->hwm_version + 1)
		return 0;
	for (i = 0; i < c->hwm_nunsure; i++)
		if (c->hwm_unsure[i] == v)
			break;
	if (i == c->hwm_nunsure)
		return 0;

	snprintf(node, sizeof(node), "%s/nodes/%d", c->base_path, (int) c->leased_id);
	rc = lease_zk_exists(c, node);
	if (rc == ZNONODE || (rc == ZOK && c->call.stat.ephemeralOwner != hold_session(c)))
		return 0;
	if (rc != ZOK)
	{
		snprintf(err, errlen, "could not read ZooKeeper node \"%s\": %s", node, zerror(rc));
		return -1;
	}
	lease_log(c, LEASE_LOG_INFO,
			  "high-water mark %lld in ZooKeeper node \"%s\" was written although the answer was lost; continuing at version %d",
			  v, path, (int) version);
	c->hwm_version = version;
	c->hwm_value = v;
	c->hwm_nunsure = 0;
	return 1;
}

/*
 * Write target into hwm/<id> if it still has the version we know (or had a
 * lost write of ours applied, see hold_recover_hwm).  Returns 1 on success,
 * 0 when someone else changed it, -1 on error (err set; the lease is kept).
 */
static int
hold_write_hwm(LeaseClient *c, int64_t target, char *err, size_t errlen)
{
	char		path[300];
	char		value[32];
	int			rc;

	snprintf(path, sizeof(path), "%s/hwm/%d", c->base_path, (int) c->leased_id);
	snprintf(value, sizeof(value), "%lld", (long long) target);
	for (;;)
	{
		rc = lease_zk_set(c, path, value, c->hwm_version);
		if (rc == ZOK)
		{
			c->hwm_version = c->call.stat.version;
			c->hwm_value = target;
			c->hwm_nunsure = 0;
			if (c->env.written)
				c->env.written(c->env.arg, target);
			return 1;
		}
		if (rc != ZBADVERSION)
			break;
		rc = hold_recover_hwm(c, path, err, errlen);
		if (rc != 1)
			return rc;
	}

	/*
	 * Without an answer the write may or may not have been applied.  Beyond
	 * LEASE_HWM_UNSURE_MAX such writes an applied one is taken for someone
	 * else's (the lease is given up: safe, merely slower).
	 */
	if ((rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT) &&
		c->hwm_nunsure < LEASE_HWM_UNSURE_MAX)
		c->hwm_unsure[c->hwm_nunsure++] = target;
	snprintf(err, errlen, "could not extend ZooKeeper node \"%s\": %s", path, zerror(rc));
	return -1;
}

/*
 * Write the local reservation: this host's IDs stay above reserved_ms even
 * if it leases another id later.  The first failure is reported loudly by
 * the host; repeats quietly.  Returns true on success.
 */
static bool
hold_write_local(LeaseClient *c, int32_t id, int64_t reserved_ms)
{
	if (c->env.write_reservation(c->env.arg, id, reserved_ms, c->local_write_failing))
	{
		if (c->local_write_failing)
		{
			c->local_write_failing = false;
			lease_clear_error(c);
		}
		return true;
	}
	c->local_write_failing = true;
	return false;
}

/* How far ahead of need the mark is written (see LEASE_WINDOW_NUM). */
int
lease_window_ms(const LeaseClient *c)
{
	if (c->cfg.reserve_window_ms > 0)
		return c->cfg.reserve_window_ms;
	return (int) ((int64_t) lease_zk_timeout(c) * LEASE_WINDOW_NUM / LEASE_WINDOW_DEN);
}

/* The mark is extended once less than this is left. */
static int
hold_low_ms(const LeaseClient *c)
{
	if (c->cfg.reserve_window_ms > 0)
		return c->cfg.reserve_window_ms / 2;
	return (int) ((int64_t) lease_zk_timeout(c) * LEASE_LOW_NUM / LEASE_LOW_DEN);
}

/* The millisecond a reservation made now should cover. */
static int64_t
hold_target(LeaseClient *c)
{
	if (c->env.reserve_target)
		return c->env.reserve_target(c->env.arg, lease_window_ms(c));
	return Min(c->env.wall_ms(c->env.arg) + lease_window_ms(c), LEASE_MAX_MS);
}

/* Should the reservation be extended now? */
static bool
hold_due(LeaseClient *c)
{
	if (c->env.reserve_due)
		return c->env.reserve_due(c->env.arg, c->reserved, hold_low_ms(c));
	return c->reserved - c->env.wall_ms(c->env.arg) < hold_low_ms(c);
}

/*
 * List nodes/ into taken[] (ids already marked stay marked).  Returns false
 * with err set on failure.
 */
static bool
hold_list_taken(LeaseClient *c, bool *taken, char *err, size_t errlen)
{
	char		path[300];
	int			rc;
	int			i;

	snprintf(path, sizeof(path), "%s/nodes", c->base_path);
	rc = lease_zk_children(c, path);
	if (rc != ZOK)
	{
		snprintf(err, errlen, "could not list ZooKeeper node \"%s\": %s", path, zerror(rc));
		return false;
	}
	for (i = 0; i < c->call.nchildren; i++)
		taken[c->call.children[i]] = true;
	return true;
}

/*
 * Hold a free id other than previous: the lowest one in taken[] first.  A
 * holder that loses the race for it (another session created it meanwhile:
 * a fleet starting at once) lists nodes/ again and tries a free one at
 * random, never again one it lost: walking up id by id, every starting
 * holder would queue behind all the others for each id in turn, N^2/2
 * failed creates for N holders, where random choices settle in a few
 * rounds.  Returns the id, -1 when none is free, -2 on error (err set).
 */
static int32_t
hold_take_free(LeaseClient *c, bool *taken, int32_t previous, char *err, size_t errlen)
{
	int32_t		free_ids[LEASE_MAX_IDS];
	int			nfree;
	int			lost = 0;
	int			i;
	int			rc;

	for (;;)
	{
		int32_t		id;

		nfree = 0;
		for (i = 0; i < c->cfg.nids; i++)
			if (!taken[i] && i != previous)
				free_ids[nfree++] = i;
		if (nfree == 0)
			return -1;
		id = lost == 0 ? free_ids[0] : free_ids[rand_r(&c->rand_state) % nfree];
		rc = hold_try_id(c, id, err, errlen);
		if (rc < 0)
			return -2;
		if (rc == 1)
			return id;
		lost++;
		taken[id] = true;
		lease_log(c, LEASE_LOG_DEBUG, "node id %d is held by another session (lost race %d)",
				  (int) id, lost);
		if (!hold_list_taken(c, taken, err, errlen))
			return -2;
	}
}

/*
 * lease_acquire: lease a node id, load its high-water mark, reserve ahead,
 * and install the lease.  Returns false with err set on failure.
 */
bool
lease_acquire(LeaseClient *c, char *err, size_t errlen)
{
	char		path[300];
	bool		taken[LEASE_MAX_IDS];
	int32_t		previous = c->previous_id;
	int32_t		id = -1;
	bool		own = false;
	int64_t		czxid = 0;
	int			rc;
	int64_t		target;
	int64_t		floor_ms;
	uint64_t	timeout_ns;

	if (!hold_ensure_path(c, "/guid", err, errlen))
		return false;
	if (!hold_ensure_path(c, c->base_path, err, errlen))
		return false;
	snprintf(path, sizeof(path), "%s/nodes", c->base_path);
	if (!hold_ensure_path(c, path, err, errlen))
		return false;
	snprintf(path, sizeof(path), "%s/hwm", c->base_path);
	if (!hold_ensure_path(c, path, err, errlen))
		return false;

	memset(taken, 0, sizeof(taken));
	if (!hold_list_taken(c, taken, err, errlen))
		return false;

	/* The id this host held last, even when listed (it may be ours). */
	if (previous >= 0 && previous < c->cfg.nids)
	{
		/*
		 * A reattached session counts as still holding the id its crashed
		 * incarnation installed only if the lease znode is still its own
		 * before we create anything: once deleted (an operator freeing the
		 * id) someone else may have held the id, issued above the floor
		 * that incarnation was given, and handed it back.  Unsure: no.
		 */
		if (previous == c->reattached_id)
		{
			snprintf(path, sizeof(path), "%s/nodes/%d", c->base_path, (int) previous);
			own = lease_zk_exists(c, path) == ZOK &&
				c->call.stat.ephemeralOwner == hold_session(c);
			czxid = c->call.stat.czxid;
		}
		rc = hold_try_id(c, previous, err, errlen);
		if (rc < 0)
			return false;
		if (rc == 1)
			id = previous;
		/* ... and the same znode after: not deleted and created again since */
		if (own && rc == 1)
			own = lease_zk_exists(c, path) == ZOK && c->call.stat.czxid == czxid;
	}

	/*
	 * A reattached session whose previous incarnation had installed this
	 * very id (lease_protocol.c saves that, with the floor it was given) and
	 * has held it ever since (checked above): all it issued is below this
	 * host's durable reservation, so the mark it wrote ahead is no floor.
	 * The floor it was given is: the id's previous holder issued up to it,
	 * and the host may have recorded only about a second ahead of its clock.
	 */
	own = own && id == previous;
	c->reattached_id = -1;
	if (id < 0)
		id = hold_take_free(c, taken, previous, err, errlen);
	if (id == -2)
		return false;
	if (id < 0)
	{
		snprintf(err, errlen, "all %d node ids of namespace \"%s\" are leased",
				 c->cfg.nids, c->namespace_);
		return false;
	}
	c->leased_id = id;
	c->hwm_nunsure = 0;

	if (!hold_read_hwm(c, id, err, errlen))
	{
		c->leased_id = -1;
		return false;
	}

	/* Reserve ahead before anything is issued. */
	floor_ms = own ? c->reattached_floor : c->hwm_value;
	target = own ? Max(c->hwm_value, hold_target(c)) :
		Max(Min(c->hwm_value + lease_window_ms(c), LEASE_MAX_MS), hold_target(c));
	rc = hold_write_hwm(c, target, err, errlen);
	if (rc != 1)
	{
		if (rc == 0)
			snprintf(err, errlen, "ZooKeeper node \"%s/hwm/%d\" changed while it was being leased",
					 c->base_path, (int) id);
		c->leased_id = -1;
		return false;
	}
	if (!hold_write_local(c, id, target))
	{
		snprintf(err, errlen, "could not write the reservation file guid.reservation; see the server log");
		c->leased_id = -1;
		return false;
	}

	timeout_ns = (uint64_t) lease_zk_timeout(c) * 1000000;
	c->env.install(c->env.arg, id, floor_ms, target,
				   c->last_ack + timeout_ns * LEASE_TRUST_NUM / LEASE_TRUST_DEN);
	c->installed = true;
	c->installed_id = id;
	c->installed_floor = floor_ms;
	c->previous_id = id;
	c->reserved = target;
	c->last_heartbeat = c->env.monotonic_ns(c->env.arg);
	lease_clear_error(c);
	lease_log(c, LEASE_LOG_INFO,
			  "leased node id %d in namespace \"%s\" (ZooKeeper session %llx, timeout %d ms)",
			  (int) id, c->namespace_, (unsigned long long) hold_session(c), lease_zk_timeout(c));
	return true;
}

/*
 * lease_maintain: while leased, heartbeat when due, and extend the
 * high-water mark when the reservation runs short.  Returns false (err set)
 * when the lease is lost.
 */
bool
lease_maintain(LeaseClient *c, char *err, size_t errlen)
{
	uint64_t	now = c->env.monotonic_ns(c->env.arg);
	uint64_t	timeout_ns = (uint64_t) lease_zk_timeout(c) * 1000000;
	char		path[300];
	int			rc;

	/*
	 * The mark first, when it is due: its write goes through the leader and
	 * moves the deadline as a sync does.  Were the sync sent first, a
	 * ZooKeeper that answers only briefly between stalls (each thaw an
	 * election, which loses the connection the write was waiting on) would
	 * keep moving the deadline by syncs while the mark, never written,
	 * fell behind the clock: the generator would run into its mark long
	 * before the deadline.  So the deadline only moves past what a due
	 * mark covers together with the mark.
	 */
	if (hold_due(c))
	{
		int64_t		target = hold_target(c);

		/* hwm/<id> first (unless it already covers target), then the file */
		if (c->hwm_value < target)
		{
			rc = hold_write_hwm(c, target, err, errlen);
			if (rc == 0)
			{
				snprintf(err, errlen, "ZooKeeper node \"%s/hwm/%d\" was changed by someone else",
						 c->base_path, (int) c->leased_id);
				return false;
			}
			if (rc < 0)
			{
				lease_error(c, err);	/* keep the lease; retry next round */
				return true;
			}
		}
		if (!hold_write_local(c, c->leased_id, c->hwm_value))
		{
			/* nothing is issued above what the data directory records */
			lease_error(c, "could not write the reservation file guid.reservation; see the server log");
			return true;
		}
		c->env.raise(c->env.arg, c->hwm_value);
		if (c->hwm_value > c->reserved)
			c->reserved = c->hwm_value;
	}

	if (now - c->last_heartbeat >= timeout_ns / HEARTBEAT_DIVISOR)
	{
		snprintf(path, sizeof(path), "%s/nodes/%d", c->base_path, (int) c->leased_id);
		c->last_heartbeat = now;

		/*
		 * The sync's answer moves the deadline (it went through the leader);
		 * the read after it is at least as fresh as the leader was then.
		 */
		rc = lease_zk_sync(c, path);
		if (rc == ZOK)
			rc = lease_zk_exists(c, path);
		if (rc == ZOK && c->call.stat.ephemeralOwner != hold_session(c))
			rc = ZNONODE;
		if (rc == ZNONODE)
		{
			snprintf(err, errlen, "ZooKeeper node \"%s\" is no longer held by this session", path);
			return false;
		}
	}
	return true;
}

/*
 * lease_write_back: (clean shutdown, after env->fence) write the mark back
 * down to the last millisecond issued, so that the next holder of the id
 * starts at its clock rather than up to a window ahead.  env->seal first
 * makes sure nothing more can be issued, even by a caller that passed its
 * lease check before the fence.  Waits at most LEASE_WRITE_BACK_MS; on any
 * failure the mark simply stays where it was (safe: merely ahead).
 */
void
lease_write_back(LeaseClient *c)
{
	char		err[LEASE_MSG_LEN];
	int64_t		issued;

	if (c->env.seal == NULL || c->zk == NULL || c->leased_id < 0 || !c->connected ||
		c->expired || c->hwm_version < 0)
		return;
	issued = c->env.seal(c->env.arg);
	if (issued < 0 || issued >= c->hwm_value)
		return;
	c->grace_until = c->env.monotonic_ns(c->env.arg) + (uint64_t) LEASE_WRITE_BACK_MS * 1000000;
	if (hold_write_hwm(c, issued, err, sizeof(err)) == 1)
		lease_log(c, LEASE_LOG_INFO,
				  "wrote the high-water mark of node id %d back down to %lld, the last millisecond issued",
				  (int) c->leased_id, (long long) issued);
	else
		lease_log(c, LEASE_LOG_DEBUG, "high-water mark not written back: %s", err);
	c->grace_until = 0;
}
