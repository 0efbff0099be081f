#!/bin/bash
# live.sh BUILD_DIR - live checkpoints: the VM runs on while its pages are written.
#
# 1. memtouch rewrites 48 MiB as fast as it can while full and incremental checkpoints
#    are taken: each reply says live, and some say the guest wrote pages before they were
#    saved (pages_copied > 0: copy-before-write ran); restoring every one continues
#    memtouch without CORRUPT - a page saved after the guest changed it would be one.
# 2. The deterministic oracle, live: a checkpoint taken while the VM runs (its reply gives
#    the instruction count N) restored and run to N+M equals a save file taken earlier
#    restored and run to N+M.
# 3. A full disk (a 24 MiB tmpfs; skipped where mount is not allowed): the checkpoint fails
#    with "No space left" - before it starts when not even a lock file fits, mid-write
#    ("abandoned") when the packs do not - the VM runs on, and once there is room again
#    the next one is still incremental and restores.
set -u
BUILD=${1:?usage: live.sh BUILD_DIR}
HV=$BUILD/hv
HVCTL=$BUILD/hvctl
ELF=$BUILD/guest/memtouch.elf
T=$(mktemp -d /tmp/hv-live.XXXXXX)
S=$T/vm.sock
STORE=$T/store
FAILS=0
HV_PID=
MOUNTED=

cleanup() {
	[ -n "$HV_PID" ] && kill "$HV_PID" 2>/dev/null
	[ -n "$MOUNTED" ] && umount "$MOUNTED" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"

# restore_check ID WHAT: hv restore --store from ID; memtouch must go on, without CORRUPT.
restore_check() {
	local out=$T/restore.$1.out
	start_hv "$out" restore --store "$STORE" "$1" --control "$T/r.sock"
	if ! wait_more "$out" 1; then
		fail "$2: memtouch did not go on: $(tail -n 3 "$out.err")"
	elif grep -q CORRUPT "$out"; then
		fail "$2: $(grep -m1 CORRUPT "$out")"
	else
		ok "$2: memtouch goes on without CORRUPT"
	fi
	"$HVCTL" "$T/r.sock" quit >/dev/null 2>&1
	wait_hv
}

# ---- 1. a busy guest ----
CMDLINE="start=8M end=56M passes=0 report=1"
start_hv "$T/run.out" run --accel emu --memory 64M --control "$S" --cmdline "$CMDLINE" "$ELF"
wait_socket "$S" || { fail "hv did not create $S"; cat "$T/run.out.err"; exit 1; }
wait_more "$T/run.out" 1 || fail "memtouch did not start"
ids=()
copied=0
for i in 0 1 2 3 4; do
	out=$("$HVCTL" "$S" checkpoint --store "$STORE" --json)
	id=$(field id "$out")
	[ -n "$id" ] || { fail "checkpoint $i: $out"; continue; }
	ids+=("$id")
	[ "$(field live "$out")" = true ] && ok "checkpoint $i is live" || fail "checkpoint $i: not live: $out"
	c=$(field pages_copied "$out")
	echo "   checkpoint $i: full=$(field full "$out") pause_ms=$(field pause_ms "$out") duration_ms=$(field duration_ms "$out") pages_written=$(field pages_written "$out") pages_copied=$c"
	copied=$((copied + ${c:-0}))
done
[ "$copied" -gt 0 ] && ok "the guest wrote $copied pages mid-checkpoint (copied before write)" ||
	fail "no page was copied before write: the live path was not exercised"
kill -0 "$HV_PID" && ok "VM runs on" || fail "VM died"
n=$(passes "$T/run.out")
wait_more "$T/run.out" "$n" && ok "memtouch goes on after the checkpoints" || fail "memtouch stalled"
quit_hv
grep -q CORRUPT "$T/run.out" && fail "source: $(grep -m1 CORRUPT "$T/run.out")"
for i in "${!ids[@]}"; do
	restore_check "${ids[$i]}" "restore of live checkpoint $i"
done

# ---- 2. deterministic oracle, live ----
start_hv "$T/det.out" run --accel emu --deterministic --memory 64M --control "$S" \
	--cmdline "start=8M end=56M passes=0 report=1" "$ELF"
wait_socket "$S" || fail "det: no socket"
wait_more "$T/det.out" 0 || fail "det: memtouch did not start"
"$HVCTL" "$S" pause >/dev/null || fail "det: pause"
"$HVCTL" "$S" save "$T/det.hvs" --keep-running >/dev/null || fail "det: save"
"$HVCTL" "$S" resume >/dev/null || fail "det: resume"
n=$(passes "$T/det.out")
wait_more "$T/det.out" "$n" || fail "det: no pass after the save"
out=$("$HVCTL" "$S" checkpoint --store "$STORE" --full --json)
id=$(field id "$out")
n=$(field icount "$out")
[ "$(field live "$out")" = true ] && [ -n "$n" ] && ok "det: live checkpoint at instruction $n (pages_copied $(field pages_copied "$out"))" ||
	fail "det: checkpoint: $out"
quit_hv
m=$((n + 3000000))
"$HV" restore --store "$STORE" "$id" --run-until "$m" --save-to "$T/det.ckpt.hvs" \
	</dev/null >/dev/null 2>"$T/e" || fail "det: checkpoint run to $m: $(cat "$T/e")"
"$HV" restore "$T/det.hvs" --run-until "$m" --save-to "$T/det.ref.hvs" \
	</dev/null >/dev/null 2>"$T/e" || fail "det: reference run to $m: $(cat "$T/e")"
cmp -s "$T/det.ckpt.hvs" "$T/det.ref.hvs" &&
	ok "det: live checkpoint at $n run to $m == straight run to $m" ||
	fail "det: live checkpoint and straight run differ at $m"

# ---- 3. disk full ----
mkdir -p "$T/small"
if ! mount -t tmpfs -o size=24m tmpfs "$T/small" 2>/dev/null; then
	echo "SKIP: disk full: cannot mount a tmpfs here"
else
	MOUNTED=$T/small
	STORE=$T/small/store
	# 16 MiB of random bytes: the full checkpoint fits, a second copy of them cannot.
	head -c 16M /dev/urandom >"$T/image"
	start_hv "$T/full.out" run --accel emu --memory 64M --control "$S" --preload "$T/image" \
		--cmdline "start=24M end=40M passes=0 report=100" "$ELF"
	wait_socket "$S" || fail "full: no socket"
	wait_more "$T/full.out" 0 || fail "full: memtouch did not start"
	out=$("$HVCTL" "$S" checkpoint --store "$STORE" --json)
	id0=$(field id "$out")
	[ -n "$id0" ] && ok "full: first checkpoint fits" || fail "full: first checkpoint: $out"
	# 16 MiB of random bytes fill more than one 16 MiB pack: the count must span packs.
	b=$(field bytes_stored "$out")
	[ "${b:-0}" -ge $((16 << 20)) ] && [ "$b" -le "$(du -sb "$STORE" | cut -f1)" ] &&
		ok "full: bytes_stored $b counts every pack" ||
		fail "full: bytes_stored ${b:-none} for 16 MiB of random pages (store: $(du -sb "$STORE" | cut -f1))"
	# Completely full: even the writer's lock file cannot be written.
	head -c 64M /dev/zero >"$T/small/filler" 2>/dev/null
	out=$("$HVCTL" "$S" checkpoint --store "$STORE" 2>&1)
	rc=$?
	[ "$rc" != 0 ] && ok "full: checkpoint on a full disk fails (status $rc)" ||
		fail "full: checkpoint on a full disk succeeded: $out"
	expect "full: the error says why" "No space left" "$out"
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && ok "full: one-line error" ||
		fail "full: error is not one line: $out"
	# Nearly full: the checkpoint starts, the VM resumes, and a pack write fails.
	rm -f "$T/small/filler"
	avail=$(df --output=avail -B1 "$T/small" | tail -n 1)
	head -c $((avail - 65536)) /dev/zero >"$T/small/filler" 2>/dev/null
	out=$("$HVCTL" "$S" checkpoint --store "$STORE" 2>&1)
	rc=$?
	[ "$rc" != 0 ] && ok "full: checkpoint on a nearly full disk fails (status $rc)" ||
		fail "full: checkpoint on a nearly full disk succeeded: $out"
	expect "full: abandoned mid-write, and says why" "abandoned, the VM runs on: .*No space left" "$out"
	n=$(passes "$T/full.out")
	wait_more "$T/full.out" "$n" && ok "full: the VM runs on" || fail "full: VM stalled"
	rm -f "$T/small/filler"
	out=$("$HVCTL" "$S" checkpoint --store "$STORE" --json)
	id1=$(field id "$out")
	[ -n "$id1" ] && [ "$(field full "$out")" = false ] &&
		ok "full: with room again the next checkpoint is incremental" ||
		fail "full: next checkpoint: $out"
	quit_hv
	grep -q CORRUPT "$T/full.out" && fail "full: $(grep -m1 CORRUPT "$T/full.out")"
	[ -n "$id0" ] && restore_check "$id0" "full: checkpoint before the full disk"
	[ -n "$id1" ] && restore_check "$id1" "full: checkpoint after the full disk"
fi

echo "live: $FAILS failures"
[ "$FAILS" = 0 ]
