#!/bin/bash
# qemu_crosscheck.sh BUILD_DIR - boot the guests under QEMU TCG and check their output.
#
# Proves the guest images are valid PVH guests independently of hv: QEMU's isa-debug-exit
# makes QEMU exit with code*2+1, which we turn back into the guest's code. cputest runs on
# both QEMU's default CPU model and -cpu max. Exit 77 (skip) without QEMU.
set -u
BUILD=${1:?usage: qemu_crosscheck.sh BUILD_DIR}
GUEST_DIR=$BUILD/guest
QEMU=${QEMU:-qemu-system-x86_64}
if ! command -v "$QEMU" >/dev/null 2>&1; then
	echo "SKIP: qemu-system-x86_64 not installed"
	exit 77
fi
CPU=${CPU:-}
. "$(dirname "$0")/guest_checks.sh"

run_guest() {
	timeout 120 "$QEMU" -accel tcg ${CPU:+-cpu "$CPU"} -m 128 -kernel "$GUEST_DIR/$1.elf" \
		-append "$2" -display none -serial stdio -monitor none -net none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 </dev/null >"$OUT" 2>&1
	local rc=$?
	if [ $((rc % 2)) = 1 ]; then
		CODE=$(((rc - 1) / 2))
	else
		CODE=-1 # 0: guest reset/shut down without debug-exit; 124: timeout
		echo "qemu exit status $rc" >>"$OUT"
	fi
}

run_all_checks
CPU=max expect cputest "" 0 "cputest: [0-9]+ tests, 0 failures"
echo "qemu_crosscheck: $FAILS failures"
[ "$FAILS" = 0 ]
