# Details of the ZooKeeper lease, each against a ZooKeeper this test owns,
# most through a TCP proxy that can lose an answer or play a follower cut
# off from the leader:
# - the answer to a high-water mark write is lost with the connection after
#   the write was applied: the node keeps its session, its id and issuing;
# - guid.reservation cannot be written: nothing is issued above what it
#   records, and after a crash-restart with the clock behind the IDs still
#   only grow;
# - the server answers reads but cannot reach the leader: the node fences
#   itself (the heartbeat is a sync, which only the leader answers);
# - the lease deadline in guid.status is consistent with the clock;
# - a host name in guid.zookeeper is resolved (by the worker, not the client).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $zk = zookeeper_start('details');
my $direct = "127.0.0.1:$zk->{port}";
my $proxy = zk_proxy_start($zk->{port});
my $via = "127.0.0.1:$proxy->{port}";

# poll($node, $query, $seconds): poll until $query returns 't', at most
# $seconds (a bound for code that never gets there, not a speed assumption).
sub poll
{
	my ($node, $query, $seconds) = @_;
	my $deadline = time + $seconds;
	while (time < $deadline)
	{
		my ($ret, $out) = $node->psql('postgres', $query);
		return 1 if $ret == 0 && $out eq 't';
		select(undef, undef, undef, 0.05);
	}
	return 0;
}

sub no_repeat_and_increasing
{
	my ($node, $what) = @_;
	is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT id) FROM ids'), '0',
		"$what: no duplicate");
	is($node->safe_psql('postgres',
		'SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY n) AS prev FROM ids) s WHERE id <= prev'),
		'0', "$what: every ID is greater than the ones issued before it");
}

sub reservation_file_ms
{
	my $node = shift;
	my $f = PostgreSQL::Test::Utils::slurp_file($node->data_dir . '/guid.reservation');
	$f =~ /^reserved_ms (\d+)$/m or die "guid.reservation: $f";
	return $1;
}

# --- The answer to a high-water mark write is lost ---------------------------
{
	my $ns = 'lost_answer';
	my $n = guid_node('lost_answer', node_id => undef, conf => zk_conf($via, $ns, '4s'));
	my $id = wait_for_lease($n);
	my $session = $n->safe_psql('postgres', 'SELECT session_id FROM guid.status');
	$n->safe_psql('postgres', 'CREATE TABLE ids (n bigserial, id guid)');
	my $log_offset = -s $n->logfile;

	# While IDs are issued the worker extends hwm/<id> about every half
	# second; the proxy lets the next such write through and drops its answer.
	zk_proxy_mode($proxy, 'drop_set_reply');
	my $failures = 0;
	my $issue = sub {
		my ($ret) = $n->psql('postgres', 'INSERT INTO ids (id) SELECT guid_next() FROM generate_series(1, 500)');
		$failures++ if $ret != 0;
	};
	my $deadline = time + 120;
	$issue->() while zk_proxy_events($proxy) !~ /dropped the answer to setData/ && time < $deadline;
	like(zk_proxy_events($proxy), qr{dropped the answer to setData /guid/$ns/hwm/$id},
		'the answer to an applied high-water mark write was lost with the connection');

	# Keep issuing until the worker has written the mark again (or given up).
	$deadline = time + 120;
	$issue->() while time < $deadline
	  && !$n->log_contains(qr/was written although the answer was lost|was changed by someone else|leased node id/, $log_offset);
	$issue->() for 1 .. 20;

	ok($n->log_contains(qr/high-water mark \d+ in ZooKeeper node "\/guid\/$ns\/hwm\/$id" was written although the answer was lost; continuing at version \d+/, $log_offset),
		'the worker finds its own lost write in the mark and takes its version');
	ok(!$n->log_contains(qr/was changed by someone else/, $log_offset), '... it does not take it for another holder');
	ok(!$n->log_contains(qr/leased node id/, $log_offset), '... and does not lease again');
	is($n->safe_psql('postgres', 'SELECT mode, node_id, session_id FROM guid.status'), "leased|$id|$session",
		'the node keeps its id, its session and its lease');
	is($failures, 0, 'no guid_next() call failed meanwhile');
	no_repeat_and_increasing($n, 'IDs across the lost answer');

	# The reservation in use first: the worker may extend the mark meanwhile.
	my ($reserved, $max) = split /\|/, $n->safe_psql('postgres',
		"SELECT (extract(epoch FROM reserved_until) * 1000)::bigint - 1735689600000, "
		  . "(SELECT max(id)::bigint >> 22 FROM ids) FROM guid.status");
	my $hwm = zk_get($direct, "/guid/$ns/hwm/$id");
	ok(defined $hwm && $hwm >= $reserved, "the mark in ZooKeeper ($hwm) covers the reservation in use ($reserved)");
	ok($reserved >= $max, "... which covers every ID issued ($max)");
	ok(reservation_file_ms($n) >= $reserved, '... and so does guid.reservation');
	$n->stop;
}

# --- guid.reservation cannot be written ----------------------------------------
{
	my $ns = 'local_file';
	# (By host name: the worker resolves it and gives the client addresses.)
	my $r = guid_node('local_file', node_id => undef, faketime => 1,
		conf => zk_conf("localhost:$zk->{port}", $ns, '10s') . "guid.max_clock_ahead = '30s'\n");
	my $first_id = wait_for_lease($r);
	is($r->safe_psql('postgres', 'SELECT zookeeper_state FROM guid.status'), 'connected',
		'a guid.zookeeper given by host name is resolved and connected');
	$r->safe_psql('postgres', 'CREATE TABLE ids (n bigserial, id guid)');
	$r->safe_psql('postgres', 'INSERT INTO ids (id) SELECT guid_next() FROM generate_series(1, 1000)');

	# A directory where the file's temporary copy goes: every write fails.
	my $blocker = $r->data_dir . '/guid.reservation.tmp';
	mkdir $blocker or die "mkdir $blocker: $!";
	my $file_ms = reservation_file_ms($r);

	my ($err, $above) = ('', 0);
	my $deadline = time + 120;
	while (time < $deadline)
	{
		my ($ret, $out, $stderr) = $r->psql('postgres', 'INSERT INTO ids (id) SELECT guid_next() FROM generate_series(1, 500)');
		if ($ret != 0) { $err = $stderr; last; }
		$file_ms = reservation_file_ms($r);
		if ($r->safe_psql('postgres', "SELECT max(id)::bigint >> 22 > $file_ms FROM ids") eq 't') { $above = 1; last; }
	}
	ok(!$above, 'no ID is issued above the millisecond guid.reservation records');
	# (a backend extends the reservation itself below the mark in ZooKeeper,
	# as in standalone mode, and reports why it could not)
	like($err, qr/could not create file "guid.reservation.tmp"|guid reservation was not extended in time/,
		'guid_next() fails once the durable reservation runs out');
	ok($r->poll_query_until('postgres',
		q{SELECT last_error ~ 'could not write the reservation file guid.reservation' FROM guid.status}),
		'guid.status says why');
	ok($r->log_contains(qr/WARNING:  could not create file "guid.reservation.tmp"/), '... and the log says how');

	# Crash, and come back with the clock 10 s behind.  The old session still
	# holds the id, so the cluster leases another one, whose mark is fresh:
	# only guid.reservation keeps its IDs above the ones it issued.
	my $pid = $r->{_pid};
	$r->kill9;
	for (1 .. 600) { last unless kill 0, $pid; select(undef, undef, undef, 0.05); }
	rmdir $blocker or die "rmdir $blocker: $!";
	set_fake_time($r, '-10s');
	start_faked($r);
	my $second_id = wait_for_lease($r);
	isnt($second_id, $first_id, "after the crash the cluster leases another id ($second_id, not $first_id)");
	$r->safe_psql('postgres', 'INSERT INTO ids (id) SELECT guid_next() FROM generate_series(1, 1000)');
	no_repeat_and_increasing($r, 'IDs across the crash with the clock behind');
	$r->stop;
}

# --- The server answers reads but cannot reach the leader -----------------------
{
	my $ns = 'cut_off';
	my $c = guid_node('cut_off', node_id => undef, conf => zk_conf($via, $ns, '4s'));
	wait_for_lease($c);
	my $timeout = $c->safe_psql('postgres', 'SELECT session_timeout_ms FROM guid.status');
	ok(poll($c, q{SELECT lease_deadline > now() AND lease_deadline <= now() + session_timeout_ms * interval '1 ms' FROM guid.status}, 10),
		'the lease deadline in guid.status lies within one session timeout ahead');

	# Wait until the local reservation lapses (an idle node stops extending
	# it, and the clock passes it), so that what follows issues nothing
	# before the cut; the heartbeat and the mark kept ahead still talk to
	# ZooKeeper.
	ok(poll($c, 'SELECT reserved_until < now() FROM guid.status', 120), 'the idle node stops extending its reservation');
	zk_proxy_mode($proxy, 'cut');
	ok(poll($c, "SELECT mode = 'fenced' FROM guid.status", 30),
		'a node whose server answers reads but reaches no leader fences itself');
	like(zk_proxy_events($proxy), qr/held 9\b/, '... its heartbeat was a sync, held back with the leader');
	my ($ret, $out, $err) = $c->psql('postgres', 'SELECT guid_next()');
	like($err, qr/guid node id lease is fenced/, '... and guid_next() fails');

	zk_proxy_mode($proxy, 'pass');
	ok(poll($c, "SELECT mode = 'leased' FROM guid.status", 60), 'once the leader answers again the node leases again');
	$c->safe_psql('postgres', 'CREATE TABLE ids (n bigserial, id guid)');
	$c->safe_psql('postgres', 'INSERT INTO ids (id) SELECT guid_next() FROM generate_series(1, 1000)');
	no_repeat_and_increasing($c, 'IDs after the leader is back');
	$c->stop;
}

zk_proxy_stop($proxy);
zookeeper_stop($zk);
done_testing();
