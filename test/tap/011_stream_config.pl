# Bad settings and the gap rule: unreachable brokers and a bad librdkafka
# property (or a malformed list) are clear errors in guid.status and the log
# without a crash loop; a slot
# found ahead of the Kafka checkpoint stops the publisher loudly (state
# "gap") until the operator drops the slot.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t011_$$";
my $node = guid_node('config', node_id => 23, conf => kafka_conf($brokers, $topic));
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start');
$node->safe_psql('postgres', "SELECT guid_next('cfg') FROM generate_series(1, 10)");
my $published = kafka_guids(wait_published($node, $brokers, $topic));
is(scalar @$published, 10, 'ten rows published');

# --- No slot yet (Kafka never reached, so the publisher made none) -------------------------
my $noslot = guid_node('noslot', node_id => 25,
	conf => kafka_conf('127.0.0.1:' . PostgreSQL::Test::Cluster::get_free_port(), "t011n_$$"));
my ($ret, $nso, $nse) = $noslot->psql('postgres', "SELECT guid_next('no_slot')");
like($nse, qr/replication slot "guid_audit" does not exist yet/,
	'with no slot, guid_next(service) is an error (a row would never reach Kafka)');
is($noslot->safe_psql('postgres', 'SELECT count(*) FROM guid.audit'), 0, 'and writes nothing');
is($noslot->safe_psql('postgres', 'SELECT guid_next() IS NOT NULL'), 't', 'plain guid_next() works');
$noslot->stop;

# --- Audit rows only where they are streamed from ---------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE elsewhere');
$node->safe_psql('elsewhere', 'CREATE EXTENSION guid');
my ($r, $o, $e) = $node->psql('elsewhere', "SELECT guid_next('cfg')");
like($e, qr/guid.audit rows are streamed from database "postgres" only/,
	'guid_next(service) in another database than guid.database is an error');
is($node->safe_psql('elsewhere', 'SELECT count(*) FROM guid.audit'), 0, 'and writes nothing');

# --- Unreachable brokers ------------------------------------------------------------------
my $dead = PostgreSQL::Test::Cluster::get_free_port();
$node->stop;
$node->append_conf('postgresql.conf', "guid.kafka_brokers = '127.0.0.1:$dead'\n");
$node->start;
ok($node->poll_query_until('postgres',
		"SELECT publisher_error ~ '127.0.0.1:$dead' FROM guid.status"),
	'unreachable brokers: guid.status names them in publisher_error');
my $pid = publisher_pid($node);
$node->safe_psql('postgres', "SELECT guid_next('cfg') FROM generate_series(1, 5)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM guid.audit'), 15, 'guid_next(service) still works');
sleep 3;
is(publisher_pid($node), $pid, 'the publisher keeps running (no crash loop)');
is($node->safe_psql('postgres', 'SELECT slot_lag_bytes > 0 AND publish_lag_seconds > 0 FROM guid.status'), 't',
	'the lag is visible');
ok($node->log_contains("waiting for Kafka at 127.0.0.1:$dead"), 'the log says what it waits for');

# --- A slot ahead of the checkpoint is a gap -----------------------------------------------------
$node->safe_psql('postgres', "SELECT pg_replication_slot_advance('guid_audit', pg_current_wal_lsn())");
$node->stop;
$node->append_conf('postgresql.conf', "guid.kafka_brokers = '$brokers'\n");
$node->start;
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'gap' FROM guid.status"),
	'slot confirmed past the checkpoint: the publisher stops in state gap');
like($node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'),
	qr/gap: audit rows may be missing from Kafka: the slot is confirmed to .* but Kafka holds only up to/,
	'guid.status says why');
ok($node->log_contains('WARNING:  guid publisher: gap'), 'the log says so at WARNING');
sleep 2;
is_deeply(kafka_guids(kafka_read($brokers, $topic)), $published, 'nothing was skipped over or sent');

$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('guid_audit')");
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status"),
	'dropping the slot is the way out: the publisher creates it again and streams');
my $fresh = $node->safe_psql('postgres', "SELECT guid_next('after_gap')");
my $seen = 0;
for (1 .. 300)
{
	last if $seen = grep { $_ eq $fresh } @{ kafka_read($brokers, $topic, 1) };
	select(undef, undef, undef, 0.2);
}
ok($seen, 'rows after the new slot are published')
  or diag($node->safe_psql('postgres', 'SELECT * FROM guid.status'));

# --- A property librdkafka does not know -------------------------------------------------------
$node->stop;
$node->append_conf('postgresql.conf', "guid.kafka_properties = 'linger.ms=1; no.such.property=1'\n");
$node->start;
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'error' FROM guid.status"),
	'an unknown librdkafka property: state error');
like($node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'),
	qr/No such configuration property: "no.such.property"/, 'guid.status names the property');
$pid = publisher_pid($node);
sleep 3;
is(publisher_pid($node), $pid, 'no crash loop');
ok($node->log_contains('bad Kafka settings'), 'the log has it');

# --- A malformed list -------------------------------------------------------------------------
$node->stop;
$node->append_conf('postgresql.conf', "guid.kafka_properties = 'linger.ms'\n");
$node->start;
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'error' FROM guid.status"),
	'guid.kafka_properties that is not name=value: state error');
like($node->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'),
	qr/"linger.ms" is not name=value/, 'and guid.status says why');
is($node->safe_psql('postgres', "SELECT guid_next('still') IS NOT NULL"), 't', 'IDs are still issued');

# --- Credentials in a file, not in a setting ------------------------------------------------
# guid.kafka_properties_file: one name=value a line, '#' comments; readable
# only by the server's OS user.  Each case shows the file was read.
my $secrets = PostgreSQL::Test::Utils::tempdir() . '/kafka.properties';
sub props_file
{
	my ($content, $mode) = @_;
	unlink($secrets);
	PostgreSQL::Test::Utils::append_to_file($secrets, $content);
	chmod($mode, $secrets) or die "chmod: $!";
}
props_file("# SASL would go here\nlinger.ms=1\nno.such.property=2\n", 0600);
$node->stop;
$node->append_conf('postgresql.conf',
	"guid.kafka_properties = ''\nguid.kafka_properties_file = '$secrets'\n");
$node->start;
ok($node->poll_query_until('postgres',
		q{SELECT publisher_state = 'error' AND publisher_error ~ 'no.such.property' FROM guid.status}),
	'guid.kafka_properties_file is read: its unknown property is the error');
ok(!$node->log_contains('guid.kafka_properties holds credentials'), 'no secret in a setting, no warning');

props_file("linger.ms=1\n", 0644);
$node->restart;
ok($node->poll_query_until('postgres',
		q{SELECT publisher_state = 'error' AND publisher_error ~ 'has group or world access' FROM guid.status}),
	'a properties file others may read is refused');

props_file("# fine\nlinger.ms=2\n\n", 0600);
$node->restart;
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status"),
	'a good properties file: the publisher streams');
my $after_file = $node->safe_psql('postgres', "SELECT guid_next('file')");
my $file_seen = 0;
for (1 .. 300)
{
	last if $file_seen = grep { $_ eq $after_file } @{ kafka_read($brokers, $topic, 1) };
	select(undef, undef, undef, 0.2);
}
ok($file_seen, '... and publishes');

# --- A topic name of 237 characters (the longest that leaves room for the
# suffix of the checkpoint topic of releases before 1.6, which an upgrade
# reads): the name whole, nothing truncated.
my $long = "t011long_$$" . ('x' x (237 - length("t011long_$$")));
$node->stop;
$node->append_conf('postgresql.conf', "guid.kafka_topic = '$long'\n");
$node->start;
# A new topic has no checkpoint for the slot: a gap until the operator drops it.
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'gap' FROM guid.status"),
	'a new topic: the existing slot is a gap, as documented');
$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('guid_audit')");
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status"),
	'a 237-character topic: the publisher streams');
my $long_id = $node->safe_psql('postgres', "SELECT guid_next('long')");
my $long_seen = 0;
for (1 .. 300)
{
	last if $long_seen = grep { $_ eq $long_id } @{ kafka_read($brokers, $long, 1) };
	select(undef, undef, undef, 0.2);
}
ok($long_seen, '... into the topic of that name');
my ($meta, $meta_err) = ('', '');
IPC::Run::run([ 'kcat', '-L', '-b', $brokers ], '>', \$meta, '2>', \$meta_err);
unlike($meta, qr/topic "\Q${long}_checkpoints\E"/, '... and no checkpoint topic is made (since 1.6)');
like(group_checkpoint($brokers, checkpoint_group($node), $long), qr/^[0-9A-F]+\/[0-9A-F]+ tli=/,
	"... the checkpoint is its consumer group's offset for that topic, the name not cut short");
my ($values, $values_err) = ('', '');
IPC::Run::run([ 'kcat', '-C', '-b', $brokers, '-t', $long, '-o', 'beginning', '-e', '-q', '-f', '%s\n' ],
	'>', \$values, '2>', \$values_err);
my @values = split /\n/, $values;
ok(@values && !grep({ !/"guid":/ } @values), '... and no checkpoint record among the audit messages');

# The inline form still works for a release, with a warning.
$node->stop;
$node->append_conf('postgresql.conf', "guid.kafka_properties = 'sasl.password=hunter2; linger.ms=1'\n"
	  . "guid.kafka_properties_file = ''\n");
$node->start;
ok($node->log_contains('WARNING:  guid.kafka_properties holds credentials that every role with pg_read_all_settings can read'),
	'credentials in guid.kafka_properties: a warning at startup');
ok($node->log_contains('HINT:  .*guid.kafka_properties_file'), '... naming the file setting');

$node->stop;
done_testing();
