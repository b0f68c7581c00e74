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

# --- Invalid restart-only settings: refused at startup, never a default -------
# PostgreSQL alone would log a WARNING and run on the default: a mistyped
# namespace would become "default", node id '010' would become 8.
my @bad = (
	[ 'guid.node_id', '1024' ], [ 'guid.node_id', '-2' ], [ 'guid.node_id', 'seven' ],
	[ 'guid.node_id', '010' ], [ 'guid.node_id', '0x3ff' ], [ 'guid.node_id', '3.7' ],
	[ 'guid.namespace', '..' ], [ 'guid.namespace', '.' ], [ 'guid.namespace', 'a/b' ],
	[ 'guid.namespace', '' ], [ 'guid.namespace', 'n' x 10000 ],
	[ 'guid.slot_name', 'Bad/Name' ],
	[ 'guid.zookeeper_session_timeout', '5' ],
	[ 'guid.zookeeper', 'host:99999' ], [ 'guid.zookeeper', '127.0.0.1:99999' ],
	[ 'guid.zookeeper', '127.0.0.1' ], [ 'guid.zookeeper', '127.0.0.1:2181/guid/../x' ],
	[ 'guid.kafka_brokers', '127.0.0.1:99999' ], [ 'guid.kafka_brokers', 'a:1,,b:2' ],
	[ 'guid.kafka_topic', 't' x 238 ], [ 'guid.kafka_topic', 'bad topic' ],
	[ 'guid.kafka_topic', '..' ], [ 'guid.kafka_topic', '' ],
	[ 'guid.database', '' ]);
# One cluster tries each value in turn, from an included file.
my $strict = guid_node('strict_settings', node_id => 3, conf => "include_if_exists = 'case.conf'\n", start => 0);
my $case_conf = $strict->data_dir . '/case.conf';
for my $case (@bad)
{
	my ($name, $value) = @$case;
	my $shown = length($value) > 20 ? substr($value, 0, 20) . '...' : $value;
	open(my $fh, '>', $case_conf) or die "$case_conf: $!";
	print $fh "$name = '$value'\n";
	close($fh);
	my $offset = -s $strict->logfile // 0;
	ok(!start_faked($strict, fail_ok => 1), "$name = '$shown': the server refuses to start");
	like(PostgreSQL::Test::Utils::slurp_file($strict->logfile, $offset),
		qr/invalid value for parameter "\Q$name\E": "\Q$value\E"/,
		"$name = '$shown': the log names the setting and the value");
}
# Valid lists start.
open(my $fh, '>', $case_conf) or die "$case_conf: $!";
print $fh "guid.zookeeper = '[::1]:2181,zk-2.example:2181,127.0.0.1:2181/guid/prod'\n";
print $fh "guid.kafka_topic = '" . ('t' x 237) . "'\n";
close($fh);
ok(start_faked($strict, fail_ok => 1), 'a valid ZooKeeper list with a chroot and a 237-character topic: the server starts');
$strict->stop;
unlink($case_conf);
# Plain decimal node ids with blanks or a sign are still fine.
my $spaced = guid_node('spaced_node', node_id => "' 7'");
is($spaced->safe_psql('postgres', 'SELECT node_id FROM guid.status'), '7', "guid.node_id = ' 7' is node 7");
$spaced->stop;

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
