/*-------------------------------------------------------------------------
 *
 * lease_sim.c
 *		guid_lease_sim: N node id lease holders in one process, each with
 *		its own ZooKeeper session and the project's own lease protocol
 *		(coordinator/lease_protocol.c, lease_hold.c, lease_zk.c), no
 *		PostgreSQL.  Driven by commands on stdin, for a fleet test
 *		(test/tap/045_fleet_lease_holders.pl) and make fleet-bench.
 *
 *	guid_lease_sim --zookeeper HOST:PORT[,...] --namespace NS
 *				   [--timeout MS] [--holders N] [--verbose]
 *
 * Commands, one a line; each is answered by one line that starts with the
 * command's name (holders: one line per holder, then "end"):
 *
 *	add K		start K more holders
 *	kill K		K holders that hold an id stop dead, as a crashed host: the
 *				session is left open until ZooKeeper expires it.  Answers
 *				idx:id:mark:issued for each (the id's last mark written and
 *				the highest millisecond issued under it).
 *	close K		K holders that hold an id shut down cleanly (the id is free
 *				at once); answers idx:id for each
 *	status		held=, distinct=, dup=, full=, lapses=, lost=, violations=,
 *				time-to-lease percentiles, ... (key=value)
 *	holders		idx id session floor reserved state<TAB>last error, one line
 *				each (state ends in ",full" while all ids are leased)
 *	mark		reset the time-to-lease samples and the lapse, loss and
 *				create counts (creates=: of lease znodes, each attempt to
 *				take an id); acked= then counts holders confirmed since
 *	quit		exit at once (sessions are left to expire)
 *
 * The host the holders run in, and the invariants it checks at every effect
 * of the protocol, are in lease_sim_host.c.  Invariant violations are never
 * reset; each is also described on stderr.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lease_sim.h"

Sim			sim = {.lock = PTHREAD_MUTEX_INITIALIZER, .lease_creates = 0};

/* A kill or close waits at most this long for its holders to stop. */
#define STOP_PATIENCE_MS		10000

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* The q-quantile of n sorted values (nearest rank). */
static double
quantile(const double *v, int n, double q)
{
	int			k = (int) (q * n + 0.999999);

	if (n == 0)
		return 0;
	if (k < 1)
		k = 1;
	return v[k > n ? n - 1 : k - 1];
}

static void
cmd_add(int k)
{
	int			i;
	int			first = sim.nholders;

	pthread_mutex_lock(&sim.lock);
	for (i = 0; i < k; i++)
	{
		SimHolder  *h;

		if (sim.nholders == sim.cap)
		{
			sim.cap = sim.cap ? 2 * sim.cap : 1024;
			sim.holders = realloc(sim.holders, sim.cap * sizeof(SimHolder *));
			if (sim.holders == NULL)
				abort();
		}
		h = sim_holder_start(sim.nholders);
		if (h == NULL)
			break;
		sim.holders[sim.nholders++] = h;
	}
	pthread_mutex_unlock(&sim.lock);
	printf("add %d holders %d..%d\n", i, first, first + i - 1);
}

/* kill or close: k holders that hold an id, lowest idx first. */
static void
cmd_stop(int k, int command)
{
	SimHolder **chosen = calloc(k > 0 ? k : 1, sizeof(SimHolder *));
	int			n = 0;
	int			i;
	uint64_t	until = sim_now_ns() + (uint64_t) STOP_PATIENCE_MS * 1000000;
	bool		all_stopped = false;

	pthread_mutex_lock(&sim.lock);
	for (i = 0; i < sim.nholders && n < k; i++)
	{
		SimHolder  *h = sim.holders[i];

		if (!h->dead && h->id >= 0 && atomic_load(&h->command) == SIM_RUN)
		{
			atomic_store(&h->command, command);
			chosen[n++] = h;
		}
	}
	pthread_mutex_unlock(&sim.lock);

	/* wait until each has stopped (in its next wait, at most about 1 s) */
	while (!all_stopped && sim_now_ns() < until)
	{
		all_stopped = true;
		pthread_mutex_lock(&sim.lock);
		for (i = 0; i < n; i++)
			all_stopped = all_stopped && chosen[i]->dead;
		pthread_mutex_unlock(&sim.lock);
		if (!all_stopped)
			usleep(20000);
	}
	if (command == SIM_CLOSE)
		for (i = 0; i < n && all_stopped; i++)
			pthread_join(chosen[i]->thread, NULL);

	pthread_mutex_lock(&sim.lock);
	printf("%s %d%s", command == SIM_KILL ? "kill" : "close", n, all_stopped ? "" : " (not all stopped)");
	for (i = 0; i < n; i++)
	{
		SimHolder  *h = chosen[i];

		if (command == SIM_KILL)
			printf(" %d:%d:%lld:%lld", h->idx, (int) h->last_id,
				   (long long) sim.ids[h->last_id].mark,
				   (long long) sim.ids[h->last_id].max_issued);
		else
			printf(" %d:%d", h->idx, (int) h->last_id);
	}
	printf("\n");
	pthread_mutex_unlock(&sim.lock);
	free(chosen);
}

static void
cmd_status(void)
{
	int			per_id[LEASE_MAX_IDS];
	uint64_t	now = sim_now_ns();
	int			live = 0,
				held = 0,
				valid = 0,
				distinct = 0,
				dup = 0,
				full = 0,
				acked = 0;
	long		violations = 0;
	double	   *v;
	int			n;
	int			i;

	memset(per_id, 0, sizeof(per_id));
	pthread_mutex_lock(&sim.lock);
	for (i = 0; i < sim.nholders; i++)
	{
		SimHolder  *h = sim.holders[i];

		if (h->dead)
			continue;
		live++;
		if (sim_holder_full(h))
			full++;
		if (h->id < 0)
			continue;
		held++;
		if (now < h->deadline_ns)
			valid++;
		if (h->last_ack_ns >= sim.mark_ns)
			acked++;
		if (per_id[h->id]++ == 0)
			distinct++;
		else if (per_id[h->id] == 2)
			dup++;
	}
	for (i = 0; i < CHECK_COUNT; i++)
		violations += sim.violations[i];
	n = sim.nttl;
	v = malloc((n > 0 ? n : 1) * sizeof(double));
	if (v == NULL)
		abort();
	memcpy(v, sim.ttl, n * sizeof(double));
	printf("status holders=%d live=%d held=%d valid=%d distinct=%d dup=%d full=%d waiting=%d "
		   "acked=%d lapses=%ld lost=%ld creates=%ld violations=%ld",
		   sim.nholders, live, held, valid, distinct, dup, full, live - held,
		   acked, sim.lapses, sim.lost, atomic_load(&sim.lease_creates), violations);
	for (i = 0; i < CHECK_COUNT; i++)
		if (sim.violations[i])
			printf(" %s=%ld", sim_check_name(i), sim.violations[i]);
	pthread_mutex_unlock(&sim.lock);

	qsort(v, n, sizeof(double), cmp_double);
	printf(" ttl_n=%d ttl_p50_ms=%.0f ttl_p99_ms=%.0f ttl_max_ms=%.0f\n",
		   n, quantile(v, n, 0.50), quantile(v, n, 0.99), n ? v[n - 1] : 0.0);
	free(v);
}

static void
cmd_holders(void)
{
	int			i;

	pthread_mutex_lock(&sim.lock);
	for (i = 0; i < sim.nholders; i++)
	{
		SimHolder  *h = sim.holders[i];

		printf("holder %d %d 0x%llx %lld %lld %s%s\t%s\n", h->idx, (int) h->id,
			   (unsigned long long) h->session_id, (long long) h->floor_ms,
			   (long long) h->reserved_ms, h->dead ? "dead" : h->state,
			   sim_holder_full(h) ? ",full" : "", h->error);
	}
	pthread_mutex_unlock(&sim.lock);
	printf("end\n");
}

static void
cmd_mark(void)
{
	pthread_mutex_lock(&sim.lock);
	sim.mark_ns = sim_now_ns();
	sim.nttl = 0;
	sim.lapses = 0;
	sim.lost = 0;
	atomic_store(&sim.lease_creates, 0);
	pthread_mutex_unlock(&sim.lock);
	printf("mark\n");
}

static void
usage(void)
{
	fprintf(stderr, "usage: guid_lease_sim --zookeeper HOST:PORT[,...] --namespace NS "
			"[--timeout MS] [--holders N] [--verbose]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"zookeeper", required_argument, NULL, 'z'},
		{"namespace", required_argument, NULL, 'n'},
		{"timeout", required_argument, NULL, 't'},
		{"holders", required_argument, NULL, 'h'},
		{"verbose", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0}
	};
	struct rlimit rl;
	char		line[256];
	int			initial = 0;
	int			o;
	int			i;

	sim.timeout_ms = 30000;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1)
	{
		switch (o)
		{
			case 'z':
				sim.zookeeper = optarg;
				break;
			case 'n':
				sim.namespace_ = optarg;
				break;
			case 't':
				sim.timeout_ms = atoi(optarg);
				break;
			case 'h':
				initial = atoi(optarg);
				break;
			case 'v':
				sim.verbose = true;
				break;
			default:
				usage();
		}
	}
	if (sim.zookeeper == NULL || sim.namespace_ == NULL || sim.timeout_ms <= 0 || initial < 0)
		usage();
	for (i = 0; i < LEASE_MAX_IDS; i++)
	{
		sim.ids[i].holder = -1;
		sim.ids[i].max_issued = -1;
		sim.ids[i].mark = -1;
	}

	/* a socket per holder, and those of killed holders stay open */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (initial > 0)
		cmd_add(initial);
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		int			k = 0;

		if (sscanf(line, "add %d", &k) == 1 && k >= 0)
			cmd_add(k);
		else if (sscanf(line, "kill %d", &k) == 1 && k >= 0)
			cmd_stop(k, SIM_KILL);
		else if (sscanf(line, "close %d", &k) == 1 && k >= 0)
			cmd_stop(k, SIM_CLOSE);
		else if (strncmp(line, "status", 6) == 0)
			cmd_status();
		else if (strncmp(line, "holders", 7) == 0)
			cmd_holders();
		else if (strncmp(line, "mark", 4) == 0)
			cmd_mark();
		else if (strncmp(line, "quit", 4) == 0)
			break;
		else
			printf("error unknown command: %s", line);
	}
	fflush(stdout);
	_exit(0);
}
