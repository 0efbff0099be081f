#!/usr/bin/env bash
# migration.sh [BUILD] - live migration over loopback: hv (`hvmigrate send/recv`) against
# QEMU (TCG, QMP `migrate`), side by side in the same run, same guest, RAM and content.
#
# A row is RAM size x content x guest load x mode x channels. For each row and each repeat,
# both tools migrate a freshly started VM running build/guest/dirtyrate.elf:
#   hv    source `hv run --control S`, destination `hvmigrate recv --listen tcp:127.0.0.1:0`
#         (the port it prints), driven by `hvmigrate send S tcp:... --json`; figures from
#         send's summary line
#   QEMU  two qemu-system-x86_64 -accel tcg, the destination with -incoming defer, driven by
#         qmp.py over QMP; figures from the source's query-migrate (total-time, downtime,
#         ram.transferred, ram.dirty-sync-count)
# Content: `zero` (only what the guest writes) or `linux` (RAM preloaded with the raw Linux
# image of ../shared/data, cut or zero-extended to the RAM size: `hv run --preload` and a
# memory-backend-file over the same file for QEMU, share=off so nobody writes it).
# Loads: `idle` (dirtyrate at 1 MB/s into 64 KiB: at most 16 pages dirty), a number N
# (dirtyrate N MB/s into MIG_WSS), `over` (MIG_OVER_RATE MB/s under a bandwidth cap of
# MIG_OVER_BW bytes/s, so pre-copy alone cannot converge: hv --on-stall throttle, QEMU
# auto-converge). Modes: plain, zstd (hv --compress zstd, QEMU multifd-compression zstd,
# both level 1), tls (mutual certificates of tests/migrate/mkcerts.sh, QEMU tls-creds-x509
# with verify-peer), tls+zstd. Channels: hv --channels N; QEMU multifd with
# multifd-channels N (multifd with one channel too: faster than QEMU's single stream).
# Both get the same downtime limit (MIG_DOWNTIME_MS) and bandwidth (unlimited, except
# `over`; QEMU's default cap of 32 MiB/s is lifted).
#
# Columns (medians over MIG_REPEATS; downtime also the max):
#   total     as each tool reports it (hv's summary total_ms, QEMU's total-time)
#   downtime  source paused to destination running: hv's downtime_ms; for QEMU the
#             source's STOP event to the destination's RESUME event, with QEMU's own
#             "downtime" (which stops when the source has sent everything) in parentheses
#   rounds    hv: pre-copy rounds; QEMU: dirty-bitmap syncs
#   wire MiB  hv: bytes_wire (all connections, after compression and TLS); QEMU:
#             ram.transferred, which in 7.2 counts a multifd page as 4 KiB even when zstd
#             made it smaller: marked '*' on zstd rows (the loopback interface's counter
#             would be like for like, but counts everybody's traffic on a shared machine)
#   CPU s     spent migrating. Source: hv's own count of its migration threads; QEMU's
#             threads other than the vCPU during the migration. Destination: the process
#             less its vCPU thread, from before the migration until the VM runs
#   RAM GB/s  guest RAM size over total time
#   hv/QEMU   ratios of total time and downtime
# A physical reference is printed first: memcpy bandwidth over each RAM size and one TCP
# stream over loopback.
#
# Environment (space-separated lists):
#   MIG_SIZES="256M 1G"  MIG_CONTENT="zero linux"  MIG_LOADS="idle 100"
#   MIG_MODES="plain tls+zstd"  MIG_CHANNELS="1 2"  MIG_REPEATS=2 (3 or more for
#   medians worth the name; 3 takes ~14 min here)
#   MIG_DOWNTIME_MS=50  MIG_WSS=64M  MIG_OVER_RATE=100  MIG_OVER_BW=32M  MIG_TIMEOUT=60
#   MIG_WARMUP=0.5 (s the guest runs before the migration)  MIG_ACCEL=emu|kvm
#   MIG_TOOLS="hv qemu" (either alone, too)  MIG_KEEP=1 (keep the scratch directory)
#   MIG_IMAGE (the .zst image)  MIG_DIR (scratch, default /dev/shm)  QEMU
#   MIG_SMOKE=1  one tiny row (128M zero idle tls+zstd, 2 channels) of each tool, no
#                references, the destination must print: ~5 s here, for `make check`
# The full matrix of issue 5 (3 sizes x 2 contents x 4 loads x 4 modes x 2 channels x
# repeats) takes hours here: MIG_SIZES="256M 1G 4G" MIG_LOADS="idle 10 100 over"
# MIG_MODES="plain zstd tls tls+zstd" MIG_REPEATS=3.
# Exit status: 0 when every migration completed (QEMU may time out: that is its result), 1
# otherwise; timings are never judged.
# Goals (issue 5): total <= 0.5x QEMU's and downtime <= 0.2x QEMU's where both converge.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
hv=$build/hv hvctl=$build/hvctl hvmigrate=$build/hvmigrate guest=$build/guest/dirtyrate.elf
qemu=${QEMU:-qemu-system-x86_64}
image=${MIG_IMAGE:-$here/../../shared/data/linux-512m-tmpfs.ram.zst}

smoke=${MIG_SMOKE:-0}
if [ "$smoke" = 1 ]; then
	sizes=${MIG_SIZES:-128M} contents=${MIG_CONTENT:-zero} loads=${MIG_LOADS:-idle}
	modes=${MIG_MODES:-tls+zstd} channels_list=${MIG_CHANNELS:-2} repeats=${MIG_REPEATS:-1}
else
	sizes=${MIG_SIZES:-256M 1G} contents=${MIG_CONTENT:-zero linux}
	loads=${MIG_LOADS:-idle 100} modes=${MIG_MODES:-plain tls+zstd}
	channels_list=${MIG_CHANNELS:-1 2} repeats=${MIG_REPEATS:-2}
fi
# The smoke run checks that both tools migrate, not how fast: on a loaded machine (a CI
# runner) even an idle guest's last page plus two round trips can exceed 50 ms, and the
# migration then fails to converge rather than run slow. So it gets a lenient limit.
default_downtime=50
[ "$smoke" = 1 ] && default_downtime=2000
downtime_ms=${MIG_DOWNTIME_MS:-$default_downtime} wss=${MIG_WSS:-64M} timeout_s=${MIG_TIMEOUT:-60}
over_rate=${MIG_OVER_RATE:-100} over_bw=${MIG_OVER_BW:-32M} warmup=${MIG_WARMUP:-0.5}
accel=${MIG_ACCEL:-emu}
qemu_accel=tcg
[ "$accel" = kvm ] && qemu_accel=kvm

for f in "$hv" "$hvctl" "$hvmigrate" "$guest"; do
	[ -x "$f" ] || [ -r "$f" ] || { echo "migration: missing $f (build first)" >&2; exit 1; }
done
tools=${MIG_TOOLS:-hv qemu}
if [[ " $tools " = *" qemu "* ]] && ! command -v "$qemu" >/dev/null; then
	tools=${tools/qemu/}
	echo "migration: no $qemu: hv only"
fi
if [[ " $modes " = *" tls"* ]] && ! command -v openssl >/dev/null; then
	modes=$(for m in $modes; do echo "${m#tls+}"; done | grep -vx tls | sort -u | paste -sd' ')
	echo "migration: no openssl to make certificates: TLS modes left out (${modes:-none left})"
	[ -n "$modes" ] || modes=plain
fi
case " $contents " in *" linux "*)
	[ -r "$image" ] || { echo "migration: no image $image (set MIG_IMAGE)" >&2; exit 1; } ;;
esac

dir=$(mktemp -d "${MIG_DIR:-/dev/shm}/hv-bench-migration.XXXXXX")
pids=()
cleanup() {
	local p
	[ ${#pids[@]} = 0 ] || stop "${pids[@]}"
	[ -n "${MIG_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP   # through the EXIT trap: no VM or file outlives the run
runs=$dir/runs.tsv
: >"$runs"
failures=0

# ---- small helpers (bytes, stop, wait_line, jstr, image_raw: lib.sh) ----

# QMP driver, CPU accounting, references and the table.
qmp() { "$python" "$here/qmp.py" "$@"; }

wait_sock() { # wait_sock SOCK: until hv's control socket answers
	for _ in $(seq 500); do "$hvctl" "$1" info >/dev/null 2>&1 && return 0; sleep 0.01; done
	return 1
}

record() { # record ROW JSON: one migration's figures, read back by qmp.py row/goals
	printf '%s\t%s\n' "$1" "$2" >>"$runs"
}

broken() { # broken ROW TOOL WHY: a migration that never got to start
	echo "migration: $2: $3" >&2
	record "$1" '{"tool":"'"$2"'","result":"error","error":"'"$(jstr "$3")"'"}'
}

# The guest's command line for a load; sets bw (bytes/s, 0 = unlimited) and over (0/1).
guest_args() {
	over=0 bw=0
	case $1 in
	idle) cmdline="wss=64K rate=1 seconds=0 report=1" ;;
	over) cmdline="wss=$wss rate=$over_rate seconds=0 report=1" over=1 bw=$(bytes "$over_bw") ;;
	*[!0-9]* | "") echo "migration: unknown load '$1' (idle, over or MB/s)" >&2; exit 2 ;;
	*) cmdline="wss=$wss rate=$1 seconds=0 report=1" ;;
	esac
}

# content_file SIZE CONTENT: sets raw to the raw RAM image of the row ("" for zero).
content_file() {
	raw=
	[ "$2" = linux ] || return 0
	raw=$dir/linux-$1.raw
	image_raw "$image" "$1" "$raw"
}

# TLS material, made once: mkcerts.sh's set (hv wants file names, QEMU a directory with
# fixed names; both get the same CA and leaf certificates).
certs=$dir/certs qtls=$dir/qemu-tls
make_certs() {
	[ -e "$certs/ca.pem" ] && return
	if [ -r "$here/../tests/migrate/mkcerts.sh" ]; then
		sh "$here/../tests/migrate/mkcerts.sh" "$certs" >/dev/null 2>&1
	else # the same essentials by hand: a CA, a server for IP:127.0.0.1, a client
		mkdir -p "$certs"
		(cd "$certs"
		 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
			-subj "/CN=bench ca" -keyout ca.key -out ca.pem
		 for leaf in server client; do
			 openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-subj "/CN=bench $leaf" -keyout $leaf.key -out $leaf.csr
			 printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%sAuth\n' \
				$leaf >$leaf.ext
			 openssl x509 -req -in $leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
				-days 30 -extfile $leaf.ext -out $leaf.pem
		 done) >/dev/null 2>&1
	fi
	mkdir -p "$qtls"
	cp "$certs/ca.pem" "$qtls/ca-cert.pem"
	for leaf in server client; do
		cp "$certs/$leaf.pem" "$qtls/$leaf-cert.pem"
		cp "$certs/$leaf.key" "$qtls/$leaf-key.pem"
	done
}

# ---- one hv migration ----

# hv_once ROW SIZE RAW CH MODE: start a source VM and a receiver, migrate, record.
hv_once() {
	local row=$1 size=$2 raw=$3 ch=$4 mode=$5
	local ssock=$dir/hv-src.sock dsock=$dir/hv-dst.sock scon=$dir/hv-src.con
	local dcon=$dir/hv-dst.con rerr=$dir/hv-recv.err sout=$dir/hv-send.out
	local spid rpid port rc=0 result cpu0 cpu1 summary
	local pre=() tls_recv=() tls_send=() opts=()
	rm -f "$ssock" "$dsock" "$scon" "$dcon" "$rerr" "$sout"
	[ -z "$raw" ] || pre=(--preload "$raw")
	case $mode in tls*)
		tls_recv=(--tls-cert "$certs/server.pem" --tls-key "$certs/server.key" --tls-ca "$certs/ca.pem")
		tls_send=(--tls-cert "$certs/client.pem" --tls-key "$certs/client.key" --tls-ca "$certs/ca.pem")
	esac
	case $mode in *zstd) opts+=(--compress zstd:1) ;; *) opts+=(--compress none) ;; esac
	[ "$bw" = 0 ] || opts+=(--bandwidth "$bw")
	[ "$over" = 0 ] || opts+=(--on-stall throttle)

	"$hv" run --accel "$accel" --memory "$size" "${pre[@]}" --control "$ssock" \
		--cmdline "$cmdline" "$guest" >"$scon" 2>&1 &
	spid=$!
	pids+=("$spid")
	"$hvmigrate" recv --listen tcp:127.0.0.1:0 "${tls_recv[@]}" --control "$dsock" \
		--console "$dcon" --json >/dev/null 2>"$rerr" &
	rpid=$!
	pids+=("$rpid")
	if ! wait_line "$rerr" 'listening on tcp:127\.0\.0\.1:[0-9]+' 10 ||
		! wait_line "$scon" '^dirtyrate start' 20; then
		broken "$row" hv "no start: $(tail -c 300 "$rerr" "$scon")"
		stop "$spid" "$rpid"
		return 1
	fi
	port=$(sed -nE 's/.*listening on tcp:127\.0\.0\.1:([0-9]+).*/\1/p' "$rerr" | head -1)
	sleep "$warmup"   # let the guest reach its dirty rate

	cpu0=$(qmp cpu "$rpid") cpu1=$cpu0   # cpu1: until known
	timeout $((timeout_s + 30)) "$hvmigrate" send "$ssock" "tcp:127.0.0.1:$port" \
		"${tls_send[@]}" "${opts[@]}" --downtime-ms "$downtime_ms" --channels "$ch" \
		--timeout "$timeout_s" --json >"$sout" 2>"$dir/hv-send.err" || rc=$?
	result=completed
	if [ "$rc" = 0 ]; then
		# The destination has run the VM since the GO: now its vCPU is the busy thread.
		cpu1=$(qmp cpu "$rpid" --minus-busiest)
		dest_runs hv "$dcon" "$dsock" || result=dest-not-running
		source_ended "$spid" || result=source-still-running
	else
		result="exit-$rc"
	fi
	"$hvctl" "$dsock" quit >/dev/null 2>&1 || true
	exited_cleanly "$rpid" || [ "$result" != completed ] || result=dest-crashed
	summary=$(grep '"type":"summary"' "$sout" | tail -1 || true)
	[ -n "$summary" ] || summary='{"error":"no summary: '"$(jstr "$(tail -c 300 "$dir/hv-send.err")")"'"}'
	[ "$result" = completed ] || summary=${summary/\"result\":\"completed\"/\"result\":\"$result\"}
	record "$row" '{"tool":"hv","ram_bytes":'"$(bytes "$size")"',"cpu_dst":'"$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')"',"result":"'"$result"'",'"${summary#\{}"
	stop "$rpid" "$spid"
	[ "$result" = completed ]
}

# dest_runs TOOL CONSOLE SOCK: the destination VM runs. The smoke run also wants proof from
# the guest: a fresh console line there (dirtyrate prints one a second).
dest_runs() {
	if [ "$1" = hv ]; then
		wait_sock "$3" && "$hvctl" "$3" info 2>/dev/null | grep -q 'state *running' || return 1
	fi
	[ "$smoke" = 1 ] || return 0
	wait_line "$2" '^dirtyrate t=' 3
}

# exited_cleanly PID: a destination told to quit ends without crashing (a crash in its
# teardown is a bug too, even if the migration went well). Dead by signal: 128 + N.
exited_cleanly() {
	local st=0
	for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.01; done
	kill -0 "$1" 2>/dev/null && return 0   # still running: stop() will end it
	wait "$1" 2>/dev/null || st=$?
	[ "$st" -lt 128 ] && return 0
	echo "migration: hvmigrate recv ended by signal $((st - 128)) after quit" >&2
	return 1
}

# source_ended PID: after the switchover the source hv ends by itself (one copy runs).
source_ended() {
	for _ in $(seq 500); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.01; done
	return 1
}

# ---- one QEMU migration ----

# qemu_once ROW SIZE RAW CH MODE: the same with two QEMUs and qmp.py.
qemu_once() {
	local row=$1 size=$2 raw=$3 ch=$4 mode=$5
	local scon=$dir/q-src.con dcon=$dir/q-dst.con out=$dir/q-mig.out
	local spid dpid rc=0 result res src_mem tls=() args=() common
	rm -f "$dir"/q-*
	# RAM as a backend on both sides: the RAM block's name ("m") must match.
	if [ -n "$raw" ]; then
		src_mem="memory-backend-file,id=m,size=$size,mem-path=$raw,share=off"
	else
		src_mem="memory-backend-ram,id=m,size=$size"
	fi
	# shellcheck disable=SC2054 # commas inside QEMU's option values
	common=(-accel "$qemu_accel" -m "$size" -machine memory-backend=m -display none
		-nodefaults -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04
		-kernel "$guest" -append "$cmdline")
	case $mode in tls*)
		tls=(-object "tls-creds-x509,id=tls0,dir=$qtls,endpoint=client,verify-peer=on")
		args+=(--tls)
	esac
	"$qemu" -name src,debug-threads=on "${common[@]}" -object "$src_mem" "${tls[@]}" \
		-serial "file:$scon" -qmp "unix:$dir/q-src.sock,server=on,wait=off" \
		>/dev/null 2>"$dir/q-src.err" &
	spid=$!
	pids+=("$spid")
	[ -z "${tls[*]}" ] || tls=(-object "tls-creds-x509,id=tls0,dir=$qtls,endpoint=server,verify-peer=on")
	"$qemu" -name dst,debug-threads=on "${common[@]}" -object "memory-backend-ram,id=m,size=$size" \
		"${tls[@]}" -serial "file:$dcon" -qmp "unix:$dir/q-dst.sock,server=on,wait=off" \
		-incoming defer >/dev/null 2>"$dir/q-dst.err" &
	dpid=$!
	pids+=("$dpid")
	if ! wait_line "$scon" '^dirtyrate start' 20; then
		broken "$row" qemu "no start: $(tail -c 300 "$dir/q-src.err" "$dir/q-dst.err")"
		stop "$spid" "$dpid"
		return 1
	fi
	sleep "$warmup"

	case $mode in *zstd) args+=(--compress zstd) ;; esac
	[ "$over" = 0 ] || args+=(--auto-converge)
	qmp migrate --src "$dir/q-src.sock" --dst "$dir/q-dst.sock" --src-pid "$spid" \
		--dst-pid "$dpid" --channels "$ch" --downtime-ms "$downtime_ms" --bandwidth "$bw" \
		--timeout "$timeout_s" "${args[@]}" >"$out" 2>"$dir/q-mig.err" || rc=$?
	res=$(tail -1 "$out")
	[ -n "$res" ] || res='{"result":"error","error":"'"$(jstr "$(tail -c 300 "$dir/q-mig.err")")"'"}'
	result=$(echo "$res" | sed -nE 's/.*"result": "([^"]*)".*/\1/p')
	if [ "$result" = completed ] && ! dest_runs qemu "$dcon" -; then
		result=dest-not-running
		res=${res/\"result\": \"completed\"/\"result\": \"$result\"}
	fi
	record "$row" '{"tool":"qemu","ram_bytes":'"$(bytes "$size")"','"${res#\{}"
	stop "$spid" "$dpid"
	# QEMU not converging within MIG_TIMEOUT is a result (shown in the table), not a failure
	[ "$result" = completed ] || [ "$result" = timeout ]
}

# ---- the run ----

echo "live migration over loopback, hv (--accel $accel) vs QEMU (-accel $qemu_accel);" \
	"$(nproc) CPUs; downtime limit $downtime_ms ms; $repeats repeat(s)"
if [ "$smoke" != 1 ]; then
	echo "reference: TCP loopback, one stream: $(qmp loopback $((1 << 30))) GB/s"
	for size in $sizes; do
		echo "$size $(qmp memcpy "$(bytes "$size")")" >>"$dir/memcpy"
		echo "reference: memcpy of $size: $(tail -1 "$dir/memcpy" | cut -d' ' -f2) GB/s"
	done
fi
case " $modes " in *" tls"*) make_certs ;; esac
qmp header
for size in $sizes; do
	for content in $contents; do
		content_file "$size" "$content"
		for load in $loads; do
			guest_args "$load"
			for mode in $modes; do
				for ch in $channels_list; do
					row="$size $content $load $mode $ch"
					for _ in $(seq "$repeats"); do
						for tool in $tools; do
							"${tool}_once" "$row" "$size" "$raw" "$ch" "$mode" ||
								failures=$((failures + 1))
						done
					done
					qmp row "$runs" "$row"
				done
			done
		done
		[ -z "$raw" ] || rm -f "$raw"
	done
done
memcpy_ref=()
[ ! -e "$dir/memcpy" ] || memcpy_ref=("$dir/memcpy")
qmp goals "$runs" "${memcpy_ref[@]}"
if [ "$failures" != 0 ]; then
	echo "migration: $failures migration(s) failed"
	exit 1
fi
