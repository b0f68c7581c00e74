# Leased mode, split brain: a primary and its hot standby lease from one
# ZooKeeper; the standby (clock 30 s behind) is promoted while the old
# primary still runs and issues IDs.  The promoted standby leases a node id
# the normal way: not the old primary's (still held), and it starts above the
# reservation it replayed.  Both then issue at the same time: the two hold
# different node ids, no ID appears twice, and every ID of the promoted
# standby is above every ID it replicated.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $zk = $ENV{GUID_ZOOKEEPER} or die 'GUID_ZOOKEEPER is not set: run make services-up';
my $ns = "t024_$$";

my $primary = guid_primary('primary', conf => zk_conf($zk, $ns));
my $old_id = wait_for_lease($primary);
$primary->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next(), n int)');
# The standby's clock is 30 s behind (so that the check below does not
# depend on how fast it replays): it may run that far ahead of it.
my $standby = guid_standby($primary, 'standby', faketime => '-30s',
	conf => "guid.max_clock_ahead = '60s'\n");
$primary->safe_psql('postgres', 'INSERT INTO t (n) SELECT g FROM generate_series(1, 50000) g');
$primary->wait_for_catchup($standby);
$standby->poll_query_until('postgres', q{SELECT guid_timestamp(max(id)) > now() + interval '1 s' FROM t})
  or die 'the standby replicated no ID ahead of its clock';
my $max_replicated = $standby->safe_psql('postgres', 'SELECT max(id) FROM t');

# Promote while the old primary keeps its lease and issues.
$standby->promote;
my $new_id = wait_for_lease($standby);
isnt($new_id, $old_id, "the promoted standby leased node id $new_id, not the old primary's $old_id (still held)");
is($primary->safe_psql('postgres', 'SELECT mode || \' \' || node_id FROM guid.status'), "leased $old_id",
	'the old primary still holds its id');
my $eph = zk_ephemerals($zk);
is_deeply([ sort grep { m{^/guid/$ns/nodes/} } @$eph ],
	[ sort("/guid/$ns/nodes/$old_id", "/guid/$ns/nodes/$new_id") ],
	'ZooKeeper holds the two leases');

# Both sides issue at the same time.
my @h;
for my $node ($primary, $standby)
{
	$node->safe_psql('postgres', 'CREATE TABLE side (id guid)');
	push @h, IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', 'INSERT INTO side SELECT guid_next() FROM generate_series(1, 200000)' ]);
}
$_->finish for @h;
is($_->result(0), 0, 'a side finished issuing') for @h;

$standby->safe_psql('postgres', 'CREATE TABLE both_sides (id guid, side text)');
my $pipe = IPC::Run::run(
	[ 'psql', '-XAtq', '-d', $primary->connstr('postgres'), '-c', q{COPY (SELECT id, 'old' FROM side) TO STDOUT} ],
	'|',
	[ 'psql', '-XAtq', '-d', $standby->connstr('postgres'), '-c', 'COPY both_sides FROM STDIN' ]);
ok($pipe, "the old primary's IDs gathered");
$standby->safe_psql('postgres', q{INSERT INTO both_sides SELECT id, 'new' FROM side});

my ($total, $distinct, $nodes) = split /\|/, $standby->safe_psql('postgres',
	'SELECT count(*), count(DISTINCT id), count(DISTINCT guid_node(id)) FROM both_sides');
is($total, '400000', '400,000 IDs gathered from both sides');
is($distinct, $total, 'no ID appears twice across the old primary and the promoted standby');
is($nodes, '2', '... they carry two node ids');
my ($min_new, $below) = split /\|/, $standby->safe_psql('postgres', qq{
	SELECT min(id), count(*) FILTER (WHERE id <= '$max_replicated') FROM both_sides WHERE side = 'new'});
note("max replicated $max_replicated, min after promotion $min_new");
is($below, '0', 'every ID the promoted standby issues is above every ID it replicated (its clock is 30 s behind)');

$_->stop for ($standby, $primary);
done_testing();
