#!/bin/bash
# emu_vs_qemu.sh [BUILD_DIR] - wall time of the same guests on hv's emulator and QEMU TCG.
#
# Runs memtouch and cputest with the same ELF, memory size and command line under
#   BUILD_DIR/hv run --accel emu --memory 512M --cmdline ...
#   qemu-system-x86_64 -accel tcg -m 512 -kernel ... -append ...            (qemu)
#   the same with -object memory-backend-memfd (qemu_memfd)
# and prints the best wall time of each and hv's speed relative to QEMU (QEMU time / hv
# time: above 1 means hv is faster).
#
# Two things make the plain comparison unfair to hv, so both are shown and corrected for:
#  - QEMU's time includes its firmware (SeaBIOS) boot; it is measured with the hello guest
#    ("qemu boot") and subtracted in the *_net ratios.
#  - QEMU's default RAM is anonymous memory with transparent huge pages, hv's is a memfd
#    (shared memory, which gets huge pages only if the host's shmem_enabled allows). A
#    guest sweeping 252 MiB is bound by host TLB misses, so qemu_memfd — QEMU on the same
#    kind of memory as hv — is the like-for-like comparison of the CPU emulators.
#
# Environment: HV, QEMU, MEMTOUCH (command line), MEM (MiB), REPEAT (runs per case).
set -u
BUILD=${1:-build}
HV=${HV:-$BUILD/hv}
QEMU=${QEMU:-qemu-system-x86_64}
GUEST_DIR=$BUILD/guest
MEM=${MEM:-512}
MEMTOUCH=${MEMTOUCH:-start=4M end=256M passes=30 report=100}
# The same loop over 2 MiB that stays in the caches: instruction throughput, not memory.
MEMTOUCH_HOT=${MEMTOUCH_HOT:-start=4M end=6M passes=5000 report=100000}
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
ratio() { awk -v h="$1" -v q="$2" 'BEGIN { printf "%.2fx", (h > 0 ? q / h : 0) }'; }

time_best run_qemu hello ""
qboot=$BEST
echo "RAM ${MEM} MiB; best of $REPEAT runs; qemu boot (firmware, hello guest): ${qboot}s"
printf '%-12s %7s %7s %10s %8s %12s %9s %13s\n' case hv_s qemu_s qemu_memfd vs_qemu vs_qemu_net \
	vs_memfd vs_memfd_net
for c in "memtouch|memtouch|$MEMTOUCH" "memtouch-hot|memtouch|$MEMTOUCH_HOT" "cputest|cputest|"; do
	name=${c%%|*} c=${c#*|}
	g=${c%%|*} args=${c#*|}
	time_best run_hv "$g" "$args"
	th=$BEST hrc=$LAST_RC
	time_best run_qemu "$g" "$args"
	tq=$BEST qrc=$LAST_RC
	time_best run_qemu_memfd "$g" "$args"
	tm=$BEST mrc=$LAST_RC
	tmnet=$(awk -v a="$tm" -v b="$qboot" 'BEGIN { printf "%.3f", a - b }')
	tqnet=$(awk -v a="$tq" -v b="$qboot" 'BEGIN { printf "%.3f", a - b }')
	note=
	[ "$hrc" = 0 ] || note="$note (hv exit $hrc)"
	[ "$qrc" = 1 ] || note="$note (qemu exit $qrc)"
	[ "$mrc" = 1 ] || note="$note (qemu_memfd exit $mrc)"
	printf '%-12s %7s %7s %10s %8s %12s %9s %13s%s\n' "$name" "$th" "$tq" "$tm" \
		"$(ratio "$th" "$tq")" "$(ratio "$th" "$tqnet")" "$(ratio "$th" "$tm")" \
		"$(ratio "$th" "$tmnet")" "$note"
done
echo "memtouch: '$MEMTOUCH'; memtouch-hot: '$MEMTOUCH_HOT'"
