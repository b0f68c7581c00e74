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
