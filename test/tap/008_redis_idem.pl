# Idempotency keys against a real Redis this test owns: the same key gives
# the same ID across backends and clusters, 50 concurrent callers agree on
# one ID, the TTL ends it, bad keys and corrupt values are errors, and a
# Redis that is down or frozen fails only the idempotent calls.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $rdir = "$PostgreSQL::Test::Utils::tmp_check/redis";
my $redis_sh = "$FindBin::RealBin/../services/redis.sh";
system_or_bail($redis_sh, 'start', $rdir, $port);

sub redis
{
	my $out = '';
	IPC::Run::run([ 'redis-cli', '-h', '127.0.0.1', '-p', $port, @_ ], '>', \$out) or die "redis-cli @_ failed";
	chomp $out;
	return $out;
}

sub set_calls
{
	my ($calls) = redis('INFO', 'commandstats') =~ /cmdstat_set:calls=(\d+)/;
	return $calls // 0;
}

my $conf = "guid.redis = '127.0.0.1:$port'\nguid.redis_timeout = '500ms'\nmax_connections = 70\n";
my $a = guid_node('idem_a', node_id => 11, conf => $conf);
my $b = guid_node('idem_b', node_id => 12, conf => $conf);

# --- Same key, same ID ----------------------------------------------------------
my $id = $a->safe_psql('postgres', "SELECT guid_next('payment', 'book_1001')");
like($id, qr/^\d+$/, 'guid_next(service, key) returns a guid');
is($a->safe_psql('postgres', "SELECT guid_next('payment', 'book_1001')"), $id, 'same key from another backend: same ID');
is($b->safe_psql('postgres', "SELECT guid_next('payment', 'book_1001')"), $id, 'same key on another cluster sharing Redis: same ID');
is(redis('GET', 'guid:idem:default:payment:book_1001'), $id, 'Redis holds it under guid:idem:<namespace>:<service>:<key>');
cmp_ok(redis('TTL', 'guid:idem:default:payment:book_1001'), '>', 86000, 'for guid.idempotency_ttl (24 h)');
isnt($a->safe_psql('postgres', "SELECT guid_next('booking', 'book_1001')"), $id, 'another service, same key: another ID');
isnt($a->safe_psql('postgres', "SELECT guid_next('payment', 'book_1002')"), $id, 'another key: another ID');

my $calls = set_calls();
$a->safe_psql('postgres', 'SELECT count(guid_next()) FROM generate_series(1, 10000)');
is(set_calls(), $calls, 'plain guid_next() never talks to Redis');

# --- 50 concurrent callers with one key ----------------------------------------------
my @gates = map { my $g = $_->background_psql('postgres'); $g->query_safe('SELECT pg_advisory_lock(7)'); $g } ($a, $b);
my @runs;
for my $i (1 .. 50)
{
	my $node = $i % 2 ? $a : $b;
	my $out = '';
	push @runs, [ \$out, IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', 'SELECT pg_advisory_lock_shared(7)',
		  '-c', "SELECT guid_next('payment', 'race')" ], '>', \$out) ];
}
for my $node ($a, $b)
{
	$node->poll_query_until('postgres',
		"SELECT count(*) = 25 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
	  or die 'callers did not reach the gate';
}
$_->query_safe('SELECT pg_advisory_unlock(7)') for @gates;
my %seen;
for my $r (@runs)
{
	$r->[1]->finish;
	my @lines = split /\n/, ${ $r->[0] };
	$seen{ $lines[-1] // 'none' }++;
}
$_->quit for @gates;
is(scalar(keys %seen), 1, '50 concurrent callers on two clusters with one key get one ID');
is((keys %seen)[0], redis('GET', 'guid:idem:default:payment:race'), '... the one Redis holds');

# --- TTL --------------------------------------------------------------------------------
my $first = $a->safe_psql('postgres', "SET guid.idempotency_ttl = '1s'; SELECT guid_next('ttl', 'k')");
is($a->safe_psql('postgres', "SELECT guid_next('ttl', 'k')"), $first, 'within its TTL the key keeps its ID');
my $gone = 0;
for (1 .. 100) { if (redis('EXISTS', 'guid:idem:default:ttl:k') eq '0') { $gone = 1; last } select(undef, undef, undef, 0.05) }
ok($gone, 'Redis expires the key after guid.idempotency_ttl');
my $second = $a->safe_psql('postgres', "SELECT guid_next('ttl', 'k')");
isnt($second, $first, 'after the TTL the same key gets a new ID');
is($a->safe_psql('postgres', "SELECT '$second'::guid > '$first'::guid"), 't', '... a later one');

# --- Batch form ------------------------------------------------------------------------------
my $batch = $a->safe_psql('postgres', "SELECT guid_next('import', ARRAY['k1', 'k2', 'k3'])");
like($batch, qr/^\{\d+,\d+,\d+\}$/, 'the batch form returns one ID per key');
is($a->safe_psql('postgres', "SELECT guid_next('import', ARRAY['k1', 'k2', 'k3'])"), $batch, 'the same keys again: the same IDs');
my ($k3) = $batch =~ /,(\d+)\}$/;
my $again = $b->safe_psql('postgres', "SELECT guid_next('import', ARRAY['k3', 'k4', 'k3'])");
like($again, qr/^\{$k3,\d+,$k3\}$/, 'order is kept; a known key (twice) keeps its ID on another cluster');
is($a->safe_psql('postgres', "SELECT guid_next('import', 'k2') = (guid_next('import', ARRAY['k2']))[1]"), 't',
	'single and batch forms agree');
is($a->safe_psql('postgres', "SELECT cardinality(guid_next('import', ARRAY[]::text[]))"), '0', 'an empty batch is empty');
is($a->safe_psql('postgres',
		"SELECT count(DISTINCT x) FROM unnest(guid_next('big', (SELECT array_agg('k' || g) FROM generate_series(1, 300000) g))) x"),
	'300000', 'a batch of 300,000 keys, longer than guid.redis_timeout (500 ms) in all, completes while Redis makes progress');

# --- Bad input -------------------------------------------------------------------------------
my $keys_before = redis('DBSIZE');
my @bad = (
	[ "guid_next('', 'k')", '22023', 'invalid service name ""', 'an empty service' ],
	[ "guid_next(repeat('s', 51), 'k')", '22023', 'invalid service name', 'a service of 51 characters' ],
	[ "guid_next(E'pay\\nment', 'k')", '22023', 'invalid service name', 'a control character in the service' ],
	[ "guid_next('pay:ment', 'k')", '22023', 'invalid service name "pay:ment"', 'a colon in the service' ],
	[ "guid_next('payment', '')", '22023', 'invalid idempotency key of 0 bytes', 'an empty key' ],
	[ "guid_next('payment', repeat('k', 256))", '22023', 'invalid idempotency key of 256 bytes', 'a key of 256 bytes' ],
	[ "guid_next('payment', NULL::text)", '22004', 'idempotency key must not be null', 'a null key' ],
	[ "guid_next(NULL, 'k')", '22004', 'service must not be null', 'a null service' ],
	[ "guid_next('payment', ARRAY['a', NULL])", '22004', 'idempotency key 2 must not be null', 'a null key in a batch' ],
);
for my $t (@bad)
{
	my ($sql, $code, $msg, $what) = @$t;
	my ($ret, $out, $err) = $a->psql('postgres', "SELECT $sql", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  $code: \Q$msg\E/, "$what is refused with $code");
}
is($a->safe_psql('postgres', "SELECT guid_next('s', repeat('k', 255)) IS NOT NULL"), 't', 'a key of 255 bytes is fine');
is(redis('DBSIZE'), $keys_before + 1, 'refused calls wrote nothing to Redis');

for my $planted ('not-a-guid', '-5', '99999999999999999999', '')
{
	redis('SET', 'guid:idem:default:payment:planted', $planted);
	my ($ret, $out, $err) = $a->psql('postgres', "SELECT guid_next('payment', 'planted')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  XX001: Redis key "guid:idem:default:payment:planted" does not hold a guid/,
		"a planted value \"$planted\" is an error, not an ID");
}
# A key of another Redis type is the same corrupt-value case, not an outage.
redis('DEL', 'guid:idem:default:payment:listed');
redis('LPUSH', 'guid:idem:default:payment:listed', 'x');
{
	my ($ret, $out, $err) = $a->psql('postgres', "SELECT guid_next('payment', 'listed')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  XX001: an idempotency key in Redis does not hold a guid/,
		'a key holding a list (WRONGTYPE) is XX001, not a connection error');
	like($err, qr/DETAIL:  .*WRONGTYPE/, '... and says what Redis answered');
}

# --- A unix socket, and a password ---------------------------------------------------------------
sub set_redis
{
	my ($node, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET guid.redis = '$value'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('postgres', "SELECT current_setting('guid.redis') = '$value'")
	  or die "guid.redis did not become $value";
}
set_redis($a, "$rdir/redis.sock");
is($a->safe_psql('postgres', "SELECT guid_next('payment', 'book_1001')"), $id,
	'guid.redis as a unix socket path reaches the same Redis');

redis('CONFIG', 'SET', 'requirepass', 'sekret');
my $redis_pw = sub { my $o = ''; IPC::Run::run([ 'redis-cli', '-h', '127.0.0.1', '-p', $port, '-a', 'sekret', '--no-auth-warning', @_ ], '>', \$o); chomp $o; $o };
set_redis($a, "sekret\@127.0.0.1:$port");
is($a->safe_psql('postgres', "SELECT guid_next('payment', 'book_1001')"), $id, 'guid.redis with a password authenticates');
set_redis($a, "wrong\@127.0.0.1:$port");
my ($pw_ret, $pw_out, $pw_err) = $a->psql('postgres', "SELECT guid_next('payment', 'book_1001')");
like($pw_err, qr/Redis at 127\.0\.0\.1:$port refused the password \(guid\.redis_password_file or guid\.redis\)/,
	'a wrong password is a clear error');
($pw_ret, $pw_out, $pw_err) = $a->psql('postgres', "SELECT guid_next('payment', 'book_1001')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($pw_err, qr/ERROR:  55000: could not settle idempotency key with Redis/, '... a configuration error (55000)');
unlike($pw_err, qr/wrong/, '... that does not show the password');
$redis_pw->('CONFIG', 'SET', 'requirepass', '');
set_redis($a, '');
{
	my ($ret, $out, $err) = $a->psql('postgres', "SELECT guid_next('payment', 'book_1001')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  55000: could not settle idempotency key with Redis/, 'guid.redis not set: 55000');
	like($err, qr/DETAIL:  guid\.redis is not set/, '... saying so');
}
set_redis($a, "127.0.0.1:$port");

# --- Redis down, frozen, back -----------------------------------------------------------------
$a->safe_psql('postgres', 'CREATE TABLE t (id guid)');
my $s = $a->background_psql('postgres', on_error_stop => 0);
is($s->query("SELECT guid_next('payment', 'live') IS NOT NULL"), 't', 'a session uses Redis');

system_or_bail($redis_sh, 'stop', $rdir);
$s->query('BEGIN; INSERT INTO t SELECT guid_next()');
$s->query("SELECT guid_next('payment', 'while_down')");
like($s->{stderr}, qr/could not settle idempotency key with Redis/, 'Redis down: the idempotent call fails clearly');
$s->{stderr} = '';
$s->query('COMMIT');
is($a->safe_psql('postgres', 'SELECT count(*) FROM t'), '0', '... and its transaction wrote nothing');
my ($ret, $out, $err) = $a->psql('postgres', "SELECT guid_next('payment', 'while_down')", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  53000: could not settle idempotency key with Redis/,
	'... with SQLSTATE 53000 (try again later), not class 08 (which poolers read as a dead connection)');
like($err, qr/DETAIL:  .*Redis at 127\.0\.0\.1:$port/, '... naming the Redis address');
like($err, qr/HINT:  Check that Redis is reachable at guid\.redis/, '... and the setting');
is($a->safe_psql('postgres', 'SELECT guid_next() IS NOT NULL'), 't', 'plain guid_next() still works');

system_or_bail($redis_sh, 'start', $rdir, $port);
is($s->query("SELECT guid_next('payment', 'back') IS NOT NULL"), 't', 'Redis back: the same session works again');
is($s->{stderr}, '', '... without a leftover error');

my $pid = slurp_file("$rdir/redis.pid");
chomp $pid;
kill 'STOP', $pid;
($ret, $out, $err) = $a->psql('postgres', "SELECT guid_next('payment', 'frozen')");
like($err, qr/did not answer within guid\.redis_timeout \(500 ms\)/, 'a frozen Redis is a timeout error, not a hang');
kill 'CONT', $pid;
is($s->query("SELECT guid_next('payment', 'thawed') IS NOT NULL"), 't', 'and works once it answers again');
$s->quit;

$_->stop for ($a, $b);
system_or_bail($redis_sh, 'stop', $rdir);
done_testing();
