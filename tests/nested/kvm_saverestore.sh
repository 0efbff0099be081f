#!/bin/sh
# kvm_saverestore.sh [CYCLES] - save/restore round trips of a KVM guest (the nested lane).
#
# Runs memtouch (4 MiB, passes=0: forever) under `hv run --accel kvm --control SOCK`, saves
# it with `hvctl SOCK save FILE` (hv exits 0), then CYCLES times (default 3): `hv restore
# FILE --control SOCK`, waits until the guest has counted two more reported passes, saves
# again. memtouch checks every page against the pass it expects, so a page lost or stale
# after a restore prints CORRUPT; the pass numbers must keep rising across the cycles.
# Runs from the build directory (its hv, hvctl and guest/); HV_ACCEL=emu tries it without
# KVM. Exit 0 when every cycle passed.
set -u
cd "$(dirname "$0")/../.." || exit 1
PATH=$PWD:$PATH
cycles=${1:-3}
accel=${HV_ACCEL:-kvm}
tmp=$(mktemp -d /tmp/kvm_sr.XXXXXX) || exit 1
sock=$tmp/ctl.sock
file=$tmp/vm.hvs
log=$tmp/console.log
pid=

fail() {
	echo "kvm_saverestore: $*"
	echo "--- guest console:"
	cat "$log"
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$tmp"
	exit 1
}

# last_pass: the last pass of a complete console line (one still being printed could read
# "memtouch pass 1" for 12).
last_pass() {
	if [ -z "$(tail -c 1 "$log")" ]; then
		sed -n 's/^memtouch pass \([0-9][0-9]*\)$/\1/p' "$log"
	else
		sed -n '$!s/^memtouch pass \([0-9][0-9]*\)$/\1/p' "$log"
	fi | tail -n 1
}

# wait_pass N: until the console shows a reported pass > N (60 s at most).
wait_pass() {
	i=0
	while :; do
		grep -q CORRUPT "$log" && fail "memtouch found corruption"
		p=$(last_pass)
		[ -n "$p" ] && [ "$p" -gt "$1" ] && return 0
		kill -0 "$pid" 2>/dev/null || fail "hv exited early"
		i=$((i + 1))
		[ "$i" -gt 600 ] && fail "no pass after $1 within 60 s"
		sleep 0.1
	done
}

wait_sock() {
	i=0
	until hvctl "$sock" info >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -gt 300 ] && fail "control socket never answered"
		sleep 0.1
	done
}

save() {
	hvctl "$sock" save "$file" || fail "hvctl save failed (cycle $1)"
	wait "$pid"
	rc=$?
	pid=
	[ "$rc" = 0 ] || fail "hv exited $rc after save (cycle $1)"
}

hv run --accel "$accel" --memory 128M --control "$sock" \
	--cmdline "start=4M end=8M passes=0 report=5" guest/memtouch.elf >>"$log" 2>&1 &
pid=$!
wait_sock
wait_pass 5
save 0
before=$(last_pass)
echo "saved at pass $before"
c=1
while [ "$c" -le "$cycles" ]; do
	hv restore "$file" --control "$sock" >>"$log" 2>&1 &
	pid=$!
	wait_sock
	wait_pass $((before + 5))
	save "$c"
	now=$(last_pass)
	echo "cycle $c: restored, counted on to pass $now, saved"
	before=$now
	c=$((c + 1))
done
grep -q CORRUPT "$log" && fail "memtouch found corruption"
echo "kvm_saverestore: $cycles cycles ok"
rm -rf "$tmp"
