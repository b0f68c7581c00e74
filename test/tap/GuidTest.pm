# GuidTest.pm: helpers shared by guid's Perl TAP tests.
#
# Scratch clusters come from PostgreSQL::Test::Cluster (shipped with
# postgresql-server-dev-15).  A cluster can run under libfaketime with a
# timestamp file, so that a test moves its clock while it runs.
package GuidTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;

use Exporter 'import';
our @EXPORT = qw(guid_node set_fake_time start_faked zk_conf zookeeper_start
  zookeeper_stop zookeeper_signal zk_ephemerals wait_for_lease
  kafka_conf kafka_read kafka_guids wait_published publisher_pid kafka_start kafka_stop
  kafka_resume system_identifier wait_published_by);

my $libfaketime = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

# guid_node($name, %opts): a new cluster with guid preloaded.
#   node_id   => guid.node_id (default 1; undef leaves it unset)
#   preload   => 0 to leave shared_preload_libraries empty
#   conf      => extra postgresql.conf text
#   faketime  => 1 to run the postmaster under libfaketime
#   start     => 0 to return it unstarted
sub guid_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $conf = "max_connections = 20\n";
	$conf .= "shared_preload_libraries = 'guid'\n" unless defined $opts{preload} && !$opts{preload};
	$conf .= "guid.node_id = " . ($opts{node_id} // 1) . "\n"
	  if !exists $opts{node_id} || defined $opts{node_id};
	$conf .= $opts{conf} if $opts{conf};
	$node->append_conf('postgresql.conf', $conf);

	if ($opts{faketime})
	{
		$node->{guid_faketime} = $node->basedir . '/faketime';
		set_fake_time($node, '+0');
	}
	return $node if defined $opts{start} && !$opts{start};

	start_faked($node);
	$node->safe_psql('postgres', 'CREATE EXTENSION guid');
	return $node;
}

# set_fake_time($node, $spec): what the node's clock says from now on:
# '+0', '-10s' (offset, running) or '2026-01-01 00:00:00' (frozen, UTC).
sub set_fake_time
{
	my ($node, $spec) = @_;
	die "node was not made with faketime => 1" unless $node->{guid_faketime};
	PostgreSQL::Test::Utils::append_to_file($node->{guid_faketime} . '.new', "$spec\n");
	rename($node->{guid_faketime} . '.new', $node->{guid_faketime}) or die "rename: $!";
}

# start_faked($node, %start_opts): start the node, under libfaketime when it
# was made with faketime => 1.  Only the postmaster (and so its children)
# gets the library; the test's own clients keep the real clock.
sub start_faked
{
	my ($node, %start_opts) = @_;
	local $ENV{TZ} = 'UTC';
	if ($node->{guid_faketime})
	{
		local $ENV{LD_PRELOAD} = $libfaketime;
		local $ENV{FAKETIME_TIMESTAMP_FILE} = $node->{guid_faketime};
		local $ENV{FAKETIME_NO_CACHE} = '1';
		local $ENV{FAKETIME_DONT_FAKE_MONOTONIC} = '1';
		return $node->start(%start_opts);
	}
	return $node->start(%start_opts);
}

# --- ZooKeeper -----------------------------------------------------------

# zk_conf($connect, $namespace, $timeout): postgresql.conf lines to lease a
# node id from ZooKeeper.
sub zk_conf
{
	my ($connect, $namespace, $timeout) = @_;
	return "guid.node_id = -1\n"
	  . "guid.zookeeper = '$connect'\n"
	  . "guid.namespace = '$namespace'\n"
	  . "guid.zookeeper_session_timeout = '" . ($timeout // '4s') . "'\n";
}

# zookeeper_start($name): a private ZooKeeper for this test (so that it may
# stop or freeze it), on a free loopback port.  Returns { dir, port }.
sub zookeeper_start
{
	my ($name, $zk) = @_;
	$zk //= {
		dir => "$PostgreSQL::Test::Utils::tmp_check/zk_$name",
		port => PostgreSQL::Test::Cluster::get_free_port()
	};
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/zookeeper.sh",
		'start', $zk->{dir}, $zk->{port});
	return $zk;
}

sub zookeeper_stop
{
	my $zk = shift;
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/zookeeper.sh",
		'stop', $zk->{dir});
}

# zookeeper_signal($zk, 'STOP' | 'CONT'): freeze or thaw the server.
sub zookeeper_signal
{
	my ($zk, $sig) = @_;
	my $pid = PostgreSQL::Test::Utils::slurp_file("$zk->{dir}/zookeeper.pid");
	chomp $pid;
	kill $sig, $pid or die "kill $sig $pid: $!";
}

# zk_ephemerals($host_port): the ephemeral znodes ZooKeeper holds ("dump").
sub zk_ephemerals
{
	my $hp = shift;
	my ($host, $port) = split /:/, $hp;
	my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 5)
	  or return undef;
	print $sock "dump";
	local $/;
	my $out = <$sock>;
	close $sock;
	return [ $out =~ m{^\s+(/\S+)$}mg ];
}

# wait_for_lease($node): poll until the node holds a lease; returns its id.
sub wait_for_lease
{
	my $node = shift;
	$node->poll_query_until('postgres', "SELECT mode = 'leased' FROM guid.status")
	  or die $node->name . " did not lease a node id: "
	  . $node->safe_psql('postgres', 'SELECT mode, zookeeper_state, last_error FROM guid.status');
	return $node->safe_psql('postgres', 'SELECT node_id FROM guid.status');
}

# --- Kafka (the audit stream) ----------------------------------------------

# postgresql.conf lines for a cluster that publishes guid.audit to $topic.
sub kafka_conf
{
	my ($brokers, $topic, %opts) = @_;
	my $conf = "wal_level = logical\nmax_wal_senders = 4\nmax_replication_slots = 4\n"
	  . "guid.kafka_brokers = '$brokers'\n"
	  . "guid.kafka_topic = '$topic'\n";
	# Debian's PostgreSQL 15 may restrict which libraries are output plugins.
	my $desc = `postgres --describe-config 2>/dev/null`;
	$conf .= "output_plugin_libraries = 'pgoutput, test_decoding, guid'\n"
	  if $desc =~ /^output_plugin_libraries\t/m;
	$conf .= "guid.kafka_properties = '$opts{properties}'\n" if $opts{properties};
	return $conf;
}

# Every committed message of $topic, read with isolation.level=read_committed:
# a list of { key, value (decoded JSON), lsn (header) }.
sub kafka_read
{
	my ($brokers, $topic, $raw_only) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-C', '-b', $brokers, '-t', $topic, '-X', 'isolation.level=read_committed',
		'-o', 'beginning', '-e', '-q', '-f', '%k\t%s\t%h\n' ], '>', \$out, '2>', \$err)
	  or return [];
	return [ $out =~ /"guid":"(\d+)"/g ] if $raw_only;
	my @msgs;
	for my $line (split /\n/, $out)
	{
		my ($key, $value, $headers) = split /\t/, $line, 3;
		my ($lsn) = ($headers // '') =~ /lsn=([0-9A-F\/]+)/;
		push @msgs, { key => $key, value => JSON::PP::decode_json($value), lsn => $lsn, raw => $value };
	}
	return \@msgs;
}

# The guids of a message list, sorted.
sub kafka_guids
{
	my $msgs = shift;
	return [ sort { $a <=> $b } map { $_->{value}{guid} } @$msgs ];
}

# Wait until Kafka holds as many distinct guids as guid.audit has rows and
# the publisher has nothing waiting; returns the messages.
sub wait_published
{
	my ($node, $brokers, $topic, $timeout) = @_;
	my $want = $node->safe_psql('postgres', 'SELECT count(*) FROM guid.audit');
	my $deadline = time + ($timeout // 120);
	while (time < $deadline)
	{
		my %distinct = map { $_ => 1 } @{ kafka_read($brokers, $topic, 1) };
		if (keys %distinct >= $want
			&& $node->safe_psql('postgres',
				"SELECT publisher_state = 'streaming' AND publish_lag_seconds = 0 FROM guid.status") eq 't')
		{
			return kafka_read($brokers, $topic);
		}
		select(undef, undef, undef, 0.2);
	}
	diag('not published: ' . $node->safe_psql('postgres',
		'SELECT publisher_state, rows_published, publisher_error FROM guid.status'));
	return kafka_read($brokers, $topic);
}

sub publisher_pid
{
	my $node = shift;
	return $node->safe_psql('postgres', 'SELECT publisher_pid FROM guid.status');
}

# A broker of the test's own, for outages: { dir, port, brokers }.
sub kafka_start
{
	my $name = shift;
	my $k = { dir => "$PostgreSQL::Test::Utils::tmp_check/kafka_$name",
		port => PostgreSQL::Test::Cluster::get_free_port() };
	$k->{brokers} = "127.0.0.1:$k->{port}";
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/kafka.sh",
		'start', $k->{dir}, $k->{port});
	return $k;
}

sub kafka_stop
{
	my $k = shift;
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/kafka.sh", 'stop', $k->{dir});
}

sub kafka_resume
{
	my $k = shift;
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/kafka.sh", 'resume', $k->{dir});
}

# --- Several clusters on one topic ----------------------------------------------

# The node's system identifier, as the stream writes it (a decimal string).
sub system_identifier
{
	my $node = shift;
	return $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
}

# Wait until every guid in $node's guid.audit is in $topic in a message
# naming $node's system identifier, and its publisher has nothing waiting;
# returns every message of the topic.  For topics several clusters share.
sub wait_published_by
{
	my ($node, $brokers, $topic, $timeout) = @_;
	my $sysid = system_identifier($node);
	my @want = split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit');
	my $deadline = time + ($timeout // 120);
	my $msgs = [];
	while (time < $deadline)
	{
		$msgs = kafka_read($brokers, $topic);
		my %have = map { $_->{value}{guid} => 1 } grep { $_->{value}{system_identifier} eq $sysid } @$msgs;
		return $msgs
		  if !grep({ !$have{$_} } @want)
		  && $node->safe_psql('postgres',
			"SELECT publisher_state = 'streaming' AND publish_lag_seconds = 0 FROM guid.status") eq 't';
		select(undef, undef, undef, 0.2);
	}
	diag($node->name . ' not published: ' . $node->safe_psql('postgres',
		'SELECT publisher_state, rows_published, publisher_error FROM guid.status'));
	return $msgs;
}

1;
