#!/bin/bash
# hvd.sh BUILD_DIR - the hvd daemon and hvctl's domain commands, as an operator uses them.
#
# hvd runs in the foreground on a temporary state directory and socket; memtouch domains
# (32M, emu, counting passes forever) are created from config files and driven by name:
# list (text and JSON), pause/resume (the console goes quiet, then counts on), checkpoint
# into a store, save + restore (counting on without CORRUPT), subscribe events, bad input
# (malformed JSON, unknown command, oversized request, a client hanging up mid-request,
# a bad config file) with the daemon serving on, 10 parallel clients during operations,
# kill -9 of hvd with 2 VMs running (they run on; the new hvd lists them as they were),
# a VM dying while hvd is down (crashed), hvd stop/start/status, autostart, destroy.
set -u
BUILD=${1:?usage: hvd.sh BUILD_DIR}
HVD=$BUILD/hvd
HVCTL=$BUILD/hvctl
RAW=$BUILD/tests/control/ctl-raw
HRAW=$BUILD/tests/hvd/hvd-raw
ELF=$BUILD/guest/memtouch.elf
T=$(mktemp -d /tmp/hv-hvd.XXXXXX)
ST=$T/state
export HVD_SOCKET=$T/hvd.sock
FAILS=0
HVD_PID=

cleanup() {
	[ -n "$HVD_PID" ] && kill -9 "$HVD_PID" 2>/dev/null
	# The VMs are not hvd's children once it is gone: end them by their recorded pids.
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

mkcfg() { # NAME [EXTRA LINE]
	cat >"$T/$1.cfg" <<EOF
# memtouch, counting forever
name = "$1"
memory = 32M
accel = "emu"
kernel = "$ELF"
cmdline = "start=4M end=8M passes=0 report=50"
${2:-}
EOF
}

log() { echo "$ST/domains/$1.log"; }
# The last complete pass line: the newest may still be arriving (the console reaches the
# log through hv's console thread, a few bytes at a time), so take the one before it.
last_pass() {
	grep -a '^memtouch pass [0-9]*$' "$(log "$1")" 2>/dev/null | tail -n 2 | head -n 1 |
		awk '{print $3}'
}
moving() { # NAME: memtouch counts on within 5 s
	local a b
	a=$(last_pass "$1")
	for _ in $(seq 100); do
		sleep 0.05
		b=$(last_pass "$1")
		[ -n "$b" ] && [ "${b:-0}" != "${a:-0}" ] && return 0
	done
	return 1
}
# alive PID: the process exists and has not ended (a zombie whose parent, init in a
# container, has not reaped it yet counts as ended).
alive() { [ -e "/proc/$1/stat" ] && ! awk '{ exit ($3 != "Z") }' "/proc/$1/stat"; }
state_of() { "$HVCTL" list | awk -v n="$1" '$1 == n {print $2}'; }
pid_of() { "$HVCTL" list --json | grep -o "\"name\":\"$1\"[^}]*\"pid\":[0-9]*" | grep -o '[0-9]*$'; }

start_hvd
expect "socket mode 0600" '^600$' "$(stat -c %a "$HVD_SOCKET")"

# ---- create, list, info ----
mkcfg vm1
out=$("$HVCTL" create "$T/vm1.cfg" 2>&1)
expect "create vm1" '^vm1: running \(pid [0-9]+, uuid [0-9a-f-]{36}\)' "$out"
expect "list (text)" '^vm1 +running +32M +1 +[0-9]+' "$("$HVCTL" list)"
expect "list --json" '"name":"vm1","uuid":"[0-9a-f-]{36}","state":"running","memory":33554432' \
	"$("$HVCTL" list --json)"
expect "info" "^control +$ST/run/vm1.sock" "$("$HVCTL" info vm1)"
expect "config persisted" '^cmdline = "start=4M end=8M passes=0 report=50"' "$(cat "$ST/domains/vm1.cfg")"
expect "runtime state persisted" '"state":"running"' "$(cat "$ST/domains/vm1.state")"
moving vm1 && ok "vm1 counts" || fail "vm1 does not count"
out=$("$HVCTL" create "$T/vm1.cfg" 2>&1)
expect "create twice refused" 'domain vm1 already exists \(running\)' "$out"

# ---- pause, resume ----
expect "pause" '^vm1: paused$' "$("$HVCTL" pause vm1)"
sleep 0.2
a=$(last_pass vm1)
sleep 0.5
[ "$(last_pass vm1)" = "$a" ] && ok "paused: memtouch stopped" || fail "memtouch counted while paused"
expect "list shows paused" '^paused$' "$(state_of vm1)"
expect "resume" '^vm1: running$' "$("$HVCTL" resume vm1)"
moving vm1 && ok "resumed: memtouch counts on" || fail "memtouch stuck after resume"

# ---- checkpoint, with 10 clients listing meanwhile ----
clients=()
for i in $(seq 10); do
	(for _ in 1 2 3 4 5; do
		"$HVCTL" list >/dev/null && "$HVCTL" info vm1 >/dev/null || echo "client $i failed"
	done) >"$T/client$i.out" 2>&1 &
	clients+=($!)
done
id=$("$HVCTL" checkpoint vm1 --store "$T/store" --tag t1 2>&1)
expect "checkpoint" '^[0-9a-f]{16}$' "$id"
id2=$("$HVCTL" checkpoint vm1 --store "$T/store" --full 2>&1)
expect "second checkpoint" '^[0-9a-f]{16}$' "$id2"
# Two checkpoints (and a pause) arriving together: the first runs, the others are
# refused while it does.
out=$("$HRAW" "$HVD_SOCKET" burst \
	"{\"id\":1,\"execute\":\"checkpoint\",\"arguments\":{\"name\":\"vm1\",\"store\":\"$T/store\"}}" \
	"{\"id\":2,\"execute\":\"checkpoint\",\"arguments\":{\"name\":\"vm1\",\"store\":\"$T/store\"}}" \
	"{\"id\":3,\"execute\":\"pause\",\"arguments\":{\"name\":\"vm1\"}}")
expect "concurrent checkpoints: the first runs" '^\{"id":1,"return":\{"id":"[0-9a-f]{16}"' "$out"
expect "concurrent checkpoints: the second is refused" \
	'"id":2,"error":\{"class":"InvalidState","desc":"vm1: cannot save or checkpoint a domain that is checkpointing"' "$out"
expect "no pause mid-checkpoint" '"id":3,"error":\{"class":"InvalidState"' "$out"
wait "${clients[@]}"
bad=$(cat "$T"/client*.out)
[ -z "$bad" ] && ok "10 parallel clients served" || fail "parallel clients: $bad"
expect "back to running" '^running$' "$(state_of vm1)"

# ---- save, restore ----
before=$(last_pass vm1)
"$HRAW" "$HVD_SOCKET" subscribe 3 >"$T/save-events" &
sub=$!
sleep 0.5
out=$("$HVCTL" save vm1 "$T/vm1.hvs" 2>&1)
expect "save" "^vm1: saved to $T/vm1.hvs" "$out"
wait $sub
expect "save: SAVE progress ends with every page done" \
	'"event":"SAVE".*"name":"vm1","phase":"progress","pages_done":([0-9]+),"pages_total":\1\}' \
	"$(grep '"SAVE"' "$T/save-events" | tail -n 1)"
expect "list shows saved" '^saved$' "$(state_of vm1)"
out=$("$HVCTL" restore "$T/vm1.hvs" 2>&1)
expect "restore (name from the file)" '^vm1: running' "$out"
moving vm1 && ok "restored vm1 counts on" || fail "restored vm1 does not count"
after=$(last_pass vm1)
[ "${after:-0}" -gt "${before:-0}" ] && ok "passes continue ($before -> $after)" || fail "passes $before -> $after"
grep -q CORRUPT "$(log vm1)" && fail "memtouch found corruption" || ok "no corruption"
out=$("$HVCTL" restore "$T/vm1.hvs" 2>&1)
expect "restore of a running domain refused" 'cannot start a domain that is running' "$out"

# ---- restore from a checkpoint of a store ----
out=$("$HVCTL" restore --store "$T/store" 2>&1)
expect "restore --store of a running domain refused" 'cannot start a domain that is running' "$out"
ck=$("$HVCTL" checkpoint vm1 --store "$T/store" 2>&1)
expect "checkpoint before the restore" '^[0-9a-f]{16}$' "$ck"
"$HVCTL" destroy vm1 >/dev/null || fail "destroy vm1"
out=$("$HVCTL" restore --store "$T/store" "$ck" other 2>&1)
expect "restore --store under another name refused" "holds the VM 'vm1', not 'other'" "$out"
out=$("$HVCTL" restore --store "$T/store" 12345 2>&1)
expect "restore --store: a bad id" "'id' must be a checkpoint id" "$out"
out=$("$HVCTL" restore --store "$T/store" "$ck" vm1 2>&1)
expect "restore --store ID NAME" "^vm1: running .*checkpoint $ck" "$out"
moving vm1 && ok "vm1 restored from the store counts on" || fail "vm1 from the store does not count"
grep -q CORRUPT "$(log vm1)" && fail "memtouch found corruption" || ok "no corruption"
# A store that two domains share (checkpoint --all): "latest" is per domain.
mkcfg vm5
"$HVCTL" create "$T/vm5.cfg" >/dev/null || fail "create vm5"
"$HVCTL" checkpoint vm1 --store "$T/shared" >/dev/null || fail "checkpoint vm1 (shared)"
"$HVCTL" checkpoint vm5 --store "$T/shared" >/dev/null || fail "checkpoint vm5 (shared)"
"$HVCTL" destroy vm1 >/dev/null || fail "destroy vm1"
out=$("$HVCTL" restore --store "$T/shared" 2>&1)
expect "shared store: restore without a name refused" 'several VMs \((vm1 and vm5|vm5 and vm1) at least\): name the domain' "$out"
out=$("$HVCTL" restore --store "$T/shared" latest vm1 2>&1)
expect "shared store: latest of vm1" '^vm1: running .*from checkpoint' "$out"
moving vm1 && ok "vm1 from the shared store counts on" || fail "vm1 from the shared store does not count"
"$HVCTL" destroy vm5 >/dev/null && "$HVCTL" delete vm5 >/dev/null || fail "destroy, delete vm5"

# ---- events ----
mkcfg vm2
"$HVCTL" create "$T/vm2.cfg" >/dev/null || fail "create vm2"
"$HRAW" "$HVD_SOCKET" subscribe 3 >"$T/events" &
sub=$!
sleep 0.5
"$HVCTL" pause vm2 >/dev/null
wait $sub
expect "subscribe: DOMAIN_STATE event" '"event":"DOMAIN_STATE".*"name":"vm2","state":"paused","previous":"running"' \
	"$(cat "$T/events")"

# ---- checkpoint --all: one cron line for every domain, going on past failures ----
out=$("$HVCTL" checkpoint --all --store "$T/store" --tag cron 2>&1)
rc=$?
[ "$rc" = 0 ] && ok "checkpoint --all: status 0" || fail "checkpoint --all: status $rc: $out"
expect "checkpoint --all: vm1" '^vm1: [0-9a-f]{16}$' "$out"
expect "checkpoint --all: vm2 (paused)" '^vm2: [0-9a-f]{16}$' "$out"
out=$("$HVCTL" checkpoint --all --store /proc/hv-no-store --json 2>&1)
rc=$?
[ "$rc" = 1 ] && ok "checkpoint --all: a failure gives status 1" || fail "checkpoint --all: status $rc"
expect "checkpoint --all --json: each domain reported" \
	'^\{"results":\[\{"name":"vm1","result":"failed","error":.*"name":"vm2","result":"failed".*"failed":2\}$' "$out"
expect "checkpoint --all: vm1 runs on" '^running$' "$(state_of vm1)"

# ---- bad input: the daemon keeps serving ----
out=$("$RAW" "$HVD_SOCKET" 'hello' '{"id":5,"execute":"reboot"}' \
	'{"id":6,"execute":"info","arguments":{"name":"../etc"}}' \
	'{"id":7,"execute":"pause","arguments":{"name":"vm1","force":true}}' \
	'{"id":8,"execute":"info","arguments":{"name":"nosuch"}}' '[1,2]')
expect "greeting" '^\{"hvd":\{"version":' "$out"
expect "malformed JSON" '"class":"ParseError","desc":"invalid JSON' "$out"
expect "unknown command" '"id":5,"error":\{"class":"CommandNotFound"' "$out"
expect "bad name" '"id":6,"error":\{"class":"InvalidArgument".*not a domain name' "$out"
expect "unknown argument" "\"id\":7,\"error\":\\{\"class\":\"InvalidArgument\",\"desc\":\"pause: unknown argument 'force'" "$out"
expect "no such domain" "\"id\":8,\"error\":.*no domain named 'nosuch'" "$out"
expect "not an object" '"class":"InvalidRequest"' "$out"
out=$("$RAW" "$HVD_SOCKET" --long=300000)
expect "oversized request" '"class":"ParseError","desc":"request line longer than 262144' "$out"
expect "oversized: connection closed" '^EOF$' "$out"
"$HRAW" "$HVD_SOCKET" partial '{"id":1,"execute":"li'
"$HRAW" "$HVD_SOCKET" partial '{"id":1,"execute":"list"}
{"id":2,"execute":"pau'
printf 'name = "bad"\nmemory = 32M\nmemory = 12X\n' >"$T/bad.cfg"
out=$("$HVCTL" create "$T/bad.cfg" 2>&1)
rc=$?
expect "bad config: file:line error" "^hvctl: create: $T/bad.cfg:3: memory:" "$out"
[ $rc = 1 ] && ok "bad config: exit 1" || fail "bad config: exit $rc"
printf 'name = "nok"\nmemory = 32M\nkernel = "/nonexistent/k.elf"\naccel = "emu"\n' >"$T/nok.cfg"
out=$("$HVCTL" create "$T/nok.cfg" 2>&1)
expect "a VM that cannot start: reason given" 'nok.*/nonexistent/k.elf' "$out"
"$HVCTL" info nok >/dev/null 2>&1 && fail "failed create left a domain" || ok "failed create left nothing"
out=$("$HVCTL" list 2>&1)
expect "still serving after bad input" '^vm2 +paused' "$out"
kill -0 "$HVD_PID" && ok "hvd alive" || fail "hvd died"

# ---- kill -9 hvd while 2 VMs run ----
p1=$(pid_of vm1)
p2=$(pid_of vm2)
kill -9 "$HVD_PID"
wait "$HVD_PID" 2>/dev/null
HVD_PID=
moving vm1 && ok "vm1 runs on without hvd" || fail "vm1 stopped with hvd"
alive "$p2" && ok "vm2 (paused) lives on" || fail "vm2 died with hvd"
start_hvd
expect "restarted hvd: vm1 running, same pid" "^vm1 +running +32M +1 +$p1 " "$("$HVCTL" list)"
expect "restarted hvd: vm2 paused, same pid" "^vm2 +paused +32M +1 +$p2 " "$("$HVCTL" list)"
"$HVCTL" resume vm2 >/dev/null && moving vm2 && ok "re-attached vm2 resumes" || fail "vm2 resume"

# ---- a VM that dies while hvd is down is reported crashed ----
kill -9 "$HVD_PID"
wait "$HVD_PID" 2>/dev/null
kill -9 "$p2"
sleep 0.2
start_hvd
expect "vm2 died meanwhile: crashed" '^crashed$' "$(state_of vm2)"
expect "vm1 still running" '^running$' "$(state_of vm1)"
expect "start a crashed domain" '^vm2: running' "$("$HVCTL" start vm2 2>&1)"

# ---- hvd stop, status, start (daemonized), autostart ----
mkcfg vm3 'autostart = true'
"$HVCTL" create "$T/vm3.cfg" >/dev/null && "$HVCTL" shutdown vm3 >/dev/null || fail "vm3"
expect "status" '^hvd: running: pid [0-9]+, .*3 domains \(2 running\)' "$("$HVD" status --state-dir "$ST")"
expect "stop" 'stopped .*VMs keep running' "$("$HVD" stop --state-dir "$ST")"
wait "$HVD_PID" 2>/dev/null
HVD_PID=
out=$("$HVD" status --state-dir "$ST")
rc=$?
[ $rc = 3 ] && ok "status when stopped: exit 3" || fail "status exit $rc: $out"
moving vm1 && ok "vm1 runs on after hvd stop" || fail "vm1 stopped with hvd stop"
expect "start" '^hvd: started \(pid [0-9]+' "$("$HVD" start --state-dir "$ST")"
expect "start again: already running" 'already running' "$("$HVD" start --state-dir "$ST")"
HVD_PID=$(cat "$ST/hvd.pid")
out=$("$HVCTL" list)
expect "after start: vm1 re-attached" "^vm1 +running +32M +1 +$p1 " "$out"
for _ in $(seq 200); do [ "$(state_of vm3)" = running ] && break; sleep 0.05; done
expect "autostart" '^running$' "$(state_of vm3)"

# ---- shutdown, destroy, delete ----
expect "shutdown" '^vm3: shutdown$' "$("$HVCTL" shutdown vm3)"
expect "destroy" '^vm1: shutdown$' "$("$HVCTL" destroy vm1)"
alive "$p1" && fail "vm1's hv survived destroy" || ok "destroy killed hv"
expect "delete" '^vm3: deleted$' "$("$HVCTL" delete vm3)"
out=$("$HVCTL" delete vm2 2>&1)
expect "delete of a running domain refused" 'cannot delete a domain that is running' "$out"
"$HVCTL" destroy vm2 >/dev/null
expect "stop" 'stopped' "$("$HVD" stop --state-dir "$ST")"
HVD_PID=
out=$("$HVCTL" list 2>&1)
rc=$?
[ $rc = 3 ] && ok "hvctl without hvd: exit 3" || fail "hvctl without hvd: exit $rc: $out"

# An ASan/UBSan build reports into the daemon's logs; any report is a failure.
if grep -h -A20 'Sanitizer\|runtime error' "$T/hvd.log" "$ST/hvd.log" 2>/dev/null; then
	fail "sanitizer report in hvd's log"
fi

if [ $FAILS -ne 0 ]; then
	echo "--- hvd log"
	cat "$T/hvd.log" "$ST/hvd.log" 2>/dev/null | tail -n 60
	echo "$FAILS failure(s)"
	exit 1
fi
echo "all hvd tests passed"
