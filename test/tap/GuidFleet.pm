# GuidFleet.pm: the fleet services a `make test` run shares (a 3-server
# ZooKeeper ensemble and a 3-broker KRaft Kafka, started once by
# test/run-tests.sh, through `services.sh fleet-up`, after the other tests
# when a selected test uses this module), and what fault tests do to them.
#
# The fleet outlives each test: a test uses topics and namespaces of its
# own, and leaves every server running (fleet_kafka_all_up), even when it
# fails half-way.
package GuidFleet;

use strict;
use warnings;

use FindBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

use Exporter 'import';
our @EXPORT = qw(fleet fleet_broker_pid fleet_broker_kill fleet_broker_resume
  fleet_kafka_all_up fleet_partition_leader fleet_topic_replication
  fleet_topic_replication_everywhere);

my $services = "$FindBin::RealBin/../services";

# fleet(): { zookeeper, zookeeper_dir, kafka, kafka_dir } from the
# environment run-tests.sh gives; dies when the fleet was not started.
sub fleet
{
	for my $v (qw(GUID_FLEET_ZOOKEEPER GUID_FLEET_ZOOKEEPER_DIR GUID_FLEET_KAFKA GUID_FLEET_KAFKA_DIR))
	{
		die "$v is not set: run this test through make test (it starts the fleet for tests that use GuidFleet)"
		  unless $ENV{$v};
	}
	return { zookeeper => $ENV{GUID_FLEET_ZOOKEEPER}, zookeeper_dir => $ENV{GUID_FLEET_ZOOKEEPER_DIR},
		kafka => $ENV{GUID_FLEET_KAFKA}, kafka_dir => $ENV{GUID_FLEET_KAFKA_DIR} };
}

# fleet_broker_pid($n): the pid of broker $n (1..3) if it runs, else undef.
sub fleet_broker_pid
{
	my $n = shift;
	my $file = fleet()->{kafka_dir} . "/$n/kafka.pid";
	return undef unless -f $file;
	my $pid = slurp_file($file);
	chomp $pid;
	return kill(0, $pid) ? $pid : undef;
}

# fleet_broker_kill($n): kill -9 broker $n; returns once it is gone.
sub fleet_broker_kill
{
	my $n = shift;
	my $pid = fleet_broker_pid($n) or die "broker $n is not running";
	kill 'KILL', $pid or die "kill -9 $pid: $!";
	for (1 .. 600)
	{
		return unless kill 0, $pid;
		select(undef, undef, undef, 0.05);
	}
	die "broker $n (pid $pid) survived kill -9";
}

# fleet_broker_resume($n): start broker $n again with its data; returns once
# it answers.
sub fleet_broker_resume
{
	my $n = shift;
	system_or_bail("$services/kafka.sh", 'resume', fleet()->{kafka_dir} . "/$n");
}

# fleet_kafka_all_up(): every broker runs (those that do not are resumed)
# and the cluster reports all three.
sub fleet_kafka_all_up
{
	my $f = fleet();
	fleet_broker_pid($_) or fleet_broker_resume($_) for 1 .. 3;
	for (1 .. 600)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'kcat', '-b', $f->{kafka}, '-L', '-m', '5' ], '>', \$out, '2>', \$err);
		return 1 if $out =~ /^\s*3 brokers:/m;
		select(undef, undef, undef, 0.1);
	}
	die 'the fleet Kafka does not report 3 brokers';
}

# fleet_partition_leader($topic, $partition): the node id (1..3) of the
# broker leading that partition, undef if none does.
sub fleet_partition_leader
{
	my ($topic, $partition) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', fleet()->{kafka}, '-L', '-t', $topic, '-m', '5' ], '>', \$out, '2>', \$err);
	return $out =~ /^\s*partition $partition, leader (\d+),/m && $1 > 0 ? $1 : undef;
}

# fleet_topic_replication($topic): "replication.factor=N min.insync.replicas=M"
# as the brokers tell, polled until every broker agrees (a configuration
# change reaches them one by one) or 30 s; '' if the topic does not exist.
sub fleet_topic_replication
{
	my ($topic, $want, $node) = @_;
	my $bin = "$PostgreSQL::Test::Utils::tmp_check/kafka_admin";
	system_or_bail('cc', '-o', $bin, "$FindBin::RealBin/kafka_admin.c", '-lrdkafka')
	  unless -x $bin;
	my $seen = '';
	for (1 .. 300)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ $bin, fleet()->{kafka}, 'describe', $topic, defined $node ? ($node) : () ],
			'>', \$out, '2>', \$err);
		chomp $out;
		$seen = $out;
		return $seen if !defined $want || $seen eq $want;
		select(undef, undef, undef, 0.1);
	}
	return $seen;
}

# fleet_topic_replication_everywhere($topic, $want): as fleet_topic_replication,
# asked of each of the three brokers in turn (a changed topic configuration
# reaches each broker's metadata on its own time, and a client's
# DescribeConfigs goes to any one of them).  Returns the first answer that
# is not $want, or $want.
sub fleet_topic_replication_everywhere
{
	my ($topic, $want) = @_;
	for my $node (1 .. 3)
	{
		my $seen = fleet_topic_replication($topic, $want, $node);
		return "broker $node: $seen" if $seen ne $want;
	}
	return $want;
}

# --- The fleet's ZooKeeper ensemble: faults on its own servers -------------------
#
# Servers are numbered 1..3 as in zookeeper.sh (DIR/<n>, myid n); each runs
# as the PostgreSQL user from its pid file, so a test may kill, freeze and
# resume it.  fleet_zk_all_up() puts the ensemble back as it was: call it
# in an END block, so that the fleet is whole for the next test even when
# this one dies half-way.

use IO::Socket::INET;

push @GuidFleet::EXPORT, qw(fleet_zk_port fleet_zk_pid fleet_zk_kill fleet_zk_signal
  fleet_zk_resume fleet_zk_mode fleet_zk_leader fleet_zk_serving fleet_zk_all_up);

# fleet_zk_port($n): the client port of server $n (from its zoo.cfg).
sub fleet_zk_port
{
	my $n = shift;
	my $cfg = slurp_file(fleet()->{zookeeper_dir} . "/$n/conf/zoo.cfg");
	$cfg =~ /^clientPort=(\d+)$/m or die "no clientPort in the zoo.cfg of server $n";
	return $1;
}

# fleet_zk_pid($n): the pid of server $n if its process exists (running or
# stopped), else undef.
sub fleet_zk_pid
{
	my $n = shift;
	my $file = fleet()->{zookeeper_dir} . "/$n/zookeeper.pid";
	return undef unless -f $file;
	my $pid = slurp_file($file);
	chomp $pid;
	return kill(0, $pid) ? $pid : undef;
}

# fleet_zk_kill($n): kill -9 server $n (thawed first if stopped); returns
# once it is gone.
sub fleet_zk_kill
{
	my $n = shift;
	my $pid = fleet_zk_pid($n) or die "ZooKeeper server $n is not running";
	kill 'KILL', $pid or die "kill -9 $pid: $!";
	for (1 .. 600)
	{
		return unless kill 0, $pid;
		select(undef, undef, undef, 0.05);
	}
	die "ZooKeeper server $n (pid $pid) survived kill -9";
}

# fleet_zk_signal($n, 'STOP' | 'CONT'): freeze or thaw server $n.
sub fleet_zk_signal
{
	my ($n, $sig) = @_;
	my $pid = fleet_zk_pid($n) or die "ZooKeeper server $n is not running";
	kill $sig, $pid or die "kill -$sig $pid: $!";
}

# fleet_zk_resume($n): start server $n again with its data; returns once it
# serves (as leader or follower).
sub fleet_zk_resume
{
	my $n = shift;
	system_or_bail("$services/zookeeper.sh", 'resume', fleet()->{zookeeper_dir} . "/$n");
}

# fleet_zk_four($n, $cmd): a four-letter command's answer from server $n
# ('' when it does not answer within 3 s).
sub fleet_zk_four
{
	my ($n, $cmd) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => fleet_zk_port($n), Timeout => 2)
	  or return '';
	print $sock $cmd;
	local $/;
	my $out = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		alarm 3;
		my $o = <$sock>;
		alarm 0;
		$o;
	};
	alarm 0;
	close $sock;
	return $out // '';
}

# fleet_zk_mode($n): 'leader', 'follower' or '' (not serving).
sub fleet_zk_mode
{
	my $n = shift;
	return '' unless fleet_zk_pid($n);
	return fleet_zk_four($n, 'srvr') =~ /^Mode: (leader|follower)$/m ? $1 : '';
}

# fleet_zk_leader(): the server (1..3) that leads, undef if none does.
sub fleet_zk_leader
{
	for my $n (1 .. 3)
	{
		return $n if fleet_zk_mode($n) eq 'leader';
	}
	return undef;
}

# fleet_zk_serving($session): the server (1..3) a session ('0x...', as
# guid.status shows it) is connected to (its "cons" lists it), undef if
# none.
sub fleet_zk_serving
{
	my $session = shift;
	(my $hex = $session) =~ s/^0x0*//;
	for my $n (1 .. 3)
	{
		next unless fleet_zk_pid($n);
		return $n if fleet_zk_four($n, 'cons') =~ /sid=0x0*\Q$hex\E\b/;
	}
	return undef;
}

# fleet_zk_all_up(): every server runs (stopped ones thawed, dead ones
# resumed), one leads and the other two follow.
sub fleet_zk_all_up
{
	for my $n (1 .. 3)
	{
		my $pid = fleet_zk_pid($n);
		if ($pid) { kill 'CONT', $pid; }
		else { fleet_zk_resume($n); }
	}
	for (1 .. 1200)
	{
		my @modes = map { fleet_zk_mode($_) } 1 .. 3;
		return 1 if (grep { $_ eq 'leader' } @modes) == 1 && (grep { $_ eq 'follower' } @modes) == 2;
		select(undef, undef, undef, 0.1);
	}
	die 'the fleet ZooKeeper ensemble does not serve with one leader and two followers';
}

# --- Paused brokers (kill -STOP) ------------------------------------------------

push @GuidFleet::EXPORT, qw(fleet_broker_pause fleet_broker_continue fleet_coordinator_partition);

# fleet_broker_pause($n): kill -STOP broker $n (it keeps its sockets open
# and answers nothing until fleet_broker_continue).
sub fleet_broker_pause
{
	my $n = shift;
	my $pid = fleet_broker_pid($n) or die "broker $n is not running";
	kill 'STOP', $pid or die "kill -STOP $pid: $!";
	return $pid;
}

# fleet_broker_continue($n): kill -CONT broker $n, if it runs (harmless on a
# broker that is not stopped; for END blocks, before fleet_kafka_all_up).
sub fleet_broker_continue
{
	my $n = shift;
	my $pid = fleet_broker_pid($n);
	kill 'CONT', $pid if $pid;
	return $pid;
}

# fleet_coordinator_partition($id, $partitions): the partition of
# __transaction_state (for a transactional.id) or __consumer_offsets (for a
# group id) whose leader coordinates $id, as Kafka computes it:
# Utils.abs(id.hashCode()) % partitions, where Utils.abs is Math.abs with 0
# for Integer.MIN_VALUE; not hashCode & 0x7fffffff (Utils.toPositive, the
# producer's partitioner), which differs for a negative hash (checked
# against the coordinator's log line "Initialized transactionalId ... on
# partition __transaction_state-N" in 047).  ASCII ids only.
sub fleet_coordinator_partition
{
	my ($id, $partitions) = @_;
	my $h = 0;
	$h = ($h * 31 + $_) % 4294967296 for unpack('C*', $id);
	$h -= 4294967296 if $h >= 2147483648;
	return $h == -2147483648 ? 0 : abs($h) % $partitions;
}

1;
