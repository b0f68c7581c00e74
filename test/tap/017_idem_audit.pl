# The audit rows of idempotent guids, with three clusters, one Redis and one
# Kafka topic: every transaction that commits with an idempotent guid records
# it in its own cluster's guid.audit, once per cluster, whichever cluster
# issued the guid.  A use rolled back on X and committed on Y reaches the
# topic once, from Y; a use committed on two clusters reaches it twice, each
# message naming its cluster, and the reference consumer applies it once.
# A cluster holding the node id of the guid's issuer (X's, after X left)
# records its own use like any other.  Two backends of one cluster committing
# the same guid write one row, the second waiting for the first.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $redis = $ENV{GUID_REDIS} or die 'GUID_REDIS not set: run this through make test';
my $consumer = $ENV{GUID_CONSUMER} or die 'GUID_CONSUMER not set: run this through make test';
my $topic = "t017_$$";
my $conf = kafka_conf($brokers, $topic) . "guid.redis = '$redis'\n";

sub streaming
{
	my $node = shift;
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT($node->name . ' publisher did not start: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
	return $node;
}

my $x = streaming(guid_node('idem_x', node_id => 1, conf => $conf));
my $y = streaming(guid_node('idem_y', node_id => 2, conf => $conf));
my ($sx, $sy) = (system_identifier($x), system_identifier($y));
isnt($sx, $sy, 'X and Y are two clusters (two system identifiers)');

# Keys unique to this run: Redis is shared with the other tests.
my $k = "k$$";

sub audit_rows
{
	my ($node, $id) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM guid.audit WHERE guid = '$id'");
}

# The messages of the topic about one guid, as "system_identifier/node_id/guid_node_id", sorted.
sub sources
{
	my ($msgs, $id) = @_;
	return [ sort map { "$_->{value}{system_identifier}/$_->{value}{node_id}/$_->{value}{guid_node_id}" }
		  grep { $_->{value}{guid} eq $id } @$msgs ];
}

# --- Rolled back on X, committed on Y -----------------------------------------------
my $g1 = $x->safe_psql('postgres', "BEGIN; SELECT guid_next('pay', '$k-1'); ROLLBACK;");
is($x->safe_psql('postgres', "SELECT guid_node('$g1')"), 1, 'X issued g1 for key 1 (then rolled back)');
is($y->safe_psql('postgres', "SELECT guid_next('pay', '$k-1')"), $g1, 'the retry on Y gets g1 from Redis');
is(audit_rows($y, $g1), 1, 'Y, which committed g1, recorded it');
is($y->safe_psql('postgres', "SELECT node_id FROM guid.audit WHERE guid = '$g1'"), 2,
	'... with its own node id');
is(audit_rows($x, $g1), 0, 'X, which rolled back, has no row of g1');

# --- Committed on both ----------------------------------------------------------------
my $g2 = $x->safe_psql('postgres', "SELECT guid_next('pay', '$k-2')");
is($y->safe_psql('postgres', "SELECT guid_next('pay', '$k-2')"), $g2, 'key 2 on Y: the guid X committed');
$y->safe_psql('postgres', "SELECT guid_next('pay', '$k-2')");
is(audit_rows($x, $g2) . '/' . audit_rows($y, $g2), '1/1', 'committed on both: one row on each, once per cluster');

# --- The batch form, rolled back on X, committed on Y ---------------------------------------
my $batch = $x->safe_psql('postgres', "BEGIN; SELECT guid_next('pay', ARRAY['$k-5', '$k-6']); ROLLBACK;");
my ($g5, $g6) = $batch =~ /^\{(\d+),(\d+)\}$/;
is($y->safe_psql('postgres', "SELECT guid_next('pay', ARRAY['$k-5', '$k-6', '$k-5'])"), "{$g5,$g6,$g5}",
	'the batch retried on Y gets X\'s guids');
is(audit_rows($y, $g5) . '/' . audit_rows($y, $g6), '1/1', 'Y recorded each once (a key twice in the batch)');

# --- Two backends of Y commit one guid: one row, the second waits -----------------------------
for my $end ('COMMIT', 'ROLLBACK')
{
	my $key = "$k-race-$end";
	my $first = $y->background_psql('postgres');
	my $g = $first->query_safe("BEGIN; SELECT guid_next('pay', '$key');");
	my ($out, $err) = ('', '');
	my $second = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $y->connstr('postgres'),
		'-c', "SELECT guid_next('pay', '$key')" ], '>', \$out, '2>', \$err);
	ok($y->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%guid_next(''pay'', ''$key'')%'"
			  . " AND wait_event_type = 'Lock' AND state = 'active'"),
		"$end: a second backend committing the same guid waits for the first");
	$first->query_safe($end);
	$first->quit;
	$second->finish;
	chomp $out;
	is("$out|$err", "$g|", "$end: ... then returns the same guid without an error");
	is(audit_rows($y, $g), 1, "$end: ... and Y has exactly one row of it");
}

# two batches of overlapping keys in opposite orders: no deadlock, one row each
{
	my @keys = map { "'$k-b$_'" } 1 .. 4;
	my $first = $y->background_psql('postgres');
	my $ids = $first->query_safe("BEGIN; SELECT guid_next('pay', ARRAY[" . join(', ', @keys[0 .. 2]) . "]);");
	my ($out, $err) = ('', '');
	my $second = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $y->connstr('postgres'),
		'-c', "SELECT guid_next('pay', ARRAY[" . join(', ', reverse @keys) . "])" ], '>', \$out, '2>', \$err);
	ok($y->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%$k-b4%'"
			  . " AND wait_event_type = 'Lock' AND state = 'active'"),
		'a batch sharing keys with an uncommitted one waits for it');
	$first->query_safe('COMMIT');
	$first->quit;
	$second->finish;
	my ($a1, $a2, $a3) = $ids =~ /^\{(\d+),(\d+),(\d+)\}$/;
	like("$out|$err", qr/^\{\d+,$a3,$a2,$a1\}\n?\|$/, '... then gets the same guids, in its order, without an error');
	chomp $out;
	is($y->safe_psql('postgres', "SELECT count(*) FROM guid.audit WHERE guid = ANY('$out'::guid[])"), 4,
		'... and Y has one row of each of the four guids');
}

# --- X leaves; Z takes its node id ------------------------------------------------------------
my $g4 = $x->safe_psql('postgres', "BEGIN; SELECT guid_next('pay', '$k-4'); ROLLBACK;");
my $g3 = $x->safe_psql('postgres', "SELECT guid_next('pay', '$k-3')");
my $msgs = wait_published_by($x, $brokers, $topic);
$x->stop;
my $z = streaming(guid_node('idem_z', node_id => 1, conf => $conf));
my $sz = system_identifier($z);
isnt($sz, $sx, 'Z holds node id 1 after X, as another cluster');
is($z->safe_psql('postgres', "SELECT guid_next('pay', '$k-3')"), $g3, 'key 3 on Z: the guid X committed');
is($z->safe_psql('postgres', "SELECT guid_next('pay', '$k-4')"), $g4, 'key 4 on Z: the guid X rolled back');
is(audit_rows($z, $g3) . '/' . audit_rows($z, $g4), '1/1', 'Z recorded both, once');

# --- The topic ----------------------------------------------------------------------------------
wait_published_by($y, $brokers, $topic);
$msgs = wait_published_by($z, $brokers, $topic);
is_deeply(sources($msgs, $g1), ["$sy/2/1"], 'g1 (rolled back on X, committed on Y): once, from Y');
is_deeply(sources($msgs, $g2), [ sort("$sx/1/1", "$sy/2/1") ], 'g2 (committed on X and Y): once from each');
is_deeply(sources($msgs, $g3), [ sort("$sx/1/1", "$sz/1/1") ], 'g3 (committed on X, then on Z with node id 1): once from each');
is_deeply(sources($msgs, $g4), ["$sz/1/1"], 'g4 (rolled back on X, committed on Z): once, from Z');
is_deeply(sources($msgs, $g5), ["$sy/2/1"], 'g5 (a batch rolled back on X, committed on Y): once, from Y');

# every committed use is in the topic, and nothing else
my @expected;
$x->start;
for my $node ($x, $y, $z)
{
	my $s = system_identifier($node);
	push @expected, map { "$s/$_" } split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit');
}
is_deeply([ sort map { "$_->{value}{system_identifier}/$_->{value}{guid}" } @$msgs ], [ sort @expected ],
	'the topic holds exactly the rows of the three guid.audit tables, each once');

# --- The reference consumer applies each guid once ------------------------------------------------
$y->safe_psql('postgres', 'CREATE DATABASE payments');
my ($out, $err) = ('', '');
IPC::Run::run([ $consumer, '--brokers', $brokers, '--topic', $topic, '--conninfo', $y->connstr('payments'),
	'--idle-exit', '3' ], '>', \$out, '2>', \$err)
  or die "guid_consumer failed: $err";
my %distinct = map { $_->{value}{guid} => 1 } @$msgs;
my $n = scalar @$msgs;
my $d = scalar keys %distinct;
like($out, qr/messages $n applied $d duplicates @{[ $n - $d ]} /,
	"the consumer applies each of the $d guids once and counts the other " . ($n - $d) . ' as duplicates');
is($y->safe_psql('payments', 'SELECT count(*) FROM guid_applied'), $d, 'its table holds each guid once');

$_->stop for ($x, $y, $z);
done_testing();
