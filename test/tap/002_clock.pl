# The wall clock moving under a running server (libfaketime with a timestamp
# file, no restart): a burst above 4096/ms borrows, a step back within
# guid.max_clock_ahead is absorbed without a duplicate or a wait, a larger
# one waits, and past guid.max_clock_wait it is a clear error.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use POSIX qw(strftime ceil);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

my $node = guid_node('clock', node_id => 9, faketime => 1,
	conf => "guid.max_clock_ahead = '20s'\n");
$node->safe_psql('postgres', 'CREATE TABLE issued (s bigserial, id guid)');

sub gen
{
	my $n = shift;
	$node->safe_psql('postgres', "INSERT INTO issued (id) SELECT guid_next() FROM generate_series(1, $n)");
}

sub status
{
	return $node->safe_psql('postgres', "SELECT $_[0] FROM guid.status");
}

sub set_setting
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$value'; SELECT pg_reload_conf()");
	$node->poll_query_until('postgres', "SELECT current_setting('$name') = '$value'")
	  or die "$name did not become $value";
}

# Offset, in whole seconds, that puts the node's clock $ahead_s or a little
# more behind the generator's last issued millisecond.
sub offset_for_ahead
{
	my $ahead_s = shift;
	my $logical = status("extract(epoch FROM logical_time)");
	my $delta = $logical - Time::HiRes::time();
	return '-' . ceil($ahead_s - $delta) . 's';
}

gen(10000);

# A step back within the bound: absorbed, no wait, no duplicate.
my $steps0 = status('clock_steps');
my $waits0 = status('clock_waits');
set_fake_time($node, '-8s');
gen(20000);
# The coordinator samples the clocks (every 100 ms while idle).
ok($node->poll_query_until('postgres', "SELECT clock_steps > $steps0 FROM guid.status"),
	'a step of the clock 8 s back is seen');
is(status('clock_waits'), $waits0, '... and absorbed without waiting (guid.max_clock_ahead is 20 s)');
cmp_ok(status('ahead_ms'), '>=', 7000, '... the generator runs ahead of the stepped clock');
set_fake_time($node, '+0');

# A frozen clock: each millisecond fills to 4096 IDs before the next one is
# borrowed, and they stay unique.
my $borrowed0 = status('borrowed_ms');
set_fake_time($node, strftime('%Y-%m-%d %H:%M:%S', gmtime(time())));
$node->safe_psql('postgres',
	'CREATE TABLE burst AS SELECT n, guid_next() AS id FROM generate_series(1, 100000) n');
$node->safe_psql('postgres', 'INSERT INTO issued (id) SELECT id FROM burst ORDER BY n');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM burst'), '100000', 'a burst of 100,000 on a frozen clock is unique');
is( $node->safe_psql(
		'postgres', q{
	WITH per_ms AS (SELECT guid_timestamp(id) AS t, count(*) AS c FROM burst GROUP BY 1)
	SELECT count(*) FROM per_ms
	WHERE c <> 4096 AND t > (SELECT min(t) FROM per_ms) AND t < (SELECT max(t) FROM per_ms)}),
	'0',
	'every millisecond between the first and the last holds exactly 4096 IDs');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(DISTINCT guid_timestamp(id)) =
		   extract(epoch FROM max(guid_timestamp(id)) - min(guid_timestamp(id))) * 1000 + 1
	FROM burst}),
	't',
	'the borrowed milliseconds are consecutive');
cmp_ok(status('borrowed_ms') - $borrowed0, '>=', 24, '100,000 IDs borrowed at least 24 milliseconds');
set_fake_time($node, '+0');

# A step back past the bound: the caller waits for the clock, then gets an ID.
set_setting('guid.max_clock_wait', '5s');
$waits0 = status('clock_waits');
set_fake_time($node, offset_for_ahead(20.5));
gen(1);
is(status('clock_waits'), $waits0 + 1, 'a step just past guid.max_clock_ahead waits for the clock, then succeeds');

# Far past the bound, with a short wait: a clear error, nothing issued.
set_setting('guid.max_clock_wait', '200ms');
set_fake_time($node, offset_for_ahead(60));
my $count = $node->safe_psql('postgres', 'SELECT count(*) FROM issued');
my ($ret, $out, $err) = $node->psql('postgres', 'INSERT INTO issued (id) SELECT guid_next()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'a step of 60 s back fails after guid.max_clock_wait');
like($err, qr/ERROR:  53400: guid clock is \d+ ms ahead of the system clock/, '... with SQLSTATE 53400 and a clear message');
like($err, qr/HINT:  .*Check the clock \(NTP\), or raise guid.max_clock_ahead/, '... and a hint');
is($node->safe_psql('postgres', 'SELECT count(*) FROM issued'), $count, '... and nothing was written');

# Back to the real clock: generation resumes.
set_fake_time($node, '+0');
set_setting('guid.max_clock_wait', '5s');
gen(1000);

is( $node->safe_psql('postgres',
		'SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY s) AS prev FROM issued) x WHERE id <= prev'),
	'0',
	'over the whole episode every ID is greater than the one before');
is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT id) FROM issued'), '0', 'and none repeats');

$node->stop;
done_testing();
