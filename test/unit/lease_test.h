/*-------------------------------------------------------------------------
 *
 * lease_test.h
 *		What the lease unit test's cases (lease_test.c) use of its host
 *		(lease_test_env.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEASE_TEST_H
#define LEASE_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <zookeeper/zookeeper.h>

#include "guid_lease.h"

#define SESSION_TIMEOUT_MS		4000
#define PATIENCE_S				40	/* a condition that does not come: fail */

typedef struct Holder
{
	const char *name;
	LeaseClient *c;
	char		dir[256];		/* its "data directory" */
	uint64_t	offset_ns;		/* added to its clock */
	uint64_t	jump_ns;		/* its clock jumps this much in every wait */

	/* what the protocol told it */
	int			installs;
	int			fences;
	int			raises;
	int			extends;
	int32_t		id;				/* installed id, -1 when fenced */
	int32_t		last_id;
	int64_t		floor_ms;
	int64_t		reserved_ms;
	uint64_t	deadline_ns;
	int64_t		written_max;	/* highest hwm it wrote */
	char		state[32];
	bool		saw_reattaching;
	char		error[LEASE_MSG_LEN];

	/* checks made at the moment of each effect */
	int			install_before_hwm; /* installs with hwm/<id> < reserved */
	int			install_before_file;	/* ... or the file < reserved */
	int			raise_before_hwm;
	int			raise_before_file;
	int			deadline_too_late;	/* deadline > now - jump + timeout/2 */
	long long	hwm_at_fence;	/* hwm/<id> when it last fenced */
	int64_t		issued_ms;		/* what seal reports (-1: unknown) */
	int			seals;
	int64_t		wall_at_install;	/* its wall clock at the last install */
} Holder;

/* TAP */
extern int	tap_n;
extern int	tap_failed;
extern bool ok(bool cond, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void diag(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void bail(const char *why) __attribute__((noreturn));
extern uint64_t boot_ns(void);
extern int64_t wall_ms(void);

/* The test's own ZooKeeper handle */
extern const char *zk_address;
extern char ns[64];
extern zhandle_t *tz;
extern bool tz_connected;
extern char tmp_root[200];
extern void tz_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx);
extern void tz_drive(zhandle_t *zh, bool *flag);
extern long long tz_hwm(int id, int *version);
extern int	tz_set_hwm(int id, long long value);
extern int	tz_delete_lease(int id);

/* Holders */
extern Holder *holder_new(const char *name, int nids, const char *owner, Holder *dir_of);
extern bool step_until(Holder *h, bool (*cond) (Holder *));
extern void step_for(Holder *h, int ms);
extern void h_save_session(void *arg, const char *text);

#endif							/* LEASE_TEST_H */
