# A reservation the server has not put in its WAL reaches its standbys as
# soon as the server is up, before it issues anything.  guid 1.4 wrote no
# reservation records: after an upgrade to 1.5 the primary's guid.reservation
# (here a 1.4-format file written by hand, a minute ahead, as if IDs had
# been issued that far) is covered by no record until the first new one.  A
# standby promoted in between must still start above it.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf = "guid.node_id = 35\nguid.max_clock_ahead = '120s'\n";
my $primary = guid_primary('primary', conf => $conf);
my $standby = guid_standby($primary, 'standby');
$primary->stop;

my $ahead = int(time() * 1000) + 60000 - 1735689600000;
open(my $fh, '>', $primary->data_dir . '/guid.reservation') or die $!;
print $fh "guid reservation 1\nnode_id 35\nreserved_ms $ahead\n";
close $fh;
$primary->start;

# The standby learns the reservation without a single ID issued.
my $seen = 0;
for (1 .. 300)
{
	$seen = $standby->safe_psql('postgres',
		"SELECT (extract(epoch FROM reserved_until) * 1000)::bigint - 1735689600000 >= $ahead FROM guid.status") eq 't';
	last if $seen;
	select(undef, undef, undef, 0.1);
}
ok($seen, 'the standby replays the reservation the primary started from, before the primary issues anything');
is($primary->safe_psql('postgres', 'SELECT ids_issued FROM guid.status'), '0', 'the primary issued nothing');

$primary->stop;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'no promotion';
cmp_ok($standby->safe_psql('postgres', 'SELECT guid_next()::bigint >> 22'), '>', $ahead,
	'the promoted standby starts above it');

done_testing();
