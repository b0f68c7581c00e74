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
  kafka_resume zk_proxy_start zk_proxy_mode zk_proxy_events zk_proxy_stop zk_get
  kafka_admin kafka_produce stream_messages checkpoint_group group_checkpoint
  redis_start redis_stop redis_cli redis_pid set_guid_redis accept_queue
  system_identifier wait_published_by
  stream_standby failover_figures consume_all
  zk_ensemble_start zk_ensemble_stop zk_ensemble_kill zk_ensemble_restart
  zk_ensemble_signal zk_ensemble_mode zk_ensemble_leader zk_ensemble_serving
  zk_ensemble_connect guid_load_start guid_load_finish);

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

# A broker of the test's own, for outages: { dir, port, brokers }.  It is
# stopped when the test ends, whether or not the test stopped it (END below).
my @kafka_started;

sub kafka_start
{
	my $name = shift;
	my $k = { dir => "$PostgreSQL::Test::Utils::tmp_check/kafka_$name",
		port => PostgreSQL::Test::Cluster::get_free_port() };
	$k->{brokers} = "127.0.0.1:$k->{port}";
	push @kafka_started, $k->{dir};
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/kafka.sh",
		'start', $k->{dir}, $k->{port});
	return $k;
}

END
{
	local $?;
	# kafka.sh stop thaws a frozen broker first; a stopped one is left
	system("$FindBin::RealBin/../services/kafka.sh", 'stop', $_) for @kafka_started;
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

# --- A TCP proxy in front of ZooKeeper, for faults inside a session --------
#
# zk_proxy_start($zk_port): a proxy on a free loopback port that forwards
# ZooKeeper's framed protocol (4-byte length, then the packet) both ways and
# reads the request type of each packet.  Its mode file says what it does:
#   pass            forward everything
#   drop_set_reply  when the server answers a setData on a .../hwm/... path
#                   (so the write was applied), close both sides without
#                   passing the answer on; then back to pass
#   cut             a follower cut off from the leader: requests that must
#                   reach the leader (writes, sync) and everything after them
#                   on that connection are held back; reads before them pass.
#                   Back to pass, the held requests are sent on.
# Events (accept, dropped, held <request type>) are appended to $dir/events.
my $zk_proxy_code = <<'PROXY';
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
my ($listen_port, $up_port, $dir) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $listen_port,
	Listen => 16, ReuseAddr => 1) or die "listen: $!";
# create, delete, setData, setACL, sync, check, multi, create2, reconfig,
# createContainer, deleteContainer, createTTL, closeSession
my %leader = map { $_ => 1 } (1, 2, 5, 7, 9, 13, 14, 15, 16, 19, 20, 21, -11);
my @conns;
open(my $ev, '>>', "$dir/events") or die;
$ev->autoflush(1);
$SIG{TERM} = sub { exit 0 };
sub mode
{
	open(my $f, '<', "$dir/mode") or return 'pass';
	my $m = <$f> // 'pass';
	chomp $m;
	return $m;
}
sub sendall
{
	my ($fh, $data) = @_;
	while (length $data)
	{
		my $n = syswrite($fh, $data);
		return unless defined $n;
		substr($data, 0, $n, '');
	}
}
sub drop { my $k = shift; close $k->{c}; close $k->{s}; @conns = grep { $_ != $k } @conns; }
sub packets
{
	my $bufref = shift;
	my @p;
	while (length($$bufref) >= 4)
	{
		my $len = unpack('N', $$bufref);
		last if length($$bufref) < 4 + $len;
		push @p, substr($$bufref, 0, 4 + $len, '');
	}
	return @p;
}
while (1)
{
	my $mode = mode();
	for my $k (@conns)
	{
		next if $mode eq 'cut' || !$k->{holding};
		sendall($k->{s}, $k->{held});
		$k->{held} = '';
		$k->{holding} = 0;
	}
	my $sel = IO::Select->new($l, map { ($_->{c}, $_->{s}) } @conns);
	for my $fh ($sel->can_read(0.05))
	{
		if ($fh == $l)
		{
			my $c = $l->accept or next;
			my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $up_port);
			if (!$s) { close $c; next; }
			push @conns, { c => $c, s => $s, cin => '', sin => '', cfirst => 1, sfirst => 1,
				held => '', holding => 0, sets => {} };
			print $ev "accept\n";
			next;
		}
		my ($k) = grep { $_->{c} == $fh || $_->{s} == $fh } @conns;
		next unless $k;
		my $n = sysread($fh, my $buf, 65536);
		if (!$n) { drop($k); next; }
		if ($fh == $k->{c})
		{
			$k->{cin} .= $buf;
			for my $pkt (packets(\$k->{cin}))
			{
				my ($xid, $type) = (0, 0);
				if ($k->{cfirst}) { $k->{cfirst} = 0; }
				else { ($xid, $type) = unpack('l> l>', substr($pkt, 4, 8)); }
				if ($type == 5)
				{
					my ($plen) = unpack('l>', substr($pkt, 12, 4));
					$k->{sets}{$xid} = substr($pkt, 16, $plen);
				}
				if ($mode eq 'cut' && ($k->{holding} || $leader{$type}))
				{
					print $ev "held $type\n";
					$k->{holding} = 1;
					$k->{held} .= $pkt;
					next;
				}
				sendall($k->{s}, $pkt);
			}
		}
		else
		{
			$k->{sin} .= $buf;
			my $dropped = 0;
			for my $pkt (packets(\$k->{sin}))
			{
				if ($k->{sfirst}) { $k->{sfirst} = 0; sendall($k->{c}, $pkt); next; }
				my ($xid) = unpack('l>', substr($pkt, 4, 4));
				my ($err) = unpack('l>', substr($pkt, 16, 4));
				my $path = delete $k->{sets}{$xid};
				if ($mode eq 'drop_set_reply' && defined $path && $path =~ m{/hwm/} && $err == 0)
				{
					print $ev "dropped the answer to setData $path\n";
					open(my $f, '>', "$dir/mode.new") or die;
					print $f "pass\n";
					close $f;
					rename("$dir/mode.new", "$dir/mode") or die;
					drop($k);
					$dropped = 1;
					last;
				}
				sendall($k->{c}, $pkt);
			}
			next if $dropped;
		}
	}
}
PROXY

sub zk_proxy_start
{
	my ($zk_port) = @_;
	my $p = { port => PostgreSQL::Test::Cluster::get_free_port(),
		dir => "$PostgreSQL::Test::Utils::tmp_check/zk_proxy_" . int(rand(1e9)) };
	mkdir $p->{dir} or die "mkdir $p->{dir}: $!";
	zk_proxy_mode($p, 'pass');
	$p->{h} = IPC::Run::start([ $^X, '-e', $zk_proxy_code, $p->{port}, $zk_port, $p->{dir} ],
		'>', "$p->{dir}/stdout", '2>', "$p->{dir}/stderr");
	for (1 .. 100)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p->{port});
		if ($s) { close $s; return $p; }
		select(undef, undef, undef, 0.1);
	}
	die "the ZooKeeper proxy did not start: " . PostgreSQL::Test::Utils::slurp_file("$p->{dir}/stderr");
}

sub zk_proxy_mode
{
	my ($p, $mode) = @_;
	open(my $f, '>', "$p->{dir}/mode.new") or die;
	print $f "$mode\n";
	close $f;
	rename("$p->{dir}/mode.new", "$p->{dir}/mode") or die "rename: $!";
}

sub zk_proxy_events
{
	my $p = shift;
	return -e "$p->{dir}/events" ? PostgreSQL::Test::Utils::slurp_file("$p->{dir}/events") : '';
}

sub zk_proxy_stop
{
	my $p = shift;
	$p->{h}->signal('TERM');
	$p->{h}->finish;
}

# zk_get($host_port, $path): the data of a znode, read with ZooKeeper's CLI.
sub zk_get
{
	my ($hp, $path) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ '/usr/share/zookeeper/bin/zkCli.sh', '-server', $hp, 'get', $path ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	my @lines = grep { /^\d+$/ } split /\n/, $out;
	return $lines[-1];
}

# kafka_admin($brokers, @args): what kcat cannot do (test/tap/kafka_admin.c:
# create, delete, partitions, delete-records).  Dies if the broker refuses.
sub kafka_admin
{
	my ($brokers, @args) = @_;
	my $bin = "$PostgreSQL::Test::Utils::tmp_check/kafka_admin";
	PostgreSQL::Test::Utils::system_or_bail('cc', '-o', $bin, "$FindBin::RealBin/kafka_admin.c", '-lrdkafka')
	  unless -x $bin;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $bin, $brokers, @args ], '>', \$out, '2>', \$err)
	  or die "kafka_admin @args: $err";
}

# checkpoint_group($node): the consumer group whose offset metadata holds
# $node's publisher checkpoint (guid-ckpt-<transactional.id>).
sub checkpoint_group
{
	my $node = shift;
	my ($ns, $slot) = split /\|/, $node->safe_psql('postgres',
		"SELECT current_setting('guid.namespace') || '|' || current_setting('guid.slot_name')");
	return "guid-ckpt-guid-$ns-" . system_identifier($node) . "-$slot";
}

# group_checkpoint($brokers, $group, $topic, $latest): the checkpoint
# committed for $group (the metadata of its stable offset for $topic [0]),
# or undef when it has none.  With $latest, the last committed one without
# waiting for an open transaction that sent newer offsets.
sub group_checkpoint
{
	my ($brokers, $group, $topic, $latest) = @_;
	my $bin = "$PostgreSQL::Test::Utils::tmp_check/kafka_admin";
	PostgreSQL::Test::Utils::system_or_bail('cc', '-o', $bin, "$FindBin::RealBin/kafka_admin.c", '-lrdkafka')
	  unless -x $bin;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $bin, $brokers, 'group-offset', $group, $topic, $latest ? ('latest') : () ],
		'>', \$out, '2>', \$err)
	  or die "kafka_admin group-offset $group: $err";
	chomp $out;
	my ($offset, $metadata) = split /\t/, $out, 2;
	return $offset >= 0 ? $metadata : undef;
}

# kafka_produce($brokers, $topic, $partition, @messages): each message
# ([ key, value ]) to that partition, outside any transaction.
sub kafka_produce
{
	my ($brokers, $topic, $partition, @messages) = @_;
	my $in = join '', map { "$_->[0]\t$_->[1]\n" } @messages;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-P', '-b', $brokers, '-t', $topic, '-p', $partition, '-K', "\t" ],
		'<', \$in, '>', \$out, '2>', \$err)
	  or die "kcat -P failed: $err";
}

# stream_messages($node, $n, $service): $n new guids of $node as messages of
# the audit stream ([ key, JSON value ]), as the publisher writes them.
sub stream_messages
{
	my ($node, $n, $service) = @_;
	my $out = $node->safe_psql('postgres', qq{
		SELECT format('{"guid":"%s","node_id":%s,"created_at":"%s","service":"%s","lsn":"0/1","xid":1}',
			g, guid_node(g), to_char(guid_timestamp(g) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
			'$service')
		FROM (SELECT guid_next() AS g FROM generate_series(1, $n)) s});
	return map { [ $service, $_ ] } split /\n/, $out;
}

# --- Redis (idempotency keys) ------------------------------------------------

# redis_start($name, @redis_server_options): a private Redis for this test on a
# free loopback port.  Returns { dir, port }.
sub redis_start
{
	my ($name, @opts) = @_;
	my $r = { dir => "$PostgreSQL::Test::Utils::tmp_check/redis_$name",
		port => PostgreSQL::Test::Cluster::get_free_port() };
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/redis.sh",
		'start', $r->{dir}, $r->{port}, @opts);
	return $r;
}

sub redis_stop
{
	my $r = shift;
	PostgreSQL::Test::Utils::system_or_bail("$FindBin::RealBin/../services/redis.sh", 'stop', $r->{dir});
}

# redis_cli($r, @command): run one command (authenticating with $r->{password}
# when set); returns its output without the final newline.
sub redis_cli
{
	my ($r, @cmd) = @_;
	my $out = '';
	my @auth = defined $r->{password} ? ('-a', $r->{password}, '--no-auth-warning') : ();
	IPC::Run::run([ 'redis-cli', '-h', '127.0.0.1', '-p', $r->{port}, @auth, @cmd ], '>', \$out)
	  or die "redis-cli @cmd failed";
	chomp $out;
	return $out;
}

sub redis_pid
{
	my $r = shift;
	my $pid = PostgreSQL::Test::Utils::slurp_file("$r->{dir}/redis.pid");
	chomp $pid;
	return $pid;
}

# set_guid_redis($node, $value, @sessions): ALTER SYSTEM SET guid.redis and
# reload; wait until new backends and each BackgroundPsql session see it.
sub set_guid_redis
{
	my ($node, $value, @sessions) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET guid.redis = '$value'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('postgres', "SELECT current_setting('guid.redis') = '$value'")
	  or die "guid.redis did not become $value";
	for my $s (@sessions)
	{
		my $seen = 0;
		for (1 .. 600)
		{
			$seen = $s->query_safe("SELECT current_setting('guid.redis') = '$value'") eq 't' and last;
			select(undef, undef, undef, 0.05);
		}
		die "a session did not see guid.redis = $value" unless $seen;
	}
}

# accept_queue($port): connections waiting in the accept queue of the
# loopback listener on $port (the rx_queue of a LISTEN socket in
# /proc/net/tcp), or undef when nothing listens there.
sub accept_queue
{
	my $port = shift;
	my $hex = sprintf('%04X', $port);
	open(my $fh, '<', '/proc/net/tcp') or die "/proc/net/tcp: $!";
	while (my $line = <$fh>)
	{
		my @f = split ' ', $line;
		next unless @f > 4 && $f[1] =~ /:$hex$/ && $f[3] eq '0A';
		my (undef, $rx) = split /:/, $f[4];
		return hex($rx);
	}
	return undef;
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

# --- Physical standbys (high availability) -----------------------------------

push @EXPORT, qw(guid_primary guid_standby kill9_all guid_sqlstate);

# guid_primary($name, %opts): a started cluster with guid preloaded that
# physical standbys can stream from (allows_streaming).
#   conf      => postgresql.conf text (guid.node_id or zk_conf(...) go here)
#   faketime  => 1 to run it under libfaketime
#   archiving => 1 to archive its WAL (for point-in-time recovery)
sub guid_primary
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 1, has_archiving => $opts{archiving} ? 1 : 0);
	$node->append_conf('postgresql.conf',
		"max_connections = 20\nshared_preload_libraries = 'guid'\n" . ($opts{conf} // ''));
	if ($opts{faketime})
	{
		$node->{guid_faketime} = $node->basedir . '/faketime';
		set_fake_time($node, '+0');
	}
	start_faked($node);
	$node->safe_psql('postgres', 'CREATE EXTENSION guid');
	return $node;
}

# guid_standby($primary, $name, %opts): a hot standby streaming from
# $primary, made from a fresh base backup (so it copies postgresql.conf and
# guid.reservation).
#   conf      => postgresql.conf text appended to the copied one
#   faketime  => a libfaketime spec ('-2s') for its clock
#   start     => 0 to return it unstarted
#   backup    => the name of a backup of $primary to use instead of a fresh one
#   restoring => 1: recover from $primary's WAL archive instead of streaming
sub guid_standby
{
	my ($primary, $name, %opts) = @_;
	my $backup = $opts{backup} // "${name}_backup";
	$primary->backup($backup) unless $opts{backup};
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($primary, $backup,
		$opts{restoring} ? (has_restoring => 1) : (has_streaming => 1));
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	if ($opts{faketime})
	{
		$node->{guid_faketime} = $node->basedir . '/faketime';
		set_fake_time($node, $opts{faketime});
	}
	return $node if defined $opts{start} && !$opts{start};
	start_faked($node);
	return $node if $opts{restoring};
	$node->poll_query_until('postgres', 'SELECT pg_is_in_recovery()')
	  or die "$name is not a standby";
	return $node;
}

# kill9_all($node): SIGKILL the postmaster and all its children at once, as
# a crash of the machine would (PostgreSQL::Test::Cluster's kill9 leaves the
# backends running until they notice).
sub kill9_all
{
	my $node = shift;
	my $pm = $node->{_pid} or die $node->name . ' is not running';
	my @pids = ($pm, split ' ', `ps -o pid= --ppid $pm`);
	kill 'KILL', @pids;
	$node->{_pid} = undef;
}

# guid_sqlstate($node, $sql): (SQLSTATE, message, hint) of the error $sql
# raises, or () when it succeeds.
sub guid_sqlstate
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return () if $ret == 0;
	my ($state, $msg) = $err =~ /ERROR:  ([0-9A-Z]{5}): ([^\n]*)/;
	my ($hint) = $err =~ /HINT:  ([^\n]*)/;
	return ($state // '', $msg // $err, $hint // '');
}

# --- The audit stream across a failover (026, 027) ------------------------------

# stream_standby($primary, $name, $slot): a streaming physical standby of
# $primary, through the physical slot $slot (created here), started.
sub stream_standby
{
	my ($primary, $name, $slot) = @_;
	$primary->safe_psql('postgres', "SELECT pg_create_physical_replication_slot('$slot', true)");
	$primary->backup("${name}_backup");
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, "${name}_backup", has_streaming => 1);
	$standby->append_conf('postgresql.conf', "primary_slot_name = '$slot'\n");
	$standby->start;
	$primary->poll_query_until('postgres',
		"SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = '$slot' AND active")
	  or die "$name did not start streaming";
	return $standby;
}

# failover_figures($node): the last failover recovery its publisher logged:
# { republished, duplicates, missing }, or undef if there was none.
sub failover_figures
{
	my $node = shift;
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
	my @all = $log =~ /failover recovery: republished (\d+) audit rows \((\d+) possible duplicates\), (\d+) guids in Kafka missing/g;
	return undef unless @all;
	my ($r, $d, $m) = @all[-3 .. -1];
	return { republished => $r, duplicates => $d, missing => $m };
}

# consume_all($node, $db, $brokers, $topic): run the reference consumer
# into database $db of $node until the topic is idle; returns its summary
# { messages, applied, duplicates } and the guids it applied (sorted).
sub consume_all
{
	my ($node, $db, $brokers, $topic) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $ENV{GUID_CONSUMER}, '--brokers', $brokers, '--topic', $topic,
		'--conninfo', $node->connstr($db), '--idle-exit', '3' ], '>', \$out, '2>', \$err)
	  or die "guid_consumer failed: $err";
	my ($messages, $applied, $dups) = $out =~ /messages (\d+) applied (\d+) duplicates (\d+)/
	  or die "guid_consumer said: $out";
	my $guids = $node->safe_psql($db, 'SELECT guid FROM guid_applied ORDER BY guid');
	return ({ messages => $messages, applied => $applied, duplicates => $dups }, $guids);
}

# --- A 3-node ZooKeeper ensemble --------------------------------------------

# zk_four($port, $cmd): a four-letter command's answer ('' when none).
sub zk_four
{
	my ($port, $cmd) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2)
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

# zk_ensemble_start($name, %opts): three ZooKeeper servers (Debian's
# package, java) on loopback, one quorum, tickTime 500 ms, sessions 1 s to
# 60 s.  Returns { servers => [ { dir, port, pid } x 3 ] } once a leader
# serves.
#   cfg => extra zoo.cfg lines, e.g. "maxClientCnxns=0\n" (ZooKeeper allows
#          60 connections from one address by default)
sub zk_ensemble_start
{
	my ($name, %opts) = @_;
	my $ens = { servers => [] };
	my @ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 9;
	my $quorum = '';
	for my $i (1 .. 3)
	{
		$quorum .= "server.$i=127.0.0.1:$ports[3 * $i - 2]:$ports[3 * $i - 1]\n";
	}
	for my $i (1 .. 3)
	{
		my $dir = "$PostgreSQL::Test::Utils::tmp_check/zkens_${name}_$i";
		mkdir $dir;
		mkdir "$dir/data";
		PostgreSQL::Test::Utils::append_to_file("$dir/data/myid", "$i\n");
		PostgreSQL::Test::Utils::append_to_file("$dir/zoo.cfg",
			"tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=$dir/data\n"
			  . "clientPort=$ports[3 * $i - 3]\nclientPortAddress=127.0.0.1\n"
			  . "minSessionTimeout=1000\nmaxSessionTimeout=60000\n"
			  . "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,stat,cons,dump\n"
			  . ($opts{cfg} // '')
			  . $quorum);
		PostgreSQL::Test::Utils::append_to_file("$dir/log4j.properties",
			"log4j.rootLogger=INFO, FILE\nlog4j.appender.FILE=org.apache.log4j.FileAppender\n"
			  . "log4j.appender.FILE.File=$dir/zookeeper.log\n"
			  . "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
			  . "log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} - %-5p - %m%n\n");
		push @{ $ens->{servers} }, { dir => $dir, port => $ports[3 * $i - 3] };
	}
	zk_ensemble_restart($ens, $_) for 0 .. 2;
	for (1 .. 600)
	{
		return $ens if defined zk_ensemble_leader($ens);
		select(undef, undef, undef, 0.1);
	}
	die "the ZooKeeper ensemble $name elected no leader within 60 s";
}

# zk_ensemble_restart($ens, $i): start server $i (0-based) again.
sub zk_ensemble_restart
{
	my ($ens, $i) = @_;
	my $s = $ens->{servers}[$i];
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', "$s->{dir}/stdout.log";
		open STDERR, '>&', \*STDOUT;
		exec 'java', '-Xmx128m', "-Dzookeeper.log.dir=$s->{dir}",
		  '-Dzookeeper.jmx.log4j.disable=true',
		  '-cp', "$s->{dir}:/usr/share/java/zookeeper.jar",
		  'org.apache.zookeeper.server.quorum.QuorumPeerMain', "$s->{dir}/zoo.cfg";
		exit 127;
	}
	$s->{pid} = $pid;
}

# zk_ensemble_kill($ens, $i): kill -9 server $i and reap it.
sub zk_ensemble_kill
{
	my ($ens, $i) = @_;
	my $s = $ens->{servers}[$i];
	return unless $s->{pid};
	kill 'CONT', $s->{pid};
	kill 'KILL', $s->{pid};
	waitpid($s->{pid}, 0);
	$s->{pid} = undef;
}

sub zk_ensemble_stop
{
	my $ens = shift;
	zk_ensemble_kill($ens, $_) for 0 .. 2;
}

# zk_ensemble_signal($ens, 'STOP' | 'CONT'): freeze or thaw every server.
sub zk_ensemble_signal
{
	my ($ens, $sig) = @_;
	kill $sig, grep { $_ } map { $_->{pid} } @{ $ens->{servers} };
}

# zk_ensemble_mode($ens, $i): 'leader', 'follower' or '' (not serving).
sub zk_ensemble_mode
{
	my ($ens, $i) = @_;
	my $out = zk_four($ens->{servers}[$i]{port}, 'srvr');
	return $out =~ /^Mode: (leader|follower)$/m ? $1 : '';
}

# zk_ensemble_leader($ens): the index of the leader, undef if none.
sub zk_ensemble_leader
{
	my $ens = shift;
	for my $i (0 .. 2)
	{
		next unless $ens->{servers}[$i]{pid};
		return $i if zk_ensemble_mode($ens, $i) eq 'leader';
	}
	return undef;
}

# zk_ensemble_serving($ens, $session_id): the index of the server a
# session ('0x...', as guid.status shows it) is connected to (its "cons"
# lists it), undef if none.
sub zk_ensemble_serving
{
	my ($ens, $session) = @_;
	(my $hex = $session) =~ s/^0x0*//;
	for my $i (0 .. 2)
	{
		next unless $ens->{servers}[$i]{pid};
		return $i if zk_four($ens->{servers}[$i]{port}, 'cons') =~ /sid=0x0*\Q$hex\E\b/;
	}
	return undef;
}

# zk_ensemble_connect($ens): its connect string.
sub zk_ensemble_connect
{
	my $ens = shift;
	return join ',', map { "127.0.0.1:$_->{port}" } @{ $ens->{servers} };
}

# --- Load ------------------------------------------------------------------

# guid_load_start($node, $tag): a session that calls guid_next() in a loop,
# about every 2 ms, until guid_load_finish: it counts calls, failures (with
# their SQLSTATEs), IDs not above the one before, the longest call, and
# keeps the first and last ID.
sub guid_load_start
{
	my ($node, $tag) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE IF NOT EXISTS load_ctl (tag text PRIMARY KEY, stop bool NOT NULL DEFAULT false);
		CREATE TABLE IF NOT EXISTS load_result (tag text PRIMARY KEY, calls int, failures int,
			states text, not_increasing int, longest_ms float8, first_id bigint, last_id bigint);
		INSERT INTO load_ctl VALUES ('$tag', false);
	});
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', qq{
		DO \$\$
		DECLARE
			id guid; last_id guid; first_id guid; t0 timestamptz; d float8;
			calls int := 0; failures int := 0; bad int := 0; longest float8 := 0; states text := '';
		BEGIN
			WHILE NOT (SELECT stop FROM load_ctl WHERE tag = '$tag') LOOP
				t0 := clock_timestamp();
				BEGIN
					id := guid_next();
					IF last_id IS NOT NULL AND id <= last_id THEN bad := bad + 1; END IF;
					first_id := coalesce(first_id, id);
					last_id := id;
				EXCEPTION WHEN others THEN
					failures := failures + 1;
					IF position(SQLSTATE IN states) = 0 THEN states := states || SQLSTATE || ' '; END IF;
				END;
				d := extract(epoch FROM clock_timestamp() - t0) * 1000;
				calls := calls + 1;
				longest := greatest(longest, d);
				PERFORM pg_sleep(0.002);
			END LOOP;
			INSERT INTO load_result VALUES ('$tag', calls, failures, states, bad, longest,
				first_id::bigint, last_id::bigint);
		END \$\$;} ],
		\$in, \$out, \$err);
	return { h => $h, node => $node, tag => $tag, err => \$err };
}

# guid_load_finish($load): stop it; returns its figures as a hash.
sub guid_load_finish
{
	my $l = shift;
	$l->{node}->safe_psql('postgres', "UPDATE load_ctl SET stop = true WHERE tag = '$l->{tag}'");
	$l->{h}->finish;
	die "load $l->{tag} failed: ${ $l->{err} }" if $l->{h}->result;
	my $row = $l->{node}->safe_psql('postgres',
		"SELECT calls, failures, states, not_increasing, longest_ms, first_id, last_id "
		  . "FROM load_result WHERE tag = '$l->{tag}'");
	my @f = split /\|/, $row;
	return { calls => $f[0], failures => $f[1], states => $f[2], not_increasing => $f[3],
		longest_ms => $f[4], first_id => $f[5], last_id => $f[6] };
}

1;
