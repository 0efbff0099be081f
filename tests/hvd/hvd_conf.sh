#!/bin/bash
# hvd_conf.sh BUILD_DIR - hvd's config file, its log file and `hvd status --json`, as an
# operator sets up a host: no VM is started, only the daemon.
#
# A config file with relative paths (resolved against the file's directory) gives the
# state directory, the socket and the log; hvd started with --config alone serves
# `hvctl list` there and logs to the file; a command-line option and the environment
# override the file; SIGHUP reopens a log that logrotate moved away; `hvd start` in the
# background logs where the file says; bad files (unknown key, bad value, duplicate,
# unterminated string, half the TLS settings, a missing file) stop hvd with exit 2 and
# one line naming the file, the line and the key.
set -u
BUILD=${1:?usage: hvd_conf.sh BUILD_DIR}
HVD=$BUILD/hvd
HVCTL=$BUILD/hvctl
T=$(mktemp -d /tmp/hv-hvdconf.XXXXXX)
FAILS=0
HVD_PID=
# Only what this test writes: no settings from the caller's environment or /etc.
unset HVD_SOCKET HVD_STATE_DIR
export HVD_CONFIG=

cleanup() {
	[ -n "$HVD_PID" ] && kill -9 "$HVD_PID" 2>/dev/null
	for st in "$T"/state "$T"/state2; do
		[ -f "$st/hvd.pid" ] && kill -9 "$(cat "$st/hvd.pid")" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT

# fail, ok, expect; SIGTERM (meson's timeout) runs the EXIT trap too
. "$(dirname "$0")/lib.sh"
# Wait for an hvd to answer at socket $1.
answers() {
	for _ in $(seq 300); do
		"$HVCTL" --socket "$1" list >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

mkdir -p "$T/etc" "$T/elsewhere"
CONF=$T/hvd.conf
cat >"$CONF" <<'CFG'
# hvd's settings; relative paths are relative to this file
state_dir = "state"
socket = "hvd.sock"   # the API
log = "log/hvd.log"
autostart = no
CFG
mkdir -p "$T/log"

# ---- --config alone: state, socket and log from the file ----
cd "$T/elsewhere" || exit 1
"$HVD" --foreground --config ../hvd.conf 2>"$T/fg.err" &
HVD_PID=$!
if answers "$T/hvd.sock"; then ok "--config alone: hvctl list answers at the file's socket"; else
	fail "hvd did not answer at $T/hvd.sock: $(cat "$T/fg.err" "$T/log/hvd.log" 2>/dev/null)"
fi
expect "list: no domains" '^NAME +STATE' "$("$HVCTL" --socket "$T/hvd.sock" list)"
[ -f "$T/state/hvd.pid" ] && ok "state directory from the file" || fail "no $T/state/hvd.pid"
expect "log file: the start line" "^hvd: started: pid $HVD_PID, socket $T/hvd.sock, state $T/state" \
	"$(cat "$T/log/hvd.log" 2>/dev/null)"
expect "log file: autostart = no" '^hvd: autostart off' "$(cat "$T/log/hvd.log" 2>/dev/null)"
[ -s "$T/fg.err" ] && fail "stderr not empty with a log file: $(cat "$T/fg.err")" ||
	ok "nothing on stderr with a log file"

# ---- status --json, running ----
out=$("$HVD" status --config "$CONF" --json)
rc=$?
[ $rc = 0 ] && ok "status --json running: exit 0" || fail "status --json: exit $rc: $out"
expect "status --json running" \
	"^\{\"running\":true,.*\"pid\":$HVD_PID,.*\"answers\":true,.*\"domains\":0,\"domains_running\":0\}$" "$out"
expect "status --json: the file's socket and state" "\"socket\":\"$T/hvd.sock\",\"state_dir\":\"$T/state\"" "$out"
if command -v python3 >/dev/null; then
	printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["running"] is True' &&
		ok "status --json is JSON" || fail "status --json is not JSON: $out"
fi
expect "status text" "^hvd: running: pid $HVD_PID, socket $T/hvd.sock, state $T/state, 0 domains" \
	"$("$HVD" status --config "$CONF")"

# ---- SIGHUP: logrotate moves the log away, hvd writes a new one ----
mv "$T/log/hvd.log" "$T/log/hvd.log.1"
kill -HUP "$HVD_PID"
for _ in $(seq 100); do [ -s "$T/log/hvd.log" ] && break; sleep 0.05; done
expect "SIGHUP: a new log at the path" '^hvd: SIGHUP: reopened the log' "$(cat "$T/log/hvd.log" 2>/dev/null)"
kill -0 "$HVD_PID" 2>/dev/null && ok "hvd lives on after SIGHUP" || fail "hvd died of SIGHUP"
kill -TERM "$HVD_PID"
wait "$HVD_PID"
rc=$?
HVD_PID=
[ $rc = 0 ] && ok "SIGTERM: exit 0" || fail "SIGTERM: exit $rc"
expect "the stop goes to the new log" '^hvd: stopped$' "$(cat "$T/log/hvd.log")"
grep -q '^hvd: stopped$' "$T/log/hvd.log.1" && fail "the old log got lines after SIGHUP" ||
	ok "the old log is left alone"

# ---- status --json, not running ----
out=$("$HVD" status --config "$CONF" --json)
rc=$?
[ $rc = 3 ] && ok "status --json not running: exit 3" || fail "status --json: exit $rc: $out"
expect "status --json not running" '^\{"running":false,' "$out"

# ---- the command line and the environment override the file ----
cd "$T" || exit 1
"$HVD" --foreground --config "$CONF" --log "$T/other.log" --socket "$T/other.sock" 2>>"$T/fg.err" &
HVD_PID=$!
answers "$T/other.sock" && ok "--socket overrides the file's socket" || fail "nothing at $T/other.sock"
expect "--log overrides the file's log" "socket $T/other.sock" "$(cat "$T/other.log" 2>/dev/null)"
grep -q "other.sock" "$T/log/hvd.log" && fail "the file's log got the lines of --log" ||
	ok "the file's log untouched"
expect "HVD_SOCKET overrides the file" '"running":true' \
	"$(HVD_SOCKET=$T/other.sock "$HVD" status --config "$CONF" --json)"
kill -TERM "$HVD_PID"
wait "$HVD_PID"
HVD_PID=
expect "HVD_STATE_DIR overrides the file" "\"state_dir\":\"$T/state2\"" \
	"$(HVD_STATE_DIR=$T/state2 "$HVD" status --config "$CONF" --json)"
expect "--state-dir overrides HVD_STATE_DIR" "\"state_dir\":\"$T/state\"" \
	"$(HVD_STATE_DIR=$T/state2 "$HVD" status --config "$CONF" --state-dir "$T/state" --json)"

# ---- HVD_CONFIG, and hvd start in the background logging where the file says ----
out=$(HVD_CONFIG=$CONF "$HVD" start)
expect "HVD_CONFIG: start logs to the file's log" "^hvd: started \(pid [0-9]+, socket $T/hvd.sock, log $T/log/hvd.log\)" "$out"
expect "the daemon's lines in that log" "^hvd: started: pid $(cat "$T/state/hvd.pid" 2>/dev/null)," \
	"$(cat "$T/log/hvd.log")"
expect "stop" 'stopped' "$(HVD_CONFIG=$CONF "$HVD" stop)"
printf 'state_dir = "%s"\nsocket = "%s"\n' "$T/state2" "$T/s2.sock" >"$T/etc/nolog.conf"
expect "start without a log: STATE/hvd.log" "log $T/state2/hvd.log\)" \
	"$("$HVD" start --config "$T/etc/nolog.conf")"
expect "STATE/hvd.log has the lines" '^hvd: started:' "$(cat "$T/state2/hvd.log" 2>/dev/null)"
"$HVD" stop --config "$T/etc/nolog.conf" >/dev/null

# ---- bad files: exit 2, one line with the file, the line and the key ----
bad() { # NAME TEXT PATTERN
	printf "$2" >"$T/etc/$1.conf"
	out=$("$HVD" status --config "$T/etc/$1.conf" 2>&1)
	rc=$?
	[ $rc = 2 ] && ok "$1: exit 2" || fail "$1: exit $rc: $out"
	expect "$1: message" "^hvd: $T/etc/$1.conf:$3\$" "$out"
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && ok "$1: one line" || fail "$1: lines: $out"
}
bad unknown '# x\nstate_dir = "/s"\nsate_dir = "/s"\n' '3: sate_dir: unknown key'
bad value 'autostart = maybe\n' '1: autostart: "maybe": not a boolean \(true/false, yes/no, 1/0\)'
bad unquoted 'log = /var/log/hvd.log\n' '1: log: "/var/log/hvd.log": expected a string in double quotes'
bad duplicate 'log = "a"\n\nlog = "b"\n' '3: log: set twice \(first on line 1\)'
bad unterminated 'socket = "/run/hvd.sock\n' "1: socket: unterminated string \\(no closing '\"'\\)"
bad address 'migrate_listen = "udp:1.2.3.4:5"\n' "1: migrate_listen: 'udp:1.2.3.4:5': expected tcp:HOST:PORT or unix:PATH"
bad halftls 'tls_key = "k"\ntls_cert = "c"\n' '2: tls_cert: TLS needs all of tls_cert, tls_key and tls_ca'
bad empty 'state_dir = ""\n' '1: state_dir: must not be empty'
out=$("$HVD" status --config "$T/etc/missing.conf" 2>&1)
rc=$?
[ $rc = 2 ] && ok "missing file: exit 2" || fail "missing file: exit $rc: $out"
expect "missing file: message" "^hvd: $T/etc/missing.conf: No such file or directory$" "$out"
out=$("$HVD" --foreground --config "$T/etc/unknown.conf" 2>&1)
[ $? = 2 ] && ok "--foreground with a bad file: exit 2, no daemon" || fail "--foreground: $out"
out=$("$HVD" status --json --config '' --state-dir "$T/state" 2>&1)
[ $? = 3 ] && ok "--config '': no file" || fail "--config '': $out"
out=$("$HVD" stop --json 2>&1)
expect "--json only with status" '^hvd: --json only goes with status$' "$out"

# An ASan/UBSan build reports into stderr or the logs; any report is a failure.
if grep -h -A20 'Sanitizer\|runtime error' "$T/fg.err" "$T"/log/* "$T/other.log" \
	"$T/state2/hvd.log" 2>/dev/null; then
	fail "sanitizer report"
fi

if [ $FAILS -ne 0 ]; then
	echo "--- logs"
	tail -n 20 "$T/fg.err" "$T"/log/* "$T/other.log" 2>/dev/null
	echo "$FAILS failure(s)"
	exit 1
fi
echo "all hvd config tests passed"
