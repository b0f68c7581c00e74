# Bad ZooKeeper configuration: a malformed connect string (refused at startup), an unreachable
# server, ZooKeeper down at startup, credentials the namespace's ACL
# refuses, a namespace whose 1024 ids are all taken.  The server stays up, guid.status and the log say why, and
# generation fails clearly until a lease exists.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

sub refused
{
	my ($node, $what) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT guid_next()', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  55000: guid has no node id lease from ZooKeeper yet/, "$what: guid_next() fails clearly");
	like($err, qr/HINT:  Check that ZooKeeper is reachable at guid.zookeeper/, "$what: the hint names the setting");
}

# --- Malformed connect string: refused at startup (see also 004) ---------------
my $bad = guid_node('malformed', node_id => undef, conf => zk_conf('no port here:not-a-port', 'cfg', '1s'),
	start => 0);
ok(!start_faked($bad, fail_ok => 1), 'a malformed guid.zookeeper stops the server at startup');
ok($bad->log_contains(qr/invalid value for parameter "guid.zookeeper": "no port here:not-a-port"/),
	'... and the log says why');

# --- Nothing listening ---------------------------------------------------------------
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $unreach = guid_node('unreachable', node_id => undef, conf => zk_conf("127.0.0.1:$port", 'cfg', '1s'));
ok($unreach->poll_query_until('postgres', "SELECT last_error LIKE 'no ZooKeeper server answers%' FROM guid.status"),
	'an unreachable ZooKeeper is reported in guid.status');
refused($unreach, 'unreachable');

# --- ZooKeeper down at startup, then up ------------------------------------------
my $zk = zookeeper_start('late', { dir => "$PostgreSQL::Test::Utils::tmp_check/zk_late", port => $port });
my $id = wait_for_lease($unreach);
ok($id >= 0, "once ZooKeeper is up the cluster leases id $id");
ok($unreach->safe_psql('postgres', 'SELECT guid_next() IS NOT NULL'), '... and issues IDs');
is($unreach->safe_psql('postgres', 'SELECT last_error FROM guid.status'), '', '... and the error is cleared');

# --- ACLs: with credentials, other credentials cannot lease or overwrite --------
# The owner reads its credentials from a file only its OS user may read.
my $auth_dir = PostgreSQL::Test::Utils::tempdir();
sub auth_file
{
	my ($name, $content, $mode) = @_;
	my $path = "$auth_dir/$name";
	PostgreSQL::Test::Utils::append_to_file($path, $content);
	chmod($mode, $path) or die "chmod $path: $!";
	return $path;
}
my $owner_file = auth_file('owner', "guid:secret\n", 0600);
my $owner = guid_node('acl_owner', node_id => undef,
	conf => zk_conf("127.0.0.1:$port", 'secured', '2s') . "guid.zookeeper_auth_file = '$owner_file'\n");
wait_for_lease($owner);
ok(!$owner->log_contains(qr/guid.zookeeper_auth holds a password/), 'credentials from a file: no warning');
# The intruder still uses the inline setting: it works, with a warning.
my $intruder = guid_node('acl_intruder', node_id => undef,
	conf => zk_conf("127.0.0.1:$port", 'secured', '2s') . "guid.zookeeper_auth = 'other:password'\n");
ok($intruder->poll_query_until('postgres', "SELECT last_error LIKE '%not authenticated%' FROM guid.status"),
	'another user cannot lease in a namespace created with other credentials');
refused($intruder, 'intruder');
ok($intruder->log_contains(qr/WARNING:  guid.zookeeper_auth holds a password that every role with pg_read_all_settings can read/),
	'the inline guid.zookeeper_auth still works, with a warning naming the risk');
ok($intruder->log_contains(qr/HINT:  .*guid.zookeeper_auth_file/), '... and the file setting');
is($owner->safe_psql('postgres', 'SELECT mode FROM guid.status'), 'leased', 'the owner keeps its lease');
$intruder->safe_psql('postgres', 'CREATE ROLE plain_user');
my ($ret, $out, $err) = $intruder->psql('postgres', 'SET ROLE plain_user; SHOW guid.zookeeper_auth');
like($err, qr/permission denied|must be superuser|privileges/, 'the inline value is for superusers only');
$owner->safe_psql('postgres', 'CREATE ROLE monitor IN ROLE pg_monitor');
is($owner->safe_psql('postgres', 'SET ROLE monitor; SHOW guid.zookeeper_auth_file'), $owner_file,
	'pg_monitor sees the file setting: a path, not the secret');
is($owner->safe_psql('postgres', 'SET ROLE monitor; SHOW guid.zookeeper_auth'), '',
	'... and no secret in guid.zookeeper_auth');
$owner->stop;
$intruder->stop;

# A file others may read is refused: the worker does not connect at all.
my $open_file = auth_file('open', "guid:secret\n", 0644);
my $careless = guid_node('acl_careless', node_id => undef,
	conf => zk_conf("127.0.0.1:$port", 'secured', '2s') . "guid.zookeeper_auth_file = '$open_file'\n");
ok($careless->poll_query_until('postgres',
		"SELECT last_error LIKE '%has group or world access%' AND zookeeper_state = 'invalid' FROM guid.status"),
	'a group- or world-readable credentials file is refused, and guid.status says why');
refused($careless, 'careless');
$careless->stop;

# --- All 1024 ids of a namespace taken --------------------------------------------
# ZooKeeper's own CLI holds every lease znode of namespace "full" in one session.
my ($cli_in, $cli_out) = ('', '');
my $cli = IPC::Run::start([ '/usr/share/zookeeper/bin/zkCli.sh', '-server', "127.0.0.1:$port" ],
	'<', \$cli_in, '>&', \$cli_out, IPC::Run::timeout(120));
$cli_in .= join('', map { "create $_ ''\n" } ('/guid', '/guid/full', '/guid/full/nodes'));
$cli_in .= "create -e /guid/full/nodes/$_ outsider\n" for (0 .. 1023);
$cli->pump until $cli_out =~ m{Created /guid/full/nodes/1023} || !$cli->pumpable;
like($cli_out, qr{Created /guid/full/nodes/1023}, 'another client holds all 1024 ids of a namespace');
my $full = guid_node('full', node_id => undef, conf => zk_conf("127.0.0.1:$port", 'full', '2s'));
ok($full->poll_query_until('postgres',
	q{SELECT last_error = 'all 1024 node ids of namespace "full" are leased' FROM guid.status}),
	'a cluster that finds every id leased says so in guid.status');
refused($full, 'all ids taken');
$cli_in .= "quit\n";
$cli->finish;
ok(wait_for_lease($full) >= 0, 'once they are released it leases one');

$_->stop for ($unreach, $owner, $intruder, $full);
zookeeper_stop($zk);
done_testing();
