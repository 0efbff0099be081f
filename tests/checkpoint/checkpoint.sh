#!/bin/bash
# checkpoint.sh BUILD_DIR - checkpoints of a running VM into a store, and restores.
#
# memtouch runs under `hv run --control SOCK` (emu): a full checkpoint, then three
# incremental ones while it runs (each one a pause), whose pages_written must be far
# below the full one's; `hv restore --store` from the first and the last continues
# memtouch without CORRUPT. Then the deterministic oracle: an incremental checkpoint at
# instruction N restored and run to N+M equals a save file at N restored and run to N+M.
set -u
BUILD=${1:?usage: checkpoint.sh BUILD_DIR}
HV=$BUILD/hv
HVCTL=$BUILD/hvctl
ELF=$BUILD/guest/memtouch.elf
ACCEL=${ACCEL:-emu}
T=$(mktemp -d /tmp/hv-checkpoint.XXXXXX)
S=$T/vm.sock
STORE=$T/store
FAILS=0
HV_PID=

cleanup() {
	[ -n "$HV_PID" ] && kill "$HV_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"

# RAM is preloaded with 40 MiB of random bytes (10240 non-zero pages a full checkpoint
# must store) while memtouch keeps rewriting only 48M..50M (512 pages): an incremental
# checkpoint stores those and the few the kernel touches.
head -c 40M /dev/urandom >"$T/image"
CMDLINE="start=48M end=50M passes=0 report=100"
start_hv "$T/run.out" run --accel "$ACCEL" --memory 64M --control "$S" --preload "$T/image" \
	--cmdline "$CMDLINE" "$ELF"
wait_socket "$S" || { fail "hv did not create $S"; cat "$T/run.out.err"; exit 1; }
wait_more "$T/run.out" 0 || fail "memtouch did not start"

# Argument checks before anything is written.
"$HVCTL" "$S" checkpoint 2>/dev/null
[ $? = 2 ] && ok "hvctl: checkpoint without --store is a usage error" || fail "no --store: not 2"
"$HVCTL" "$S" info --full 2>/dev/null
[ $? = 2 ] && ok "hvctl: --full only with checkpoint" || fail "info --full: not 2"

ids=()
full_pages=
for i in 0 1 2 3; do
	n=$(passes "$T/run.out")
	out=$("$HVCTL" "$S" checkpoint --store "$STORE" --tag "c$i" --json)
	id=$(field id "$out")
	pw=$(field pages_written "$out")
	expect "checkpoint $i: reply" '"return":\{.*"id":"[0-9a-f]{16}".*"pause_ms":.*"duration_ms":.*"bytes_stored":[0-9]+' "$out"
	ids+=("$id")
	if [ "$i" = 0 ]; then
		full_pages=$pw
		expect "checkpoint 0 is full" '"full":true' "$out"
		[ "${pw:-0}" -ge 10240 ] && ok "full checkpoint: $pw pages" ||
			fail "full checkpoint wrote only '$pw' pages"
	else
		expect "checkpoint $i is incremental" '"full":false' "$out"
		[ -n "$pw" ] && [ "$pw" -lt $((full_pages / 10)) ] &&
			ok "incremental $i: $pw pages (full: $full_pages)" ||
			fail "incremental $i wrote '$pw' pages, the full one $full_pages"
	fi
	expect "checkpoint $i: VM runs on" '^state +running$' "$("$HVCTL" "$S" info)"
	wait_more "$T/run.out" "$n" || fail "no pass after checkpoint $i"
done
[ -f "$STORE/manifests/${ids[3]}" ] && ok "the last manifest is committed" ||
	fail "no manifests/${ids[3]}"
out=$("$HVCTL" "$S" checkpoint --store "$STORE" --full --json)
expect "--full forces a full checkpoint" '"full":true' "$out"
"$HVCTL" "$S" checkpoint --store "$T/no/such/dir/x" 2>"$T/e"
[ $? = 1 ] && ok "checkpoint into a bad path fails" || fail "bad store path: not 1"
expect "failed checkpoint leaves the VM running" '^state +running$' "$("$HVCTL" "$S" info)"
quit_hv

# Restore from the first (full) and the last (incremental) checkpoint.
for i in 0 3; do
	OUT=$T/restore$i.out
	start_hv "$OUT" restore --store "$STORE" "${ids[$i]}" --control "$S"
	wait_socket "$S" || { fail "restore $i: no socket"; cat "$OUT.err"; }
	wait_more "$OUT" 1 && ok "restore $i: memtouch continues (pass $(last_pass "$OUT"))" ||
		fail "restore $i: memtouch did not continue: $(cat "$OUT.err")"
	quit_hv
done
"$HV" restore --store "$STORE" 0123456789abcdef 2>"$T/e" </dev/null >/dev/null
[ $? = 2 ] && ok "restore of an unknown id: status 2" || fail "unknown id: not 2"
# (--lazy has tests of its own: lazy.sh.)
"$HV" restore --lazy "${ids[0]}" 2>"$T/e" </dev/null >/dev/null
rc=$?
[ "$rc" = 2 ] && grep -q 'needs --store' "$T/e" && ok "--lazy without --store: status 2" ||
	fail "--lazy without --store: status $rc: $(cat "$T/e")"
if grep -q CORRUPT "$T"/*.out; then fail "memtouch reported CORRUPT: $(grep -h CORRUPT "$T"/*.out)"; fi

# Deterministic oracle: checkpoint (incremental) and save at the same instruction N; both
# restored and run to N+M must end in the same state, byte for byte.
start_hv "$T/det.out" run --accel emu --deterministic --memory 64M --control "$S" \
	--cmdline "$CMDLINE" "$ELF"
wait_socket "$S" || fail "det: no socket"
wait_more "$T/det.out" 0 || fail "det: memtouch did not start"
"$HVCTL" "$S" checkpoint --store "$STORE" >/dev/null || fail "det: full checkpoint"
n=$(passes "$T/det.out")
wait_more "$T/det.out" "$n" || fail "det: no pass after the full checkpoint"
"$HVCTL" "$S" pause || fail "det: pause"
n=$(field icount "$("$HVCTL" "$S" info --json)")
id=$("$HVCTL" "$S" checkpoint --store "$STORE") || fail "det: checkpoint"
"$HVCTL" "$S" save "$T/det.hvs" --keep-running >/dev/null || fail "det: save"
quit_hv
m=$((n + 5000000))
"$HV" restore --store "$STORE" "$id" --run-until "$m" --save-to "$T/det.ckpt.hvs" \
	</dev/null >/dev/null 2>"$T/e" || fail "det: checkpoint run to $m: $(cat "$T/e")"
"$HV" restore "$T/det.hvs" --run-until "$m" --save-to "$T/det.ref.hvs" \
	</dev/null >/dev/null 2>"$T/e" || fail "det: reference run to $m: $(cat "$T/e")"
cmp -s "$T/det.ckpt.hvs" "$T/det.ref.hvs" &&
	ok "det: checkpoint at $n run to $m == save file at $n run to $m" ||
	fail "det: checkpoint and save file differ at $m"

echo "checkpoint ($ACCEL): $FAILS failures"
[ "$FAILS" = 0 ]
