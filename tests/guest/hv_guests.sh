#!/bin/bash
# hv_guests.sh BUILD_DIR [HV] - boot the guests on hv and check their output.
#
# The same checks as qemu_crosscheck.sh, run as
#   HV run --accel $ACCEL --memory 128M --cmdline CMDLINE GUEST.elf
# where hv's exit status is the guest's debug-exit code. ACCEL defaults to emu; HV
# defaults to BUILD_DIR/hv.
set -u
BUILD=${1:?usage: hv_guests.sh BUILD_DIR [HV]}
HV=${2:-$BUILD/hv}
GUEST_DIR=$BUILD/guest
ACCEL=${ACCEL:-emu}
if [ ! -x "$HV" ]; then
	echo "FAIL: no hv binary at $HV"
	exit 1
fi
. "$(dirname "$0")/guest_checks.sh"

run_guest() {
	timeout 120 "$HV" run --accel "$ACCEL" --memory 128M --cmdline "$2" \
		"$GUEST_DIR/$1.elf" </dev/null >"$OUT" 2>&1
	CODE=$?
	if [ "$CODE" = 124 ]; then
		echo "(timed out)" >>"$OUT"
		CODE=-1
	fi
}

run_all_checks
echo "hv_guests ($ACCEL): $FAILS failures"
[ "$FAILS" = 0 ]
