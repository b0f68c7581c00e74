# A publisher restart never waits on another cluster's Kafka transaction.
#
# Two clusters, A and B, publish to one topic (one partition, as many a
# fleet shares).  B's publisher is held before its Kafka commit (its
# transaction open on the data topic's partition 0, and, in releases before
# 1.6, on the shared checkpoint partition); beside it a producer of a third,
# older cluster leaves a transaction open on partition 0 of the data topic
# and of <topic>_checkpoints.  Both hold the last stable offset of those
# partitions back for every read_committed reader, for up to their
# transaction.timeout.ms (10 minutes here).  A goes on publishing, then
# restarts: it must stream again within seconds from its latest checkpoint
# (its own consumer group's offset, read with a stable offset fetch; a
# record of its own in the shared checkpoint partition would lie past the
# last stable offset, out of a read_committed reader's reach), and once the
# others' transactions end, the read_committed topic holds exactly the
# committed audit rows of A and of B.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t040_$$";
my $bound = 15;    # seconds; the open transactions last 600

my $ca = guid_node('a', node_id => 40, conf => kafka_conf($brokers, $topic));
my $cb = guid_node('b', node_id => 41,
	conf => kafka_conf($brokers, $topic, properties => 'transaction.timeout.ms=600000'));
for my $node ($ca, $cb)
{
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT($node->name . ' did not stream: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
	$node->safe_psql('postgres', "SELECT guid_next('before') FROM generate_series(1, 20)");
	wait_published_by($node, $brokers, $topic);
}

sub own_guids
{
	my ($node, $msgs) = @_;
	my $sysid = system_identifier($node);
	return [ sort { $a <=> $b } map { $_->{value}{guid} }
		  grep { ($_->{value}{system_identifier} // '') eq $sysid } @$msgs ];
}

sub audit_guids
{
	my $node = shift;
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
}

# --- B stops before its commit, a row of it in the open transaction -------------------
$cb->safe_psql('postgres', "ALTER SYSTEM SET guid.publisher_test_pause = 'before_commit'");
$cb->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $b_held = $cb->safe_psql('postgres', "SELECT guid_next('held')");
ok($cb->poll_query_until('postgres', "SELECT publisher_state = 'paused before_commit' FROM guid.status"),
	'B is held before its Kafka commit');

# --- and an older cluster's producer leaves a transaction open on both partitions -------
# (the checkpoint topic of releases before 1.6 exists in a fleet being upgraded)
my ($meta, $meta_err) = ('', '');
IPC::Run::run([ 'kcat', '-L', '-b', $brokers ], '>', \$meta, '2>', \$meta_err) or die "kcat -L: $meta_err";
kafka_admin($brokers, 'create', "${topic}_checkpoints", 1) unless $meta =~ /topic "\Q${topic}_checkpoints\E"/;
my $open_bin = "$PostgreSQL::Test::Utils::tmp_check/kafka_open_txn";
system_or_bail('cc', '-o', $open_bin, "$FindBin::RealBin/kafka_open_txn.c", '-lrdkafka');
my ($open_out, $open_err) = ('', '');
my $open = IPC::Run::start([ $open_bin, $brokers, "t040-older-$$", $topic, "${topic}_checkpoints" ],
	'>', \$open_out, '2>', \$open_err);
$open->pump until $open_out =~ /open/ || !$open->pumpable;
like($open_out, qr/open/, 'an older cluster has a transaction open on both partitions');

# The last stable offset is really held back: B's produced row is on the
# broker (read_uncommitted) but no read_committed reader gets to it.
my ($uncommitted, $ue) = ('', '');
IPC::Run::run([ 'kcat', '-C', '-b', $brokers, '-t', $topic, '-X', 'isolation.level=read_uncommitted',
	'-o', 'beginning', '-e', '-q', '-f', '%s\n' ], '>', \$uncommitted, '2>', \$ue);
ok((grep { /"guid":"$b_held"/ } split /\n/, $uncommitted), "B's row is on the broker, uncommitted");
ok(!(grep { $_ eq $b_held } @{ kafka_read($brokers, $topic, 1) }), '... and read_committed readers stop before it');

# --- A goes on publishing meanwhile: its newer checkpoints lie past the others' open
# transactions, where no read_committed reader of a shared partition gets to ----------
$ca->safe_psql('postgres', "SELECT guid_next('meanwhile') FROM generate_series(1, 5)");
ok($ca->poll_query_until('postgres',
	"SELECT rows_published >= (SELECT count(*) FROM guid.audit) AND publish_lag_seconds = 0 FROM guid.status"),
	'A publishes while the others are open');

# --- A restarts while both transactions are open ----------------------------------------
my $start = time;
$ca->restart;
$ca->safe_psql('postgres', "SELECT guid_next('after_restart')");
my $streaming = 0;
while (time - $start < 4 * $bound)
{
	$streaming = $ca->safe_psql('postgres',
		"SELECT publisher_state = 'streaming' AND rows_published >= 1 FROM guid.status") eq 't'
	  and last;
	select(undef, undef, undef, 0.1);
}
my $elapsed = time - $start;
ok($streaming, 'A streams again and publishes a new row while the others are open')
  or diag($ca->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
cmp_ok($elapsed, '<', $bound, sprintf('... within %d s of the restart (%.1f s), not after their transaction timeout', $bound, $elapsed));
ok(!$ca->log_contains('waiting for an open transaction to end'), 'A never waited for another transaction');

# --- The others end: exactly once for both clusters --------------------------------------
$open->signal('TERM');
close_open();
$cb->safe_psql('postgres', 'ALTER SYSTEM RESET guid.publisher_test_pause');
$cb->safe_psql('postgres', 'SELECT pg_reload_conf()');
$ca->safe_psql('postgres', "SELECT guid_next('end') FROM generate_series(1, 10)");
$cb->safe_psql('postgres', "SELECT guid_next('end') FROM generate_series(1, 10)");
wait_published_by($ca, $brokers, $topic);
my $msgs = wait_published_by($cb, $brokers, $topic);
my %seen;
my @twice = grep { $seen{$_}++ } @{ own_guids($ca, $msgs) };
is(scalar @twice, 0, 'no row of A published twice (' . scalar(@twice) . ')');
is_deeply(own_guids($ca, $msgs), audit_guids($ca), "A: the topic holds exactly A's committed rows, each once");
is_deeply(own_guids($cb, $msgs), audit_guids($cb), "B: the topic holds exactly B's committed rows, each once");
ok(!grep({ !defined $_->{value}{guid} } @$msgs), "nothing of the older cluster's aborted transaction is read");

sub close_open
{
	ok($open->finish, "the older cluster's transaction is aborted") or diag("exit $?: $open_err");
}

$ca->stop;
$cb->stop;
done_testing();

# a test that dies early leaves no helper behind
END { $open->kill_kill if $open && $open->pumpable; }
