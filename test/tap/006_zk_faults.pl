# Leases under faults, each against a real ZooKeeper this test owns: a dead
# holder's id moves to a cluster whose clock is 30 s behind without a
# duplicate; a frozen ZooKeeper fences every node before its session could
# expire, and generation resumes when it is back (also after it was stopped
# and started); a crash-restart reattaches the live session and keeps the id.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $zk = zookeeper_start('faults');
my $connect = "127.0.0.1:$zk->{port}";

# --- A holder killed with kill -9 ---------------------------------------------
{
	my $ns = 'dead_holder';
	my $x = guid_node('holder', node_id => undef, conf => zk_conf($connect, $ns, '1s'));
	my $id = wait_for_lease($x);
	$x->safe_psql('postgres', 'CREATE TABLE ids AS SELECT guid_next() AS id FROM generate_series(1, 200000)');
	my $x_max = $x->safe_psql('postgres', 'SELECT max(id) FROM ids');
	$x->kill9;

	my $path = "/guid/$ns/nodes/$id";
	ok((grep { $_ eq $path } @{ zk_ephemerals($connect) }), "the dead holder's lease $path is still there");
	my $freed = 0;
	for (1 .. 300)
	{
		if (!grep { $_ eq $path } @{ zk_ephemerals($connect) // [$path] }) { $freed = 1; last; }
		select(undef, undef, undef, 0.1);
	}
	ok($freed, '... until ZooKeeper expires its session');

	# The next holder's clock is behind the dead one's: 30 s behind, so that
	# its clock is still behind the last ID issued when that is checked below
	# however long the expiry and the start take on a loaded machine (the
	# test then catches a holder that trusted its clock).  It may borrow
	# that far ahead.
	my $y = guid_node('successor', node_id => undef, faketime => 1, start => 0,
		conf => zk_conf($connect, $ns, '1s') . "guid.max_clock_ahead = '60s'\n");
	set_fake_time($y, '-30s');
	start_faked($y);
	$y->safe_psql('postgres', 'CREATE EXTENSION guid');
	is(wait_for_lease($y), $id, "a new cluster leases the freed id $id");
	is($y->safe_psql('postgres', "SELECT guid_timestamp('$x_max') > now()"), 't',
		'its clock is behind the last ID the dead holder issued');
	$y->safe_psql('postgres', 'CREATE TABLE ids AS SELECT guid_next() AS id FROM generate_series(1, 200000)');
	is($y->safe_psql('postgres', "SELECT count(*) FROM ids WHERE id <= '$x_max'"), '0',
		'every ID of the new holder is above every ID of the dead one');
	$y->stop;
}

# --- ZooKeeper frozen ---------------------------------------------------------
{
	my $ns = 'frozen';
	my @n = map { guid_node("frozen$_", node_id => undef, conf => zk_conf($connect, $ns, '2s')) } (1, 2);
	wait_for_lease($_) for @n;
	for my $node (@n)
	{
		$node->safe_psql('postgres', 'CREATE TABLE ids (id guid)');
		$node->safe_psql('postgres', 'INSERT INTO ids SELECT guid_next() FROM generate_series(1, 50000)');
	}

	zookeeper_signal($zk, 'STOP');
	for my $node (@n)
	{
		ok($node->poll_query_until('postgres', "SELECT mode = 'fenced' FROM guid.status"),
			$node->name . ' fences itself while ZooKeeper is frozen');
		my ($ret, $out, $err) = $node->psql('postgres', 'INSERT INTO ids SELECT guid_next()',
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		like($err, qr/ERROR:  53000: guid node id lease is fenced: ZooKeeper has not answered for \d+ ms/,
			$node->name . ': guid_next() fails with a clear error');
		like($err, qr/DETAIL:  Node id \d+ issues no IDs until ZooKeeper confirms its session/, '... naming the node id');
	}
	zookeeper_signal($zk, 'CONT');

	for my $node (@n)
	{
		ok($node->poll_query_until('postgres', 'SELECT guid_next() IS NOT NULL'),
			$node->name . ' issues IDs again once ZooKeeper is back');
		$node->safe_psql('postgres', 'INSERT INTO ids SELECT guid_next() FROM generate_series(1, 50000)');
	}
	$n[0]->safe_psql('postgres', 'CREATE TABLE all_ids (id guid)');
	for my $node (@n)
	{
		IPC::Run::run(
			[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', 'COPY ids TO STDOUT' ], '|',
			[ 'psql', '-XAtq', '-d', $n[0]->connstr('postgres'), '-c', 'COPY all_ids FROM STDIN' ])
		  or die 'gathering IDs failed';
	}
	is($n[0]->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT id) FROM all_ids'), '0',
		'no duplicate across the whole episode');
	is($n[0]->safe_psql('postgres', 'SELECT count(*) FROM all_ids'), '200000', '... of 200,000 IDs');
	$_->stop for @n;
}

# --- ZooKeeper stopped, then started again ----------------------------------------
{
	my $node = guid_node('zk_stopped', node_id => undef, conf => zk_conf($connect, 'stopped', '2s'));
	wait_for_lease($node);
	$node->safe_psql('postgres', 'CREATE TABLE ids AS SELECT guid_next() AS id FROM generate_series(1, 50000)');
	zookeeper_stop($zk);
	ok($node->poll_query_until('postgres', "SELECT mode IN ('fenced', 'connecting') FROM guid.status"),
		'with ZooKeeper stopped the node stops issuing');
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT guid_next()');
	like($err, qr/lease is fenced|no node id lease from ZooKeeper yet/, '... and says why');
	zookeeper_start('faults', $zk);
	ok($node->poll_query_until('postgres', 'SELECT guid_next() IS NOT NULL'), 'ZooKeeper started again: it issues again');
	$node->safe_psql('postgres', 'INSERT INTO ids SELECT guid_next() FROM generate_series(1, 50000)');
	is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT id) FROM ids'), '0', '... with no duplicate');
	$node->stop;
}

# --- Crash-restart: the coordinator reattaches the live session -----------------
{
	my $c = guid_node('reattach', node_id => undef,
		conf => zk_conf($connect, 'reattach', '20s') . "restart_after_crash = on\n");
	my $id = wait_for_lease($c);
	my $session = $c->safe_psql('postgres', 'SELECT session_id FROM guid.status');
	my $before = $c->safe_psql('postgres', 'SELECT guid_next()');

	my $victim = $c->background_psql('postgres', on_error_stop => 0);
	my $pid = $victim->query_safe('SELECT pg_backend_pid()');
	my $log_offset = -s $c->logfile;
	kill 'KILL', $pid;
	$c->poll_query_until('postgres', 'SELECT 1', '1') or die 'server did not come back';
	eval { $victim->quit };
	ok($c->log_contains('all server processes terminated; reinitializing', $log_offset), 'crash-restart happened');

	is(wait_for_lease($c), $id, 'after a crash-restart the cluster keeps its id');
	is($c->safe_psql('postgres', 'SELECT session_id FROM guid.status'), $session, '... in the same ZooKeeper session');
	ok($c->log_contains('reattaching ZooKeeper session', $log_offset), '... which it reattached');
	is($c->safe_psql('postgres', "SELECT guid_next() > '$before'"), 't', '... and issues above what it issued before');
	$c->stop;
}

zookeeper_stop($zk);
done_testing();
