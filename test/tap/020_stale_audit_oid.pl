# audit.c caches guid.audit's OID per backend and forgets it only when a
# relcache invalidation is *processed*.  A backend whose transaction began before another
# session ran DROP EXTENSION guid; CREATE EXTENSION guid (and has taken no lock since) still
# holds the old OID: guid_next(service) then fails with an internal error (XX000, "could not
# open relation with OID n") after it has issued a guid, instead of writing its row into the
# new guid.audit (or failing cleanly before issuing, as GuidAuditBegin promises).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = guid_node('review_stale_oid', node_id => 1);

my $a = $node->background_psql('postgres', on_error_stop => 0);
$a->query_safe("SELECT guid_next('review_pre')");    # resolves and caches the OID
$a->query_safe('BEGIN');
$a->query_safe('SELECT 1');

$node->safe_psql('postgres', 'DROP EXTENSION guid');
$node->safe_psql('postgres', 'CREATE EXTENSION guid');

my ($out, $ret) = $a->query("SELECT guid_next('review_post')");
my $err = $a->{stderr} // '';
unlike($err, qr/could not open relation with OID/,
	'guid_next(service) in a transaction begun before DROP/CREATE EXTENSION: no "could not open relation with OID"');
$a->query('ROLLBACK');
$a->quit;

done_testing();
