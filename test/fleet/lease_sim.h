/*-------------------------------------------------------------------------
 *
 * lease_sim.h
 *		What the fleet lease simulator's control loop (lease_sim.c) shares
 *		with the host its holders run in (lease_sim_host.c).
 *
 * Every field of Sim and SimHolder below the thread handle is protected by
 * Sim.lock, except where it says otherwise.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEASE_SIM_H
#define LEASE_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "guid_lease.h"

/* What the control loop asks of a holder (SimHolder.command). */
#define SIM_RUN					0
#define SIM_KILL				1	/* stop dead: the session is left open */
#define SIM_CLOSE				2	/* clean shutdown: write-back, close */

/* Invariant checks, counted in Sim.violations[] */
typedef enum SimCheck
{
	CHECK_INSTALL_BEFORE_HWM,	/* installed above what hwm/<id> covered */
	CHECK_INSTALL_BEFORE_LOCAL, /* ... or the local record */
	CHECK_RAISE_BEFORE_HWM,
	CHECK_RAISE_BEFORE_LOCAL,
	CHECK_FLOOR_BELOW_ISSUED,	/* installed below what the id issued */
	CHECK_TWO_HOLDERS,			/* installed while another holder's lease of
								 * the id was still valid */
	CHECK_DEADLINE_TOO_LATE,	/* deadline beyond now + timeout/2 */
	CHECK_COUNT
} SimCheck;

typedef struct SimHolder
{
	int			idx;			/* 0, 1, ...: order of creation */
	pthread_t	thread;
	LeaseClient *c;				/* only its thread touches it */
	atomic_int	command;		/* SIM_*, set by the control loop */
	uint64_t	started_ns;		/* when its thread was started */

	/* what the protocol told its generator */
	int32_t		id;				/* installed id, -1 when fenced */
	int32_t		last_id;		/* the last id it installed, -1: none */
	int64_t		floor_ms;
	int64_t		reserved_ms;	/* it issues nothing above */
	uint64_t	deadline_ns;	/* ... nor past this (monotonic) */
	uint64_t	last_ack_ns;	/* last confirmation of the session */
	int64_t		issued_ms;		/* highest millisecond it issued, -1: none */
	bool		sealed;			/* clean shutdown: issues nothing more */
	bool		lapsed;			/* its deadline passed while installed */
	int64_t		written_ms;		/* highest mark written since the last
								 * fence, -1: none */
	int32_t		local_id;		/* its local record: id, reserved_ms */
	int64_t		local_ms;
	int			timeout_ms;		/* session timeout granted */
	int64_t		session_id;
	char		state[32];
	char		error[LEASE_MSG_LEN];
	bool		leased_once;
	bool		dead;			/* its thread is done (killed or closed) */
} SimHolder;

/* What the simulator knows of each node id, over all its holders. */
typedef struct SimId
{
	int			holder;			/* idx of the holder it is installed in, -1 */
	int64_t		max_issued;		/* highest millisecond any holder issued */
	int64_t		mark;			/* highest mark any holder wrote */
} SimId;

typedef struct Sim
{
	pthread_mutex_t lock;
	const char *zookeeper;		/* set once at start, then read-only */
	const char *namespace_;
	int			timeout_ms;
	bool		verbose;

	SimHolder **holders;
	int			nholders;
	int			cap;
	SimId		ids[LEASE_MAX_IDS];

	long		violations[CHECK_COUNT];
	long		lapses;			/* deadlines passed while installed */
	long		lost;			/* fenced by the protocol (expiry, znode
								 * gone) while installed, not asked to */
	atomic_long lease_creates;	/* creates of nodes/<id> (atomic, no lock) */
	uint64_t	mark_ns;		/* the control loop's last "mark" */

	/* time-to-lease samples (ms) since the last "mark" */
	double	   *ttl;
	int			nttl;
	int			ttl_cap;
} Sim;

extern Sim	sim;

/* lease_sim_host.c */
extern uint64_t sim_now_ns(void);
extern int64_t sim_wall_ms(void);
extern SimHolder *sim_holder_start(int idx);
extern void sim_report(SimHolder *h, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern const char *sim_check_name(SimCheck check);
extern bool sim_holder_full(const SimHolder *h);

#endif							/* LEASE_SIM_H */
