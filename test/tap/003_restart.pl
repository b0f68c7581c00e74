# Restart safety: after a restart with the clock 10 s behind, and after a
# backend is killed with kill -9 (the postmaster reinitialises shared
# memory), every new ID is greater than every ID issued before.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use POSIX qw(strftime);
use PostgreSQL::Test::Utils;
use Test::More;

# --- Restart with the clock 10 s behind -------------------------------------
my $node = guid_node('restart', node_id => 3, faketime => 1,
	conf => "guid.max_clock_ahead = '20s'\n");
$node->safe_psql('postgres', 'CREATE TABLE before_restart AS SELECT guid_next() AS id FROM generate_series(1, 100000)');
my $old_max = $node->safe_psql('postgres', 'SELECT max(id) FROM before_restart');

$node->stop;
ok(-f $node->data_dir . '/guid.reservation', 'the reservation file is in the data directory');
set_fake_time($node, '-10s');
start_faked($node);

is( $node->safe_psql('postgres', "SELECT guid_timestamp('$old_max') > now() + interval '9 s'"),
	't', 'the restarted server\'s clock is 10 s behind the last ID issued');
$node->safe_psql('postgres', 'CREATE TABLE after_restart AS SELECT guid_next() AS id FROM generate_series(1, 100000)');
is($node->safe_psql('postgres', "SELECT count(*) FROM after_restart WHERE id <= '$old_max'"),
	'0', 'after a restart with the clock 10 s behind, every new ID is greater than every old one');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM after_restart'), '100000', '... and they are distinct');

# With the default bound of 5 s the same situation is an error, not a duplicate.
$node->safe_psql('postgres', "ALTER SYSTEM SET guid.max_clock_ahead = '5s'; ALTER SYSTEM SET guid.max_clock_wait = '100ms'; SELECT pg_reload_conf()");
$node->poll_query_until('postgres', "SELECT current_setting('guid.max_clock_ahead') = '5s'") or die;
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT guid_next()');
isnt($ret, 0, 'with guid.max_clock_ahead = 5s the 10 s step is refused');
like($err, qr/guid clock is \d+ ms ahead of the system clock/, '... with a clear error');
$node->stop;

# --- kill -9 of a backend: crash-restart -------------------------------------
# PostgreSQL::Test::Cluster turns restart_after_crash off; we want the
# server's default behaviour: reinitialise shared memory and carry on.
my $crash = guid_node('crash', node_id => 4, faketime => 1, conf => "restart_after_crash = on\n");
# Freeze the clock: 300,000 IDs then run about 73 ms ahead of it, so a
# generator that restarted from the clock would repeat them.
set_fake_time($crash, strftime('%Y-%m-%d %H:%M:%S', gmtime(time())));
$crash->safe_psql('postgres', 'CREATE TABLE before_crash AS SELECT guid_next() AS id FROM generate_series(1, 300000)');
my $crash_max = $crash->safe_psql('postgres', 'SELECT max(id) FROM before_crash');
is($crash->safe_psql('postgres', "SELECT guid_timestamp('$crash_max') > now()"), 't',
	'the last ID issued is ahead of the (frozen) clock');

my $victim = $crash->background_psql('postgres', on_error_stop => 0);
my $pid = $victim->query_safe('SELECT pg_backend_pid()');
my $log_offset = -s $crash->logfile;
kill 'KILL', $pid;
$crash->poll_query_until('postgres', 'SELECT 1', '1') or die 'server did not come back';
ok($crash->log_contains('all server processes terminated; reinitializing', $log_offset),
	'kill -9 of a backend made the postmaster reinitialise shared memory');
eval { $victim->quit };

$crash->safe_psql('postgres', 'CREATE TABLE after_crash AS SELECT guid_next() AS id FROM generate_series(1, 100000)');
is($crash->safe_psql('postgres', "SELECT count(*) FROM after_crash WHERE id <= '$crash_max'"),
	'0', 'after a crash-restart, every new ID is greater than every old one');
is($crash->safe_psql('postgres', 'SELECT count(*) FROM after_crash a JOIN before_crash b USING (id)'),
	'0', '... and none repeats');

$crash->stop;
done_testing();
