# 051_gateway_review.pl: guid_gateway's edges found in review: JWT time
# claims that are not integers (RFC 7519 NumericDate may be fractional),
# an aud array holding something other than strings, query parameters
# with an encoded NUL, and SIGTERM while keep-alive clients keep asking.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use GuidTest;
use Digest::SHA qw(hmac_sha256);
use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use POSIX ();
use Time::HiRes qw(time sleep);

my (@harnesses, @client_pids);
END
{
	my $exit = $?;
	kill 'KILL', @client_pids if @client_pids;
	eval { $_->kill_kill(grace => 5) } for @harnesses;
	$? = $exit;
}

my $node = guid_node('gwr', node_id => 6, conf => "max_connections = 40\n");
my $dir = PostgreSQL::Test::Utils::tempdir();
my $secret_text = 'review-secret';
PostgreSQL::Test::Utils::append_to_file("$dir/hs256.secret", "$secret_text\n");
chmod 0600, "$dir/hs256.secret";

# a token whose claims are given as JSON text, so that numbers keep their form
sub jwt_raw
{
	my ($claims_json) = @_;
	my $in = encode_base64url(encode_json({ alg => 'HS256', typ => 'JWT' })) . '.'
	  . encode_base64url($claims_json);
	return "$in." . encode_base64url(hmac_sha256($in, $secret_text));
}
sub jwt_claims { return jwt_raw(encode_json({ iss => 'guid-test', aud => 'guid-api', sub => 'rev', @_ })); }

my $gw_port = PostgreSQL::Test::Cluster::get_free_port();
my $conf = "$dir/gateway.conf";
my $log = "$dir/gateway.log";
sub write_conf
{
	my ($extra) = @_;
	unlink $conf;
	PostgreSQL::Test::Utils::append_to_file($conf, "listen_address = 127.0.0.1\nport = $gw_port\n"
		  . 'conninfo = host=' . $node->host . ' port=' . $node->port . " dbname=postgres\n"
		  . "pool_size = 2\nthreads = 4\njwt_hs256_secret_file = $dir/hs256.secret\n"
		  . "jwt_issuer = guid-test\njwt_audience = guid-api\njwt_leeway = 5\n"
		  . "limit.load = 100000000 100000000\nlimit.slow = 0.000000001 1000\n" . ($extra // ''));
}

my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 60);
sub url { return "http://127.0.0.1:$gw_port$_[0]"; }
sub call
{
	my ($method, $path, $token) = @_;
	my %h;
	$h{Authorization} = "Bearer $token" if defined $token;
	my $r = $http->request($method, url($path), { headers => \%h });
	$r->{json} = eval { decode_json($r->{content}) };
	return $r;
}
sub start_gateway
{
	my $h = IPC::Run::start([ 'guid_gateway', '--config', $conf ], '>', $log, '2>&1');
	push @harnesses, $h;
	for (1 .. 300)
	{
		my $r = HTTP::Tiny->new(timeout => 5)->get(url('/healthz'));
		return $h if $r->{status} == 200 || $r->{status} == 503;
		sleep 0.05;
	}
	die "guid_gateway did not start: " . slurp_file($log);
}
sub ids_issued { return $node->safe_psql('postgres', 'SELECT ids_issued FROM guid.status'); }

write_conf();
my $gw = start_gateway();

# --- JWT NumericDate claims ----------------------------------------------------------
my $now = int(time);
my $r = call('POST', '/guid/generate', jwt_raw(qq({"iss":"guid-test","aud":"guid-api","sub":"rev","exp":@{[$now + 300]}.5})));
is($r->{status}, 200, 'an exp with a fraction (RFC 7519 NumericDate), in the future: 200');
my $issued = ids_issued();
$r = call('POST', '/guid/generate', jwt_raw(qq({"iss":"guid-test","aud":"guid-api","sub":"rev","exp":@{[$now + 600]},"nbf":@{[$now + 300]}.5})));
is($r->{status}, 401, 'an nbf with a fraction, 5 minutes ahead: 401 (not ignored)');
$r = call('POST', '/guid/generate', jwt_raw(qq({"iss":"guid-test","aud":"guid-api","sub":"rev","exp":@{[$now + 600]},"nbf":"@{[$now + 300]}"})));
is($r->{status}, 401, 'an nbf that is a string: 401 (not ignored)');
$r = call('POST', '/guid/generate', jwt_raw(qq({"iss":"guid-test","aud":"guid-api","sub":"rev","exp":@{[$now - 600]}.5})));
is($r->{status}, 401, 'an exp with a fraction, 10 minutes ago: 401');
$r = call('POST', '/guid/generate', jwt_raw(qq({"iss":"guid-test","aud":"guid-api","sub":"rev","exp":9223372036854775807})));
is($r->{status}, 200, 'an exp at the end of int64: 200 (no overflow with the leeway)');
is(ids_issued(), $issued + 1, '... the refused tokens generated nothing');

# --- aud: a string or an array of strings (RFC 7519 4.1.3) -----------------------------
$r = call('POST', '/guid/generate', jwt_claims(exp => $now + 300, aud => [ { 'guid-api' => 1 } ]));
is($r->{status}, 401, 'aud an array holding an object that names the audience: 401');
$r = call('POST', '/guid/generate', jwt_claims(exp => $now + 300, aud => [ [ 'guid-api' ] ]));
is($r->{status}, 401, 'aud an array holding an array that holds the audience: 401');
$r = call('POST', '/guid/generate', jwt_claims(exp => $now + 300, aud => [ 'x"guid-api"' ]));
is($r->{status}, 401, 'aud an array holding a string that quotes the audience: 401');
$r = call('POST', '/guid/generate', jwt_claims(exp => $now + 300, aud => [ 'other', 'guid-api' ]));
is($r->{status}, 200, 'aud an array holding the audience: 200');

# --- query parameters: an encoded NUL is refused, not cut short -------------------------
my $tok = jwt_claims(exp => $now + 300);
$issued = ids_issued();
$r = call('POST', '/guid/generate?service=a%00b', $tok);
is($r->{status}, 400, 'service=a%00b: 400');
is(ref $r->{json} eq 'HASH' ? $r->{json}{error} : '', 'invalid_argument', '... invalid_argument');
$r = call('POST', '/guid/generate?count=2%001000', $tok);
is($r->{status}, 400, 'count=2%001000: 400');
$r = call('POST', '/guid/generate?type=uuid%00x', $tok);
is($r->{status}, 400, 'type=uuid%00x: 400');
is(ids_issued(), $issued, '... nothing generated');
is($node->safe_psql('postgres', "SELECT count(*) FROM guid.audit WHERE service = 'a'"), 0,
	'... and nothing recorded under the cut service');

# --- a parameter given twice is ambiguous: 400, not the first one silently --------------
$issued = ids_issued();
$r = call('POST', '/guid/generate?count=1&count=1000', $tok);
is($r->{status}, 400, 'count=1&count=1000: 400');
like(ref $r->{json} eq 'HASH' ? $r->{json}{message} : '', qr/more than once/, '... saying the parameter is given twice');
$r = call('POST', '/guid/generate?service=a&service=b', $tok);
is($r->{status}, 400, 'service=a&service=b: 400');
is(ids_issued(), $issued, '... nothing generated');

# --- Retry-After of a very slow bucket: a whole number of seconds, not an overflow ---------
my $slow = jwt_claims(sub => 'slow', exp => $now + 300);
is(call('POST', '/guid/generate?count=1000', $slow)->{status}, 200, 'limit.slow: count=1000 spends its burst');
$r = call('POST', '/guid/generate?count=1000', $slow);
is($r->{status}, 429, '... the next count=1000: 429');
like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
	'... with a positive Retry-After (1e12 s clamped, not a wrapped int)');

# --- a client that disconnects while its request waits -----------------------------------
# Its ID is still issued and recorded (like a SQL client whose connection
# drops after guid_next() commits), nobody receives it, and the gateway
# goes on: README, "How requests reach PostgreSQL".
my $lock = $node->background_psql('postgres');
$lock->query_safe('BEGIN; LOCK TABLE guid.audit IN ACCESS EXCLUSIVE MODE;');
my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw_port") or die "connect: $!";
print $sock "POST /guid/generate?service=gone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n"
  . "Content-Length: 0\r\n\r\n";
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'guid_gateway' AND wait_event_type = 'Lock'")
  or die 'the request did not block';
close $sock;
$lock->query_safe('COMMIT;');
$lock->quit;
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM guid.audit WHERE service = 'gone'")
  or die 'the ID of the gone client was not recorded';
pass('a client gone while its request waited: its ID is issued and recorded all the same');
is(call('POST', '/guid/generate', $tok)->{status}, 200, '... and the gateway goes on serving');

# --- SIGTERM while keep-alive clients keep asking ----------------------------------------
# Every request gets an answer (200, or 503 once draining), the gateway
# exits 0 within drain_timeout, and no ID is handed out twice.
write_conf("drain_timeout = 2\n");
$gw->signal('TERM');
$gw->finish;
$gw = start_gateway();
my $load = jwt_claims(sub => 'load', exp => $now + 600);
my @pids;
for my $i (1 .. 6)
{
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		my $c = HTTP::Tiny->new(keep_alive => 1, timeout => 30);
		open my $fh, '>', "$dir/load.$i" or POSIX::_exit(1);
		$fh->autoflush(1);
		while (1)
		{
			my $res = $c->request('POST', url('/guid/generate?count=5'),
				{ headers => { Authorization => "Bearer $load" } });
			print $fh "S $res->{status}\n" . join('', map { "I $_\n" } $res->{content} =~ /"guid":"(\d+)"/g);
			# 599: HTTP::Tiny's own (connection refused or closed): the gateway is gone
			last if $res->{status} == 599;
		}
		close $fh;
		POSIX::_exit(0);
	}
	push @pids, $pid;
	push @client_pids, $pid;
}
# wait until each client has had answers
for (1 .. 1200)
{
	last if 6 == grep { -s "$dir/load.$_" && (() = slurp_file("$dir/load.$_") =~ /^S 200/mg) >= 20 } 1 .. 6;
	sleep 0.05;
}
my $gw_pid = $gw->{KIDS}[0]{PID};
$gw->signal('TERM');
# drain_timeout is 2 s: give it far more, then call it hung
my $gone = 0;
for (1 .. 1200)
{
	$gone = 1, last if waitpid($gw_pid, POSIX::WNOHANG()) == $gw_pid;
	sleep 0.05;
}
my $rc = $gone ? $? : -1;
kill 'KILL', $gw_pid unless $gone;
@harnesses = grep { $_ != $gw } @harnesses;	# reaped here, not by IPC::Run
ok($gone, 'SIGTERM under keep-alive load: the gateway exits (does not hang)');
is($rc, 0, '... with status 0');
unlike(slurp_file($log), qr/suspended connections|panic|abort/i, '... without libmicrohttpd panicking');
waitpid($_, 0) for @pids;
@client_pids = ();
my (%status, %seen, $dups);
for my $i (1 .. 6)
{
	for (split /\n/, slurp_file("$dir/load.$i"))
	{
		$status{$1}++ if /^S (\d+)/;
		$dups++ if /^I (\d+)/ && $seen{$1}++;
	}
}
note('statuses under SIGTERM: ' . join(', ', map { "$_ x $status{$_}" } sort keys %status));
is(scalar(grep { $_ != 200 && $_ != 503 && $_ != 599 } keys %status), 0,
	'... every answer was 200, 503 (draining) or the connection closed');
is($dups // 0, 0, '... and no ID came twice');

done_testing();
