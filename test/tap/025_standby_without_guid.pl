# A standby whose shared_preload_libraries lacks guid meets guid's WAL: what
# README.md ("High availability") says happens, happens.  Its recovery stops
# at the first reservation record ("resource manager with ID 187 not
# registered", with a hint), and the standby shuts down: it never goes on
# without the reservation.  With guid added to shared_preload_libraries it
# starts again, replays the record and catches up.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = guid_primary('primary', conf => "guid.node_id = 25\n");
$primary->safe_psql('postgres', 'CREATE TABLE t (id guid PRIMARY KEY DEFAULT guid_next())');
my $standby = guid_standby($primary, 'standby', conf => "shared_preload_libraries = ''\n", start => 0);
my $log_offset = 0;
# It may stop before it is consistent (a record in the backup's own WAL)
# or later: either way at the first guid record.
$standby->start(fail_ok => 1);
$primary->safe_psql('postgres', 'INSERT INTO t SELECT guid_next() FROM generate_series(1, 1000)');

my $stopped = 0;
for (1 .. 600)
{
	if (!-f $standby->data_dir . '/postmaster.pid')
	{
		$stopped = 1;
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($stopped, 'the standby stops when it meets a guid record');
ok($standby->log_contains('FATAL:  resource manager with ID 187 not registered', $log_offset),
	'its log says: resource manager with ID 187 not registered');
ok($standby->log_contains('HINT:  Include the extension module that implements this resource manager in shared_preload_libraries', $log_offset),
	'... with the hint to preload the extension');
ok($standby->log_contains('shutting down due to startup process failure', $log_offset),
	'... and the server shuts down rather than go on without the reservation');
$standby->{_pid} = undef;

# With guid preloaded it resumes and catches up.
$standby->append_conf('postgresql.conf', "shared_preload_libraries = 'guid'\n");
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT count(*) FROM t'), '1000', 'with guid preloaded the standby catches up');
is($standby->safe_psql('postgres', 'SELECT mode FROM guid.status'), 'standby', '... as a standby');
my $q = q{SELECT reserved_until >= (SELECT max(guid_timestamp(id)) FROM t) FROM guid.status};
is($standby->safe_psql('postgres', $q), 't', '... whose reservation covers every replicated ID');

$_->stop for ($standby, $primary);
done_testing();
