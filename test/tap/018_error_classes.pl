# No error guid raises is of SQLSTATE class 08 (connection exception):
# drivers and poolers read class 08 as "this PostgreSQL connection is dead"
# and evict it, so an outside service being down must not use it.  The
# behaviour is tested where each error is raised (006: a fenced lease,
# 008: Redis down); this scans every ereport of the library for a class-08
# code, so that a new one cannot slip in.
use strict;
use warnings;

use FindBin;
use File::Find;
use Test::More;

my $src = "$FindBin::RealBin/../../src-c";
ok(-d "$src/extension" && -d "$src/coordinator", 'the C sources are here to be read') or BAIL_OUT("no $src");
my @class08 = qw(ERRCODE_CONNECTION_EXCEPTION ERRCODE_CONNECTION_DOES_NOT_EXIST ERRCODE_CONNECTION_FAILURE
  ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION ERRCODE_SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION
  ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN ERRCODE_PROTOCOL_VIOLATION);
my $pattern = join('|', map { quotemeta } @class08) . q{|MAKE_SQLSTATE\(\s*'0'\s*,\s*'8'};
my ($files, @found) = (0);
find(
	sub {
		return unless /\.c$/;
		$files++;
		open(my $fh, '<', $_) or die "$File::Find::name: $!";
		while (my $line = <$fh>)
		{
			push @found, "$File::Find::name:$.: $line" if $line =~ /$pattern/;
		}
	},
	"$src/extension", "$src/coordinator");
cmp_ok($files, '>', 10, "read $files C files");
is(scalar(@found), 0, 'no class-08 SQLSTATE in any of them') or diag(join('', @found));

done_testing();
