/*-------------------------------------------------------------------------
 *
 * lease_test_env.c
 *		The host the lease unit test runs its holders in: a LeaseEnv made of
 *		poll(), CLOCK_BOOTTIME and files in a temporary directory, a
 *		"generator" that records what it is told and checks it against
 *		ZooKeeper at that moment; plus TAP output and the test's own
 *		ZooKeeper handle.  No PostgreSQL.
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

#include "lease_test.h"

#define GUID_EPOCH_UNIX_MS		INT64_C(1735689600000)

/* ----------
 * TAP
 * ----------
 */
int			tap_n = 0;
int			tap_failed = 0;

bool
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

void
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

void
bail(const char *why)
{
	printf("Bail out! %s\n", why);
	exit(255);
}

uint64_t
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
const char *zk_address;
char		ns[64];
zhandle_t  *tz;
bool		tz_connected;
static struct
{
	bool		done;
	int			rc;
	char		value[128];
	int			version;
}			tr;

void
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
void
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
long long
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
int
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

static void
tz_void_done(int rc, const void *d)
{
	tr.rc = rc;
	tr.done = true;
}

/* Someone else (an operator freeing an id) deletes nodes/<id>, whoever
 * holds it. */
int
tz_delete_lease(int id)
{
	char		path[200];

	snprintf(path, sizeof(path), "/guid/%s/nodes/%d", ns, id);
	tr.done = false;
	if (zoo_adelete(tz, path, -1, tz_void_done, NULL) != ZOK)
		bail("zoo_adelete");
	tz_drive(tz, &tr.done);
	return tr.rc;
}

/* ----------
 * A holder: a LeaseClient and the host it runs in
 * ----------
 */

static uint64_t
h_monotonic(void *arg)
{
	Holder	   *h = arg;

	return boot_ns() + h->offset_ns;
}

/* Milliseconds since the guid epoch. */
int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - GUID_EPOCH_UNIX_MS;
}

static int64_t
h_wall(void *arg)
{
	return wall_ms();
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

void
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
	h->wall_at_install = h_wall(h);
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

static int64_t
h_seal(void *arg)
{
	Holder	   *h = arg;

	h->seals++;
	return h->issued_ms;
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
	.seal = h_seal,
	.status = h_status,
	.set_error = h_set_error,
	.written = h_written,
};

char		tmp_root[200];

/* A holder in its own directory (reused when dir_of is given). */
Holder *
holder_new(const char *name, int nids, const char *owner, Holder *dir_of)
{
	Holder	   *h = calloc(1, sizeof(*h));
	LeaseConfig cfg;
	LeaseEnv	env = holder_env;
	char		buf[128];
	int			previous = -1;

	h->name = name;
	h->id = h->last_id = -1;
	h->issued_ms = -1;
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
bool
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
void
step_for(Holder *h, int ms)
{
	uint64_t	until = boot_ns() + (uint64_t) ms * 1000000;

	while (boot_ns() < until)
		(void) LeaseClientStep(h->c);
}

