# GuidTest.pm: helpers shared by guid's Perl TAP tests.
#
# Scratch clusters come from PostgreSQL::Test::Cluster (shipped with
# postgresql-server-dev-15).  A cluster can run under libfaketime with a
# timestamp file, so that a test moves its clock while it runs.
package GuidTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Exporter 'import';
our @EXPORT = qw(guid_node set_fake_time start_faked);

my $libfaketime = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

# guid_node($name, %opts): a new cluster with guid preloaded.
#   node_id   => guid.node_id (default 1; undef leaves it unset)
#   preload   => 0 to leave shared_preload_libraries empty
#   conf      => extra postgresql.conf text
#   faketime  => 1 to run the postmaster under libfaketime
#   start     => 0 to return it unstarted
sub guid_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $conf = "max_connections = 20\n";
	$conf .= "shared_preload_libraries = 'guid'\n" unless defined $opts{preload} && !$opts{preload};
	$conf .= "guid.node_id = " . ($opts{node_id} // 1) . "\n"
	  if !exists $opts{node_id} || defined $opts{node_id};
	$conf .= $opts{conf} if $opts{conf};
	$node->append_conf('postgresql.conf', $conf);

	if ($opts{faketime})
	{
		$node->{guid_faketime} = $node->basedir . '/faketime';
		set_fake_time($node, '+0');
	}
	return $node if defined $opts{start} && !$opts{start};

	start_faked($node);
	$node->safe_psql('postgres', 'CREATE EXTENSION guid');
	return $node;
}

# set_fake_time($node, $spec): what the node's clock says from now on:
# '+0', '-10s' (offset, running) or '2026-01-01 00:00:00' (frozen, UTC).
sub set_fake_time
{
	my ($node, $spec) = @_;
	die "node was not made with faketime => 1" unless $node->{guid_faketime};
	PostgreSQL::Test::Utils::append_to_file($node->{guid_faketime} . '.new', "$spec\n");
	rename($node->{guid_faketime} . '.new', $node->{guid_faketime}) or die "rename: $!";
}

# start_faked($node, %start_opts): start the node, under libfaketime when it
# was made with faketime => 1.  Only the postmaster (and so its children)
# gets the library; the test's own clients keep the real clock.
sub start_faked
{
	my ($node, %start_opts) = @_;
	local $ENV{TZ} = 'UTC';
	if ($node->{guid_faketime})
	{
		local $ENV{LD_PRELOAD} = $libfaketime;
		local $ENV{FAKETIME_TIMESTAMP_FILE} = $node->{guid_faketime};
		local $ENV{FAKETIME_NO_CACHE} = '1';
		local $ENV{FAKETIME_DONT_FAKE_MONOTONIC} = '1';
		return $node->start(%start_opts);
	}
	return $node->start(%start_opts);
}

1;
