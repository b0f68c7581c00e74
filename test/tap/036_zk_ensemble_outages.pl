# 036_zk_ensemble_outages.pl: generation rides through ZooKeeper outages
# shorter than the lease's deadline (issue 13), on a real 3-node ensemble
# with the default 30 s session timeout: the leader killed under load, the
# server the client talks to killed, the whole ensemble frozen (SIGSTOP) for
# 5 s and for 10 s: no failed call, increasing IDs; idle for longer than
# the mark's window, then frozen: no failed call either.  Frozen past the
# deadline: fenced (SQLSTATE 53000) before the session could expire, and
# issuing again in the same session once thawed, above every ID before.
# A clean shutdown, then the same id taken over at once by another cluster:
# its first ID is at its clock (within 1 s of its start), above the old
# holder's last.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::RealBin;
use GuidTest;

my $ens = zk_ensemble_start('outages');
my $connect = zk_ensemble_connect($ens);
my $ns = "outages_$$";
my $epoch_ms = 1735689600000;

my $a = guid_node('ens_a', node_id => undef, conf => zk_conf($connect, $ns, '30s'));
my $a_id = wait_for_lease($a);
my $session = $a->safe_psql('postgres', 'SELECT session_id FROM guid.status');
note "a holds node id $a_id in session $session";

# A phase: load, a fault, more load; then the figures of the load.
sub under_load
{
	my ($tag, $fault) = @_;
	my $load = guid_load_start($a, $tag);
	$a->poll_query_until('postgres', "SELECT count(*) = 0 FROM load_result WHERE tag = '$tag'");
	sleep 1;
	$fault->();
	sleep 2;
	my $r = guid_load_finish($load);
	note "$tag: $r->{calls} calls, $r->{failures} failed ($r->{states}), longest $r->{longest_ms} ms";
	ok($r->{calls} > 100 && $r->{failures} == 0,
		"$tag: no failed call ($r->{failures} of $r->{calls}; $r->{states})");
	ok($r->{not_increasing} == 0, "$tag: every ID above the one before");
	return $r;
}

my $last = 0;
my $r = under_load('leader killed', sub {
	my $leader = zk_ensemble_leader($ens);
	zk_ensemble_kill($ens, $leader);
	note "killed the leader, server $leader";
	for (1 .. 600) { last if defined zk_ensemble_leader($ens); sleep 0.1; }
	ok(defined zk_ensemble_leader($ens), 'the other two elect a new leader');
	zk_ensemble_restart($ens, $leader);
});
ok($r->{first_id} > $last, 'IDs above those of the phase before');
$last = $r->{last_id};

$r = under_load('connected server killed', sub {
	my $serving;
	for (1 .. 100)
	{
		$serving = zk_ensemble_serving($ens, $session);
		last if defined $serving;
		sleep 0.1;
	}
	ok(defined $serving, "the server the session is connected to is found ($serving)");
	zk_ensemble_kill($ens, $serving);
	for (1 .. 600)
	{
		my $other = zk_ensemble_serving($ens, $session);
		last if defined $other && $other != $serving;
		sleep 0.1;
	}
	my $other = zk_ensemble_serving($ens, $session);
	ok(defined $other && $other != $serving, "the client moves to another server ($other)");
	zk_ensemble_restart($ens, $serving);
});
ok($r->{first_id} > $last, 'IDs above those of the phase before');
$last = $r->{last_id};

for my $secs (5, 10)
{
	# the leader answers again before the freeze (after the restarts above)
	for (1 .. 600) { last if defined zk_ensemble_leader($ens) && zk_ensemble_mode($ens, 0) && zk_ensemble_mode($ens, 1) && zk_ensemble_mode($ens, 2); sleep 0.1; }
	$r = under_load("ensemble frozen ${secs} s", sub {
		zk_ensemble_signal($ens, 'STOP');
		sleep $secs;
		zk_ensemble_signal($ens, 'CONT');
	});
	ok($r->{first_id} > $last, 'IDs above those of the phase before');
	$last = $r->{last_id};
}

# Idle until the clock has passed the mark that stood once the cluster had
# been idle for longer than GUID_IDLE_MS (10 s; until then a cluster counts
# as busy), then the ensemble frozen 5 s: the first calls in a while come
# during the outage, and the mark kept ahead while idle covers them.
{
	my $hwm_path = "/guid/$ns/hwm/$a_id";
	sleep 11;
	my $stood = zk_get($connect, $hwm_path);
	ok(defined $stood, "the mark stands at $stood after 11 s idle");
	$a->poll_query_until('postgres',
		"SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $epoch_ms > $stood + 1000")
	  or die 'the clock did not pass the mark';
	my $now_ms = $a->safe_psql('postgres', "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $epoch_ms");
	my $mark = zk_get($connect, $hwm_path);
	ok($mark - $now_ms >= 15000, 'idle, the mark is still kept ahead: ' . ($mark - $now_ms) . ' ms');
	for (1 .. 600) { last if defined zk_ensemble_leader($ens) && zk_ensemble_mode($ens, 0) && zk_ensemble_mode($ens, 1) && zk_ensemble_mode($ens, 2); sleep 0.1; }
	zk_ensemble_signal($ens, 'STOP');
	my $t0 = time;
	my ($calls, $failures, $err_seen) = (0, 0, '');
	while (time - $t0 < 5)
	{
		my ($ret, $out, $err) = $a->psql('postgres', 'SELECT guid_next()::bigint');
		$calls++;
		if ($ret != 0) { $failures++; $err_seen = $err; }
		elsif ($out <= $last) { $failures++; $err_seen = "ID $out not above $last"; }
		else { $last = $out; }
		sleep 0.2;
	}
	zk_ensemble_signal($ens, 'CONT');
	is($failures, 0, "idle, then frozen 5 s: no failed call of $calls, IDs increasing $err_seen");
}
is($a->safe_psql('postgres', 'SELECT session_id FROM guid.status'), $session,
	'all along in the same ZooKeeper session');

# Frozen past the deadline (15 s from the last answer): fenced, with 53000,
# before the session could expire (30 s); thawed, the same session issues
# again, above every ID before.
my $before = $a->safe_psql('postgres', 'SELECT guid_next()::bigint');
zk_ensemble_signal($ens, 'STOP');
my $t0 = time;
my ($state, $fenced_after);
for (1 .. 400)
{
	my ($ret, $out, $err) = $a->psql('postgres', 'SELECT guid_next()', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	if ($ret != 0)
	{
		($state) = $err =~ /ERROR:\s+(\w{5}):/;
		$fenced_after = time - $t0;
		last;
	}
	sleep 0.1;
}
my $mode = $a->safe_psql('postgres', 'SELECT mode FROM guid.status');
zk_ensemble_signal($ens, 'CONT');
ok(defined $fenced_after && $fenced_after < 25, sprintf('frozen: fenced after %.1f s, before the session could expire (30 s)', $fenced_after // -1));
is($state, '53000', '... with SQLSTATE 53000');
is($mode, 'fenced', "... mode 'fenced'");
ok($a->poll_query_until('postgres', "SELECT mode = 'leased' FROM guid.status"), 'thawed: leased again');
is($a->safe_psql('postgres', 'SELECT session_id FROM guid.status'), $session, '... in the same session');
my $after = $a->safe_psql('postgres', 'SELECT guid_next()::bigint');
ok($after > $before, "... issuing above every ID before ($after > $before)");

# Clean shutdown under load, then the same id taken over at once.
my $load = guid_load_start($a, 'handover');
$a->poll_query_until('postgres', "SELECT count(*) = 0 FROM load_result WHERE tag = 'handover'");
sleep 1;
$a->safe_psql('postgres', "UPDATE load_ctl SET stop = true WHERE tag = 'handover'");
$load->{h}->finish;
my $a_last = $a->safe_psql('postgres', "SELECT last_id FROM load_result WHERE tag = 'handover'");
$a->stop('fast');
my $b = guid_node('ens_b', node_id => undef, conf => zk_conf($connect, $ns, '30s'), start => 0);
my $start_ms = int(time * 1000) - $epoch_ms;
start_faked($b);
$b->safe_psql('postgres', 'CREATE EXTENSION guid');
my $b_id = wait_for_lease($b);
# The ID's millisecond against b's clock just before the call, not against
# the start: how long a start takes on a loaded machine is not the point;
# an ID at the clock is (with the mark not written back down, the first ID
# would be above a's mark, up to 25 s ahead).
my ($call_ms, $first) = split /\|/, $b->safe_psql('postgres',
	"SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $epoch_ms, guid_next()::bigint");
my $first_ms = $first >> 22;
is($b_id, $a_id, "b takes over a's node id $a_id at once");
ok($first > $a_last, "b's first ID is above a's last ($first > $a_last)");
ok($first_ms - $call_ms < 1000,
	"b's first ID is within 1 s of its clock: " . ($first_ms - $call_ms) . ' ms ahead (the mark was written back down)');
note 'b: start to first ID ' . ($call_ms - $start_ms) . ' ms';

$b->stop('fast');
zk_ensemble_stop($ens);
done_testing();
