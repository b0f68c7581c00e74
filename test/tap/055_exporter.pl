# 055_exporter.pl: the query file for prometheus-postgres-exporter (README,
# "HTTP API", Prometheus): Debian's exporter, run here with the file that
# make install put in sharedir/extension, in front of a scratch cluster that
# leases its node id from ZooKeeper and publishes to Kafka, connected as a
# role that is only a member of pg_monitor.  Its /metrics, fetched over
# HTTP, carries every number and time of guid.status with the value
# guid.status reports, the mode as a label; ids_issued and rows_published
# rise as IDs are issued; a role without pg_monitor gets no guid figure.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use Time::HiRes qw(sleep);

# The exporters this test started, stopped even when it dies half way.
my @harnesses;
END
{
	eval { $_->kill_kill(grace => 5) } for @harnesses;
}

my $zk = $ENV{GUID_ZOOKEEPER} or die 'GUID_ZOOKEEPER not set: run this through make test';
my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $node = guid_node('exporter', node_id => undef,
	conf => zk_conf($zk, "t055_$$") . kafka_conf($brokers, "t055_$$"));
wait_for_lease($node);
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start: '
	  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));

# The grants the README names: a login role in pg_monitor, nothing else.
$node->safe_psql('postgres', 'CREATE ROLE guid_monitor LOGIN IN ROLE pg_monitor');
$node->safe_psql('postgres', 'CREATE ROLE not_monitor LOGIN');

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
my $queries = "$sharedir/extension/guid_postgres_exporter.yaml";
ok(-r $queries, "make install put the query file at $queries");

my $dir = PostgreSQL::Test::Utils::tempdir();
my $http = HTTP::Tiny->new(timeout => 30);

# start_exporter($role): Debian's exporter with the query file, connected
# as $role, on a free loopback port; its default metrics stay on, as where
# it already runs.  Returns the URL of its /metrics.
sub start_exporter
{
	my ($role) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	local $ENV{DATA_SOURCE_NAME} = 'host=' . $node->host . ' port=' . $node->port
	  . " user=$role dbname=postgres sslmode=disable";
	my $h = IPC::Run::start(
		[ 'prometheus-postgres-exporter', "--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$queries" ],
		'>', "$dir/exporter-$role.log", '2>&1');
	push @harnesses, $h;
	my $url = "http://127.0.0.1:$port/metrics";
	for (1 .. 1200)
	{
		return ($h, $url) if $http->get($url)->{status} == 200;
		die "the exporter exited: " . slurp_file("$dir/exporter-$role.log") unless $h->pumpable;
		sleep 0.05;
	}
	die "the exporter did not answer: " . slurp_file("$dir/exporter-$role.log");
}

# scrape($url): { name => [ { labels => {..}, value => '...' }, ... ] }
sub scrape
{
	my ($url) = @_;
	my $r = $http->get($url);
	die "GET $url: $r->{status}" unless $r->{status} == 200;
	my %m;
	for my $line (split /\n/, $r->{content})
	{
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $labels, $value) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
		  or die "unparsable line: $line";
		my %l = ($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		push @{ $m{$name} }, { labels => \%l, value => $value };
	}
	return \%m;
}

# value($m, $name): the one sample of $name (undef if absent)
sub value
{
	my ($m, $name) = @_;
	return undef unless $m->{$name};
	die "$name has " . scalar @{ $m->{$name} } . " series" if @{ $m->{$name} } != 1;
	return $m->{$name}[0]{value};
}

# What each metric must equal, as an expression over guid.status: every
# column that is a number or a time (times as Unix seconds, the LSN as
# bytes).  Written out here rather than read from the query file, so that a
# wrong column or conversion in the file shows.
my %expect = (
	guid_node_id => 'node_id',
	guid_ids_issued_total => 'ids_issued',
	guid_logical_time_seconds => 'extract(epoch FROM logical_time)',
	guid_ahead_ms => 'ahead_ms',
	guid_borrowed_ms_total => 'borrowed_ms',
	guid_clock_steps_total => 'clock_steps',
	guid_clock_waits_total => 'clock_waits',
	guid_reserved_until_seconds => 'extract(epoch FROM reserved_until)',
	guid_reservation_writes_total => 'reservation_writes',
	guid_reservation_waits_total => 'reservation_waits',
	guid_reservation_timeline => 'reservation_timeline',
	guid_started_at_seconds => 'extract(epoch FROM started_at)',
	guid_exhausted_at_seconds => 'extract(epoch FROM exhausted_at)',
	guid_session_timeout_ms => 'session_timeout_ms',
	guid_lease_deadline_seconds => 'extract(epoch FROM lease_deadline)',
	guid_publisher_pid => 'publisher_pid',
	guid_rows_published_total => 'rows_published',
	guid_transactions_published_total => 'transactions_published',
	guid_kafka_commits_total => 'kafka_commits',
	guid_last_published_lsn_bytes => "last_published_lsn - '0/0'",
	guid_slot_lag_bytes => 'slot_lag_bytes',
	guid_publish_lag_seconds => 'publish_lag_seconds',
	guid_kafka_commit_ms => 'kafka_commit_ms',
	guid_failover_republished_total => 'publisher_failover_republished',
	guid_duplicates_total => 'publisher_failover_duplicates',
	guid_failover_missing_total => 'publisher_failover_missing',
);
my @names = sort keys %expect;

# the table above covers every column of guid.status but the text ones
my @columns = split /\n/, $node->safe_psql('postgres', q{
	SELECT attname FROM pg_attribute
	WHERE attrelid = 'guid.status'::regclass AND attnum > 0 AND NOT attisdropped
	  AND atttypid <> 'text'::regtype ORDER BY attnum});
my @uncovered = grep { my $c = $_; !grep { $expect{$_} =~ /\b\Q$c\E\b/ } @names } @columns;
is(join(', ', @uncovered), '', 'every column of guid.status that is a number or a time has a metric ('
	  . scalar @columns . ' columns)');

# status(): guid.status as the metrics should show it (NaN for null)
sub status
{
	my $sql = 'SELECT ' . join(', ', map { "coalesce(($expect{$_})::float8::text, 'NaN')" } @names)
	  . ' FROM guid.status';
	my @v = split /\|/, $node->safe_psql('postgres', $sql);
	return { map { $names[$_] => $v[$_] } 0 .. $#names };
}

sub same
{
	my ($a, $b) = @_;
	return $a eq 'NaN' || $b eq 'NaN' ? $a eq $b : $a == $b;
}

# quiet_scrape($url): a scrape taken between two reads of guid.status that
# agree on every figure but the lease deadline (the lease is renewed while
# this runs, the publisher may commit an idle checkpoint): the metrics must
# then show those figures exactly.  Returns (metrics, before, after).
sub quiet_scrape
{
	my ($url) = @_;
	for (1 .. 200)
	{
		my $before = status();
		my $m = scrape($url);
		my $after = status();
		return ($m, $before, $after)
		  unless grep { $_ ne 'guid_lease_deadline_seconds' && !same($before->{$_}, $after->{$_}) } @names;
		sleep 0.1;
	}
	die 'guid.status never kept still for a scrape';
}

my ($exporter, $url) = start_exporter('guid_monitor');

# a few IDs recorded and published first, so that the publisher's figures
# are numbers rather than null
$node->safe_psql('postgres', "SELECT guid_next('exporter') FROM generate_series(1, 5)");
$node->poll_query_until('postgres',
	"SELECT rows_published >= 5 AND publish_lag_seconds = 0 AND last_published_lsn IS NOT NULL AND kafka_commit_ms IS NOT NULL FROM guid.status")
  or die 'not published: ' . $node->safe_psql('postgres', 'SELECT publisher_state, rows_published, publisher_error FROM guid.status');

my ($m, $before, $after) = quiet_scrape($url);
is(value($m, 'pg_up'), 1, 'the exporter, connected as a pg_monitor role: pg_up 1');
is(value($m, 'pg_exporter_last_scrape_error'), 0,
	'... every query succeeded, its default ones and the query file\'s');
is(value($m, 'pg_exporter_user_queries_load_error'), 0, '... the query file loaded');
is(scalar(@{ $m->{guid_mode_info} // [] }), 1, 'guid_mode_info: one series');
is($m->{guid_mode_info}[0]{labels}{mode}, 'leased', '... the mode as its label (leased, from ZooKeeper)');
is($m->{guid_mode_info}[0]{value}, 1, '... value 1');
for my $name (@names)
{
	my $got = value($m, $name);
	if (!defined $got)
	{
		fail("$name is exported");
		next;
	}
	if ($name eq 'guid_lease_deadline_seconds')
	{
		# renewed while the scrape ran: between the two reads (to 10 ms,
		# the deadline is monotonic time shown on the wall clock)
		ok($got ne 'NaN' && $got >= $before->{$name} - 0.01 && $got <= $after->{$name} + 0.01,
			"$name $got: between $before->{$name} and $after->{$name} of guid.status");
		next;
	}
	ok(same($got, $before->{$name}), "$name $got: guid.status says $before->{$name}");
}
like(value($m, 'guid_node_id'), qr/^\d+$/, '... the leased node id is a number');
cmp_ok(value($m, 'guid_rows_published_total'), '>=', 5, '... rows published counted');
cmp_ok(value($m, 'guid_session_timeout_ms'), '>', 0, '... the granted session timeout');
cmp_ok(value($m, 'guid_last_published_lsn_bytes'), '>', 0, '... the checkpoint as bytes');
is(value($m, 'guid_reservation_timeline'), 1, '... the reservation\'s timeline');

# IDs issued: the counter rises by exactly what was issued
my $issued = value($m, 'guid_ids_issued_total');
my $published = value($m, 'guid_rows_published_total');
$node->safe_psql('postgres', 'SELECT guid_next() FROM generate_series(1, 40)');
$node->safe_psql('postgres', "SELECT guid_next('exporter') FROM generate_series(1, 25)");
$node->poll_query_until('postgres', "SELECT rows_published >= $published + 25 FROM guid.status")
  or die 'not published';
($m, $before) = quiet_scrape($url);
is(value($m, 'guid_ids_issued_total'), $issued + 65, "after 65 guid_next() calls guid_ids_issued_total rose by 65 ($issued to "
	  . value($m, 'guid_ids_issued_total') . ')');
is(value($m, 'guid_rows_published_total'), $before->{guid_rows_published_total},
	'... and guid_rows_published_total is what guid.status says once the 25 recorded ones are in Kafka');
cmp_ok(value($m, 'guid_rows_published_total'), '>=', $published + 25, '... 25 more');

# without pg_monitor the exporter runs, but gets no guid figure
my ($plain, $plain_url) = start_exporter('not_monitor');
$m = scrape($plain_url);
is(value($m, 'pg_up'), 1, 'a role without pg_monitor: the exporter connects');
is(value($m, 'pg_exporter_last_scrape_error'), 1, '... but its scrape fails');
is(scalar(grep { /^guid_/ } keys %$m), 0, '... and shows no guid_ metric');
like(slurp_file("$dir/exporter-not_monitor.log"), qr/permission denied for schema guid/,
	'... the exporter logs the missing grant');

# stopped here (and by the END block had anything died before)
for my $h ($plain, $exporter)
{
	$h->signal('TERM');
	$h->finish;
}
ok(!$exporter->pumpable && !$plain->pumpable, 'both exporters stopped');

$node->stop;
done_testing();
