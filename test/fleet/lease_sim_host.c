/*-------------------------------------------------------------------------
 *
 * lease_sim_host.c
 *		The host each simulated lease holder runs in: a thread with its own
 *		LeaseClient (the project's lease protocol, coordinator/lease_*.c),
 *		its own ZooKeeper session, and a "generator" kept in memory that
 *		checks what the protocol tells it at the moment it is told.
 *
 * One thread per holder, with a small stack: the LeaseClient blocks only in
 * env->wait (poll() on its own ZooKeeper socket), and the single-threaded
 * ZooKeeper client handle it owns is used by that thread only.  Callbacks
 * run on the holder's thread and take Sim.lock for what they share.
 *
 * The generator issues one ID per wait while it may: installed, before its
 * deadline, not sealed, at max(clock, floor + 1, last issued) and never
 * above its reservation.  So it issues up to what the protocol allows, and
 * the checks below see what a real one could have done:
 *
 *	- install and raise only once hwm/<id> (env->written, called when
 *	  ZooKeeper acknowledged the versioned set) and the local record
 *	  (env->write_reservation) cover the reservation;
 *	- an id is installed with a floor at or above every millisecond any
 *	  earlier holder of that id issued;
 *	- an id is never installed while another live holder's lease of it is
 *	  still valid (its deadline not passed);
 *	- the deadline is at most half the session timeout away.
 *
 * A holder killed (SIM_KILL) stops inside its wait and never returns: like
 * a crashed host, it neither closes its session nor issues anything more,
 * and ZooKeeper expires the session after its timeout.  A holder closed
 * (SIM_CLOSE) shuts down cleanly (seal, write-back, close).
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "lease_sim.h"

#define GUID_EPOCH_UNIX_MS		INT64_C(1735689600000)

/* Holder threads need little stack: the deepest path is the client's own
 * (buffers of a few kB) plus glibc's getaddrinfo. */
#define HOLDER_STACK			(256 * 1024)

static const char *const check_names[CHECK_COUNT] = {
	"install_before_hwm",
	"install_before_local",
	"raise_before_hwm",
	"raise_before_local",
	"floor_below_issued",
	"two_holders",
	"deadline_too_late",
};

const char *
sim_check_name(SimCheck check)
{
	return check_names[check];
}

uint64_t
sim_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
sim_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - GUID_EPOCH_UNIX_MS;
}

/* sim_report: a line on stderr about holder h (which may be NULL). */
void
sim_report(SimHolder *h, const char *fmt,...)
{
	char		line[1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (h)
		fprintf(stderr, "holder %d: %s\n", h->idx, line);
	else
		fprintf(stderr, "%s\n", line);
}

/* A failed check: counted, and said on stderr.  Caller holds Sim.lock. */
static void
check_failed(SimHolder *h, SimCheck check, const char *fmt,...)
{
	char		detail[512];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	sim.violations[check]++;
	sim_report(h, "VIOLATION %s: %s", check_names[check], detail);
}

/* sim_holder_full: h waits because every id of the namespace is leased
 * (what the protocol reports then, lease_hold.c).  Caller holds Sim.lock. */
bool
sim_holder_full(const SimHolder *h)
{
	return h->id < 0 && !h->dead && strstr(h->error, " node ids of namespace ") != NULL &&
		strstr(h->error, " are leased") != NULL;
}

/* The generator issues what it may now.  Caller holds Sim.lock. */
static void
gen_issue(SimHolder *h, uint64_t now)
{
	int64_t		ms;

	if (h->id < 0 || h->sealed || now >= h->deadline_ns)
		return;
	ms = sim_wall_ms();
	if (ms <= h->floor_ms)
		ms = h->floor_ms + 1;
	if (ms < h->issued_ms)
		ms = h->issued_ms;		/* the same millisecond, next sequence */
	if (ms > h->reserved_ms)
		return;					/* waits for the mark */
	h->issued_ms = ms;
	if (ms > sim.ids[h->id].max_issued)
		sim.ids[h->id].max_issued = ms;
}

/* A deadline passed while installed: counted once per lapse.  Caller holds
 * Sim.lock. */
static void
gen_check_lapse(SimHolder *h, uint64_t now)
{
	if (h->id >= 0 && !h->lapsed && now >= h->deadline_ns)
	{
		h->lapsed = true;
		sim.lapses++;
		if (sim.verbose)
			sim_report(h, "deadline passed while holding id %d", (int) h->id);
	}
}

/*
 * Every zoo_acreate() of the lease code comes here (the simulator is linked
 * with -Wl,--wrap=zoo_acreate): the creates of lease znodes are counted,
 * which is what a fleet starting at once costs ZooKeeper, whatever the
 * protocol's choice of ids.
 */
extern int	__real_zoo_acreate(zhandle_t *zh, const char *path, const char *value, int valuelen,
							   const struct ACL_vector *acl, int mode,
							   string_completion_t completion, const void *data);
extern int	__wrap_zoo_acreate(zhandle_t *zh, const char *path, const char *value, int valuelen,
							   const struct ACL_vector *acl, int mode,
							   string_completion_t completion, const void *data);

int
__wrap_zoo_acreate(zhandle_t *zh, const char *path, const char *value, int valuelen,
				   const struct ACL_vector *acl, int mode,
				   string_completion_t completion, const void *data)
{
	if (strstr(path, "/nodes/") != NULL)
		atomic_fetch_add(&sim.lease_creates, 1);
	return __real_zoo_acreate(zh, path, value, valuelen, acl, mode, completion, data);
}

/* ----------
 * The LeaseEnv
 * ----------
 */

static uint64_t
h_monotonic(void *arg)
{
	return sim_now_ns();
}

static int64_t
h_wall(void *arg)
{
	return sim_wall_ms();
}

static void
h_log(void *arg, LeaseLogLevel level, const char *msg)
{
	if (sim.verbose && level != LEASE_LOG_DEBUG)
		sim_report(arg, "%s", msg);
}

static bool
h_wait(void *arg, int fd, int events, long timeout_ms, int *ready)
{
	SimHolder  *h = arg;
	struct pollfd pfd;
	uint64_t	now;
	int			command;

	pfd.fd = fd;
	pfd.events = ((events & LEASE_WAIT_READ) ? POLLIN : 0) |
		((events & LEASE_WAIT_WRITE) ? POLLOUT : 0);
	pfd.revents = 0;
	*ready = 0;
	if (poll(&pfd, fd >= 0 ? 1 : 0, (int) timeout_ms) > 0)
	{
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
			*ready |= LEASE_WAIT_READ;
		if (pfd.revents & POLLOUT)
			*ready |= LEASE_WAIT_WRITE;
	}

	command = atomic_load(&h->command);
	now = sim_now_ns();
	pthread_mutex_lock(&sim.lock);
	if (command == SIM_KILL)
	{
		/* the host is gone: its generator with it */
		if (h->id >= 0 && sim.ids[h->id].holder == h->idx)
			sim.ids[h->id].holder = -1;
		h->id = -1;
		h->dead = true;
	}
	else
	{
		gen_check_lapse(h, now);
		gen_issue(h, now);
	}
	pthread_mutex_unlock(&sim.lock);

	/* A crash: never come back, never touch the session again. */
	while (command == SIM_KILL)
		pause();
	return command != SIM_RUN;
}

static bool
h_write_reservation(void *arg, int32_t id, int64_t reserved_ms, bool quiet)
{
	SimHolder  *h = arg;

	pthread_mutex_lock(&sim.lock);
	h->local_id = id;
	h->local_ms = reserved_ms;
	pthread_mutex_unlock(&sim.lock);
	return true;
}

static void
h_install(void *arg, int32_t id, int64_t floor_ms, int64_t reserved_ms, uint64_t deadline_ns)
{
	SimHolder  *h = arg;
	uint64_t	now = sim_now_ns();
	SimId	   *s = &sim.ids[id];

	pthread_mutex_lock(&sim.lock);
	if (h->written_ms < reserved_ms)
		check_failed(h, CHECK_INSTALL_BEFORE_HWM, "id %d installed up to %lld, hwm written %lld",
					 (int) id, (long long) reserved_ms, (long long) h->written_ms);
	if (h->local_id != id || h->local_ms < reserved_ms)
		check_failed(h, CHECK_INSTALL_BEFORE_LOCAL, "id %d installed up to %lld, local record %d/%lld",
					 (int) id, (long long) reserved_ms, (int) h->local_id, (long long) h->local_ms);
	if (floor_ms < s->max_issued)
		check_failed(h, CHECK_FLOOR_BELOW_ISSUED, "id %d installed at floor %lld, issued up to %lld",
					 (int) id, (long long) floor_ms, (long long) s->max_issued);
	if (s->holder >= 0 && s->holder != h->idx)
	{
		SimHolder  *g = sim.holders[s->holder];

		if (!g->dead && g->id == id && now < g->deadline_ns)
			check_failed(h, CHECK_TWO_HOLDERS, "id %d installed while holder %d's lease of it lasts %lld ms more",
						 (int) id, g->idx, (long long) ((g->deadline_ns - now) / 1000000));
	}
	if (deadline_ns > now + (uint64_t) h->timeout_ms * 1000000 / 2)
		check_failed(h, CHECK_DEADLINE_TOO_LATE, "deadline %lld ms away, timeout %d ms",
					 (long long) ((deadline_ns - now) / 1000000), h->timeout_ms);

	h->id = h->last_id = id;
	h->floor_ms = floor_ms;
	h->reserved_ms = reserved_ms;
	h->deadline_ns = deadline_ns;
	h->lapsed = false;
	h->sealed = false;
	s->holder = h->idx;
	s->mark = h->written_ms;
	if (!h->leased_once)
	{
		h->leased_once = true;
		if (sim.nttl == sim.ttl_cap)
		{
			sim.ttl_cap = sim.ttl_cap ? 2 * sim.ttl_cap : 1024;
			sim.ttl = realloc(sim.ttl, sim.ttl_cap * sizeof(double));
			if (sim.ttl == NULL)
				abort();
		}
		sim.ttl[sim.nttl++] = (double) (now - h->started_ns) / 1e6;
	}
	pthread_mutex_unlock(&sim.lock);
}

static void
h_extend(void *arg, uint64_t last_ack_ns, uint64_t deadline_ns)
{
	SimHolder  *h = arg;
	uint64_t	now = sim_now_ns();

	pthread_mutex_lock(&sim.lock);
	h->last_ack_ns = last_ack_ns;
	if (deadline_ns != 0 && h->id >= 0)
	{
		gen_check_lapse(h, now);
		if (deadline_ns > now + (uint64_t) h->timeout_ms * 1000000 / 2)
			check_failed(h, CHECK_DEADLINE_TOO_LATE, "deadline %lld ms away, timeout %d ms",
						 (long long) ((deadline_ns - now) / 1000000), h->timeout_ms);
		h->deadline_ns = deadline_ns;
		if (deadline_ns > now)
			h->lapsed = false;
	}
	pthread_mutex_unlock(&sim.lock);
}

static void
h_raise(void *arg, int64_t reserved_ms)
{
	SimHolder  *h = arg;

	pthread_mutex_lock(&sim.lock);
	if (h->written_ms < reserved_ms)
		check_failed(h, CHECK_RAISE_BEFORE_HWM, "raised to %lld, hwm written %lld",
					 (long long) reserved_ms, (long long) h->written_ms);
	if (h->local_id != h->id || h->local_ms < reserved_ms)
		check_failed(h, CHECK_RAISE_BEFORE_LOCAL, "raised to %lld, local record %d/%lld",
					 (long long) reserved_ms, (int) h->local_id, (long long) h->local_ms);
	if (reserved_ms > h->reserved_ms)
		h->reserved_ms = reserved_ms;
	pthread_mutex_unlock(&sim.lock);
}

static void
h_fence(void *arg)
{
	SimHolder  *h = arg;

	pthread_mutex_lock(&sim.lock);
	if (h->id >= 0)
	{
		if (atomic_load(&h->command) == SIM_RUN)
		{
			sim.lost++;
			if (sim.verbose)
				sim_report(h, "lost id %d: %s", (int) h->id, h->error);
		}
		if (sim.ids[h->id].holder == h->idx)
			sim.ids[h->id].holder = -1;
	}
	h->id = -1;
	h->deadline_ns = 0;
	h->written_ms = -1;
	pthread_mutex_unlock(&sim.lock);
}

static int64_t
h_seal(void *arg)
{
	SimHolder  *h = arg;
	int64_t		issued;

	pthread_mutex_lock(&sim.lock);
	h->sealed = true;
	issued = h->issued_ms;
	pthread_mutex_unlock(&sim.lock);
	return issued;
}

static void
h_status(void *arg, const char *state, int64_t session_id, int timeout_ms)
{
	SimHolder  *h = arg;

	pthread_mutex_lock(&sim.lock);
	snprintf(h->state, sizeof(h->state), "%s", state);
	h->session_id = session_id;
	if (timeout_ms > 0)
		h->timeout_ms = timeout_ms;
	pthread_mutex_unlock(&sim.lock);
}

static void
h_set_error(void *arg, const char *msg)
{
	SimHolder  *h = arg;

	pthread_mutex_lock(&sim.lock);
	snprintf(h->error, sizeof(h->error), "%s", msg);
	pthread_mutex_unlock(&sim.lock);
}

static void
h_written(void *arg, int64_t reserved_ms)
{
	SimHolder  *h = arg;

	pthread_mutex_lock(&sim.lock);
	if (reserved_ms > h->written_ms)
		h->written_ms = reserved_ms;
	if (h->id >= 0)
		sim.ids[h->id].mark = reserved_ms;
	pthread_mutex_unlock(&sim.lock);
}

static const LeaseEnv holder_env = {
	.monotonic_ns = h_monotonic,
	.wall_ms = h_wall,
	.log = h_log,
	.wait = h_wait,
	.write_reservation = h_write_reservation,
	.install = h_install,
	.extend = h_extend,
	.raise = h_raise,
	.fence = h_fence,
	.seal = h_seal,
	.status = h_status,
	.set_error = h_set_error,
	.written = h_written,
};

/* ----------
 * The holder's thread
 * ----------
 */

static void *
holder_main(void *arg)
{
	SimHolder  *h = arg;

	while (LeaseClientStep(h->c))
		;
	/* only SIM_CLOSE gets here: SIM_KILL never leaves h_wait */
	LeaseClientShutdown(h->c);
	LeaseClientFree(h->c);
	h->c = NULL;
	pthread_mutex_lock(&sim.lock);
	h->dead = true;
	snprintf(h->state, sizeof(h->state), "closed");
	pthread_mutex_unlock(&sim.lock);
	return NULL;
}

/*
 * sim_holder_start: a new holder numbered idx, its client and its thread.
 * Returns NULL (reported) when it cannot be made.  The caller adds it to
 * sim.holders under Sim.lock before anything can look it up: the thread
 * looks up only itself until then.
 */
SimHolder *
sim_holder_start(int idx)
{
	SimHolder  *h = calloc(1, sizeof(*h));
	LeaseConfig cfg;
	LeaseEnv	env = holder_env;
	char		holder[64];
	pthread_attr_t attr;
	int			rc;

	if (h == NULL)
		return NULL;
	h->idx = idx;
	h->id = h->last_id = h->local_id = -1;
	h->issued_ms = h->written_ms = h->local_ms = -1;
	h->timeout_ms = sim.timeout_ms;
	atomic_init(&h->command, SIM_RUN);
	snprintf(h->state, sizeof(h->state), "starting");

	memset(&cfg, 0, sizeof(cfg));
	cfg.zookeeper = sim.zookeeper;
	cfg.namespace_ = sim.namespace_;
	cfg.session_timeout_ms = sim.timeout_ms;
	cfg.previous_id = -1;
	snprintf(holder, sizeof(holder), "guid_lease_sim pid %d holder %d", (int) getpid(), idx);
	cfg.holder = holder;
	cfg.session_owner = "";		/* no saved session: nothing to reattach */
	env.arg = h;
	h->c = LeaseClientCreate(&cfg, &env);
	if (h->c == NULL)
	{
		sim_report(h, "LeaseClientCreate failed");
		free(h);
		return NULL;
	}

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, HOLDER_STACK);
	h->started_ns = sim_now_ns();
	rc = pthread_create(&h->thread, &attr, holder_main, h);
	pthread_attr_destroy(&attr);
	if (rc != 0)
	{
		sim_report(h, "pthread_create: %s", strerror(rc));
		LeaseClientFree(h->c);
		free(h);
		return NULL;
	}
	return h;
}
