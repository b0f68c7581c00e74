#!/usr/bin/env bash
# check.sh: the layout rules of README.md ("Layout"), checked on the built
# objects and the sources, as TAP.  Run from the top of the checkout after
# make (test/run-tests.sh does).
#
#  1. Dependencies point one way: no object in extension/ uses a symbol that
#     an object in coordinator/ defines, except the init calls _PG_init
#     makes (include/guid_worker.h).
#  2. No C source or header is over 600 lines.
#  3. The lease protocol is plain C: its objects use no symbol of the
#     postgres executable or of guid's other objects (test/unit/lease_test
#     links them without PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/../.."

allowed_inits="WorkerInit LeaseInit PublisherInit"
max_lines=600
plain_c_objects="coordinator/lease_protocol.o coordinator/lease_hold.o coordinator/lease_zk.o extension/core/resolve.o"

n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }

defined() { nm --defined-only "$@" 2>/dev/null | awk '$2 ~ /^[TDBRC]$/ {print $3}' | sort -u; }
undefined() { nm -u "$1" | awk '{print $2}' | sort -u; }

shopt -s nullglob globstar
ext_objs=(extension/**/*.o)
coord_objs=(coordinator/*.o)
if [ ${#ext_objs[@]} -eq 0 ] || [ ${#coord_objs[@]} -eq 0 ]; then
	echo "Bail out! no objects: run make first"
	exit 1
fi

# 1. extension/ -> coordinator/
coord_syms=$(defined "${coord_objs[@]}")
bad=""
for o in "${ext_objs[@]}"; do
	for s in $(comm -12 <(undefined "$o") <(echo "$coord_syms")); do
		case " $allowed_inits " in *" $s "*) continue ;; esac
		bad+="$o uses $s; "
	done
done
if [ -z "$bad" ]; then
	ok "no extension/ object uses a coordinator/ symbol but the init calls ($allowed_inits)"
else
	not_ok "extension/ objects use coordinator/ symbols: $bad"
fi

# the init calls are really the only ones, and they are used (the check can fail)
used=$(for o in "${ext_objs[@]}"; do comm -12 <(undefined "$o") <(echo "$coord_syms"); done | sort -u | tr '\n' ' ')
if [ "$used" = "$(echo $allowed_inits | tr ' ' '\n' | sort | tr '\n' ' ')" ]; then
	ok "extension/guid.o calls exactly the coordinator's init functions"
else
	not_ok "the coordinator symbols extension/ uses are: $used"
fi

# 2. file sizes
long=""
for f in extension/**/*.[ch] coordinator/*.[ch] include/*.h test/unit/*.c test/tap/*.c test/fleet/*.[ch]; do
	lines=$(wc -l < "$f")
	[ "$lines" -gt "$max_lines" ] && long+="$f ($lines lines); "
done
if [ -z "$long" ]; then
	ok "no C source or header is over $max_lines lines"
else
	not_ok "over $max_lines lines: $long"
fi

# 3. the lease protocol is plain C: nothing it uses is defined by the
#    postgres executable or by a guid object outside the plain-C set
postgres_bin="$(${PG_CONFIG:-pg_config} --bindir)/postgres"
pg_syms=$(nm -D --defined-only "$postgres_bin" | awk '{print $3}' | sort -u)
others=()
for o in "${ext_objs[@]}" "${coord_objs[@]}"; do
	case " $plain_c_objects " in *" $o "*) ;; *) others+=("$o") ;; esac
done
guid_syms=$(defined "${others[@]}")
for o in $plain_c_objects; do
	if [ ! -f "$o" ]; then
		not_ok "$o is built"
		continue
	fi
	pg=$(comm -12 <(undefined "$o") <(sort -u <(echo "$pg_syms") <(echo "$guid_syms")) | tr '\n' ' ')
	if [ -z "$pg" ]; then
		ok "$o uses nothing of PostgreSQL or of guid's PostgreSQL code"
	else
		not_ok "$o uses $pg"
	fi
done

echo "1..$n"
exit $fail
