/*-------------------------------------------------------------------------
 *
 * lease_test.c
 *		Unit test of the lease protocol (include/guid_lease.h) against a
 *		real ZooKeeper, without PostgreSQL.  TAP output.
 *
 * ZooKeeper's address comes from GUID_ZOOKEEPER (make test starts one);
 * every run uses its own random namespace.  The LeaseEnv here is the
 * simplest host there is: poll() for the wait, CLOCK_BOOTTIME, files in a
 * temporary directory, and a "generator" that only records what it is told,
 * so the test can check each effect against ZooKeeper at the moment the
 * protocol asks for it.
 *
 * Linked only with the plain-C protocol objects, extension/core/resolve.c
 * and -lzookeeper_st: no PostgreSQL anywhere.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "guid_lease.h"

#define GUID_EPOCH_UNIX_MS		INT64_C(1735689600000)
#define SESSION_TIMEOUT_MS		4000
#define PATIENCE_S				40	/* a condition that does not come: fail */

/* ----------
 * TAP
 * ----------
 */
static int	tap_n = 0;
static int	tap_failed = 0;

static bool
ok(bool cond, const char *fmt,...)
{
	va_list		ap;

	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return cond;
}

static void
diag(const char *fmt,...)
{
	va_list		ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void
bail(const char *why)
{
	printf("Bail out! %s\n", why);
	exit(255);
}

static uint64_t
boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ----------
 * The test's own ZooKeeper handle, to look at and meddle with the znodes
 * ----------
 */
static const char *zk_address;
static char ns[64];
static zhandle_t *tz;
static bool tz_connected;
static struct
{
	bool		done;
	int			rc;
	char		value[128];
	int			version;
}			tr;

static void
tz_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	if (type == ZOO_SESSION_EVENT)
		*(bool *) ctx = (state == ZOO_CONNECTED_STATE);
}

static void
tz_data_done(int rc, const char *value, int len, const struct Stat *st, const void *d)
{
	tr.rc = rc;
	tr.value[0] = '\0';
	if (rc == ZOK && value && len > 0 && len < (int) sizeof(tr.value))
	{
		memcpy(tr.value, value, len);
		tr.value[len] = '\0';
	}
	tr.version = (rc == ZOK && st) ? st->version : -1;
	tr.done = true;
}

static void
tz_stat_done(int rc, const struct Stat *st, const void *d)
{
	tr.rc = rc;
	tr.version = (rc == ZOK && st) ? st->version : -1;
	tr.done = true;
}

/* Drive zh until *flag is true; bail after PATIENCE_S. */
static void
tz_drive(zhandle_t *zh, bool *flag)
{
	uint64_t	until = boot_ns() + (uint64_t) PATIENCE_S * 1000000000;

	while (!*flag)
	{
		int			fd = -1;
		int			interest = 0;
		struct timeval tv;
		struct pollfd pfd;
		int			events = 0;

		if (boot_ns() > until)
			bail("the test's own ZooKeeper handle got no answer");
		if (zookeeper_interest(zh, &fd, &interest, &tv) != ZOK)
			fd = -1;
		pfd.fd = fd;
		pfd.events = ((interest & ZOOKEEPER_READ) ? POLLIN : 0) |
			((interest & ZOOKEEPER_WRITE) ? POLLOUT : 0);
		pfd.revents = 0;
		if (poll(&pfd, fd >= 0 ? 1 : 0, 50) > 0)
		{
			if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
				events |= ZOOKEEPER_READ;
			if (pfd.revents & POLLOUT)
				events |= ZOOKEEPER_WRITE;
		}
		(void) zookeeper_process(zh, events);
	}
}

/* The value of hwm/<id> (-1 if it cannot be read), and its version. */
static long long
tz_hwm(int id, int *version)
{
	char		path[200];

	snprintf(path, sizeof(path), "/guid/%s/hwm/%d", ns, id);
	tr.done = false;
	if (zoo_aget(tz, path, 0, tz_data_done, NULL) != ZOK)
		bail("zoo_aget");
	tz_drive(tz, &tr.done);
	if (version)
		*version = tr.version;
	return tr.rc == ZOK ? atoll(tr.value) : -1;
}

/* Someone else writes hwm/<id>, whatever its version. */
static int
tz_set_hwm(int id, long long value)
{
	char		path[200];
	char		v[32];

	snprintf(path, sizeof(path), "/guid/%s/hwm/%d", ns, id);
	snprintf(v, sizeof(v), "%lld", value);
	tr.done = false;
	if (zoo_aset(tz, path, v, (int) strlen(v), -1, tz_stat_done, NULL) != ZOK)
		bail("zoo_aset");
	tz_drive(tz, &tr.done);
	return tr.rc;
}

/* ----------
 * A holder: a LeaseClient and the host it runs in
 * ----------
 */
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
} Holder;

static uint64_t
h_monotonic(void *arg)
{
	Holder	   *h = arg;

	return boot_ns() + h->offset_ns;
}

static int64_t
h_wall(void *arg)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - GUID_EPOCH_UNIX_MS;
}

static void
h_log(void *arg, LeaseLogLevel level, const char *msg)
{
	Holder	   *h = arg;

	if (level != LEASE_LOG_DEBUG)
		diag("%s: %s", h->name, msg);
}

static bool
h_wait(void *arg, int fd, int events, long timeout_ms, int *ready)
{
	Holder	   *h = arg;
	struct pollfd pfd;

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
	h->offset_ns += h->jump_ns;
	return false;
}

static bool
h_write_file(Holder *h, const char *name, const char *text)
{
	char		path[400];
	char		tmp[410];
	int			fd;
	size_t		len = strlen(text);

	snprintf(path, sizeof(path), "%s/%s", h->dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return false;
	if (write(fd, text, len) != (ssize_t) len || fsync(fd) != 0)
	{
		close(fd);
		return false;
	}
	close(fd);
	return rename(tmp, path) == 0;
}

static bool
h_read_file(Holder *h, const char *name, char *buf, size_t len)
{
	char		path[400];
	int			fd;
	ssize_t		n;

	snprintf(path, sizeof(path), "%s/%s", h->dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* reserved_ms in the holder's reservation file, -1 if none */
static long long
h_file_reserved(Holder *h)
{
	char		buf[128];
	int			id;
	long long	ms;

	if (!h_read_file(h, "reservation", buf, sizeof(buf)) ||
		sscanf(buf, "node_id %d\nreserved_ms %lld", &id, &ms) != 2)
		return -1;
	return ms;
}

static bool
h_write_reservation(void *arg, int32_t id, int64_t reserved_ms, bool quiet)
{
	char		buf[128];

	snprintf(buf, sizeof(buf), "node_id %d\nreserved_ms %lld\n", (int) id, (long long) reserved_ms);
	return h_write_file(arg, "reservation", buf);
}

static void
h_save_session(void *arg, const char *text)
{
	(void) h_write_file(arg, "zksession", text);
}

static bool
h_load_session(void *arg, char *buf, size_t len)
{
	return h_read_file(arg, "zksession", buf, len);
}

static void
h_remove_session(void *arg)
{
	Holder	   *h = arg;
	char		path[400];

	snprintf(path, sizeof(path), "%s/zksession", h->dir);
	(void) unlink(path);
}

static void
h_install(void *arg, int32_t id, int64_t floor_ms, int64_t reserved_ms, uint64_t deadline_ns)
{
	Holder	   *h = arg;
	uint64_t	now = h_monotonic(h);

	h->installs++;
	h->id = h->last_id = id;
	h->floor_ms = floor_ms;
	h->reserved_ms = reserved_ms;
	h->deadline_ns = deadline_ns;
	if (tz_hwm(id, NULL) < reserved_ms)
		h->install_before_hwm++;
	if (h_file_reserved(h) < reserved_ms)
		h->install_before_file++;
	if (deadline_ns == 0 || deadline_ns + h->jump_ns > now + (uint64_t) SESSION_TIMEOUT_MS * 1000000 / 2)
		h->deadline_too_late++;
}

static void
h_extend(void *arg, uint64_t last_ack_ns, uint64_t deadline_ns)
{
	Holder	   *h = arg;
	uint64_t	now = h_monotonic(h);

	h->extends++;
	if (deadline_ns == 0)
		return;
	h->deadline_ns = deadline_ns;
	if (deadline_ns + h->jump_ns > now + (uint64_t) SESSION_TIMEOUT_MS * 1000000 / 2)
		h->deadline_too_late++;
}

static void
h_raise(void *arg, int64_t reserved_ms)
{
	Holder	   *h = arg;

	h->raises++;
	if (tz_hwm(h->id, NULL) < reserved_ms)
		h->raise_before_hwm++;
	if (h_file_reserved(h) < reserved_ms)
		h->raise_before_file++;
	if (reserved_ms > h->reserved_ms)
		h->reserved_ms = reserved_ms;
}

static void
h_fence(void *arg)
{
	Holder	   *h = arg;

	if (h->id >= 0)
	{
		h->fences++;
		h->hwm_at_fence = tz_hwm(h->id, NULL);
	}
	h->id = -1;
	h->deadline_ns = 0;
}

static void
h_status(void *arg, const char *state, int64_t session_id, int timeout_ms)
{
	Holder	   *h = arg;

	snprintf(h->state, sizeof(h->state), "%s", state);
	if (strcmp(state, "reattaching") == 0)
		h->saw_reattaching = true;
}

static void
h_set_error(void *arg, const char *msg)
{
	Holder	   *h = arg;

	snprintf(h->error, sizeof(h->error), "%s", msg);
}

static void
h_written(void *arg, int64_t reserved_ms)
{
	Holder	   *h = arg;

	if (reserved_ms > h->written_max)
		h->written_max = reserved_ms;
}

static const LeaseEnv holder_env = {
	.monotonic_ns = h_monotonic,
	.wall_ms = h_wall,
	.log = h_log,
	.wait = h_wait,
	.write_reservation = h_write_reservation,
	.save_session = h_save_session,
	.load_session = h_load_session,
	.remove_session = h_remove_session,
	.install = h_install,
	.extend = h_extend,
	.raise = h_raise,
	.fence = h_fence,
	.status = h_status,
	.set_error = h_set_error,
	.written = h_written,
};

static char tmp_root[200];

/* A holder in its own directory (reused when dir_of is given). */
static Holder *
holder_new(const char *name, int nids, const char *owner, Holder *dir_of)
{
	Holder	   *h = calloc(1, sizeof(*h));
	LeaseConfig cfg;
	LeaseEnv	env = holder_env;
	char		buf[128];
	int			previous = -1;

	h->name = name;
	h->id = h->last_id = -1;
	if (dir_of)
		snprintf(h->dir, sizeof(h->dir), "%s", dir_of->dir);
	else
	{
		snprintf(h->dir, sizeof(h->dir), "%s/%s", tmp_root, name);
		if (mkdir(h->dir, 0700) != 0)
			bail("mkdir");
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.zookeeper = zk_address;
	cfg.namespace_ = ns;
	cfg.session_timeout_ms = SESSION_TIMEOUT_MS;
	cfg.nids = nids;
	/* as the PostgreSQL host does: the id of the reservation file first */
	if (!h_read_file(h, "reservation", buf, sizeof(buf)) ||
		sscanf(buf, "node_id %d", &previous) != 1)
		previous = -1;
	cfg.previous_id = previous;
	cfg.holder = name;
	cfg.session_owner = owner;
	env.arg = h;
	h->c = LeaseClientCreate(&cfg, &env);
	if (h->c == NULL)
		bail("LeaseClientCreate");
	return h;
}

/* Step h until cond(h) holds; false after PATIENCE_S. */
static bool
step_until(Holder *h, bool (*cond) (Holder *))
{
	uint64_t	until = boot_ns() + (uint64_t) PATIENCE_S * 1000000000;

	while (!cond(h))
	{
		if (boot_ns() > until)
			return false;
		(void) LeaseClientStep(h->c);
	}
	return true;
}

/* Step h for ms milliseconds (of the real clock). */
static void
step_for(Holder *h, int ms)
{
	uint64_t	until = boot_ns() + (uint64_t) ms * 1000000;

	while (boot_ns() < until)
		(void) LeaseClientStep(h->c);
}

static bool
is_leased(Holder *h)
{
	return h->id >= 0;
}

static bool
is_refused(Holder *h)
{
	return strstr(h->error, "are leased") != NULL;
}

static int	want_fences;
static bool
fenced_enough(Holder *h)
{
	return h->fences >= want_fences;
}

static int	want_raises;
static bool
raised_enough(Holder *h)
{
	return h->raises >= want_raises;
}

static bool
effects_were_ordered(Holder *h)
{
	return ok(h->install_before_hwm == 0 && h->install_before_file == 0 &&
			  h->raise_before_hwm == 0 && h->raise_before_file == 0,
			  "%s: every install and raise came after hwm/<id> and the reservation file covered it "
			  "(%d installs, %d raises; out of order: %d/%d/%d/%d)",
			  h->name, h->installs, h->raises, h->install_before_hwm, h->install_before_file,
			  h->raise_before_hwm, h->raise_before_file);
}

int
main(void)
{
	Holder	   *a, *b, *c, *r, *r2, *r3;
	int32_t		a_id;
	int64_t		a_written;
	int64_t		b_written;
	int64_t		sid, sid2;
	char		passwd[16];
	long long	foreign;
	clientid_t	cid;
	zhandle_t  *thief;
	bool		thief_connected = false;
	uint64_t	t0;
	bool		got;

	zk_address = getenv("GUID_ZOOKEEPER");
	if (zk_address == NULL || zk_address[0] == '\0')
		bail("GUID_ZOOKEEPER not set: run this through make test");
	srand((unsigned) (boot_ns() ^ getpid()));
	snprintf(ns, sizeof(ns), "unit-%d-%08x", (int) getpid(), (unsigned) rand());
	snprintf(tmp_root, sizeof(tmp_root), "%s/lease_test.XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmp_root) == NULL)
		bail("mkdtemp");
	zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
	tz = zookeeper_init(zk_address, tz_watcher, 10000, NULL, &tz_connected, 0);
	if (tz == NULL)
		bail("zookeeper_init");
	tz_drive(tz, &tz_connected);
	diag("ZooKeeper %s, namespace %s, files in %s", zk_address, ns, tmp_root);

	/* Two ids in this namespace, three holders. */
	a = holder_new("a", 2, "", NULL);
	got = step_until(a, is_leased);
	ok(got, "a leases an id (%d)", a->id);
	ok(a->floor_ms == 0 && a->reserved_ms > 0, "... from a fresh mark: floor 0, reserved %lld",
	   (long long) a->reserved_ms);
	want_raises = 2;
	got = step_until(a, raised_enough);
	ok(got, "a extends its reservation as time passes (%d raises)", a->raises);
	effects_were_ordered(a);

	b = holder_new("b", 2, "", NULL);
	got = step_until(b, is_leased);
	ok(got, "b leases an id (%d)", b->id);
	ok(b->id >= 0 && b->id != a->id, "... another one than a's (%d, %d)", b->id, a->id);

	c = holder_new("c", 2, "", NULL);
	got = step_until(c, is_refused);
	ok(got && c->id < 0,
	   "c, a third holder of two ids, gets none: \"%s\"", c->error);
	step_for(a, 300);			/* a keeps writing its mark meanwhile */
	a_id = a->id;
	LeaseClientShutdown(a->c);
	a_written = a->written_max;
	ok(a->id < 0 && a->fences == 1, "a shuts down: fenced");
	got = step_until(c, is_leased);
	ok(got, "c leases an id once a let go (%d)", c->id);
	ok(c->id == a_id, "... a's (%d)", a_id);
	ok(c->floor_ms >= a_written && c->reserved_ms > c->floor_ms,
	   "... starting at a's high-water mark: floor %lld >= %lld, reserved %lld",
	   (long long) c->floor_ms, (long long) a_written, (long long) c->reserved_ms);
	effects_were_ordered(c);

	/*
	 * The deadline: only an answered write or sync moves it, to its send
	 * time + timeout/2.  b's clock jumps 300 ms in every wait, so an answer
	 * always comes at least 300 ms (of b's clock) after its request was
	 * sent: a deadline counted from anything later than the send time would
	 * be past now - 300 ms + timeout/2.
	 */
	b->jump_ns = 300 * 1000000ULL;
	b->extends = 0;
	want_raises = b->raises + 3;
	t0 = boot_ns();
	got = step_until(b, raised_enough);
	ok(got && b->extends >= 3,
	   "b renews its lease with its clock jumping (%d answered writes and syncs in %llu ms)",
	   b->extends, (unsigned long long) ((boot_ns() - t0) / 1000000));
	ok(b->deadline_too_late == 0,
	   "... every deadline <= send time + timeout/2 (%d later than that)", b->deadline_too_late);
	ok(b->id >= 0 && b->fences == 0, "... and stays leased");

	/* A foreign write to b's mark: b gives the lease up, and leases again above it. */
	foreign = tz_hwm(b->id, NULL) + 100000;
	ok(tz_set_hwm(b->id, foreign) == ZOK, "someone else writes hwm/%d = %lld", b->id, foreign);
	want_fences = 1;
	got = step_until(b, fenced_enough);
	ok(got, "b fences when its next write finds another version");
	ok(b->hwm_at_fence == foreign, "... without overwriting it (hwm/%d = %lld at the fence)",
	   b->last_id, b->hwm_at_fence);
	got = step_until(b, is_leased);
	ok(got && b->floor_ms >= foreign,
	   "... then leases again above it (floor %lld)", (long long) b->floor_ms);
	ok(b->deadline_too_late == 0,
	   "... its new lease's deadline too (%d later than send time + timeout/2)", b->deadline_too_late);
	b->jump_ns = 0;
	effects_were_ordered(b);

	/* Session expiry: another handle with b's session id and password closes it. */
	if (!LeaseClientSession(b->c, &sid, passwd))
		bail("b has no session");
	memset(&cid, 0, sizeof(cid));
	cid.client_id = sid;
	memcpy(cid.passwd, passwd, sizeof(cid.passwd));
	thief = zookeeper_init(zk_address, tz_watcher, SESSION_TIMEOUT_MS, &cid, &thief_connected, 0);
	if (thief == NULL)
		bail("zookeeper_init with b's session");
	tz_drive(thief, &thief_connected);
	zookeeper_close(thief);
	b_written = b->written_max;
	diag("closed b's session %llx from another handle", (unsigned long long) sid);
	want_fences = 2;
	got = step_until(b, fenced_enough);
	ok(got, "b fences when its session is gone");
	got = step_until(b, is_leased);
	ok(got, "b leases again (%d)", b->id);
	got = LeaseClientSession(b->c, &sid2, passwd);
	ok(got && sid2 != sid,
	   "... in a new session (%llx)", (unsigned long long) sid2);
	ok(b->floor_ms >= b_written,
	   "... above its id's high-water mark (floor %lld >= %lld)",
	   (long long) b->floor_ms, (long long) b_written);

	/* Reattaching a saved session after a "crash" of the host. */
	LeaseClientShutdown(c->c);
	r = holder_new("r", 2, "owner 1", NULL);
	got = step_until(r, is_leased);
	ok(got, "r leases an id (%d)", r->id);
	if (!LeaseClientSession(r->c, &sid, passwd))
		bail("r has no session");
	/* r "crashes": its client is dropped without a word to ZooKeeper. */
	r2 = holder_new("r2", 2, "owner 1", r);
	got = step_until(r2, is_leased);
	ok(got, "r2, the same owner restarted, leases (%d)", r2->id);
	got = LeaseClientSession(r2->c, &sid2, passwd);
	ok(r2->saw_reattaching && got && sid2 == sid,
	   "... reattaching r's session %llx", (unsigned long long) sid);
	ok(r2->id == r->id, "... and keeping its id (%d)", r->id);
	effects_were_ordered(r2);
	LeaseClientShutdown(r2->c);
	r3 = holder_new("r3", 2, "owner 2", r);
	h_save_session(r3, "owner 1\nsession 1234\npasswd 00000000000000000000000000000000\n");
	got = step_until(r3, is_leased);
	ok(got && !r3->saw_reattaching,
	   "a saved session of another owner is not reattached");

	LeaseClientShutdown(b->c);
	LeaseClientShutdown(r3->c);
	LeaseClientFree(b->c);
	LeaseClientFree(r3->c);
	zookeeper_close(tz);
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
