# The audit stream survives a failover without an operator and without
# losing a committed row.  A primary publishes at a steady rate, streaming
# to a physical standby; its publisher is held before a Kafka commit while
# rows keep committing and replicating; the primary is killed (-9) and the
# standby promoted.  The new primary's publisher (same system identifier,
# same transactional.id: it fences the dead one and aborts its open Kafka
# transaction) publishes every replicated row Kafka lacks, then streams
# from its new slot.  The reference consumer then applies exactly the new
# primary's guid.audit, none missing; the duplicates Kafka delivered are
# counted and printed.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
die 'GUID_CONSUMER not set: run this through make test' unless $ENV{GUID_CONSUMER};
my $topic = "t026_$$";

sub streaming
{
	my $node = shift;
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT($node->name . ' publisher did not stream: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
}

my $primary = guid_node('fo_primary', node_id => 26, conf => kafka_conf($brokers, $topic));
streaming($primary);
my $standby = stream_standby($primary, 'fo_standby', 'fo_standby');

# --- Steady publishing ------------------------------------------------------------------------
my $script = "$PostgreSQL::Test::Utils::tmp_check/t026_load.sql";
PostgreSQL::Test::Utils::append_to_file($script, "SELECT guid_next('pay');\n");
my ($lout, $lerr) = ('', '');
my $load = IPC::Run::start([ 'pgbench', '-n', '-f', $script, '-c', '2', '-R', '200', '-T', '600',
	'-h', $primary->host, '-p', $primary->port, 'postgres' ], '>', \$lout, '2>', \$lerr);
$primary->poll_query_until('postgres', 'SELECT rows_published >= 300 FROM guid.status')
  or die 'nothing published under load';

# Hold the publisher before its next Kafka commit: rows keep committing and
# reaching the standby, none reaches Kafka.
$primary->append_conf('postgresql.conf', "guid.publisher_test_pause = 'before_commit'\n");
$primary->reload;
$primary->poll_query_until('postgres', "SELECT publisher_state = 'paused before_commit' FROM guid.status")
  or die 'the publisher did not pause';
my %in_kafka = map { $_ => 1 } @{ kafka_read($brokers, $topic, 1) };
my $published = keys %in_kafka;
$standby->poll_query_until('postgres', "SELECT count(*) >= $published + 300 FROM guid.audit")
  or die 'the standby did not receive more rows';

# --- Failover ---------------------------------------------------------------------------------
$primary->kill9;
$load->finish;
$standby->promote;
streaming($standby);
my $new = $standby;
my $replicated = $new->safe_psql('postgres', 'SELECT count(*) FROM guid.audit');
cmp_ok($replicated - $published, '>=', 300,
	($replicated - $published) . ' committed, replicated rows were not in Kafka at the promotion');

# The new primary goes on at a steady rate.
IPC::Run::run([ 'pgbench', '-n', '-f', $script, '-c', '2', '-t', '100',
	'-h', $new->host, '-p', $new->port, 'postgres' ], '>', \$lout, '2>', \$lerr)
  or die "pgbench on the new primary: $lerr";
my $msgs = wait_published($new, $brokers, $topic);

my $f = failover_figures($new);
ok($f, 'the new primary\'s publisher ran a failover recovery');
$f //= { republished => -1, duplicates => -1, missing => -1 };
diag("failover: republished $f->{republished}, possible duplicates $f->{duplicates}, missing $f->{missing}");
cmp_ok($f->{republished}, '>=', $replicated - $published, 'it republished every replicated row Kafka lacked');
is($f->{duplicates}, 0, 'none of them could already be in Kafka (decided from the mark, not guessed)');
is($f->{missing}, 0, 'nothing in Kafka is missing from the new primary');
is($new->safe_psql('postgres', "SELECT concat_ws(' ', publisher_failover_republished, "
		. "publisher_failover_duplicates, publisher_failover_missing) FROM guid.status"),
	"$f->{republished} $f->{duplicates} $f->{missing}", 'guid.status shows the same three figures');

my $audit = $new->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid');
my %count;
$count{ $_->{value}{guid} }++ for @$msgs;
my @twice = grep { $count{$_} > 1 } keys %count;
is(scalar @twice, 0, 'Kafka holds each guid once');
is_deeply(kafka_guids($msgs), [ split /\n/, $audit ], 'Kafka holds exactly the new primary\'s guid.audit');

# --- The reference consumer -------------------------------------------------------------------
$new->safe_psql('postgres', 'CREATE DATABASE payments');
my ($sum, $applied) = consume_all($new, 'payments', $brokers, $topic);
diag("reference consumer after the failover: messages $sum->{messages}, applied $sum->{applied}, "
	  . "duplicates delivered by Kafka $sum->{duplicates}");
my %applied = map { $_ => 1 } split /\n/, $applied;
my @lost = grep { !$applied{$_} } split /\n/, $audit;
is(scalar @lost, 0, 'no committed row of the new primary is missing from what the consumer applied');
is($applied, $audit, 'the consumer applied exactly the new primary\'s committed guid.audit rows');
is($sum->{duplicates}, 0, 'Kafka delivered no duplicate');

$new->stop;
done_testing();
