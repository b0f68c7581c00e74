# Node ids leased from a real ZooKeeper (the one `make services-up`
# started): three clusters get three ids and issue 3 x 1,000,000 IDs with no
# duplicate; a restarted cluster keeps its id; a copy of a stopped cluster's
# data directory, started beside the original, gets another id.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::RecursiveCopy;
use PostgreSQL::Test::Utils;
use Test::More;

my $zk = $ENV{GUID_ZOOKEEPER} or die 'GUID_ZOOKEEPER is not set: run make services-up';
my $ns = "t005_$$";
my $conf = zk_conf($zk, $ns);

my @nodes = map { guid_node("fleet$_", node_id => undef, conf => $conf) } (1 .. 3);
my @ids = map { wait_for_lease($_) } @nodes;
is(scalar(keys %{ { map { $_ => 1 } @ids } }), 3, "three clusters lease three distinct ids (@ids)");

my $holder = $nodes[0]->safe_psql('postgres', "SELECT zookeeper_state || ' ' || session_id FROM guid.status");
like($holder, qr/^connected 0x[0-9a-f]+$/, 'status shows the ZooKeeper session');
my $eph = zk_ephemerals($zk);
is(scalar(grep { m{^/guid/$ns/nodes/\d+$} } @$eph), 3, 'ZooKeeper holds three ephemeral lease znodes');

# 3 x 1,000,000 IDs, generated at the same time, gathered in one table.
my @h;
for my $i (0 .. 2)
{
	$nodes[$i]->safe_psql('postgres', 'CREATE TABLE ids (id guid)');
	push @h, IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $nodes[$i]->connstr('postgres'),
		  '-c', 'INSERT INTO ids SELECT guid_next() FROM generate_series(1, 1000000)' ]);
}
$_->finish for @h;
is($_->result(0), 0, 'a generator finished') for @h;

$nodes[0]->safe_psql('postgres', 'CREATE TABLE all_ids (id guid)');
for my $i (0 .. 2)
{
	my $pipe = IPC::Run::run(
		[ 'psql', '-XAtq', '-d', $nodes[$i]->connstr('postgres'), '-c', 'COPY ids TO STDOUT' ],
		'|',
		[ 'psql', '-XAtq', '-d', $nodes[0]->connstr('postgres'), '-c', 'COPY all_ids FROM STDIN' ]);
	ok($pipe, "IDs of cluster $i gathered");
}
is($nodes[0]->safe_psql('postgres', 'SELECT count(*) FROM all_ids'), '3000000', '3,000,000 IDs gathered');
is($nodes[0]->safe_psql('postgres', 'SELECT count(*) FROM (SELECT id FROM all_ids GROUP BY id HAVING count(*) > 1) d'),
	'0', 'no duplicate among 3 x 1,000,000 IDs of three leased clusters');
is($nodes[0]->safe_psql('postgres', 'SELECT count(DISTINCT guid_node(id)) FROM all_ids'), '3',
	'they carry the three leased ids');

# A clean restart frees the id (the session is closed) and takes it again.
my $before = $nodes[1]->safe_psql('postgres', 'SELECT max(id) FROM ids');
$nodes[1]->restart;
is(wait_for_lease($nodes[1]), $ids[1], 'a restarted cluster keeps its previous id');
is($nodes[1]->safe_psql('postgres', "SELECT guid_next() > '$before'"), 't', '... and issues above what it issued before');

# A copy of a stopped cluster's data directory, started beside the original.
$nodes[2]->stop;
my $copy = PostgreSQL::Test::Cluster->new('fleet_copy');
PostgreSQL::Test::RecursiveCopy::copypath($nodes[2]->data_dir, $copy->data_dir);
chmod(0700, $copy->data_dir);
$copy->append_conf('postgresql.conf', 'port = ' . $copy->port . "\n");
$nodes[2]->start;
is(wait_for_lease($nodes[2]), $ids[2], 'the original takes its id back');
$copy->start;
my $copy_id = wait_for_lease($copy);
ok(!grep({ $_ == $copy_id } @ids), "the copy of its data directory leases another id ($copy_id)");
is($copy->safe_psql('postgres', 'SELECT guid_node(guid_next())'), $copy_id, '... and issues IDs with it');

$_->stop for (@nodes, $copy);
done_testing();
