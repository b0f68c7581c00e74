# Updating to 1.4 names the indexes and constraints that compare a guid with
# a timestamptz by an operator whose meaning changed (=, <>, <=, >), and
# only those.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = guid_node('upgrade', node_id => 4, start => 1);
$node->safe_psql('postgres', q{
	DROP EXTENSION guid;
	CREATE EXTENSION guid VERSION '1.3';
	CREATE TABLE t (id guid PRIMARY KEY, n int);
	CREATE INDEX t_changed ON t (n) WHERE id <= '2026-01-01 00:00:00.0005+00'::timestamptz;
	CREATE INDEX t_unchanged ON t (n) WHERE id >= '2026-01-01 00:00:00.0005+00'::timestamptz;
	ALTER TABLE t ADD CONSTRAINT t_check CHECK (id > '2025-06-01 00:00:00.0005+00'::timestamptz);
});
my ($ret, $out, $err) = $node->psql('postgres', "ALTER EXTENSION guid UPDATE TO '1.4'");
is($ret, 0, 'the update to 1.4 succeeds');
like($err, qr/WARNING:  guid 1.4: index t_changed compares a guid with a timestamptz/,
	'it names the partial index whose predicate uses <=');
like($err, qr/WARNING:  guid 1.4: constraint t_check on t compares a guid with a timestamptz/,
	'it names the CHECK constraint that uses >');
unlike($err, qr/t_unchanged/, 'it does not name an index that uses only >= (unchanged)');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'guid'}), '1.4', 'at 1.4');

$node->stop;
done_testing();
