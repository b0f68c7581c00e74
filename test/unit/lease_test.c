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
 * The host, TAP output and the test's own handle are in lease_test_env.c.
 * Linked only with the plain-C protocol objects, extension/core/resolve.c
 * and -lzookeeper_st: no PostgreSQL anywhere.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lease_test.h"

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
	Holder	   *a, *b, *c, *r, *r2, *r3, *e, *f, *s, *s2, *x;
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

	/*
	 * The window comes from the session timeout: the mark covers the
	 * fencing horizon (timeout/2) with room to spare, so an outage shorter
	 * than the deadline never runs the holder into its mark; and it stays
	 * below a full timeout, which an expiry takes at least.
	 */
	{
		int64_t		ahead = a->reserved_ms - wall_ms();

		ok(ahead > SESSION_TIMEOUT_MS / 2 && ahead < SESSION_TIMEOUT_MS,
		   "a's mark is between timeout/2 and timeout ahead of its clock (%lld ms, timeout %d ms)",
		   (long long) ahead, SESSION_TIMEOUT_MS);
		step_for(a, SESSION_TIMEOUT_MS / 2);
		ahead = a->reserved_ms - wall_ms();
		ok(ahead > SESSION_TIMEOUT_MS / 2,
		   "... and still is after half a timeout of steps (%lld ms)", (long long) ahead);
	}

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
	a_written = a->written_max;
	/* a's "generator" last issued 200 ms ago: the mark goes back down to it */
	a->issued_ms = wall_ms() - 200;
	LeaseClientShutdown(a->c);
	ok(a->id < 0 && a->fences == 1 && a->seals == 1, "a shuts down: fenced, then sealed");
	ok(tz_hwm(a_id, NULL) == a->issued_ms && a->issued_ms < a_written,
	   "... and wrote hwm/%d back down to its last issued millisecond (%lld, was %lld)",
	   a_id, tz_hwm(a_id, NULL), (long long) a_written);
	got = step_until(c, is_leased);
	ok(got, "c leases an id once a let go (%d)", c->id);
	ok(c->id == a_id, "... a's (%d)", a_id);
	ok(c->floor_ms == a->issued_ms && c->reserved_ms > c->floor_ms,
	   "... starting above a's last issued millisecond: floor %lld, reserved %lld",
	   (long long) c->floor_ms, (long long) c->reserved_ms);
	ok(c->floor_ms < c->wall_at_install,
	   "... which its clock has passed: no wait for a's window (floor %lld, clock %lld)",
	   (long long) c->floor_ms, (long long) c->wall_at_install);
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

	/*
	 * Reattaching a saved session after a "crash" of the host.  The id r
	 * gets was last held by someone whose clock ran a minute ahead: its
	 * mark (written back down to its last issued millisecond) is r's floor.
	 */
	LeaseClientShutdown(c->c);
	if (tz_set_hwm(c->last_id, (long long) (wall_ms() + 60000)) != ZOK)
		bail("could not set the free id's mark");
	r = holder_new("r", 2, "owner 1", NULL);
	got = step_until(r, is_leased);
	ok(got, "r leases an id (%d)", r->id);
	ok(r->id == c->last_id && r->floor_ms > wall_ms() + 30000,
	   "... the free one, above its previous holder's mark (floor %lld)", (long long) r->floor_ms);
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
	ok(r2->reserved_ms <= r->reserved_ms + SESSION_TIMEOUT_MS,
	   "... without taking its own mark for a floor (mark %lld, r's %lld)",
	   (long long) r2->reserved_ms, (long long) r->reserved_ms);

	/*
	 * But the floor r was given still holds: the previous holder issued up
	 * to it, and r's host need not have recorded it locally (guid_lease.h
	 * lets a host record about a second ahead of its own clock; the
	 * PostgreSQL host's GuidInstallLease goes on when its covering write
	 * fails).  A reattach at floor 0 then repeats the previous holder's IDs.
	 */
	ok(r2->floor_ms >= r->floor_ms,
	   "... nor forgetting the floor r was given (floor %lld, r's %lld)",
	   (long long) r2->floor_ms, (long long) r->floor_ms);
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

	/*
	 * A reattached session that no longer holds the id its crashed
	 * incarnation had installed.  s holds the one id of its namespace and
	 * stops (frozen: it does not see what follows); its lease znode is
	 * deleted (an operator freeing the id); x takes the id, issues above
	 * s's mark and hands it over cleanly (its mark written back down to its
	 * last millisecond).  s "crashes" and s2 reattaches
	 * s's session, which is still alive, and creates the znode anew: the id
	 * was held by someone else meanwhile, so the floor s was given is no
	 * floor any more, x's mark is.
	 */
	snprintf(ns, sizeof(ns), "unit-%d-%08x-d", (int) getpid(), (unsigned) rand());
	s = holder_new("s", 1, "owner 3", NULL);
	got = step_until(s, is_leased);
	ok(got && s->id == 0, "s leases the one id of a namespace (floor %lld)", (long long) s->floor_ms);
	if (!LeaseClientSession(s->c, &sid, passwd))
		bail("s has no session");
	ok(tz_delete_lease(0) == ZOK, "s's lease znode is deleted behind its back");
	x = holder_new("x", 1, "", NULL);
	got = step_until(x, is_leased);
	ok(got && x->id == 0 && x->floor_ms >= s->reserved_ms,
	   "x takes the id, above s's mark (floor %lld >= %lld)",
	   (long long) x->floor_ms, (long long) s->reserved_ms);
	x->issued_ms = x->reserved_ms - 1;
	LeaseClientShutdown(x->c);
	ok(tz_hwm(0, NULL) == x->issued_ms && x->issued_ms > s->reserved_ms,
	   "x issued up to just below its mark, above s's, and wrote the mark back down to that (%lld)",
	   (long long) x->issued_ms);
	s2 = holder_new("s2", 1, "owner 3", s);
	got = step_until(s2, is_leased);
	got = got && LeaseClientSession(s2->c, &sid2, passwd);
	ok(got && s2->saw_reattaching && sid2 == sid && s2->id == 0,
	   "s2, s restarted, reattaches s's session %llx and leases the id again",
	   (unsigned long long) sid);
	ok(s2->floor_ms >= x->issued_ms,
	   "... above everything x issued meanwhile (floor %lld >= %lld), not at the floor s was given (%lld)",
	   (long long) s2->floor_ms, (long long) x->issued_ms, (long long) s->floor_ms);
	effects_were_ordered(s2);
	LeaseClientShutdown(s2->c);
	LeaseClientFree(s2->c);
	LeaseClientFree(x->c);

	/*
	 * Expiry: e holds the one id of its own namespace and stops (a frozen
	 * process: nothing is sent).  f, waiting for the id, gets it once the
	 * session expired, and its clock has passed e's mark by then.
	 */
	snprintf(ns, sizeof(ns), "unit-%d-%08x-e", (int) getpid(), (unsigned) rand());
	e = holder_new("e", 1, "", NULL);
	got = step_until(e, is_leased);
	want_raises = e->raises + 2;
	got = got && step_until(e, raised_enough);
	ok(got, "e leases the one id of a namespace and extends its mark (%lld)",
	   (long long) e->reserved_ms);
	f = holder_new("f", 1, "", NULL);
	t0 = boot_ns();
	got = step_until(f, is_leased);
	ok(got && f->floor_ms >= e->reserved_ms,
	   "f gets it once e's session expired (after %llu ms), above e's mark (floor %lld)",
	   (unsigned long long) ((boot_ns() - t0) / 1000000), (long long) f->floor_ms);
	ok(f->floor_ms < f->wall_at_install,
	   "... which its clock has passed: the window is shorter than an expiry (floor %lld, clock %lld)",
	   (long long) f->floor_ms, (long long) f->wall_at_install);
	LeaseClientShutdown(f->c);
	LeaseClientFree(f->c);
	LeaseClientFree(e->c);
	zookeeper_close(tz);
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
