# Publish only what the standbys have (guid.publisher_standby_slots).
# Without it, asynchronous replication lets the old primary publish rows
# that never reached the standby: after the failover Kafka holds them and
# the new primary does not, and its publisher counts them as missing.  With
# the standby's slot named, those rows wait (state "waiting for standby")
# and never reach Kafka, so after the failover nothing in Kafka is missing
# from the new primary.  The setting is reloadable, and an unknown slot is
# waited for, not ignored.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
die 'GUID_CONSUMER not set: run this through make test' unless $ENV{GUID_CONSUMER};

sub streaming
{
	my $node = shift;
	$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
	  or BAIL_OUT($node->name . ' publisher did not stream: '
		  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
}

# One failover: rows committed on the primary while its standby is down,
# then the primary killed and the standby promoted.  Returns the new
# primary, the guids committed while the standby was down, and the topic.
sub failover_with_standby_down
{
	my ($name, $node_id, $extra) = @_;
	my $topic = "t027${name}_$$";
	my $primary = guid_node("${name}_primary", node_id => $node_id,
		conf => kafka_conf($brokers, $topic) . ($extra // ''));
	streaming($primary);
	my $standby = stream_standby($primary, "${name}_standby", "${name}_standby");
	$primary->safe_psql('postgres', "SELECT count(guid_next('pay')) FROM generate_series(1, 100)");
	wait_published($primary, $brokers, $topic);
	my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	$standby->poll_query_until('postgres', "SELECT pg_last_wal_replay_lsn() >= '$lsn'")
	  or die 'the standby did not catch up';

	$standby->stop;
	my @lost = split /\n/, $primary->safe_psql('postgres',
		"SELECT guid_next('pay') FROM generate_series(1, 50)");
	return ($primary, $standby, \@lost, $topic);
}

sub promote
{
	my ($primary, $standby) = @_;
	$primary->kill9;
	$standby->start;
	$standby->promote;
	streaming($standby);
	return $standby;
}

# --- Asynchronous, without the setting: Kafka gets rows the standby never had --------------------
{
	my ($primary, $standby, $lost, $topic) = failover_with_standby_down('a', 27);
	my $msgs = wait_published($primary, $brokers, $topic);
	my %in = map { $_->{value}{guid} => 1 } @$msgs;
	is(scalar(grep { $in{$_} } @$lost), 50, 'without the setting: 50 rows the standby lacks are in Kafka');
	my $new = promote($primary, $standby);
	is($new->safe_psql('postgres', 'SELECT count(*) FROM guid.audit WHERE guid = ANY(\'{' . join(',', @$lost) . '}\'::bigint[])'),
		0, 'the promoted standby never got them');
	$new->safe_psql('postgres', "SELECT count(guid_next('pay')) FROM generate_series(1, 20)");
	wait_published($new, $brokers, $topic);
	my $f = failover_figures($new) // { missing => -1, republished => -1, duplicates => -1 };
	diag("without guid.publisher_standby_slots: republished $f->{republished}, possible duplicates $f->{duplicates}, missing $f->{missing}");
	is($f->{missing}, 50, 'the new primary\'s publisher reports the 50 guids in Kafka missing from its guid.audit');
	like(slurp_file($new->logfile), qr/set guid\.publisher_standby_slots to prevent it/, 'and says how to prevent it');
	$new->stop;
}

# --- With the setting: what the standby lacks never reaches Kafka ---------------------------------
{
	my ($primary, $standby, $lost, $topic) =
	  failover_with_standby_down('b', 28, "guid.publisher_standby_slots = 'b_standby'\n");
	ok($primary->poll_query_until('postgres', "SELECT publisher_state = 'waiting for standby' FROM guid.status"),
		'with the setting: the publisher waits for the standby');
	like($primary->safe_psql('postgres', 'SELECT publisher_error FROM guid.status'),
		qr/standby slot "b_standby" to flush/, '... and says which one');
	my %in = map { $_ => 1 } @{ kafka_read($brokers, $topic, 1) };
	is(scalar(grep { $in{$_} } @$lost), 0, 'none of the rows the standby lacks is in Kafka');

	my $new = promote($primary, $standby);
	my $f = failover_figures($new) // { missing => -1, republished => -1, duplicates => -1 };
	diag("with guid.publisher_standby_slots: republished $f->{republished}, possible duplicates $f->{duplicates}, missing $f->{missing}");
	is($f->{missing}, 0, 'after the failover nothing in Kafka is missing from the new primary');

	# The new primary names a standby it does not have: rows wait; a reload
	# that clears the setting publishes them.
	$new->safe_psql('postgres', "ALTER SYSTEM SET guid.publisher_standby_slots = 'nobody'");
	$new->reload;
	$new->poll_query_until('postgres', "SELECT current_setting('guid.publisher_standby_slots') = 'nobody'");
	$new->safe_psql('postgres', "SELECT count(guid_next('pay')) FROM generate_series(1, 10)");
	ok($new->poll_query_until('postgres',
			"SELECT publisher_state = 'waiting for standby' AND publisher_error LIKE '%\"nobody\" % does not exist' FROM guid.status"),
		'a slot that does not exist is waited for, and named');
	# (postgresql.conf, copied from the old primary, still names b_standby)
	$new->safe_psql('postgres', "ALTER SYSTEM SET guid.publisher_standby_slots = ''");
	$new->reload;
	my $msgs = wait_published($new, $brokers, $topic);
	my $audit = $new->safe_psql('postgres', 'SELECT guid FROM guid.audit ORDER BY guid');
	is_deeply(kafka_guids($msgs), [ split /\n/, $audit ],
		'after the reload Kafka holds exactly the new primary\'s guid.audit, each guid once');

	$new->safe_psql('postgres', 'CREATE DATABASE payments');
	my ($sum, $applied) = consume_all($new, 'payments', $brokers, $topic);
	diag("reference consumer: messages $sum->{messages}, applied $sum->{applied}, duplicates $sum->{duplicates}");
	is($applied, $audit, 'the consumer applied exactly the new primary\'s guid.audit');
	$new->stop;
}

done_testing();
