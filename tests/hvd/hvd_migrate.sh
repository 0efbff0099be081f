#!/bin/bash
# hvd_migrate.sh BUILD_DIR - live migration between two hvd daemons, by domain name.
#
# Two hvds on their own state directories and sockets: A owns memtouch domains (32M,
# emu, counting forever), B takes migrations (--migrate-listen). As root with `ip netns`,
# A and B live in two network namespaces joined by a veth pair (two hosts), else both on
# loopback. Checked as an operator sees it: `hvmigrate send NAME ADDR` through A moves a
# domain to B, where it is listed running and its memtouch counts on without CORRUPT,
# while A lists it migrated; a dead address fails and the domain runs on at A; a name
# that B already has is refused and the VM stays at A; `hvctl migrate` does the same as
# hvmigrate; kill -9 of hvd A mid-migration loses no VM, and the restarted A reports the
# interrupted migration; a link cut mid-migration (namespaces only) makes B drop the
# arrival within seconds (TCP keepalive, HV_MIGRATE_DEAD_PEER_S=3) and A keep the VM.
set -u
BUILD=$(cd "${1:?usage: hvd_migrate.sh BUILD_DIR}" && pwd)
HVD=$BUILD/hvd
HVCTL=$BUILD/hvctl
HVM=$BUILD/hvmigrate
ELF=$BUILD/guest/memtouch.elf
T=$(mktemp -d /tmp/hv-hvdmig.XXXXXX)
STA=$T/a
STB=$T/b
SOCKA=$T/a.sock
SOCKB=$T/b.sock
FAILS=0
A_PID=
B_PID=
NS_A=
NS_B=
SEND_PID=

cleanup() {
	for p in $A_PID $B_PID; do kill -9 "$p" 2>/dev/null; done
	# The VMs outlive their hvd: end them by their recorded pids (an incoming VM is no
	# process group leader, so its pid too).
	for s in "$STA"/domains/*.state "$STB"/domains/*.state; do
		[ -f "$s" ] || continue
		p=$(grep -o '"pid":[0-9]*' "$s" | cut -d: -f2)
		[ -n "$p" ] && [ "$p" != 0 ] && kill -9 -- "-$p" "$p" 2>/dev/null
	done
	[ -n "$SEND_PID" ] && kill -9 "$SEND_PID" 2>/dev/null
	# B's listeners lead their own sessions, with every VM they received in them.
	for p in $(sed -n 's/^hvd: migration listener on .*, pid \([0-9]*\)$/\1/p' "$T/b.log" 2>/dev/null); do
		kill -9 -- "-$p" 2>/dev/null
	done
	if [ -n "$NS_A" ]; then
		ip netns del hvdmig-a 2>/dev/null
		ip netns del hvdmig-b 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT

# fail, ok, expect; SIGTERM (meson's timeout) runs the EXIT trap too
. "$(dirname "$0")/lib.sh"

ha() { HVD_SOCKET=$SOCKA "$@"; }
hb() { HVD_SOCKET=$SOCKB "$@"; }

# Two hosts if we can: namespaces a (10.78.0.1) and b (10.78.0.2).
if [ "$(id -u)" = 0 ] && ip netns add hvdmig-a 2>/dev/null; then
	ip netns add hvdmig-b
	ip link add hvdmig-va netns hvdmig-a type veth peer name hvdmig-vb netns hvdmig-b
	ip -n hvdmig-a addr add 10.78.0.1/24 dev hvdmig-va
	ip -n hvdmig-b addr add 10.78.0.2/24 dev hvdmig-vb
	for n in a b; do
		ip -n "hvdmig-$n" link set "hvdmig-v$n" up
		ip -n "hvdmig-$n" link set lo up
	done
	NS_A="ip netns exec hvdmig-a"
	NS_B="ip netns exec hvdmig-b"
	LISTEN=tcp:10.78.0.2:7445
	DEAD=tcp:10.78.0.2:1
	echo "two network namespaces (10.78.0.1 -> 10.78.0.2)"
else
	LISTEN=tcp:127.0.0.1:0
	DEAD=tcp:127.0.0.1:1
	echo "loopback (no root or no ip netns)"
fi

wait_up() { # SOCK LOG
	for _ in $(seq 300); do
		HVD_SOCKET=$1 "$HVCTL" list >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	fail "hvd at $1 did not come up"
	cat "$2"
	exit 1
}
start_a() {
	$NS_A env HV_MIGRATE_DEAD_PEER_S=3 "$HVD" --foreground --state-dir "$STA" --socket "$SOCKA" >>"$T/a.log" 2>&1 &
	A_PID=$!
	disown "$A_PID" # killed on purpose: no "Killed" line from the shell
	wait_up "$SOCKA" "$T/a.log"
}
start_b() {
	$NS_B env HV_MIGRATE_DEAD_PEER_S=3 "$HVD" --foreground --state-dir "$STB" --socket "$SOCKB" --migrate-listen "$LISTEN" \
		>>"$T/b.log" 2>&1 &
	B_PID=$!
	disown "$B_PID"
	wait_up "$SOCKB" "$T/b.log"
	for _ in $(seq 100); do
		grep -q 'hvmigrate: listening on' "$T/b.log" && break
		sleep 0.05
	done
	ADDR=$(sed -n 's/^hvmigrate: listening on \([^ ]*\).*/\1/p' "$T/b.log" | tail -n 1)
	[ -n "$ADDR" ] && ok "B listens on $ADDR" || { fail "B's listener"; cat "$T/b.log"; exit 1; }
}

mkcfg() { # NAME
	cat >"$T/$1.cfg" <<EOF
name = "$1"
memory = 32M
accel = "emu"
kernel = "$ELF"
cmdline = "start=4M end=8M passes=0 report=50"
EOF
}

# Complete memtouch lines only: the switchover may cut the last one short.
last_pass() { # LOG
	grep -a '^memtouch pass [0-9]*$' "$1" 2>/dev/null | tail -n 1 | awk '{print $3}'
}
moving() { # LOG: memtouch counts on within 5 s
	local a b
	a=$(last_pass "$1")
	for _ in $(seq 100); do
		sleep 0.05
		b=$(last_pass "$1")
		[ -n "$b" ] && [ "${b:-0}" != "${a:-0}" ] && return 0
	done
	return 1
}
state_of() { # hvctl-runner NAME
	$1 "$HVCTL" list 2>/dev/null | awk -v n="$2" '$1 == n {print $2}'
}
pid_of() { # hvctl-runner NAME
	$1 "$HVCTL" list --json | grep -o "\"name\":\"$2\"[^}]*\"pid\":[0-9]*" | grep -o '[0-9]*$'
}
alive() { [ -e "/proc/$1/stat" ] && ! awk '{ exit ($3 != "Z") }' "/proc/$1/stat"; }
loga() { echo "$STA/domains/$1.log"; }
logb() { echo "$STB/domains/$1.log"; }

start_a
start_b

# ---- a domain moves from A to B by name ----
mkcfg vm1
ha "$HVCTL" create "$T/vm1.cfg" >/dev/null || fail "create vm1 on A"
moving "$(loga vm1)" && ok "vm1 counts on A" || fail "vm1 does not count on A"
p1=$(pid_of ha vm1)
# --on-stall throttle: on a busy machine the guest may dirty faster than the migration
# thread gets to send; slowing the guest down makes the migration converge anyway.
out=$(ha "$HVM" send vm1 "$ADDR" --json --on-stall throttle 2>"$T/send1.err")
rc=$?
[ "$rc" = 0 ] && ok "hvmigrate send vm1: exit 0" || fail "send vm1: exit $rc: $(cat "$T/send1.err")"
expect "send vm1: JSON summary" '"type":"summary".*"result":"completed"' "$out"
expect "send vm1: progress reported" '"type":"round"' "$out"
expect "send vm1: events carry the domain's name" '"name":"vm1"' "$out"
expect "A lists vm1 migrated" '^migrated$' "$(state_of ha vm1)"
expect "A: info says where to" "^migrate_uri +$ADDR\$" "$(ha "$HVCTL" info vm1)"
alive "$p1" && fail "vm1's hv still runs on A" || ok "vm1's hv on A exited"
grep -q "migrated to" "$(loga vm1)" && ok "A's hv said 'migrated to'" || fail "no 'migrated to' in A's log"
for _ in $(seq 100); do [ "$(state_of hb vm1)" = running ] && break; sleep 0.05; done
expect "B lists vm1 running" '^running$' "$(state_of hb vm1)"
a_last=$(last_pass "$(loga vm1)")
moving "$(logb vm1)" && ok "vm1 counts on at B" || fail "vm1 does not count at B"
b_last=$(last_pass "$(logb vm1)")
[ "${b_last:-0}" -gt "${a_last:-0}" ] && ok "passes carry on ($a_last at A -> $b_last at B)" ||
	fail "passes: $a_last at A, $b_last at B"
grep -aq CORRUPT "$(loga vm1)" "$(logb vm1)" && fail "memtouch found corruption" || ok "no corruption"
expect "B: info vm1" '^state +running|^vcpus +1' "$(hb "$HVCTL" info vm1)"
expect "B's vm1 answers pause" '^vm1: paused$' "$(hb "$HVCTL" pause vm1)"
expect "... and resume" '^vm1: running$' "$(hb "$HVCTL" resume vm1)"
out=$(ha "$HVCTL" start vm1 2>&1)
expect "A refuses to boot the migrated vm1" 'cannot start a domain that is migrated' "$out"

# ---- a dead address: the migration fails, the domain runs on at A ----
mkcfg vm2
ha "$HVCTL" create "$T/vm2.cfg" >/dev/null || fail "create vm2 on A"
out=$(ha "$HVM" send vm2 "$DEAD" 2>&1)
rc=$?
[ "$rc" = 1 ] && ok "send to a dead address: exit 1" || fail "dead address: exit $rc: $out"
expect "dead address: the reason" 'failed.*(refused|connect)' "$out"
expect "vm2 still running on A" '^running$' "$(state_of ha vm2)"
moving "$(loga vm2)" && ok "vm2 counts on at A" || fail "vm2 stuck at A"
expect "A: last_error tells" 'last_error +migration to .* failed' "$(ha "$HVCTL" info vm2)"

# ---- a name B already has: refused, the VM stays at A ----
mkcfg vm3
ha "$HVCTL" create "$T/vm3.cfg" >/dev/null || fail "create vm3 on A"
hb "$HVCTL" create "$T/vm3.cfg" >/dev/null || fail "create vm3 on B"
pb3=$(pid_of hb vm3)
out=$(ha "$HVM" send vm3 "$ADDR" 2>&1)
rc=$?
[ "$rc" = 1 ] && ok "name clash: exit 1" || fail "name clash: exit $rc: $out"
expect "name clash: the reason" 'vm3.*already exists' "$out"
expect "vm3 still running on A" '^running$' "$(state_of ha vm3)"
moving "$(loga vm3)" && ok "vm3 counts on at A" || fail "vm3 stuck at A"
expect "B's own vm3 untouched" "^vm3 +running +32M +1 +$pb3 " "$(hb "$HVCTL" list)"
kill -0 "$B_PID" && ok "hvd B alive" || fail "hvd B died"

# ---- hvctl migrate: the same, through hvctl ----
out=$(ha "$HVCTL" migrate vm2 "$ADDR" --on-stall throttle 2>&1)
rc=$?
[ "$rc" = 0 ] && ok "hvctl migrate vm2: exit 0" || fail "hvctl migrate vm2: exit $rc: $out"
expect "A lists vm2 migrated" '^migrated$' "$(state_of ha vm2)"
for _ in $(seq 100); do [ "$(state_of hb vm2)" = running ] && break; sleep 0.05; done
moving "$(logb vm2)" && ok "vm2 counts on at B" || fail "vm2 does not count at B"
# vm3's page channels waited in B's listen queue after the refusal: dropped, not an error.
if grep -q 'MIG_CHANNEL' "$T/b.log"; then
	fail "B's listener tripped over a page channel of the refused migration"
	grep 'MIG_CHANNEL' "$T/b.log"
else
	ok "B's listener dropped the refused migration's page channels quietly"
fi

# ---- usage: a domain unknown to A, a VM path that is no socket ----
out=$(ha "$HVM" send nosuch "$ADDR" 2>&1)
rc=$?
[ "$rc" = 1 ] && ok "unknown domain: exit 1" || fail "unknown domain: exit $rc"
expect "unknown domain: message" "no domain named 'nosuch'" "$out"
out=$("$BUILD/tests/hvd/hvd-raw" "$SOCKA" burst \
	'{"id":1,"execute":"migrate-cancel","arguments":{"name":"vm3"}}' \
	'{"id":2,"execute":"migrate","arguments":{"name":"vm3","uri":"tcp:x:1","bogus":1}}' 2>&1)
expect "migrate-cancel with no migration" '"id":1,"error":\{"class":"InvalidState".*no migration in progress' "$out"
expect "migrate: unknown argument" "\"id\":2,\"error\":\\{\"class\":\"InvalidArgument\".*unknown argument 'bogus'" "$out"

# ---- kill -9 of hvd A during a migration: no VM is lost ----
mkcfg vm4
ha "$HVCTL" create "$T/vm4.cfg" >/dev/null || fail "create vm4 on A"
p4=$(pid_of ha vm4)
ha "$HVM" send vm4 "$ADDR" --bandwidth 256K --compress none >"$T/send4.out" 2>&1 &
sp=$!
SEND_PID=$sp
for _ in $(seq 100); do [ "$(state_of ha vm4)" = migrating-out ] && break; sleep 0.05; done
expect "vm4 migrating-out" '^migrating-out$' "$(state_of ha vm4)"
sleep 0.5
kill -9 "$A_PID"
for _ in $(seq 100); do alive "$A_PID" || break; sleep 0.05; done
A_PID=
wait "$sp"
rc=$?
SEND_PID=
[ "$rc" = 3 ] && ok "send vm4: hvd gone, exit 3 (in doubt)" || fail "send vm4: exit $rc: $(cat "$T/send4.out")"
start_a
for _ in $(seq 200); do
	s=$(state_of ha vm4)
	[ "$s" = running ] || [ "$s" = migrated ] && break
	sleep 0.05
done
s=$(state_of ha vm4)
sb=$(state_of hb vm4)
if [ "$s" = running ]; then
	ok "after the restart vm4 runs on at A (same pid)"
	[ "$(pid_of ha vm4)" = "$p4" ] || fail "vm4 has another pid: $(pid_of ha vm4) != $p4"
	moving "$(loga vm4)" && ok "vm4 counts on at A" || fail "vm4 stuck at A"
	expect "restarted A reports the interrupted migration" \
		'last_error +a migration to .* was interrupted by an hvd restart' "$(ha "$HVCTL" info vm4)"
	expect "... in its log" 'vm4: migrating-out -> running \(interrupted migration reported as failed\)' \
		"$(cat "$T/a.log")"
	# B forgets the arrival once its receiving process has ended.
	for _ in $(seq 100); do [ -z "$(state_of hb vm4)" ] && break; sleep 0.05; done
	sb=$(state_of hb vm4)
	[ -z "$sb" ] && ok "B does not have vm4" || fail "B lists vm4 as $sb too"
elif [ "$s" = migrated ]; then
	ok "vm4 completed its migration while A was down"
	expect "B runs vm4" '^running$' "$sb"
	moving "$(logb vm4)" && ok "vm4 counts at B" || fail "vm4 stuck at B"
else
	fail "vm4 on A is '$s', on B '$sb'"
fi
alive "$p4" && [ "$s" = migrated ] && fail "vm4 runs twice"
expect "A still lists vm1 migrated after the restart" '^migrated$' "$(state_of ha vm1)"
grep -aq CORRUPT "$(loga vm4)" "$(logb vm4)" 2>/dev/null && fail "vm4: corruption" || ok "vm4: no corruption"

# ---- the link between the hosts dies mid-migration: B gives up on the arrival ----
# (two namespaces only: a veth end taken down is a cut cable; keepalive finds it)
if [ -n "$NS_A" ]; then
	mkcfg vm5
	ha "$HVCTL" create "$T/vm5.cfg" >/dev/null || fail "create vm5 on A"
	ha "$HVM" send vm5 "$ADDR" --bandwidth 256K --compress none >"$T/send5.out" 2>&1 &
	sp=$!
	SEND_PID=$sp
	for _ in $(seq 100); do [ "$(state_of hb vm5)" = migrating-in ] && break; sleep 0.05; done
	expect "B lists vm5 migrating-in" '^migrating-in$' "$(state_of hb vm5)"
	ip -n hvdmig-a link set hvdmig-va down
	for _ in $(seq 200); do [ -z "$(state_of hb vm5)" ] && break; sleep 0.05; done
	sb=$(state_of hb vm5)
	[ -z "$sb" ] && ok "cut link: B forgets vm5 (keepalive found the dead peer)" ||
		fail "cut link: B still lists vm5 as $sb"
	# The link stays down: A, with pages in flight, must give up by itself (user timeout).
	for _ in $(seq 400); do alive "$sp" || break; sleep 0.05; done
	alive "$sp" && fail "cut link: A's send still waits 20 s on"
	ip -n hvdmig-a link set hvdmig-va up
	wait "$sp"
	rc=$?
	SEND_PID=
	[ "$rc" = 1 ] && ok "cut link: send exit 1" || fail "cut link: send exit $rc: $(cat "$T/send5.out")"
	expect "cut link: vm5 runs on at A" '^running$' "$(state_of ha vm5)"
	moving "$(loga vm5)" && ok "vm5 counts on at A" || fail "vm5 stuck at A"
fi

# ---- the listener comes back if it dies ----
lp=$(sed -n 's/^hvd: migration listener on .*, pid \([0-9]*\)$/\1/p' "$T/b.log" | tail -n 1)
if [ -n "$lp" ]; then
	kill -9 "$lp"
	for _ in $(seq 60); do
		[ "$(grep -c 'migration listener on' "$T/b.log")" -ge 2 ] && break
		sleep 0.1
	done
	expect "B restarts a dead listener" 'restarting it in' "$(cat "$T/b.log")"
	expect "B's VMs survive the listener" '^running$' "$(state_of hb vm1)"
else
	fail "no listener process found"
fi

for f in "$T/a.log" "$T/b.log"; do
	if grep -h -A20 'Sanitizer\|runtime error' "$f" 2>/dev/null; then
		fail "sanitizer report in $f"
	fi
done
if [ $FAILS -ne 0 ]; then
	echo "--- hvd A log"
	tail -n 40 "$T/a.log"
	echo "--- hvd B log"
	tail -n 40 "$T/b.log"
	echo "$FAILS failure(s)"
	exit 1
fi
echo "all hvd migration tests passed"
