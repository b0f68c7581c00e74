# 054_gateway_buckets.pl: guid_gateway's rate-limit buckets are freed once
# they have been full (idle) for a while, and their table is bounded
# (README, "HTTP API", "Rate limits").  Many distinct clients (tokens with
# distinct subs) each get a bucket; the guid_gateway_rate_buckets gauge of
# /metrics falls back once they are idle, while a client over its limit
# keeps its (not full) bucket and is still refused with 429.  With
# rate_clients_max buckets none of which is full, a new client is refused
# rather than someone's bucket being reset.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use GuidTest;
use Digest::SHA qw(hmac_sha256);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time sleep);

my @harnesses;
END { eval { $_->kill_kill(grace => 5) } for @harnesses; }

my $node = guid_node('gwb', node_id => 6);
my $dir = PostgreSQL::Test::Utils::tempdir();
my $secret = "$dir/hs256.secret";
PostgreSQL::Test::Utils::append_to_file($secret, "s3cret-buckets\n");
chmod 0600, $secret;

sub token
{
	my ($sub) = @_;
	my $in = encode_base64url(encode_json({ alg => 'HS256', typ => 'JWT' })) . '.'
	  . encode_base64url(encode_json({ sub => $sub, exp => int(time) + 600 }));
	return "$in." . encode_base64url(hmac_sha256($in, 's3cret-buckets'));
}

my $gw_port = PostgreSQL::Test::Cluster::get_free_port();
my $CAP = 64;
# cap1..cap70: one token each, refilled in 1000 s (never within this test)
my $caps = join '', map { "limit.cap$_ = 0.001 1\n" } 1 .. 70;
my $conninfo = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
PostgreSQL::Test::Utils::append_to_file("$dir/gateway.conf", <<EOF . $caps);
listen_address = 127.0.0.1
port = $gw_port
conninfo = $conninfo
jwt_hs256_secret_file = $secret
rate_limit = 1000
rate_burst = 1000
rate_clients_max = $CAP
limit.slow = 0.001 5
EOF

my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 60);
sub url { return "http://127.0.0.1:$gw_port$_[0]"; }
sub generate
{
	my ($sub, $query) = @_;
	return $http->request('POST', url('/guid/generate' . ($query // '')),
		{ headers => { Authorization => 'Bearer ' . token($sub) } });
}
sub buckets
{
	my $r = $http->get(url('/metrics'));
	return $r->{content} =~ /^guid_gateway_rate_buckets (\d+)$/m ? $1 : -1;
}

my $gw = IPC::Run::start([ 'guid_gateway', '--config', "$dir/gateway.conf" ], '>', "$dir/gateway.log", '2>&1');
push @harnesses, $gw;
my $up = 0;
for (1 .. 600)
{
	my $s = $http->get(url('/healthz'))->{status};
	if ($s == 200) { $up = 1; last; }
	sleep 0.05;
}
ok($up, 'the gateway answers /healthz 200') or BAIL_OUT(slurp_file("$dir/gateway.log"));

is(buckets(), 0, 'no client yet: guid_gateway_rate_buckets 0');

# --- many distinct clients, then idle -------------------------------------------------
my $n = 50;
my $ok = 0;
for my $i (1 .. $n) { $ok++ if generate("client$i")->{status} == 200; }
is($ok, $n, "$n distinct clients: each served");
is(generate('slow', '?count=5')->{status}, 200, 'client slow spends its whole burst (5)');
my $r = generate('slow');
is($r->{status}, 429, '... and is then refused with 429');
my $b = buckets();
is($b, $n + 1, "a bucket per client: guid_gateway_rate_buckets $b");

# the default clients refill (1000/s) within a millisecond and are then idle
my $fell;
for (1 .. 1200)
{
	$b = buckets();
	if ($b <= 1) { $fell = 1; last; }
	sleep 0.1;
}
ok($fell, "idle full buckets are freed: the gauge falls back (to $b)");
is($b, 1, '... to the one bucket that is not full (slow\'s)');
$r = generate('slow');
is($r->{status}, 429, 'slow, over its limit, is still refused with 429 right after: its bucket was kept');
ok(($r->{headers}{'retry-after'} // 0) > 100, "... with its own Retry-After ($r->{headers}{'retry-after'})");
is(generate('client1')->{status}, 200, 'an evicted client comes back with a fresh (full) bucket: 200');

# --- the bound: rate_clients_max buckets, none of them full ---------------------------
# slow holds one bucket and client1 one (full, refilled); cap1..cap63 fill
# the table with empty buckets, client1's being freed to make room
$ok = 0;
for my $i (1 .. $CAP - 1) { $ok++ if generate("cap$i")->{status} == 200; }
is($ok, $CAP - 1, 'cap1..cap' . ($CAP - 1) . ': each served (client1\'s full bucket made room)');
is(buckets(), $CAP, "guid_gateway_rate_buckets $CAP: the table is at rate_clients_max");
$r = generate("cap$CAP");
is($r->{status}, 429, 'a new client with the table full of buckets that are not full: 429');
like($r->{content}, qr/rate_clients_max/, '... saying why');
ok(($r->{headers}{'retry-after'} // 0) >= 1, '... with Retry-After');
is(generate('slow')->{status}, 429, 'slow is still refused (no bucket was reset to make room)');
is(generate('cap1')->{status}, 429, 'cap1, over its limit, is still refused');
is(buckets(), $CAP, '... and the table stays at rate_clients_max');

$gw->signal('TERM');
$gw->finish;
is($gw->full_result(0), 0, 'the gateway exits 0 on SIGTERM');
done_testing();
