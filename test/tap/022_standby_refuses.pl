# A hot standby never issues IDs: every generating function fails there with
# SQLSTATE 25006 and a hint, in standalone and in leased mode; its
# coordinator neither leases a node id nor writes a reservation, and
# guid.status says mode = standby.  The reservation reaches the standby
# through the WAL (the custom resource manager): the standby's reservation
# follows the primary's, with the primary's system identifier and timeline.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my @generating = (
	'SELECT guid_next()',
	'SELECT guid_uuid()',
	"SELECT guid_next('standby_svc')",
	"SELECT guid_next('standby_svc', 'key_1')",
	"SELECT guid_next('standby_svc', ARRAY['key_1', 'key_2'])",
	"SELECT guid_next('standby_svc', ARRAY[]::text[])",
	'INSERT INTO t DEFAULT VALUES');

# Every generating function on $standby fails with 25006 and the hint.
sub refuses_all
{
	my ($standby, $what) = @_;
	for my $sql (@generating)
	{
		my ($state, $msg, $hint) = guid_sqlstate($standby, $sql);
		is($state // 'none', '25006', "$what: $sql fails with SQLSTATE 25006");
		# an INSERT is refused by PostgreSQL before guid is asked
		next if $sql =~ /^INSERT/;
		is($msg, 'guid cannot issue IDs on a server in recovery', "$what: $sql: the message says why");
		like($hint, qr/Issue IDs on the primary/, "$what: $sql: the hint says where IDs come from");
	}
}

# --- Standalone ---------------------------------------------------------------
my $primary = guid_primary('primary_sa', conf => "guid.node_id = 12\nguid.redis = '127.0.0.1:1'\n");
$primary->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next())');
my $standby = guid_standby($primary, 'standby_sa');

$primary->safe_psql('postgres', 'INSERT INTO t SELECT guid_next() FROM generate_series(1, 20000)');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT count(*) FROM t'), '20000', 'the standby replicates guid columns');

refuses_all($standby, 'standalone standby');

is($standby->safe_psql('postgres',
		q{SELECT concat_ws(' ', mode, coalesce(node_id::text, 'null'), reservation_writes, ids_issued) FROM guid.status}),
	'standby null 0 0',
	'guid.status says mode = standby, no node id (it issues under none), no reservation written, nothing issued');

# The primary's reservation is in the WAL: after catch-up the standby's
# durable reservation is the primary's, and names where it came from.  The
# primary's coordinator goes on extending it for a while after the last ID:
# compare when it did not move during the catch-up.
sub replayed
{
	my ($p, $s) = @_;
	my $q = q{SELECT (extract(epoch FROM reserved_until - '2025-01-01 00:00+00') * 1000)::bigint FROM guid.status};
	for (1 .. 50)
	{
		my $before = $p->safe_psql('postgres', $q);
		$p->wait_for_catchup($s);
		my $standby_ms = $s->safe_psql('postgres', $q);
		return ($before, $standby_ms) if $p->safe_psql('postgres', $q) eq $before;
	}
	die 'the reservation never held still';
}

my $sysid = system_identifier($primary);
my $lsn0 = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my $writes0 = $primary->safe_psql('postgres', 'SELECT reservation_writes FROM guid.status');
$primary->safe_psql('postgres', 'SELECT guid_next()');
$primary->poll_query_until('postgres', "SELECT reservation_writes > $writes0 FROM guid.status")
  or die 'the primary did not extend its reservation';
my $lsn1 = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

my ($primary_ms, $standby_ms) = replayed($primary, $standby);
is($standby_ms, $primary_ms, "the standby's reservation is the primary's, replayed from the WAL");
is($standby->safe_psql('postgres', q{SELECT reservation_system_identifier || ' ' || reservation_timeline FROM guid.status}),
	"$sysid 1", '... and guid.status names its system identifier and timeline');
like(slurp_file($standby->data_dir . '/guid.reservation'),
	qr/^guid reservation 2\nnode_id 12\nreserved_ms $standby_ms\nsystem_identifier $sysid\ntimeline 1\n\z/,
	"the standby's guid.reservation holds it durably");

# What a record looks like: pg_walinspect (in the server, with guid's
# description) and pg_waldump (which knows no custom resource manager).
$primary->safe_psql('postgres', 'CREATE EXTENSION pg_walinspect');
my $desc = $primary->safe_psql('postgres', qq{
	SELECT record_type || ': ' || description FROM pg_get_wal_records_info('$lsn0', '$lsn1')
	WHERE resource_manager = 'guid' ORDER BY start_lsn DESC LIMIT 1});
like($desc, qr/^RESERVATION: node 12 reserved_ms \d+ \(.*\) system_identifier $sysid timeline 1$/,
	'pg_walinspect shows the reservation record');
note("pg_walinspect: $desc");
my ($dump) = run_command([ 'pg_waldump', '-p', $primary->data_dir . '/pg_wal', '-s', $lsn0, '-e', $lsn1 ]);
my @lines = grep { /rmgr: custom187 / } split /\n/, $dump;
ok(@lines > 0, 'pg_waldump shows the records under rmgr custom187');
note("pg_waldump: $lines[-1]") if @lines;

# --- Leased ---------------------------------------------------------------------
my $zk = $ENV{GUID_ZOOKEEPER} or die 'GUID_ZOOKEEPER is not set: run make services-up';
my $ns = "t022_$$";
my $lprimary = guid_primary('primary_zk', conf => zk_conf($zk, $ns));
my $lid = wait_for_lease($lprimary);
$lprimary->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next())');
$lprimary->safe_psql('postgres', 'INSERT INTO t SELECT guid_next() FROM generate_series(1, 1000)');
my $lstandby = guid_standby($lprimary, 'standby_zk');
$lprimary->safe_psql('postgres', 'INSERT INTO t SELECT guid_next() FROM generate_series(1, 1000)');
$lprimary->wait_for_catchup($lstandby);

refuses_all($lstandby, 'leased standby');
is($lstandby->safe_psql('postgres', q{SELECT mode || ' ' || coalesce(zookeeper_state, 'null') FROM guid.status}),
	'standby null', 'the leased standby says mode = standby, and has no ZooKeeper session');
my $eph = zk_ephemerals($zk);
is_deeply([ grep { m{^/guid/$ns/nodes/} } @$eph ], [ "/guid/$ns/nodes/$lid" ],
	'only the primary holds a lease in ZooKeeper: the standby leased nothing');
($primary_ms, $standby_ms) = replayed($lprimary, $lstandby);
is($standby_ms, $primary_ms, "the leased standby's reservation is the primary's, replayed from the WAL");

$_->stop for ($lstandby, $lprimary, $standby, $primary);
done_testing();
