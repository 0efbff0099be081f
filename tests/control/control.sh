#!/bin/bash
# control.sh BUILD_DIR - the control socket and hvctl, as a user drives them.
#
# Runs memtouch forever under `hv run --control SOCK` (emu), then: info, pause (the
# console goes quiet), resume (it counts on), the socket's mode, hostile lines through
# ctl-raw (bad JSON, unknown command, an over-long line: error replies, hv keeps running),
# STATE_CHANGE events, refusal of a socket path in use, hvctl's errors, a failed save
# that leaves the VM running, save --keep-running, two rounds of save + `hv restore
# --control` continuing memtouch without CORRUPT, and quit (exit status 0, socket gone).
set -u
BUILD=${1:?usage: control.sh BUILD_DIR}
HV=$BUILD/hv
HVCTL=$BUILD/hvctl
RAW=$BUILD/tests/control/ctl-raw
ELF=$BUILD/guest/memtouch.elf
ACCEL=${ACCEL:-emu}
T=$(mktemp -d /tmp/hv-control.XXXXXX)
S=$T/vm.sock
FAILS=0
HV_PID=

cleanup() {
	[ -n "$HV_PID" ] && kill "$HV_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	FAILS=$((FAILS + 1))
}
ok() { echo "ok: $*"; }

# expect NAME PATTERN TEXT: TEXT matches the extended regex PATTERN.
expect() {
	if printf '%s\n' "$3" | grep -Eq -- "$2"; then ok "$1"; else fail "$1: no /$2/ in: $3"; fi
}

wait_socket() {
	for _ in $(seq 100); do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

passes() {
	local n
	n=$(grep -c '^memtouch pass' "$1" 2>/dev/null)
	echo "${n:-0}"
}
last_pass() { grep '^memtouch pass' "$1" | tail -n 1 | awk '{print $3}'; }

# wait_hv: wait up to 20 s for hv ($HV_PID) to exit; sets RC to its status. Not to be
# run in a subshell: only this shell can collect the status of its child.
wait_hv() {
	RC=timeout
	for _ in $(seq 200); do
		if ! kill -0 "$HV_PID" 2>/dev/null; then
			wait "$HV_PID"
			RC=$?
			HV_PID=
			return
		fi
		sleep 0.1
	done
}

# wait_more FILE N: wait up to 20 s for FILE to hold more than N pass lines.
wait_more() {
	for _ in $(seq 200); do
		[ "$(passes "$1")" -gt "$2" ] && return 0
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

CMDLINE="start=4M end=16M passes=0 report=10"
start_hv "$T/run.out" run --accel "$ACCEL" --memory 64M --control "$S" --cmdline "$CMDLINE" "$ELF"
wait_socket "$S" || { fail "hv did not create $S"; cat "$T/run.out.err"; exit 1; }
wait_more "$T/run.out" 0 || fail "memtouch did not start"

expect "socket mode 0600" '^600$' "$(stat -c %a "$S")"
out=$("$HVCTL" "$S" info)
expect "info: running" '^state +running$' "$out"
expect "info: accel" "^accel +$ACCEL\$" "$out"
expect "info: memory" '^memory +64 MiB$' "$out"
out=$("$HVCTL" "$S" info --json)
expect "info --json" '^\{"id":1,"return":\{.*"name":"memtouch.elf".*"vcpus":1' "$out"

# Pause: the console goes quiet; resume: it counts on.
"$HVCTL" "$S" pause || fail "pause: status $?"
n1=$(passes "$T/run.out")
sleep 0.5
n2=$(passes "$T/run.out")
[ "$n1" = "$n2" ] && ok "paused memtouch prints nothing" || fail "paused but $n1 -> $n2 passes"
expect "info: paused" '^state +paused$' "$("$HVCTL" "$S" info)"
"$HVCTL" "$S" resume || fail "resume: status $?"
wait_more "$T/run.out" "$n2" && ok "resumed memtouch counts on" || fail "no pass after resume"

# Hostile lines: each gets an error reply and the connection (and hv) survive.
out=$("$RAW" "$S" 'not json' '[1,2]' '{"id":7,"execute":"reboot"}' \
	'{"id":8,"execute":"save","arguments":{"file":3}}' '{"id":9,"execute":"info","x":1}' \
	'{"id":{"a":[1]},"execute":"info"}')
expect "greeting" '^\{"hv":\{"version":"[^"]+","protocol":1,"capabilities":\["events"\]' "$out"
expect "bad JSON: ParseError" '^\{"error":\{"class":"ParseError","desc":"invalid JSON' "$out"
expect "array: InvalidRequest" '^\{"error":\{"class":"InvalidRequest"' "$out"
expect "unknown command" '^\{"id":7,"error":\{"class":"CommandNotFound","desc":"unknown command .reboot."' "$out"
expect "bad argument" '^\{"id":8,"error":\{"class":"InvalidArgument"' "$out"
expect "unknown member" '^\{"id":9,"error":\{"class":"InvalidRequest"' "$out"
expect "id echoed as is" '^\{"id":\{"a":\[1\]\},"return":\{' "$out"
expect "connection survives errors" '^OPEN$' "$out"
out=$("$RAW" "$S" '{"id":1,"execute":"info"}' --long=70000 '{"id":2,"execute":"info"}')
expect "long line: ParseError" '"class":"ParseError","desc":"request line longer than 65536 bytes' "$out"
expect "long line: dropped" '^EOF$' "$out"
expect "hv survives hostile clients" '^state +running$' "$("$HVCTL" "$S" info)"

# Events: every client hears about state changes.
out=$("$RAW" "$S" '{"id":1,"execute":"pause"}' '{"id":2,"execute":"resume"}')
expect "event: paused" '^\{"event":"STATE_CHANGE",.*"data":\{"state":"paused"\}' "$out"
expect "event: running" '^\{"event":"STATE_CHANGE",.*"data":\{"state":"running"\}' "$out"

# A socket in use, and a path that is not a socket, are refused.
"$HV" run --accel "$ACCEL" --control "$S" "$ELF" </dev/null >/dev/null 2>"$T/busy.err"
rc=$?
expect "socket in use refused (status $rc)" 'in use' "$(cat "$T/busy.err")"
[ "$rc" = 2 ] || fail "socket in use: status $rc, want 2"
touch "$T/plain"
"$HV" run --accel "$ACCEL" --control "$T/plain" "$ELF" </dev/null >/dev/null 2>"$T/plain.err"
expect "non-socket path refused" 'exists and is not a socket' "$(cat "$T/plain.err")"

# hvctl's own errors.
"$HVCTL" "$T/nothere" info 2>"$T/e"
rc=$?
expect "hvctl: no socket (status $rc)" "^hvctl: $T/nothere: No such file or directory\$" "$(cat "$T/e")"
[ "$rc" = 1 ] || fail "hvctl no socket: status $rc, want 1"
"$HVCTL" "$S" frobnicate 2>/dev/null
[ $? = 2 ] && ok "hvctl: unknown command is a usage error" || fail "hvctl frobnicate: not 2"
"$HVCTL" "$S" save 2>/dev/null
[ $? = 2 ] && ok "hvctl: save without FILE is a usage error" || fail "hvctl save: not 2"
"$HVCTL" --help | grep -q '^usage: hvctl' && ok "hvctl --help" || fail "hvctl --help"

# A failed save says why, leaves nothing behind and the VM running.
"$HVCTL" "$S" save "$T/no/such/dir/vm.hvs" 2>"$T/save.err"
rc=$?
[ "$rc" = 1 ] || fail "save to a bad path: status $rc, want 1"
expect "failed save says why" 'hvctl: save: .*no/such/dir' "$(cat "$T/save.err")"
expect "failed save leaves the VM running" '^state +running$' "$("$HVCTL" "$S" info)"
[ -e "$T/no/such/dir/vm.hvs" ] && fail "failed save left a file"

# save --keep-running: a file, and the VM counts on.
n=$(passes "$T/run.out")
"$HVCTL" "$S" save "$T/keep.hvs" --keep-running >/dev/null || fail "save --keep-running"
[ -s "$T/keep.hvs" ] && ok "save --keep-running wrote the file" || fail "no keep.hvs"
expect "save --keep-running: still running" '^state +running$' "$("$HVCTL" "$S" info)"
wait_more "$T/run.out" "$n" || fail "no pass after save --keep-running"

# Save (hv exits 0) and restore, twice in a row: memtouch counts on without CORRUPT.
OUT=$T/run.out
for cycle in 1 2; do
	out=$("$HVCTL" "$S" save "$T/vm$cycle.hvs")
	expect "save $cycle: reply" "^saved to $T/vm$cycle.hvs: .* VM stopped\$" "$out"
	wait_hv
	[ "$RC" = 0 ] && ok "save $cycle: hv exits 0" || fail "hv after save $cycle: status $RC"
	[ -e "$S" ] && fail "socket left behind after save $cycle"
	before=$(last_pass "$OUT")
	OUT=$T/restore$cycle.out
	start_hv "$OUT" restore "$T/vm$cycle.hvs" --control "$S"
	wait_socket "$S" || fail "restore $cycle: no socket"
	wait_more "$OUT" 1 || fail "restore $cycle: memtouch did not continue"
	after=$(last_pass "$OUT")
	[ -n "$after" ] && [ "$after" -gt "${before:-0}" ] &&
		ok "restore $cycle: memtouch continues (pass $before -> $after)" ||
		fail "restore $cycle: memtouch at pass '$after', saved at '$before'"
done

if [ -n "$HV_PID" ]; then
	"$HVCTL" "$S" quit || fail "quit: status $?"
	wait_hv
	[ "$RC" = 0 ] && ok "hv exits 0 on quit" || fail "hv after quit: status $RC"
	[ -e "$S" ] && fail "socket left behind after quit"
fi
grep -q CORRUPT "$T"/*.out && fail "memtouch reported CORRUPT: $(grep -h CORRUPT "$T"/*.out)"

echo "control ($ACCEL): $FAILS failures"
[ "$FAILS" = 0 ]
