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
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

# The reserved millisecond in a guid.reservation file.
sub file_ms
{
	my $path = shift;
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
done_testing();
