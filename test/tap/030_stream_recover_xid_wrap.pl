# The failover recovery compares transaction ids the way PostgreSQL does,
# modulo 2^32: an audit row frozen long ago, whose raw xmin is now more than
# 2^31 transactions old, is not taken for a row of a transaction that
# started after the mark.  The cluster's transaction counter is moved on
# twice with pg_resetwal -x (VACUUM FREEZE between, as a real cluster's
# anti-wraparound vacuums would), each time past a page boundary of pg_xact;
# then the slot is dropped, which runs the same recovery as a promotion.  It
# must republish none of the rows Kafka already holds.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t030_$$";

my $node = guid_node('wrap', node_id => 30,
	conf => kafka_conf($brokers, $topic) . "autovacuum = off\n");

sub streaming
{
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT('the publisher did not stream: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
}

# The checkpoint's consumer group.
my $group = checkpoint_group($node);

# The xid of the mark in the latest checkpoint (0 if none).
sub checkpoint_mark
{
	my ($x) = (group_checkpoint($brokers, $group, $topic, 1) // '') =~ /xmin=(\d+)/;
	return $x // 0;
}

# Poll until a checkpoint carries a mark from xid $min on.
sub wait_mark
{
	my $min = shift;
	for (1 .. 600)
	{
		return 1 if checkpoint_mark() >= $min;
		$node->safe_psql('postgres', "SELECT guid_next('tick')");
		select(undef, undef, undef, 0.2);
	}
	return 0;
}

# Drop the slot (retried while the publisher holds it) and wait for the
# recovery it causes; returns its figures.
sub drop_slot_and_recover
{
	my $before = () = slurp_file($node->logfile) =~ /failover recovery: republished/g;
	for (1 .. 600)
	{
		my $after = () = slurp_file($node->logfile) =~ /failover recovery: republished/g;
		if ($after > $before)
		{
			streaming();
			return failover_figures($node);
		}
		# the publisher's walsender holds the slot while it streams
		$node->psql('postgres', "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
			  . "WHERE slot_name = 'guid_audit' AND active AND NOT EXISTS (SELECT FROM guid.status "
			  . "WHERE publisher_state = 'recovering')");
		$node->psql('postgres', "SELECT pg_drop_replication_slot('guid_audit') FROM pg_replication_slots "
			  . "WHERE slot_name = 'guid_audit' AND NOT active AND NOT EXISTS (SELECT FROM guid.status "
			  . "WHERE publisher_state = 'recovering')");
		select(undef, undef, undef, 0.2);
	}
	BAIL_OUT('no recovery after the slot was dropped: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
}

# Stop, move the next xid to $xid (a multiple of 2^20: a fresh pg_xact segment), start.
sub jump_xid
{
	my $xid = shift;
	wait_published($node, $brokers, $topic);
	$node->stop;
	command_ok([ 'pg_resetwal', '-x', $xid, '-D', $node->data_dir ], "pg_resetwal -x $xid");
	$node->start;
}

sub freeze_all
{
	$node->safe_psql('postgres', 'ALTER DATABASE template0 ALLOW_CONNECTIONS true');
	for my $db (qw(template0 template1 postgres))
	{
		$node->safe_psql($db, 'VACUUM (FREEZE)');
	}
	$node->safe_psql('postgres', 'ALTER DATABASE template0 ALLOW_CONNECTIONS false');
}

streaming();
$node->safe_psql('postgres', "SELECT guid_next('old') FROM generate_series(1, 20)");
wait_published($node, $brokers, $topic);
my $old_xmin = $node->safe_psql('postgres', "SELECT max(xmin::text::bigint) FROM guid.audit WHERE service = 'old'");
freeze_all();

# 1.5 billion transactions later (pg_resetwal's WAL reset breaks the slot:
# dropping it recovers, under a mark from before the jump).
my $j1 = 1431 * 1048576;
jump_xid($j1);
drop_slot_and_recover();
ok(wait_mark($j1), 'a checkpoint carries a mark taken after the first jump');
freeze_all();

# Another 1.1 billion: the 'old' rows' raw xmin is now more than 2^31 behind.
my $j2 = 2481 * 1048576;
jump_xid($j2);
my $age = $node->safe_psql('postgres', "SELECT age('$old_xmin'::xid)");
cmp_ok($age, '<', 0, "the frozen rows' raw xmin $old_xmin reads as from the future to age() ($age)");
my $f1 = drop_slot_and_recover();
diag("recovery under a pre-jump mark: republished $f1->{republished}, possible duplicates $f1->{duplicates}");
ok(wait_mark($j2), 'a checkpoint carries a mark taken after the second jump');
$node->safe_psql('postgres', "SELECT guid_next('new') FROM generate_series(1, 5)");
wait_published($node, $brokers, $topic);

# The recovery under a mark of this epoch.
my $f = drop_slot_and_recover();
diag("recovery: republished $f->{republished}, possible duplicates $f->{duplicates}");

# Each recovery ran with every audit row already in Kafka.
my @rec = slurp_file($node->logfile) =~ /failover recovery: republished (\d+) audit rows \((\d+) possible duplicates\)/g;
my ($republished, $counted) = (0, 0);
while (my ($r, $d) = splice(@rec, 0, 2))
{
	$republished += $r;
	$counted += $d;
}
is($republished, 0, 'no recovery republished a row: every one was in Kafka (frozen rows 2^31 xids old included)');

my $msgs = wait_published($node, $brokers, $topic);
my %count;
$count{ $_->{value}{guid} }++ for @$msgs;
my $extra = 0;
$extra += $_ - 1 for values %count;
cmp_ok($extra, '<=', $counted, "every extra copy of a guid in Kafka ($extra) was counted as a possible duplicate ($counted)");
my $audit = $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid');
is_deeply([ sort { $a <=> $b } keys %count ], [ split /\n/, $audit ], 'Kafka holds exactly guid.audit');

$node->stop;
done_testing();
