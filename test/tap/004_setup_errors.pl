# How guid behaves when it is not set up right: not preloaded, no node id,
# an out-of-range node id, a corrupt reservation file.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use GuidTest;
use PostgreSQL::Test::Utils;
use Test::More;

# --- Not in shared_preload_libraries -----------------------------------------
my $plain = guid_node('plain', preload => 0, node_id => undef);
is($plain->safe_psql('postgres', q{SELECT '251678373175128106'::guid}), '251678373175128106',
	'without the preload the type works');
is($plain->safe_psql('postgres', q{SELECT node_id FROM guid_decode('251678373175128106')}), '7',
	'... and so does decoding');
for my $call ('SELECT guid_next()', 'SELECT guid_uuid()', 'SELECT * FROM guid.status')
{
	my ($ret, $out, $err) = $plain->psql('postgres', $call, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  55000: guid must be loaded via shared_preload_libraries/,
		"$call: not-preloaded error with SQLSTATE 55000");
	like($err, qr/HINT:  Add guid to shared_preload_libraries in postgresql.conf/, "$call: hint names the setting");
}
$plain->stop;

# --- Preloaded without a node id ---------------------------------------------
my $unassigned = guid_node('unassigned', node_id => undef);
my ($ret, $out, $err) = $unassigned->psql('postgres', 'SELECT guid_next()', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: guid has no node id/, 'guid.node_id = -1 without a lease: clear error');
is($unassigned->safe_psql('postgres', 'SELECT mode FROM guid.status'), 'unassigned', 'status says unassigned');
$unassigned->stop;

# --- Out-of-range node id: refused at startup ---------------------------------
for my $bad ('1024', '-2', 'seven')
{
	my $node = guid_node("bad_node_$bad", node_id => "'$bad'", start => 0);
	ok(!start_faked($node, fail_ok => 1), "guid.node_id = $bad: the server refuses to start");
	ok($node->log_contains(qr/invalid value for parameter "guid.node_id": "\Q$bad\E"/),
		"guid.node_id = $bad: the log says why");
}

# --- An unusable namespace: refused at startup --------------------------------
# "." and ".." are not ZooKeeper path components; "a/b" would be two.
for my $bad ('..', '.', 'a/b')
{
	my $node = guid_node("bad_ns_" . ($bad =~ tr{./}{ds}r), conf => "guid.namespace = '$bad'\n", start => 0);
	ok(!start_faked($node, fail_ok => 1), "guid.namespace = '$bad': the server refuses to start");
	ok($node->log_contains(qr/invalid value for parameter "guid.namespace": "\Q$bad\E"/),
		"guid.namespace = '$bad': the log says why");
}

# --- Corrupt reservation file: generation refuses, the server stays up -------
my $corrupt = guid_node('corrupt', node_id => 2);
$corrupt->safe_psql('postgres', 'SELECT guid_next()');
$corrupt->stop;
PostgreSQL::Test::Utils::append_to_file($corrupt->data_dir . '/guid.reservation', "garbage\n");
start_faked($corrupt);
($ret, $out, $err) = $corrupt->psql('postgres', 'SELECT guid_next()', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  XX001: guid generation is disabled: the reservation cannot be read/,
	'a corrupt reservation file disables generation with SQLSTATE XX001');
is($corrupt->safe_psql('postgres', 'SELECT mode FROM guid.status'), 'broken', 'status says broken');
like($corrupt->safe_psql('postgres', 'SELECT last_error FROM guid.status'), qr/guid.reservation" is corrupt/,
	'status names the file');
is($corrupt->safe_psql('postgres', q{SELECT '1'::guid}), '1', 'the server and the type still work');
$corrupt->stop;

done_testing();
