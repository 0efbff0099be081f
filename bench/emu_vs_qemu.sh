#!/bin/bash
# emu_vs_qemu.sh [BUILD_DIR] - speed of hv's software CPU against QEMU TCG, same guests.
#
# Every case runs the same ELF with the same RAM size and command line under
#   BUILD_DIR/hv run --accel emu --memory 512M --cmdline ...
#   qemu-system-x86_64 -accel tcg -m 512 -kernel ... -append ...          (qemu)
#   the same with -object memory-backend-memfd                           (qemu_memfd)
# and prints the best wall time of REPEAT runs of each.
#
# Start-up differs (QEMU boots SeaBIOS first, ~0.15-0.3 s), so the speed ratio is taken
# on the marginal cost: each memtouch case runs at P and at 2P passes, and
# speed = (qemu(2P) - qemu(P)) / (hv(2P) - hv(P)): above 1 means hv is faster.
#
# QEMU's default RAM is anonymous memory with transparent huge pages; hv's is a memfd
# (shared memory gets huge pages only if the host's shmem_enabled allows, usually not).
# A guest sweeping 252 MiB is bound by host TLB misses, so qemu_memfd — QEMU on the same
# kind of memory as hv — is the like-for-like comparison of the two CPU emulators.
#
# Environment: HV, QEMU, MEM (MiB), REPEAT (runs per case).
set -u
BUILD=${1:-build}
HV=${HV:-$BUILD/hv}
QEMU=${QEMU:-qemu-system-x86_64}
GUEST_DIR=$BUILD/guest
MEM=${MEM:-512}
REPEAT=${REPEAT:-3}

for f in "$HV" "$GUEST_DIR/memtouch.elf" "$GUEST_DIR/cputest.elf"; do
	[ -e "$f" ] || { echo "missing $f (build first: meson compile -C $BUILD)"; exit 1; }
done
command -v "$QEMU" >/dev/null || { echo "missing $QEMU"; exit 1; }

now() { date +%s.%N; }

# time_best CMD...: sets BEST to the best wall time (s) of REPEAT runs, LAST_RC to the
# exit status of the last run.
time_best() {
	local t0 t1
	BEST=
	for _ in $(seq "$REPEAT"); do
		t0=$(now)
		"$@" >/dev/null 2>&1 </dev/null
		LAST_RC=$?
		t1=$(now)
		BEST=$(awk -v a="$t0" -v b="$t1" -v best="$BEST" \
			'BEGIN { t = b - a; if (best == "" || t < best) best = t; printf "%.3f", best }')
	done
}

run_hv() { "$HV" run --accel emu --memory "${MEM}M" --cmdline "$2" "$GUEST_DIR/$1.elf"; }
qemu_common() {
	"$QEMU" -accel tcg -m "$MEM" "$@" -display none -serial stdio -monitor none -net none \
		-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04
}
run_qemu() { qemu_common -kernel "$GUEST_DIR/$1.elf" -append "$2"; }
run_qemu_memfd() {
	qemu_common -object "memory-backend-memfd,id=ram0,size=${MEM}M" \
		-machine memory-backend=ram0 -kernel "$GUEST_DIR/$1.elf" -append "$2"
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
ratio() { awk -v h="$1" -v q="$2" 'BEGIN { printf "%.2fx", (h > 0 ? q / h : 0) }'; }

NOTES=
# measure NAME GUEST ARGS: sets H Q M (best times) and records failures in NOTES.
measure() {
	time_best run_hv "$2" "$3"
	H=$BEST
	[ "$LAST_RC" = 0 ] || NOTES="$NOTES; hv $1 exit $LAST_RC"
	time_best run_qemu "$2" "$3"
	Q=$BEST
	[ "$LAST_RC" = 1 ] || NOTES="$NOTES; qemu $1 exit $LAST_RC"
	time_best run_qemu_memfd "$2" "$3"
	M=$BEST
	[ "$LAST_RC" = 1 ] || NOTES="$NOTES; qemu_memfd $1 exit $LAST_RC"
}

echo "RAM ${MEM} MiB, best of $REPEAT runs; times in seconds"
printf '%-20s %7s %7s %10s   %-24s\n' case hv qemu qemu_memfd "speed vs qemu / qemu_memfd"
for c in "memtouch|start=4M end=256M report=1000|20" \
	"memtouch-hot|start=4M end=6M report=100000|3000"; do
	name=${c%%|*} rest=${c#*|}
	args=${rest%%|*} p=${rest#*|}
	measure "$name" memtouch "$args passes=$p"
	h1=$H q1=$Q m1=$M
	measure "$name" memtouch "$args passes=$((2 * p))"
	h2=$H q2=$Q m2=$M
	printf '%-20s %7s %7s %10s\n' "$name P=$p" "$h1" "$q1" "$m1"
	printf '%-20s %7s %7s %10s\n' "$name P=$((2 * p))" "$h2" "$q2" "$m2"
	dh=$(sub "$h2" "$h1") dq=$(sub "$q2" "$q1") dm=$(sub "$m2" "$m1")
	printf '%-20s %7s %7s %10s   %s / %s\n' "  marginal" "$dh" "$dq" "$dm" \
		"$(ratio "$dh" "$dq")" "$(ratio "$dh" "$dm")"
done
measure cputest cputest ""
printf '%-20s %7s %7s %10s   %s / %s (start-up included)\n' cputest "$H" "$Q" "$M" \
	"$(ratio "$H" "$Q")" "$(ratio "$H" "$M")"
echo "memtouch: start=4M end=256M; memtouch-hot: start=4M end=6M (cache-resident)"
[ -z "$NOTES" ] || echo "FAILURES${NOTES}"
