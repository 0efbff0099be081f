#!/bin/bash
# hvd_crash.sh BUILD_DIR - progress of a checkpoint through hvd, and kill -9 of hvd while
# one is in progress.
#
# A 384M memtouch domain (emu, every page of 4M..380M written on each pass) makes a
# checkpoint that takes seconds:
# - a subscriber on hvd's socket sees CHECKPOINT events with phase "progress" (pages_done
#   up to pages_total) and then "completed"; hvctl without a tty prints only the id, on a
#   tty (script(1), where installed) it draws a bar and erases it before the id, and with
#   --json it prints the reply alone, tty or not;
# - kill -9 of hvd once the progress events show the checkpoint under way: the hvctl
#   waiting for it fails with a clear error, the VM runs on (same pid), the restarted hvd
#   lists it running (not checkpointing) and says the checkpoint was interrupted (failed),
#   the store verifies, a new checkpoint succeeds, and memtouch counts on without CORRUPT
#   both in the domain and restored from the last two checkpoints of the store - the VM's
#   own checkpoint may have committed after hvd died, and must then be a consistent one.
set -u
BUILD=$(cd "${1:?usage: hvd_crash.sh BUILD_DIR}" && pwd)
HV=$BUILD/hv
HVD=$BUILD/hvd
HVCTL=$BUILD/hvctl
HRAW=$BUILD/tests/hvd/hvd-raw
ELF=$BUILD/guest/memtouch.elf
T=$(mktemp -d /tmp/hv-hvdcrash.XXXXXX)
ST=$T/state
STORE=$T/store
export HVD_SOCKET=$T/hvd.sock
FAILS=0
HVD_PID=
PIDS=

cleanup() {
	[ -n "$HVD_PID" ] && kill -9 "$HVD_PID" 2>/dev/null
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	# The VM is not hvd's child once hvd is gone: end it by its recorded pid.
	for s in "$ST"/domains/*.state; do
		[ -f "$s" ] || continue
		p=$(grep -o '"pid":[0-9]*' "$s" | cut -d: -f2)
		[ -n "$p" ] && [ "$p" != 0 ] && kill -9 -- "-$p" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT

# fail, ok, expect; SIGTERM (meson's timeout) runs the EXIT trap too
. "$(dirname "$0")/lib.sh"

start_hvd() {
	"$HVD" --foreground --state-dir "$ST" >>"$T/hvd.log" 2>&1 &
	HVD_PID=$!
	for _ in $(seq 300); do
		"$HVCTL" list >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	fail "hvd did not come up"
	cat "$T/hvd.log"
	exit 1
}

LOG=$ST/domains/ck.log
# The last complete pass line: the newest may still be arriving (console output reaches
# the log through hv's console thread, a few bytes at a time), so take the one before it.
last_pass() {
	grep -a '^memtouch pass [0-9]*$' "$1" 2>/dev/null | tail -n 2 | head -n 1 | awk '{print $3}'
}
# counts FILE N: memtouch in FILE gets N passes further within 60 s.
counts() {
	local a b
	a=$(last_pass "$1")
	for _ in $(seq 600); do
		b=$(last_pass "$1")
		[ -n "$b" ] && [ "$b" -ge $((${a:-0} + $2)) ] && return 0
		sleep 0.1
	done
	return 1
}
alive() { [ -e "/proc/$1/stat" ] && ! awk '{ exit ($3 != "Z") }' "/proc/$1/stat"; }
state_of() { "$HVCTL" list | awk -v n="$1" '$1 == n {print $2}'; }
pid_of() { "$HVCTL" list --json | grep -o "\"name\":\"$1\"[^}]*\"pid\":[0-9]*" | grep -o '[0-9]*$'; }
# await FILE REGEX SECS: a line matching REGEX appears in FILE.
await() {
	for _ in $(seq $(($3 * 20))); do
		grep -Eq -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

start_hvd
cat >"$T/ck.cfg" <<EOF
name = "ck"
memory = 384M
accel = "emu"
kernel = "$ELF"
cmdline = "start=4M end=380M passes=0 report=1"
EOF
expect "create ck (384M)" '^ck: running' "$("$HVCTL" create "$T/ck.cfg" 2>&1)"
counts "$LOG" 1 && ok "memtouch has written its pages" || fail "memtouch does not count"

# ---- progress events, and hvctl's output without a tty unchanged ----
"$HRAW" "$HVD_SOCKET" subscribe 60 >"$T/ev1" &
sub=$!
PIDS="$PIDS $sub"
await "$T/ev1" '"return"' 5 || fail "subscribe: no reply"
out=$("$HVCTL" checkpoint ck --store "$STORE" 2>&1)
expect "checkpoint without a tty: only the id" '^[0-9a-f]{16}$' "$out"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "checkpoint printed more than the id: $out"
await "$T/ev1" '"name":"ck","phase":"completed"' 5
kill "$sub" 2>/dev/null
wait "$sub" 2>/dev/null
prog=$(grep -n '"event":"CHECKPOINT".*"name":"ck","phase":"progress"' "$T/ev1")
expect "CHECKPOINT progress events" '"pages_done":[0-9]+,"pages_total":[0-9]+' "$prog"
last=$(printf '%s\n' "$prog" | tail -n 1)
expect "the last progress event: every page done" '"pages_done":([0-9]+),"pages_total":\1\}' "$last"
pl=${last%%:*}
cl=$(grep -n '"name":"ck","phase":"completed"' "$T/ev1" | cut -d: -f1)
[ -n "$pl" ] && [ -n "$cl" ] && [ "$pl" -lt "$cl" ] && ok "progress, then completed" ||
	fail "progress (line ${pl:-none}) not before completed (line ${cl:-none})"
if script -qc true /dev/null >/dev/null 2>&1; then
	script -qc "'$HVCTL' checkpoint ck --store '$STORE'" /dev/null >"$T/tty" 2>&1
	expect "on a tty: a progress bar" '\[=+ *\] ck: checkpoint [0-9.]+ of [0-9.]+ MiB' \
		"$(tr '\r' '\n' <"$T/tty")"
	# What is left on screen: the text after the last carriage return but one (script
	# turns the final newline into \r\n) is the id alone, the bar erased.
	expect "on a tty: bar erased, then the id" '^ *[0-9a-f]{16}$' \
		"$(tr -d '\n' <"$T/tty" | awk -F'\r' '{print $(NF-1)}')"
	script -qc "'$HVCTL' --json checkpoint ck --store '$STORE'" /dev/null >"$T/tty" 2>&1
	out=$(tr -d '\r' <"$T/tty")
	expect "--json on a tty: the reply only" '^\{"id":1,"return":\{"id":"[0-9a-f]{16}"' "$out"
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "--json printed more than the reply: $out"
else
	out=$("$HVCTL" --json checkpoint ck --store "$STORE" 2>&1)
	expect "--json: the reply only" '^\{"id":1,"return":\{"id":"[0-9a-f]{16}"' "$out"
	echo "skip: no script(1) for the tty test"
fi

# ---- kill -9 of hvd mid-checkpoint ----
p=$(pid_of ck)
"$HRAW" "$HVD_SOCKET" subscribe 60 >"$T/ev2" &
sub=$!
PIDS="$PIDS $sub"
await "$T/ev2" '"return"' 5 || fail "subscribe: no reply"
"$HVCTL" checkpoint ck --store "$STORE" --full >"$T/ck.out" 2>"$T/ck.err" &
ck=$!
PIDS="$PIDS $ck"
if await "$T/ev2" '"name":"ck","phase":"progress"' 30; then
	ok "checkpoint under way"
else
	fail "no progress event within 30 s"
fi
grep -q '"name":"ck","phase":"completed"' "$T/ev2" &&
	fail "the checkpoint completed before hvd could be killed (too fast for this test)"
kill -9 "$HVD_PID"
wait "$HVD_PID" 2>/dev/null
HVD_PID=
wait "$ck"
rc=$?
[ "$rc" = 1 ] && ok "hvctl checkpoint: status 1" || fail "hvctl checkpoint: status $rc"
expect "hvctl checkpoint: a clear error" \
	"^hvctl: $HVD_SOCKET: hvd closed the connection before the checkpoint of ck ended: failed" \
	"$(cat "$T/ck.err")"
[ -s "$T/ck.out" ] && fail "hvctl printed an id: $(cat "$T/ck.out")"
kill "$sub" 2>/dev/null
wait "$sub" 2>/dev/null
alive "$p" && ok "the VM outlives hvd" || fail "the VM died with hvd"

start_hvd
# The VM answers the new hvd once its own checkpoint has ended (it runs one command at a
# time); until then the domain is still checkpointing.
for _ in $(seq 600); do
	[ "$(state_of ck)" = running ] && break
	sleep 0.1
done
expect "restarted hvd: running, same pid" "^ck +running +384M +1 +$p " "$("$HVCTL" list)"
info=$("$HVCTL" info ck)
expect "info: running" '^state +running$' "$info"
expect "info: the checkpoint is reported failed" \
	'^last_error +a checkpoint was interrupted by an hvd restart \(failed\)$' "$info"
grep -q '"state":"running"' "$ST/domains/ck.state" && ok "recorded running" ||
	fail "state file: $(cat "$ST/domains/ck.state")"
counts "$LOG" 2 && ok "memtouch counts on" || fail "memtouch stopped"

out=$("$HVCTL" store "$STORE" verify 2>&1)
rc=$?
[ "$rc" = 0 ] && ok "store verifies" || fail "store verify: status $rc: $out"
id=$("$HVCTL" checkpoint ck --store "$STORE" 2>&1)
expect "a new checkpoint succeeds" '^[0-9a-f]{16}$' "$id"
expect "back to running" '^running$' "$(state_of ck)"
out=$("$HVCTL" store "$STORE" verify 2>&1)
rc=$?
[ "$rc" = 0 ] && ok "store verifies after it" || fail "store verify: status $rc: $out"
counts "$LOG" 1 && ok "memtouch counts on after it" || fail "memtouch stopped"
grep -q CORRUPT "$LOG" && fail "memtouch: $(grep -m1 CORRUPT "$LOG")" || ok "no CORRUPT in ck"

# The last two checkpoints (the one hvd's death interrupted, if the VM committed it, and
# the new one) restore to a memtouch that counts on without CORRUPT.
ids=$("$HVCTL" store "$STORE" list | grep -oE '^[0-9a-f]{16}')
n=$(printf '%s\n' "$ids" | grep -c .)
[ "$n" -ge 3 ] && ok "$n checkpoints in the store" || fail "only $n checkpoints in the store"
for cid in $(printf '%s\n' "$ids" | tail -n 2); do
	out=$T/restore.$cid
	"$HV" restore --store "$STORE" "$cid" >"$out" 2>&1 &
	rp=$!
	PIDS="$PIDS $rp"
	for _ in $(seq 600); do
		[ "$(grep -c '^memtouch pass [0-9]*$' "$out")" -ge 2 ] && break
		sleep 0.1
	done
	if [ "$(grep -c '^memtouch pass [0-9]*$' "$out")" -lt 2 ]; then
		fail "restore $cid: memtouch does not count: $(tail -n 3 "$out")"
	elif grep -q CORRUPT "$out"; then
		fail "restore $cid: $(grep -m1 CORRUPT "$out")"
	else
		ok "restore $cid: memtouch counts on without CORRUPT"
	fi
	kill -9 "$rp" 2>/dev/null
	wait "$rp" 2>/dev/null
done

"$HVCTL" destroy ck >/dev/null || fail "destroy"
# A clean stop, so that a sanitized hvd gets to report leaks.
expect "hvd stop" 'stopped' "$("$HVD" stop --state-dir "$ST")"
wait "$HVD_PID" 2>/dev/null
HVD_PID=
# An ASan/UBSan build reports into the logs; any report is a failure.
if grep -h -A20 'Sanitizer\|runtime error' "$T/hvd.log" "$LOG" "$T"/restore.* 2>/dev/null; then
	fail "sanitizer report"
fi

if [ $FAILS -ne 0 ]; then
	echo "--- hvd log"
	tail -n 40 "$T/hvd.log"
	echo "$FAILS failure(s)"
	exit 1
fi
echo "all hvd-crash tests passed"
