#!/bin/sh
# kvm_migrate.sh - live migration between two hv processes on KVM (the nested lane).
#
# memtouch (8 MiB, passes=0: forever) under `hv run --accel kvm --control SRC`; a receiver
# `hvmigrate recv --listen unix:MIG --control DST`; `hvmigrate send SRC unix:MIG --json`
# (2 page channels, zstd). Then: send exits 0 with "completed", the source hv exits 0
# having migrated, the destination's memtouch keeps counting from where the source
# stopped, and no page is ever CORRUPT (memtouch checks every page on every pass, so a
# page the KVM dirty log missed shows up). Then on from the destination to a third
# process with raw pages, 1 channel and --on-stall throttle: the emulated link of the
# lane is slower than memtouch dirties, so this hop converges by slowing the KVM vCPUs.
# Runs from the build directory; HV_ACCEL=emu tries it without KVM. Exit 0 when both
# hops passed.
set -u
cd "$(dirname "$0")/../.." || exit 1
PATH=$PWD:$PATH
accel=${HV_ACCEL:-kvm}
tmp=$(mktemp -d /tmp/kvm_mig.XXXXXX) || exit 1
pids=

fail() {
	echo "kvm_migrate: $*"
	for f in "$tmp"/*.log "$tmp"/*.err "$tmp"/*.json; do
		[ -f "$f" ] && { echo "--- $f:"; tail -n 20 "$f"; }
	done
	for p in $pids; do kill "$p" 2>/dev/null; done
	rm -rf "$tmp"
	exit 1
}

last_pass() { sed -n 's/^memtouch pass \([0-9]*\)$/\1/p' "$1" | tail -n 1; }
first_pass() { sed -n 's/^memtouch pass \([0-9]*\)$/\1/p' "$1" | head -n 1; }

# wait_grep FILE PATTERN: up to 60 s.
wait_grep() {
	i=0
	until grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -gt 600 ] && fail "no '$2' in $1 within 60 s"
		sleep 0.1
	done
}

# hop NAME SRC_SOCK SRC_PID SRC_LOG [send options]: migrate the VM at SRC_SOCK to a new
# receiver; sets DST_SOCK, DST_PID, DST_LOG.
hop() {
	name=$1 ssock=$2 spid=$3 slog=$4
	shift 4
	DST_SOCK=$tmp/$name.sock
	DST_LOG=$tmp/$name.log
	hvmigrate recv --listen "unix:$tmp/$name.mig" --control "$DST_SOCK" >"$DST_LOG" \
		2>"$tmp/$name.err" &
	DST_PID=$!
	pids="$pids $DST_PID"
	wait_grep "$tmp/$name.err" 'listening on'
	hvmigrate send "$ssock" "unix:$tmp/$name.mig" --json "$@" >"$tmp/$name.json" \
		2>"$tmp/$name.send.err" || fail "$name: hvmigrate send failed"
	grep -q '"result":"completed"' "$tmp/$name.json" || fail "$name: no completed summary"
	wait "$spid"
	rc=$?
	[ "$rc" = 0 ] || fail "$name: source hv exited $rc"
	before=$(last_pass "$slog")
	wait_grep "$DST_LOG" '^memtouch pass'
	i=0
	while :; do
		grep -q CORRUPT "$slog" "$DST_LOG" && fail "$name: memtouch found corruption"
		after=$(last_pass "$DST_LOG")
		[ -n "$after" ] && [ "$after" -gt $((before + 2)) ] && break
		i=$((i + 1))
		[ "$i" -gt 600 ] && fail "$name: the destination does not count on"
		sleep 0.1
	done
	first=$(first_pass "$DST_LOG")
	[ "$first" -ge "$before" ] && [ "$first" -le $((before + 2)) ] ||
		fail "$name: passes do not continue: source $before, destination $first"
	echo "kvm_migrate: $name: $(tail -n 1 "$tmp/$name.json" | grep -o '"downtime_ms":[0-9]*'), passes $before -> $first -> $after"
}

hv run --accel "$accel" --memory 128M --control "$tmp/src.sock" \
	--cmdline "start=4M end=12M passes=0" guest/memtouch.elf >"$tmp/src.log" 2>"$tmp/src.err" &
src=$!
pids="$pids $src"
wait_grep "$tmp/src.log" '^memtouch pass'
hop hop1 "$tmp/src.sock" "$src" "$tmp/src.log" --channels 2
hop hop2 "$DST_SOCK" "$DST_PID" "$DST_LOG" --channels 1 --compress none --on-stall throttle
hvctl "$DST_SOCK" quit >/dev/null
wait "$DST_PID"
echo "kvm_migrate: ok"
rm -rf "$tmp"
