#!/bin/bash
# hvd_console.sh BUILD_DIR - `hvctl console NAME`: a domain's serial console, attached,
# typed into and detached, as an operator uses it.
#
# The echo guest answers every byte uppercased ('abc' -> 'ABC'), so what the guest said
# is told apart from what was typed. A private hvd (temporary state directory and socket)
# runs an echo domain; hvctl console reads a fifo the test writes into: the replayed
# history, typing, two clients at once, Ctrl-] (detaching, not sent to the guest), the end
# of input, kill -9 of an attached hvctl, a client that never reads while the guest
# floods its console (the guest goes on; that client is told what it lost), hvd
# restarting, save and restore, errors (unknown and stopped domains), and 'q' ending the
# VM under an attached console. Then `hv run --console-socket` and `hvmigrate recv
# --console-socket` without hvd.
set -u
BUILD=${1:?usage: hvd_console.sh BUILD_DIR}
HV=$BUILD/hv
HVD=$BUILD/hvd
HVCTL=$BUILD/hvctl
HVMIGRATE=$BUILD/hvmigrate
ELF=$BUILD/guest/echo.elf
T=$(mktemp -d /tmp/hv-console.XXXXXX)
ST=$T/state
export HVD_SOCKET=$T/hvd.sock
FAILS=0
HVD_PID=
BG=()

cleanup() {
	exec 3>&- 4>&- 5>&- 6>&- 2>/dev/null
	[ -n "$HVD_PID" ] && kill -9 "$HVD_PID" 2>/dev/null
	for p in "${BG[@]}"; do kill -9 "$p" 2>/dev/null; done
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
# wait_for FILE FIXED-STRING [SECS]: the file comes to contain the string.
wait_for() {
	for _ in $(seq $((${3:-10} * 20))); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
# exited PID SECS: the background job ended within SECS; its status in $rc.
exited() {
	for _ in $(seq $(($2 * 20))); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1"
			rc=$?
			return 0
		fi
		sleep 0.05
	done
	return 1
}
state_of() { "$HVCTL" list | awk -v n="$1" '$1 == n {print $2}'; }
log() { echo "$ST/domains/$1.log"; }

# A raw client of a console socket (hvctl needs hvd): python3 is there wherever meson is.
cat >"$T/client.py" <<'EOF'
import os, select, socket, sys, time

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s

def read_until(s, want, secs):
    got, end = b"", time.time() + secs
    while want not in got and time.time() < end:
        if select.select([s], [], [], 0.1)[0]:
            b = s.recv(65536)
            if not b:
                break
            got += b
    return got

mode, path = sys.argv[1], sys.argv[2]
if mode == "echo":  # the replayed ready line (unless "noready"), 'xyz', 'q' -> bye, EOF
    s = connect(path)
    out = b"" if sys.argv[3:] == ["noready"] else read_until(s, b"echo: ready\n", 10)
    s.sendall(b"xyz")
    out += read_until(s, b"XYZ", 10)
    s.sendall(b"q")
    out += read_until(s, b"\0never", 10)
    sys.stdout.write(out.decode(errors="replace") + "<EOF>\n")
elif mode == "fire":  # send, hang up at once: what was sent must still reach the guest
    s = connect(path)
    s.sendall(sys.argv[3].encode())
    s.close()
elif mode == "idle":  # attach, never read until told to, then show what came
    s = connect(path)
    open(sys.argv[3], "w").close()
    while not os.path.exists(sys.argv[4]):
        time.sleep(0.05)
    out = read_until(s, b"bytes of output lost", 5)
    sys.stdout.write("lost-note\n" if b"bytes of output lost" in out else "no-note\n")
EOF

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

# attach N: hvctl console echo1 reading fifo $T/inN (held open on fd N+2), output in
# $T/outN and $T/errN, its pid in $CPID.
attach() {
	rm -f "$T/in$1"
	mkfifo "$T/in$1"
	"$HVCTL" console echo1 <"$T/in$1" >"$T/out$1" 2>"$T/err$1" &
	CPID=$!
	BG+=("$CPID")
	eval "exec $(($1 + 2))>\"$T/in$1\""
}

start_hvd
cat >"$T/echo1.cfg" <<EOF
name = "echo1"
memory = 32M
accel = "emu"
kernel = "$ELF"
EOF
out=$("$HVCTL" create "$T/echo1.cfg" 2>&1)
expect "create echo1" '^echo1: running' "$out"
CONS=$ST/run/echo1.console
expect "info: console socket" "^console_socket +$CONS$" "$("$HVCTL" info echo1)"
expect "info --json: console_socket" "\"console_socket\":\"$CONS\"" "$("$HVCTL" info echo1 --json)"
expect "console socket mode 0600" '^600$' "$(stat -c %a "$CONS" 2>&1)"
wait_for "$(log echo1)" "echo: ready" || fail "the guest did not start"

# ---- attach, replay, type ----
attach 1
c1=$CPID
wait_for "$T/out1" "echo: ready" && ok "attach: history replayed" || fail "no replay: $(cat "$T/out1")"
expect "attach: banner on stderr" '^Connected to domain echo1 \(escape character is \^\]\)$' "$(cat "$T/err1")"
printf 'abc' >&3
wait_for "$T/out1" "ABC" && ok "typed abc, the guest answered ABC" || fail "no ABC: $(cat "$T/out1")"

# ---- a second client at the same time: both see the output, both may type ----
attach 2
c2=$CPID
wait_for "$T/out2" "echo: ready" && ok "second client: replay" || fail "second client: no replay"
wait_for "$T/out2" "ABC" && ok "second client: replay has the earlier answer" || fail "second client: no ABC"
printf 'xy' >&4
wait_for "$T/out2" "XY" && wait_for "$T/out1" "XY" && ok "the second client types; both see it" ||
	fail "second client's input: out1=$(cat "$T/out1") out2=$(cat "$T/out2")"

# ---- Ctrl-] detaches; what follows it is not sent ----
printf '\035zz' >&3
if exited "$c1" 10; then
	[ "$rc" = 0 ] && ok "Ctrl-]: hvctl exits 0" || fail "Ctrl-]: hvctl exit $rc"
else
	fail "Ctrl-] did not detach"
fi
exec 3>&-
expect "Ctrl-]: detach message" '^Detached from domain echo1$' "$(cat "$T/err1")"
expect "detached: the VM runs on" '^running$' "$(state_of echo1)"
printf 'd' >&4
wait_for "$T/out2" "D" 5 && ok "the other client still works" || fail "second client lost its console"

# ---- kill -9 of an attached hvctl: the VM runs on ----
{
	kill -9 "$c2"
	wait "$c2"
} 2>/dev/null
exec 4>&-
sleep 0.2
expect "kill -9 of hvctl: the VM runs on" '^running$' "$(state_of echo1)"

# ---- the end of input detaches once the output has been quiet ----
out=$(printf 'e' | timeout 20 "$HVCTL" console echo1 2>"$T/eof.err")
rc=$?
[ "$rc" = 0 ] && ok "end of input: exit 0" || fail "end of input: exit $rc"
expect "re-attach: history replayed" 'echo: ready' "$out"
expect "re-attach: the earlier answers in the history" 'ABCXYD' "$out"
expect "end of input: the answer shown first" 'ABCXYDE' "$out"
expect "end of input: message" '^Detached from domain echo1 \(end of input\)$' "$(cat "$T/eof.err")"
grep -q ZZ "$(log echo1)" && fail "bytes after Ctrl-] reached the guest" || ok "bytes after Ctrl-] were dropped"
expect "the log has everything" 'ABCXYDE' "$(cat "$(log echo1)")"

# ---- a client that never reads must not block the guest ----
python3 "$T/client.py" idle "$CONS" "$T/idle.ready" "$T/idle.go" >"$T/idle.out" 2>&1 &
idle=$!
BG+=("$idle")
for _ in $(seq 200); do [ -e "$T/idle.ready" ] && break; sleep 0.05; done
[ -e "$T/idle.ready" ] || fail "the idle client did not attach"
attach 4
c4=$CPID
printf '#' >&6 # 512 KiB of output, more than a socket and a client's queue hold
wait_for "$(log echo1)" "echo: flood done" 60 && ok "flood: the guest got through it" ||
	fail "flood: the guest is stuck beside a client that does not read"
printf 'h' >&6
wait_for "$T/out4" "H" 10 && ok "flood: the guest still answers" || fail "flood: no answer after it"
expect "flood: the log has every line" '^8192$' "$(grep -c '#\{63\}$' "$(log echo1)")"
printf '\035' >&6
exited "$c4" 10 && [ "$rc" = 0 ] || fail "flood: hvctl did not detach"
exec 6>&-
touch "$T/idle.go"
exited "$idle" 20 || fail "the idle client hangs"
expect "the stuck client is told what it lost" '^lost-note$' "$(cat "$T/idle.out")"

# ---- hvd restarts: the re-attached domain names the same console ----
p=$("$HVCTL" list --json | grep -o '"pid":[0-9]*' | head -n 1 | cut -d: -f2)
kill -9 "$HVD_PID"
wait "$HVD_PID" 2>/dev/null
HVD_PID=
start_hvd
expect "after an hvd restart: running, same pid" "^echo1 +running +32M +1 +$p " "$("$HVCTL" list)"
expect "after an hvd restart: console_socket" "^console_socket +$CONS$" "$("$HVCTL" info echo1)"
out=$(printf 'f' | timeout 20 "$HVCTL" console echo1 2>&1)
expect "after an hvd restart: console works" 'F' "$out"

# ---- save and restore: the restored VM serves its console too ----
"$HVCTL" save echo1 "$T/echo1.hvs" >/dev/null 2>&1 || fail "save"
[ -e "$CONS" ] && fail "console socket left after save" || ok "save: console socket removed"
out=$("$HVCTL" console echo1 </dev/null 2>&1)
rc=$?
[ "$rc" = 1 ] && ok "console of a saved domain: exit 1" || fail "console of a saved domain: exit $rc"
expect "console of a saved domain: one line" '^hvctl: console: echo1: not running \(the domain is saved\)$' "$out"
expect "restore" '^echo1: running' "$("$HVCTL" restore "$T/echo1.hvs" 2>&1)"
out=$(printf 'g' | timeout 20 "$HVCTL" console echo1 2>&1)
expect "restored: the console answers" 'G' "$out"

# ---- errors ----
out=$("$HVCTL" console nosuch </dev/null 2>&1)
rc=$?
[ "$rc" = 1 ] && ok "unknown domain: exit 1" || fail "unknown domain: exit $rc"
expect "unknown domain: one line" "^hvctl: console: no domain named 'nosuch'\$" "$out"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && ok "unknown domain: exactly one line" || fail "unknown domain: $out"
out=$("$HVCTL" console </dev/null 2>&1)
[ $? = 2 ] && ok "console without NAME: exit 2" || fail "console without NAME: $out"
out=$("$HVCTL" --socket "$T/nohvd.sock" console echo1 </dev/null 2>&1)
[ $? = 3 ] && ok "no hvd: exit 3" || fail "no hvd: $out"

# ---- 'q' ends the VM under an attached console ----
attach 3
c3=$CPID
wait_for "$T/out3" "G" || fail "third attach: no replay"
printf 'q' >&5
wait_for "$T/out3" "echo: bye" && ok "q: the guest says bye" || fail "q: no bye: $(cat "$T/out3")"
if exited "$c3" 10; then
	[ "$rc" = 0 ] && ok "the VM ended: hvctl exits 0" || fail "the VM ended: hvctl exit $rc"
else
	fail "hvctl did not notice the VM's end"
fi
exec 5>&-
expect "the VM ended: message" '^hvctl: console: echo1: the console closed: the VM has ended$' "$(cat "$T/err3")"
for _ in $(seq 100); do [ "$(state_of echo1)" = shutdown ] && break; sleep 0.05; done
expect "q: the domain is shut down" '^shutdown$' "$(state_of echo1)"
[ -e "$CONS" ] && fail "console socket left behind" || ok "console socket removed"
out=$("$HVCTL" console echo1 </dev/null 2>&1)
rc=$?
[ "$rc" = 1 ] && ok "shut-down domain: exit 1" || fail "shut-down domain: exit $rc"
expect "shut-down domain: one line" '^hvctl: console: echo1: not running \(the domain is shutdown\)$' "$out"

# ---- hv run --console-socket, without hvd ----
"$HV" run --accel emu --memory 32M --console-socket "$T/run.console" "$ELF" \
	>"$T/run.out" 2>"$T/run.err" </dev/null &
hvp=$!
BG+=("$hvp")
for _ in $(seq 100); do [ -S "$T/run.console" ] && break; sleep 0.05; done
python3 "$T/client.py" fire "$T/run.console" ab
wait_for "$T/run.out" AB && ok "hv run: a client that sends and hangs up at once is heard" ||
	fail "hv run: input of a client that hung up at once was lost"
out=$(timeout 30 python3 "$T/client.py" echo "$T/run.console" 2>&1)
expect "hv run --console-socket: replay, answer, bye, EOF" 'echo: ready.*XYZecho: bye.*<EOF>' "$(printf '%s' "$out" | tr '\n' ' ')"
exited "$hvp" 10 && [ "$rc" = 0 ] && ok "hv run: the guest's exit status 0" || fail "hv run: status ${rc:-?}"
expect "hv run: stdout has the whole console" '^ABXYZecho: bye$' "$(cat "$T/run.out")"
[ -e "$T/run.console" ] && fail "hv run: socket left behind" || ok "hv run: socket removed at exit"
out=$("$HV" run --console-socket "$T/$(printf 'x%.0s' $(seq 120))" "$ELF" 2>&1 </dev/null)
expect "hv run: a too long socket path" '^hv: --console-socket .*1 to 107 bytes$' "$out"

# ---- hvmigrate recv --console-socket (%n): the migrated VM's console ----
if [ -x "$HVMIGRATE" ]; then
	"$HV" run --accel emu --memory 32M --name mig1 --control "$T/src.sock" "$ELF" \
		>"$T/src.out" 2>&1 </dev/null &
	BG+=($!)
	"$HVMIGRATE" recv --listen "unix:$T/mig.sock" --control "$T/dst.sock" \
		--console-socket "$T/%n.console" >"$T/dst.out" 2>"$T/dst.err" </dev/null &
	dst=$!
	BG+=("$dst")
	for _ in $(seq 100); do [ -S "$T/src.sock" ] && [ -S "$T/mig.sock" ] && break; sleep 0.05; done
	"$HVMIGRATE" send "$T/src.sock" "unix:$T/mig.sock" >/dev/null 2>&1 || fail "migration failed"
	for _ in $(seq 100); do [ -S "$T/mig1.console" ] && break; sleep 0.05; done
	out=$(timeout 30 python3 "$T/client.py" echo "$T/mig1.console" noready 2>&1)
	expect "hvmigrate recv --console-socket %n: the guest answers" 'XYZecho: bye.*<EOF>' \
		"$(printf '%s' "$out" | tr '\n' ' ')"
	exited "$dst" 10 && [ "$rc" = 0 ] && ok "hvmigrate recv: exit 0" || fail "hvmigrate recv: status ${rc:-?}"
	expect "hvmigrate recv: stdout has the console" 'XYZecho: bye' "$(cat "$T/dst.out")"
fi

# (Under ASan/UBSan a report lands in a log rather than in a status the test sees.)
bad=$(grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:' "$ST"/domains/*.log \
	"$T"/*.err "$T"/err* "$T"/*.out "$T/hvd.log" 2>/dev/null)
[ -z "$bad" ] && ok "no sanitizer reports" || fail "sanitizer reports in: $bad"

echo "$FAILS failure(s)"
[ "$FAILS" = 0 ]
