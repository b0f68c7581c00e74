# Two backends generating 1,000,000 IDs each at the same time: no duplicate
# in the union, and each backend's IDs strictly increasing in the order it
# received them.
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

$node->stop;
done_testing();
