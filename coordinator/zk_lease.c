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
 * Fencing: every request ZooKeeper answers proves the session was alive
 * when the server processed it, which is after we sent it.  The server
 * cannot expire a session earlier than one full session timeout after it
 * last heard from the client.  So the lease is trusted until
 *
 *		send time of the last answered request + timeout * 1/2
 *
 * on CLOCK_MONOTONIC (lease_deadline).  Half leaves the other half for a
 * server clock running faster than ours, tick rounding of the server's
 * expiry, and a backend that checked the deadline just before it passed.
 * A heartbeat request every timeout/6 keeps the deadline at least a third of
 * the timeout ahead while ZooKeeper answers.  Backends check the deadline on
 * every call and refuse to issue past it (mode "fenced").
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
 * What this file must not do: run outside the coordinator, let a callback
 * call into PostgreSQL, or publish a node id before the znode, the
 * high-water mark and the deadline are all in place.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guid.h"

#define ZK_SESSION_FILE			"guid.zksession"

/* The lease is trusted for this fraction of the granted session timeout
 * after the send time of the last answered request. */
#define LEASE_TRUST_NUM			1
#define LEASE_TRUST_DEN			2

/* A heartbeat request every timeout / HEARTBEAT_DIVISOR. */
#define HEARTBEAT_DIVISOR		6

/* Pause between attempts after an error. */
#define RETRY_MS				1000

/* Settings */
char	   *guid_zookeeper = NULL;
static char *guid_namespace = NULL;
static int	guid_zookeeper_session_timeout = 30000;
static char *guid_zookeeper_auth = NULL;

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
 * GuidNamespace: guid.namespace, which also prefixes idempotency keys.
 */
const char *
GuidNamespace(void)
{
	return guid_namespace ? guid_namespace : "default";
}

/*
 * LeaseConfigured: true when node ids are to be leased from ZooKeeper.
 */
bool
LeaseConfigured(void)
{
	return guid_node_id < 0 && guid_zookeeper != NULL && guid_zookeeper[0] != '\0';
}

/*
 * Why a guid.namespace value is unusable, or NULL when it is fine.  It is one
 * path component in ZooKeeper, where "." and ".." are not allowed.
 */
static const char *
lease_namespace_problem(const char *value)
{
	const char *p;

	if (value == NULL || value[0] == '\0' || strlen(value) > 100)
		return "guid.namespace must be 1 to 100 characters long.";
	for (p = value; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '.'))
			return "guid.namespace may contain only letters, digits, \"_\", \"-\" and \".\".";
	if (strcmp(value, ".") == 0 || strcmp(value, "..") == 0)
		return "guid.namespace cannot be \".\" or \"..\", which are not ZooKeeper path components.";
	return NULL;
}

static bool
lease_check_namespace(char **newval, void **extra, GucSource source)
{
	const char *problem = lease_namespace_problem(*newval);

	if (problem)
	{
		GUC_check_errdetail("%s", problem);
		return false;
	}
	return true;
}

static bool
lease_check_zookeeper(char **newval, void **extra, GucSource source)
{
	const char *problem = GuidHostPortProblem(*newval, true);

	if (problem)
	{
		GUC_check_errdetail("guid.zookeeper is host:port[,host:port...][/chroot]. %s", problem);
		return false;
	}
	return true;
}

/*
 * LeaseInit: define the ZooKeeper settings.
 */
void
LeaseInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("guid.zookeeper",
							   gettext_noop("ZooKeeper connect string (host:port[,host:port...][/chroot]) to lease the node id from."),
							   gettext_noop("Used when guid.node_id is -1."),
							   &guid_zookeeper,
							   "",
							   PGC_POSTMASTER, 0,
							   lease_check_zookeeper, NULL, NULL);
	DefineCustomStringVariable("guid.namespace",
							   gettext_noop("Namespace of node ids in ZooKeeper: clusters sharing one never share an id."),
							   NULL,
							   &guid_namespace,
							   "default",
							   PGC_POSTMASTER, 0,
							   lease_check_namespace, NULL, NULL);
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
						 guid_zookeeper, guid_namespace)));
	}
}

static void
lease_set_state(const char *state)
{
	SpinLockAcquire(&GuidState->mutex);
	strlcpy(GuidState->zk_state, state, sizeof(GuidState->zk_state));
	GuidState->zk_session_id = zk ? zoo_client_id(zk)->client_id : 0;
	GuidState->zk_timeout = zk ? zoo_recv_timeout(zk) : 0;
	SpinLockRelease(&GuidState->mutex);
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
 * Wait for the request started at sent (monotonic ns) with submit result rc.
 * Returns its result code.  An answer moves last_ack (and so the lease
 * deadline) to the send time.
 */
static int
zk_call_wait(int rc, uint64 sent)
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
	if (zk_answered(zk_result.rc))
	{
		if (sent > pg_atomic_read_u64(&GuidState->last_ack))
			pg_atomic_write_u64(&GuidState->last_ack, sent);
		if (leased_id >= 0 && pg_atomic_read_u32(&GuidState->mode) == GUID_MODE_LEASED)
		{
			uint64		timeout_ns = (uint64) zoo_recv_timeout(zk) * 1000000;

			pg_atomic_write_u64(&GuidState->lease_deadline,
								pg_atomic_read_u64(&GuidState->last_ack) +
								timeout_ns * LEASE_TRUST_NUM / LEASE_TRUST_DEN);
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

	if (guid_zookeeper_auth[0] == '\0')
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
									zk_acl(), flags, zk_string_done, d), sent);
}

static int
zk_get(const char *path)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aget(zk, path, 0, zk_data_done, d), sent);
}

static int
zk_set(const char *path, const char *value, int version)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aset(zk, path, value, strlen(value), version,
								 zk_stat_done, d), sent);
}

static int
zk_exists(const char *path)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aexists(zk, path, 0, zk_stat_done, d), sent);
}

static int
zk_children(const char *path)
{
	uint64		sent = GuidMonotonicNs();
	const void *d = zk_call_begin();

	return zk_call_wait(zoo_aget_children(zk, path, 0, zk_children_done, d), sent);
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

static bool
lease_open(void)
{
	clientid_t	saved;
	bool		reattach = lease_read_session(&saved);
	char		err[GUID_ERROR_LEN];

	(void) unlink(ZK_SESSION_FILE);
	zk_connected = zk_expired = zk_auth_failed = false;
	errno = 0;
	zk = zookeeper_init2(guid_zookeeper, zk_watcher, guid_zookeeper_session_timeout,
						 reattach ? &saved : NULL, NULL, 0, zk_log);
	if (zk == NULL)
	{
		snprintf(err, sizeof(err),
				 "could not start a ZooKeeper client for guid.zookeeper \"%s\": %s",
				 guid_zookeeper, errno ? strerror(errno) : "invalid connect string");
		lease_error(err);
		lease_set_state("invalid");
		return false;
	}
	if (guid_zookeeper_auth[0] != '\0')
		(void) zoo_add_auth(zk, "digest", guid_zookeeper_auth,
							strlen(guid_zookeeper_auth), zk_void_done, NULL);
	connect_started = GuidMonotonicNs();
	lease_set_state(reattach ? "reattaching" : "connecting");
	if (reattach)
		ereport(LOG, (errmsg("guid: reattaching ZooKeeper session %llx after a crash-restart",
							 (unsigned long long) saved.client_id)));
	return true;
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
 * Write target into hwm/<id> if it still has the version we know.  Returns
 * 1 on success, 0 when someone else changed it, -1 on error.
 */
static int
lease_write_hwm(int64 target, char *err, size_t errlen)
{
	char		path[300];
	char		value[32];
	int			rc;

	snprintf(path, sizeof(path), "%s/hwm/%d", base_path, leased_id);
	snprintf(value, sizeof(value), "%lld", (long long) target);
	rc = zk_set(path, value, hwm_version);
	if (rc == ZOK)
	{
		hwm_version = zk_result.stat.version;
		hwm_value = target;
		pg_atomic_fetch_add_u64(&GuidState->reserve_writes, 1);
		return 1;
	}
	if (rc == ZBADVERSION)
		return 0;
	snprintf(err, errlen, "could not extend ZooKeeper node \"%s\": %s", path, zerror(rc));
	return -1;
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
	int32		previous = GuidStateNode(pg_atomic_read_u64(&GuidState->state));
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
				 (int) GUID_MAX_NODE + 1, guid_namespace);
		return false;
	}
	leased_id = id;

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
	(void) GuidWriteReservation(leased_id, target, LOG);

	timeout_ns = (uint64) zoo_recv_timeout(zk) * 1000000;
	GuidInstallLease(id, floor_ms, target,
					 pg_atomic_read_u64(&GuidState->last_ack) +
					 timeout_ns * LEASE_TRUST_NUM / LEASE_TRUST_DEN);
	last_heartbeat = GuidMonotonicNs();
	GuidSetLastError("");
	last_logged_error[0] = '\0';
	lease_set_state("connected");
	ereport(LOG,
			(errmsg("guid: leased node id %d in namespace \"%s\" (ZooKeeper session %llx, timeout %d ms)",
					id, guid_namespace,
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

		rc = lease_write_hwm(target, err, errlen);
		if (rc == 1)
		{
			GuidRaiseReservation(target);
			(void) GuidWriteReservation(leased_id, target, LOG);
		}
		else if (rc == 0)
		{
			snprintf(err, errlen, "ZooKeeper node \"%s/hwm/%d\" was changed by someone else",
					 base_path, leased_id);
			return false;
		}
		else
			lease_error(err);	/* keep the lease; retry next round */
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
	snprintf(base_path, sizeof(base_path), "/guid/%s", guid_namespace);
	zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);

	while (!ShutdownRequestPending)
	{
		err[0] = '\0';
		if (zk == NULL && !lease_open())
		{
			zk_pump(RETRY_MS);
			continue;
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
