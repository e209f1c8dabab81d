#!/bin/sh
# Black-box tests of `lokr factorize-report` on the known deltas of
# tests/extract/helper.c mkpair: table and JSON agree, the budget rule holds,
# an exactly representable delta shows zero error at its own split, and the
# apply cost matches lycoris-format.md 4.2 for a worked case.
set -u
top_builddir=${top_builddir:-.}
LOKR="$top_builddir/tools/lokr"
HELPER="$top_builddir/tests/extract/helper"
T=$(mktemp -d "${TMPDIR:-/tmp}/lokr-report-test.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

"$HELPER" mkpair "$T" || exit 99
B="$T/base.safetensors"
TU="$T/tuned.safetensors"

"$LOKR" factorize-report --base "$B" --tuned "$TU" >"$T/r.txt" 2>"$T/r.err"
check "table: exit 0" "[ $? -eq 0 ]"
cat "$T/r.txt"
check "table: 4 changed layers, 8 choices each, overall" \
	"[ \$(grep -c '^layer ' '$T/r.txt') -eq 4 ] &&
	 [ \$(grep -c '^  16 unbal ' '$T/r.txt') -eq 5 ] && grep -q '^overall' '$T/r.txt'"
check "table: says how the budget is chosen" "grep -q 'budget' '$T/r.txt' && grep -q 'rank r = floor' '$T/r.txt'"

"$LOKR" factorize-report --base "$B" --tuned "$TU" --json >"$T/r.json" 2>&1
check "json: exit 0" "[ $? -eq 0 ]"
"$HELPER" report-json "$T/r.json" >"$T/r.rows"
check "json: parses, 4 layers x 8 choices" "[ $? -eq 0 ] && [ \$(wc -l <'$T/r.rows') -eq 32 ]"
# blk.exact is W1 (6x5) (x) W2 (8x8): exact at factor -1 balanced, with the
# budget = that split's own full parameter count (30 + 64)
row=$(awk '$1 == "blk.exact" && $2 == -1 && $3 == 0' "$T/r.rows")
check "exact delta: zero error at its own split, budget 94" \
	"lt \"$(echo "$row" | awk '{ print $4 }')\" 2e-6 && [ \"$(echo "$row" | awk '{ print $6 }')\" = 94 ]"
check "every choice within budget unless marked over" \
	"awk '\$5 > \$6 { bad = 1 } END { exit bad }' '$T/r.rows' ||
	 grep -q '\"over_budget\": true' '$T/r.json'"
check "errors are in [0, 1]" "awk '\$4 < 0 || \$4 > 1.0000001 { bad = 1 } END { exit bad }' '$T/r.rows'"

"$LOKR" factorize-report --base "$B" --tuned "$TU" --params 200 --layers 'blk.lowrank' --json \
	>"$T/p.json" 2>&1
check "--params 200: exit 0" "[ $? -eq 0 ]"
"$HELPER" report-json "$T/p.json" >"$T/p.rows"
check "--params sets the per-layer budget" "awk '\$6 != 200 { bad = 1 } END { exit bad }' '$T/p.rows'"
check "--params: parameters never exceed the budget here" \
	"awk '\$5 > 200 { bad = 1 } END { exit bad }' '$T/p.rows'"
# blk.lowrank, 64x64 at factor 4 balanced: W1 4x4, W2 16x16 (272 > 200), so
# W2 rank floor((200-16)/32) = 5, params 16 + 5*32 = 176
check "rank chosen from the budget (factor 4: rank 5, 176 params)" \
	"awk '\$2 == 4 && \$3 == 0 && \$5 == 176 { f = 1 } END { exit !f }' '$T/p.rows'"
# 64x64, factor 4 unbalanced: W1 16x4, W2 4x16; cheaper order W2-first:
# n1*m2*(n2 + m1) = 4*4*(16+16) = 512 multiply-adds per row
check "apply cost: 64x64 unbalanced factor 4 is 512 MACs/row" \
	"grep -A 12 'blk.lowrank' '$T/r.txt' | grep -q '^  4 unbal .* 512  W2-first'"

"$LOKR" factorize-report --base "$B" >"$T/x.out" 2>"$T/x.err"
check "missing --tuned: exit 2, one line" "[ $? -eq 2 ] && grep -q required '$T/x.err' && [ \$(wc -l <'$T/x.err') -eq 1 ]"
"$LOKR" factorize-report --base "$B" --tuned "$TU" --params -3 >"$T/x.out" 2>"$T/x.err"
check "--params -3: exit 2" "[ $? -eq 2 ] && grep -q positive '$T/x.err'"
"$LOKR" factorize-report --base "$B" --tuned "$TU" --bogus >"$T/x.out" 2>"$T/x.err"
check "unknown flag: exit 2, one line" "[ $? -eq 2 ] && grep -q 'unknown argument' '$T/x.err' && [ \$(wc -l <'$T/x.err') -eq 1 ]"
mkdir -p "$T/nan"
"$HELPER" mkpair "$T/nan" nan || exit 99
"$LOKR" factorize-report --base "$T/nan/base.safetensors" --tuned "$T/nan/tuned.safetensors" \
	>"$T/x.out" 2>"$T/x.err"
check "non-finite weight: exit 1, one line" \
	"[ $? -eq 1 ] && grep -q non-finite '$T/x.err' && [ \$(wc -l <'$T/x.err') -eq 1 ]"

echo "report.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
