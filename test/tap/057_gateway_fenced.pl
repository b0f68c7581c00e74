# 057_gateway_fenced.pl: guid_gateway in front of a cluster whose node id
# is leased from a real ZooKeeper (a private server of this test), under a
# steady load of keep-alive clients.  ZooKeeper frozen (SIGSTOP) until the
# cluster is fenced (guid_next() fails with SQLSTATE 53000): every
# POST /guid/generate that runs while it is fenced answers 503 "unavailable"
# with Retry-After and no ID, never 500, and /healthz answers 503.  Thawed
# (SIGCONT) after longer than the session timeout: the gateway answers 200
# again by itself once the lease is confirmed, no ID is ever
# returned twice across the whole run, and every ID asked for after the
# thaw is above every ID answered before it.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IO::Handle;
use IPC::Run;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

my (@harnesses, @client_pids, $zk, $frozen);
END
{
	kill 'KILL', @client_pids if @client_pids;
	eval { $_->kill_kill(grace => 5) } for @harnesses;
	eval { zookeeper_signal($zk, 'CONT') } if $frozen;
	eval { zookeeper_stop($zk) } if $zk;
}

$zk = zookeeper_start('gwfence');
my $node = guid_node('fence', node_id => undef,
	conf => zk_conf("127.0.0.1:$zk->{port}", "gwfence_$$", '4s'));
my $node_id = wait_for_lease($node);
my $session = $node->safe_psql('postgres', 'SELECT session_id FROM guid.status');
my $dir = PostgreSQL::Test::Utils::tempdir();

# --- the gateway (auth off: the client is its address) -----------------------------
my $port = PostgreSQL::Test::Cluster::get_free_port();
PostgreSQL::Test::Utils::append_to_file("$dir/gw.conf", <<EOF);
listen_address = 127.0.0.1
port = $port
conninfo = host=@{[ $node->host ]} port=@{[ $node->port ]} dbname=postgres
pool_size = 3
threads = 4
auth = off
rate_limit = 100000000
rate_burst = 100000000
retry_after = 3
EOF
push @harnesses, IPC::Run::start([ 'guid_gateway', '--config', "$dir/gw.conf" ], '>', "$dir/gw.log", '2>&1');
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 60);
sub url { return "http://127.0.0.1:$port$_[0]"; }
my $up = 0;
for (1 .. 600)
{
	if ($http->get(url('/healthz'))->{status} == 200) { $up = 1; last; }
	sleep 0.05;
}
ok($up, 'gateway ready in front of the leased cluster') or BAIL_OUT(slurp_file("$dir/gw.log"));

# --- the load: clients on keep-alive connections, one result file each --------------
# A line per request: start end status retry_after error ids (comma-separated).
my $stop = "$dir/stop";
my $nclients = 4;
for my $c (1 .. $nclients)
{
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		my $h = HTTP::Tiny->new(keep_alive => 1, timeout => 60);
		open my $out, '>', "$dir/client$c" or POSIX::_exit(1);
		$out->autoflush(1);
		my $count = $c % 2 ? 1 : 5;
		until (-e $stop)
		{
			my $t0 = time;
			my $r = $h->request('POST', url("/guid/generate?count=$count"));
			my $t1 = time;
			my $j = eval { decode_json($r->{content}) };
			my @ids = map { $_->{guid} // () } (ref $j eq 'ARRAY' ? @$j : ref $j eq 'HASH' ? ($j) : ());
			my $err = ref $j eq 'HASH' ? ($j->{error} // '-') : '-';
			printf $out "%.6f %.6f %d %s %s %s\n", $t0, $t1, $r->{status},
			  $r->{headers}{'retry-after'} // '-', $err, @ids ? join(',', @ids) : '-';
			# a fenced answer comes at once: do not spin the machine's two cores
			sleep 0.02 if $r->{status} != 200;
		}
		close $out;
		POSIX::_exit(0);
	}
	push @client_pids, $pid;
}

sub results
{
	my @r;
	for my $c (1 .. $nclients)
	{
		open my $in, '<', "$dir/client$c" or next;
		while (my $l = <$in>)
		{
			next unless $l =~ /\n$/;
			my ($t0, $t1, $status, $ra, $err, $ids) = split ' ', $l;
			push @r, { t0 => $t0, t1 => $t1, status => $status, retry_after => $ra, error => $err,
				ids => [ $ids eq '-' ? () : split /,/, $ids ] };
		}
	}
	return \@r;
}

# wait_for(sub { ... }, $what): poll the results until the condition holds
sub wait_for
{
	my ($cond, $what) = @_;
	for (1 .. 3000)
	{
		return 1 if $cond->(results());
		sleep 0.1;
	}
	diag("timed out waiting for $what");
	return 0;
}

ok(wait_for(sub { (grep { $_->{status} == 200 } @{ $_[0] }) >= 200 }, '200 answers'),
	'under load: 200 answers flowing');

# --- frozen until fenced ------------------------------------------------------------
my $t_freeze = time;
zookeeper_signal($zk, 'STOP');
$frozen = 1;
my $state;
for (1 .. 1200)
{
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT guid_next()', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	if ($ret != 0)
	{
		($state) = $err =~ /ERROR:\s+(\w{5}):/;
		last;
	}
	sleep 0.1;
}
my $t_fenced = time;
is($state, '53000', 'ZooKeeper frozen: guid_next() fails with SQLSTATE 53000 (fenced)');

# Frozen for longer than the session timeout (4 s) too: the frozen server's
# session clock stops with it, so the session may survive or expire; the
# gateway must recover either way.
ok(wait_for(sub { time >= $t_freeze + 6 && (grep { $_->{t0} >= $t_fenced } @{ $_[0] }) >= 40 },
	'answers while fenced'), 'the load goes on while fenced');
my $hz = $http->get(url('/healthz'));
is($hz->{status}, 503, '/healthz while fenced: 503');
like($hz->{content}, qr/"error":"unavailable".*fenced/, '... unavailable, naming the mode');
my $g = $http->request('POST', url('/guid/generate'));
is($g->{status}, 503, 'POST /guid/generate while fenced: 503');
is($g->{headers}{'retry-after'}, '3', '... with Retry-After (retry_after)');
my $gj = eval { decode_json($g->{content}) } // {};
is($gj->{error}, 'unavailable', '... error unavailable');
ok(!exists $gj->{guid}, '... and no ID');
is($node->safe_psql('postgres', 'SELECT mode FROM guid.status'), 'fenced', "... the cluster still in mode 'fenced'");

# --- thawed -------------------------------------------------------------------------
my $t_cont = time;
zookeeper_signal($zk, 'CONT');
$frozen = 0;
ok(wait_for(sub { (grep { $_->{t0} >= $t_cont && $_->{status} == 200 } @{ $_[0] }) >= 100 }, '200 answers after the thaw'),
	'thawed: the gateway answers 200 again by itself');
my $hz_ok = 0;
for (1 .. 600)
{
	if ($http->get(url('/healthz'))->{status} == 200) { $hz_ok = 1; last; }
	sleep 0.1;
}
ok($hz_ok, '... and /healthz 200');
my $g2 = $http->request('POST', url('/guid/generate'));
my $g2j = eval { decode_json($g2->{content}) } // {};
is($g2->{status}, 200, '... POST /guid/generate from a new client 200');

diag('after the thaw: node id ' . $node->safe_psql('postgres', 'SELECT node_id FROM guid.status')
	  . " (was $node_id), ZooKeeper session "
	  . ($node->safe_psql('postgres', 'SELECT session_id FROM guid.status') eq $session ? 'the same' : 'a new one'));
open my $stopfh, '>', $stop or die;
close $stopfh;
for my $pid (@client_pids) { waitpid $pid, 0; }
@client_pids = ();
my $res = results();

# --- what the clients saw -----------------------------------------------------------
my %by_status;
$by_status{ $_->{status} }++ for @$res;
diag('answers: ' . join(', ', map { "$_: $by_status{$_}" } sort keys %by_status)
	  . sprintf('; fenced %.1f s after the freeze, thawed %.1f s later', $t_fenced - $t_freeze, $t_cont - $t_fenced));
is(join(',', grep { $_ != 200 && $_ != 503 } sort keys %by_status), '', 'no answer but 200 or 503 (never 500)');
my @u = grep { $_->{status} == 503 } @$res;
ok(@u > 0, scalar(@u) . ' answers 503');
is(scalar(grep { $_->{error} ne 'unavailable' || $_->{retry_after} ne '3' || @{ $_->{ids} } } @u), 0,
	'... each unavailable, with Retry-After 3, without an ID');
my @during = grep { $_->{t0} >= $t_fenced && $_->{t1} <= $t_cont } @$res;
ok(@during >= 40, scalar(@during) . ' requests ran entirely while fenced');
is(scalar(grep { $_->{status} != 503 } @during), 0, '... every one answered 503');
my @ok = grep { $_->{status} == 200 } @$res;
is(scalar(grep { !@{ $_->{ids} } } @ok), 0, 'every 200 carried its IDs');

my %seen;
my $dups = 0;
for my $id ((map { @{ $_->{ids} } } @ok), $g2j->{guid} // ())
{
	$dups++ if $seen{$id}++;
}
is($dups, 0, 'no ID returned twice across the whole run (' . scalar(keys %seen) . ' IDs)');
my ($max_before) = sort { $b <=> $a } map { @{ $_->{ids} } } grep { $_->{t1} <= $t_cont } @ok;
my ($min_after) = sort { $a <=> $b } map { @{ $_->{ids} } } grep { $_->{t0} >= $t_cont } @ok;
ok(defined $max_before && defined $min_after && $min_after > $max_before,
	'every ID asked for after the thaw is above every ID answered before it'
	  . (defined $min_after && defined $max_before ? " ($min_after > $max_before)" : ''));

done_testing();
