# ZooKeeper credentials longer than 255 bytes are used whole, as before the
# lease protocol moved into its plain-C client: from guid.zookeeper_auth_file
# they lease like short ones, and inline (guid.zookeeper_auth) two different
# passwords that only share their first 255 bytes are two users, not one.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $zk = zookeeper_start('long_auth');
my $connect = "127.0.0.1:$zk->{port}";
my $prefix = 'p' x 300;

# --- From a file: a long password is accepted and used ------------------------
my $auth_dir = PostgreSQL::Test::Utils::tempdir();
my $file = "$auth_dir/long";
PostgreSQL::Test::Utils::append_to_file($file, "guid:${prefix}A\n");
chmod(0600, $file) or die "chmod $file: $!";
my $owner = guid_node('long_file', node_id => undef,
	conf => zk_conf($connect, 'long_ns', '2s') . "guid.zookeeper_auth_file = '$file'\n");
ok($owner->poll_query_until('postgres', "SELECT mode = 'leased' FROM guid.status"),
	'a 306-byte user:password from guid.zookeeper_auth_file leases a node id');
is($owner->safe_psql('postgres', 'SELECT coalesce(last_error, \'\') FROM guid.status'), '',
	'... with no error in guid.status');
my ($ret) = $owner->psql('postgres', 'SELECT guid_next()');
is($ret, 0, '... and issues IDs');

# The same credentials inline are the same user: they lease in that namespace.
my $same = guid_node('long_same', node_id => undef,
	conf => zk_conf($connect, 'long_ns', '2s') . "guid.zookeeper_auth = 'guid:${prefix}A'\n");
ok($same->poll_query_until('postgres', "SELECT mode = 'leased' FROM guid.status"),
	'the same long credentials inline lease in the namespace they created');
$same->stop;

# --- Inline: another password with the same first 255 bytes is another user ---
my $other = guid_node('long_other', node_id => undef,
	conf => zk_conf($connect, 'long_ns', '2s') . "guid.zookeeper_auth = 'guid:${prefix}B'\n");
ok($other->poll_query_until('postgres', "SELECT last_error LIKE '%not authenticated%' FROM guid.status"),
	'a password that differs only after byte 255 cannot lease in that namespace');
is($other->safe_psql('postgres', 'SELECT mode FROM guid.status'), 'connecting',
	'... and holds no lease');
is($owner->safe_psql('postgres', 'SELECT mode FROM guid.status'), 'leased', 'the owner keeps its lease');

$other->stop;
$owner->stop;
zookeeper_stop($zk);
done_testing();
