/*-------------------------------------------------------------------------
 *
 * lease_worker.c
 *		The coordinator worker's side of the node id lease: the PostgreSQL
 *		host of the plain-C lease protocol (coordinator/lease_protocol.c).
 *
 * This file owns the lease's settings (LeaseInit) and gives the protocol
 * its LeaseEnv: the latch and the ZooKeeper socket to wait on
 * (WaitLatchOrSocket, with interrupts, configuration reloads and
 * postmaster death honoured on every wait), CLOCK_BOOTTIME
 * (GuidMonotonicNs), the server log (ereport, in one place: lease_log),
 * the data directory (guid.reservation, guid.zksession), and the generator
 * in shared memory (GuidInstallLease, GuidRaiseReservation, GuidFence, the
 * deadline, the status fields).  The protocol itself, its guarantees and
 * the design essay are in lease_protocol.c.
 *
 * What this file must not do: run outside the coordinator, or decide
 * anything about the lease: it only carries the protocol's effects to
 * PostgreSQL.
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
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guid_core.h"
#include "guid_generator.h"
#include "guid_lease.h"
#include "guid_worker.h"

#define ZK_SESSION_FILE			"guid.zksession"

StaticAssertDecl(LEASE_MAX_IDS == GUID_MAX_NODE + 1, "lease ids are guid node ids");
StaticAssertDecl(LEASE_MAX_MS == GUID_MAX_MS, "lease milliseconds are guid milliseconds");

/* Settings only the lease reads; guid.zookeeper and guid.namespace are the
 * core's (extension/core/settings.c). */
static int	guid_zookeeper_session_timeout = 30000;
static char *guid_zookeeper_auth = NULL;
static char *guid_zookeeper_auth_file = NULL;

/* guid.status's view of the lease (LeaseStatus); only this worker writes. */
static GuidStatusArea *lease_status_area = NULL;

/* The first snapshot, at server start. */
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
 * The LeaseEnv: the protocol's effects, carried to PostgreSQL
 * ----------
 */

static uint64_t
lease_env_monotonic_ns(void *arg)
{
	return GuidMonotonicNs();
}

static int64_t
lease_env_wall_ms(void *arg)
{
	return GuidWallClockMs();
}

/* The server log: every message of the protocol passes here. */
static void
lease_env_log(void *arg, LeaseLogLevel level, const char *msg)
{
	if (level == LEASE_LOG_WARNING)
		ereport(WARNING,
				(errmsg("guid: %s", msg),
				 errhint("guid.zookeeper is \"%s\", guid.namespace is \"%s\".",
						 guid_zookeeper, GuidNamespace())));
	else
		ereport(level == LEASE_LOG_INFO ? LOG : DEBUG1,
				(errmsg("guid: %s", msg)));
}

/*
 * Wait for the latch, the ZooKeeper socket or the timeout; then handle
 * interrupts and a reload.  Returns true when the worker should stop.
 */
static bool
lease_env_wait(void *arg, int fd, int events, long timeout_ms, int *ready)
{
	int			wl = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
	int			rc;

	if (fd >= 0 && (events & LEASE_WAIT_READ))
		wl |= WL_SOCKET_READABLE;
	if (fd >= 0 && (events & LEASE_WAIT_WRITE))
		wl |= WL_SOCKET_WRITEABLE;
	if (!(wl & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
		fd = PGINVALID_SOCKET;

	rc = WaitLatchOrSocket(MyLatch, wl, fd, timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	GuidSampleClock();
	GuidKeepLeasedReservation();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}

	*ready = 0;
	if (rc & WL_SOCKET_READABLE)
		*ready |= LEASE_WAIT_READ;
	if (rc & WL_SOCKET_WRITEABLE)
		*ready |= LEASE_WAIT_WRITE;
	return ShutdownRequestPending;
}

/*
 * guid.reservation: the node id, and a reservation about a second ahead (up
 * to the mark, reserved_ms), which the worker and backends then extend
 * without ZooKeeper up to the mark.  A first failure is a WARNING with the
 * reason.
 */
static bool
lease_env_write_reservation(void *arg, int32_t id, int64_t reserved_ms, bool quiet)
{
	return GuidRecordLeasedReservation(id, reserved_ms, quiet ? DEBUG1 : WARNING);
}

static void
lease_env_save_session(void *arg, const char *text)
{
	(void) GuidWriteFileDurably(ZK_SESSION_FILE, text, LOG);
}

static bool
lease_env_load_session(void *arg, char *buf, size_t len)
{
	FILE	   *f = AllocateFile(ZK_SESSION_FILE, "r");
	size_t		n;

	if (f == NULL)
		return false;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	FreeFile(f);
	return n > 0;
}

static void
lease_env_remove_session(void *arg)
{
	(void) unlink(ZK_SESSION_FILE);
}

static void
lease_env_install(void *arg, int32_t id, int64_t floor_ms, int64_t reserved_ms, uint64_t deadline_ns)
{
	GuidInstallLease(id, floor_ms, reserved_ms, deadline_ns);
}

/* An answered write or sync: last_ack, and the deadline while leased. */
static void
lease_env_extend(void *arg, uint64_t last_ack_ns, uint64_t deadline_ns)
{
	(void) GuidNoteAck(last_ack_ns);
	if (deadline_ns != 0)
		GuidRenewLease(deadline_ns);
}

static void
lease_env_raise(void *arg, int64_t reserved_ms)
{
	GuidRaiseReservation(reserved_ms);
}

static void
lease_env_fence(void *arg)
{
	GuidFence(GUID_MODE_CONNECTING);
}

/* Clean shutdown: nothing more is issued; the last millisecond issued. */
static int64_t
lease_env_seal(void *arg)
{
	return GuidSeal();
}

static int64_t
lease_env_reserve_target(void *arg, int window_ms)
{
	return GuidLeaseMarkTarget(window_ms);
}

static bool
lease_env_reserve_due(void *arg, int64_t reserved_ms, int low_ms)
{
	return GuidLeaseMarkDue(reserved_ms, low_ms);
}

/*
 * The credentials for a new session: from guid.zookeeper_auth_file (read
 * again for every session, so a rotated file takes effect at the next one),
 * else from guid.zookeeper_auth.  Returns false with a message in err when
 * the file cannot be used.
 */
static bool
lease_env_credentials(void *arg, char *buf, size_t len, char *err, size_t errlen)
{
	char	   *secret;

	if (guid_zookeeper_auth_file[0] == '\0')
	{
		/* never cut short: another password would become the same user */
		if (strlcpy(buf, guid_zookeeper_auth, len) >= len)
		{
			snprintf(err, errlen, "guid.zookeeper_auth is longer than %d bytes",
					 (int) len - 1);
			buf[0] = '\0';
			return false;
		}
		return true;
	}
	secret = GuidReadSecretFile("guid.zookeeper_auth_file", guid_zookeeper_auth_file, err, errlen);
	if (secret == NULL)
		return false;
	if (strchr(secret, ':') == NULL || strchr(secret, '\n') != NULL)
	{
		snprintf(err, errlen, "guid.zookeeper_auth_file \"%s\" must hold one line user:password",
				 guid_zookeeper_auth_file);
		pfree(secret);
		return false;
	}
	if (strlen(secret) >= len)
	{
		snprintf(err, errlen, "guid.zookeeper_auth_file \"%s\" holds credentials longer than %d bytes",
				 guid_zookeeper_auth_file, (int) len - 1);
		pfree(secret);
		return false;
	}
	strlcpy(buf, secret, len);
	pfree(secret);
	return true;
}

/* guid.status: the connection state, session and timeout. */
static void
lease_env_status(void *arg, const char *state, int64_t session_id, int timeout_ms)
{
	LeaseStatus ls;

	memset(&ls, 0, sizeof(ls));
	strlcpy(ls.state, state, sizeof(ls.state));
	ls.session_id = session_id;
	ls.timeout_ms = timeout_ms;
	GuidStatusWrite(lease_status_area, &ls);
}

static void
lease_env_set_error(void *arg, const char *msg)
{
	GuidSetLastError(msg);
}

static void
lease_env_written(void *arg, int64_t reserved_ms)
{
	GuidNoteReservationWrite();
}

/* The data of our lease znode: who holds it. */
static void
lease_holder_data(char *buf, size_t len)
{
	char		instance_id[33];
	char		host[256];
	uint8		rnd[16];
	pg_time_t	start = timestamptz_to_time_t(PgStartTime);
	int			i;

	if (!pg_strong_random(rnd, sizeof(rnd)))
		elog(ERROR, "could not generate a random instance id");
	for (i = 0; i < (int) sizeof(rnd); i++)
		snprintf(instance_id + 2 * i, 3, "%02x", rnd[i]);
	if (gethostname(host, sizeof(host)) != 0)
		strlcpy(host, "unknown", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len,
			 "{\"instance\":\"%s\",\"system_identifier\":\"%llu\",\"host\":\"%s\","
			 "\"port\":%d,\"pid\":%d,\"started\":%lld}",
			 instance_id, (unsigned long long) GetSystemIdentifier(), host,
			 PostPortNumber, (int) PostmasterPid, (long long) start);
}

/*
 * LeaseWorkerLoop: the coordinator's main loop in leased mode.  Returns on
 * shutdown, with the generator fenced and the session closed (which frees
 * the node id at once).
 */
void
LeaseWorkerLoop(void)
{
	char		holder[512];
	char		owner[64];
	LeaseConfig cfg;
	LeaseEnv	env;
	LeaseClient *client;

	lease_holder_data(holder, sizeof(holder));
	/* a saved session is reattached only by this postmaster */
	snprintf(owner, sizeof(owner), "postmaster %d %lld",
			 (int) PostmasterPid, (long long) PgStartTime);

	memset(&cfg, 0, sizeof(cfg));
	cfg.zookeeper = guid_zookeeper;
	cfg.namespace_ = GuidNamespace();
	cfg.session_timeout_ms = guid_zookeeper_session_timeout;
	cfg.nids = LEASE_MAX_IDS;
	cfg.previous_id = GuidLastNode();
	cfg.reserve_window_ms = 0;	/* sized from the session timeout */
	cfg.holder = holder;
	cfg.session_owner = owner;

	memset(&env, 0, sizeof(env));
	env.monotonic_ns = lease_env_monotonic_ns;
	env.wall_ms = lease_env_wall_ms;
	env.log = lease_env_log;
	env.wait = lease_env_wait;
	env.write_reservation = lease_env_write_reservation;
	env.save_session = lease_env_save_session;
	env.load_session = lease_env_load_session;
	env.remove_session = lease_env_remove_session;
	env.install = lease_env_install;
	env.extend = lease_env_extend;
	env.raise = lease_env_raise;
	env.fence = lease_env_fence;
	env.seal = lease_env_seal;
	env.reserve_target = lease_env_reserve_target;
	env.reserve_due = lease_env_reserve_due;
	env.credentials = lease_env_credentials;
	env.status = lease_env_status;
	env.set_error = lease_env_set_error;
	env.written = lease_env_written;

	zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
	client = LeaseClientCreate(&cfg, &env);
	if (client == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	LeaseClientRun(client);
	LeaseClientFree(client);
}
