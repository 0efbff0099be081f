# shellcheck shell=bash
# lib.sh - what the hvd test scripts share (sourced after each sets up its own cleanup
# trap on EXIT).
#
# fail/ok/expect report checks and count failures in FAILS. The INT/TERM trap turns
# meson's timeout (SIGTERM) into an ordinary exit, so the script's EXIT trap still runs:
# the VMs an hvd spawned live in sessions of their own, by design, and a test killed
# without its cleanup would leave them running, slowing every test after it.

FAILS=${FAILS:-0}

fail() {
	echo "FAIL: $*"
	FAILS=$((FAILS + 1))
}
ok() { echo "ok: $*"; }
expect() {
	if printf '%s\n' "$3" | grep -Eq -- "$2"; then ok "$1"; else fail "$1: no /$2/ in: $3"; fi
}

trap 'exit 1' INT TERM
