# lib.sh - shell helpers for the checkpoint tests (sourced; bash).
#
# The sourcing script sets HV, HVCTL, S (the control socket), T (a scratch directory) and
# FAILS=0 before using them. Every helper that fails counts a failure and goes on, so one
# run reports everything that is wrong.

fail() {
	echo "FAIL: $*"
	FAILS=$((FAILS + 1))
}
ok() { echo "ok: $*"; }

expect() { # expect WHAT REGEX TEXT
	if printf '%s\n' "$3" | grep -Eq -- "$2"; then ok "$1"; else fail "$1: no /$2/ in: $3"; fi
}

wait_socket() {
	for _ in $(seq 100); do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

passes() { # passes OUT: memtouch pass lines so far
	local n
	n=$(grep -c '^memtouch pass' "$1" 2>/dev/null)
	echo "${n:-0}"
}
last_pass() { grep '^memtouch pass' "$1" | tail -n 1 | awk '{print $3}'; }

wait_more() { # wait_more OUT N: until OUT shows more than N passes (20 s at most)
	for _ in $(seq 200); do
		[ "$(passes "$1")" -gt "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

wait_hv() { # wait_hv [TENTHS]: RC is hv's exit status, or "timeout" (default 20 s)
	RC=timeout
	for _ in $(seq "${1:-200}"); do
		if ! kill -0 "$HV_PID" 2>/dev/null; then
			wait "$HV_PID"
			RC=$?
			HV_PID=
			return
		fi
		sleep 0.1
	done
}

wait_file() { # wait_file FILE: until FILE is non-empty (30 s at most)
	for _ in $(seq 300); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

start_hv() { # start_hv OUT ARGS...: run hv in the background; sets HV_PID
	local out=$1
	shift
	"$HV" "$@" </dev/null >"$out" 2>"$out.err" &
	HV_PID=$!
}

field() { printf '%s\n' "$2" | sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p" | tr -d '"'; }

quit_hv() {
	"$HVCTL" "$S" quit >/dev/null || fail "quit: status $?"
	wait_hv
	[ "$RC" = 0 ] || fail "hv after quit: status $RC"
}
