#!/bin/bash
# hvd_many.sh BUILD_DIR - hvd managing 20 domains at once, with 10 clients in parallel.
#
# 20 small memtouch domains (16M, emu) are created; 10 clients then each drive two of
# them through pause, info, resume and list, all at the same time, while an eleventh
# client checkpoints every domain (checkpoint --all). Every client must succeed, every
# domain must end running and counting with no CORRUPT, the store must hold 20 checkpoints,
# and destroying them all leaves hvd serving with nothing running.
set -u
BUILD=${1:?usage: hvd_many.sh BUILD_DIR}
HVD=$BUILD/hvd
HVCTL=$BUILD/hvctl
ELF=$BUILD/guest/memtouch.elf
N=${HVD_MANY:-20}
T=$(mktemp -d /tmp/hv-hvd-many.XXXXXX)
ST=$T/state
export HVD_SOCKET=$T/hvd.sock
FAILS=0
HVD_PID=

cleanup() {
	[ -n "$HVD_PID" ] && kill -9 "$HVD_PID" 2>/dev/null
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

"$HVD" --foreground --state-dir "$ST" >>"$T/hvd.log" 2>&1 &
HVD_PID=$!
for _ in $(seq 300); do
	"$HVCTL" list >/dev/null 2>&1 && break
	sleep 0.05
done

for i in $(seq "$N"); do
	cat >"$T/d$i.cfg" <<EOF
name = "d$i"
memory = 16M
accel = "emu"
kernel = "$ELF"
cmdline = "start=4M end=5M passes=0 report=200"
EOF
	"$HVCTL" create "$T/d$i.cfg" >/dev/null 2>"$T/create.err" || fail "create d$i: $(cat "$T/create.err")"
done
running=$("$HVCTL" list | awk '$2 == "running"' | wc -l)
[ "$running" = "$N" ] && ok "$N domains running" || fail "$running of $N domains running"

# op CMD NAME: as an operator would, retry while the domain is being checkpointed (hvd
# refuses pause/resume then: InvalidState); anything else is a failure, printed.
op() {
	local out
	for _ in $(seq 100); do
		out=$("$HVCTL" "$1" "$2" 2>&1) && return 0
		case $out in *"is checkpointing"*) sleep 0.05 ;; *) echo "$1 $2: $out"; return 1 ;; esac
	done
	echo "$1 $2: still refused after 5 s: $out"
	return 1
}

# 10 clients, each with two domains of its own; an 11th checkpoints them all meanwhile.
clients=()
for c in $(seq 10); do
	(
		for round in 1 2 3; do
			for d in "d$((2 * c - 1))" "d$((2 * c))"; do
				[ -e "$T/$d.cfg" ] || continue
				op pause "$d" || continue
				# (checkpointing: --all is taking this paused one just now)
				"$HVCTL" info "$d" | grep -Eq '^state +(paused|checkpointing)$' ||
					echo "$d not paused: $("$HVCTL" info "$d" | grep '^state')"
				"$HVCTL" list >/dev/null || echo "list failed"
				op resume "$d"
			done
		done
	) >"$T/client$c.out" 2>&1 &
	clients+=($!)
done
"$HVCTL" checkpoint --all --store "$T/store" >"$T/all.out" 2>&1
all_rc=$?
wait "${clients[@]}"
bad=$(cat "$T"/client*.out)
[ -z "$bad" ] && ok "10 parallel clients served" || fail "parallel clients: $bad"
n=$(grep -cE '^d[0-9]+: [0-9a-f]{16}$' "$T/all.out")
[ "$all_rc" = 0 ] && [ "$n" = "$N" ] && ok "checkpoint --all beside them: $n of $N checkpointed" ||
	fail "checkpoint --all: status $all_rc, $n of $N: $(cat "$T/all.out")"

# All back to running, all counting, none corrupt.
sleep 1
running=$("$HVCTL" list | awk '$2 == "running"' | wc -l)
[ "$running" = "$N" ] && ok "all $N running again" || fail "$running of $N running: $("$HVCTL" list)"
corrupt=$(grep -l CORRUPT "$ST"/domains/*.log 2>/dev/null)
[ -z "$corrupt" ] && ok "no CORRUPT in any console" || fail "CORRUPT in $corrupt"
kill -0 "$HVD_PID" && ok "hvd alive" || fail "hvd died: $(tail -5 "$T/hvd.log")"

for i in $(seq "$N"); do
	"$HVCTL" destroy "d$i" >/dev/null || fail "destroy d$i"
done
left=$("$HVCTL" list | awk 'NR > 1 && $2 != "shutdown"' | wc -l)
[ "$left" = 0 ] && ok "all destroyed" || fail "$left domains not shut down: $("$HVCTL" list)"
"$HVCTL" list >/dev/null && ok "hvd still serving" || fail "hvd does not answer"

echo "hvd_many: $FAILS failures"
[ "$FAILS" = 0 ]
