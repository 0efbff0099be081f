#!/usr/bin/env bash
# saverestore.sh [BUILD] - save and restore throughput (GB/s of guest RAM), hv vs cp vs QEMU.
#
# Two guests: (a) 1 GiB whose RAM holds the Linux memory image of ../shared/data
# (linux-512m-tmpfs.ram.zst, decompressed; `hv run --preload`), (b) a mostly-zero 4 GiB
# guest. Each runs memtouch over 4 MiB above the image (passes=0: forever), so the guest
# is live but leaves the preloaded content alone. Side by side in the same run:
#   hv save     `hvctl SOCK save FILE`, wall time of hvctl (pause, write, fsync, rename)
#   hv restore  `hv restore FILE --paused --control SOCK` from exec until the control
#               socket answers `info` (RAM, vCPU and device state loaded, vCPUs parked
#               before their first instruction), plus the `resume` round trip: an upper
#               bound of exec to first guest instruction (includes the hvctl spawns)
#   cp          `cp` of the raw RAM image (RAM-sized; sparse where the image is zero)
#   QEMU        TCG, same RAM size and content (memory-backend-file over a copy of the
#               raw image, share=off), -S, `migrate "exec:cat > FILE"` over QMP with the
#               bandwidth limit lifted, timed from the command to status "completed"
# Files go to SR_DIR (default: a fresh directory in /dev/shm, so the disk is not timed;
# hv's fsync is then free, as QEMU's cat has none). SR_IMAGE overrides the .zst image.
# Goals (issue 4): save >= 2x faster than QEMU; restore of (b) < 100 ms.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
image=${SR_IMAGE:-$here/../../shared/data/linux-512m-tmpfs.ram.zst}
hv=$build/hv hvctl=$build/hvctl guest=$build/guest/memtouch.elf
qemu=${QEMU:-qemu-system-x86_64}
[ -r "$image" ] || { echo "saverestore: no image $image (set SR_IMAGE)" >&2; exit 1; }
dir=$(mktemp -d "${SR_DIR:-/dev/shm}/hv-saverestore.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

now() { date +%s%N; }
ms() { echo "scale=1; ($2 - $1) / 1000000" | bc; }
gbs() { echo "scale=2; $1 / (($3 - $2) / 1000000000) / 1000000000" | bc; }
wait_sock() { # wait_sock SOCK: until the control socket answers
	for _ in $(seq 2000); do "$hvctl" "$1" info >/dev/null 2>&1 && return 0; sleep 0.001; done
	echo "saverestore: $1 never answered" >&2
	return 1
}

qemu_save() { # qemu_save SIZE BACKING OUT -> prints ns taken
	local sock=$dir/qmp.sock
	"$qemu" -accel tcg -m "$1" -object "memory-backend-file,id=m,size=$1,mem-path=$2,share=off" \
		-machine memory-backend=m -S -display none -nodefaults \
		-qmp "unix:$sock,server=on,wait=off" >/dev/null 2>&1 &
	local qpid=$!
	python3 - "$sock" "$3" <<'PY'
import json, socket, sys, time
sock, out = sys.argv[1], sys.argv[2]
for _ in range(5000):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sock); break
    except OSError:
        time.sleep(0.002)
f = s.makefile("rw")
def cmd(c, **a):
    f.write(json.dumps({"execute": c, "arguments": a} if a else {"execute": c}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())
cmd("qmp_capabilities")
cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30})
t0 = time.perf_counter_ns()
r = cmd("migrate", uri="exec:cat > " + out)
assert "return" in r, r
while True:
    st = cmd("query-migrate")["return"].get("status")
    if st in ("completed", "failed", "cancelled"):
        break
    time.sleep(0.0005)
t1 = time.perf_counter_ns()
assert st == "completed", st
cmd("quit")
print(t1 - t0)
PY
	wait "$qpid" || true
}

run_case() { # run_case LABEL SIZE BYTES PRELOAD(or -)
	local label=$1 size=$2 bytes=$3 pre=$4 raw=$dir/raw.img sock=$dir/hv.sock
	local save=$dir/vm.hvs t0 t1 t2 t3 hvpid qns
	echo "-- ($label) $size guest$([ "$pre" = - ] || echo ", RAM preloaded with the image")"
	rm -f "$raw"
	if [ "$pre" != - ]; then cp "$pre" "$raw"; fi
	truncate -s "$size" "$raw"

	# hv save
	local pre_args=()
	[ "$pre" = - ] || pre_args=(--preload "$raw")
	"$hv" run --memory "$size" "${pre_args[@]}" \
		--control "$sock" --cmdline "start=768M end=772M passes=0 report=1000000000" \
		"$guest" >/dev/null 2>&1 &
	hvpid=$!
	pids+=("$hvpid")
	wait_sock "$sock"
	sleep 0.3
	t0=$(now)
	"$hvctl" "$sock" save "$save" >/dev/null
	t1=$(now)
	wait "$hvpid" || true
	printf '  hv save     %8s ms  %6s GB/s  file %s MiB\n' "$(ms "$t0" "$t1")" \
		"$(gbs "$bytes" "$t0" "$t1")" "$(( $(stat -c %s "$save") >> 20 ))"
	hv_save_ns=$((t1 - t0))

	# hv restore, paused, until the socket answers; then resume
	rm -f "$sock"
	t0=$(now)
	"$hv" restore "$save" --paused --control "$sock" >/dev/null 2>&1 &
	hvpid=$!
	pids+=("$hvpid")
	wait_sock "$sock"
	t1=$(now)
	"$hvctl" "$sock" resume
	t2=$(now)
	sleep 0.2
	"$hvctl" "$sock" info | grep -q 'state *running' || echo "  hv restore: guest not running!"
	"$hvctl" "$sock" quit >/dev/null
	wait "$hvpid" || true
	printf '  hv restore  %8s ms  %6s GB/s  (ready, paused: %s ms; + resume)\n' \
		"$(ms "$t0" "$t2")" "$(gbs "$bytes" "$t0" "$t2")" "$(ms "$t0" "$t1")"
	hv_restore_ns=$((t2 - t0))

	# cp of the raw image
	t0=$(now)
	cp "$raw" "$dir/raw.cp"
	t1=$(now)
	printf '  cp          %8s ms  %6s GB/s  file %s MiB (%s MiB on disk)\n' "$(ms "$t0" "$t1")" \
		"$(gbs "$bytes" "$t0" "$t1")" "$(( $(stat -c %s "$dir/raw.cp") >> 20 ))" \
		"$(( $(du -k "$dir/raw.cp" | cut -f1) >> 10 ))"
	cp_ns=$((t1 - t0))
	rm -f "$dir/raw.cp"

	# QEMU migration to a file
	if command -v "$qemu" >/dev/null; then
		qns=$(qemu_save "$size" "$raw" "$dir/qemu.mig")
		printf '  QEMU save   %8s ms  %6s GB/s  file %s MiB\n' "$(ms 0 "$qns")" \
			"$(gbs "$bytes" 0 "$qns")" "$(( $(stat -c %s "$dir/qemu.mig") >> 20 ))"
		rm -f "$dir/qemu.mig"
		echo "  save: hv is $(echo "scale=2; $qns / $hv_save_ns" | bc)x QEMU's speed" \
			"(goal >= 2x), $(echo "scale=2; $cp_ns / $hv_save_ns" | bc)x cp's"
	else
		echo "  QEMU save   (no $qemu)"
	fi
	echo "  restore: $(ms 0 "$hv_restore_ns") ms to the first guest instruction"
	rm -f "$save" "$raw"
}

zstd -q -d --long=30 -f -o "$dir/image.ram" "$image"
run_case a 1G $((1 << 30)) "$dir/image.ram"
rm -f "$dir/image.ram"
run_case b 4G $((4 << 30)) -
echo "goal: (b) restore < 100 ms to the first guest instruction"
