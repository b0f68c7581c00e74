/*-------------------------------------------------------------------------
 *
 * guid_lease.h
 *		The node id lease protocol over ZooKeeper, as a plain-C object.
 *
 * A LeaseClient leases one node id of a namespace from ZooKeeper, keeps the
 * id's high-water mark ahead of need, and tells its host when it may issue
 * IDs and until when.  It knows nothing of PostgreSQL: everything it needs
 * from outside (clocks, logging, waiting, local storage, the generator it
 * feeds) comes through a LeaseEnv.  All its state is in the LeaseClient, so
 * one process can run many (one per thread: each one's requests are waited
 * for in its own env->wait).  coordinator/lease_worker.c is the PostgreSQL
 * host; test/unit/lease_test.c another.  The protocol and its guarantees
 * are described at the top of coordinator/lease_protocol.c.
 *
 * Only libc types here: no PostgreSQL header, no ZooKeeper header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_LEASE_H
#define GUID_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Node ids of a namespace: 0 .. LEASE_MAX_IDS - 1 (10 bits of a guid). */
#define LEASE_MAX_IDS			1024

/* The highest millisecond a guid can hold (41 bits). */
#define LEASE_MAX_MS			((INT64_C(1) << 41) - 1)

/* Messages passed to the host are at most this long (with the NUL). */
#define LEASE_MSG_LEN			256

/* Credentials ("user:password") are at most this long (with the NUL). */
#define LEASE_AUTH_LEN			4096

/* What the client waits for on its socket (LeaseEnv.wait). */
#define LEASE_WAIT_READ			1
#define LEASE_WAIT_WRITE		2

typedef enum LeaseLogLevel
{
	LEASE_LOG_DEBUG,			/* detail nobody needs to see */
	LEASE_LOG_INFO,				/* a lease event: leased, reattaching, a lost
								 * write found applied */
	LEASE_LOG_WARNING			/* a lease problem, reported once until it
								 * changes (also given to set_error) */
} LeaseLogLevel;

/*
 * What the client needs from its host.  Every callback gets arg.  Those
 * marked optional may be NULL.  None is called from another thread: all run
 * inside the LeaseClient call that the host made.
 */
typedef struct LeaseEnv
{
	void	   *arg;

	/* Clocks.  monotonic_ns must keep running through a suspend
	 * (CLOCK_BOOTTIME): the deadlines it gives are compared with it.
	 * wall_ms is milliseconds since the guid epoch (2025-01-01 UTC), used
	 * for the reservation only when reserve_target is NULL. */
	uint64_t	(*monotonic_ns) (void *arg);
	int64_t		(*wall_ms) (void *arg);

	/* Log msg (optional). */
	void		(*log) (void *arg, LeaseLogLevel level, const char *msg);

	/*
	 * Wait up to timeout_ms for fd (-1: no socket, just the timeout) to be
	 * ready for events (LEASE_WAIT_*), set *ready to what is, and return
	 * true when the client should stop (it then returns from its calls as
	 * soon as it can).  The only place the client blocks.
	 */
	bool		(*wait) (void *arg, int fd, int events, long timeout_ms, int *ready);

	/*
	 * Local durable storage.  write_reservation makes "id may have issued up
	 * to reserved_ms" durable before returning true (a failure is reported
	 * by the host, at debug level when quiet).  A host that keeps a local
	 * reservation of its own below the mark (extended on its own, never
	 * above the last mark it was given, and issuing nothing above it) may
	 * record less: the PostgreSQL host records about a second ahead.  The saved session (to
	 * reattach after a crash of the host process) is a short text:
	 * save_session stores it durably, load_session reads it into buf (false
	 * when there is none), remove_session forgets it.  The session ones are
	 * optional (no reattaching without them).
	 */
	bool		(*write_reservation) (void *arg, int32_t id, int64_t reserved_ms, bool quiet);
	void		(*save_session) (void *arg, const char *text);
	bool		(*load_session) (void *arg, char *buf, size_t len);
	void		(*remove_session) (void *arg);

	/*
	 * The generator.  install: issue IDs as id, above floor_ms, up to
	 * reserved_ms, until deadline_ns (monotonic).  extend: the session was
	 * confirmed at last_ack_ns (the send time of the last answered write or
	 * sync); when deadline_ns is not 0 the lease now lasts until then.
	 * raise: IDs up to reserved_ms are durable in ZooKeeper and locally.
	 * fence: issue nothing more until the next install.  seal (optional),
	 * called after fence at a clean shutdown: make sure nothing more can be
	 * issued, not even by a caller that checked the lease just before the
	 * fence, and return the highest millisecond issued (-1 if unknown); the
	 * mark is then written back down to it.
	 */
	void		(*install) (void *arg, int32_t id, int64_t floor_ms, int64_t reserved_ms,
							uint64_t deadline_ns);
	void		(*extend) (void *arg, uint64_t last_ack_ns, uint64_t deadline_ns);
	void		(*raise) (void *arg, int64_t reserved_ms);
	void		(*fence) (void *arg);
	int64_t		(*seal) (void *arg);

	/*
	 * Reservation policy (optional): the millisecond a reservation made now
	 * should cover, window_ms ahead of need; and whether one is due for the
	 * mark reserved_ms, that is whether less than low_ms of it is left.
	 * Without them: wall_ms plus the window, due once less than low_ms is
	 * left.  The client sizes window_ms and low_ms (lease_hold.c).
	 */
	int64_t		(*reserve_target) (void *arg, int window_ms);
	bool		(*reserve_due) (void *arg, int64_t reserved_ms, int low_ms);

	/*
	 * Credentials for a new session, read again for each one (optional):
	 * "user:password" into buf (LEASE_AUTH_LEN bytes), "" for none.  Returns
	 * false with the reason in err (credentials that do not fit are an
	 * error, never cut short): the client then does not connect.
	 */
	bool		(*credentials) (void *arg, char *buf, size_t len, char *err, size_t errlen);

	/* Status (optional): state is "resolving", "connecting", "reattaching",
	 * "connected", "disconnected", "closed", "invalid" or "unresolved";
	 * set_error gets the current problem, "" once there is none; written
	 * is called for every high-water mark written to ZooKeeper. */
	void		(*status) (void *arg, const char *state, int64_t session_id, int timeout_ms);
	void		(*set_error) (void *arg, const char *msg);
	void		(*written) (void *arg, int64_t reserved_ms);
} LeaseEnv;

typedef struct LeaseConfig
{
	const char *zookeeper;		/* host:port[,host:port...][/chroot] */
	const char *namespace_;		/* ids live under /guid/<namespace_> */
	int			session_timeout_ms; /* requested; the server may grant another */
	int			nids;			/* ids 0 .. nids-1 (<= LEASE_MAX_IDS); 0: all */
	int32_t		previous_id;	/* tried first (the id held last); -1: none */
	int			reserve_window_ms;	/* the mark's window (due once half is
									 * left); 0: sized from the granted
									 * session timeout (lease_hold.c) */
	const char *holder;			/* data of the lease znode: who holds it */
	const char *session_owner;	/* one line naming this incarnation of the
								 * host: a saved session is reattached only
								 * by the same owner */
} LeaseConfig;

typedef struct LeaseClient LeaseClient;

/* A client for cfg (copied) and env (copied).  NULL when out of memory. */
extern LeaseClient *LeaseClientCreate(const LeaseConfig *cfg, const LeaseEnv *env);

/*
 * One round: open a session if there is none, lease an id if none is held,
 * else heartbeat and extend the reservation when due; then wait a little
 * in env->wait.  Returns false once env->wait asked to stop.
 */
extern bool LeaseClientStep(LeaseClient *c);

/* Step until env->wait asks to stop, then LeaseClientShutdown. */
extern void LeaseClientRun(LeaseClient *c);

/* Fence, close the session (which frees the id at once) and forget the
 * saved session.  The client may be stepped again (a new session). */
extern void LeaseClientShutdown(LeaseClient *c);

/* Free a client; its session, if still open, is closed first. */
extern void LeaseClientFree(LeaseClient *c);

/* The id held, or -1. */
extern int32_t LeaseClientId(const LeaseClient *c);

/* The current session's id and password (16 bytes); false when none. */
extern bool LeaseClientSession(const LeaseClient *c, int64_t *id, char passwd[16]);

/* ----------
 * The PostgreSQL host (coordinator/lease_worker.c)
 * ----------
 */

/* guid.status's view of the lease: the status area LEASE_STATUS_AREA. */
#define LEASE_STATUS_AREA		"lease"

typedef struct LeaseStatus
{
	char		state[32];		/* ZooKeeper connection state */
	int64_t		session_id;		/* current ZooKeeper session, 0 if none */
	int			timeout_ms;		/* session timeout granted */
} LeaseStatus;

/* The coordinator's loop in leased mode. */
extern void LeaseWorkerLoop(void);

#endif							/* GUID_LEASE_H */
