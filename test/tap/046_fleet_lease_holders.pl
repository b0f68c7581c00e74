# 045_fleet_lease_holders.pl: 1,024 lease holders on a 3-node ZooKeeper
# ensemble (issue 14, item 4), run by guid_lease_sim (test/fleet/): the
# project's own lease protocol, one ZooKeeper session and one thread per
# holder, no PostgreSQL.
#
#  1. 1,024 holders start at once: every id held, no id held twice, and
#     ZooKeeper's own view (the leader's "dump": the ephemeral nodes/<id> of
#     each session) agrees; a fleet starting at once costs a few creates a
#     holder, not one for every id below the one it gets.
#  2. The 1,025th holder reports that all ids are leased, and takes the id a
#     holder closing cleanly frees.
#  3. 100 holders killed (their sessions left open, as crashed hosts): their
#     ids are taken by 100 new holders once ZooKeeper expires the sessions,
#     each installed above the mark its previous holder wrote.
#  4. The ensemble's leader killed (kill -9) while 1,024 hold: every holder
#     is confirmed by the new leader, no id held twice.
#
# The session timeout is the default, 30 s, throughout (step 3 waits for
# it).  Time to lease and leases lost to fencing are printed ("figure:"
# lines; make fleet-bench shows them), never asserted: the test asserts
# behaviour only.  The simulator checks every effect of the protocol as it
# happens (lease_sim_host.c) and counts violations; any is a failure here.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time sleep);
use GuidTest;

my $sim_bin = $ENV{GUID_LEASE_SIM}
  or BAIL_OUT('GUID_LEASE_SIM is not set (make test sets it)');
my $N = 1024;
my $killed_n = 100;
my $timeout_ms = 30000;
my $ns = 'fleet_lease';
my $patience = 240;			# seconds for a condition that does not come

my $t0 = time;
my $ens = zk_ensemble_start('fleet_lease', cfg => "maxClientCnxns=0\n");
my $connect = zk_ensemble_connect($ens);

my $errlog = "$PostgreSQL::Test::Utils::tmp_check/guid_lease_sim.stderr";
my ($in, $out) = ('', '');
my $sim = IPC::Run::start(
	[ $sim_bin, '--zookeeper', $connect, '--namespace', $ns, '--timeout', $timeout_ms ],
	'<', \$in, '>', \$out, '2>', $errlog);

# Whatever happens, stop what this test started.
END
{
	local $?;
	$sim->kill_kill if $sim && $sim->pumpable;
	zk_ensemble_stop($ens) if $ens;
}

# cmd($line, $answer_re): send a command, return the answer's lines (up to
# the line matching $answer_re).
sub cmd
{
	my ($line, $re) = @_;
	$out = '';
	$in .= "$line\n";
	my $timer = IPC::Run::timer(60);
	$timer->start;
	$sim->pump until $out =~ /^$re.*\n/m || $timer->is_expired;
	die "guid_lease_sim did not answer '$line': $out" unless $out =~ /^$re.*\n/m;
	return split /\n/, $out;
}

sub status
{
	my ($line) = grep { /^status / } cmd('status', 'status ');
	my %s = $line =~ /(\w+)=(\S+)/g;
	$s{line} = $line;
	return \%s;
}

# holders(): idx => { id, session, floor, reserved, state, error }
sub holders
{
	my %h;
	for (cmd('holders', 'end'))
	{
		next unless /^holder (\d+) (-?\d+) 0x([0-9a-f]+) (-?\d+) (-?\d+) (\S+)\t(.*)$/;
		$h{$1} = { id => $2, session => $3, floor => $4, reserved => $5, state => $6,
			error => $7 };
	}
	return \%h;
}

# poll_status($cond, $what): status until $cond->($s) holds; the last one.
sub poll_status
{
	my ($cond, $what) = @_;
	my $until = time + $patience;
	my $s;
	while (time < $until)
	{
		$s = status();
		return $s if $cond->($s);
		sleep 0.5;
	}
	diag "gave up waiting for $what: $s->{line}";
	return $s;
}

# zk_leases($ens): nodes/<id> => owning session (hex), from the leader's dump.
sub zk_leases
{
	my $leader = zk_ensemble_leader($ens);
	return {} unless defined $leader;
	my $dump = GuidTest::zk_four($ens->{servers}[$leader]{port}, 'dump');
	my (%owner, $session);
	for (split /\n/, $dump)
	{
		if (/^0x([0-9a-f]+):\s*$/) { $session = $1; next; }
		$owner{$1} = $session if m{^\s+/guid/\Q$ns\E/nodes/(\d+)$} && defined $session;
	}
	return \%owner;
}

# ZooKeeper's view agrees with the holders': each live holder's id is a
# lease znode of its session, and there is no other.
sub zk_agrees
{
	my ($label) = @_;
	my $h = holders();
	my $zk = zk_leases();
	my %want = map { $_->{id} => $_->{session} } grep { $_->{id} >= 0 } values %$h;
	my @bad = grep { ($zk->{$_} // '') ne $want{$_} } sort { $a <=> $b } keys %want;
	push @bad, grep { !exists $want{$_} } keys %$zk;
	is(scalar(keys %$zk) . ' ' . scalar(@bad), scalar(keys %want) . ' 0',
		"$label: ZooKeeper's leader lists a lease znode for each of the "
		  . scalar(keys %want) . " ids held, owned by its holder's session, and no other")
	  or diag "disagreeing ids: @bad[0 .. ($#bad < 9 ? $#bad : 9)]";
}

# --- 1. 1,024 holders at once ---------------------------------------------
cmd("add $N", 'add ');
my $s = poll_status(sub { $_[0]{held} == $N }, "$N holders to lease");
is($s->{held}, $N, "all $N holders hold an id");
is($s->{distinct}, $N, "$N distinct ids held");
is($s->{dup}, 0, 'no id held by two holders');
cmp_ok($s->{creates}, '<=', 4 * $N,
	"$N holders starting at once took their ids with $s->{creates} creates of lease znodes "
	  . "(at most 4 a holder; walking up id by id costs about N^2/2)");
diag sprintf('figure: time to lease, %d holders starting at once on a 3-node ensemble: p50 %d ms, p99 %d ms, max %d ms (%d creates)',
	$N, $s->{ttl_p50_ms}, $s->{ttl_p99_ms}, $s->{ttl_max_ms}, $s->{creates});
zk_agrees('all held');

# --- 2. the 1,025th ------------------------------------------------------
cmd('add 1', 'add ');
$s = poll_status(sub { $_[0]{full} == 1 }, 'the 1,025th holder to report a full namespace');
is($s->{full} . ' ' . $s->{held}, "1 $N", "the 1,025th holder reports that all ids are leased, $N still held");
my $extra = holders()->{$N};
like($extra->{error}, qr/^all 1024 node ids of namespace "\Q$ns\E" are leased$/,
	"its message says so: $extra->{error}");
my ($closed) = grep { /^close / } cmd('close 1', 'close ');
my ($closed_idx, $freed) = $closed =~ /^close 1 (\d+):(\d+)$/
  or die "close answered: $closed";
my $tf = time;
$s = poll_status(sub { holders()->{$N}{id} == $freed }, "the 1,025th holder to take id $freed");
my $took = time - $tf;
is(holders()->{$N}{id}, $freed, "the 1,025th holder took id $freed, freed by the clean close of holder $closed_idx");
is($s->{full} . ' ' . $s->{held} . ' ' . $s->{dup}, "0 $N 0", "$N held again, none waiting, no duplicate");
diag sprintf('figure: the waiting holder took the freed id %.1f s after the close', $took);

# --- 3. 100 holders killed --------------------------------------------------
cmd('mark', 'mark');
my ($kill) = grep { /^kill / } cmd("kill $killed_n", 'kill ');
my %killed;						# id => { mark, issued }
for ($kill =~ /(\d+:\d+:-?\d+:-?\d+)/g)
{
	my (undef, $id, $mark, $issued) = split /:/;
	$killed{$id} = { mark => $mark, issued => $issued };
}
is(scalar(keys %killed), $killed_n, "$killed_n holders killed, their sessions left open");
ok(!(grep { $killed{$_}{mark} < 0 || $killed{$_}{issued} < 0 } keys %killed),
	'each had written a mark and issued under it');
my $first_new = $N + 1;
cmd("add $killed_n", 'add ');
$s = poll_status(sub { $_[0]{held} == $N }, "$killed_n new holders to take the killed ids");
is($s->{held} . ' ' . $s->{distinct} . ' ' . $s->{dup}, "$N $N 0",
	"after the sessions expired, $N ids held again, no duplicate");
my $h = holders();
my @new = map { $h->{$_} } grep { $_ >= $first_new } keys %$h;
is(join(',', sort { $a <=> $b } map { $_->{id} } @new), join(',', sort { $a <=> $b } keys %killed),
	"the $killed_n new holders hold exactly the killed holders' ids");
my @below = grep { $_->{floor} < $killed{ $_->{id} }{mark} } @new;
is(scalar(@below), 0,
	"each new holder was installed above the mark its id's previous holder wrote (and so above all it issued)")
  or diag join ' ', map { "id $_->{id} floor $_->{floor} mark $killed{$_->{id}}{mark}" } @below;
is($s->{lost}, 0, 'no surviving holder lost its lease meanwhile');
zk_agrees('after the killed ids were taken again');

# --- 4. the leader killed -------------------------------------------------
cmd('mark', 'mark');
my $leader = zk_ensemble_leader($ens);
ok(defined $leader, 'the ensemble has a leader');
my $tk = time;
zk_ensemble_kill($ens, $leader);
$s = poll_status(sub { $_[0]{acked} == $N && $_[0]{held} == $N },
	"all $N holders to be confirmed by a new leader");
my $confirmed = time - $tk;
is($s->{acked} . ' ' . $s->{held}, "$N $N", "all $N holders confirmed by the new leader, all holding");
is($s->{distinct} . ' ' . $s->{dup}, "$N 0", 'no id held twice after the leader was killed');
zk_agrees('after the leader was killed');
diag sprintf('figure: ZooKeeper leader killed under %d holders (session timeout %d s): '
	  . 'all confirmed again in %.1f s; leases fenced (deadline passed) %d, lost (session or znode) %d',
	$N, $timeout_ms / 1000, $confirmed, $s->{lapses}, $s->{lost});

# --- the simulator's own checks ---------------------------------------------
$s = status();
is($s->{violations}, 0,
	'the protocol never installed or raised above a mark ZooKeeper and the local record held, '
	  . 'never installed an id below what it had issued or while another holder\'s lease of it lasted')
  or diag $s->{line};

$in .= "quit\n";
$sim->finish;
zk_ensemble_stop($ens);
my @violations = grep { /VIOLATION/ } split /\n/, slurp_file($errlog);
diag $_ for @violations[0 .. ($#violations < 9 ? $#violations : 9)];
diag sprintf('figure: test wall time %.0f s', time - $t0);
done_testing();
