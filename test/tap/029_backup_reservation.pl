# A base backup starts above every ID in the data it replays, even when the
# reservation the primary publishes is covered only by a WAL record written
# before the backup's checkpoint.  A backup copies guid.reservation as it is
# at copy time and replays the WAL from its checkpoint on: a reservation
# record older than that checkpoint never reaches it, so the primary must
# not publish a reservation that is neither in the file it copies nor in a
# record after the checkpoint.
#
# Here: a reservation write whose file cannot be written (a directory where
# its temporary copy goes) after its record was logged, a minute ahead (the
# clock jumped); the clock comes back; a base backup; the file is writable
# again and the primary issues IDs above the reservation the backup copied.
# The standby made from that backup, its clock 10 s behind, is promoted.
#
# Then the same with a reservation write that is slow rather than failing
# (a FIFO where the file's temporary copy goes holds the writer until the
# test reads it): the base backup is taken while the writer waits, and the
# writer's file arrives after the copy.  The record must come after the
# file, so that it lands after the backup's checkpoint.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

# The reserved millisecond in a guid.reservation file (0 when there is none).
sub file_ms
{
	my $path = shift;
	return 0 unless -e $path;
	my $text = slurp_file($path);
	$text =~ /^reserved_ms (\d+)$/m or die "no reserved_ms in $path";
	return $1;
}

my $primary = guid_primary('primary', conf => "guid.node_id = 31\n", faketime => 1);
$primary->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next(), n int)');
$primary->safe_psql('postgres', 'INSERT INTO t (n) SELECT 0 FROM generate_series(1, 1000)');

# A reservation a minute ahead that cannot reach the file.
my $blocker = $primary->data_dir . '/guid.reservation.tmp';
mkdir $blocker or die "mkdir $blocker: $!";
set_fake_time($primary, '+60s');
my ($state, $msg) = guid_sqlstate($primary, 'SELECT guid_next()');
like($msg, qr/could not create file "guid.reservation.tmp"/,
	'a reservation whose file cannot be written fails the call that needed it');
set_fake_time($primary, '+0');

# A base backup: its checkpoint comes after anything logged so far.
$primary->backup('b');
my $copied = file_ms($primary->backup_dir . '/b/guid.reservation');
rmdir $blocker or die "rmdir $blocker: $!";

# IDs above the reservation the backup copied, in rows it will replay.
$primary->poll_query_until('postgres', qq{
	WITH ins AS (INSERT INTO t (n) SELECT 1 FROM generate_series(1, 1000) RETURNING id)
	SELECT max(id::bigint >> 22) > $copied FROM ins})
  or die 'no ID above the copied reservation';

my $standby = guid_standby($primary, 'standby', backup => 'b', faketime => '-10s', start => 0,
	conf => "guid.max_clock_ahead = '60s'\n");
rmdir $standby->data_dir . '/guid.reservation.tmp';
start_faked($standby);
$standby->poll_query_until('postgres', 'SELECT pg_is_in_recovery()') or die 'not a standby';
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT count(*) FROM t'),
	$primary->safe_psql('postgres', 'SELECT count(*) FROM t'), 'the standby replayed every row');
$primary->stop('fast');

$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'not promoted';
$standby->safe_psql('postgres', q{
	CREATE TABLE replicated AS SELECT id FROM t;
	CREATE TABLE after AS SELECT guid_next() AS id FROM generate_series(1, 20000);
});
my ($max_replicated, $min_after, $below, $repeated) = split /\|/, $standby->safe_psql('postgres', q{
	SELECT (SELECT max(id) FROM replicated), (SELECT min(id) FROM after),
		(SELECT count(*) FROM after WHERE id <= (SELECT max(id) FROM replicated)),
		(SELECT count(*) FROM after JOIN replicated USING (id))});
note("reservation copied by the backup: $copied ms; max replicated $max_replicated, "
	  . "min after promotion $min_after");
is($below, '0', 'every ID the promoted copy issues is above every ID it replicated');
is($repeated, '0', 'none repeats a replicated ID');

$standby->stop;

# Promote $standby (its primary stopped) and count the IDs it issues at or
# below the highest ID it replicated.
sub promoted_below
{
	my $standby = shift;
	$standby->promote;
	$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'not promoted';
	return $standby->safe_psql('postgres', q{
		CREATE TABLE after AS SELECT guid_next() AS id FROM generate_series(1, 20000);
		SELECT count(*) FROM after WHERE id <= (SELECT max(id) FROM t)});
}

# --- A slow reservation write across a base backup ---------------------------
my $slow = guid_primary('slow', conf => "guid.node_id = 32\nguid.max_clock_ahead = '120s'\n",
	faketime => 1);
$slow->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next(), n int)');
# No ID yet: the coordinator of a server that has issued none stays idle, so
# the write below is the only one until the primary stops.

my $tmp = $slow->data_dir . '/guid.reservation.tmp';
my $link = $slow->basedir . '/reservation.fifo';
system('mkfifo', $tmp) == 0 or die "mkfifo $tmp";
link($tmp, $link) or die "link $link: $!";
set_fake_time($slow, '+60s');
my ($out, $err) = ('', '');
my $call = IPC::Run::start([ 'psql', '-XAtq', '-d', $slow->connstr('postgres'), '-c', 'SELECT guid_next()' ],
	'>', \$out, '2>', \$err);

# Wait until a process of the server waits in the FIFO's open().
my $pm = $slow->{_pid};
my $held = 0;
for (1 .. 600)
{
	for my $pid (split ' ', `ps -o pid= --ppid $pm`)
	{
		my $wchan = eval { slurp_file("/proc/$pid/wchan") } // '';
		$held = 1 if $wchan eq 'wait_for_partner';
	}
	last if $held;
	select(undef, undef, undef, 0.1);
}
ok($held, 'a reservation write waits for its file');

$slow->backup('slow_b');
$copied = file_ms($slow->backup_dir . '/slow_b/guid.reservation');
set_fake_time($slow, '+50s');

# The clock 10 s back, so that the IDs to come fall inside the reservation
# being written (no other reservation is due before the primary stops).
# The write completes: a regular file (a reservation two minutes ahead of the
# clock) takes the FIFO's place, and the writer's open returns.
my $later = $slow->safe_psql('postgres',
	q{SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1735689600000 + 120000});
my $text = sprintf("guid reservation 2\nnode_id 32\nreserved_ms %s\nsystem_identifier %s\ntimeline 1\n",
	$later, system_identifier($slow));
PostgreSQL::Test::Utils::append_to_file("$tmp.new", $text);
rename("$tmp.new", $tmp) or die "rename: $!";
open(my $fifo, '<', $link) or die "open $link: $!";
{ local $/; my $discard = <$fifo>; }
close $fifo;
$call->finish;
like($out, qr/^\d+$/, 'the call that waited issues its ID') or diag($err);
set_fake_time($slow, '+0');

$slow->safe_psql('postgres', 'INSERT INTO t (n) SELECT 1 FROM generate_series(1, 5000)');
ok($slow->safe_psql('postgres', 'SELECT max(id::bigint >> 22) FROM t') > $copied,
	'the primary issued IDs above the reservation the backup copied');

my $slow_standby = guid_standby($slow, 'slow_standby', backup => 'slow_b', faketime => '-10s',
	conf => "guid.max_clock_ahead = '120s'\n");
$slow->wait_for_catchup($slow_standby);
$slow->stop('fast');
is(promoted_below($slow_standby), '0',
	'after a slow reservation write across a base backup, every ID the promoted copy issues is above every ID it replicated');

$slow_standby->stop;
done_testing();
