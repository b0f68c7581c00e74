/*-------------------------------------------------------------------------
 *
 * lease_protocol.c
 *		The node id lease in ZooKeeper: a plain-C object driven by its host
 *		(the coordinator worker in PostgreSQL, a test, a simulator).
 *
 * When guid.node_id is -1 and guid.zookeeper is set, the coordinator leases
 * a node id for this cluster:
 *
 *	/guid/<namespace>/nodes/<id>	ephemeral; its data names the holder (a
 *									random instance id made at each start,
 *									the system identifier, host, port, pid,
 *									start time: LeaseConfig.holder).  Two
 *									live sessions can never hold the same
 *									one.
 *	/guid/<namespace>/hwm/<id>		persistent; the highest millisecond any
 *									holder of the id may have issued.
 *
 * Leasing: try the id this cluster held last (kept in guid.reservation,
 * LeaseConfig.previous_id), then the lowest free one (after a lost race for
 * it, a random free one: lease_hold.c).  Read hwm/<id>; the
 * generator starts above it, so an id that moves to a server whose clock is
 * behind repeats nothing.  The reservation is extended in hwm/<id> with a
 * versioned set (a compare-and-set) before IDs up to it are issued, 5/6 of
 * the session timeout ahead of need (so it outlasts the fencing deadline:
 * a ZooKeeper outage shorter than the deadline costs no failed call; see
 * lease_hold.c), and recorded in guid.reservation (env->write_reservation)
 * so that the cluster's own IDs keep growing even if it later leases
 * another id.  A clean shutdown seals the generator and writes the mark
 * back down to the last millisecond issued before it closes the session,
 * so that the id's next holder starts at its clock.
 *
 * Fencing: sessions are expired by the ensemble's leader, and only after a
 * full session timeout in which it heard nothing of the session.  The server
 * we are connected to may be a follower cut off from the leader (for up to
 * syncLimit ticks before it notices), and it answers reads all the same: a
 * read proves nothing about the leader.  A write or a sync does: the follower
 * must forward it to the leader and can answer only after the leader
 * processed it, with our session still open, after we sent it.  (A leader
 * itself cut off from its quorum may go on answering syncs until it notices,
 * within syncLimit ticks: the deadline is a bound under ZooKeeper's timing
 * assumptions, and uniqueness rests on the versioned mark.)  So only
 * answers to writes and syncs move the deadline, and the lease is trusted
 * until
 *
 *		send time of the last answered write or sync + timeout * 1/2
 *
 * (env->install and env->extend; lease_zk.c).  Half leaves the other half
 * for the follower relaying the session's activity to the leader only every
 * half tick, a server clock running faster than ours, tick rounding of the
 * server's expiry, and a backend that checked the deadline just before it
 * passed.  The heartbeat, every timeout/10, is a sync followed by a read of
 * our lease znode (the read is then at least as fresh as the leader was at
 * the sync): it keeps the deadline at least 2/5 of the timeout ahead while
 * the leader answers (so a ZooKeeper outage of up to 2/5 of the timeout, 12 s
 * at the default 30 s, never fences), and notices a lease znode that is
 * gone.
 * Backends check the deadline on every call and refuse to issue past it
 * (mode "fenced").  Time is env->monotonic_ns, CLOCK_BOOTTIME in
 * PostgreSQL (GuidMonotonicNs), which, unlike CLOCK_MONOTONIC, keeps running
 * while the machine is suspended, as the server's clock does.
 *
 * What the deadline cannot prove is that no other holder exists: ZooKeeper
 * gives no bound that holds through every clock and network fault.  IDs stay
 * unique because of the high-water mark: a new holder of an id starts above
 * hwm/<id>, and a holder writes it, with a version check, before it issues
 * anything up to it.  A write that may or may not have been applied (the
 * connection dropped before its answer) leaves our cached version stale: the
 * next write then fails with ZBADVERSION, and the mark is read back.  If it
 * holds a value we wrote, one version on, while our session still holds the
 * lease znode, the lost write was applied and we continue with its version;
 * anything else means someone else wrote it, and the lease is given up.
 *
 * Local reservation: the high-water mark is mirrored to guid.reservation, and
 * the generator's reservation is raised only once both are durable, as in
 * standalone mode; a failed file write keeps the old reservation (backends
 * then fail rather than issue above what the data directory records).
 *
 * Connection loss is not session loss: a create in flight may have been
 * applied, so a lease znode that already exists is ours when its
 * ephemeralOwner is our session.  Session expiry is terminal: fence, close,
 * open a new session, lease again (perhaps another id) above that id's
 * high-water mark.  After a PostgreSQL crash-restart the same postmaster
 * starts a new coordinator, which reattaches the still-live session saved in
 * guid.zksession (only for the same owner, LeaseConfig.session_owner: the
 * postmaster pid and start time, so a copied data directory never reuses
 * it) and keeps its id.
 *
 * Host names: the client resolves every host of its connect string with a
 * blocking getaddrinfo() in zookeeper_init2() and again in every
 * zookeeper_interest() call, which a slow DNS server would stall for many
 * seconds, deaf to SIGTERM and postmaster death (a fast shutdown waits for
 * this worker, and while it is stuck nothing renews the lease).  So the
 * names are resolved here with getaddrinfo_a() (extension/core/resolve.c)
 * while the host keeps waiting in env->wait, and the client is handed
 * numeric addresses only.  Names are resolved again whenever a new session
 * is opened.
 *
 * Errors are reported in one place (lease_error): env->set_error, and
 * env->log at LEASE_LOG_WARNING once until the message changes.
 *
 * What this file must not do: include a PostgreSQL header, keep state
 * outside its LeaseClient, block anywhere but env->wait, or install a lease
 * before the znode, the high-water mark, the reservation file and the
 * deadline are all in place.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease_client.h"

#define Min(a, b)				((a) < (b) ? (a) : (b))

/* A heartbeat request every timeout / HEARTBEAT_DIVISOR. */
#define HEARTBEAT_DIVISOR		10

/* Pause between attempts after an error. */
#define RETRY_MS				1000

/* ----------
 * Reporting: one place
 * ----------
 */

/* lease_log: format and pass a message to env->log. */
void
lease_log(LeaseClient *c, LeaseLogLevel level, const char *fmt,...)
{
	char		msg[1024];
	va_list		ap;

	if (c->env.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->env.log(c->env.arg, level, msg);
}

static void
lease_set_error(LeaseClient *c, const char *msg)
{
	if (c->env.set_error)
		c->env.set_error(c->env.arg, msg);
}

/* lease_error: record msg as the current problem and log it once (until
 * it changes). */
void
lease_error(LeaseClient *c, const char *msg)
{
	char		shown[LEASE_MSG_LEN];

	/* cut to what the host keeps, so that a repeat compares equal */
	snprintf(shown, sizeof(shown), "%s", msg);
	lease_set_error(c, shown);
	if (strcmp(shown, c->last_logged_error) != 0)
	{
		memcpy(c->last_logged_error, shown, sizeof(shown));
		lease_log(c, LEASE_LOG_WARNING, "%s", shown);
	}
}

/* lease_clear_error: the problem is over. */
void
lease_clear_error(LeaseClient *c)
{
	lease_set_error(c, "");
	c->last_logged_error[0] = '\0';
}

static void
lease_set_state(LeaseClient *c, const char *state)
{
	if (c->env.status)
		c->env.status(c->env.arg, state, lease_zk_session_id(c), lease_zk_timeout(c));
}

static uint64_t
lease_now(LeaseClient *c)
{
	return c->env.monotonic_ns(c->env.arg);
}

/* ----------
 * Session
 * ----------
 */

/* Save the session so that a host restarted by the same owner after a crash
 * can reattach it. */
static void
lease_save_session(LeaseClient *c)
{
	const clientid_t *id = zoo_client_id(c->zk);
	char		buf[512];
	int			len;
	int			i;

	if (c->env.save_session == NULL || c->session_owner[0] == '\0')
		return;
	len = snprintf(buf, sizeof(buf), "%s\nsession %llx\npasswd ",
				   c->session_owner, (unsigned long long) id->client_id);
	for (i = 0; i < (int) sizeof(id->passwd); i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%02x", (unsigned char) id->passwd[i]);
	len += snprintf(buf + len, sizeof(buf) - len, "\n");
	/* once installed: the id, whose mark then is no floor for a reattach,
	 * and the floor it was installed at, which still is */
	if (c->installed_id >= 0)
		snprintf(buf + len, sizeof(buf) - len, "installed %d %lld\n", (int) c->installed_id,
				 (long long) c->installed_floor);
	c->env.save_session(c->env.arg, buf);
}

/* Read the saved session if this owner saved it (and the id it had
 * installed into *installed, -1 if none). */
static bool
lease_read_session(LeaseClient *c, clientid_t *id, int32_t *installed, int64_t *floor_ms)
{
	char		buf[512];
	size_t		olen = strlen(c->session_owner);
	unsigned long long session;
	char		passwd[2 * sizeof(id->passwd) + 1];
	const char *line;
	int			inst;
	long long	fl;
	int			i;

	*installed = -1;

	if (c->env.load_session == NULL || olen == 0 ||
		!c->env.load_session(c->env.arg, buf, sizeof(buf)))
		return false;
	buf[sizeof(buf) - 1] = '\0';
	if (strncmp(buf, c->session_owner, olen) != 0 || buf[olen] != '\n' ||
		sscanf(buf + olen + 1, "session %llx\npasswd %32s\n", &session, passwd) != 2 ||
		strlen(passwd) != 2 * sizeof(id->passwd))
		return false;
	memset(id, 0, sizeof(*id));
	id->client_id = (int64_t) session;
	for (i = 0; i < (int) sizeof(id->passwd); i++)
	{
		unsigned int b;

		if (sscanf(passwd + 2 * i, "%2x", &b) != 1)
			return false;
		id->passwd[i] = (char) b;
	}
	line = strstr(buf + olen + 1, "\ninstalled ");
	if (line && sscanf(line, "\ninstalled %d %lld\n", &inst, &fl) == 2 && inst >= 0 &&
		inst < LEASE_MAX_IDS && fl >= 0)
	{
		*installed = inst;
		*floor_ms = fl;
	}
	return true;
}

static void
lease_remove_session(LeaseClient *c)
{
	if (c->env.remove_session)
		c->env.remove_session(c->env.arg);
}

/* Drop the handle: fence first, then close (which ends the session). */
static void
lease_close(LeaseClient *c)
{
	c->installed = false;
	c->installed_id = -1;
	c->env.fence(c->env.arg);
	c->leased_id = -1;
	c->hwm_version = -1;
	lease_zk_close(c);
	lease_set_state(c, "closed");
}

/*
 * Open a new session.  Returns 1 when the client is started, 0 while host
 * names are being resolved (call again), -1 after an error (reported).
 */
static int
lease_open(LeaseClient *c)
{
	clientid_t	saved;
	bool		reattach;
	char		err[LEASE_MSG_LEN];
	char		msg[LEASE_MSG_LEN + 300];
	char		connect[4096];
	int			rc;

	if (c->lookup == NULL)
	{
		/*
		 * Credentials are read again for every session, so a rotated file
		 * takes effect at the next one.  Without them the client would
		 * create znodes anybody may change: it does not connect at all.
		 */
		c->auth[0] = '\0';
		err[0] = '\0';
		if (c->env.credentials &&
			!c->env.credentials(c->env.arg, c->auth, sizeof(c->auth), err, sizeof(err)))
		{
			c->auth[0] = '\0';
			lease_error(c, err);
			lease_set_state(c, "invalid");
			return -1;
		}
		c->lookup = GuidResolveStart(c->zookeeper, err, sizeof(err));
		if (c->lookup == NULL)
		{
			snprintf(msg, sizeof(msg),
					 "could not start a ZooKeeper client for guid.zookeeper \"%s\": %s",
					 c->zookeeper, err);
			lease_error(c, msg);
			lease_set_state(c, "invalid");
			return -1;
		}
		c->lookup_started = lease_now(c);
		lease_set_state(c, "resolving");
	}
	rc = GuidResolvePoll(c->lookup, connect, sizeof(connect), err, sizeof(err));
	if (rc == 0)
	{
		uint64_t	waited_ms = (lease_now(c) - c->lookup_started) / 1000000;

		/* Still waiting for DNS: say so once it takes long, and keep waiting. */
		if (waited_ms > (uint64_t) c->cfg.session_timeout_ms)
		{
			snprintf(msg, sizeof(msg),
					 "resolving the hosts of guid.zookeeper \"%s\" has taken %llu ms so far",
					 c->zookeeper, (unsigned long long) waited_ms);
			lease_error(c, msg);
		}
		return 0;
	}
	(void) GuidResolveFree(c->lookup);
	c->lookup = NULL;
	if (rc < 0)
	{
		snprintf(msg, sizeof(msg), "could not resolve ZooKeeper hosts of guid.zookeeper \"%s\": %s",
				 c->zookeeper, err);
		lease_error(c, msg);
		lease_set_state(c, "unresolved");
		return -1;
	}

	reattach = lease_read_session(c, &saved, &c->reattached_id, &c->reattached_floor);
	lease_remove_session(c);
	errno = 0;
	c->zk = lease_zk_open(c, connect, reattach ? &saved : NULL);
	if (c->zk == NULL)
	{
		snprintf(msg, sizeof(msg),
				 "could not start a ZooKeeper client for guid.zookeeper \"%s\": %s",
				 c->zookeeper, errno ? strerror(errno) : "invalid connect string");
		lease_error(c, msg);
		lease_set_state(c, "invalid");
		return -1;
	}
	c->connect_started = lease_now(c);
	lease_set_state(c, reattach ? "reattaching" : "connecting");
	if (reattach)
		lease_log(c, LEASE_LOG_INFO, "reattaching ZooKeeper session %llx after a crash-restart",
				  (unsigned long long) saved.client_id);
	return 1;
}

/* ----------
 * The client
 * ----------
 */

/*
 * LeaseClientStep: one round of the loop.  Returns false once the host
 * asked to stop (through env->wait).
 */
bool
LeaseClientStep(LeaseClient *c)
{
	char		err[LEASE_MSG_LEN];
	char		msg[LEASE_MSG_LEN + 300];

	if (c->stopping)
		return false;
	err[0] = '\0';
	if (c->zk == NULL)
	{
		int			rc = lease_open(c);

		if (rc <= 0)
		{
			lease_zk_pump(c, rc == 0 ? 50 : RETRY_MS);
			return !c->stopping;
		}
	}
	if (c->expired || c->auth_failed)
	{
		bool		auth_failed = c->auth_failed;

		lease_error(c, c->expired ? "ZooKeeper session expired; leasing again" :
					"ZooKeeper rejected the credentials in guid.zookeeper_auth");
		lease_close(c);
		if (auth_failed)
			lease_zk_pump(c, RETRY_MS);
		return !c->stopping;
	}
	if (!c->connected)
	{
		uint64_t	waited = lease_now(c) - c->connect_started;

		if (waited > (uint64_t) c->cfg.session_timeout_ms * 1000000 && c->leased_id < 0)
		{
			const char *why = strstr(c->client_log, "errno=");

			snprintf(msg, sizeof(msg), "no ZooKeeper server answers at guid.zookeeper \"%s\"%s%s",
					 c->zookeeper, why ? "; last client error: " : "", why ? why : "");
			lease_error(c, msg);
		}
		lease_set_state(c, c->leased_id >= 0 ? "disconnected" : "connecting");
		lease_zk_pump(c, 100);
		return !c->stopping;
	}
	if (c->leased_id < 0)
	{
		lease_save_session(c);
		lease_set_state(c, "connected");
		if (!lease_acquire(c, err, sizeof(err)))
		{
			/*
			 * Close the session too: an ephemeral created before the
			 * failure would otherwise hold an id nobody uses.
			 */
			lease_error(c, err);
			lease_close(c);
			lease_zk_pump(c, RETRY_MS);
		}
		else
		{
			lease_save_session(c);	/* now with the installed id */
			lease_set_state(c, "connected");
		}
		return !c->stopping;
	}
	lease_set_state(c, "connected");
	if (!lease_maintain(c, err, sizeof(err)))
	{
		lease_error(c, err);
		lease_close(c);
		return !c->stopping;
	}
	lease_zk_pump(c, Min(100, lease_zk_timeout(c) / HEARTBEAT_DIVISOR));
	return !c->stopping;
}

/*
 * LeaseClientRun: the host's main loop in leased mode.  Returns once the
 * host asked to stop, with the generator fenced and the session closed
 * (which frees the node id at once).
 */
void
LeaseClientRun(LeaseClient *c)
{
	while (LeaseClientStep(c))
		;
	LeaseClientShutdown(c);
}

/*
 * LeaseClientShutdown: fence, write the mark back down to the last
 * millisecond issued (lease_write_back), close the session, forget the
 * saved one.
 */
void
LeaseClientShutdown(LeaseClient *c)
{
	c->installed = false;
	c->env.fence(c->env.arg);
	lease_write_back(c);
	lease_close(c);
	lease_remove_session(c);
}

/* Copy a string option; "" for NULL. */
static char *
lease_strdup(const char *s)
{
	return strdup(s ? s : "");
}

/*
 * LeaseClientCreate: a client for cfg and env (both copied).  Returns NULL
 * when out of memory or when cfg is unusable (namespace_ too long).
 */
LeaseClient *
LeaseClientCreate(const LeaseConfig *cfg, const LeaseEnv *env)
{
	LeaseClient *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cfg = *cfg;
	c->env = *env;
	c->zookeeper = lease_strdup(cfg->zookeeper);
	c->namespace_ = lease_strdup(cfg->namespace_);
	c->holder = lease_strdup(cfg->holder);
	c->session_owner = lease_strdup(cfg->session_owner);
	if (c->zookeeper == NULL || c->namespace_ == NULL || c->holder == NULL ||
		c->session_owner == NULL ||
		snprintf(c->base_path, sizeof(c->base_path), "/guid/%s", c->namespace_) >=
		(int) sizeof(c->base_path))
	{
		LeaseClientFree(c);
		return NULL;
	}
	c->cfg.zookeeper = c->zookeeper;
	c->cfg.namespace_ = c->namespace_;
	c->cfg.holder = c->holder;
	c->cfg.session_owner = c->session_owner;
	if (c->cfg.nids <= 0 || c->cfg.nids > LEASE_MAX_IDS)
		c->cfg.nids = LEASE_MAX_IDS;
	if (c->cfg.reserve_window_ms < 0)
		c->cfg.reserve_window_ms = 0;
	c->previous_id = cfg->previous_id;
	c->rand_state = (unsigned int) (env->monotonic_ns(env->arg) ^ (uintptr_t) c);
	c->installed_id = -1;
	c->reattached_id = -1;
	c->installed_floor = 0;
	c->reattached_floor = 0;
	c->leased_id = -1;
	c->hwm_version = -1;
	return c;
}

/* LeaseClientFree: close the session if it is open, and free the client. */
void
LeaseClientFree(LeaseClient *c)
{
	if (c == NULL)
		return;
	lease_zk_close(c);
	(void) GuidResolveFree(c->lookup);
	free(c->zookeeper);
	free(c->namespace_);
	free(c->holder);
	free(c->session_owner);
	free(c);
}

/* LeaseClientId: the id held, or -1. */
int32_t
LeaseClientId(const LeaseClient *c)
{
	return c->leased_id;
}

/* LeaseClientSession: the current session's id and password. */
bool
LeaseClientSession(const LeaseClient *c, int64_t *id, char passwd[16])
{
	const clientid_t *cid;

	if (c->zk == NULL)
		return false;
	cid = zoo_client_id(c->zk);
	*id = cid->client_id;
	memcpy(passwd, cid->passwd, 16);
	return true;
}
