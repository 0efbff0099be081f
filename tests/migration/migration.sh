#!/bin/bash
# migration.sh BUILD_DIR [GROUP...] - live migration end to end, as a user runs it.
#
# Real processes, real sockets, real TLS: a memtouch VM under `hv run --control` is
# migrated by `hvmigrate send` to `hvmigrate recv`, and the checks are what a user sees:
# send's exit status and JSON summary, the source process exiting with "migrated",
# the destination printing `memtouch pass P` with P carrying on and never CORRUPT, or,
# when a migration must fail, the source VM still running and still consistent.
#
# Groups (all by default): modes tls stall cancel faults determinism netns keep usage.
# Faults use HV_MIGRATE_FAULT (migrate/fault.h) in the source or destination process.
set -u
BUILD=${1:?usage: migration.sh BUILD_DIR [GROUP...]}
shift
GROUPS_RUN=${*:-modes tls stall cancel faults determinism netns keep usage}
BUILD=$(cd "$BUILD" && pwd)
HV=$BUILD/hv
HVCTL=$BUILD/hvctl
HVM=$BUILD/hvmigrate
ELF=$BUILD/guest/memtouch.elf
DIRTY=$BUILD/guest/dirtyrate.elf
CERTS=${HV_TEST_CERTS:-$BUILD/tests/migrate}
ACCEL=${ACCEL:-emu}
MEM=${MEM:-128M}
CMDLINE="start=8M end=24M passes=0"
T=$(mktemp -d /tmp/hv-migration.XXXXXX)
FAILS=0
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	ip netns del hvmig-a 2>/dev/null
	ip netns del hvmig-b 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	FAILS=$((FAILS + 1))
}
ok() { echo "ok: $*"; }
expect() { # expect NAME PATTERN TEXT
	if printf '%s\n' "$3" | grep -Eq -- "$2"; then ok "$1"; else fail "$1: no /$2/ in: $3"; fi
}

passes() { grep -c '^memtouch pass' "$1" 2>/dev/null || true; }
# complete_lines FILE: FILE without a last line the switchover cut short (the rest of
# that line went to the other console).
complete_lines() { if [ -n "$(tail -c 1 "$1")" ]; then head -n -1 "$1"; else cat "$1"; fi; }
last_pass() { complete_lines "$1" | grep -a '^memtouch pass [0-9]*$' | tail -n 1 | awk '{print $3}'; }
first_pass() { grep -a '^memtouch pass [0-9]*$' "$1" | head -n 1 | awk '{print $3}'; }

# wait_for FILE PATTERN [TENTHS]: until FILE has a line matching PATTERN.
wait_for() {
	for _ in $(seq "${3:-100}"); do
		grep -Eq -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_gone PID [TENTHS]: until the process has exited; its status in RC.
wait_gone() {
	RC=timeout
	for _ in $(seq "${2:-100}"); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1"
			RC=$?
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# more_passes FILE N: FILE gains N more memtouch passes within 10 s (the VM runs).
more_passes() {
	local n0 n
	n0=$(passes "$1")
	for _ in $(seq 100); do
		n=$(passes "$1")
		[ "$n" -ge $((n0 + $2)) ] && return 0
		sleep 0.1
	done
	return 1
}

# start_src NAME [hv run args...]: a memtouch VM; sets SRC_PID, SRC_OUT, SRC_SOCK.
start_src() {
	local name=$1
	shift
	SRC_OUT=$T/$name.src.out
	SRC_SOCK=$T/$name.src.sock
	"$HV" run --accel "$ACCEL" --memory "$MEM" --control "$SRC_SOCK" --cmdline "$CMDLINE" \
		"$@" "$ELF" >"$SRC_OUT" 2>"$T/$name.src.err" &
	SRC_PID=$!
	PIDS+=("$SRC_PID")
	wait_for "$SRC_OUT" '^memtouch pass [0-9]+$' || fail "$name: the source VM never ran"
}

# start_dst NAME LISTEN [recv args...]: sets DST_PID, DST_OUT, DST_SOCK, DST_ADDR.
start_dst() {
	local name=$1 listen=$2
	shift 2
	DST_OUT=$T/$name.dst.out
	DST_ERR=$T/$name.dst.err
	DST_SOCK=$T/$name.dst.sock
	"$HVM" recv --listen "$listen" --control "$DST_SOCK" "$@" >"$DST_OUT" 2>"$DST_ERR" &
	DST_PID=$!
	PIDS+=("$DST_PID")
	wait_for "$DST_ERR" 'listening on' || fail "$name: the receiver never listened"
	DST_ADDR=$(sed -n 's/^hvmigrate: listening on \([^ ]*\).*/\1/p' "$DST_ERR" | head -n 1)
}

# check_moved NAME: the source exited 0 saying "migrated", the destination continues
# memtouch where the source stopped, nothing is CORRUPT; then quit the destination.
check_moved() {
	local name=$1 last first
	wait_gone "$SRC_PID" 100 || fail "$name: the source still runs after the migration"
	[ "$RC" = 0 ] && ok "$name: source exited 0" || fail "$name: source exit status $RC"
	expect "$name: source says migrated" 'migrated to' "$(cat "$T/$name.src.err")"
	more_passes "$DST_OUT" 10 && ok "$name: destination runs memtouch" ||
		fail "$name: destination makes no progress: $(tail -c 300 "$DST_OUT") $(cat "$DST_ERR")"
	last=$(last_pass "$SRC_OUT")
	first=$(first_pass "$DST_OUT")
	# The line in flight at the pause may be split between the two consoles.
	if [ -n "$first" ] && [ -n "$last" ] && [ "$first" -ge "$last" ] &&
		[ "$first" -le $((last + 2)) ]; then
		ok "$name: memtouch pass continues ($last -> $first)"
	else
		fail "$name: pass numbers do not continue: source $last, destination $first"
	fi
	if grep -aq CORRUPT "$SRC_OUT" "$DST_OUT"; then fail "$name: CORRUPT"; else ok "$name: no CORRUPT"; fi
	"$HVCTL" "$DST_SOCK" quit >/dev/null
	wait_gone "$DST_PID" 100
	[ "$RC" = 0 ] && ok "$name: destination quit cleanly" || fail "$name: destination exit $RC"
}

# check_stayed NAME: the migration failed and the source VM runs on, consistent.
check_stayed() {
	local name=$1
	kill -0 "$SRC_PID" 2>/dev/null && ok "$name: source still running" ||
		fail "$name: source is gone: $(cat "$T/$name.src.err")"
	expect "$name: source VM state" 'state +running' "$("$HVCTL" "$SRC_SOCK" info 2>&1)"
	more_passes "$SRC_OUT" 5 && ok "$name: source makes progress" || fail "$name: source stuck"
	if grep -aq CORRUPT "$SRC_OUT"; then fail "$name: CORRUPT"; else ok "$name: no CORRUPT"; fi
	"$HVCTL" "$SRC_SOCK" quit >/dev/null
	wait_gone "$SRC_PID" 100
}

# migrate NAME ADDR [send args...]: run hvmigrate send --json; SEND_RC, SEND_OUT.
migrate() {
	local name=$1 addr=$2
	shift 2
	SEND_OUT=$T/$name.send.json
	timeout 120 "$HVM" send "$SRC_SOCK" "$addr" --json "$@" >"$SEND_OUT" 2>"$T/$name.send.err"
	SEND_RC=$?
	SEND_SUMMARY=$(grep '"type":"summary"' "$SEND_OUT" | tail -n 1)
	SEND_ERR=$(cat "$T/$name.send.err")
}

# ---- modes: transports, compression, channels ----
group_modes() {
	local spec name addr_kind opts
	for spec in "tcp-zstd-1:tcp:--compress zstd --channels 1" \
		"tcp-none-4:tcp:--compress none --channels 4" \
		"unix-zstd-4:unix:--compress zstd:3 --channels 4" \
		"unix-none-1:unix:--compress none --channels 1"; do
		name=${spec%%:*}
		addr_kind=${spec#*:}
		opts=${addr_kind#*:}
		addr_kind=${addr_kind%%:*}
		start_src "$name"
		if [ "$addr_kind" = tcp ]; then
			start_dst "$name" tcp:127.0.0.1:0
		else
			start_dst "$name" "unix:$T/$name.mig"
		fi
		# A generous limit: these check transports, not convergence on a loaded machine.
		# shellcheck disable=SC2086
		migrate "$name" "$DST_ADDR" $opts --downtime-ms 3000
		[ "$SEND_RC" = 0 ] && ok "$name: send exit 0" || fail "$name: send exit $SEND_RC: $SEND_ERR"
		expect "$name: summary" '"result":"completed".*' "$SEND_SUMMARY"
		for k in total_ms downtime_ms bytes_wire pages_sent pages_zero throughput_mbps; do
			expect "$name: summary has $k" "\"$k\":[0-9.]+" "$SEND_SUMMARY"
		done
		[ "$(grep -c '"type":"round"' "$SEND_OUT")" -ge 1 ] && ok "$name: round lines" ||
			fail "$name: no round lines"
		check_moved "$name"
	done
	# IPv6, if this host has ::1.
	if ip -6 addr show lo 2>/dev/null | grep -q '::1'; then
		start_src v6
		start_dst v6 'tcp:[::1]:0'
		DST_ADDR="tcp:[::1]:$(sed -n 's/.*listening on tcp:.*:\([0-9]*\).*/\1/p' "$DST_ERR")"
		migrate v6 "$DST_ADDR" --channels 2 --downtime-ms 3000
		[ "$SEND_RC" = 0 ] && ok "v6: send exit 0" || fail "v6: send exit $SEND_RC: $SEND_ERR"
		check_moved v6
	else
		echo "skip: no IPv6 loopback"
	fi
}

# ---- tls ----
TLS_SRV=()
TLS_CLI=()
group_tls() {
	TLS_SRV=(--tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key" --tls-ca "$CERTS/ca.pem")
	TLS_CLI=(--tls-cert "$CERTS/client.pem" --tls-key "$CERTS/client.key" --tls-ca "$CERTS/ca.pem")
	[ -r "$CERTS/server.pem" ] || { fail "no certificates in $CERTS"; return; }
	local mode
	for mode in "zstd 4" "none 1"; do
		local name="tls-${mode// /-}"
		start_src "$name"
		# The first also names the client it lets in (the certificate's DNS name).
		local extra=()
		[ "$mode" = "zstd 4" ] && extra=(--tls-client-name source.hv.test)
		start_dst "$name" tcp:127.0.0.1:0 "${TLS_SRV[@]}" "${extra[@]}"
		migrate "$name" "$DST_ADDR" "${TLS_CLI[@]}" --compress "${mode% *}" --channels "${mode#* }" \
			--downtime-ms 3000
		[ "$SEND_RC" = 0 ] && ok "$name: send exit 0" || fail "$name: send exit $SEND_RC: $SEND_ERR"
		expect "$name: summary says TLS 1.3" '"tls":"TLSv1.3"' "$SEND_SUMMARY"
		expect "$name: receiver says TLS 1.3" 'over TLSv1.3' "$(cat "$DST_ERR")"
		check_moved "$name"
	done

	# Refusals: each fails with a clear error, the source keeps running, and the receiver
	# waits on (it refused a connection, not the migration it is there for).
	start_src tls-bad
	start_dst tls-bad tcp:127.0.0.1:0 "${TLS_SRV[@]}"
	migrate tls-wrong-ca "$DST_ADDR" --tls-cert "$CERTS/client2.pem" \
		--tls-key "$CERTS/client2.key" --tls-ca "$CERTS/ca2.pem"
	[ "$SEND_RC" = 1 ] && ok "wrong CA: send exit 1" || fail "wrong CA: send exit $SEND_RC"
	expect "wrong CA: error" 'certificate verify failed' "$SEND_ERR"
	migrate tls-wrong-host "$DST_ADDR" "${TLS_CLI[@]}" --tls-hostname wrong.example
	[ "$SEND_RC" = 1 ] && ok "wrong host: send exit 1" || fail "wrong host: send exit $SEND_RC"
	expect "wrong host: error" 'mismatch' "$SEND_ERR"
	migrate tls-plain "$DST_ADDR"
	[ "$SEND_RC" = 1 ] && ok "plaintext to TLS: send exit 1" || fail "plaintext to TLS: exit $SEND_RC"
	expect "plaintext to TLS: error" 'TLS' "$SEND_ERR"
	kill -0 "$DST_PID" 2>/dev/null && ok "receiver still waits after refusals" ||
		fail "receiver gave up: $(cat "$DST_ERR")"
	expect "receiver logs the refusals" 'refused a connection' "$(cat "$DST_ERR")"
	# ... and then takes the real migration.
	migrate tls-after "$DST_ADDR" "${TLS_CLI[@]}" --downtime-ms 3000
	[ "$SEND_RC" = 0 ] && ok "TLS after refusals: exit 0" || fail "TLS after refusals: $SEND_RC $SEND_ERR"
	check_moved tls-bad

	# A receiver that names another client refuses this one's certificate.
	start_src tls-name
	start_dst tls-name tcp:127.0.0.1:0 "${TLS_SRV[@]}" --tls-client-name other.hv.test
	migrate tls-name "$DST_ADDR" "${TLS_CLI[@]}"
	[ "$SEND_RC" = 1 ] && ok "client name: send exit 1" || fail "client name: send exit $SEND_RC"
	expect "client name: error" 'rejected our certificate' "$SEND_ERR"
	expect "client name: receiver says why" 'not for other.hv.test' "$(cat "$DST_ERR")"
	check_stayed tls-name
	kill "$DST_PID" 2>/dev/null

	# Expired server certificate.
	start_src tls-expired
	start_dst tls-expired tcp:127.0.0.1:0 --tls-cert "$CERTS/expired.pem" \
		--tls-key "$CERTS/expired.key" --tls-ca "$CERTS/ca.pem"
	migrate tls-expired "$DST_ADDR" "${TLS_CLI[@]}"
	[ "$SEND_RC" = 1 ] && ok "expired: send exit 1" || fail "expired: send exit $SEND_RC"
	expect "expired: error" 'expired' "$SEND_ERR"
	check_stayed tls-expired
	kill "$DST_PID" 2>/dev/null
}

# ---- stall policies: dirtyrate above the bandwidth cap ----
group_stall() {
	local policy name
	# dirtyrate rewriting whole pages of a 16 MiB working set as fast as it can (about
	# 190 MB/s here, less on a loaded machine) against a 16 MiB/s link: every round finds
	# the set dirty again.
	for policy in abort throttle raise-downtime; do
		name=stall-$policy
		SRC_OUT=$T/$name.src.out
		SRC_SOCK=$T/$name.src.sock
		"$HV" run --accel "$ACCEL" --memory 64M --control "$SRC_SOCK" \
			--cmdline "wss=16M rate=0 seconds=0 fill=1 report=1" "$DIRTY" >"$SRC_OUT" \
			2>"$T/$name.src.err" &
		SRC_PID=$!
		PIDS+=("$SRC_PID")
		wait_for "$SRC_OUT" 'dirtyrate' 50
		start_dst "$name" tcp:127.0.0.1:0
		migrate "$name" "$DST_ADDR" --bandwidth 16M --compress none --max-rounds 6 \
			--on-stall "$policy"
		case $policy in
		abort)
			[ "$SEND_RC" = 1 ] && ok "$name: send exit 1" || fail "$name: send exit $SEND_RC"
			expect "$name: error" 'did not converge' "$SEND_ERR"
			kill -0 "$SRC_PID" 2>/dev/null && ok "$name: source runs on" || fail "$name: source gone"
			expect "$name: source state" 'state +running' "$("$HVCTL" "$SRC_SOCK" info 2>&1)"
			expect "$name: source not throttled" '"throttle_pct":0' "$SEND_SUMMARY"
			"$HVCTL" "$SRC_SOCK" quit >/dev/null
			wait_gone "$SRC_PID"
			kill "$DST_PID" 2>/dev/null
			;;
		throttle)
			[ "$SEND_RC" = 0 ] && ok "$name: converged" || fail "$name: send exit $SEND_RC: $SEND_ERR"
			grep -q '"throttle_pct":[1-9]' "$SEND_OUT" && ok "$name: vCPUs were throttled" ||
				fail "$name: no throttling in the round lines"
			wait_gone "$SRC_PID"
			wait_for "$DST_OUT" 'dirtyrate' 50 && ok "$name: destination runs" || fail "$name: destination silent"
			"$HVCTL" "$DST_SOCK" quit >/dev/null
			wait_gone "$DST_PID"
			;;
		raise-downtime)
			[ "$SEND_RC" = 0 ] && ok "$name: converged" || fail "$name: send exit $SEND_RC: $SEND_ERR"
			grep -Eq '"downtime_limit_ms":([6-9][0-9][0-9]|[0-9]{4})' "$SEND_OUT" && ok "$name: limit raised" ||
				fail "$name: the limit never rose"
			wait_gone "$SRC_PID"
			"$HVCTL" "$DST_SOCK" quit >/dev/null
			wait_gone "$DST_PID"
			;;
		esac
	done
}

# ---- cancel: migrate-cancel, Ctrl-C, and hold/continue ----
group_cancel() {
	local sp
	start_src cancel
	start_dst cancel tcp:127.0.0.1:0
	"$HVM" send "$SRC_SOCK" "$DST_ADDR" --switchover-hold --json >"$T/cancel.send.json" 2>"$T/cancel.send.err" &
	sp=$!
	wait_for "$T/cancel.send.json" '"round":3' 100 || fail "cancel: no rounds while held"
	expect "cancel: migrate-status" 'phase +"precopy"' "$("$HVCTL" "$SRC_SOCK" migrate-status)"
	"$HVCTL" "$SRC_SOCK" migrate-cancel >/dev/null && ok "cancel: accepted" || fail "cancel: refused"
	wait_gone "$sp"
	[ "$RC" = 4 ] && ok "cancel: send exit 4" || fail "cancel: send exit $RC"
	expect "cancel: summary" '"result":"cancelled"' "$(cat "$T/cancel.send.json")"
	check_stayed cancel
	kill "$DST_PID" 2>/dev/null

	start_src sigint
	start_dst sigint tcp:127.0.0.1:0
	"$HVM" send "$SRC_SOCK" "$DST_ADDR" --switchover-hold --json >"$T/sigint.send.json" 2>"$T/sigint.send.err" &
	sp=$!
	wait_for "$T/sigint.send.json" '"round":2' 100
	kill -INT "$sp"
	wait_gone "$sp"
	[ "$RC" = 4 ] && ok "Ctrl-C: send exit 4" || fail "Ctrl-C: send exit $RC"
	check_stayed sigint
	kill "$DST_PID" 2>/dev/null

	start_src hold
	start_dst hold tcp:127.0.0.1:0
	"$HVM" send "$SRC_SOCK" "$DST_ADDR" --switchover-hold --json >"$T/hold.send.json" 2>"$T/hold.send.err" &
	sp=$!
	wait_for "$T/hold.send.json" '"round":3' 100
	kill -0 "$SRC_PID" && ok "hold: still in pre-copy" || fail "hold: switched over early"
	"$HVCTL" "$SRC_SOCK" migrate-continue >/dev/null && ok "hold: continue accepted" || fail "hold: continue"
	wait_gone "$sp"
	[ "$RC" = 0 ] && ok "hold: send exit 0" || fail "hold: send exit $RC"
	# Rounds 2 and on resend every page: from round 3 they go as deltas against the
	# version the cache kept, and memtouch checks that each delta landed on its base.
	expect "hold: pages sent as deltas" '"pages_delta":[1-9]' "$(tail -n 1 "$T/hold.send.json")"
	check_moved hold
}

# ---- faults: kill or cut either side at each phase ----
# Before READY reached the source, the source owns the VM: it must run on and the
# destination must not. After GO, the destination owns it. A killed owner takes the VM
# with it, so those cases check only that the other side does not run it.
group_faults() {
	local point side action name env
	for point in handshake first-pass rounds switchover after-ready after-go; do
		for side in src dst; do
			for action in kill drop; do
				name=fault-$side-$point-$action
				env="HV_MIGRATE_FAULT=$point:$action"
				if [ "$side" = src ]; then
					SRC_OUT=$T/$name.src.out
					SRC_SOCK=$T/$name.src.sock
					env "$env" "$HV" run --accel "$ACCEL" --memory "$MEM" --control "$SRC_SOCK" \
						--cmdline "$CMDLINE" "$ELF" >"$SRC_OUT" 2>"$T/$name.src.err" &
					SRC_PID=$!
					PIDS+=("$SRC_PID")
					wait_for "$SRC_OUT" '^memtouch pass'
					start_dst "$name" tcp:127.0.0.1:0
				else
					start_src "$name"
					DST_OUT=$T/$name.dst.out
					DST_ERR=$T/$name.dst.err
					DST_SOCK=$T/$name.dst.sock
					env "$env" "$HVM" recv --listen tcp:127.0.0.1:0 --control "$DST_SOCK" \
						>"$DST_OUT" 2>"$DST_ERR" &
					DST_PID=$!
					PIDS+=("$DST_PID")
					wait_for "$DST_ERR" 'listening on'
					DST_ADDR=$(sed -n 's/^hvmigrate: listening on \([^ ]*\).*/\1/p' "$DST_ERR")
				fi
				# "rounds" needs a second round: a limit nothing can meet.
				if [ "$point" = rounds ]; then
					migrate "$name" "$DST_ADDR" --downtime-ms 1 --max-rounds 4
				else
					migrate "$name" "$DST_ADDR" --downtime-ms 1000
				fi
				fault_verdict "$name" "$side" "$point" "$action"
				kill -9 "$SRC_PID" "$DST_PID" 2>/dev/null
				wait "$SRC_PID" "$DST_PID" 2>/dev/null
			done
		done
	done
}

src_runs() { kill -0 "$SRC_PID" 2>/dev/null && "$HVCTL" "$SRC_SOCK" info 2>/dev/null | grep -Eq 'state +running'; }
dst_runs() { kill -0 "$DST_PID" 2>/dev/null && [ -S "$DST_SOCK" ] && "$HVCTL" "$DST_SOCK" info 2>/dev/null | grep -Eq 'state +running'; }

fault_verdict() {
	local name=$1 side=$2 point=$3 action=$4 owner
	# Who must own the VM afterwards. The source owns it until GO; a killed owner takes
	# it along. A destination killed after GO leaves the source in doubt, its copy
	# paused. A destination that dropped or died holding GO unread never ran the VM
	# (its socket was reset), so the source takes it back.
	case $side/$point/$action in
	src/after-go/*) owner=dst ;;
	src/*/kill) owner=none ;;
	src/*/drop) owner=src ;;
	dst/after-go/kill) owner=none ;;
	dst/after-go/drop) owner=dst ;; # no connection left to drop: it completes
	dst/*) owner=src ;;
	esac
	sleep 0.5
	case $owner in
	src)
		[ "$SEND_RC" = 1 ] && ok "$name: send fails" || fail "$name: send exit $SEND_RC: $SEND_ERR"
		src_runs && ok "$name: source runs" || fail "$name: source not running: $(cat "$T/$name.src.err")"
		dst_runs && fail "$name: destination runs too" || ok "$name: destination does not run"
		more_passes "$SRC_OUT" 3 || fail "$name: source stuck"
		;;
	dst)
		src_runs && fail "$name: source still runs" || ok "$name: source does not run"
		for _ in $(seq 50); do dst_runs && break; sleep 0.1; done
		dst_runs && ok "$name: destination runs" || fail "$name: destination not running: $(cat "$DST_ERR")"
		more_passes "$DST_OUT" 3 || fail "$name: destination stuck"
		;;
	none)
		if src_runs && dst_runs; then fail "$name: two copies run"; else ok "$name: not two copies"; fi
		if [ "$side" = dst ]; then
			# The source kept its copy (paused, in doubt): an operator can resume it.
			expect "$name: send says in doubt" '"result":"in-doubt"' "$SEND_SUMMARY"
			[ "$SEND_RC" = 3 ] && ok "$name: send exit 3" || fail "$name: send exit $SEND_RC"
			expect "$name: source paused" 'state +paused' "$("$HVCTL" "$SRC_SOCK" info 2>&1)"
			"$HVCTL" "$SRC_SOCK" resume >/dev/null && more_passes "$SRC_OUT" 3 &&
				ok "$name: the kept copy resumes" || fail "$name: the kept copy does not resume"
		fi
		;;
	esac
	if grep -aq CORRUPT "$SRC_OUT" "$DST_OUT" 2>/dev/null; then fail "$name: CORRUPT"; fi
}

# ---- determinism: the destination's state at the switchover is the reference run's ----
group_determinism() {
	local n
	start_src det --deterministic
	"$HVCTL" "$SRC_SOCK" save "$T/det.init.hvs" --keep-running >/dev/null || fail "det: initial save"
	start_dst det tcp:127.0.0.1:0 --paused
	migrate det "$DST_ADDR"
	[ "$SEND_RC" = 0 ] && ok "det: send exit 0" || fail "det: send exit $SEND_RC: $SEND_ERR"
	wait_for "$DST_ERR" 'received from' 50
	for _ in $(seq 50); do [ -S "$DST_SOCK" ] && break; sleep 0.1; done
	n=$("$HVCTL" "$DST_SOCK" info --json | sed -n 's/.*"icount":\([0-9]*\).*/\1/p')
	[ -n "$n" ] && ok "det: switchover at instruction $n" || { fail "det: no icount"; return; }
	"$HVCTL" "$DST_SOCK" save "$T/det.dst.hvs" --keep-running >/dev/null || fail "det: destination save"
	"$HV" restore "$T/det.init.hvs" --run-until "$n" --save-to "$T/det.ref.hvs" >/dev/null 2>&1 ||
		fail "det: reference run to $n"
	cmp -s "$T/det.dst.hvs" "$T/det.ref.hvs" && ok "det: destination state == reference at $n" ||
		fail "det: destination state differs from the reference run at $n"
	"$HVCTL" "$DST_SOCK" quit >/dev/null
	wait_gone "$DST_PID"
}

# ---- netns: two hosts joined by a veth pair ----
group_netns() {
	if ! ip netns add hvmig-a 2>/dev/null; then
		echo "skip: netns (needs root and ip netns)"
		return
	fi
	ip netns add hvmig-b
	ip link add hvmig-va netns hvmig-a type veth peer name hvmig-vb netns hvmig-b
	ip -n hvmig-a addr add 10.77.0.1/24 dev hvmig-va
	ip -n hvmig-b addr add 10.77.0.2/24 dev hvmig-vb
	ip -n hvmig-a link set hvmig-va up
	ip -n hvmig-b link set hvmig-vb up
	ip -n hvmig-a link set lo up
	ip -n hvmig-b link set lo up
	SRC_OUT=$T/netns.src.out
	SRC_SOCK=$T/netns.src.sock
	ip netns exec hvmig-a "$HV" run --accel "$ACCEL" --memory "$MEM" --control "$SRC_SOCK" \
		--cmdline "$CMDLINE" "$ELF" >"$SRC_OUT" 2>"$T/netns.src.err" &
	SRC_PID=$!
	PIDS+=("$SRC_PID")
	wait_for "$SRC_OUT" '^memtouch pass'
	DST_OUT=$T/netns.dst.out
	DST_ERR=$T/netns.dst.err
	DST_SOCK=$T/netns.dst.sock
	ip netns exec hvmig-b "$HVM" recv --listen tcp:10.77.0.2:7444 --control "$DST_SOCK" \
		--tls-cert "$CERTS/server2.pem" --tls-key "$CERTS/server2.key" --tls-ca "$CERTS/ca2.pem" \
		>"$DST_OUT" 2>"$DST_ERR" &
	DST_PID=$!
	PIDS+=("$DST_PID")
	wait_for "$DST_ERR" 'listening on'
	# The source's hvmigrate talks to hv over the Unix socket; the migration itself goes
	# from hv in namespace a to 10.77.0.2 in namespace b, over TLS, checking the name.
	migrate netns tcp:10.77.0.2:7444 --channels 2 --tls-cert "$CERTS/client2.pem" \
		--tls-key "$CERTS/client2.key" --tls-ca "$CERTS/ca2.pem" --tls-hostname localhost
	[ "$SEND_RC" = 0 ] && ok "netns: send exit 0" || fail "netns: send exit $SEND_RC: $SEND_ERR"
	check_moved netns
}

# ---- keep-listening: one receiver, two migrations, two VM processes ----
group_keep() {
	local pids
	DST_OUT=$T/keep.dst.out
	DST_ERR=$T/keep.dst.err
	"$HVM" recv --listen "unix:$T/keep.mig" --keep-listening --control "$T/keep-%i.sock" \
		>"$DST_OUT" 2>"$DST_ERR" &
	local kp=$!
	PIDS+=("$kp")
	wait_for "$DST_ERR" 'listening on'
	for i in 1 2; do
		start_src "keep$i"
		migrate "keep$i" "unix:$T/keep.mig"
		[ "$SEND_RC" = 0 ] && ok "keep $i: send exit 0" || fail "keep $i: send exit $SEND_RC: $SEND_ERR"
		wait_gone "$SRC_PID"
	done
	for _ in $(seq 50); do [ -S "$T/keep-2.sock" ] && break; sleep 0.1; done
	pids=$( ("$HVCTL" "$T/keep-1.sock" info --json; "$HVCTL" "$T/keep-2.sock" info --json) |
		sed -n 's/.*"pid":\([0-9]*\).*/\1/p' | sort -u | wc -l)
	[ "$pids" = 2 ] && ok "keep: two VMs in two processes" || fail "keep: $pids distinct VM processes"
	kill -0 "$kp" && ok "keep: receiver still listening" || fail "keep: receiver exited"
	"$HVCTL" "$T/keep-1.sock" quit >/dev/null
	"$HVCTL" "$T/keep-2.sock" quit >/dev/null
	kill "$kp"
}

# ---- usage errors ----
group_usage() {
	local out rc
	out=$("$HVM" send 2>&1); rc=$?
	[ $rc = 2 ] && ok "send without args: exit 2" || fail "send without args: exit $rc"
	out=$("$HVM" send /nonexistent.sock tcp:127.0.0.1:1 2>&1); rc=$?
	[ $rc = 1 ] && ok "send to a missing socket: exit 1" || fail "missing socket: exit $rc"
	expect "missing socket: message" 'nonexistent.sock' "$out"
	out=$("$HVM" recv --listen bogus:1 2>&1); rc=$?
	[ $rc = 2 ] && ok "recv bad address: exit 2" || fail "recv bad address: exit $rc"
	expect "bad address: message" 'tcp:HOST:PORT or unix:PATH' "$out"
	start_src usage
	migrate usage-bad-channels tcp:127.0.0.1:1 --channels 0
	[ "$SEND_RC" = 1 ] && ok "channels 0 refused" || fail "channels 0: exit $SEND_RC"
	migrate usage-refused tcp:127.0.0.1:1
	[ "$SEND_RC" = 1 ] && ok "connection refused: exit 1" || fail "refused: exit $SEND_RC"
	expect "connection refused: message" 'refused' "$SEND_ERR"
	check_stayed usage
	out=$("$HVM" --help); expect "hvmigrate --help" 'hvmigrate send' "$out"
	out=$("$HVM" send --help); expect "send --help" '--on-stall' "$out"
	out=$("$HVM" recv --help); expect "recv --help" '--keep-listening' "$out"
}

for g in $GROUPS_RUN; do
	echo "== $g"
	"group_$g"
done
echo "failures: $FAILS"
[ "$FAILS" = 0 ]
