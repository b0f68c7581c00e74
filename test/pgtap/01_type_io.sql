-- The guid type: text and binary input/output, and every class of bad input.
BEGIN;
SELECT plan(22);

SELECT is('0'::guid::text, '0', 'zero round-trips through text');
SELECT is('9223372036854775807'::guid::text, '9223372036854775807', '2^63-1 round-trips through text');
SELECT is('251678373175128106'::guid::text, '251678373175128106', 'a generated-looking value round-trips');
SELECT is(E'  42\n'::guid::text, '42', 'surrounding whitespace is accepted, as for int8');
SELECT is('00042'::guid::text, '42', 'leading zeros are accepted');

SELECT throws_ok($$SELECT 'abc'::guid$$, '22P02',
	'invalid input syntax for type guid: "abc"', 'garbage is rejected');
SELECT throws_ok($$SELECT ''::guid$$, '22P02',
	'invalid input syntax for type guid: ""', 'the empty string is rejected');
SELECT throws_ok($$SELECT '   '::guid$$, '22P02',
	'invalid input syntax for type guid: "   "', 'blanks are rejected');
SELECT throws_ok($$SELECT '-1'::guid$$, '22P02',
	'invalid input syntax for type guid: "-1"', 'a negative value is rejected');
SELECT throws_ok($$SELECT '-0'::guid$$, '22P02',
	'invalid input syntax for type guid: "-0"', 'a minus sign is rejected even on zero');
SELECT throws_ok($$SELECT '+1'::guid$$, '22P02',
	'invalid input syntax for type guid: "+1"', 'a plus sign is rejected');
SELECT throws_ok($$SELECT '12a'::guid$$, '22P02',
	'invalid input syntax for type guid: "12a"', 'trailing garbage is rejected');
SELECT throws_ok($$SELECT '1 2'::guid$$, '22P02',
	'invalid input syntax for type guid: "1 2"', 'inner whitespace is rejected');
SELECT throws_ok($$SELECT '1e3'::guid$$, '22P02',
	'invalid input syntax for type guid: "1e3"', 'an exponent is rejected');
SELECT throws_ok($$SELECT '0x10'::guid$$, '22P02',
	'invalid input syntax for type guid: "0x10"', 'hexadecimal is rejected');
SELECT throws_ok($$SELECT '9223372036854775808'::guid$$, '22003',
	'value "9223372036854775808" is out of range for type guid', '2^63 is out of range');
SELECT throws_ok($$SELECT '123456789012345678901234567890'::guid$$, '22003',
	'value "123456789012345678901234567890" is out of range for type guid', 'a huge value is out of range');

-- Binary: send is int8's big-endian format; COPY BINARY round-trips.
SELECT is(guid_send('258'::guid), '\x0000000000000102'::bytea, 'send writes 8 bytes, big-endian');

CREATE TEMP TABLE io_src (id guid);
INSERT INTO io_src VALUES ('0'), ('1'), ('251678373175128106'), ('9223372036854775807');
CREATE TEMP TABLE io_dst (id guid);
DO $$
DECLARE
	f text := current_setting('data_directory') || '/pgtap_guid_io.bin';
BEGIN
	EXECUTE format('COPY io_src TO %L (FORMAT binary)', f);
	EXECUTE format('COPY io_dst FROM %L (FORMAT binary)', f);
END
$$;
SELECT set_eq('SELECT id FROM io_dst', 'SELECT id FROM io_src', 'COPY (FORMAT binary) round-trips');

CREATE TEMP TABLE io_text (id guid);
DO $$
DECLARE
	f text := current_setting('data_directory') || '/pgtap_guid_io.txt';
BEGIN
	EXECUTE format('COPY io_src TO %L', f);
	EXECUTE format('COPY io_text FROM %L', f);
END
$$;
SELECT set_eq('SELECT id FROM io_text', 'SELECT id FROM io_src', 'COPY (FORMAT text) round-trips');

-- A negative int8 in binary input is refused by guid_recv.
CREATE TEMP TABLE io_neg AS SELECT (-5)::bigint AS v;
DO $$
BEGIN
	EXECUTE format('COPY io_neg TO %L (FORMAT binary)',
				   current_setting('data_directory') || '/pgtap_guid_neg.bin');
END
$$;
SELECT throws_ok(format('COPY io_dst FROM %L (FORMAT binary)',
						current_setting('data_directory') || '/pgtap_guid_neg.bin'),
	'22003', 'value "-5" is out of range for type guid', 'binary input rejects a negative value');
SELECT is((SELECT count(*) FROM io_dst), 4::bigint, 'the refused COPY wrote nothing');

SELECT * FROM finish();
ROLLBACK;
