# Two backends generating 1,000,000 IDs each at the same time: no duplicate
# in the union, and each backend's IDs strictly increasing in the order it
# received them.  The same for guid_uuid().
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = guid_node('concurrent', node_id => 5);
$node->safe_psql('postgres', 'CREATE TABLE a (n int, id guid); CREATE TABLE b (n int, id guid)');

# Both generators wait on an advisory lock this session holds, so that they
# start together.
my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(42)');

my %run;
for my $t (qw(a b))
{
	my ($out, $err) = ('', '');
	$run{$t} = {
		out => \$out,
		err => \$err,
		h => IPC::Run::start(
			[
				'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
				'-d', $node->connstr('postgres'),
				'-c', 'SELECT pg_advisory_lock_shared(42)',
				'-c', "INSERT INTO $t SELECT n, guid_next() FROM generate_series(1, 1000000) n"
			],
			'>', \$out, '2>', \$err)
	};
}

$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
  or die "generators did not reach the gate";
$gate->query_safe('SELECT pg_advisory_unlock(42)');

for my $t (qw(a b))
{
	$run{$t}{h}->finish;
	is($run{$t}{h}->result(0), 0, "backend $t finished") or diag ${ $run{$t}{err} };
}
$gate->quit;

is($node->safe_psql('postgres', 'SELECT count(*) FROM a'), '1000000', 'backend a issued 1,000,000 IDs');
is($node->safe_psql('postgres', 'SELECT count(*) FROM b'), '1000000', 'backend b issued 1,000,000 IDs');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM (SELECT id FROM a UNION ALL SELECT id FROM b) u GROUP BY id HAVING count(*) > 1'),
	'',
	'no duplicate in the union of 2,000,000');
for my $t (qw(a b))
{
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY n) AS prev FROM $t) s WHERE id <= prev"),
		'0',
		"backend $t received strictly increasing IDs");
}
is( $node->safe_psql(
		'postgres',
		'SELECT (SELECT min(id) FROM a) < (SELECT max(id) FROM b) AND (SELECT min(id) FROM b) < (SELECT max(id) FROM a)'),
	't',
	'the two ranges interleave: the backends really generated at the same time');
is($node->safe_psql('postgres', 'SELECT count(*) FROM a WHERE guid_node(id) <> 5'), '0', 'all carry node 5');

# guid_uuid() shares the generator: two backends, 200,000 UUIDs each, at once.
$node->safe_psql('postgres', 'CREATE TABLE ua (n int, u uuid); CREATE TABLE ub (n int, u uuid)');
$gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(43)');
my @u;
for my $t (qw(ua ub))
{
	push @u, IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', 'SELECT pg_advisory_lock_shared(43)',
		  '-c', "INSERT INTO $t SELECT n, guid_uuid() FROM generate_series(1, 200000) n" ]);
}
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") or die;
$gate->query_safe('SELECT pg_advisory_unlock(43)');
$_->finish for @u;
$gate->quit;
is($_->result(0), 0, 'a guid_uuid() generator finished') for @u;
is($node->safe_psql('postgres', 'SELECT (SELECT count(*) FROM ua) + (SELECT count(*) FROM ub)'), '400000',
	'the two backends issued 200,000 UUIDs each');
is( $node->safe_psql('postgres',
		'SELECT count(*) FROM (SELECT u FROM ua UNION ALL SELECT u FROM ub) x GROUP BY u HAVING count(*) > 1'),
	'', 'guid_uuid() from two concurrent backends: no duplicate');
for my $t (qw(ua ub))
{
	is($node->safe_psql('postgres', "SELECT count(*) FROM (SELECT u, lag(u) OVER (ORDER BY n) AS p FROM $t) s WHERE u <= p"),
		'0', "guid_uuid() in backend $t strictly increasing");
}
is( $node->safe_psql('postgres',
		'SELECT (SELECT u FROM ua ORDER BY u LIMIT 1) < (SELECT u FROM ub ORDER BY u DESC LIMIT 1) AND '
		  . '(SELECT u FROM ub ORDER BY u LIMIT 1) < (SELECT u FROM ua ORDER BY u DESC LIMIT 1)'),
	't', 'the UUID ranges interleave');

# Twelve backends on two cores, and no clock step: none may be counted.
# (Counted by backends, a descheduled one's old clock reading looked like
# a step back.)
my $steps = $node->safe_psql('postgres', 'SELECT clock_steps FROM guid.status');
my $script = $node->basedir . '/next.sql';
PostgreSQL::Test::Utils::append_to_file($script, "SELECT guid_next();\n");
my ($bench_out, $bench_err) = ('', '');
local $ENV{PGOPTIONS} = '-c log_statement=none';	# not 240,000 lines of log
IPC::Run::run([ 'pgbench', '-n', '-c', '12', '-j', '2', '-t', '20000', '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$bench_out, '2>', \$bench_err)
  or diag $bench_err;
like($bench_out, qr/number of transactions actually processed: 240000/, '12 backends issued 240,000 IDs');
is($node->safe_psql('postgres', 'SELECT clock_steps FROM guid.status'), $steps,
	'... and no clock step is counted where there was none');

$node->stop;
done_testing();
