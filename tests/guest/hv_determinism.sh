#!/bin/bash
# hv_determinism.sh BUILD_DIR [HV] - `hv run --deterministic` is reproducible end to end.
#
# Each guest runs twice under --accel emu --deterministic; the console output (stdout),
# stderr and exit status must be byte-identical between the runs. dirtyrate is the one
# that would notice a leak of host time: its achieved rate and page count come from TSC
# readings, which in deterministic mode derive from the instruction count. (Without
# --deterministic they normally differ; that is not asserted.) tsc_khz= tells the guest
# runtime the TSC runs at 10 MHz, so that a guest second is 1e7 instructions rather than
# 1e9 and the whole check takes about a second.
set -u
BUILD=${1:?usage: hv_determinism.sh BUILD_DIR [HV]}
HV=${2:-$BUILD/hv}
G=$BUILD/guest
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0

if [ ! -x "$HV" ]; then
	echo "not ok - no hv binary at $HV"
	echo "0 passed, 1 failed"
	exit 1
fi

# run TAG CMDLINE GUEST : start a deterministic run in the background, output in $TMP/TAG.*
run() {
	{
		timeout 120 "$HV" run --accel emu --deterministic --memory 64M --cmdline "$2" \
			"$G/$3.elf" </dev/null >"$TMP/$1.out" 2>"$TMP/$1.err"
		echo $? >"$TMP/$1.rc"
	} &
}

# check NAME CMDLINE WANT_STATUS LINE : two runs, identical, with status WANT_STATUS and a
# line matching LINE (grep -Ex) in the output.
check() {
	local name=$1 cmdline=$2 want=$3 line=$4 why=""
	run "$name.1" "$cmdline" "$name"
	run "$name.2" "$cmdline" "$name"
	wait
	if [ "$(cat "$TMP/$name.1.rc")" != "$want" ]; then
		why="status $(cat "$TMP/$name.1.rc"), want $want"
	elif ! grep -Eqx -- "$line" "$TMP/$name.1.out"; then
		why="no line matching '$line'"
	elif ! cmp -s "$TMP/$name.1.out" "$TMP/$name.2.out"; then
		why="console output differs between the runs: $(diff "$TMP/$name.1.out" \
			"$TMP/$name.2.out" | head -5 | tr '\n' ' ')"
	elif ! cmp -s "$TMP/$name.1.err" "$TMP/$name.2.err" ||
		! cmp -s "$TMP/$name.1.rc" "$TMP/$name.2.rc"; then
		why="stderr or status differs between the runs"
	fi
	if [ -n "$why" ]; then
		echo "not ok - $name '$cmdline': $why"
		sed 's/^/    | /' "$TMP/$name.1.out" "$TMP/$name.1.err" | head -20
		FAILED=$((FAILED + 1))
	else
		echo "ok - $name '$cmdline': $(wc -c <"$TMP/$name.1.out") bytes, identical twice"
		PASSED=$((PASSED + 1))
	fi
}

check dirtyrate "tsc_khz=10000 wss=4M seconds=2 report=1" 0 \
	"dirtyrate achieved=[0-9]+ MB/s pages=[0-9]+"
check dirtyrate "tsc_khz=10000 wss=1M rate=300 seconds=1 report=1" 0 \
	"dirtyrate achieved=[0-9]+ MB/s pages=[0-9]+"
check cputest "" 0 "cputest: [0-9]+ tests, 0 failures"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
