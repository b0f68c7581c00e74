# 040_zk_outages_more.pl: the ZooKeeper outages 036 does not cover (issue 13
# review), on a real 3-node ensemble with the default 30 s session timeout.
# Each outage is shorter than the lease's deadline, so none may cost a
# failed guid_next() call, and every session's IDs must keep increasing:
# two servers of three stopped (quorum lost); eight sessions through a
# frozen ensemble; pg_reload_conf() during a freeze; a freeze right after a
# restart and a new lease; freezes back to back, each shorter than the
# deadline but longer than it together (the deadline must run from the last
# answer, not the first); the lease worker itself stopped for 5 s (backends
# extend the local reservation up to the mark on their own).  The worker
# stopped for longer: fenced (53000) before the session could expire, and
# issuing again, above every ID before, once it runs.  And a new holder after
# a session expiry does not wait: the old holder's mark is behind its clock.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::RealBin;
use GuidTest;

my $ens = zk_ensemble_start('more');
my $connect = zk_ensemble_connect($ens);
my $ns = "more_$$";
my $epoch_ms = 1735689600000;

my $a = guid_node('more_a', node_id => undef, conf => zk_conf($connect, $ns, '30s'));
my $a_id = wait_for_lease($a);
my $session = $a->safe_psql('postgres', 'SELECT session_id FROM guid.status');

# every server serving, one of them the leader
sub ensemble_ready
{
	for (1 .. 600)
	{
		return 1 if defined zk_ensemble_leader($ens) && zk_ensemble_mode($ens, 0)
		  && zk_ensemble_mode($ens, 1) && zk_ensemble_mode($ens, 2);
		sleep 0.1;
	}
	return 0;
}

# the lease was confirmed by an answer to a request sent at or after $ts
# (a timestamptz of the node's clock): its deadline is then half the
# session timeout after $ts
sub confirmed_since
{
	my ($node, $ts) = @_;
	return $node->poll_query_until('postgres',
		"SELECT lease_deadline >= '$ts'::timestamptz + interval '14 s' FROM guid.status");
}

# $n load sessions, a fault, more load: no failed call, IDs increasing
my $n_phase = 0;
my $last = 0;
sub under_load
{
	my ($node, $tag, $n, $fault) = @_;
	my @loads = map { guid_load_start($node, "$tag $_") } 1 .. $n;
	for my $l (@loads)
	{
		$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM load_result WHERE tag = '$l->{tag}'");
	}
	$node->poll_query_until('postgres', "SELECT ids_issued > 0 FROM guid.status");
	sleep 1;
	$fault->();
	sleep 2;
	my ($calls, $failures, $bad, $longest, $states, $first) = (0, 0, 0, 0, '', undef);
	for my $l (@loads)
	{
		my $r = guid_load_finish($l);
		$calls += $r->{calls};
		$failures += $r->{failures};
		$bad += $r->{not_increasing};
		$longest = $r->{longest_ms} if $r->{longest_ms} > $longest;
		$states .= $r->{states};
		$first = $r->{first_id} if !defined $first || (defined $r->{first_id} && $r->{first_id} < $first);
	}
	note "$tag: $calls calls in $n sessions, $failures failed ($states), longest $longest ms";
	ok($calls > 100 * $n && $failures == 0, "$tag: no failed call ($failures of $calls; $states)");
	is($bad, 0, "$tag: in every session each ID above the one before");
	ok(defined $first && $first > $last, "$tag: IDs above those of the phase before");
	$last = $node->safe_psql('postgres', 'SELECT guid_next()::bigint');
}

ok(ensemble_ready(), 'the ensemble serves');

# Two servers of three stopped: no quorum, no leader, for 6 s.
under_load($a, 'quorum lost', 1, sub {
	my $leader = zk_ensemble_leader($ens);
	my @two = ($leader, ($leader + 1) % 3);
	kill 'STOP', map { $ens->{servers}[$_]{pid} } @two;
	sleep 6;
	kill 'CONT', map { $ens->{servers}[$_]{pid} } @two;
});
ok(ensemble_ready(), 'the ensemble serves again');

# Eight sessions through a 5 s freeze.
under_load($a, 'eight sessions', 8, sub {
	zk_ensemble_signal($ens, 'STOP');
	sleep 5;
	zk_ensemble_signal($ens, 'CONT');
});
ok(ensemble_ready(), 'the ensemble serves again');

# pg_reload_conf() during a freeze.
under_load($a, 'reload while frozen', 1, sub {
	zk_ensemble_signal($ens, 'STOP');
	sleep 1;
	$a->safe_psql('postgres', 'SELECT pg_reload_conf()');
	sleep 4;
	zk_ensemble_signal($ens, 'CONT');
});
ok(ensemble_ready(), 'the ensemble serves again');

# Freezes back to back: 3 x 8 s, each thaw only until the leader answered
# a request sent after it.  Together longer than the deadline (15 s) and
# than the session timeout (30 s).
under_load($a, 'freezes back to back', 1, sub {
	for my $i (1 .. 3)
	{
		zk_ensemble_signal($ens, 'STOP');
		sleep 8;
		my $thawed = $a->safe_psql('postgres', 'SELECT clock_timestamp()');
		zk_ensemble_signal($ens, 'CONT');
		ok(confirmed_since($a, $thawed), "thaw $i: the lease confirmed by a request sent after it");
	}
});
is($a->safe_psql('postgres', 'SELECT session_id FROM guid.status'), $session,
	'all along in the same ZooKeeper session');

# The lease worker stopped for 5 s: backends extend the local reservation
# (about a second ahead) up to the mark themselves.
my ($worker) = map { /^\s*(\d+)\s+postgres: \S+: guid coordinator/ ? $1 : () }
  split /\n/, `ps -o pid=,args= --ppid $a->{_pid}`;
ok(defined $worker && $worker > 0, 'the lease worker runs (' . ($worker // 'not found') . ')');
under_load($a, 'worker stopped 5 s', 1, sub {
	kill 'STOP', $worker;
	sleep 5;
	kill 'CONT', $worker;
});

# The worker stopped for good: fenced before the session could expire.
my $before = $a->safe_psql('postgres', 'SELECT guid_next()::bigint');
kill 'STOP', $worker;
my $t0 = time;
my ($state, $fenced_after);
while (time - $t0 < 60)
{
	my ($ret, $out, $err) = $a->psql('postgres', 'SELECT guid_next()',
		extra_params => [ '-v', 'VERBOSITY=verbose' ], timeout => 20);
	if ($ret != 0)
	{
		($state) = $err =~ /ERROR:\s+(\w{5}):/;
		$fenced_after = time - $t0;
		last;
	}
	sleep 0.1;
}
my $mode = $a->safe_psql('postgres', 'SELECT mode FROM guid.status');
kill 'CONT', $worker;
ok(defined $fenced_after && $fenced_after < 25,
	sprintf('worker stopped: fenced after %.1f s, before the session could expire (30 s)', $fenced_after // -1));
is($state, '53000', '... with SQLSTATE 53000');
is($mode, 'fenced', "... mode 'fenced'");
ok($a->poll_query_until('postgres', "SELECT mode = 'leased' FROM guid.status"), 'worker running: leased again');
my $after = $a->safe_psql('postgres', 'SELECT guid_next()::bigint');
ok($after > $before, "... issuing above every ID before ($after > $before)");
$last = $after;

# A freeze right after a restart and a new lease.
$a->restart;
wait_for_lease($a);
under_load($a, 'frozen right after the lease', 1, sub {
	zk_ensemble_signal($ens, 'STOP');
	sleep 5;
	zk_ensemble_signal($ens, 'CONT');
});
ok(ensemble_ready(), 'the ensemble serves again');

# Session expiry: a issues, its postmaster and worker are killed (no clean
# shutdown: the mark stays written ahead); once the leader expired the
# session, b takes the id: its first ID is above a's last and not ahead of
# its clock, since the clock has passed the mark.
$a->safe_psql('postgres', 'SELECT count(guid_next()) FROM generate_series(1, 1000)');
my $a_last = $a->safe_psql('postgres', 'SELECT guid_next()::bigint');
kill9_all($a);
my $t_kill = time;
my $b = guid_node('more_b', node_id => undef, conf => zk_conf($connect, $ns, '30s'), start => 0);
my $gone = 0;
for (1 .. 1200)
{
	my $leader = zk_ensemble_leader($ens);
	my $eph = defined $leader ? zk_ephemerals("127.0.0.1:$ens->{servers}[$leader]{port}") : undef;
	if ($eph && !grep { $_ eq "/guid/$ns/nodes/$a_id" } @$eph)
	{
		$gone = 1;
		last;
	}
	sleep 0.1;
}
ok($gone, sprintf("a's session expired after %.1f s", time - $t_kill));
start_faked($b);
$b->safe_psql('postgres', 'CREATE EXTENSION guid');
is(wait_for_lease($b), $a_id, "b takes over a's node id $a_id");
my ($first, $ahead) = split /\|/, $b->safe_psql('postgres',
	"SELECT g::bigint, (g::bigint >> 22) + $epoch_ms - (extract(epoch FROM clock_timestamp()) * 1000)::bigint "
	  . 'FROM guid_next() g');
ok($first > $a_last, "b's first ID is above a's last ($first > $a_last)");
ok($ahead <= 5, "b's first ID is at its clock ($ahead ms ahead of it)");

$b->stop('fast');
zk_ensemble_stop($ens);
done_testing();
