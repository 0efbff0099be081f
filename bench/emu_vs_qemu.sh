#!/bin/bash
# emu_vs_qemu.sh [BUILD_DIR] - wall time of the same guests on hv's emulator and QEMU TCG.
#
# Runs memtouch and cputest with the same ELF, memory size and command line under
#   BUILD_DIR/hv run --accel emu --memory 128M --cmdline ...
#   qemu-system-x86_64 -accel tcg -m 128 -kernel ... -append ...
# and prints each wall time and the speed of hv relative to QEMU (QEMU time / hv time:
# above 1 means hv is faster). QEMU's time includes its firmware (SeaBIOS) boot, measured
# separately with the hello guest and reported as "qemu boot". Environment: HV, QEMU,
# MEMTOUCH (command line), REPEAT (runs per case, best time kept).
set -u
BUILD=${1:-build}
HV=${HV:-$BUILD/hv}
QEMU=${QEMU:-qemu-system-x86_64}
GUEST_DIR=$BUILD/guest
MEMTOUCH=${MEMTOUCH:-start=4M end=64M passes=20}
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

run_hv() { "$HV" run --accel emu --memory 128M --cmdline "$2" "$GUEST_DIR/$1.elf"; }
run_qemu() {
	"$QEMU" -accel tcg -m 128 -kernel "$GUEST_DIR/$1.elf" -append "$2" -display none \
		-serial stdio -monitor none -net none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04
}

printf '%-10s %-32s %10s %10s %10s\n' guest cmdline hv_s qemu_s hv_speed
time_best run_qemu hello ""
qboot=$BEST
for c in "memtouch|$MEMTOUCH" "cputest|"; do
	g=${c%%|*} args=${c#*|}
	time_best run_hv "$g" "$args"
	th=$BEST hrc=$LAST_RC
	time_best run_qemu "$g" "$args"
	tq=$BEST qrc=$LAST_RC
	note=
	[ "$hrc" = 0 ] || note="$note (hv exit $hrc)"
	[ "$qrc" = 1 ] || note="$note (qemu exit $qrc)"
	ratio=$(awk -v h="$th" -v q="$tq" 'BEGIN { printf "%.2fx", (h > 0 ? q / h : 0) }')
	printf '%-10s %-32s %10s %10s %10s%s\n' "$g" "'$args'" "$th" "$tq" "$ratio" "$note"
done
echo "qemu boot (hello guest, firmware included): ${qboot}s"
