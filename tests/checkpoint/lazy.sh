#!/bin/bash
# lazy.sh BUILD_DIR - lazy restore of checkpoints: the VM runs at once, pages on demand.
#
# memtouch (which checks every page it touched on every pass) is checkpointed, full then
# incremental, while it runs; `hv restore --store --lazy` from each continues it without
# CORRUPT and --report gives sane figures. Then the deterministic oracle: a checkpoint at
# instruction N restored lazily and run to N+M equals the same checkpoint restored eagerly.
# Last, a pack with one flipped byte: the lazy restore stops with a line naming the page
# and the pack and a non-zero status - never hangs, never runs on with wrong bytes - also
# when restored --paused and then resumed.
set -u
BUILD=${1:?usage: lazy.sh BUILD_DIR}
HV=$BUILD/hv
HVCTL=$BUILD/hvctl
ELF=$BUILD/guest/memtouch.elf
ACCEL=${ACCEL:-emu}
if [ "$ACCEL" = kvm ] && ! [ -w /dev/kvm ]; then
	echo "lazy ($ACCEL): SKIP: no usable /dev/kvm"
	exit 77
fi
T=$(mktemp -d /tmp/hv-lazy.XXXXXX)
S=$T/vm.sock
STORE=$T/store
FAILS=0
HV_PID=

cleanup() {
	[ -n "$HV_PID" ] && kill "$HV_PID" 2>/dev/null
	[ -n "${LAZY_KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"

no_corrupt() {
	if grep -q CORRUPT "$1"; then fail "$2: memtouch reported CORRUPT: $(grep -m1 CORRUPT "$1")"; fi
}

# 40 MiB of random bytes in a 64 MiB guest: 10240 non-zero pages to fault in or prefetch.
head -c 40M /dev/urandom >"$T/image"
CMDLINE="start=48M end=50M passes=0 report=100"
start_hv "$T/run.out" run --accel "$ACCEL" --memory 64M --control "$S" --preload "$T/image" \
	--cmdline "$CMDLINE" "$ELF"
wait_socket "$S" || { fail "hv did not create $S"; cat "$T/run.out.err"; exit 1; }
wait_more "$T/run.out" 0 || fail "memtouch did not start"
full=$("$HVCTL" "$S" checkpoint --store "$STORE") || fail "full checkpoint"
sleep 0.1 # mtimes: the incremental's packs are newer than this
touch "$T/full.packs"
sleep 0.1
n=$(passes "$T/run.out")
wait_more "$T/run.out" "$n" || fail "no pass after the full checkpoint"
incr=$("$HVCTL" "$S" checkpoint --store "$STORE" --json) || fail "incremental checkpoint"
expect "the second checkpoint is incremental" '"full":false' "$incr"
incr=$(field id "$incr")
quit_hv
cp -a "$STORE" "$T/bad-full" # damaged below, before later checkpoints add packs
cp -a "$STORE" "$T/bad-incr"

# Both continue memtouch, lazily; the report adds up once memory is resident.
for c in full incr; do
	id=${!c}
	OUT=$T/lazy-$c.out
	REP=$T/lazy-$c.json
	start_hv "$OUT" restore --store "$STORE" "$id" --lazy --control "$S" --report "$REP"
	wait_socket "$S" || { fail "lazy $c: no socket"; cat "$OUT.err"; }
	wait_more "$OUT" 1 && ok "lazy $c: memtouch continues (pass $(last_pass "$OUT"))" ||
		fail "lazy $c: memtouch did not continue: $(cat "$OUT.err")"
	wait_file "$REP" || fail "lazy $c: no report in $REP"
	r=$(cat "$REP" 2>/dev/null)
	expect "lazy $c: report" '^\{"mode":"lazy","first_run_ms":[0-9.]+,"resident_ms":[0-9.]+,"pages_total":16384,"pages_nonzero":[0-9]+,"pages_faulted":[0-9]+,"pages_prefetched":[0-9]+\}$' "$r"
	nz=$(field pages_nonzero "$r")
	pf=$(field pages_faulted "$r")
	pp=$(field pages_prefetched "$r")
	[ "${nz:-0}" -ge 10240 ] && [ $((${pf:-0} + ${pp:-0})) -ge "$nz" ] &&
		ok "lazy $c: $nz non-zero pages, $pf faulted, $pp prefetched" ||
		fail "lazy $c: pages do not add up: $r"
	awk -v a="$(field first_run_ms "$r")" -v b="$(field resident_ms "$r")" \
		'BEGIN { exit !(a > 0 && b >= a) }' &&
		ok "lazy $c: first run at $(field first_run_ms "$r") ms, resident at $(field resident_ms "$r") ms" ||
		fail "lazy $c: times out of order: $r"
	n=$(passes "$OUT")
	wait_more "$OUT" "$n" || fail "lazy $c: no pass once resident"
	# Resident, hv has let go of the store: maintenance does not wait for it.
	out=$("$HVCTL" store "$STORE" gc --dry-run --lock-wait 2 2>&1) &&
		ok "lazy $c: resident, the store is free for gc" ||
		fail "lazy $c: gc blocked by the resident VM: $out"
	quit_hv
	no_corrupt "$OUT" "lazy $c"
done

# --paused: nothing runs until resume; then memtouch continues.
OUT=$T/lazy-paused.out
start_hv "$OUT" restore --store "$STORE" "$incr" --lazy --paused --control "$S"
wait_socket "$S" || fail "lazy paused: no socket"
expect "lazy --paused: paused" '^state +paused$' "$("$HVCTL" "$S" info)"
"$HVCTL" "$S" resume >/dev/null || fail "lazy paused: resume"
wait_more "$OUT" 1 && ok "lazy --paused: memtouch continues after resume" ||
	fail "lazy --paused: memtouch did not continue: $(cat "$OUT.err")"
quit_hv
no_corrupt "$OUT" "lazy --paused"

# Until memory is resident, a hole is a page not loaded yet: save, checkpoint and migrate
# refuse (they would take it for a zero page). HV_LAZY_NO_PREFETCH=1 keeps it that way.
OUT=$T/lazy-filling.out
HV_LAZY_NO_PREFETCH=1 start_hv "$OUT" restore --store "$STORE" "$incr" --lazy --control "$S"
wait_socket "$S" || fail "filling: no socket"
wait_more "$OUT" 1 || fail "filling: memtouch did not continue (on demand only)"
for cmd in "checkpoint --store $T/other" "save $T/filling.hvs"; do
	out=$("$HVCTL" "$S" $cmd 2>&1)
	rc=$?
	[ "$rc" != 0 ] && expect "filling: ${cmd%% *} refused" 'still being loaded' "$out" ||
		fail "filling: ${cmd%% *} was not refused: $out"
done
[ ! -e "$T/filling.hvs" ] && [ ! -e "$T/other/manifests" ] && ok "filling: nothing written" ||
	fail "filling: a save file or checkpoint was written"
n=$(passes "$OUT")
wait_more "$OUT" "$n" && ok "filling: the VM runs on" || fail "filling: VM stalled"
quit_hv
no_corrupt "$OUT" "filling"

# An eager restore reports too.
start_hv "$T/eager.out" restore --store "$STORE" "$full" --control "$S" --report "$T/eager.json"
wait_socket "$S" || fail "eager: no socket"
wait_file "$T/eager.json" || fail "eager: no report"
expect "eager: report" '^\{"mode":"eager",.*"pages_faulted":0,' "$(cat "$T/eager.json" 2>/dev/null)"
quit_hv

"$HV" restore --lazy "$T/image" 2>"$T/e" </dev/null >/dev/null
rc=$?
[ "$rc" = 2 ] && grep -q 'needs --store' "$T/e" && ok "--lazy without --store: status 2" ||
	fail "--lazy without --store: status $rc: $(cat "$T/e")"

# Deterministic oracle: lazily and eagerly restored, the checkpoint at N run to N+M ends
# in the same state, byte for byte.
start_hv "$T/det.out" run --accel emu --deterministic --memory 64M --control "$S" \
	--preload "$T/image" --cmdline "$CMDLINE" "$ELF"
wait_socket "$S" || fail "det: no socket"
wait_more "$T/det.out" 0 || fail "det: memtouch did not start"
"$HVCTL" "$S" checkpoint --store "$STORE" >/dev/null || fail "det: full checkpoint"
n=$(passes "$T/det.out")
wait_more "$T/det.out" "$n" || fail "det: no pass after the full checkpoint"
"$HVCTL" "$S" pause || fail "det: pause"
n=$(field icount "$("$HVCTL" "$S" info --json)")
id=$("$HVCTL" "$S" checkpoint --store "$STORE") || fail "det: checkpoint"
quit_hv
m=$((n + 5000000))
"$HV" restore --store "$STORE" "$id" --lazy --run-until "$m" --save-to "$T/det.lazy.hvs" \
	--report "$T/det.json" </dev/null >/dev/null 2>"$T/e" || fail "det: lazy run to $m: $(cat "$T/e")"
"$HV" restore --store "$STORE" "$id" --run-until "$m" --save-to "$T/det.eager.hvs" \
	</dev/null >/dev/null 2>"$T/e" || fail "det: eager run to $m: $(cat "$T/e")"
cmp -s "$T/det.lazy.hvs" "$T/det.eager.hvs" &&
	ok "det: lazy restore at $n run to $m == eager restore run to $m" ||
	fail "det: lazy and eager restores differ at $m"
expect "det: lazy report" '"mode":"lazy"' "$(cat "$T/det.json" 2>/dev/null)"

# A damaged pack: one byte flipped in the middle of a pack (guest pages). The restore must
# stop with a line naming the page and the pack, and a non-zero status. The full
# checkpoint's largest pack is mostly preloaded pages, which the prefetcher reaches first;
# the incremental's own pack holds what memtouch and its kernel touch at once, so there a
# vCPU waits for the bad page (a thread nothing can release: hv must end).
flip() { # flip FILE: invert the byte in its middle
	local size off byte
	size=$(stat -c %s "$1")
	off=$((size / 2))
	byte=$(od -An -tu1 -j "$off" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((byte ^ 0xff)))" |
		dd of="$1" bs=1 seek="$off" conv=notrunc 2>/dev/null
}
flip "$(find "$T/bad-full/packs" -type f -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2)"
flip "$(find "$T/bad-incr/packs" -type f -newer "$T/full.packs" -printf '%s %p\n' |
	sort -n | tail -n 1 | cut -d' ' -f2)"
for mode in full-running full-paused incr-running; do
	OUT=$T/bad-$mode.out
	bad=$T/bad-${mode%%-*}
	id=$full
	[ "${mode%%-*}" = incr ] && id=$incr
	if [ "${mode#*-}" = paused ]; then
		start_hv "$OUT" restore --store "$bad" "$id" --lazy --paused --control "$S"
		wait_socket "$S" && "$HVCTL" "$S" resume >/dev/null 2>&1
	else
		start_hv "$OUT" restore --store "$bad" "$id" --lazy --control "$S"
	fi
	wait_hv 300
	e=$(cat "$OUT.err")
	if [ "$RC" = timeout ]; then
		fail "damaged pack ($mode): hv still runs after 30 s (last: $(tail -n 1 "$OUT");" \
			"threads: $(cat /proc/"$HV_PID"/task/*/wchan 2>/dev/null | tr '\0' ' '))"
		kill -9 "$HV_PID" 2>/dev/null
		HV_PID=
	elif [ "$RC" = 0 ]; then
		fail "damaged pack ($mode): status 0: $e"
	else
		ok "damaged pack ($mode): status $RC"
	fi
	# The flipped byte may land in a page or in a page-map chunk (the pack's layout
	# follows what the guest dirtied): either way the line names it and the pack.
	expect "damaged pack ($mode): one line naming the page and the pack" \
		"^hv: .*: lazy restore: (page [0-9]+|page-map chunk [0-9]+ \(pages [0-9]+-[0-9]+\)).*packs/.*: blob [0-9a-f]{64}" "$e"
	[ "$(printf '%s\n' "$e" | grep -c .)" = 1 ] || fail "damaged pack ($mode): not one line: $e"
	no_corrupt "$OUT" "damaged pack ($mode)"
	[ -e "$S" ] && fail "damaged pack ($mode): $S left behind"
	rm -f "$S"
done

echo "lazy ($ACCEL): $FAILS failures"
[ "$FAILS" = 0 ]
