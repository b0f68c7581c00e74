# Two failovers in a row, the second during the first one's recovery, after
# a promotion to a standby that lagged behind the mark.  A publishes,
# streaming to B, which cascades to C.  B stops receiving; A goes on, so its
# checkpoint's mark names a transaction id B never saw.  A dies, B is
# promoted: B's transaction ids are then ones A used, below the mark.  B's
# publisher is held before its first Kafka commit (its recovery's), while
# rows commit on B with those ids and reach C.  B dies, C is promoted: C's
# recovery finds A's "recovering" checkpoint with A's mark, and must still
# publish B's rows, whose xmin precede that mark.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t031_$$";

sub streaming
{
	my $node = shift;
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT($node->name . ' publisher did not stream: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
}

# The checkpoint's consumer group (the cluster's, its standbys' too).
my $group;

sub checkpoint_mark
{
	my ($x) = (group_checkpoint($brokers, $group, $topic, 1) // '') =~ /xmin=(\d+)/;
	return $x // 0;
}

sub rows
{
	my ($node, $service, $n) = @_;
	my $script = "$PostgreSQL::Test::Utils::tmp_check/t031_$service.sql";
	PostgreSQL::Test::Utils::append_to_file($script, "SELECT guid_next('$service');\n");
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'pgbench', '-n', '-f', $script, '-c', '1', '-t', $n,
		'-h', $node->host, '-p', $node->port, 'postgres' ], '>', \$out, '2>', \$err)
	  or die "pgbench: $err";
}

my $a = guid_node('twice_a', node_id => 31, conf => kafka_conf($brokers, $topic));
streaming($a);
$group = checkpoint_group($a);
rows($a, 'a1', 50);
my $b = stream_standby($a, 'twice_b', 'twice_b');
my $c = stream_standby($b, 'twice_c', 'twice_c');
wait_published($a, $brokers, $topic);
$b->poll_query_until('postgres', "SELECT count(*) = 50 FROM guid.audit") or die 'B did not replay';

# B stops receiving; A goes on until its mark passes every xid B saw.
$b->append_conf('postgresql.conf', "primary_conninfo = ''\n");
$b->reload;
$b->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_stat_wal_receiver') or die 'B still receives';
my $b_next = $b->safe_psql('postgres', 'SELECT max(xmin::text::bigint) + 1 FROM guid.audit');
rows($a, 'a2', 100);
for (1 .. 600)
{
	last if checkpoint_mark() > $b_next + 20;
	rows($a, 'tick', 1);
	select(undef, undef, undef, 0.2);
}
cmp_ok(checkpoint_mark(), '>', $b_next + 20, "A's mark (" . checkpoint_mark() . ") is past every xid B saw ($b_next)");
wait_published($a, $brokers, $topic);
$a->kill9;

# B promoted, its publisher held before its first Kafka commit.
$b->append_conf('postgresql.conf', "guid.publisher_test_pause = 'before_commit'\n");
$b->reload;
$b->promote;
$b->poll_query_until('postgres', "SELECT publisher_state = 'paused before_commit' FROM guid.status")
  or die 'B did not pause: ' . $b->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status');
rows($b, 'b', 200);
my $b_rows = $b->safe_psql('postgres', "SELECT count(*) FROM guid.audit WHERE service = 'b'");
my $b_low = $b->safe_psql('postgres', "SELECT min(xmin::text::bigint) FROM guid.audit WHERE service = 'b'");
cmp_ok($b_low, '<', checkpoint_mark(), "B's rows reuse xids below A's mark (from $b_low)");
$c->poll_query_until('postgres', "SELECT count(*) = $b_rows FROM guid.audit WHERE service = 'b'")
  or die 'C did not replay B';
$b->kill9;

# C promoted: it recovers.
$c->promote;
streaming($c);
my $msgs = wait_published($c, $brokers, $topic, 60);
my %in_kafka = map { $_->{value}{guid} => 1 } @$msgs;
my @audit = split /\n/, $c->safe_psql('postgres', 'SELECT guid FROM guid.audit');
my @lost = grep { !$in_kafka{$_} } @audit;
is(scalar @lost, 0, 'every committed row of C\'s guid.audit is in Kafka (' . scalar(@lost) . ' missing)');
my $f = failover_figures($c) // { republished => -1, duplicates => -1 };
diag("C's recovery: republished $f->{republished}, possible duplicates $f->{duplicates}");
my %count;
$count{ $_->{value}{guid} }++ for @$msgs;
my $extra = 0;
$extra += $_ - 1 for values %count;
cmp_ok($extra, '<=', $f->{duplicates}, "every extra copy in Kafka ($extra) was counted ($f->{duplicates})");

$c->stop;
done_testing();
