# 050_gateway.pl: guid_gateway, the HTTP API (README, "HTTP API"), in front
# of a scratch cluster: every endpoint and every error, JWT (HS256, RS256,
# ES256) minted here with openssl keys made here, the rate limit measured
# in tokens, uniqueness of 1M IDs from 64 concurrent keep-alive clients with
# their requests coalesced, PostgreSQL stopped and started under load,
# SIGHUP reloading keys and limits, SIGTERM draining a request in flight.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use GuidTest;
use Digest::SHA qw(hmac_sha256);
use HTTP::Tiny;
use IO::Handle;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use POSIX ();
use Time::HiRes qw(time sleep);

# What this test started, stopped even when it dies half way: the gateways,
# Prometheus (IPC::Run harnesses) and the forked clients.
my (@harnesses, @client_pids);
END
{
	kill 'KILL', @client_pids if @client_pids;
	eval { $_->kill_kill(grace => 5) } for @harnesses;
}

my $node = guid_node('gw', node_id => 5,
	conf => "guid.redis = '$ENV{GUID_REDIS}'\nmax_connections = 40\n");
my $dir = PostgreSQL::Test::Utils::tempdir();

# --- keys -------------------------------------------------------------------------
my $secret = "$dir/hs256.secret";
PostgreSQL::Test::Utils::append_to_file($secret, "s3cret-for-guid-tests\n");
chmod 0600, $secret;
for my $k ([ 'rsa', 'RSA', 'rsa_keygen_bits:2048' ], [ 'ec', 'EC', 'ec_paramgen_curve:P-256' ])
{
	my ($name, $alg, $opt) = @$k;
	my ($o1, $e1, $o2, $e2);
	IPC::Run::run([ 'openssl', 'genpkey', '-algorithm', $alg, '-pkeyopt', $opt, '-out', "$dir/$name.key" ],
		'>', \$o1, '2>', \$e1) or die "openssl genpkey: $e1";
	IPC::Run::run([ 'openssl', 'pkey', '-in', "$dir/$name.key", '-pubout', '-out', "$dir/$name.pub" ],
		'>', \$o2, '2>', \$e2) or die "openssl pkey: $e2";
}

# DER ECDSA signature -> JWS raw r||s (RFC 7518 3.4)
sub der_to_raw
{
	my ($der) = @_;
	my @b = unpack('C*', $der);
	my $i = 2;
	$i++ if $b[1] & 0x80;
	my @parts;
	for (1 .. 2)
	{
		die "bad DER" unless $b[$i] == 0x02;
		my $len = $b[ $i + 1 ];
		my $v = pack('C*', @b[ $i + 2 .. $i + 1 + $len ]);
		$v =~ s/^\x00+//;
		push @parts, ("\x00" x (32 - length $v)) . $v;
		$i += 2 + $len;
	}
	return join '', @parts;
}

# jwt($alg, \%claims, $key): a signed token (the key is a secret for HS256,
# a private key file otherwise; alg 'none' makes an unsigned one).
sub jwt
{
	my ($alg, $claims, $key) = @_;
	my $in = encode_base64url(encode_json({ alg => $alg, typ => 'JWT' })) . '.'
	  . encode_base64url(encode_json($claims));
	my $sig = '';
	if ($alg eq 'HS256') { $sig = hmac_sha256($in, $key); }
	elsif ($alg ne 'none')
	{
		IPC::Run::run([ 'openssl', 'dgst', '-sha256', '-sign', $key ], '<', \$in, '>', \$sig)
		  or die "openssl dgst failed";
		$sig = der_to_raw($sig) if $alg eq 'ES256';
	}
	return "$in." . encode_base64url($sig);
}

my %std = (iss => 'guid-test', aud => 'guid-api');
sub claims { return { %std, exp => int(time) + 300, @_ }; }
my $hs = sub { jwt('HS256', claims(sub => $_[0] // 'alice'), 's3cret-for-guid-tests') };

# --- the gateway ------------------------------------------------------------------
my ($gw_port, $gw, $gw_conf, $gw_log);

sub write_conf
{
	my ($file, $extra, $pg) = @_;
	$pg //= $node;
	my $conninfo = 'host=' . $pg->host . ' port=' . $pg->port . ' dbname=postgres';
	unlink $file;
	PostgreSQL::Test::Utils::append_to_file($file, <<EOF . ($extra // ''));
# guid_gateway config for 050_gateway.pl
listen_address = 127.0.0.1
port = $gw_port
conninfo = $conninfo
pool_size = 4
threads = 4
jwt_hs256_secret_file = $secret
jwt_rs256_public_key_file = $dir/rsa.pub
jwt_es256_public_key_file = $dir/ec.pub
jwt_issuer = guid-test
jwt_audience = guid-api
jwt_leeway = 5
retry_after = 2
limit.ratetest = 1000 1000
limit.loadtest = 100000000 100000000
limit.small = 5 5
EOF
}

my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 60);
sub url { return "http://127.0.0.1:$gw_port$_[0]"; }

sub call
{
	my ($method, $path, $token, %h) = @_;
	my %headers = %h;
	$headers{Authorization} = "Bearer $token" if defined $token;
	my $r = $http->request($method, url($path), { headers => \%headers });
	$r->{json} = eval { decode_json($r->{content}) } if ($r->{headers}{'content-type'} // '') =~ /json/;
	return $r;
}

# field($r, $name): a field of a JSON object answer ('' for anything else)
sub field { my ($r, $name) = @_; return ref $r->{json} eq 'HASH' ? $r->{json}{$name} // '' : ''; }

sub start_gateway
{
	my ($conf, $log) = @_;
	my $h = IPC::Run::start([ 'guid_gateway', '--config', $conf ], '>', $log, '2>&1');
	push @harnesses, $h;
	for (1 .. 300)
	{
		my $r = $http->get(url('/healthz'));
		return $h if $r->{status} == 200 || $r->{status} == 503;
		sleep 0.05;
	}
	die "guid_gateway did not start: " . slurp_file($log);
}

sub ids_issued { return $node->safe_psql('postgres', 'SELECT ids_issued FROM guid.status'); }

$gw_port = PostgreSQL::Test::Cluster::get_free_port();
$gw_conf = "$dir/gateway.conf";
$gw_log = "$dir/gateway.log";

# auth is on by default: without a key the gateway does not start
write_conf("$dir/nokey.conf");
my $nokey = slurp_file("$dir/nokey.conf");
$nokey =~ s/^jwt_\w+_file = .*\n//mg;
unlink "$dir/nokey.conf";
PostgreSQL::Test::Utils::append_to_file("$dir/nokey.conf", $nokey);
my ($out, $err) = ('', '');
IPC::Run::run([ 'guid_gateway', '--config', "$dir/nokey.conf" ], '>', \$out, '2>', \$err);
isnt($? >> 8, 0, 'auth on by default: no key configured, the gateway refuses to start');
like($err, qr/auth is on but no jwt_\*_file key is set/, '... and says why');

write_conf($gw_conf);
$gw = start_gateway($gw_conf, $gw_log);

# --- generate ---------------------------------------------------------------------
my $r = call('POST', '/guid/generate', $hs->());
is($r->{status}, 200, 'POST /guid/generate with an HS256 token: 200');
like($r->{headers}{'content-type'}, qr{^application/json}, '... application/json');
my $one = $r->{json};
like($one->{guid}, qr/^\d+$/, '... the guid is a decimal string');
is($one->{type}, 'snowflake', '... type snowflake by default');
is($one->{node_id}, 5, '... node_id of the cluster');
my $dec = $node->safe_psql('postgres',
	"SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') || ' ' || node_id || ' ' || sequence FROM guid_decode('$one->{guid}'::guid)");
is("$one->{created_at} $one->{node_id} $one->{sequence}", $dec, '... created_at, node_id, sequence as guid_decode() says');

$r = call('POST', '/guid/generate?type=uuid', $hs->());
is($r->{status}, 200, 'type=uuid: 200');
like($r->{json}{guid}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, '... an RFC 9562 UUIDv7 string');
is($r->{json}{node_id}, 5, '... its node');
my $uuid = $r->{json};

$r = call('POST', '/guid/generate?count=3', $hs->());
is(ref $r->{json}, 'ARRAY', 'count=3: an array');
is(scalar @{ $r->{json} }, 3, '... of 3');
my @three = map { $_->{guid} } @{ $r->{json} };
ok($three[0] < $three[1] && $three[1] < $three[2], '... increasing IDs');

# a client of its own: alice has spent 5 of her 1,000 tokens just before,
# and a gateway that answers within 5 ms has not refilled them yet (429)
$r = call('POST', '/guid/generate?count=1000', $hs->('bulk'));
is($r->{status}, 200, 'count=1000 (a full bucket of 1,000): 200');
my %k1000 = map { $_->{guid} => 1 } @{ ref $r->{json} eq 'ARRAY' ? $r->{json} : [] };
is(scalar keys %k1000, 1000, 'count=1000: 1000 distinct IDs in one answer');

$r = call('POST', '/guid/generate?service=payments&count=2', $hs->());
is($r->{status}, 200, 'service=payments: 200');
my @svc = map { $_->{guid} } @{ $r->{json} };
is($node->safe_psql('postgres', "SELECT count(*) FROM guid.audit WHERE service = 'payments' AND guid IN ($svc[0], $svc[1])"),
	2, '... both recorded in guid.audit with their service');

my $k1 = call('POST', '/guid/generate?service=payments', $hs->(), 'Idempotency-Key' => 'order-1');
my $k1b = call('POST', '/guid/generate?service=payments', $hs->(), 'Idempotency-Key' => 'order-1');
my $k2 = call('POST', '/guid/generate?service=payments', $hs->(), 'Idempotency-Key' => 'order-2');
is($k1->{status}, 200, 'Idempotency-Key: 200');
is($k1b->{json}{guid}, $k1->{json}{guid}, '... the same key gives the same ID');
isnt($k2->{json}{guid}, $k1->{json}{guid}, '... another key another ID');
is($node->safe_psql('postgres', "SELECT guid_next('payments', 'order-1')"), $k1->{json}{guid},
	'... the ID guid_next(service, key) gives for that key');

# --- status -----------------------------------------------------------------------
$r = call('GET', "/guid/status/$svc[0]", $hs->());
is($r->{status}, 200, 'GET /guid/status/{decimal}: 200');
is($r->{json}{service}, 'payments', '... the service this cluster recorded');
ok($r->{json}{recorded}, '... recorded');
$r = call('GET', "/guid/status/$one->{guid}", $hs->());
is("$r->{json}{created_at} $r->{json}{node_id} $r->{json}{sequence}", $dec, '... decoded as guid_decode() does');
ok(!$r->{json}{recorded} && !defined $r->{json}{service}, '... an unaudited ID: not recorded, no service');
$r = call('GET', "/guid/status/$uuid->{guid}", $hs->());
is($r->{status}, 200, 'GET /guid/status/{uuid}: 200');
is("$r->{json}{created_at} $r->{json}{node_id} $r->{json}{sequence}",
	"$uuid->{created_at} $uuid->{node_id} $uuid->{sequence}", '... the UUID decoded to its time, node, sequence');
$r = call('GET', '/guid/status/12345', $hs->());
is($r->{status}, 200, 'an ID this cluster never issued is not an error');

# --- healthz, metrics ---------------------------------------------------------------
$r = call('GET', '/healthz');
is($r->{status}, 200, 'GET /healthz: 200 while the cluster issues');
is($r->{json}{mode}, 'standalone', '... its mode');

# --- every error generates nothing -------------------------------------------------
my $issued = ids_issued();
my $now = int(time);
my @errors = (
	[ 'no token', 'POST', '/guid/generate', undef, 401 ],
	[ 'garbage token', 'POST', '/guid/generate', 'abc.def.ghi', 401 ],
	[ 'HS256, wrong secret', 'POST', '/guid/generate', jwt('HS256', claims(sub => 'a'), 'wrong'), 401 ],
	[ 'expired', 'POST', '/guid/generate', jwt('HS256', claims(sub => 'a', exp => $now - 60), 's3cret-for-guid-tests'), 401 ],
	[ 'nbf ahead', 'POST', '/guid/generate', jwt('HS256', claims(sub => 'a', nbf => $now + 60), 's3cret-for-guid-tests'), 401 ],
	[ 'wrong iss', 'POST', '/guid/generate', jwt('HS256', claims(sub => 'a', iss => 'other'), 's3cret-for-guid-tests'), 401 ],
	[ 'wrong aud', 'POST', '/guid/generate', jwt('HS256', claims(sub => 'a', aud => 'other'), 's3cret-for-guid-tests'), 401 ],
	[ 'no exp', 'POST', '/guid/generate', jwt('HS256', { %std, sub => 'a' }, 's3cret-for-guid-tests'), 401 ],
	[ 'no sub', 'POST', '/guid/generate', jwt('HS256', claims(), 's3cret-for-guid-tests'), 401 ],
	[ 'alg none', 'POST', '/guid/generate', jwt('none', claims(sub => 'a')), 401 ],
	[ 'HS256 keyed with the RSA public key', 'POST', '/guid/generate', jwt('HS256', claims(sub => 'a'), slurp_file("$dir/rsa.pub")), 401 ],
	[ 'RS256 by another key', 'POST', '/guid/generate', jwt('RS256', claims(sub => 'a'), "$dir/ec.key") // '', 401 ],
	[ 'unknown type', 'POST', '/guid/generate?type=ulid', $hs->(), 400 ],
	[ 'count=0', 'POST', '/guid/generate?count=0', $hs->(), 400 ],
	[ 'count=1001', 'POST', '/guid/generate?count=1001', $hs->(), 400 ],
	[ 'count=abc', 'POST', '/guid/generate?count=abc', $hs->(), 400 ],
	[ 'count=-1', 'POST', '/guid/generate?count=-1', $hs->(), 400 ],
	[ 'unknown parameter', 'POST', '/guid/generate?cnt=2', $hs->(), 400 ],
	[ 'service with type=uuid', 'POST', '/guid/generate?type=uuid&service=x', $hs->(), 400 ],
	[ 'bad service name (the extension refuses it)', 'POST', '/guid/generate?service=bad:name', $hs->(), 400 ],
	[ 'status of a malformed ID', 'GET', '/guid/status/12ab', $hs->(), 400 ],
	[ 'status of an ID out of range', 'GET', '/guid/status/9223372036854775808', $hs->(), 400 ],
	[ 'status of a negative ID', 'GET', '/guid/status/-5', $hs->(), 400 ],
	[ 'status of a UUIDv4', 'GET', '/guid/status/0b7e2c4a-31c5-4f55-9d39-3c4b1b2f7e11', $hs->(), 400 ],
	[ 'status without a token', 'GET', "/guid/status/$one->{guid}", undef, 401 ],
	[ 'GET /guid/generate', 'GET', '/guid/generate', $hs->(), 405 ],
	[ 'POST /healthz', 'POST', '/healthz', undef, 405 ],
	[ 'DELETE /guid/status/1', 'DELETE', '/guid/status/1', $hs->(), 405 ],
	[ 'unknown path', 'GET', '/guid/nope', $hs->(), 404 ],
);
for my $e (@errors)
{
	my ($what, $method, $path, $token, $want) = @$e;
	$r = call($method, $path, $token);
	is($r->{status}, $want, "$what: $want");
	ok(field($r, 'error') && field($r, 'message'), "... a JSON error ($what)")
	  or diag($r->{content});
	if ($want == 401)
	{
		like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/, "... WWW-Authenticate: Bearer ($what)");
	}
	is($r->{headers}{allow}, $path =~ /generate/ ? 'POST' : 'GET', '... Allow') if $want == 405;
}
$r = call('POST', '/guid/generate', undef, 'Idempotency-Key' => 'k');
is($r->{status}, 401, 'Idempotency-Key without a token: 401');
$r = call('POST', '/guid/generate', $hs->(), 'Idempotency-Key' => 'k');
is($r->{status}, 400, 'Idempotency-Key without service: 400');
like(field($r, 'message'), qr/requires service/, '... says so');
$r = call('POST', '/guid/generate?service=s&count=2', $hs->(), 'Idempotency-Key' => 'k');
is($r->{status}, 400, 'Idempotency-Key with count=2: 400');
$r = $http->request('POST', url('/guid/generate'),
	{ headers => { Authorization => 'Bearer ' . $hs->() }, content => 'x' x 100000 });
is($r->{status}, 413, 'a request body over max_body: 413');
like($r->{content}, qr/"error":"body_too_large"/, '... a JSON error');
$r = $http->request('POST', url('/guid/generate'),
	{ headers => { Authorization => 'Bearer ' . $hs->(), 'X-Padding' => 'p' x 20000 } });
is($r->{status}, 431, 'headers over max_header: 431 (libmicrohttpd answers it)');
is(ids_issued(), $issued, 'none of these errors generated an ID');

# leeway, audiences, the other algorithms
$r = call('POST', '/guid/generate', jwt('HS256', claims(sub => 'a', exp => $now - 2), 's3cret-for-guid-tests'));
is($r->{status}, 200, 'a token expired 2 s ago, within jwt_leeway (5 s): 200');
$r = call('POST', '/guid/generate', jwt('HS256', claims(sub => 'a', aud => [ 'x', 'guid-api' ]), 's3cret-for-guid-tests'));
is($r->{status}, 200, 'aud as an array holding the audience: 200');
$r = call('POST', '/guid/generate', jwt('RS256', claims(sub => 'bob'), "$dir/rsa.key"));
is($r->{status}, 200, 'an RS256 token: 200');
$r = call('POST', '/guid/generate', jwt('ES256', claims(sub => 'carol'), "$dir/ec.key"));
is($r->{status}, 200, 'an ES256 token: 200');

# --- rate limit ------------------------------------------------------------------------
my $small = jwt('HS256', claims(sub => 'small'), 's3cret-for-guid-tests');
$r = call('POST', '/guid/generate?count=6', $small);
is($r->{status}, 429, 'count over the client\'s burst (limit.small = 5 5): 429');
$r = call('POST', '/guid/generate?count=5', $small);
is($r->{status}, 200, 'count=5 spends the burst: 200');
$issued = ids_issued();
$r = call('POST', '/guid/generate?count=5', $small);
is($r->{status}, 429, 'right after: 429');
like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, '... with Retry-After');
is(field($r, 'error'), 'rate_limited', '... a JSON error');
is(ids_issued(), $issued, '... nothing generated');

# clients(n => N, token => T, path => P, out => PREFIX, until => EPOCH |
# stopfile => F | requests => N [, key => sub ($client, $n)]): N forked
# keep-alive clients, each writing "S <status> <retry-after>" per response
# and "I <id>" per ID to PREFIX.N; with key, request n of client i sends
# Idempotency-Key key->(i, n) and writes "K <key> <id>" per ID.
sub clients
{
	my (%o) = @_;
	my @pids;
	for my $i (1 .. $o{n})
	{
		my $pid = fork() // die "fork: $!";
		if ($pid == 0)
		{
			my $c = HTTP::Tiny->new(keep_alive => 1, timeout => 60);
			open my $fh, '>', "$o{out}.$i" or POSIX::_exit(1);
			$fh->autoflush(1) if $o{stopfile};
			# one request first, so that the window starts with the connection
			# open and HTTP::Tiny's modules loaded
			$c->get(url('/healthz'));
			my ($n, $first) = (0, time);
			while (1)
			{
				last if $o{requests} && $n >= $o{requests};
				last if $o{until} && time >= $o{until};
				last if $o{stopfile} && -e $o{stopfile};
				my %h = (Authorization => "Bearer $o{token}");
				my $key = $o{key} ? $o{key}->($i, $n) : undef;
				$h{'Idempotency-Key'} = $key if defined $key;
				my $res = $c->request('POST', url($o{path}), { headers => \%h });
				$n++;
				my @ids = $res->{status} == 200 ? $res->{content} =~ /"guid":"(\d+)"/g : ();
				print $fh "S $res->{status} " . ($res->{headers}{'retry-after'} // '-') . "\n"
				  . join('', map { defined $key ? "K $key $_\n" : "I $_\n" } @ids);
			}
			print $fh "T $first " . time . "\n";
			close $fh;
			POSIX::_exit(0);
		}
		push @pids, $pid;
		push @client_pids, $pid;
	}
	return \@pids;
}

# collect($pids, %o): waits for the clients; their statuses, IDs, window.
sub collect
{
	my ($pids, %o) = @_;
	waitpid($_, 0) for @$pids;
	my %done = map { $_ => 1 } @$pids;
	@client_pids = grep { !$done{$_} } @client_pids;
	my %res = (status => {}, ids => [], no_retry_after => 0, first => 1e20, last => 0);
	for my $i (1 .. scalar @$pids)
	{
		open my $fh, '<', "$o{out}.$i" or die "$o{out}.$i: $!";
		while (<$fh>)
		{
			if (/^I (\d+)/) { push @{ $res{ids} }, $1; }
			elsif (/^K (\S+) (\d+)/) { push @{ $res{ids} }, $2; $res{keyed}{$1}{$2} = 1; }
			elsif (/^S (\d+) (\S+)/)
			{
				$res{status}{$1}++;
				$res{no_retry_after}++ if ($1 == 503 || $1 == 429) && $2 eq '-';
			}
			elsif (/^T (\S+) (\S+)/)
			{
				$res{first} = $1 if $1 < $res{first};
				$res{last} = $2 if $2 > $res{last};
			}
		}
		close $fh;
		unlink "$o{out}.$i";
	}
	return \%res;
}

sub metric
{
	my ($name) = @_;
	my $text = $http->get(url('/metrics'))->{content};
	my $sum = 0;
	my $labels = $name =~ /\{/ ? '' : '(?:\{[^}]*\})?';
	$sum += $1 while $text =~ /^\Q$name\E$labels (\S+)$/mg;
	return $sum;
}

# the limiter, measured in tokens: 4 clients asking count=10 as fast as
# they can for 6 s; accepted IDs = burst + rate x window, within 5 %.
my $limited_before = metric('guid_gateway_rate_limited_total');
my $res = collect(clients(n => 4, token => jwt('HS256', claims(sub => 'ratetest'), 's3cret-for-guid-tests'),
		path => '/guid/generate?count=10', out => "$dir/rate", until => time + 6), out => "$dir/rate");
my $accepted = scalar @{ $res->{ids} };
my $window = $res->{last} - $res->{first};
my $expected = 1000 + 1000 * $window;
note(sprintf('rate limit: %d IDs accepted in %.2f s (expected %.0f), %d requests refused',
		$accepted, $window, $expected, $res->{status}{429} // 0));
ok($res->{status}{429} > 0, 'the clients asked for more than the limit');
ok(abs($accepted - $expected) <= 0.05 * $expected,
	sprintf('accepted IDs within 5 %% of burst + rate x window (%d vs %.0f)', $accepted, $expected));
is($res->{no_retry_after}, 0, 'every 429 carried Retry-After');
is(metric('guid_gateway_rate_limited_total') - $limited_before, $res->{status}{429},
	'/metrics counted every rate-limit rejection');

# --- 1M IDs from 64 keep-alive clients, coalesced ----------------------------------
my %seen;
my $dups = 0;
my $q0 = metric('guid_gateway_queries_total');
my $j0 = metric('guid_gateway_query_jobs_total');
my $t0 = time;
$res = collect(clients(n => 64, token => jwt('HS256', claims(sub => 'loadtest'), 's3cret-for-guid-tests'),
		path => '/guid/generate?count=100', out => "$dir/load", requests => 157), out => "$dir/load");
my $elapsed = time - $t0;
my $queries = metric('guid_gateway_queries_total') - $q0;
my $jobs = metric('guid_gateway_query_jobs_total') - $j0;
is($res->{status}{200}, 64 * 157, 'every request of the 64 clients answered 200');
for (@{ $res->{ids} }) { $dups++ if $seen{$_}++; }
cmp_ok(scalar @{ $res->{ids} }, '>=', 1_000_000, 'at least 1M IDs');
is($dups, 0, 'no duplicate among them');
note(sprintf('%d IDs in %.1f s; %d requests in %d queries', scalar @{ $res->{ids} }, $elapsed, $jobs, $queries));
cmp_ok($queries, '<', $jobs, 'concurrent requests were coalesced: fewer queries than requests');

# --- idempotent requests from 16 keep-alive clients, coalesced -------------------
# Keys shared by every client (the same key must get one ID, whichever
# request's batch settles it) and keys of one request; a 17th client sends
# keys the extension refuses (over 255 bytes) meanwhile: only its own
# requests fail, though they may share a batch with the others.
$q0 = metric('guid_gateway_queries_total');
$j0 = metric('guid_gateway_query_jobs_total');
my $idem_token = jwt('HS256', claims(sub => 'loadtest'), 's3cret-for-guid-tests');
my $good = clients(n => 16, token => $idem_token, path => '/guid/generate?service=idembatch',
	out => "$dir/idem", requests => 60,
	key => sub { my ($i, $n) = @_; return $n % 2 ? "shared-" . ((($n - 1) / 2) % 10) : "own-$i-$n"; });
my $bad = clients(n => 1, token => $idem_token, path => '/guid/generate?service=idembatch',
	out => "$dir/idembad", requests => 60, key => sub { return 'x' x 300; });
my $rbad = collect($bad, out => "$dir/idembad");
$res = collect($good, out => "$dir/idem");
$queries = metric('guid_gateway_queries_total') - $q0;
$jobs = metric('guid_gateway_query_jobs_total') - $j0;
is($res->{status}{200}, 16 * 60, 'idempotent: every request with a good key answered 200');
is($rbad->{status}{400}, 60, '... every request with a refused key 400, alone');
my %key_of;
my ($split, $shared_by) = (0, 0);
for my $k (sort keys %{ $res->{keyed} })
{
	my @ids = keys %{ $res->{keyed}{$k} };
	$split++ if @ids != 1;
	for (@ids) { $shared_by++ if exists $key_of{$_} && $key_of{$_} ne $k; $key_of{$_} = $k; }
}
is(scalar keys %{ $res->{keyed} }, 16 * 30 + 10, '... 490 distinct keys');
is($split, 0, '... each key got one ID, across clients and batches');
is($shared_by, 0, '... no ID for two keys');
my ($audited) = $node->safe_psql('postgres',
	"SELECT count(*) FROM guid.audit WHERE service = 'idembatch'");
is($audited, 490, '... and guid.audit holds each ID once');
note("idempotent: $jobs requests in $queries queries");
cmp_ok($queries, '<', $jobs, '... coalesced: fewer queries than requests');

# keys that need quoting in the batch's text[] literal reach Redis as sent:
# SQL's guid_next(service, key) with the same key gives the same ID
my @odd_keys = ('a,b', '{x}', '"q"', 'back\\slash', 'in side', 'NULL', "it's");
my ($same_as_sql, %odd_ids) = (0);
for my $k (@odd_keys)
{
	my $r1 = call('POST', '/guid/generate?service=idemchars', $idem_token, 'Idempotency-Key' => $k);
	(my $lit = $k) =~ s/'/''/g;
	my ($sql) = $node->safe_psql('postgres', "SELECT guid_next('idemchars', '$lit')::int8");
	$same_as_sql++ if $r1->{status} == 200 && field($r1, 'guid') eq $sql;
	$odd_ids{ field($r1, 'guid') } = 1;
}
is($same_as_sql, scalar @odd_keys, 'keys with , { } " \\ an inner space, NULL and a quote: the ID SQL gives for the same key');
is(scalar keys %odd_ids, scalar @odd_keys, '... a different ID for each');

# --- PostgreSQL stopped and started under load -------------------------------------
my $stop = "$dir/stop-clients";
my $pids = clients(n => 8, token => jwt('HS256', claims(sub => 'loadtest'), 's3cret-for-guid-tests'),
	path => '/guid/generate?count=10', out => "$dir/outage", stopfile => $stop);
sub outage_count
{
	my ($status) = @_;
	my $n = 0;
	for my $i (1 .. 8)
	{
		open my $fh, '<', "$dir/outage.$i" or next;
		while (<$fh>) { $n++ if /^S $status /; }
	}
	return $n;
}
sub wait_for { my ($what, $cond) = @_; for (1 .. 1200) { return 1 if $cond->(); sleep 0.05; } die "timed out waiting for $what"; }
wait_for('load', sub { outage_count(200) >= 50 });
$node->stop('fast');
wait_for('503s', sub { outage_count(503) >= 20 });
$r = call('GET', '/healthz');
is($r->{status}, 503, 'PostgreSQL down: /healthz 503');
ok($r->{headers}{'retry-after'}, '... with Retry-After');
my $ok_before = outage_count(200);
$node->start;
wait_for('recovery', sub { outage_count(200) >= $ok_before + 50 });
PostgreSQL::Test::Utils::append_to_file($stop, '');
$res = collect($pids, out => "$dir/outage");
ok($res->{status}{503} > 0, "PostgreSQL down: 503s ($res->{status}{503})");
is($res->{no_retry_after}, 0, '... each with Retry-After');
is(join(',', sort grep { $_ != 200 && $_ != 503 } keys %{ $res->{status} }), '', '... and nothing but 200 and 503');
for (@{ $res->{ids} }) { $dups++ if $seen{$_}++; }
is($dups, 0, 'no duplicate across the outage, and none with the 1M before it');
is(call('GET', '/healthz')->{status}, 200, 'the gateway recovered by itself: /healthz 200');

# --- metrics ---------------------------------------------------------------------------
$r = $http->get(url('/metrics'));
is($r->{status}, 200, 'GET /metrics: 200');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, '... Prometheus text format');
like($r->{content}, qr/^guid_gateway_requests_total\{endpoint="generate",code="200"\} \d+$/m, '... requests by endpoint and code');
like($r->{content}, qr/^guid_gateway_request_duration_seconds_bucket\{endpoint="generate",le="\+Inf"\} \d+$/m, '... a latency histogram');
cmp_ok(metric('guid_gateway_auth_failures_total'), '>=', 14, '... auth failures counted');
like($r->{content}, qr/^guid_up 1$/m, '... guid.status read');
like($r->{content}, qr/^guid_mode\{mode="standalone"\} 1$/m, '... the mode');
like($r->{content}, qr/^guid_ids_issued_total \d+$/m, '... IDs issued by the cluster');

# --- a real Prometheus (Debian's) scraping /metrics -------------------------------------
my $prom_port = PostgreSQL::Test::Cluster::get_free_port();
PostgreSQL::Test::Utils::append_to_file("$dir/prometheus.yml", <<EOF);
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: guid_gateway
    static_configs:
      - targets: ['127.0.0.1:$gw_port']
EOF
my $prom = IPC::Run::start(
	[ 'prometheus', "--config.file=$dir/prometheus.yml", "--storage.tsdb.path=$dir/prometheus-data",
		"--web.listen-address=127.0.0.1:$prom_port" ],
	'>', "$dir/prometheus.log", '2>&1');
push @harnesses, $prom;
my $series = 'guid_gateway_requests_total{endpoint="generate",code="200"}';
my $in_gateway = metric($series);
my $prom_value;
sub prom_query
{
	my ($q) = @_;
	my $pr = $http->get("http://127.0.0.1:$prom_port/api/v1/query?" . $http->www_form_urlencode({ query => $q }));
	return undef unless $pr->{status} == 200;
	my $data = eval { decode_json($pr->{content}) } or return undef;
	my $result = $data->{data}{result} // [];
	return @$result ? $result->[0]{value}[1] : undef;
}
wait_for('Prometheus to scrape the gateway', sub { defined($prom_value = prom_query($series)) });
is($prom_value, $in_gateway, "Prometheus scraped /metrics: its query API shows the request counter ($prom_value)");
is(prom_query('up{job="guid_gateway"}'), 1, '... and the target up');
$prom->signal('TERM');
$prom->finish;

# --- SIGHUP: keys and limits reloaded ---------------------------------------------------
my $old_token = $hs->('alice');
unlink $secret;
PostgreSQL::Test::Utils::append_to_file($secret, "rotated-secret\n");
chmod 0600, $secret;
write_conf($gw_conf, "limit.small = 1000 1000\n");
$gw->signal('HUP');
wait_for('the reload', sub { call('POST', '/guid/generate', $old_token)->{status} == 401 });
is(call('POST', '/guid/generate', jwt('HS256', claims(sub => 'alice'), 'rotated-secret'))->{status}, 200,
	'after SIGHUP the rotated secret signs valid tokens, the old one no longer');
is(call('POST', '/guid/generate?count=100', jwt('HS256', claims(sub => 'small'), 'rotated-secret'))->{status}, 200,
	'... and limit.small is 1000 1000: count=100 passes');

# --- auth off: the client is the peer address -----------------------------------------
write_conf($gw_conf, "auth = off\nrate_limit = 3\nrate_burst = 3\n");
$gw->signal('HUP');
wait_for('auth off', sub { call('POST', '/guid/generate')->{status} != 401 });
my @codes = map { call('POST', '/guid/generate')->{status} } 1 .. 5;
ok($codes[0] == 200 && (grep { $_ == 429 } @codes),
	"auth = off: no token needed, and the peer address has its bucket (@codes)");
write_conf($gw_conf, "limit.small = 1000 1000\n");
$gw->signal('HUP');
wait_for('auth back on', sub { call('POST', '/guid/generate')->{status} == 401 });

# --- SIGTERM drains a request in flight ---------------------------------------------------
my $lock = $node->background_psql('postgres');
$lock->query_safe('BEGIN; LOCK TABLE guid.audit IN ACCESS EXCLUSIVE MODE;');
my $slow = clients(n => 1, token => jwt('HS256', claims(sub => 'loadtest'), 'rotated-secret'),
	path => '/guid/generate?service=drain', out => "$dir/drain", requests => 1);
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'guid_gateway' AND wait_event_type = 'Lock'")
  or die 'the request did not block';
$gw->signal('TERM');
wait_for('the listener to close', sub { !IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw_port") });
ok(kill(0, $gw->{KIDS}[0]{PID}), 'after SIGTERM the gateway stops accepting but waits for its request in flight');
$lock->query_safe('COMMIT;');
$lock->quit;
$res = collect($slow, out => "$dir/drain");
is($res->{status}{200}, 1, '... which is answered 200');
$gw->finish;
is($gw->full_result(0), 0, '... then it exits 0');
is($node->safe_psql('postgres', "SELECT count(*) FROM guid.audit WHERE service = 'drain'"), 1,
	'... and the ID it issued is recorded');

# --- a cluster that cannot issue (no node id): 503, nothing generated ------------------
my $noid = guid_node('gw_noid', node_id => undef);
$gw_port = PostgreSQL::Test::Cluster::get_free_port();
write_conf($gw_conf, '', $noid);
$gw = start_gateway($gw_conf, "$dir/gateway-noid.log");
$r = call('GET', '/healthz');
is($r->{status}, 503, 'a cluster without a node id: /healthz 503');
like(field($r, 'message'), qr/mode/, '... naming its mode');
$r = call('POST', '/guid/generate', jwt('HS256', claims(sub => 'noid'), 'rotated-secret'));
is($r->{status}, 503, '... POST /guid/generate 503');
is($r->{headers}{'retry-after'}, 2, '... with Retry-After (retry_after = 2)');
is(field($r, 'error'), 'unavailable', '... a JSON error');
is($noid->safe_psql('postgres', 'SELECT ids_issued FROM guid.status'), 0, '... nothing issued');
$gw->signal('TERM');
$gw->finish;
$noid->stop;

# --- TLS through libmicrohttpd ------------------------------------------------------------
my ($tls_out, $tls_err) = ('', '');
IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
		'-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
		'-keyout', "$dir/tls.key", '-out', "$dir/tls.crt" ], '>', \$tls_out, '2>', \$tls_err)
  or die "openssl req: $tls_err";
$gw_port = PostgreSQL::Test::Cluster::get_free_port();
write_conf($gw_conf, "tls_cert_file = $dir/tls.crt\ntls_key_file = $dir/tls.key\n");
$gw = IPC::Run::start([ 'guid_gateway', '--config', $gw_conf ], '>', "$dir/gateway-tls.log", '2>&1');
push @harnesses, $gw;
my $body = '';
wait_for('the TLS gateway', sub {
	IPC::Run::run([ 'curl', '-s', '--cacert', "$dir/tls.crt", '-X', 'POST',
			'-H', 'Authorization: Bearer ' . jwt('HS256', claims(sub => 'tls'), 'rotated-secret'),
			"https://127.0.0.1:$gw_port/guid/generate" ], '>', \$body, '2>', \my $cerr);
	return $body =~ /"guid":"\d+"/;
});
like($body, qr/"node_id":5/, 'with tls_cert_file and tls_key_file the gateway serves HTTPS');
is($http->get(url('/healthz'))->{status}, 599, '... and not plain HTTP');
$gw->signal('TERM');
$gw->finish;

$node->stop;
done_testing();
