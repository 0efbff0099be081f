#!/bin/bash
# store.sh BUILD_DIR - `hvctl store` maintenance on stores written by real VMs.
#
# (a) a chain of 10 checkpoints of memtouch: each restores and memtouch continues without
#     CORRUPT; prune --keep-last 3 --keep-tag gold and gc; the survivors (whose parents
#     are gone) still restore and verify --read-data is clean.
# (b) kill -9 the checkpointing hv at random instants, restarting it from the last
#     committed checkpoint each time: verify passes, every committed checkpoint is listed
#     and restores, gc removes the orphans (packs, temp files, stale locks).
# (c) damage (a flipped byte in a pack, a truncated index file, a deleted pack): verify
#     names the file; restoring the affected checkpoint fails with one line and a non-zero
#     status; the unaffected one still restores.
# (d) two VMs checkpoint into one store while prune runs in a loop: every checkpoint
#     succeeds (each side waits for the other's lock), verify is clean, the kept restore.
set -u
BUILD=${1:?usage: store.sh BUILD_DIR}
HV=$BUILD/hv
HVCTL=$BUILD/hvctl
ELF=$BUILD/guest/memtouch.elf
ACCEL=${ACCEL:-emu}
LOOPS=${CRASH_LOOPS:-16}
T=$(mktemp -d /tmp/hv-store.XXXXXX)
FAILS=0
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"

# start_vm SOCK OUT ARGS...: start_hv serving SOCK (HV_PID, also in PIDS for cleanup: the
# kill -9 runs of (b) leave VMs behind that quit_hv never reaps).
start_vm() {
	local sock=$1 out=$2
	shift 2
	rm -f "$sock"
	start_hv "$out" "$@" --control "$sock"
	PIDS+=("$HV_PID")
	wait_socket "$sock" || fail "no socket $sock: $(cat "$out.err")"
}

# restores STORE ID: hv restore runs memtouch on for two full passes, without CORRUPT.
restores() {
	local out=$T/restore.out p rc=0
	"$HV" restore --store "$1" "$2" </dev/null >"$out" 2>"$out.err" &
	p=$!
	PIDS+=("$p")
	for _ in $(seq 500); do
		[ "$(passes "$out")" -ge 2 ] && break
		kill -0 "$p" 2>/dev/null || break
		sleep 0.02
	done
	[ "$(passes "$out")" -ge 2 ] || rc=1
	grep -q CORRUPT "$out" && rc=1
	kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	[ $rc = 0 ] || echo "   restore $2: $(head -c 300 "$out.err") $(grep CORRUPT "$out" | head -1)"
	return $rc
}

pack_files() { find "$1/packs" -type f | wc -l; }
tmp_files() { find "$1" -type f -name '.*' | wc -l; }

# ---- (a) a chain of 10, restore each, prune, gc ----
S=$T/a.sock
A=$T/chain
start_vm "$S" "$T/a.out" run --accel "$ACCEL" --memory 64M --name chain \
	--cmdline "start=4M end=12M passes=0 report=1" "$ELF"
wait_more "$T/a.out" 0 || fail "(a) memtouch did not start"
ids=()
for i in $(seq 0 9); do
	tag=c$i
	[ "$i" = 1 ] && tag=gold
	out=$("$HVCTL" "$S" checkpoint --store "$A" --tag "$tag" --json)
	ids+=("$(field id "$out")")
	if [ "$i" -gt 0 ] && ! printf '%s' "$out" | grep -q '"full":false'; then
		fail "(a) checkpoint $i is not incremental: $out"
	fi
	wait_more "$T/a.out" $(($(passes "$T/a.out") + 2)) || fail "(a) memtouch stopped"
done
quit_hv
[ "${#ids[@]}" = 10 ] && [ -n "${ids[9]}" ] && ok "(a) 10 checkpoints" || fail "(a) ids: ${ids[*]}"
n=0
for id in "${ids[@]}"; do restores "$A" "$id" && n=$((n + 1)); done
[ $n = 10 ] && ok "(a) all 10 restore, memtouch continues" || fail "(a) only $n of 10 restore"
out=$("$HVCTL" store "$A" list)
expect "(a) list: 10 checkpoints" "^10 checkpoints$" "$out"
[ "$(printf '%s\n' "$out" | sed -n 2p | cut -c1-16)" = "${ids[0]}" ] &&
	ok "(a) list: the full one first" || fail "(a) list order: $out"
out=$("$HVCTL" store "$A" show "${ids[5]}")
expect "(a) show: incremental with usage" "kind +incremental" "$out"
expect "(a) show: parent" "parent +${ids[4]}" "$out"
expect "(a) show: unique bytes" "unique +[0-9]+ blobs" "$out"
"$HVCTL" store "$A" list --read-data >/dev/null 2>&1
[ $? = 2 ] && ok "(a) an option that does not go with the subcommand: status 2" ||
	fail "(a) list --read-data: not 2"
"$HVCTL" store "$A" frobnicate >/dev/null 2>&1
[ $? = 2 ] && ok "(a) unknown subcommand: status 2" || fail "(a) unknown subcommand: not 2"
"$HVCTL" store "$T/nostore" list >/dev/null 2>"$T/e"
[ $? = 1 ] && grep -q "not a checkpoint store" "$T/e" && ok "(a) not a store: status 1" ||
	fail "(a) not a store: $(cat "$T/e")"
"$HVCTL" store "$A" prune >/dev/null 2>"$T/e"
[ $? = 2 ] && grep -q "refusing" "$T/e" && ok "(a) prune without a policy: status 2" ||
	fail "(a) prune without a policy: $(cat "$T/e")"
"$HVCTL" store "$A" prune --keep-last 3 --dry-run >/dev/null
[ "$(ls "$A/manifests" | wc -l)" = 10 ] && ok "(a) prune --dry-run removes nothing" ||
	fail "(a) --dry-run removed manifests"
before=$(du -sk "$A/packs" | cut -f1)
out=$("$HVCTL" store "$A" prune --keep-last 3 --keep-tag gold)
rc=$?
[ $rc = 0 ] && ok "(a) prune" || fail "(a) prune: status $rc: $out"
expect "(a) prune keeps the tagged one" "keep +${ids[1]} .* tag" "$out"
expect "(a) prune keeps the newest" "keep +${ids[9]} .* last" "$out"
expect "(a) prune removes the rest" "prune: 4 kept, 6 removed" "$out"
expect "(a) prune then runs gc" "^gc: .* freed" "$out"
after=$(du -sk "$A/packs" | cut -f1)
[ "$after" -lt "$before" ] && ok "(a) gc shrank packs/ from ${before}K to ${after}K" ||
	fail "(a) packs/ did not shrink: ${before}K -> ${after}K"
n=0
for i in 1 7 8 9; do restores "$A" "${ids[$i]}" && n=$((n + 1)); done
[ $n = 4 ] && ok "(a) the 4 kept restore (their parents are gone)" || fail "(a) $n of 4 restore"
out=$("$HVCTL" store "$A" verify --read-data)
[ $? = 0 ] && ok "(a) verify --read-data after prune+gc: $out" || fail "(a) verify: $out"

# ---- (b) kill -9 mid-checkpoint ----
B=$T/crash
S=$T/b.sock
start_vm "$S" "$T/b0.out" run --accel "$ACCEL" --memory 64M --name crash \
	--cmdline "start=4M end=40M passes=0 report=1" "$ELF"
wait_more "$T/b0.out" 0 || fail "(b) memtouch did not start"
last=$("$HVCTL" "$S" checkpoint --store "$B") || fail "(b) first checkpoint"
committed=("$last")
killed=0
for i in $(seq 1 "$LOOPS"); do
	"$HVCTL" "$S" checkpoint --store "$B" >"$T/cp.out" 2>/dev/null &
	cp=$!
	sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.3f", rand() * 1.2 }')"
	kill -9 "$HV_PID" 2>/dev/null
	wait "$HV_PID" 2>/dev/null
	if wait "$cp" && [ -s "$T/cp.out" ]; then
		last=$(cat "$T/cp.out")
		committed+=("$last")
	else
		killed=$((killed + 1))
	fi
	start_vm "$S" "$T/b$i.out" restore --store "$B" "$last"
	wait_more "$T/b$i.out" 1 || fail "(b) restart $i from $last: $(cat "$T/b$i.out.err")"
done
quit_hv
grep -q CORRUPT "$T"/b*.out && fail "(b) CORRUPT after a restart: $(grep -h CORRUPT "$T"/b*.out)"
ok "(b) $LOOPS kills: $killed mid-checkpoint, ${#committed[@]} checkpoints committed"
out=$("$HVCTL" store "$B" verify)
[ $? = 0 ] && ok "(b) verify after the kills" || fail "(b) verify: $out"
list=$("$HVCTL" store "$B" list)
n=0
for id in "${committed[@]}"; do printf '%s\n' "$list" | grep -q "^$id " && n=$((n + 1)); done
[ $n = ${#committed[@]} ] && ok "(b) every committed checkpoint is listed" ||
	fail "(b) $n of ${#committed[@]} listed"
n=0
for id in "${committed[@]}"; do restores "$B" "$id" && n=$((n + 1)); done
[ $n = ${#committed[@]} ] && ok "(b) every committed checkpoint restores" ||
	fail "(b) $n of ${#committed[@]} restore"
packs0=$(pack_files "$B")
tmp0=$(tmp_files "$B")
locks0=$(ls "$B/locks" | wc -l)
out=$("$HVCTL" store "$B" gc --lock-wait 5 --repack-threshold 0)
[ $? = 0 ] || fail "(b) gc: $out"
packs1=$(pack_files "$B")
tmp1=$(tmp_files "$B")
[ "$tmp1" = 0 ] && [ "$(ls "$B/locks" | wc -l)" = 0 ] &&
	ok "(b) gc: $packs0 -> $packs1 files in packs/, temp files $tmp0 -> 0, locks $locks0 -> 0" ||
	fail "(b) gc left $tmp1 temp files, locks: $(ls "$B/locks")"
[ "$tmp0" -gt 0 ] || [ "$killed" = 0 ] || echo "note: no kill landed mid-write this run"
out=$("$HVCTL" store "$B" verify --read-data)
[ $? = 0 ] && ok "(b) verify --read-data after gc" || fail "(b) verify after gc: $out"
restores "$B" "${committed[0]}" && restores "$B" "$last" &&
	ok "(b) first and last still restore after gc" || fail "(b) restore after gc"

# ---- (c) damage ----
C=$T/dmg
S=$T/c.sock
start_vm "$S" "$T/c1.out" run --accel "$ACCEL" --memory 64M --name one \
	--cmdline "start=4M end=8M passes=0 report=1" "$ELF"
wait_more "$T/c1.out" 1
id1=$("$HVCTL" "$S" checkpoint --store "$C")
quit_hv
(cd "$C" && find packs index -type f | sort) >"$T/files1"
start_vm "$S" "$T/c2.out" run --accel "$ACCEL" --memory 64M --name two \
	--cmdline "start=8M end=14M passes=0 report=1" "$ELF"
wait_more "$T/c2.out" 1
id2=$("$HVCTL" "$S" checkpoint --store "$C")
quit_hv
(cd "$C" && find packs index -type f | sort) >"$T/files2"
pack2=$(comm -13 "$T/files1" "$T/files2" | grep '^packs/' | head -1)
index2=$(comm -13 "$T/files1" "$T/files2" | grep '^index/' | head -1)
[ -n "$pack2" ] && [ -n "$index2" ] || fail "(c) the second checkpoint wrote no pack/index"

# damage KIND: on a copy of the store, then verify and restore both checkpoints.
damage() {
	local d=$T/dmg-$1 name=$2 out rc
	rm -rf "$d"
	cp -a "$C" "$d"
	case $1 in
	flip) printf '\xff' | dd of="$d/$pack2" bs=1 seek=40 conv=notrunc status=none ;;
	truncate) truncate -s 100 "$d/$index2" ;;
	delete) rm "$d/$pack2" ;;
	esac
	out=$("$HVCTL" store "$d" verify --read-data)
	rc=$?
	[ $rc = 1 ] && printf '%s' "$out" | grep -q "$name" &&
		ok "(c) $1: verify names $name" || fail "(c) $1: verify status $rc: $out"
	"$HV" restore --store "$d" "$id2" </dev/null >/dev/null 2>"$T/e" &
	PIDS+=($!)
	wait $!
	rc=$?
	[ $rc != 0 ] && [ "$(wc -l <"$T/e")" = 1 ] &&
		ok "(c) $1: restoring the damaged checkpoint fails ($rc): $(cat "$T/e")" ||
		fail "(c) $1: restore of $id2: status $rc: $(cat "$T/e")"
	restores "$d" "$id1" && ok "(c) $1: the other checkpoint restores" ||
		fail "(c) $1: $id1 does not restore"
}
damage flip "$(basename "$pack2")"
damage truncate "$index2"
damage delete "$(basename "$pack2")"
out=$("$HVCTL" store "$T/dmg-truncate" rebuild-index)
[ $? = 0 ] && "$HVCTL" store "$T/dmg-truncate" verify --read-data >/dev/null &&
	restores "$T/dmg-truncate" "$id2" && ok "(c) rebuild-index repairs the truncated index" ||
	fail "(c) rebuild-index: $out"

# ---- (d) two writers and prune in a loop ----
D=$T/conc
"$HV" run --accel "$ACCEL" --memory 64M --name d1 --control "$T/d1.sock" \
	--cmdline "start=4M end=10M passes=0 report=1" "$ELF" </dev/null >"$T/d1.out" 2>&1 &
PIDS+=($!)
"$HV" run --accel "$ACCEL" --memory 64M --name d2 --control "$T/d2.sock" \
	--cmdline "start=10M end=16M passes=0 report=1" "$ELF" </dev/null >"$T/d2.out" 2>&1 &
PIDS+=($!)
wait_socket "$T/d1.sock" && wait_socket "$T/d2.sock" || fail "(d) no sockets"
"$HVCTL" "$T/d1.sock" checkpoint --store "$D" >/dev/null || fail "(d) first checkpoint"
writer() { # writer SOCK N: N checkpoints; the number that failed in $T/$2.fails
	local f=0
	for _ in $(seq "$2"); do
		"$HVCTL" "$1" checkpoint --store "$D" >/dev/null 2>>"$T/d.err" || f=$((f + 1))
	done
	echo $f >"$1.fails"
}
writer "$T/d1.sock" 12 &
w1=$!
writer "$T/d2.sock" 12 &
w2=$!
prunes=0
while kill -0 $w1 2>/dev/null || kill -0 $w2 2>/dev/null; do
	"$HVCTL" store "$D" prune --keep-last 2 --lock-wait 30 >/dev/null 2>>"$T/p.err" &&
		prunes=$((prunes + 1)) || fail "(d) prune: $(tail -1 "$T/p.err")"
done
wait $w1 $w2
f=$(($(cat "$T/d1.sock.fails") + $(cat "$T/d2.sock.fails")))
[ "$f" = 0 ] && ok "(d) 24 checkpoints of 2 VMs all succeeded beside $prunes prunes" ||
	fail "(d) $f checkpoints failed: $(sort -u "$T/d.err" | head -3)"
[ "$prunes" -ge 2 ] || fail "(d) prune ran only $prunes times"
"$HVCTL" store "$D" prune --keep-last 2 >/dev/null || fail "(d) last prune"
"$HVCTL" "$T/d1.sock" quit >/dev/null
"$HVCTL" "$T/d2.sock" quit >/dev/null
out=$("$HVCTL" store "$D" verify --read-data)
[ $? = 0 ] && ok "(d) verify --read-data" || fail "(d) verify: $out"
kept=$(ls "$D/manifests")
n=0
for id in $kept; do restores "$D" "$id" && n=$((n + 1)); done
[ "$n" = 4 ] && ok "(d) the 4 kept checkpoints restore" || fail "(d) $n of $(echo $kept | wc -w) restore"

echo "store ($ACCEL): $FAILS failures"
[ "$FAILS" = 0 ]
