# A host name in guid.zookeeper whose lookup hangs must not hold up the
# coordinator worker: it resolves names off its own thread (getaddrinfo_a)
# and keeps answering its latch, so a fast shutdown completes while the
# lookup is still hanging.  (A worker that resolved in zookeeper_init2 would
# block in glibc, and the postmaster would wait for it.)
#
# The hang is made deterministic the way 013 does it for Redis: glibc opens
# the file HOSTALIASES names for single-label names not in /etc/hosts, and
# here that file is a FIFO nobody writes to, so the lookup of "zkhost"
# blocks until the test opens the FIFO for writing.
use strict;
use warnings;

use Fcntl qw(O_WRONLY O_NONBLOCK);
use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use POSIX qw(mkfifo);
use PostgreSQL::Test::Utils;
use Test::More;

my ($zk_host, $zk_port) = split /:/, ($ENV{GUID_ZOOKEEPER} or die 'GUID_ZOOKEEPER not set: run this through make test');
my $fifo = "$PostgreSQL::Test::Utils::tmp_check/hostaliases_021";
unlink($fifo);
mkfifo($fifo, 0600) or die "mkfifo: $!";

# Is a lookup blocked opening the FIFO?  (A non-blocking open for writing
# succeeds only when a reader is waiting.)  Opening it also lets that lookup
# go on, to an empty file: so replace the FIFO first when the hang must stay.
sub release_lookups
{
	my $w;
	my $hung = sysopen($w, $fifo, O_WRONLY | O_NONBLOCK);
	close $w if $hung;
	return $hung ? 1 : 0;
}

my $node = guid_node('dns', node_id => undef, start => 0,
	conf => zk_conf("zkhost:$zk_port", 'dns021', '4s'));
{
	local $ENV{HOSTALIASES} = $fifo;
	start_faked($node);
}
$node->safe_psql('postgres', 'CREATE EXTENSION guid');
ok($node->poll_query_until('postgres', "SELECT zookeeper_state = 'resolving' FROM guid.status"),
	'the coordinator is waiting for the lookup of "zkhost" (guid.status: resolving)');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT guid_next()', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: guid has no node id lease from ZooKeeper yet/, 'meanwhile guid_next() fails clearly');

# Prove the lookup hangs: keep a second name for the FIFO it is blocked on,
# put a fresh FIFO in its place (so that a retried lookup hangs again), then
# open the old one for writing, which succeeds only if a reader waits on it.
link($fifo, "$fifo.probe") or die "link: $!";
mkfifo("$fifo.new", 0600) or die "mkfifo: $!";
rename("$fifo.new", $fifo) or die "rename: $!";
my $probe;
my $was_hanging = sysopen($probe, "$fifo.probe", O_WRONLY | O_NONBLOCK) ? 1 : 0;
close $probe if $was_hanging;
ok($was_hanging, 'the lookup was hanging in the resolver');
ok($node->poll_query_until('postgres', "SELECT zookeeper_state IN ('resolving', 'unresolved') FROM guid.status"),
	'... and the coordinator, still answering, looks the name up again');

my $t0 = time;
my $stopped = PostgreSQL::Test::Utils::system_log('pg_ctl', '-D', $node->data_dir, '-m', 'fast', '-t', '20', 'stop') == 0;
my $took = time - $t0;
ok($stopped, 'a fast shutdown completes while a lookup hangs');
cmp_ok($took, '<', 20, "... within pg_ctl's timeout ($took s)");
unless ($stopped)
{
	release_lookups();	# a worker stuck in the lookup: let it go
	$node->stop('immediate');
}
$node->_update_pid(0);

# (That a name which resolves leases is 014's: guid.zookeeper = 'localhost:...'.)

done_testing();
