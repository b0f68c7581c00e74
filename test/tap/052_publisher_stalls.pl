# A publisher that cannot hang silently in librdkafka, on a broker this test
# owns.
#
# 1. A step that keeps retrying is visible: with the broker frozen
#    (SIGSTOP), guid.status shows "waiting for Kafka: <step>" and a
#    publisher_error that says what it waits for, since when and the last
#    error; the log says so once the wait reached 10 s, then every 60 s; the
#    broker thawed, it streams again and the topic equals guid.audit exactly.
# 2. A librdkafka call that blocks past its timeout (librdkafka issues #5456,
#    #5511; the test build's guid.publisher_test_pause = 'hang_send_offsets'
#    makes send_offsets_to_transaction block for ever): the worker logs what
#    is stuck and exits, the postmaster starts a new one, which streams again,
#    exactly once; and `pg_ctl stop -m fast` does not hang while the call is
#    blocked.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $kafka = kafka_start('stalls');
my $brokers = $kafka->{brokers};
my $topic = 'guid_assignments';
my $node = guid_node('stalls', node_id => 52, conf => kafka_conf($brokers, $topic));
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start');

sub audit_guids
{
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid') ];
}

sub load
{
	my ($tag, $n) = @_;
	$node->safe_psql('postgres', "SELECT guid_next('$tag') FROM generate_series(1, $n)");
}

sub broker_signal
{
	my $sig = shift;
	my $pid = slurp_file("$kafka->{dir}/kafka.pid");
	chomp $pid;
	kill $sig, $pid or die "kill $sig $pid: $!";
}

# never leave the broker frozen or running, whatever happens
END
{
	local $?;				# the test's exit status
	if ($kafka && -f "$kafka->{dir}/kafka.pid")
	{
		my $pid = slurp_file("$kafka->{dir}/kafka.pid");
		chomp $pid;
		kill 'CONT', $pid;
		system("$FindBin::RealBin/../services/kafka.sh", 'stop', $kafka->{dir});
	}
}

# The stall lines the log holds from $offset on: [ what, since, seconds ].
sub stall_lines
{
	my $offset = shift;
	my $log = slurp_file($node->logfile, $offset);
	my @lines;
	while ($log =~ /LOG:  guid publisher: ([a-z_ ]+): waiting for Kafka at \Q$brokers\E since ([^(\n]+) \((\d+) s\): /g)
	{
		push @lines, [ $1, $2, $3 ];
	}
	return @lines;
}

# Poll the log for a stall line matching $match (a sub of [ what, since,
# seconds ] and the lines before it); returns it or undef.
sub wait_stall_line
{
	my ($offset, $match) = @_;
	for (1 .. $PostgreSQL::Test::Utils::timeout_default * 5)
	{
		my @lines = stall_lines($offset);
		for my $i (0 .. $#lines)
		{
			return $lines[$i] if $match->($lines[$i], @lines[ 0 .. $i - 1 ]);
		}
		select(undef, undef, undef, 0.2);
	}
	return undef;
}

load('before', 5);
is_deeply(kafka_guids(wait_published($node, $brokers, $topic)), audit_guids(), 'streaming: the topic equals guid.audit');

# --- 1. A frozen broker: the wait is shown and logged ------------------------------------------
my $offset = -s $node->logfile;
broker_signal('STOP');
load('frozen', 5);
ok($node->poll_query_until('postgres',
		"SELECT publisher_state LIKE 'waiting for Kafka: %' "
		  . "AND publisher_error ~ ': waiting for Kafka at $brokers since \\d{4}-\\d\\d-\\d\\d [0-9:.]+[-+][0-9:]+ \\(\\d+ s\\): .' "
		  . "FROM guid.status"),
	'broker frozen: guid.status shows the step waiting, and publisher_error what it waits for, since when, the last error');
my $first = wait_stall_line($offset, sub { $_[0][2] >= 10 });
ok($first, 'the log says so once the wait reached 10 s')
  or diag(slurp_file($node->logfile, $offset));

# A new session while the broker is still frozen: init_transactions waits
# for as long as the freeze lasts; the log repeats the wait every 60 s.
my $pid = publisher_pid($node);
kill 'TERM', $pid or die "kill TERM $pid: $!";
$node->poll_query_until('postgres', "SELECT publisher_pid NOT IN (0, $pid) FROM guid.status")
  or die 'no new publisher';
ok($node->poll_query_until('postgres',
		"SELECT publisher_state = 'waiting for Kafka: init_transactions' "
		  . "AND publisher_error LIKE 'init_transactions: waiting for Kafka at $brokers since %' FROM guid.status"),
	'a new session: guid.status says init_transactions waits');
my $init = wait_stall_line($offset, sub { $_[0][0] eq 'init_transactions' && $_[0][2] >= 10 });
ok($init && $init->[2] >= 10, 'init_transactions: logged once it waited 10 s');
my $again = $init && wait_stall_line($offset,
	sub { $_[0][0] eq 'init_transactions' && $_[0][1] eq $init->[1] && $_[0][2] > $init->[2] });
ok($again && $again->[2] >= $init->[2] + 60, 'and again, 60 s later, the same wait (same since)')
  or diag(explain($init, $again));
my @same = grep { $_->[0] eq 'init_transactions' && $_->[1] eq $init->[1] && $_->[2] >= 10 } stall_lines($offset);
my @close = grep { $same[$_][2] - $same[ $_ - 1 ][2] < 60 } 1 .. $#same;
is(scalar @close, 0, 'no two such lines of one wait less than 60 s apart');

broker_signal('CONT');
is_deeply(kafka_guids(wait_published($node, $brokers, $topic, 240)), audit_guids(),
	'broker thawed: it streams again and the topic equals guid.audit exactly');
ok($node->log_contains(qr/init_transactions: Kafka at \Q$brokers\E answered after waiting since/),
	'the end of the wait is logged');
is($node->safe_psql('postgres', 'SELECT publisher_error IS NULL FROM guid.status'), 't', 'the error clears');

# --- 2. send_offsets_to_transaction blocks for ever: the worker exits, a new one streams -------
# the deadline is the call's timeout (1 s) + socket.timeout.ms + 30 s
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf',
	"guid.publisher_test_pause = 'hang_send_offsets'\nguid.kafka_properties = 'socket.timeout.ms=10000'\n");
$node->restart;
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or die 'publisher did not start';
$pid = publisher_pid($node);
load('hang', 5);
ok($node->poll_query_until('postgres',
		"SELECT publisher_state = 'waiting for Kafka: checkpoint' "
		  . "AND publisher_error LIKE 'checkpoint: waiting for Kafka % send_offsets_to_transaction: no answer after % ms%' FROM guid.status"),
	'send_offsets_to_transaction blocked: guid.status shows it');
# the next publisher must not hang again (the blocked call stays blocked)
$node->append_conf('postgresql.conf', "guid.publisher_test_pause = ''\n");
$node->reload;
ok($node->poll_query_until('postgres', "SELECT publisher_pid NOT IN (0, $pid) FROM guid.status"),
	'past its deadline the worker exits and the postmaster starts a new one');
my $log = slurp_file($node->logfile, $offset);
like($log, qr/WARNING:  guid publisher: send_offsets_to_transaction has not returned after \d+ ms, although its timeout is \d+ ms and socket.timeout.ms 10000 ms .*\n.*DETAIL:  The publisher exits without waiting for it/,
	'the log says what was stuck');
like($log, qr/background worker "guid publisher" \(PID $pid\) exited with exit code 1/, 'the worker exited (code 1)');
unlike($log, qr/terminated by signal/, 'no crash: the other processes were not reset');
load('after_hang', 5);
is_deeply(kafka_guids(wait_published($node, $brokers, $topic, 240)), audit_guids(),
	'the new publisher streams: the topic equals guid.audit exactly (the stuck transaction aborted, its rows once)');

# --- 3. A fast shutdown while send_offsets_to_transaction is blocked -------------------------------
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "guid.publisher_test_pause = 'hang_send_offsets'\n");
$node->restart;
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or die 'publisher did not start';
load('hang_stop', 5);
ok($node->poll_query_until('postgres',
		"SELECT publisher_error LIKE '% send_offsets_to_transaction: no answer after % ms%' FROM guid.status"),
	'blocked again');
# not reloaded: the running publisher keeps its hang, the next one has none
$node->append_conf('postgresql.conf', "guid.publisher_test_pause = ''\n");
my $stopped;
{
	local $ENV{PGCTLTIMEOUT} = 60;
	$stopped = $node->stop('fast', fail_ok => 1);
}
ok($stopped, 'pg_ctl stop -m fast returns while the call is blocked');
kill9_all($node) unless $stopped;
$log = slurp_file($node->logfile, $offset);
like($log, qr/guid publisher: stopping while librdkafka's send_offsets_to_transaction \(running for \d+ ms, its timeout is \d+ ms\) has not returned; exiting without waiting for it/,
	'the worker said what was blocked when it stopped');
unlike($log, qr/has not returned after \d+ ms, although/, 'it stopped on SIGTERM, not at its deadline');
$node->start;
load('after_stop', 5);
is_deeply(kafka_guids(wait_published($node, $brokers, $topic, 240)), audit_guids(),
	'started again: the topic equals guid.audit exactly');

$node->stop;
done_testing();
