/*-------------------------------------------------------------------------
 *
 * zk_lease.c
 *		The node id lease in ZooKeeper, run by the coordinator worker.
 *
 * When guid.node_id is -1 and guid.zookeeper is set, the coordinator leases
 * a node id for this cluster:
 *
 *	/guid/<namespace>/nodes/<id>	ephemeral; its data names the holder (a
 *									random instance id made at each start,
 *									the system identifier, host, port, pid,
 *									start time).  Two live sessions can
 *									never hold the same one.
 *	/guid/<namespace>/hwm/<id>		persistent; the highest millisecond any
 *									holder of the id may have issued.
 *
 * Leasing: try the id this cluster held last (kept in guid.reservation),
 * then the lowest free one.  Read hwm/<id>; the generator starts above it,
 * so an id that moves to a server whose clock is behind repeats nothing.
 * The reservation is extended in hwm/<id> with a versioned set (a
 * compare-and-set) before IDs up to it are issued, about a second ahead of
 * need, and mirrored to guid.reservation so that the cluster's own IDs keep
 * growing even if it later leases another id.
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
 * (lease_deadline).  Half leaves the other half for the follower relaying
 * the session's activity to the leader only every half tick, a server clock
 * running faster than ours, tick rounding of the server's expiry, and a
 * backend that checked the deadline just before it passed.  The heartbeat,
 * every timeout/6, is a sync followed by a read of our lease znode (the read
 * is then at least as fresh as the leader was at the sync): it keeps the
 * deadline at least a third of the timeout ahead while the leader answers,
 * and notices a lease znode that is gone.  Backends check the deadline on
 * every call and refuse to issue past it (mode "fenced").  Time is counted on
 * CLOCK_BOOTTIME (GuidMonotonicNs), which, unlike CLOCK_MONOTONIC, keeps
 * running while the machine is suspended, as the server's clock does.
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
 * guid.zksession (only for the same postmaster pid and start time, so a
 * copied data directory never reuses it) and keeps its id.
 *
 * The client is ZooKeeper's single-threaded C library: no thread of its own,
 * every callback runs inside zookeeper_process() on this process's only
 * thread, driven by zookeeper_interest() -> WaitLatchOrSocket() ->
 * zookeeper_process().  Callbacks only copy results; errors become ereport
 * in one place (lease_error).  Requests are issued one at a time and waited
 * for in that loop (zk_call_wait), with the latch, interrupts and
 * postmaster death honoured throughout.
 *
 * Host names: the client resolves every host of its connect string with a
 * blocking getaddrinfo() in zookeeper_init2() and again in every
 * zookeeper_interest() call, which a slow DNS server would stall for many
 * seconds, deaf to SIGTERM and postmaster death (a fast shutdown waits for
 * this worker, and while it is stuck nothing renews the lease).  So the
 * worker resolves the names itself with getaddrinfo_a() (glibc's resolver
 * thread, all signals blocked, no callback) while it keeps waiting on its
 * latch, and hands the client numeric addresses only.  Names are resolved
 * again whenever a new session is opened.
 *
 * What this file must not do: run outside the coordinator, let a callback
 * call into PostgreSQL, or publish a node id before the znode, the
 * high-water mark and the deadline are all in place.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guid_core.h"
#include "guid_generator.h"
#include "guid_lease.h"
#include "guid_worker.h"

#define ZK_SESSION_FILE			"guid.zksession"

/* The lease is trusted for this fraction of the granted session timeout
 * after the send time of the last answered request. */
#define LEASE_TRUST_NUM			1
#define LEASE_TRUST_DEN			2

/* A heartbeat request every timeout / HEARTBEAT_DIVISOR. */
#define HEARTBEAT_DIVISOR		6

/* Pause between attempts after an error. */
#define RETRY_MS				1000

/* Hosts in guid.zookeeper, at most. */
#define ZK_MAX_HOSTS			64

/* High-water mark writes whose answer was lost that are remembered. */
#define HWM_UNSURE_MAX			8

/* Settings */
static int	guid_zookeeper_session_timeout = 30000;
static char *guid_zookeeper_auth = NULL;
static char *guid_zookeeper_auth_file = NULL;

/* The credentials this worker uses (from the file or the inline setting). */
static char *zk_auth = NULL;

/* The one request in flight, filled by the completion callbacks. */
typedef struct ZkCall
{
	uint64		seq;			/* which request this result belongs to */
	bool		done;
	int			rc;
	bool		has_stat;
	struct Stat stat;
	int			value_len;
	char		value[512];
	int			nchildren;
	int32		children[GUID_MAX_NODE + 1];	/* numeric child names */
} ZkCall;

static zhandle_t *zk = NULL;
static ZkCall zk_result;
static uint64 zk_seq = 0;

/* The client library's last log message (its own log goes nowhere else). */
static char zk_client_log[256];

/* Session events, set by the watcher. */
static bool zk_connected = false;
static bool zk_expired = false;
static bool zk_auth_failed = false;

static char instance_id[33];
static char base_path[256];
static int32 leased_id = -1;
static int32 hwm_version = -1;
static int64 hwm_value = 0;
static uint64 last_heartbeat = 0;
static uint64 connect_started = 0;
static char last_logged_error[GUID_ERROR_LEN];

/*
 * Values written to hwm/<id> with the expected version hwm_version whose
 * answer was lost (connection loss): at most one of them can have been
 * applied, and if one was, the mark is now at hwm_version + 1.
 */
static int64 hwm_unsure[HWM_UNSURE_MAX];
static int	hwm_nunsure = 0;

/* The last write of guid.reservation failed (it is logged once). */
static bool local_write_failing = false;

/*
 * The name lookup of guid.zookeeper's hosts, run by getaddrinfo_a().  The
 * resolver thread writes into these (malloc'ed) until gai_error() says it is
 * done, so they are freed only then, even when the worker stopped waiting.
 */
typedef struct ZkLookup
{
	bool		active;			/* requests are out */
	uint64		started;		/* GuidMonotonicNs() when sent */
	int			nreqs;
	struct gaicb *reqs[ZK_MAX_HOSTS];
} ZkLookup;

static ZkLookup zk_lookup;

static GuidStatusArea *lease_status_area = NULL;

static void
lease_status_init(void *status)
{
	LeaseStatus *ls = (LeaseStatus *) status;

	strlcpy(ls->state, GuidLeaseConfigured() ? "connecting" : "", sizeof(ls->state));
}

/*
 * LeaseInit: define the ZooKeeper settings.
 */
void
LeaseInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	lease_status_area = GuidStatusRegister(LEASE_STATUS_AREA, sizeof(LeaseStatus),
										   lease_status_init);
	DefineCustomIntVariable("guid.zookeeper_session_timeout",
							gettext_noop("ZooKeeper session timeout requested; the server may grant another."),
							NULL,
							&guid_zookeeper_session_timeout,
							30000, 1000, 600000,
							PGC_POSTMASTER, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("guid.zookeeper_auth",
							   gettext_noop("ZooKeeper digest credentials user:password; znodes are then created readable by all, writable by this user only."),
							   NULL,
							   &guid_zookeeper_auth,
							   "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("guid.zookeeper_auth_file",
							   gettext_noop("File holding the ZooKeeper digest credentials user:password; only the server's OS user may read it."),
							   gettext_noop("Preferred to guid.zookeeper_auth, whose value roles with pg_read_all_settings can read."),
							   &guid_zookeeper_auth_file,
							   "",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	if (guid_zookeeper_auth[0] != '\0')
		ereport(WARNING,
				(errmsg("guid.zookeeper_auth holds a password that every role with pg_read_all_settings can read"),
				 errhint("Put the credentials in a file only the server's OS user can read, and name it in guid.zookeeper_auth_file; guid.zookeeper_auth goes away in a later release.")));
}

/* ----------
 * Error reporting: one place
 * ----------
 */

/* Record msg for guid.status and log it once (until it changes). */
static void
lease_error(const char *msg)
{
	GuidSetLastError(msg);
	if (strcmp(msg, last_logged_error) != 0)
	{
		strlcpy(last_logged_error, msg, sizeof(last_logged_error));
		ereport(WARNING,
				(errmsg("guid: %s", msg),
				 errhint("guid.zookeeper is \"%s\", guid.namespace is \"%s\".",
						 guid_zookeeper, GuidNamespace())));
	}
}

static void
lease_set_state(const char *state)
{
	LeaseStatus ls;

	strlcpy(ls.state, state, sizeof(ls.state));
	ls.session_id = zk ? zoo_client_id(zk)->client_id : 0;
	ls.timeout_ms = zk ? zoo_recv_timeout(zk) : 0;
	GuidStatusWrite(lease_status_area, &ls);
}

/* ----------
 * Callbacks: they run inside zookeeper_process() on this thread and only
 * copy what they are given.
 * ----------
 */

static void
zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	if (type != ZOO_SESSION_EVENT)
		return;
	if (state == ZOO_CONNECTED_STATE)
		zk_connected = true;
	else
	{
		zk_connected = false;
		if (state == ZOO_EXPIRED_SESSION_STATE)
			zk_expired = true;
		else if (state == ZOO_AUTH_FAILED_STATE)
			zk_auth_failed = true;
	}
}

static void
zk_log(const char *message)
{
	strlcpy(zk_client_log, message, sizeof(zk_client_log));
}

/* The result is for the request in flight, not one given up on. */
static bool
zk_mine(const void *data)
{
	return (uint64) (uintptr_t) data == zk_result.seq && !zk_result.done;
}

static void
zk_stat_done(int rc, const struct Stat *stat, const void *data)
{
	if (!zk_mine(data))
		return;
	zk_result.rc = rc;
	zk_result.has_stat = (rc == ZOK && stat != NULL);
	if (zk_result.has_stat)
		zk_result.stat = *stat;
	zk_result.done = true;
}

static void
zk_data_done(int rc, const char *value, int value_len, const struct Stat *stat,
			 const void *data)
{
	if (!zk_mine(data))
		return;
	zk_result.rc = rc;
	zk_result.has_stat = (rc == ZOK && stat != NULL);
	if (zk_result.has_stat)
		zk_result.stat = *stat;
	zk_result.value_len = 0;
	if (rc == ZOK && value != NULL && value_len > 0)
	{
		zk_result.value_len = Min(value_len, (int) sizeof(zk_result.value) - 1);
		memcpy(zk_result.value, value, zk_result.value_len);
	}
	zk_result.value[zk_result.value_len] = '\0';
	zk_result.done = true;
}

static void
zk_string_done(int rc, const char *value, const void *data)
{
	if (!zk_mine(data))
		return;
	zk_result.rc = rc;
	zk_result.has_stat = false;
	zk_result.done = true;
}

static void
zk_void_done(int rc, const void *data)
{
	zk_string_done(rc, NULL, data);
}

static void
zk_children_done(int rc, const struct String_vector *strings, const void *data)
{
	int			i;

	if (!zk_mine(data))
		return;
	zk_result.rc = rc;
	zk_result.nchildren = 0;
	if (rc == ZOK && strings != NULL)
		for (i = 0; i < strings->count; i++)
		{
			char	   *end;
			long		id = strtol(strings->data[i], &end, 10);

			if (*end == '\0' && id >= 0 && id <= GUID_MAX_NODE &&
				zk_result.nchildren <= GUID_MAX_NODE)
				zk_result.children[zk_result.nchildren++] = (int32) id;
		}
	zk_result.done = true;
}

/* ----------
 * The event loop
 * ----------
 */

/*
 * Wait up to max_ms for ZooKeeper's socket, the latch or a timeout, then let
 * the client process what happened (this is where callbacks run).
 */
static void
zk_pump(long max_ms)
{
	int			fd = -1;
	int			interest = 0;
	struct timeval tv = {0, 0};
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
	int			rc;
	int			zevents = 0;
	long		wait_ms = max_ms;

	if (zk != NULL && zookeeper_interest(zk, &fd, &interest, &tv) == ZOK)
	{
		/*
		 * Without a socket the client only waits to try the next server; it
		 * would retry a refused one every few ms, so pace it.
		 */
		wait_ms = Min(wait_ms, tv.tv_sec * 1000 + tv.tv_usec / 1000);
		if (fd < 0)
			wait_ms = Max(wait_ms, Min(max_ms, 100));
		if (fd >= 0 && (interest & ZOOKEEPER_READ))
			events |= WL_SOCKET_READABLE;
		if (fd >= 0 && (interest & ZOOKEEPER_WRITE))
			events |= WL_SOCKET_WRITEABLE;
	}
	if (!(events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
		fd = PGINVALID_SOCKET;

	rc = WaitLatchOrSocket(MyLatch, events, fd, Max(wait_ms, 0), PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	GuidSampleClock();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}

	if (rc & WL_SOCKET_READABLE)
		zevents |= ZOOKEEPER_READ;
	if (rc & WL_SOCKET_WRITEABLE)
		zevents |= ZOOKEEPER_WRITE;
	if (zk != NULL)
		(void) zookeeper_process(zk, zevents);
}

/* Start a request: the data pointer handed to the client identifies it. */
static const void *
zk_call_begin(void)
{
	memset(&zk_result, 0, sizeof(zk_result));
	zk_result.seq = ++zk_seq;
	return (const void *) (uintptr_t) zk_result.seq;
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
 * Wait for the request started at sent (GuidMonotonicNs) with submit result
 * rc.  Returns its result code.  When the request had to reach the leader (a
 * write or a sync: via_leader), an answer moves last_ack, and so the lease
 * deadline, to the send time; an answer to a read proves nothing about the
 * leader and moves nothing.
 */
static int
zk_call_wait(int rc, uint64 sent, bool via_leader)
{
	if (rc != ZOK)
	{
		zk_result.done = true;	/* nothing will come back */
		return rc;
	}
	while (!zk_result.done)
	{
		if (ShutdownRequestPending || zk_expired || zk_auth_failed)
		{
			zk_result.done = true;	/* a late answer is ignored */
			return zk_expired ? ZSESSIONEXPIRED : ZCLOSING;
		}
		zk_pump(1000);
	}
	if (via_leader && zk_answered(zk_result.rc))
	{
		uint64		last_ack = GuidNoteAck(sent);

		if (leased_id >= 0)
		{
			uint64		timeout_ns = (uint64) zoo_recv_timeout(zk) * 1000000;

			GuidRenewLease(last_ack + timeout_ns * LEASE_TRUST_NUM / LEASE_TRUST_DEN);
		}
	}
	return zk_result.rc;
}

/* ----------
 * Requests, each waited for
 * ----------
 */

static struct ACL_vector *
zk_acl(void)
{
	static struct ACL acl[2];
	static struct ACL_vector vec;

	if (zk_auth == NULL || zk_auth[0] == '\0')
		return &ZOO_OPEN_ACL_UNSAFE;
	/* all rights for the authenticated creator, read for everyone */
	acl[0].perms = ZOO_PERM_ALL;
	acl[0].id.scheme = "auth";
	acl[0].id.id = "";
	acl[1].perms = ZOO_PERM_READ;
	acl[1].id.scheme = "world";
	acl[1].id.id = "anyone";
	vec.count = 2;
	vec.data = acl;
	return &vec;
}

static int
zk_create(const char *path, const char *value, int flags)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_acreate(zk, path, value, value ? (int) strlen(value) : -1,
									zk_acl(), flags, zk_string_done, d), sent, true);
}

static int
zk_get(const char *path)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aget(zk, path, 0, zk_data_done, d), sent, false);
}

static int
zk_set(const char *path, const char *value, int version)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aset(zk, path, value, strlen(value), version,
								 zk_stat_done, d), sent, true);
}

static int
zk_exists(const char *path)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aexists(zk, path, 0, zk_stat_done, d), sent, false);
}

static int
zk_children(const char *path)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aget_children(zk, path, 0, zk_children_done, d), sent, false);
}

/* sync: the server we talk to catches up with the leader, through it. */
static int
zk_sync(const char *path)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_async(zk, path, zk_string_done, d), sent, true);
}

/* ----------
 * Session
 * ----------
 */

/* Save the session so that a coordinator restarted by this same postmaster
 * after a crash can reattach it. */
static void
lease_save_session(void)
{
	const clientid_t *id = zoo_client_id(zk);
	char		buf[256];
	int			len;
	int			i;

	len = snprintf(buf, sizeof(buf), "postmaster %d %lld\nsession %llx\npasswd ",
				   PostmasterPid, (long long) PgStartTime,
				   (unsigned long long) id->client_id);
	for (i = 0; i < (int) sizeof(id->passwd); i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%02x", (unsigned char) id->passwd[i]);
	snprintf(buf + len, sizeof(buf) - len, "\n");
	(void) GuidWriteFileDurably(ZK_SESSION_FILE, buf, LOG);
}

/* Read the saved session if this postmaster saved it. */
static bool
lease_read_session(clientid_t *id)
{
	FILE	   *f = AllocateFile(ZK_SESSION_FILE, "r");
	int			pid;
	long long	start;
	unsigned long long session;
	char		passwd[2 * sizeof(id->passwd) + 1];
	bool		ok = false;
	int			i;

	if (f == NULL)
		return false;
	if (fscanf(f, "postmaster %d %lld\nsession %llx\npasswd %32s\n",
			   &pid, &start, &session, passwd) == 4 &&
		pid == PostmasterPid && start == (long long) PgStartTime &&
		strlen(passwd) == 2 * sizeof(id->passwd))
	{
		memset(id, 0, sizeof(*id));
		id->client_id = (int64_t) session;
		for (i = 0; i < (int) sizeof(id->passwd); i++)
		{
			unsigned int b;

			if (sscanf(passwd + 2 * i, "%2x", &b) != 1)
				break;
			id->passwd[i] = (char) b;
		}
		ok = (i == (int) sizeof(id->passwd));
	}
	FreeFile(f);
	return ok;
}

/* Drop the handle: fence first, then close (which ends the session). */
static void
lease_close(void)
{
	GuidFence(GUID_MODE_CONNECTING);
	leased_id = -1;
	hwm_version = -1;
	if (zk != NULL)
		zookeeper_close(zk);
	zk = NULL;
	zk_connected = zk_expired = zk_auth_failed = false;
	lease_set_state("closed");
}

/* Free a finished lookup. */
static void
zk_lookup_free(void)
{
	int			i;

	for (i = 0; i < zk_lookup.nreqs; i++)
	{
		struct gaicb *r = zk_lookup.reqs[i];

		if (r->ar_result)
			freeaddrinfo(r->ar_result);
		free((void *) r->ar_name);
		free((void *) r->ar_service);
		free((void *) r->ar_request);
		free(r);
	}
	zk_lookup.nreqs = 0;
	zk_lookup.active = false;
}

/*
 * Split guid.zookeeper into its host:port entries and its chroot, as the
 * client does (the port follows the last ':').  Starts a lookup of the
 * entries whose host is not a numeric address.  Returns false with err set
 * when the string is malformed or the lookup cannot start.
 */
static bool
zk_lookup_start(char *err, size_t errlen)
{
	char	   *hosts = pstrdup(guid_zookeeper);
	char	   *slash = strchr(hosts, '/');
	char	   *save = NULL;
	char	   *entry;
	sigset_t	all;
	sigset_t	old;
	int			rc;

	if (slash)
		*slash = '\0';
	memset(&zk_lookup, 0, sizeof(zk_lookup));
	for (entry = strtok_r(hosts, ",", &save); entry; entry = strtok_r(NULL, ",", &save))
	{
		char	   *colon = strrchr(entry, ':');
		char	   *end;
		long		port;
		struct gaicb *r;
		struct addrinfo *hints;

		while (isspace((unsigned char) *entry))
			entry++;
		port = colon ? strtol(colon + 1, &end, 10) : 0;
		if (colon == NULL || colon[1] == '\0' || *end != '\0' || port <= 0 || port > 65535)
		{
			snprintf(err, errlen,
					 "could not start a ZooKeeper client for guid.zookeeper \"%s\": invalid port in \"%s\"",
					 guid_zookeeper, entry);
			zk_lookup_free();
			pfree(hosts);
			return false;
		}
		if (zk_lookup.nreqs == ZK_MAX_HOSTS)
		{
			snprintf(err, errlen,
					 "could not start a ZooKeeper client for guid.zookeeper \"%s\": more than %d hosts",
					 guid_zookeeper, ZK_MAX_HOSTS);
			zk_lookup_free();
			pfree(hosts);
			return false;
		}
		*colon = '\0';
		r = calloc(1, sizeof(*r));
		hints = calloc(1, sizeof(*hints));
		if (r == NULL || hints == NULL)
		{
			free(r);
			free(hints);
			zk_lookup_free();
			pfree(hosts);
			snprintf(err, errlen, "out of memory");
			return false;
		}
		hints->ai_family = AF_UNSPEC;
		hints->ai_socktype = SOCK_STREAM;
		hints->ai_protocol = IPPROTO_TCP;
		r->ar_request = hints;
		r->ar_name = strdup(entry);
		r->ar_service = strdup(colon + 1);
		zk_lookup.reqs[zk_lookup.nreqs++] = r;
		if (r->ar_name == NULL || r->ar_service == NULL)
		{
			zk_lookup_free();
			pfree(hosts);
			snprintf(err, errlen, "out of memory");
			return false;
		}
	}
	pfree(hosts);
	if (zk_lookup.nreqs == 0)
	{
		snprintf(err, errlen,
				 "could not start a ZooKeeper client for guid.zookeeper \"%s\": no host",
				 guid_zookeeper);
		return false;
	}

	/*
	 * The resolver thread must never run a PostgreSQL signal handler: it
	 * inherits the mask of the thread that starts it.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = getaddrinfo_a(GAI_NOWAIT, zk_lookup.reqs, zk_lookup.nreqs, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		snprintf(err, errlen, "could not resolve the hosts of guid.zookeeper \"%s\": %s",
				 guid_zookeeper, gai_strerror(rc));
		zk_lookup_free();
		return false;
	}
	zk_lookup.active = true;
	zk_lookup.started = GuidMonotonicNs();
	return true;
}

/*
 * Collect a finished lookup into a connect string of numeric addresses (and
 * the chroot).  Returns 1 when connect is set, 0 while the lookup is still
 * running, -1 with err set when no host resolved.
 */
static int
zk_lookup_finish(char *connect, size_t connlen, char *err, size_t errlen)
{
	const char *chroot = strchr(guid_zookeeper, '/');
	size_t		len = 0;
	int			i;
	int			first_error = 0;
	const char *failed = NULL;

	for (i = 0; i < zk_lookup.nreqs; i++)
		if (gai_error(zk_lookup.reqs[i]) == EAI_INPROGRESS)
			return 0;

	connect[0] = '\0';
	for (i = 0; i < zk_lookup.nreqs; i++)
	{
		struct gaicb *r = zk_lookup.reqs[i];
		struct addrinfo *ai;
		int			rc = gai_error(r);

		if (rc != 0)
		{
			if (failed == NULL)
			{
				failed = r->ar_name;
				first_error = rc;
			}
			continue;
		}
		for (ai = r->ar_result; ai; ai = ai->ai_next)
		{
			char		host[NI_MAXHOST];
			char		port[NI_MAXSERV];

			if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
				getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host),
							port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
				continue;
			/* the client takes the port after the last ':', IPv6 too */
			len += snprintf(connect + len, len < connlen ? connlen - len : 0,
							"%s%s:%s", len ? "," : "", host, port);
		}
	}
	if (len == 0)
	{
		snprintf(err, errlen, "could not resolve ZooKeeper host \"%s\" of guid.zookeeper \"%s\": %s",
				 failed ? failed : "", guid_zookeeper,
				 first_error ? gai_strerror(first_error) : "no address");
		zk_lookup_free();
		return -1;
	}
	if (chroot)
		len += snprintf(connect + len, len < connlen ? connlen - len : 0, "%s", chroot);
	zk_lookup_free();
	if (len >= connlen)
	{
		snprintf(err, errlen, "guid.zookeeper \"%s\" resolves to too many addresses",
				 guid_zookeeper);
		return -1;
	}
	return 1;
}

/*
 * Load the credentials for a new session: from guid.zookeeper_auth_file
 * (read again for every session, so a rotated file takes effect at the next
 * one), else from guid.zookeeper_auth.  Returns false with a message in err
 * when the file cannot be used: the worker then does not connect at all,
 * since without credentials it would create znodes anybody may change.
 */
static bool
lease_load_auth(char *err, size_t errlen)
{
	char	   *secret;

	if (zk_auth != NULL && zk_auth != guid_zookeeper_auth)
		pfree(zk_auth);
	zk_auth = NULL;
	if (guid_zookeeper_auth_file[0] == '\0')
	{
		zk_auth = guid_zookeeper_auth;
		return true;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		secret = GuidReadSecretFile("guid.zookeeper_auth_file", guid_zookeeper_auth_file, err, errlen);
		MemoryContextSwitchTo(old);
	}
	if (secret == NULL)
		return false;
	if (strchr(secret, ':') == NULL || strchr(secret, '\n') != NULL)
	{
		snprintf(err, errlen, "guid.zookeeper_auth_file \"%s\" must hold one line user:password",
				 guid_zookeeper_auth_file);
		pfree(secret);
		return false;
	}
	zk_auth = secret;
	return true;
}

/*
 * Open a new session.  Returns 1 when the client is started, 0 while host
 * names are being resolved (call again), -1 after an error (reported).
 */
static int
lease_open(void)
{
	clientid_t	saved;
	bool		reattach;
	char		err[GUID_ERROR_LEN];
	char		connect[4096];
	int			rc;

	if (!zk_lookup.active)
	{
		if (!lease_load_auth(err, sizeof(err)))
		{
			lease_error(err);
			lease_set_state("invalid");
			return -1;
		}
		if (!zk_lookup_start(err, sizeof(err)))
		{
			lease_error(err);
			lease_set_state("invalid");
			return -1;
		}
		lease_set_state("resolving");
	}
	rc = zk_lookup_finish(connect, sizeof(connect), err, sizeof(err));
	if (rc == 0)
	{
		uint64		waited_ms = (GuidMonotonicNs() - zk_lookup.started) / 1000000;

		/* Still waiting for DNS: say so once it takes long, and keep waiting. */
		if (waited_ms > (uint64) guid_zookeeper_session_timeout)
		{
			snprintf(err, sizeof(err),
					 "resolving the hosts of guid.zookeeper \"%s\" has taken %llu ms so far",
					 guid_zookeeper, (unsigned long long) waited_ms);
			lease_error(err);
		}
		return 0;
	}
	if (rc < 0)
	{
		lease_error(err);
		lease_set_state("unresolved");
		return -1;
	}

	reattach = lease_read_session(&saved);
	(void) unlink(ZK_SESSION_FILE);
	zk_connected = zk_expired = zk_auth_failed = false;
	errno = 0;
	zk = zookeeper_init2(connect, zk_watcher, guid_zookeeper_session_timeout,
						 reattach ? &saved : NULL, NULL, 0, zk_log);
	if (zk == NULL)
	{
		snprintf(err, sizeof(err),
				 "could not start a ZooKeeper client for guid.zookeeper \"%s\": %s",
				 guid_zookeeper, errno ? strerror(errno) : "invalid connect string");
		lease_error(err);
		lease_set_state("invalid");
		return -1;
	}
	/* The addresses are numeric: re-resolving them while connected is moot. */
	(void) zoo_set_servers_resolution_delay(zk, -1);
	if (zk_auth[0] != '\0')
		(void) zoo_add_auth(zk, "digest", zk_auth, strlen(zk_auth), zk_void_done, NULL);
	connect_started = GuidMonotonicNs();
	lease_set_state(reattach ? "reattaching" : "connecting");
	if (reattach)
		ereport(LOG, (errmsg("guid: reattaching ZooKeeper session %llx after a crash-restart",
							 (unsigned long long) saved.client_id)));
	return 1;
}

/* ----------
 * Lease
 * ----------
 */

static void
lease_holder_data(char *buf, size_t len)
{
	char		host[256];
	pg_time_t	start = timestamptz_to_time_t(PgStartTime);

	if (gethostname(host, sizeof(host)) != 0)
		strlcpy(host, "unknown", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len,
			 "{\"instance\":\"%s\",\"system_identifier\":\"%llu\",\"host\":\"%s\","
			 "\"port\":%d,\"pid\":%d,\"started\":%lld}",
			 instance_id, (unsigned long long) GetSystemIdentifier(), host,
			 PostPortNumber, (int) PostmasterPid, (long long) start);
}

static bool
lease_ensure_path(const char *path, char *err, size_t errlen)
{
	int			rc = zk_create(path, "", ZOO_PERSISTENT);

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
lease_try_id(int32 id, const char *holder, char *err, size_t errlen)
{
	char		path[300];
	int			rc;

	snprintf(path, sizeof(path), "%s/nodes/%d", base_path, id);
	for (;;)
	{
		rc = zk_create(path, holder, ZOO_EPHEMERAL);
		if (rc == ZOK)
			return 1;
		if (rc != ZNODEEXISTS && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT)
			break;

		/*
		 * It exists, or our create may or may not have been applied before
		 * the connection dropped: it is ours iff its owner is our session.
		 */
		rc = zk_get(path);
		if (rc == ZOK)
			return zk_result.stat.ephemeralOwner == zoo_client_id(zk)->client_id ? 1 : 0;
		if (rc == ZNONODE)
			continue;			/* gone meanwhile: try again */
		if (rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT)
			break;
		if (!zk_connected && (zk_expired || ShutdownRequestPending))
			break;
		zk_pump(100);
	}
	snprintf(err, errlen, "could not lease ZooKeeper node \"%s\": %s", path, zerror(rc));
	return -1;
}

/* Read hwm/<id> into hwm_value/hwm_version, creating it at 0. */
static bool
lease_read_hwm(int32 id, char *err, size_t errlen)
{
	char		path[300];
	int			rc;

	snprintf(path, sizeof(path), "%s/hwm/%d", base_path, id);
	for (;;)
	{
		char	   *end;
		long long	v;

		rc = zk_get(path);
		if (rc == ZNONODE)
		{
			rc = zk_create(path, "0", ZOO_PERSISTENT);
			if (rc == ZOK || rc == ZNODEEXISTS)
				continue;
			break;
		}
		if (rc != ZOK)
			break;
		v = strtoll(zk_result.value, &end, 10);
		if (zk_result.value_len == 0 || *end != '\0' || v < 0 || v > GUID_MAX_MS)
		{
			snprintf(err, errlen, "ZooKeeper node \"%s\" does not hold a millisecond: \"%s\"",
					 path, zk_result.value);
			return false;
		}
		hwm_value = v;
		hwm_version = zk_result.stat.version;
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
lease_recover_hwm(const char *path, char *err, size_t errlen)
{
	char		node[300];
	char	   *end;
	long long	v;
	int32		version;
	int			rc;
	int			i;

	if (hwm_nunsure == 0)
		return 0;
	rc = zk_get(path);
	if (rc != ZOK)
	{
		snprintf(err, errlen, "could not read ZooKeeper node \"%s\": %s", path, zerror(rc));
		return -1;
	}
	v = strtoll(zk_result.value, &end, 10);
	version = zk_result.stat.version;
	if (zk_result.value_len == 0 || *end != '\0' || version != hwm_version + 1)
		return 0;
	for (i = 0; i < hwm_nunsure; i++)
		if (hwm_unsure[i] == v)
			break;
	if (i == hwm_nunsure)
		return 0;

	snprintf(node, sizeof(node), "%s/nodes/%d", base_path, leased_id);
	rc = zk_exists(node);
	if (rc == ZNONODE || (rc == ZOK && zk_result.stat.ephemeralOwner != zoo_client_id(zk)->client_id))
		return 0;
	if (rc != ZOK)
	{
		snprintf(err, errlen, "could not read ZooKeeper node \"%s\": %s", node, zerror(rc));
		return -1;
	}
	ereport(LOG,
			(errmsg("guid: high-water mark %lld in ZooKeeper node \"%s\" was written although the answer was lost; continuing at version %d",
					v, path, (int) version)));
	hwm_version = version;
	hwm_value = v;
	hwm_nunsure = 0;
	return 1;
}

/*
 * Write target into hwm/<id> if it still has the version we know (or had a
 * lost write of ours applied, see lease_recover_hwm).  Returns 1 on success,
 * 0 when someone else changed it, -1 on error (err set; the lease is kept).
 */
static int
lease_write_hwm(int64 target, char *err, size_t errlen)
{
	char		path[300];
	char		value[32];
	int			rc;

	snprintf(path, sizeof(path), "%s/hwm/%d", base_path, leased_id);
	snprintf(value, sizeof(value), "%lld", (long long) target);
	for (;;)
	{
		rc = zk_set(path, value, hwm_version);
		if (rc == ZOK)
		{
			hwm_version = zk_result.stat.version;
			hwm_value = target;
			hwm_nunsure = 0;
			GuidNoteReservationWrite();
			return 1;
		}
		if (rc != ZBADVERSION)
			break;
		rc = lease_recover_hwm(path, err, errlen);
		if (rc != 1)
			return rc;
	}

	/*
	 * Without an answer the write may or may not have been applied.  Beyond
	 * HWM_UNSURE_MAX such writes an applied one is taken for someone else's
	 * (the lease is given up: safe, merely slower).
	 */
	if ((rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT) && hwm_nunsure < HWM_UNSURE_MAX)
		hwm_unsure[hwm_nunsure++] = target;
	snprintf(err, errlen, "could not extend ZooKeeper node \"%s\": %s", path, zerror(rc));
	return -1;
}

/*
 * Write guid.reservation: this cluster's IDs stay above reserved_ms even if
 * it leases another id later.  The first failure is a WARNING with the
 * reason; repeats are not logged again.  Returns true on success.
 */
static bool
lease_write_local(int32 id, int64 reserved_ms)
{
	if (GuidWriteReservation(id, reserved_ms, local_write_failing ? DEBUG1 : WARNING))
	{
		if (local_write_failing)
		{
			local_write_failing = false;
			GuidSetLastError("");
			last_logged_error[0] = '\0';
		}
		return true;
	}
	local_write_failing = true;
	return false;
}

/*
 * Lease a node id, load its high-water mark, reserve ahead, and start the
 * generator.  Returns false with err set on failure.
 */
static bool
lease_acquire(char *err, size_t errlen)
{
	char		holder[512];
	char		path[300];
	bool		taken[GUID_MAX_NODE + 1];
	int32		previous = GuidLastNode();
	int32		id = -1;
	int			rc;
	int			i;
	int64		target;
	int64		floor_ms;
	uint64		timeout_ns;

	if (!lease_ensure_path("/guid", err, errlen))
		return false;
	if (!lease_ensure_path(base_path, err, errlen))
		return false;
	snprintf(path, sizeof(path), "%s/nodes", base_path);
	if (!lease_ensure_path(path, err, errlen))
		return false;
	snprintf(path, sizeof(path), "%s/hwm", base_path);
	if (!lease_ensure_path(path, err, errlen))
		return false;

	snprintf(path, sizeof(path), "%s/nodes", base_path);
	rc = zk_children(path);
	if (rc != ZOK)
	{
		snprintf(err, errlen, "could not list ZooKeeper node \"%s\": %s", path, zerror(rc));
		return false;
	}
	memset(taken, 0, sizeof(taken));
	for (i = 0; i < zk_result.nchildren; i++)
		taken[zk_result.children[i]] = true;

	lease_holder_data(holder, sizeof(holder));

	/* The id this cluster held last, even when listed (it may be ours). */
	rc = lease_try_id(previous, holder, err, errlen);
	if (rc < 0)
		return false;
	if (rc == 1)
		id = previous;
	for (i = 0; id < 0 && i <= GUID_MAX_NODE; i++)
	{
		if (taken[i] || i == previous)
			continue;
		rc = lease_try_id(i, holder, err, errlen);
		if (rc < 0)
			return false;
		if (rc == 1)
			id = i;
	}
	if (id < 0)
	{
		snprintf(err, errlen, "all %d node ids of namespace \"%s\" are leased",
				 (int) GUID_MAX_NODE + 1, GuidNamespace());
		return false;
	}
	leased_id = id;
	hwm_nunsure = 0;

	if (!lease_read_hwm(id, err, errlen))
	{
		leased_id = -1;
		return false;
	}

	/* Reserve ahead before anything is issued. */
	floor_ms = hwm_value;
	target = Max(Min(hwm_value + GUID_RESERVE_WINDOW_MS, GUID_MAX_MS),
				 GuidReservationTarget());
	rc = lease_write_hwm(target, err, errlen);
	if (rc != 1)
	{
		if (rc == 0)
			snprintf(err, errlen, "ZooKeeper node \"%s/hwm/%d\" changed while it was being leased",
					 base_path, id);
		leased_id = -1;
		return false;
	}
	if (!lease_write_local(id, target))
	{
		snprintf(err, errlen, "could not write the reservation file guid.reservation; see the server log");
		leased_id = -1;
		return false;
	}

	timeout_ns = (uint64) zoo_recv_timeout(zk) * 1000000;
	GuidInstallLease(id, floor_ms, target,
					 GuidNoteAck(0) +
					 timeout_ns * LEASE_TRUST_NUM / LEASE_TRUST_DEN);
	last_heartbeat = GuidMonotonicNs();
	GuidSetLastError("");
	last_logged_error[0] = '\0';
	lease_set_state("connected");
	ereport(LOG,
			(errmsg("guid: leased node id %d in namespace \"%s\" (ZooKeeper session %llx, timeout %d ms)",
					id, GuidNamespace(),
					(unsigned long long) zoo_client_id(zk)->client_id, zoo_recv_timeout(zk))));
	return true;
}

/*
 * While leased: heartbeat when due, and extend the high-water mark when the
 * reservation runs short.  Returns false when the lease is lost.
 */
static bool
lease_maintain(char *err, size_t errlen)
{
	uint64		now = GuidMonotonicNs();
	uint64		timeout_ns = (uint64) zoo_recv_timeout(zk) * 1000000;
	char		path[300];
	int			rc;

	if (now - last_heartbeat >= timeout_ns / HEARTBEAT_DIVISOR)
	{
		snprintf(path, sizeof(path), "%s/nodes/%d", base_path, leased_id);
		last_heartbeat = now;

		/*
		 * The sync's answer moves the deadline (it went through the leader);
		 * the read after it is at least as fresh as the leader then was.
		 */
		rc = zk_sync(path);
		if (rc == ZOK)
			rc = zk_exists(path);
		if (rc == ZOK && zk_result.stat.ephemeralOwner != zoo_client_id(zk)->client_id)
			rc = ZNONODE;
		if (rc == ZNONODE)
		{
			snprintf(err, errlen, "ZooKeeper node \"%s\" is no longer held by this session", path);
			return false;
		}
	}

	if (GuidReservationDue())
	{
		int64		target = GuidReservationTarget();

		/* hwm/<id> first (unless it already covers target), then the file */
		if (hwm_value < target)
		{
			rc = lease_write_hwm(target, err, errlen);
			if (rc == 0)
			{
				snprintf(err, errlen, "ZooKeeper node \"%s/hwm/%d\" was changed by someone else",
						 base_path, leased_id);
				return false;
			}
			if (rc < 0)
			{
				lease_error(err);	/* keep the lease; retry next round */
				return true;
			}
		}
		if (!lease_write_local(leased_id, hwm_value))
		{
			/* nothing is issued above what the data directory records */
			lease_error("could not write the reservation file guid.reservation; see the server log");
			return true;
		}
		GuidRaiseReservation(hwm_value);
	}
	return true;
}

/*
 * LeaseWorkerLoop: the coordinator's main loop in leased mode.  Returns on
 * shutdown, with the generator fenced and the session closed (which frees
 * the node id at once).
 */
void
LeaseWorkerLoop(void)
{
	char		err[GUID_ERROR_LEN];
	uint8		rnd[16];
	int			i;

	if (!pg_strong_random(rnd, sizeof(rnd)))
		elog(ERROR, "could not generate a random instance id");
	for (i = 0; i < (int) sizeof(rnd); i++)
		snprintf(instance_id + 2 * i, 3, "%02x", rnd[i]);
	snprintf(base_path, sizeof(base_path), "/guid/%s", GuidNamespace());
	zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);

	while (!ShutdownRequestPending)
	{
		err[0] = '\0';
		if (zk == NULL)
		{
			int			rc = lease_open();

			if (rc <= 0)
			{
				zk_pump(rc == 0 ? 50 : RETRY_MS);
				continue;
			}
		}
		if (zk_expired || zk_auth_failed)
		{
			lease_error(zk_expired ? "ZooKeeper session expired; leasing again" :
						"ZooKeeper rejected the credentials in guid.zookeeper_auth");
			lease_close();
			if (zk_auth_failed)
				zk_pump(RETRY_MS);
			continue;
		}
		if (!zk_connected)
		{
			uint64		waited = GuidMonotonicNs() - connect_started;

			if (waited > (uint64) guid_zookeeper_session_timeout * 1000000 && leased_id < 0)
			{
				const char *why = strstr(zk_client_log, "errno=");

				snprintf(err, sizeof(err), "no ZooKeeper server answers at guid.zookeeper \"%s\"%s%s",
						 guid_zookeeper, why ? "; last client error: " : "", why ? why : "");
				lease_error(err);
			}
			lease_set_state(leased_id >= 0 ? "disconnected" : "connecting");
			zk_pump(100);
			continue;
		}
		if (leased_id < 0)
		{
			lease_save_session();
			lease_set_state("connected");
			if (!lease_acquire(err, sizeof(err)))
			{
				/*
				 * Close the session too: an ephemeral created before the
				 * failure would otherwise hold an id nobody uses.
				 */
				lease_error(err);
				lease_close();
				zk_pump(RETRY_MS);
			}
			continue;
		}
		lease_set_state("connected");
		if (!lease_maintain(err, sizeof(err)))
		{
			lease_error(err);
			lease_close();
			continue;
		}
		zk_pump(Min(100, zoo_recv_timeout(zk) / HEARTBEAT_DIVISOR));
	}

	lease_close();
	(void) unlink(ZK_SESSION_FILE);
}
