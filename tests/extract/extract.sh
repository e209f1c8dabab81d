#!/bin/sh
# Black-box tests of `lokr extract`: known deltas (tests/extract/helper.c
# mkpair) are extracted, the file is checked key by key, merged back with
# `lokr merge`, and the merged weights must match the tuned ones to within
# the error extract reported for each layer.  Bad input must give one clear
# line on stderr and exit status 1 (bad data) or 2 (usage).
set -u
top_builddir=${top_builddir:-.}
LOKR="$top_builddir/tools/lokr"
HELPER="$top_builddir/tests/extract/helper"
T=$(mktemp -d "${TMPDIR:-/tmp}/lokr-extract-test.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

"$HELPER" mkpair "$T" || exit 99
B="$T/base.safetensors"
TU="$T/tuned.safetensors"

# rel_err column (last) of layer $2 in extract output $1
relerr() { awk -v n="$2" '$1 == n { print $NF }' "$1"; }
# is $1 < $2 (floats)?
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
# |$1 - $2| < $3
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < t) }'; }

# Merge $1 onto the base and compare every changed layer with the tuned
# weights: the merged error must equal the reported one (abs tol 1e-5,
# relative 1e-3).
merge_matches() {
	out=$1 adapter=$2 name=$3
	if ! "$LOKR" merge --base "$B" --adapter "$adapter" -o "$T/merged.safetensors" \
		>"$T/merge.out" 2>"$T/merge.err"; then
		bad "$name: lokr merge failed: $(cat "$T/merge.err")"
		return
	fi
	"$HELPER" compare "$B" "$TU" "$T/merged.safetensors" >"$T/cmp.out" || {
		bad "$name: compare failed"
		return
	}
	n=0 mism=0
	for layer in $(awk '/^[a-z]/ && $NF ~ /e[-+]/ { print $1 }' "$out"); do
		want=$(relerr "$out" "$layer")
		got=$(awk -v n="$layer" '$1 == n { print $2 }' "$T/cmp.out")
		tol=$(awk -v w="$want" 'BEGIN { print 1e-5 + 1e-3 * w }')
		n=$((n + 1))
		if ! close "$got" "$want" "$tol"; then
			mism=$((mism + 1))
			echo "  $layer: reported $want, merged back $got"
		fi
	done
	# layers extract skipped must merge to exactly the base
	if grep -q 'unchanged DIFFERENT' "$T/cmp.out"; then
		mism=$((mism + 1))
		echo "  an unchanged layer was modified"
	fi
	check "$name: $n layer(s) merge back to within the reported error" \
		"[ $n -gt 0 ] && [ $mism -eq 0 ]"
}

# --- full factors, factor -1 (default) ---
"$LOKR" extract --base "$B" --tuned "$TU" -o "$T/full.safetensors" >"$T/full.out" 2>"$T/full.err"
check "extract full: exit 0" "[ $? -eq 0 ]"
cat "$T/full.out"
check "exact linear Kronecker delta round-trips (~1e-6)" \
	"lt \"$(relerr "$T/full.out" blk.exact)\" 2e-6"
check "exact conv Kronecker delta round-trips (~1e-6)" \
	"lt \"$(relerr "$T/full.out" net.conv)\" 2e-6"
check "rank-2 W2 is still exact with full factors" \
	"lt \"$(relerr "$T/full.out" blk.lowrank)\" 2e-6"
check "random delta has a large error" "lt 0.5 \"$(relerr "$T/full.out" blk.random)\""
check "unchanged layer skipped" "! grep -q '^blk.same ' '$T/full.out'"
check "no progress bar when stderr is not a terminal" "! grep -q 'extract \\[' '$T/full.err'"
"$HELPER" keys "$T/full.safetensors" >"$T/full.keys"
check "keys: linear W1/W2 full" \
	"grep -q '^lycoris_blk_exact.lokr_w1 F32 (6,5)' '$T/full.keys' &&
	 grep -q '^lycoris_blk_exact.lokr_w2 F32 (8,8)' '$T/full.keys'"
check "keys: conv W2 is 4-D (m2,n2,kh,kw)" \
	"grep -q '^lycoris_net_conv.lokr_w2 F32 (4,4,3,3)' '$T/full.keys'"
check "keys: alpha is a 0-d F32" "grep -q '^lycoris_net_conv.alpha F32 ()' '$T/full.keys'"
check "keys: 4 modules, nothing for the unchanged layer" \
	"[ \$(grep -c '\\.alpha ' '$T/full.keys') -eq 4 ] && ! grep -q blk_same '$T/full.keys'"
check "metadata: kohya-style" \
	"grep -q '^meta ss_network_module lycoris.kohya' '$T/full.keys' &&
	 grep -q '^meta ss_network_args .*\"algo\":\"lokr\"' '$T/full.keys' &&
	 grep -q '^meta ss_network_args .*\"factor\":\"-1\"' '$T/full.keys' &&
	 grep -q '^meta ss_network_dim ' '$T/full.keys' &&
	 grep -q '^meta ss_network_alpha ' '$T/full.keys'"
merge_matches "$T/full.out" "$T/full.safetensors" "full"

# progress bar: drawn on a terminal (util-linux script gives a pty), never
# into a pipe or file (checked above)
if command -v script >/dev/null 2>&1; then
	script -qec "'$LOKR' extract --base '$B' --tuned '$TU' -o '$T/tty.safetensors' >/dev/null" \
		"$T/typescript" >/dev/null 2>&1
	check "progress bar drawn on a terminal" "grep -q 'extract \\[' '$T/typescript'"
fi

# --- rank 2: W2 low-rank, alpha = rank ---
"$LOKR" extract --base "$B" --tuned "$TU" -o "$T/r2.safetensors" --rank 2 >"$T/r2.out" 2>&1
check "extract --rank 2: exit 0" "[ $? -eq 0 ]"
cat "$T/r2.out"
check "rank-limited Kronecker delta recovered with --rank 2" \
	"lt \"$(relerr "$T/r2.out" blk.lowrank)\" 2e-6"
check "rank 2 cannot represent the full-rank W2 of blk.exact" \
	"lt 1e-3 \"$(relerr "$T/r2.out" blk.exact)\""
"$HELPER" keys "$T/r2.safetensors" >"$T/r2.keys"
check "keys: lokr_w2_a (m2,r) / lokr_w2_b (r,n2) and alpha = rank" \
	"grep -q '^lycoris_blk_lowrank.lokr_w2_a F32 (8,2)' '$T/r2.keys' &&
	 grep -q '^lycoris_blk_lowrank.lokr_w2_b F32 (2,8)' '$T/r2.keys' &&
	 grep -q '^lycoris_blk_lowrank.alpha F32 () 2$' '$T/r2.keys'"
check "keys: conv low-rank w2_b is 2-D (r, n2*kk)" \
	"grep -q '^lycoris_net_conv.lokr_w2_b F32 (2,36)' '$T/r2.keys'"
merge_matches "$T/r2.out" "$T/r2.safetensors" "rank 2"

# --- unbalanced, factor 4, one layer glob ---
"$LOKR" extract --base "$B" --tuned "$TU" -o "$T/unb.safetensors" --factor 4 --unbalanced \
	--layers 'blk.*' >"$T/unb.out" 2>&1
check "extract --factor 4 --unbalanced --layers: exit 0" "[ $? -eq 0 ]"
cat "$T/unb.out"
"$HELPER" keys "$T/unb.safetensors" >"$T/unb.keys"
check "unbalanced split: W1 (12,4), W2 (4,10) for 48x40 at factor 4" \
	"grep -q '^lycoris_blk_exact.lokr_w1 F32 (12,4)' '$T/unb.keys' &&
	 grep -q '^lycoris_blk_exact.lokr_w2 F32 (4,10)' '$T/unb.keys'"
check "--layers glob excludes net.conv" "! grep -q net_conv '$T/unb.keys'"
check "metadata records unbalanced factorization" \
	"grep -q 'unbalanced_factorization\":\"True' '$T/unb.keys'"
merge_matches "$T/unb.out" "$T/unb.safetensors" "unbalanced factor 4"

# --- decompose both, --min-rel-change ---
"$LOKR" extract --base "$B" --tuned "$TU" -o "$T/both.safetensors" --rank 1 --decompose-both \
	--factor 8 >"$T/both.out" 2>&1
check "extract --rank 1 --decompose-both: exit 0" "[ $? -eq 0 ]"
"$HELPER" keys "$T/both.safetensors" >"$T/both.keys"
check "decompose-both writes lokr_w1_a/_b" "grep -q 'lokr_w1_a F32' '$T/both.keys'"
merge_matches "$T/both.out" "$T/both.safetensors" "decompose both"
"$LOKR" extract --base "$B" --tuned "$TU" -o "$T/min.safetensors" --min-rel-change 0.06 \
	>"$T/min.out" 2>&1
check "--min-rel-change 0.06 skips the small random delta" \
	"[ $? -eq 0 ] && ! grep -q '^blk.random ' '$T/min.out' && grep -q '^blk.exact ' '$T/min.out'"

# --- bad input: one line on stderr, exit 1 (data) or 2 (usage), no crash ---
expect_fail() { # name status pattern -- args...
	name=$1 want=$2 pat=$3
	shift 4
	"$LOKR" "$@" >"$T/bad.out" 2>"$T/bad.err"
	st=$?
	lines=$(wc -l <"$T/bad.err")
	if [ "$st" -eq "$want" ] && grep -q -- "$pat" "$T/bad.err" && [ "$lines" -eq 1 ]; then
		ok "$name (exit $st: $(head -n 1 "$T/bad.err"))"
	else
		bad "$name: exit $st, stderr: $(cat "$T/bad.err")"
	fi
}
expect_fail "no --tuned" 2 "required" -- extract --base "$B" -o "$T/x.safetensors"
expect_fail "unknown flag" 2 "unknown argument '--frobnicate'" -- \
	extract --base "$B" --tuned "$TU" -o "$T/x.safetensors" --frobnicate
expect_fail "--rank without value" 2 "needs a value" -- \
	extract --base "$B" --tuned "$TU" -o "$T/x.safetensors" --rank
expect_fail "--rank 0" 2 "positive" -- \
	extract --base "$B" --tuned "$TU" -o "$T/x.safetensors" --rank 0
expect_fail "--rank x" 2 "not an integer" -- \
	extract --base "$B" --tuned "$TU" -o "$T/x.safetensors" --rank x
expect_fail "--rank with --full" 2 "exclude" -- \
	extract --base "$B" --tuned "$TU" -o "$T/x.safetensors" --rank 2 --full
expect_fail "--factor 0" 2 "factor" -- \
	extract --base "$B" --tuned "$TU" -o "$T/x.safetensors" --factor 0
expect_fail "missing base file" 1 "nonexistent" -- \
	extract --base "$T/nonexistent.safetensors" --tuned "$TU" -o "$T/x.safetensors"
expect_fail "--layers matching nothing" 1 "no base layer matches" -- \
	extract --base "$B" --tuned "$TU" -o "$T/x.safetensors" --layers 'zzz*'
expect_fail "identical models" 1 "nothing to extract" -- \
	extract --base "$B" --tuned "$B" -o "$T/x.safetensors"
mkdir -p "$T/nan" "$T/shape" "$T/missing"
"$HELPER" mkpair "$T/nan" nan && "$HELPER" mkpair "$T/shape" shape &&
	"$HELPER" mkpair "$T/missing" missing || exit 99
expect_fail "non-finite tuned weight" 1 "net.conv: non-finite value nan .* in tuned" -- \
	extract --base "$T/nan/base.safetensors" --tuned "$T/nan/tuned.safetensors" -o "$T/x.safetensors"
expect_fail "shape mismatch" 1 "blk.random: shape (32, 24) in base .* but (32, 12) in tuned" -- \
	extract --base "$T/shape/base.safetensors" --tuned "$T/shape/tuned.safetensors" \
	-o "$T/x.safetensors"
expect_fail "layer missing in tuned" 1 "has no layer blk.random" -- \
	extract --base "$T/missing/base.safetensors" --tuned "$T/missing/tuned.safetensors" \
	-o "$T/x.safetensors"
check "no output file after failures" "[ ! -e '$T/x.safetensors' ]"

echo "extract.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
