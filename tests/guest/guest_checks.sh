# guest_checks.sh - the checks shared by qemu_crosscheck.sh and hv_guests.sh (sourced).
#
# The sourcing script defines run_guest NAME CMDLINE, which boots $GUEST_DIR/NAME.elf,
# leaves the console output in $OUT and sets CODE to the guest's debug-exit code (-1 when
# the guest never reached debug-exit). Each check prints "ok"/"FAIL" with the reason and
# the output of a failing run; FAILS counts failures.

FAILS=0
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

fail() {
	echo "FAIL: $*"
	sed 's/^/    | /' "$OUT"
	FAILS=$((FAILS + 1))
}

# expect NAME CMDLINE WANT_CODE LINE... : run and require each LINE (a grep -E pattern
# matched against whole lines) in the output.
expect() {
	local name=$1 cmdline=$2 want=$3
	shift 3
	run_guest "$name" "$cmdline"
	if [ "$CODE" != "$want" ]; then
		fail "$name '$cmdline'${CPU:+ cpu=$CPU}: exit code $CODE, want $want"
		return
	fi
	for line in "$@"; do
		if ! grep -Eqx -- "$line" "$OUT"; then
			fail "$name '$cmdline': no line matching '$line'"
			return
		fi
	done
	echo "ok: $name '$cmdline' (exit $CODE)${CPU:+ cpu=$CPU}"
}

run_all_checks() {
	expect hello "" 0 "hello from hv guest"
	expect memtouch "start=4M end=16M passes=3" 0 \
		"memtouch start=0x400000 end=0x1000000 pages=3072 passes=3" \
		"memtouch pass 1" "memtouch pass 3" "memtouch done passes=3 pages=3072"
	expect memtouch "start=1M end=16M" 2 "memtouch: bad range .*"
	expect memtouch "start=4M end=1G" 2 "memtouch: bad range .*not RAM.*"
	expect cputest "" 0 "cputest: [0-9]+ tests, 0 failures"
	expect dirtyrate "wss=4M seconds=1" 0 "dirtyrate achieved=[0-9]+ MB/s pages=[0-9]+"
}
