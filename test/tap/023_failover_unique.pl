# Failover never repeats an ID, whatever the standby's clock does.  A primary
# issues IDs under load into a replicated table; its standby's clock is 2 s
# behind.  The primary goes away (a fast shutdown while the load runs), the
# standby is promoted (no restart), and every ID it then issues is above
# every ID in the replicated table.  Then the same again one level down: the
# promoted standby is the primary, its own standby (another 2 s behind) is
# promoted after the primary and all its processes are killed with SIGKILL
# in the middle of the inserts.  Last, a copy of a data directory: a base
# backup restored by point-in-time recovery to a new timeline.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

# Start inserting rows with guid_next() on $node, one small transaction at a
# time, until it goes away.
sub start_load
{
	my $node = shift;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
		  'DO $$ BEGIN FOR i IN 1 .. 100000000 LOOP INSERT INTO t (n) SELECT g FROM generate_series(1, 50) g; COMMIT; END LOOP; END $$' ],
		'>', \$out, '2>', \$err);
	return $h;
}

# Wait until $standby has replayed rows whose IDs lie ahead of its own clock
# by more than a second (its clock is behind): a generator that started from
# the standby's clock would repeat them.
sub wait_replicated_ahead
{
	my ($standby, $min_rows) = @_;
	$standby->poll_query_until('postgres',
		"SELECT count(*) >= $min_rows AND guid_timestamp(max(id)) > now() + interval '1 s' FROM t")
	  or die $standby->name . ' did not replicate IDs ahead of its clock';
}

# Promote $standby and check the law on it: every ID it issues is above
# every ID it replicated, and none repeats one.
sub promote_and_check
{
	my ($standby, $what, $mark) = @_;
	$standby->promote if $standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 't';
	$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'not promoted';
	# right away: a generator that started from this clock would be behind
	# (rows this round inserts after the promotion have n = $mark)
	$standby->safe_psql('postgres', qq{
		DROP TABLE IF EXISTS replicated, after;
		CREATE TABLE replicated AS SELECT id FROM t;
		CREATE TABLE after AS SELECT guid_next() AS id FROM generate_series(1, 20000);
		INSERT INTO t (n) SELECT $mark FROM generate_series(1, 20000);
		INSERT INTO after SELECT id FROM t WHERE n = $mark;
	});
	my ($rows, $max_replicated, $min_after, $n_after, $below, $ahead) = split /\|/, $standby->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM replicated), (SELECT max(id) FROM replicated),
			(SELECT min(id) FROM after), (SELECT count(DISTINCT id) FROM after),
			(SELECT count(*) FROM after WHERE id <= (SELECT max(id) FROM replicated)),
			(SELECT round(extract(epoch FROM guid_timestamp(max(id)) - now())::numeric, 3) FROM replicated)});
	note("$what: $rows IDs replicated, the latest $ahead s ahead of the promoted standby's clock; "
		  . "max replicated $max_replicated, min after promotion $min_after");
	ok($rows > 0, "$what: the standby replicated $rows rows");
	is($n_after, '40000', "$what: the promoted standby issued 40,000 distinct IDs");
	is($below, '0', "$what: every ID the promoted standby issues is above every replicated ID");
	ok($min_after > $max_replicated, "$what: min after promotion ($min_after) > max replicated ($max_replicated)");
	is($standby->safe_psql('postgres', 'SELECT count(*) FROM after JOIN replicated USING (id)'), '0',
		"$what: none repeats a replicated ID");
	return $max_replicated;
}

# --- Round 1: a fast shutdown under load -----------------------------------------
my $primary = guid_primary('primary', conf => "guid.node_id = 21\n");
$primary->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next(), n int)');
my $standby = guid_standby($primary, 'standby', faketime => '-2s');

my $load = start_load($primary);
wait_replicated_ahead($standby, 5000);
$primary->stop('fast');
$load->finish;
promote_and_check($standby, 'fast shutdown', -1);
is($standby->safe_psql('postgres', 'SELECT reservation_timeline FROM guid.status'), '2',
	'the promoted standby writes its reservations on its new timeline');

# --- Round 2: kill -9 of every process of the primary mid-insert -------------------
# The promoted standby is the primary now; its standby's clock is 2 s behind
# its own (4 s behind the real one).
my $primary2 = $standby;
my $standby2 = guid_standby($primary2, 'standby2', faketime => '-4s');
$load = start_load($primary2);
wait_replicated_ahead($standby2, 5000);
$primary2->poll_query_until('postgres', "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'DO %' AND state = 'active'")
  or die 'no insert running';
kill9_all($primary2);
$load->finish;
promote_and_check($standby2, 'kill -9 mid-insert', -2);

$standby2->stop;

# --- A copy of a data directory: point-in-time recovery to a new timeline ----------
# A base backup taken before the IDs, restored from the WAL archive up to a
# restore point on a server whose clock is 10 s behind (the recovery takes
# a few seconds), then promoted: it starts above the reservations in the WAL
# it replayed, not from the file it copied.
my $origin = guid_primary('origin', conf => "guid.node_id = 22\n", archiving => 1);
$origin->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next(), n int)');
$origin->backup('early');
$load = start_load($origin);
$origin->poll_query_until('postgres', q{SELECT count(*) >= 20000 FROM t}) or die 'no load';
$origin->safe_psql('postgres', q{SELECT pg_create_restore_point('pitr'); SELECT pg_switch_wal()});
$origin->stop('fast');
$load->finish;
my $pitr = guid_standby($origin, 'pitr', backup => 'early', restoring => 1, faketime => '-10s', start => 0,
	conf => "recovery_target_name = 'pitr'\nrecovery_target_action = 'promote'\nguid.max_clock_ahead = '20s'\n");
start_faked($pitr);
$pitr->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'point-in-time recovery did not end';
promote_and_check($pitr, 'point-in-time recovery', -3);
is($pitr->safe_psql('postgres', 'SELECT reservation_timeline FROM guid.status'), '2',
	'the restored copy writes its reservations on its new timeline');

$pitr->stop;
done_testing();
