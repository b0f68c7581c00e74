# 056_gateway_published.pl: "published" in guid_gateway's GET /guid/status
# (README, "HTTP API"), against the real Kafka of the test services.  An ID
# recorded while the publisher cannot commit reads false while the topic
# lacks it, and true once the topic holds it; an ID of a transaction still
# open is not recorded yet; one never recorded, or recorded by a cluster
# without a publisher, reads null; one recorded before the publisher was
# configured (its slot created) never reads true; and a random property: IDs of several
# services recorded while the publisher is paused and resumed at random,
# each status true only if the topic (read after it) holds the ID, and all
# of them true in the end.
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
use JSON::PP;
use Time::HiRes qw(time sleep);

my @harnesses;
END { eval { $_->kill_kill(grace => 5) } for @harnesses; }

my $brokers = $ENV{GUID_KAFKA} or die 'GUID_KAFKA not set: run this through make test';
my $topic = "t056_$$";
my $node = guid_node('pub', node_id => 56, conf => kafka_conf($brokers, $topic));
$node->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start: '
	  . $node->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
my $plain = guid_node('nopub', node_id => 57);
my $dir = PostgreSQL::Test::Utils::tempdir();

my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 60);

# start_gateway($pg): a gateway (auth off) in front of $pg; returns its port
sub start_gateway
{
	my ($pg) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $conf = "$dir/gw_$port.conf";
	PostgreSQL::Test::Utils::append_to_file($conf, <<EOF);
listen_address = 127.0.0.1
port = $port
conninfo = host=@{[ $pg->host ]} port=@{[ $pg->port ]} dbname=postgres
pool_size = 2
threads = 2
auth = off
rate_limit = 100000000
rate_burst = 100000000
EOF
	push @harnesses, IPC::Run::start([ 'guid_gateway', '--config', $conf ], '>', "$dir/gw_$port.log", '2>&1');
	for (1 .. 600)
	{
		my $r = $http->get("http://127.0.0.1:$port/healthz");
		return $port if $r->{status} == 200;
		sleep 0.05;
	}
	die 'guid_gateway did not start: ' . slurp_file("$dir/gw_$port.log");
}

my $gw = start_gateway($node);
my $gw_plain = start_gateway($plain);

sub call
{
	my ($port, $method, $path) = @_;
	my $r = $http->request($method, "http://127.0.0.1:$port$path");
	$r->{json} = eval { decode_json($r->{content}) };
	return $r;
}

# status($id, $port): the JSON of GET /guid/status/$id (dies on anything
# but 200; a 503 is asked again for a while: after a restart of the
# cluster each pooled connection fails once before it reconnects)
sub status
{
	my ($id, $port) = @_;
	my $r;
	for (1 .. 300)
	{
		$r = call($port // $gw, 'GET', "/guid/status/$id");
		return $r->{json} if $r->{status} == 200;
		last unless $r->{status} == 503;
		sleep 0.1;
	}
	die "status $id: $r->{status} $r->{content}";
}

# published($json): 'true', 'false' or 'null'
sub published
{
	my $v = $_[0]{published};
	return 'null' unless defined $v;
	return $v ? 'true' : 'false';
}

sub generate
{
	my ($service, $count) = @_;
	my $r = call($gw, 'POST', "/guid/generate?service=$service&count=$count");
	die "generate: $r->{status} $r->{content}" unless $r->{status} == 200;
	return map { $_->{guid} } ($count > 1 ? @{ $r->{json} } : ($r->{json}));
}

sub in_topic { my %h = map { $_ => 1 } @{ kafka_read($brokers, $topic, 1) }; return \%h; }

# poll_status($id, $want): poll until published is $want (up to 180 s)
sub poll_status { return poll_status_for(@_, 180); }

sub poll_status_for
{
	my ($id, $want, $timeout) = @_;
	my $deadline = time + $timeout;
	my $p;
	while (time < $deadline)
	{
		$p = published(status($id));
		return $p if $p eq $want;
		sleep 0.2;
	}
	return $p;
}

sub pause_publisher
{
	my ($step) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET guid.publisher_test_pause = '$step'; SELECT pg_reload_conf()");
}

# --- null: not recorded, or no publisher ------------------------------------------
my ($unrecorded) = split /\n/, $node->safe_psql('postgres', 'SELECT guid_next()::int8');
my $s = status($unrecorded);
is($s->{recorded} ? 'true' : 'false', 'false', 'an ID not recorded in guid.audit: recorded false');
is(published($s), 'null', '... published null');
my ($elsewhere) = $plain->safe_psql('postgres', "SELECT guid_next('svc')::int8");
$s = status($elsewhere, $gw_plain);
ok($s->{recorded}, 'an ID recorded by a cluster without a publisher: recorded true');
is(published($s), 'null', '... published null (no publisher configured)');

# --- recorded while the publisher cannot commit: false, then true -----------------
# Rows older than the gateway's second sample stay unproven (false): it
# cannot tell whether they committed before the publisher's slot existed.
# So the first ID that reads true may take a few tries.
my ($first, $first_true);
for (1 .. 10)
{
	($first) = generate('payments', 1);
	$first_true = poll_status_for($first, 'true', 15);
	last if $first_true eq 'true';
}
is($first_true, 'true', 'an ID recorded while the publisher runs turns published');
ok(in_topic()->{$first}, '... and the topic holds it');

pause_publisher('before_commit');
my ($held) = generate('payments', 1);
ok($node->poll_query_until('postgres', "SELECT publisher_state = 'paused before_commit' FROM guid.status"),
	'publisher paused before its Kafka commit, holding the new row');
# several sample periods pass: samples are taken, none can be below P
my $t0 = time;
my @seen;
while (time < $t0 + 4)
{
	push @seen, published(status($held));
	sleep 0.25;
}
is(join(',', grep { $_ ne 'false' } @seen), '', 'recorded while the publisher is held: published false, throughout (' . scalar(@seen) . ' calls over 4 s)');
ok(!in_topic()->{$held}, '... and the topic indeed lacks it');
$s = status($held);
ok($s->{recorded} && $s->{service} eq 'payments', '... though recorded, with its service');

pause_publisher('');
my $t_resume = time;
is(poll_status($held, 'true'), 'true', 'publisher resumed: published turns true');
diag(sprintf('published true %.1f s after the publisher was resumed', time - $t_resume));
ok(in_topic()->{$held}, '... and the topic holds it');

# --- a transaction still open -----------------------------------------------------
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
my $pending = $open->query_safe("SELECT guid_next('booking')::int8");
$pending =~ s/\s+//g;
$s = status($pending);
is($s->{recorded} ? 'true' : 'false', 'false', 'an ID of a transaction still open: not recorded yet');
is(published($s), 'null', '... published null');
$open->query_safe('COMMIT');
$open->quit;
$s = status($pending);
ok($s->{recorded}, 'committed: recorded');
is(poll_status($pending, 'true'), 'true', '... and published once the publisher has it');
ok(in_topic()->{$pending}, '... which the topic confirms');

# --- random property --------------------------------------------------------------
# Rounds of: maybe pause or resume the publisher, record IDs of random
# services in random counts through the gateway, then the status of every
# ID so far and, after it, the topic: true must mean the topic holds it.
srand(5656);
my @services = qw(payments booking ledger mobile batch);
my (@ids, %service_of);
my ($checked, $trues, $violations) = (0, 0, 0);
my $paused = 0;

sub check_all
{
	my %st;
	$st{$_} = status($_) for @ids;
	my $topic_has = in_topic();
	for my $id (@ids)
	{
		$checked++;
		my $p = published($st{$id});
		if ($p eq 'true')
		{
			$trues++;
			if (!$topic_has->{$id})
			{
				$violations++;
				diag("$id: published true, topic lacks it");
			}
		}
		elsif ($p ne 'false')
		{
			$violations++;
			diag("$id: published $p for a recorded ID");
		}
		$violations++, diag("$id: wrong service") if ($st{$id}{service} // '') ne $service_of{$id};
	}
	return $topic_has;
}

for my $round (1 .. 12)
{
	if (rand() < 0.4)
	{
		$paused = !$paused;
		pause_publisher($paused ? (rand() < 0.5 ? 'before_commit' : 'before_produce') : '');
	}
	for (1 .. 1 + int(rand(4)))
	{
		my $svc = $services[ int(rand(@services)) ];
		my @new = generate($svc, 1 + int(rand(20)));
		push @ids, @new;
		$service_of{$_} = $svc for @new;
	}
	check_all();
	sleep rand(1.5);
}
pause_publisher('');
my $deadline = time + 180;
my $all_true = 0;
while (time < $deadline)
{
	my $n = grep { published(status($_)) eq 'true' } @ids;
	if ($n == @ids) { $all_true = 1; last; }
	sleep 0.5;
}
my $topic_has = check_all();
is($violations, 0, "random property: $checked status answers for " . scalar(@ids)
	  . " IDs of " . scalar(@services) . " services, $trues true, each true one held by the topic");
ok($all_true, 'publisher resumed: every ID reads published true in the end');
is(scalar(grep { $topic_has->{$_} } @ids), scalar @ids, '... and the topic holds every one');
ok($trues > 0 && $trues < $checked, '... and the rounds saw both answers (true and false)');

# --- recorded before the publisher was configured -----------------------------------
# A slot streams only what commits after it exists: an ID recorded before
# the publisher was set up never reaches Kafka, and must never read true,
# even once later IDs (with later xids) do.
my ($before_slot) = $plain->safe_psql('postgres', "SELECT guid_next('early')::int8");
my $topic2 = "t056b_$$";
$plain->append_conf('postgresql.conf', kafka_conf($brokers, $topic2));
$plain->restart;
$plain->poll_query_until('postgres', "SELECT publisher_state = 'streaming' FROM guid.status")
  or BAIL_OUT('publisher did not start on nopub: '
	  . $plain->safe_psql('postgres', 'SELECT publisher_state, publisher_error FROM guid.status'));
# New IDs, one a round, until one reads true (the first ones may be older
# than the gateway's second sample after the restart: false for good).
my ($after_slot, @late);
my ($late_true, $early_meanwhile) = (0, '');
$deadline = time + 180;
while (time < $deadline && !$late_true)
{
	# the gateway's pool reconnects by itself after the restart
	my $r = call($gw_plain, 'POST', '/guid/generate?service=late');
	push @late, $r->{json}{guid} if $r->{status} == 200;
	for my $id (@late)
	{
		next unless published(status($id, $gw_plain)) eq 'true';
		($after_slot, $late_true) = ($id, 1);
		last;
	}
	$early_meanwhile .= published(status($before_slot, $gw_plain)) eq 'true' ? 'T' : '';
	sleep 0.5;
}
ok($late_true, 'publisher configured (restart): an ID recorded after it reads published true');
my $s_early = status($before_slot, $gw_plain);
ok($s_early->{recorded}, 'an ID recorded before the publisher was configured: recorded');
is(published($s_early) . $early_meanwhile, 'false', '... published false, even once later IDs are true');
my %t2 = map { $_ => 1 } @{ kafka_read($brokers, $topic2, 1) };
ok($t2{$after_slot} && !$t2{$before_slot}, '... and indeed the topic holds the later ID, not the earlier one');

done_testing();
