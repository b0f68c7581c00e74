# The Redis connection of a backend follows guid.redis across a reload, and
# an interrupted exchange leaves nothing behind: a backend that had its
# connect or its round trip cut by statement_timeout works on its next call,
# and a host name lookup that hangs is bounded and interruptible.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IO::Socket::INET;
use IPC::Run;
use POSIX qw(mkfifo);
use Fcntl qw(O_WRONLY O_NONBLOCK);
use PostgreSQL::Test::Utils;
use Test::More;

my $ra = redis_start('a');
my $rb = redis_start('b');
# A Redis that accepts late: Linux queues backlog + 1 connections that the
# server has not accepted yet and drops further SYNs, so with the server
# frozen (SIGSTOP) and two connections queued on a backlog of 1, a connect
# waits in SYN_SENT until the server runs again.
my $rc = redis_start('c', '--tcp-backlog', '1');

# A host name that is in no /etc/hosts: its lookup goes to DNS, which first
# opens HOSTALIASES (single-label names).  The test makes that a FIFO nobody
# writes to (arm_lookups), so the lookup hangs until the test releases it.
my $fifo = "$PostgreSQL::Test::Utils::tmp_check/hostaliases";
PostgreSQL::Test::Utils::append_to_file($fifo, '');
my $node = do
{
	local $ENV{HOSTALIASES} = $fifo;
	guid_node('reload', node_id => 21,
		conf => "guid.redis = '127.0.0.1:$ra->{port}'\nguid.redis_timeout = '10s'\n");
};

sub key_in { my ($r, $key) = @_; return redis_cli($r, 'GET', "guid:idem:default:$key") }

# call($session, $sql): its output; an error goes to the log and gives undef.
sub call
{
	my ($session, $sql) = @_;
	my $out = $session->query($sql);
	return $out if $session->{stderr} eq '';
	note("$sql: $session->{stderr}");
	$session->{stderr} = '';
	return undef;
}

# --- A reload moves every backend to the new Redis --------------------------------
my $old = $node->background_psql('postgres', on_error_stop => 0);
like(call($old, "SELECT guid_next('svc', 'warm')"), qr/^\d+$/, 'an old backend uses Redis A');

redis_cli($rb, 'CONFIG', 'SET', 'requirepass', 'one');
$rb->{password} = 'one';
set_guid_redis($node, "one\@127.0.0.1:$rb->{port}", $old);
my $new_id = $node->safe_psql('postgres', "SELECT guid_next('svc', 'moved')");
like($new_id, qr/^\d+$/, 'after guid.redis moved to Redis B (with a password), a new backend gets a guid');
is(call($old, "SELECT guid_next('svc', 'moved')"), $new_id,
	'the old backend gives the same guid for that new key');
is(key_in($rb, 'svc:moved'), $new_id, '... the one Redis B holds');
is(key_in($ra, 'svc:moved'), '', '... and Redis A never saw the key');

# Only the password changes: the old backend's connection (authenticated with
# the old one) is replaced.  Redis keeps clients authenticated when
# requirepass changes, so only a new connection proves it.
sub clients
{
	my $r = shift;
	return [ sort map { /\bid=(\d+)/ ? $1 : () } grep { !/cmd=client\|list/ } split /\n/, redis_cli($r, 'CLIENT', 'LIST') ];
}
my $settled = 0;
for (1 .. 600) { (@{ clients($rb) } == 1) and $settled = 1 and last; select(undef, undef, undef, 0.05) }
ok($settled, 'Redis B serves one client: the old backend');
my ($old_client) = @{ clients($rb) };
redis_cli($rb, 'CONFIG', 'SET', 'requirepass', 'two');
$rb->{password} = 'two';
set_guid_redis($node, "two\@127.0.0.1:$rb->{port}", $old);
is(call($old, "SELECT guid_next('svc', 'moved')"), $new_id, 'after a password change the old backend still gets the guid');
my $now = clients($rb);
is(scalar(@$now), 1, '... over one connection');
isnt($now->[0], $old_client, '... a new one, made with the new password');

# The password from a file only the server's OS user may read, not from the
# setting that pg_read_all_settings members can read.
my $pwfile = PostgreSQL::Test::Utils::tempdir() . '/redis.password';
PostgreSQL::Test::Utils::append_to_file($pwfile, "two\n");
chmod(0600, $pwfile) or die "chmod: $!";
$node->safe_psql('postgres', "ALTER SYSTEM SET guid.redis_password_file = '$pwfile'");
set_guid_redis($node, "127.0.0.1:$rb->{port}", $old);
is(call($old, "SELECT guid_next('svc', 'moved')"), $new_id,
	'the password from guid.redis_password_file (and none in guid.redis): the same guid');
chmod(0644, $pwfile) or die "chmod: $!";
$node->safe_psql('postgres', "ALTER SYSTEM SET guid.redis_password_file = '$pwfile.x'");
PostgreSQL::Test::Utils::append_to_file("$pwfile.x", "two\n");
chmod(0644, "$pwfile.x") or die "chmod: $!";
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $seen_file = 0;
for (1 .. 600)
{
	last if $seen_file = $old->query_safe("SELECT current_setting('guid.redis_password_file') = '$pwfile.x'") eq 't';
	select(undef, undef, undef, 0.05);
}
ok($seen_file, 'the old backend sees the new guid.redis_password_file');
$old->query("SELECT guid_next('svc', 'moved')");
like($old->{stderr}, qr/guid\.redis_password_file ".*" has group or world access/,
	'a password file others may read is refused');
$old->{stderr} = '';
$node->safe_psql('postgres', 'ALTER SYSTEM RESET guid.redis_password_file');

set_guid_redis($node, '', $old);
$old->query("SELECT guid_next('svc', 'moved')");
like($old->{stderr}, qr/guid\.redis is not set/, 'guid.redis emptied by a reload: the old backend stops using Redis');
$old->{stderr} = '';
$old->quit;

# --- statement_timeout during the connect wait --------------------------------------
redis_cli($rc, 'CONFIG', 'SET', 'requirepass', 'pw');
$rc->{password} = 'pw';
set_guid_redis($node, "pw\@127.0.0.1:$rc->{port}");
my $s = $node->background_psql('postgres', on_error_stop => 0);

kill 'STOP', redis_pid($rc);
my @fillers = map {
	IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $rc->{port}, Timeout => 10)
	  or die "filler connection: $!"
} 1 .. 2;
my $full = 0;
for (1 .. 600) { ((accept_queue($rc->{port}) // 0) == 2) and $full = 1 and last; select(undef, undef, undef, 0.05) }
ok($full, 'the frozen Redis C has its accept queue full');

$s->query("SET statement_timeout = '300ms'; SELECT guid_next('svc', 'cut_connect')");
like($s->{stderr}, qr/canceling statement due to statement timeout/, 'statement_timeout interrupts a call waiting to connect');
$s->{stderr} = '';
kill 'CONT', redis_pid($rc);
close $_ for @fillers;
my $after = $s->query("RESET statement_timeout; SELECT guid_next('svc', 'after_connect')");
is($s->{stderr}, '', 'the next call on that backend raises no error (no NOAUTH)');
$s->{stderr} = '';
like($after, qr/^\d+$/, '... and returns a guid');
is(key_in($rc, 'svc:after_connect'), $after, '... the one Redis C holds');

# --- statement_timeout during a round trip ------------------------------------------
$s->quit;
$s = $node->background_psql('postgres', on_error_stop => 0);
my $before = call($s, "SELECT guid_next('svc', 'before_freeze')");
like($before, qr/^\d+$/, 'a new backend uses Redis C');
kill 'STOP', redis_pid($rc);
$s->query("SET statement_timeout = '300ms'; SELECT guid_next('svc', 'cut_roundtrip')");
like($s->{stderr}, qr/canceling statement due to statement timeout/, 'statement_timeout interrupts a call waiting for Redis');
$s->{stderr} = '';
kill 'CONT', redis_pid($rc);
my $closed = 0;
for (1 .. 600) { (@{ clients($rc) } == 0) and $closed = 1 and last; select(undef, undef, undef, 0.05) }
ok($closed, '... and its connection is closed at once, not at the next call');
$after = $s->query("RESET statement_timeout; SELECT guid_next('svc', 'after_roundtrip')");
is($s->{stderr}, '', 'the next call on that backend raises no error');
$s->{stderr} = '';
is(key_in($rc, 'svc:after_roundtrip'), $after, '... and settles its key with Redis C');
is(call($s, "SELECT guid_next('svc', 'before_freeze')"), $before, '... a known key keeps its guid');

# --- Host names --------------------------------------------------------------------------
$s->quit;
set_guid_redis($node, "localhost:$ra->{port}");
$s = $node->background_psql('postgres', on_error_stop => 0);
is(call($s, "SELECT guid_next('svc', 'warm')"), key_in($ra, 'svc:warm'), 'guid.redis = localhost:port reaches Redis A');

set_guid_redis($node, "no-such-host.invalid:$ra->{port}", $s);
$s->query("SELECT guid_next('svc', 'warm')");
like($s->{stderr}, qr/could not resolve Redis host "no-such-host\.invalid"/, 'a name that does not resolve is a clear error');
$s->{stderr} = '';

# A lookup that hangs: statement_timeout interrupts it.  The calling backend
# then waits on an advisory lock the test holds, so that the test can see
# that the lookup was (and still is) hanging in glibc's helper thread.
sub release_lookups
{
	# A writer lets every lookup blocked in opening the FIFO go on (to EOF);
	# an empty file in its place lets the ones that look again go on too.
	my $w;
	my $hung = sysopen($w, $fifo, O_WRONLY | O_NONBLOCK);
	PostgreSQL::Test::Utils::append_to_file("$fifo.plain", '');
	rename("$fifo.plain", $fifo) or die "rename: $!";
	close $w if $hung;
	return $hung ? 1 : 0;
}

# arm_lookups(): from now on a lookup hangs until release_lookups().
sub arm_lookups
{
	mkfifo("$fifo.new", 0600) or die "mkfifo: $!";
	rename("$fifo.new", $fifo) or die "rename: $!";
}

# hung_call(@psql_commands): run them, then wait on advisory lock 42.
# Returns (the commands raised an error by themselves, a lookup was hanging
# meanwhile, stderr).
my $holder = $node->background_psql('postgres');
sub hung_call
{
	my @cmds = @_;
	my ($o, $e) = ('', '');
	arm_lookups();
	$holder->query_safe('SELECT pg_advisory_lock(42)');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'),
		  (map { ('-c', $_) } @cmds), '-c', 'RESET statement_timeout', '-c', 'SELECT pg_advisory_lock(42)' ],
		'>', \$o, '2>', \$e);
	my $by_itself = 0;
	for (1 .. 400) { $h->pump_nb; ($e =~ /ERROR/) and $by_itself = 1 and last; select(undef, undef, undef, 0.05) }
	my $was_hung = release_lookups();
	$holder->query_safe('SELECT pg_advisory_unlock(42)');
	$h->finish;
	return ($by_itself, $was_hung, $e);
}

set_guid_redis($node, "pw\@redishost:$rc->{port}", $s);
my ($by_itself, $was_hung, $hung_err) =
  hung_call("SET statement_timeout = '300ms'", "SELECT guid_next('svc', 'hung')");
ok($was_hung, 'the lookup of "redishost" was hanging in the resolver');
ok($by_itself, 'statement_timeout ends a call whose host name lookup hangs');
like($hung_err, qr/canceling statement due to statement timeout/, '... with the statement timeout error');

# guid.redis_timeout bounds it too.
$node->safe_psql('postgres', "ALTER SYSTEM SET guid.redis_timeout = '500ms'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->poll_query_until('postgres', "SELECT current_setting('guid.redis_timeout') = '500ms'") or die 'reload';
($by_itself, $was_hung, $hung_err) = hung_call("SELECT guid_next('svc', 'hung')");
ok($by_itself && $was_hung, 'guid.redis_timeout ends a call whose host name lookup hangs');
like($hung_err, qr/could not resolve Redis host "redishost": timed out after 500 ms/, '... with a clear error');
$holder->quit;

# The session whose lookup failed goes on with an address.
set_guid_redis($node, "pw\@127.0.0.1:$rc->{port}", $s);
is(call($s, "SELECT guid_next('svc', 'after_connect')"), key_in($rc, 'svc:after_connect'),
	'a backend goes on after a failed lookup');
$s->quit;

$node->stop;
redis_stop($_) for ($ra, $rb, $rc);
done_testing();
