# The exactly-once claims under faults, on a broker this test owns: the
# publisher killed with SIGKILL at each step of its cycle (before produce,
# after produce before the Kafka commit, after the commit before the slot is
# confirmed), twice round; a PostgreSQL crash; a zombie publisher fenced by
# a newer one; the broker stopped and started again.  After each, the
# read_committed topic equals guid.audit (the committed rows) exactly.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $kafka = kafka_start('faults');
my $brokers = $kafka->{brokers};
my $topic = 'guid_assignments';
my $node = guid_node('faults', node_id => 22,
	conf => kafka_conf($brokers, $topic) . "restart_after_crash = on\n");
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start');

sub audit_guids
{
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
}

# Some committed and some rolled-back audit rows.
sub load
{
	my $tag = shift;
	$node->safe_psql('postgres', "SELECT guid_next('$tag') FROM generate_series(1, 5)");
	$node->safe_psql('postgres', "BEGIN; SELECT guid_next('$tag') FROM generate_series(1, 4); ROLLBACK;");
	$node->safe_psql('postgres', "BEGIN; SELECT guid_next('$tag') FROM generate_series(1, 3); COMMIT;");
}

sub set_pause
{
	my $step = shift;
	if ($step)
	{
		$node->safe_psql('postgres', "ALTER SYSTEM SET guid.publisher_test_pause = '$step'");
	}
	else
	{
		$node->safe_psql('postgres', 'ALTER SYSTEM RESET guid.publisher_test_pause');
	}
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}

# --- SIGKILL at each step, twice round -------------------------------------------------
for my $round (1 .. 2)
{
	for my $step (qw(before_produce before_commit before_confirm))
	{
		set_pause($step);
		load("kill_${step}_$round");
		ok($node->poll_query_until('postgres', "SELECT publisher_state = 'paused $step' FROM guid.status"),
			"round $round: publisher paused $step");
		my $pid = publisher_pid($node);
		kill 'KILL', $pid or die "kill $pid: $!";
		# the postmaster restarts everything; wait for a new publisher
		$node->poll_query_until('postgres',
			"SELECT publisher_pid <> $pid FROM guid.status")
		  or die 'no publisher after the crash';
		set_pause(undef);
		load("after_${step}_$round");
		my $msgs = wait_published($node, $brokers, $topic);
		is_deeply(kafka_guids($msgs), audit_guids(),
			"round $round, SIGKILL $step: the topic holds exactly the committed rows, each once");
	}
}
ok($node->log_contains('terminated by signal 9'), 'the kills were real crashes');

# --- PostgreSQL crash (immediate stop) while rows are flowing ----------------------------------
load('crash_before');
$node->stop('immediate');
$node->start;
load('crash_after');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(),
	'PostgreSQL crash-restart: exactly the committed rows, each once');

# --- A zombie publisher is fenced ------------------------------------------------------------------
my $fence = "$PostgreSQL::Test::Utils::tmp_check/kafka_fence";
system_or_bail('cc', '-o', $fence, "$FindBin::RealBin/kafka_fence.c", '-lrdkafka');
my $sysid = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
my $tid = "guid-default-$sysid-guid_audit";
my $log_offset = -s $node->logfile;
set_pause('before_commit');
load('zombie');
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'paused before_commit' FROM guid.status"),
	'publisher paused with rows produced and not committed');
my $pid = publisher_pid($node);
my ($fout, $ferr) = ('', '');
ok(IPC::Run::run([ $fence, $brokers, $tid ], '>', \$fout, '2>', \$ferr), 'a newer producer with the same transactional.id starts')
  or diag($ferr);
set_pause(undef);
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status"), 'the publisher goes on');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(),
	'the fenced transaction is not in the topic; its rows came again, once');
like(slurp_file($node->logfile, $log_offset), qr/fenced/i, 'the log says the publisher was fenced');
is(publisher_pid($node), $pid, 'fencing ended a session, not the worker (no crash loop)');

# --- The broker stopped for a while ----------------------------------------------------------------
kafka_stop($kafka);
load('outage');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok($node->poll_query_until('postgres',
		"SELECT publisher_error IS NOT NULL AND slot_lag_bytes > 0 AND publish_lag_seconds > 1 FROM guid.status"),
	'Kafka down: guid.status shows the error, the retained WAL and a growing lag');
is($node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn < '$lsn' FROM pg_replication_slots WHERE slot_name = 'guid_audit'"),
	't', 'the slot is not confirmed past unpublished rows');
$node->safe_psql('postgres', "SELECT guid_next('outage2')");
kafka_resume($kafka);
is_deeply(kafka_guids(wait_published($node, $brokers, $topic, 240)), audit_guids(),
	'Kafka back: exactly the committed rows, each once');
is($node->safe_psql('postgres', 'SELECT publisher_error IS NULL FROM guid.status'), 't', 'the error clears');

$node->stop;
kafka_stop($kafka);
done_testing();
