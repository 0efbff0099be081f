#!/bin/sh
# kvm_checkpoint.sh - checkpoints into a store and restores from it on KVM (the nested lane).
#
# Runs memtouch (4 MiB, passes=0: forever) under `hv run --accel kvm --control SOCK`, takes
# a full checkpoint and two incremental ones (`hvctl SOCK checkpoint --store DIR`: the
# incremental ones hold only the pages KVM's dirty log saw written), lets the guest count
# on between them, and stops it. Then `hv restore --store DIR ID --control SOCK` of the
# last checkpoint and of the first: each must count on from where its checkpoint was
# taken. memtouch checks every page against the pass it expects, so a page missing from an
# incremental (a write the dirty log lost) or stale after a restore prints CORRUPT; the
# pass numbers must rise after each restore.
# Runs from the build directory (its hv, hvctl and guest/); HV_ACCEL=emu tries it without
# KVM. Exit 0 when both restores counted on.
set -u
cd "$(dirname "$0")/../.." || exit 1
PATH=$PWD:$PATH
accel=${HV_ACCEL:-kvm}
tmp=$(mktemp -d /tmp/kvm_ck.XXXXXX) || exit 1
sock=$tmp/ctl.sock
store=$tmp/store
log=$tmp/console.log
pid=

fail() {
	echo "kvm_checkpoint: $*"
	echo "--- guest console ($log):"
	cat "$log"
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$tmp"
	exit 1
}

# passes: the reported pass numbers, from complete lines only (the guest may be halfway
# through printing one, its number cut short).
passes() {
	if [ -n "$(tail -c 1 "$log")" ]; then
		sed '$d' "$log"
	else
		cat "$log"
	fi | sed -n 's/^memtouch pass \([0-9]*\).*/\1/p'
}
last_pass() { passes | tail -n 1; }
first_pass() { passes | head -n 1; }

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
		kill -0 "$pid" 2>/dev/null || fail "hv exited before its control socket answered"
		sleep 0.1
	done
}

# checkpoint N FULL: take checkpoint N into the store; FULL is the "full" the reply must say
# (true for the first, false after: an incremental one). Sets id, at (the pass reported
# before it: the restored guest must count on past it) and after (the pass reported once it
# is taken: 10 passes past that, the guest is surely past the checkpointed state).
checkpoint() {
	at=$(last_pass)
	reply=$(hvctl "$sock" checkpoint --store "$store" --json) ||
		fail "hvctl checkpoint $1 failed: $reply"
	id=$(echo "$reply" | sed -n 's/.*"return":{.*"id":"\([0-9a-f]\{16\}\)".*/\1/p')
	[ -n "$id" ] || fail "checkpoint $1: no id in the reply: $reply"
	echo "$reply" | grep '"full":'"$2" >/dev/null ||
		fail "checkpoint $1: expected \"full\":$2 in the reply: $reply"
	# Live: KVM's vCPUs write RAM behind hv, so the pages are write-protected with
	# userfaultfd while they are saved (hv/cbw.c); the pause is only the state capture.
	echo "$reply" | grep '"live":true' >/dev/null ||
		fail "checkpoint $1: not live (userfaultfd write-protect?): $reply"
	after=$(last_pass)
	pause=$(echo "$reply" | sed -n 's/.*"pause_ms":\([0-9.]*\).*/\1/p')
	copied=$(echo "$reply" | sed -n 's/.*"pages_copied":\([0-9]*\).*/\1/p')
	echo "checkpoint $1: $id at pass $at (full=$2, live, pause $pause ms, $copied pages copied before write)"
}

# stop_vm: quit the VM and reap hv (status 0 expected).
stop_vm() {
	hvctl "$sock" quit >/dev/null 2>&1 || fail "hvctl quit failed"
	wait "$pid"
	rc=$?
	pid=
	[ "$rc" = 0 ] || fail "hv exited $rc after quit"
}

# restore ID AT WHAT [BELOW]: restore checkpoint ID into a fresh hv with a fresh console;
# memtouch must count on past AT (5 more reported passes) without CORRUPT, and its first
# pass must be below BELOW (a pass reported after a later checkpoint: the older state
# really came back, not the newest).
restore() {
	log=$tmp/console-$3.log
	hv restore --store "$store" "$1" --control "$sock" >>"$log" 2>&1 &
	pid=$!
	wait_sock
	wait_pass $(($2 + 5))
	first=$(first_pass)
	[ "$first" -gt "$2" ] || fail "restored $3: first pass $first is not past $2"
	[ -z "${4:-}" ] || [ "$first" -lt "$4" ] ||
		fail "restored $3: first pass $first is not before $4: not the state checkpointed"
	now=$(last_pass)
	stop_vm
	echo "restored $3 ($1): counted on from pass $first to $now"
}

hv run --accel "$accel" --memory 128M --control "$sock" \
	--cmdline "start=4M end=8M passes=0 report=5" guest/memtouch.elf >>"$log" 2>&1 &
pid=$!
wait_sock
wait_pass 5
checkpoint 1 true
id1=$id at1=$at
wait_pass $((after + 10))
checkpoint 2 false
at2=$at
wait_pass $((after + 10))
checkpoint 3 false
id3=$id at3=$at
wait_pass $((after + 10))
stop_vm
grep -q CORRUPT "$log" && fail "memtouch found corruption"

restore "$id3" "$at3" last
restore "$id1" "$at1" first "$at2"
echo "kvm_checkpoint: full + 2 incremental checkpoints, last and first restored ok"
rm -rf "$tmp"
