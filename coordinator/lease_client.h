/*-------------------------------------------------------------------------
 *
 * lease_client.h
 *		The LeaseClient's state, shared by lease_protocol.c (the protocol)
 *		and lease_zk.c (its requests to ZooKeeper).  Private to them.
 *
 * Plain C: no PostgreSQL header.  Every field belongs to one client and is
 * touched only by the thread stepping it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEASE_CLIENT_H
#define LEASE_CLIENT_H

#include <zookeeper/zookeeper.h>

#include "guid_lease.h"
#include "guid_resolve.h"

/* High-water mark writes whose answer was lost that are remembered. */
#define LEASE_HWM_UNSURE_MAX	8

/* The one request in flight, filled by the completion callbacks. */
typedef struct LeaseCall
{
	uint64_t	seq;			/* which request this result belongs to */
	bool		done;
	int			rc;
	bool		has_stat;
	struct Stat stat;
	int			value_len;
	char		value[512];
	int			nchildren;
	int32_t		children[LEASE_MAX_IDS];	/* numeric child names */
} LeaseCall;

struct LeaseClient
{
	LeaseConfig cfg;			/* strings below are our own copies */
	LeaseEnv	env;
	char	   *zookeeper;
	char	   *namespace_;
	char	   *holder;
	char	   *session_owner;
	char		base_path[256]; /* /guid/<namespace> */

	zhandle_t  *zk;
	LeaseCall	call;
	uint64_t	seq;
	char		client_log[256];	/* the ZooKeeper client's last message */
	char		auth[LEASE_AUTH_LEN];	/* credentials of this session, "" if
										 * none */
	struct ACL	acl[2];
	struct ACL_vector acl_vector;

	/* Session events, set by the watcher. */
	bool		connected;
	bool		expired;
	bool		auth_failed;
	bool		stopping;		/* env->wait asked us to stop */

	GuidResolve *lookup;		/* host names being resolved, or NULL */
	uint64_t	lookup_started;
	uint64_t	connect_started;

	unsigned int rand_state;	/* rand_r(): a free id after a lost race */
	int32_t		previous_id;	/* tried first at the next lease */
	int32_t		leased_id;		/* -1 when none */
	bool		installed;		/* the generator issues under our lease */
	int32_t		installed_id;	/* id installed in this session, -1: none */
	int32_t		reattached_id;	/* id a reattached session had installed */
	int64_t		installed_floor;	/* the floor it was installed at */
	int64_t		reattached_floor;	/* the floor reattached_id had */
	uint64_t	grace_until;	/* requests are still waited for while
								 * stopping until then (the write-back) */
	int32_t		hwm_version;
	int64_t		hwm_value;
	int64_t		reserved;		/* last reservation installed or raised */
	uint64_t	last_ack;		/* send time of the last answered write/sync */
	uint64_t	last_heartbeat;

	/*
	 * Values written to hwm/<id> with the expected version hwm_version whose
	 * answer was lost (connection loss): at most one of them can have been
	 * applied, and if one was, the mark is now at hwm_version + 1.
	 */
	int64_t		hwm_unsure[LEASE_HWM_UNSURE_MAX];
	int			hwm_nunsure;

	bool		local_write_failing;	/* last reservation write failed */
	char		last_logged_error[LEASE_MSG_LEN];
};

/* lease_zk.c: the requests, each waited for */
extern void lease_zk_pump(LeaseClient *c, long max_ms);
extern int	lease_zk_create(LeaseClient *c, const char *path, const char *value, int flags);
extern int	lease_zk_get(LeaseClient *c, const char *path);
extern int	lease_zk_set(LeaseClient *c, const char *path, const char *value, int version);
extern int	lease_zk_exists(LeaseClient *c, const char *path);
extern int	lease_zk_children(LeaseClient *c, const char *path);
extern int	lease_zk_sync(LeaseClient *c, const char *path);
extern zhandle_t *lease_zk_open(LeaseClient *c, const char *connect, const clientid_t *saved);
extern void lease_zk_close(LeaseClient *c);
extern int64_t lease_zk_session_id(const LeaseClient *c);
extern int	lease_zk_timeout(const LeaseClient *c);

/* lease_protocol.c: reporting, in one place */
extern void lease_log(LeaseClient *c, LeaseLogLevel level, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
extern void lease_error(LeaseClient *c, const char *msg);
extern void lease_clear_error(LeaseClient *c);

/* lease_hold.c: taking an id and keeping its high-water mark */
extern bool lease_acquire(LeaseClient *c, char *err, size_t errlen);
extern bool lease_maintain(LeaseClient *c, char *err, size_t errlen);
extern void lease_write_back(LeaseClient *c);
extern int	lease_window_ms(const LeaseClient *c);

#endif							/* LEASE_CLIENT_H */
