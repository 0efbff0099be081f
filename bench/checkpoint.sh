#!/usr/bin/env bash
# checkpoint.sh [BUILD] - checkpoints into the store (hvctl checkpoint) against QEMU's
# migration to a file, `zstd -1` and `restic backup`, and restore from the store.
#
# A guest of each size in CK_SIZES whose RAM holds the Linux memory image of ../shared/data
# (linux-512m-tmpfs.ram.zst, decompressed, cut or zero-extended to the RAM size; `hv run
# --preload`) runs guest/dirtyrate.elf at each rate of CK_RATES (MiB/s into CK_WSS of that
# image, so the pages it dirties are real Linux pages with one word changed). For each row
# (size x rate):
#   hv checkpoint  a full `hvctl SOCK checkpoint --store DIR --json`, then CK_INCR
#                  incremental ones CK_INTERVAL s apart; pause and duration from hv's reply,
#                  bytes stored from the store's growth on disk (packs, index, manifest)
#   hv restore     `hv restore --store DIR ID --control SOCK`, eager then `--lazy`, of the
#                  last checkpoint, with `--report FILE` (first_run_ms, resident_ms, pages
#                  faulted/prefetched); options this hv lacks show as "not available".
#                  "ready" is the script's own figure: exec until the control socket answers
#   QEMU           TCG, same RAM size, content (memory-backend-file over the image,
#                  share=off) and guest; live `migrate` to "exec:cat > FILE" over QMP with
#                  the bandwidth limit lifted: downtime, total time, file size
# and, once per size, `zstd -1` of the raw RAM image, and `restic backup` of it into a
# fresh repository; per row, a second `restic backup` after the image file got the same
# dirtying (as many pages as hv's median incremental wrote, one word each, in the same
# working set) as the incremental reference.
#
# The columns: pause (hv: VM paused; QEMU: its downtime), time (wall), MiB stored (hv:
# store growth; QEMU: file; zstd: output; restic: repository growth), B/page (incremental
# bytes stored per page written), dedup (logical non-zero guest bytes / bytes stored; "all"
# counts every checkpoint as a whole guest, like restic's snapshots), MB/s (logical
# non-zero bytes covered / wall time).
#
# Environment (space-separated lists): CK_SIZES="1G 4G" CK_RATES="1 10 100" CK_INCR=5
# CK_INTERVAL=2 (s) CK_WSS=256M CK_WARMUP=1 (s) CK_ACCEL=emu|kvm CK_TOOLS="hv qemu zstd
# restic" CK_IMAGE (the .zst image) CK_DIR (scratch, default /dev/shm) CK_KEEP=1 (keep it)
# QEMU PYTHON RESTIC_PASSWORD (default: a fixed bench password).
# CK_SMOKE=1: one tiny row (128M, 10 MB/s, 2 incrementals 0.5 s apart, wss 16M): 15-45 s.
# Exit status: 1 when an hv checkpoint or restore failed (an option this hv does not have
# yet is not a failure), 0 otherwise; timings are never judged.
# Goals (issue 6): pause <= 5 ms regardless of RAM size; incremental cost proportional to
# the pages dirtied; bytes stored for the Linux image <= zstd -1's; lazy restore to the
# first guest instruction <= 10 ms for 4 GiB.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
hv=$build/hv hvctl=$build/hvctl guest=$build/guest/dirtyrate.elf
qemu=${QEMU:-qemu-system-x86_64}
image=${CK_IMAGE:-$here/../../shared/data/linux-512m-tmpfs.ram.zst}

smoke=${CK_SMOKE:-0}
if [ "$smoke" = 1 ]; then
	sizes=${CK_SIZES:-128M} rates=${CK_RATES:-10} nincr=${CK_INCR:-2}
	interval=${CK_INTERVAL:-0.5} wss=${CK_WSS:-16M} warmup=${CK_WARMUP:-0.3}
else
	sizes=${CK_SIZES:-1G 4G} rates=${CK_RATES:-1 10 100} nincr=${CK_INCR:-5}
	interval=${CK_INTERVAL:-2} wss=${CK_WSS:-256M} warmup=${CK_WARMUP:-1}
fi
accel=${CK_ACCEL:-emu}
qemu_accel=tcg
[ "$accel" = kvm ] && qemu_accel=kvm
tools=${CK_TOOLS:-hv qemu zstd restic}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-hv-bench-not-secret}

for f in "$hv" "$hvctl" "$guest"; do
	[ -r "$f" ] || { echo "checkpoint: missing $f (build first)" >&2; exit 1; }
done
if [ ! -r "$image" ]; then
	# the smoke run is a meson test: without the shared data it skips (77) rather than fails
	echo "checkpoint: no image $image (set CK_IMAGE)" >&2
	[ "$smoke" = 1 ] && exit 77
	exit 1
fi
for t in qemu:"$qemu" zstd:zstd restic:restic; do
	if [[ " $tools " = *" ${t%%:*} "* ]] && ! command -v "${t#*:}" >/dev/null; then
		tools=${tools/${t%%:*}/}
		echo "checkpoint: no ${t#*:}: left out"
	fi
done

dir=$(mktemp -d "${CK_DIR:-/dev/shm}/hv-bench-checkpoint.XXXXXX")
export RESTIC_CACHE_DIR=$dir/restic-cache   # not the user's ~/.cache
pids=()
cleanup() {
	[ ${#pids[@]} = 0 ] || stop "${pids[@]}"
	[ -n "${CK_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP   # through the EXIT trap: no VM or file outlives the run
runs=$dir/runs.jsonl
: >"$runs"
failures=0

# ---- small helpers (bytes, stop, wait_line, jstr, image_raw: lib.sh) ----

now() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }

du_bytes() { # du_bytes DIR: apparent bytes of the files under DIR (what a copy would move)
	find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'
}

record() { # record JSON: one measurement, read back by the table code
	echo "$1" >>"$runs"
}

# py CMD ARGS: the Python half (JSON, QMP, the table), from the heredoc below.
py() { "$python" -c "$py_src" "$@"; }

content_file() { # content_file SIZE: raw = the Linux image at SIZE (image_raw)
	raw=$dir/linux-$1.raw
	image_raw "$image" "$1" "$raw"
}

# ---- hv: checkpoints ----

ck_once() { # ck_once ROW SIZE RATE: run the guest, full + incremental checkpoints, restores
	local row=$1 size=$2 rate=$3 sock=$dir/hv.sock con=$dir/hv.con store=$dir/store
	local pid reply before after t0 t1 i last=
	rm -rf "$store" "$sock" "$con"
	"$hv" run --accel "$accel" --memory "$size" --preload "$raw" --control "$sock" \
		--cmdline "$cmdline" "$guest" </dev/null >"$con" 2>&1 &
	pid=$!
	pids+=("$pid")
	if ! wait_line "$con" '^dirtyrate start' 60; then
		echo "checkpoint: hv did not start: $(tail -c 300 "$con")" >&2
		stop "$pid"
		return 1
	fi
	wstart=$(sed -nE 's/^dirtyrate start=(0x[0-9a-f]+).*/\1/p' "$con" | head -1)
	sleep "$warmup"   # let the guest reach its rate
	for i in $(seq 0 "$nincr"); do
		[ "$i" = 0 ] || sleep "$interval"
		before=$(du_bytes "$store")
		t0=$(now)
		if ! reply=$("$hvctl" "$sock" checkpoint --store "$store" --json 2>"$dir/hvctl.err"); then
			echo "checkpoint: hvctl checkpoint failed: $(cat "$dir/hvctl.err")" >&2
			record '{"row":"'"$row"'","tool":"hv","error":"'"$(jstr "$(cat "$dir/hvctl.err")")"'"}'
			stop "$pid"
			return 1
		fi
		t1=$(now)
		after=$(du_bytes "$store")
		record '{"row":"'"$row"'","tool":"hv","seq":'"$i"',"wall_ms":'"$(ms "$t0" "$t1")"',"store_bytes":'"$((after - before))"',"reply":'"$reply"'}'
		last=$(py field "$reply" id)
	done
	"$hvctl" "$sock" quit >/dev/null 2>&1 || true
	stop "$pid"
	restore_once "$row" "$store" "$last" eager || failures=$((failures + 1))
	restore_once "$row" "$store" "$last" lazy || failures=$((failures + 1))
	rm -rf "$store"
}

# restore_once ROW STORE ID MODE: restore, time it, check that the guest runs on. Options
# this hv does not know yet show up as "not available", not as failures: without --report
# it runs again without it; without --lazy the lazy column says so.
restore_once() {
	local st=0
	restore_try "$@" --report || st=$?
	[ "$st" = 3 ] || return "$st"
	restore_try "$@"
}

# restore_try ROW STORE ID MODE [--report]: one restore; 3 when hv refused --report.
restore_try() {
	local row=$1 store=$2 id=$3 mode=$4 sock=$dir/r.sock con=$dir/r.con rep=$dir/r.json
	local pid t0 t1 up=false st=0 alive=false opts=() r
	[ "$mode" = lazy ] && opts+=(--lazy)
	[ -z "${5:-}" ] || opts+=(--report "$rep")
	rm -f "$sock" "$con" "$rep"
	t0=$(now)
	"$hv" restore --store "$store" "$id" "${opts[@]}" --control "$sock" </dev/null >"$con" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 12000); do   # 60 s
		"$hvctl" "$sock" info >/dev/null 2>&1 && { up=true; break; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.005
	done
	t1=$(now)
	if [ "$up" = false ]; then
		wait "$pid" 2>/dev/null || st=$?
		stop "$pid"
		# status 2 with the option named: an hv without it, not a failed restore
		if [ "$st" = 2 ] && [ -n "${5:-}" ] && grep -q -- '--report' "$con"; then
			return 3
		fi
		if [ "$st" = 2 ] && grep -q -- '--lazy' "$con"; then
			record '{"row":"'"$row"'","tool":"restore","mode":"'"$mode"'","na":"'"$(jstr "$(head -1 "$con")")"'"}'
			return 0
		fi
		echo "checkpoint: hv restore ($mode) failed, status $st: $(tail -c 300 "$con")" >&2
		record '{"row":"'"$row"'","tool":"restore","mode":"'"$mode"'","error":"'"$(jstr "$(tail -c 200 "$con")")"'"}'
		return 1
	fi
	# The guest counts on: a report line on the restored console (dirtyrate prints one a
	# second; this console starts empty, so any line is new).
	wait_line "$con" '^dirtyrate t=' 30 && alive=true
	# --report writes its file once memory is resident (lazy: after the prefetch)
	if [ -n "${5:-}" ]; then
		for _ in $(seq 6000); do [ -s "$rep" ] && break; sleep 0.01; done
	fi
	"$hvctl" "$sock" quit >/dev/null 2>&1 || true
	stop "$pid"
	r='"not available"'
	[ -z "${5:-}" ] || r=null
	[ ! -s "$rep" ] || r=$(tr -d '\n' <"$rep")
	record '{"row":"'"$row"'","tool":"restore","mode":"'"$mode"'","ready_ms":'"$(ms "$t0" "$t1")"',"runs":'"$alive"',"report":'"$r"'}'
	[ "$alive" = true ] || { echo "checkpoint: restored guest ($mode) printed nothing" >&2; return 1; }
}

# ---- QEMU: live migration to a file ----

qemu_once() { # qemu_once ROW SIZE
	local row=$1 size=$2 con=$dir/q.con qsock=$dir/q.sock out=$dir/qemu.mig pid res
	rm -f "$con" "$qsock" "$out"
	# shellcheck disable=SC2054 # commas inside QEMU's option values
	"$qemu" -accel "$qemu_accel" -m "$size" -machine memory-backend=m -display none \
		-object "memory-backend-file,id=m,size=$size,mem-path=$raw,share=off" \
		-nodefaults -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$guest" -append "$cmdline" -serial "file:$con" \
		-qmp "unix:$qsock,server=on,wait=off" </dev/null >/dev/null 2>"$dir/q.err" &
	pid=$!
	pids+=("$pid")
	if ! wait_line "$con" '^dirtyrate start' 60; then
		echo "checkpoint: QEMU did not start: $(tail -c 300 "$dir/q.err")" >&2
		stop "$pid"
		return 0   # QEMU's trouble is not hv's failure
	fi
	sleep "$warmup"
	res=$(py qemu-save "$qsock" "$out" 2>"$dir/q-mig.err") ||
		res='{"error":"'"$(jstr "$(tail -c 300 "$dir/q-mig.err")")"'"}'
	record '{"row":"'"$row"'","tool":"qemu","file_bytes":'"$(stat -c %s "$out" 2>/dev/null || echo 0)"','"${res#\{}"
	stop "$pid"
	rm -f "$out"
}

# ---- zstd and restic over the raw image ----

zstd_once() { # zstd_once SIZE: zstd -1 of the raw image, once per size
	local t0 t1
	t0=$(now)
	zstd -1 -q -c "$raw" >"$dir/raw.zst"
	t1=$(now)
	record '{"size":"'"$1"'","tool":"zstd","ms":'"$(ms "$t0" "$t1")"',"bytes":'"$(stat -c %s "$dir/raw.zst")"'}'
	rm -f "$dir/raw.zst"
}

restic_full() { # restic_full SIZE: a fresh repository, a first backup of (a copy of) the image
	local t0 t1 repo=$dir/restic
	rm -rf "$repo" "$dir/img"
	mkdir -p "$dir/img"
	cp --sparse=always "$raw" "$dir/img/guest.raw"   # a copy: dirtied later for restic only
	restic init -q -r "$repo" >/dev/null
	t0=$(now)
	restic backup -q -r "$repo" "$dir/img/guest.raw" >/dev/null
	t1=$(now)
	record '{"size":"'"$1"'","tool":"restic","seq":0,"ms":'"$(ms "$t0" "$t1")"',"bytes":'"$(du_bytes "$repo")"'}'
}

restic_incr() { # restic_incr ROW PAGES: dirty PAGES pages of the copy like dirtyrate, back up
	local row=$1 before t0 t1 repo=$dir/restic
	py dirty "$dir/img/guest.raw" "$wstart" "$(bytes "$wss")" "$2"
	before=$(du_bytes "$repo")
	t0=$(now)
	restic backup -q -r "$repo" "$dir/img/guest.raw" >/dev/null
	t1=$(now)
	record '{"row":"'"$row"'","tool":"restic","seq":1,"pages":'"$2"',"ms":'"$(ms "$t0" "$t1")"',"bytes":'"$(($(du_bytes "$repo") - before))"'}'
}

# ---- the Python half ----

py_src=$(cat <<'PY'
import json, os, socket, statistics, sys, time

def field(reply, name):
    print(json.loads(reply)["return"][name])

def qemu_save(sock, out):
    """Live migration of a running QEMU to "exec:cat > out"; one JSON line of figures."""
    for _ in range(5000):
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(sock); break
        except OSError:
            s.close(); time.sleep(0.002)
    f = s.makefile("rw")
    def cmd(c, **a):
        f.write(json.dumps({"execute": c, "arguments": a} if a else {"execute": c}) + "\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                return r
    json.loads(f.readline())
    cmd("qmp_capabilities")
    cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30})  # default: 32 MiB/s
    t0 = time.perf_counter_ns()
    r = cmd("migrate", uri="exec:cat > " + out)
    if "error" in r:
        raise SystemExit(r["error"].get("desc"))
    while True:
        info = cmd("query-migrate")["return"]
        if info.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.001)
    wall = (time.perf_counter_ns() - t0) / 1e6
    cmd("quit")
    print(json.dumps({"result": info.get("status"), "wall_ms": round(wall, 1),
                      "total_ms": info.get("total-time"), "downtime_ms": info.get("downtime")}))

def dirty(path, start, wss, pages):
    """Change one word in @pages random pages of [start, start+wss) of the image file, as
    dirtyrate does in guest RAM (physical address = file offset)."""
    import random
    start, wss, pages = int(start, 0), int(wss), int(pages)
    rnd = random.Random(pages)
    with open(path, "r+b") as f:
        for i, pfn in enumerate(rnd.sample(range(wss >> 12), min(pages, wss >> 12))):
            f.seek(start + (pfn << 12) + (i & 7) * 512)
            f.write(rnd.getrandbits(64).to_bytes(8, "little"))

def nonzero(path):
    """Bytes in non-zero 4 KiB pages of @path (data extents only: holes are zero)."""
    n, zero = 0, bytes(4096)
    with open(path, "rb") as f:
        fd, end, off = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while off < end:
            try:
                off = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, off, os.SEEK_HOLE)
            f.seek(off)
            while off < hole:
                b = f.read(min(1 << 20, hole - off))
                for i in range(0, len(b), 4096):
                    c = b[i:i + 4096]
                    if c != zero[:len(c)]:
                        n += 4096
                off += len(b)
    print(n)

def incr_pages(path, row):
    """The median pages_written of the row's incremental hv checkpoints (0: none ran)."""
    fig = row_figures(load(path), row, None)["hv"]
    print(int(med(fig["pages_incr"])) if fig and fig["pages_incr"] else 0)

def load(path):
    return [json.loads(l) for l in open(path) if l.strip()]

def med(v):
    return statistics.median(v) if v else None

def f(fmt, v):
    return "-" if v is None else fmt % v

MiB = 1 << 20
ROW = "%-12s %-15s %17s %19s %19s %7s %13s %15s"

def header():
    print(ROW % ("RAM MB/s", "tool", "pause ms", "time ms", "MiB stored", "B/page",
                 "dedup", "MB/s"))
    print(ROW % ("", "", "full, incr med/max", "full / incr med", "full / incr med",
                 "incr", "full / all", "full / incr"))

def size_of(row):
    return row.split()[0]

def row_figures(runs, row, nz):
    """The figures of one row, for the table and the goals."""
    hv = sorted((r for r in runs if r.get("row") == row and r["tool"] == "hv" and "reply" in r),
                key=lambda r: r["seq"])
    out = {"hv": None}
    if hv:
        full, incr = hv[0], hv[1:]
        rep = lambda r: r["reply"]["return"]
        out["hv"] = dict(
            pause_full=rep(full)["pause_ms"],
            pause_incr=[rep(r)["pause_ms"] for r in incr],
            dur_full=rep(full)["duration_ms"],
            dur_incr=[rep(r)["duration_ms"] for r in incr],
            st_full=full["store_bytes"], st_incr=[r["store_bytes"] for r in incr],
            pages_full=rep(full)["pages_written"], pages_incr=[rep(r)["pages_written"] for r in incr],
            live=any("live" in rep(r) for r in hv),
            reported=[rep(r)["bytes_stored"] for r in hv])
    return out

def print_row(path, row, nz_path):
    runs = load(path)
    nz = int(open(nz_path).read().split()[0]) if nz_path else None
    size = size_of(row)
    fig = row_figures(runs, row, nz)
    h = fig["hv"]
    if h:
        n = len(h["st_incr"]) + 1
        b_page = med([b / p for b, p in zip(h["st_incr"], h["pages_incr"]) if p]) if h["pages_incr"] else None
        mbs_incr = med([p * 4096 / MiB / (d / 1e3) for p, d in zip(h["pages_incr"], h["dur_incr"]) if d])
        print(ROW % (row, "hv checkpoint",
                     "%s, %s/%s" % (f("%.1f", h["pause_full"]), f("%.1f", med(h["pause_incr"])),
                                   f("%.1f", max(h["pause_incr"]) if h["pause_incr"] else None)),
                     "%s / %s" % (f("%.0f", h["dur_full"]), f("%.0f", med(h["dur_incr"]))),
                     "%s / %s" % (f("%.1f", h["st_full"] / MiB), f("%.2f", med(h["st_incr"]) / MiB if h["st_incr"] else None)),
                     f("%.0f", b_page),
                     "%s / %s" % (f("%.2fx", nz / h["st_full"] if nz and h["st_full"] else None),
                                  f("%.2fx", n * nz / (h["st_full"] + sum(h["st_incr"])) if nz else None)),
                     "%s / %s" % (f("%.0f", h["pages_full"] * 4096 / MiB / (h["dur_full"] / 1e3) if h["dur_full"] else None),
                                  f("%.0f", mbs_incr))))
        # hv's own bytes_stored beside the store's growth (which adds index and manifest)
        print("%-12s %-15s pages written %d / %s; hv's bytes_stored %.1f / %.2f MiB" % (
            "", "", h["pages_full"], f("%.0f", med(h["pages_incr"])), h["reported"][0] / MiB,
            med(h["reported"][1:]) / MiB if h["reported"][1:] else 0))
    for r in (r for r in runs if r.get("row") == row and r["tool"] == "hv" and "error" in r):
        print(ROW % (row, "hv checkpoint", "FAILED: " + r["error"][:80], "", "", "", "", ""))
    for r in (r for r in runs if r.get("row") == row and r["tool"] == "qemu"):
        if r.get("result") != "completed":
            print(ROW % ("", "QEMU mig->file", "%s %s" % (r.get("result", "error"), r.get("error", "")), "", "", "", "", ""))
            continue
        print(ROW % ("", "QEMU mig->file", "%s (downtime)" % f("%.0f", r["downtime_ms"]),
                     "%s / -" % f("%.0f", r["total_ms"]), "%.1f / -" % (r["file_bytes"] / MiB), "",
                     "%s / -" % f("%.2fx", nz / r["file_bytes"] if nz and r["file_bytes"] else None),
                     "%s / -" % f("%.0f", nz / MiB / (r["total_ms"] / 1e3) if nz and r["total_ms"] else None)))
    for r in (r for r in runs if r.get("size") == size and r["tool"] == "zstd"):
        print(ROW % ("", "zstd -1 (raw)", "", "%.0f / -" % r["ms"], "%.1f / -" % (r["bytes"] / MiB), "",
                     "%s / -" % f("%.2fx", nz / r["bytes"] if nz else None),
                     "%s / -" % f("%.0f", nz / MiB / (r["ms"] / 1e3) if nz else None)))
    rf = [r for r in runs if r.get("size") == size and r["tool"] == "restic" and r["seq"] == 0]
    ri = [r for r in runs if r.get("row") == row and r["tool"] == "restic" and r["seq"] == 1]
    if rf:
        a, b = rf[0], (ri[0] if ri else None)
        print(ROW % ("", "restic backup", "",
                     "%.0f / %s" % (a["ms"], f("%.0f", b["ms"] if b else None)),
                     "%.1f / %s" % (a["bytes"] / MiB, f("%.2f", b["bytes"] / MiB if b else None)),
                     f("%.0f", b["bytes"] / b["pages"] if b and b["pages"] else None),
                     "%s / %s" % (f("%.2fx", nz / a["bytes"] if nz else None),
                                  f("%.2fx", 2 * nz / (a["bytes"] + b["bytes"]) if nz and b else None)),
                     "%s / %s" % (f("%.0f", nz / MiB / (a["ms"] / 1e3) if nz else None),
                                  f("%.0f", b["pages"] * 4096 / MiB / (b["ms"] / 1e3) if b else None))))
    for r in (r for r in runs if r.get("row") == row and r["tool"] == "restore"):
        label = "restore " + r["mode"]
        if "na" in r:
            print("%-12s %-15s not available (%s)" % ("", label, r["na"][:90]))
            continue
        if "error" in r:
            print("%-12s %-15s FAILED: %s" % ("", label, r["error"][:100]))
            continue
        rep = r["report"]
        if isinstance(rep, dict):
            more = "first run %s ms, resident %s ms; pages %s total, %s non-zero, %s faulted, %s prefetched" % (
                f("%.1f", rep.get("first_run_ms")), f("%.0f", rep.get("resident_ms")), rep.get("pages_total"),
                rep.get("pages_nonzero"), rep.get("pages_faulted"), rep.get("pages_prefetched"))
        else:
            more = "first run, resident, pages faulted/prefetched: %s" % ("not available" if rep else "no report written")
        print("%-12s %-15s ready %s ms (exec to control socket); %s; guest %s" % (
            "", label, f("%.0f", r["ready_ms"]), more, "runs on" if r["runs"] else "SILENT"))

def goals(path):
    runs = load(path)
    rows = []
    for r in runs:
        if "row" in r and r["row"] not in rows:
            rows.append(r["row"])
    hvs = {row: row_figures(runs, row, None)["hv"] for row in rows}
    hvs = {k: v for k, v in hvs.items() if v}
    if not hvs:
        print("goals: no hv checkpoint ran")
        return
    by_size = {}
    for row, h in hvs.items():
        by_size.setdefault(size_of(row), []).extend([h["pause_full"]] + h["pause_incr"])
    print("goal pause <= 5 ms regardless of RAM size: max " + ", ".join(
        "%s %.1f ms" % (s, max(p)) for s, p in by_size.items()) +
        (" (met)" if all(max(p) <= 5 for p in by_size.values()) else " (missed)"))
    parts = []
    for row, h in hvs.items():
        per = [b / p for b, p in zip(h["st_incr"], h["pages_incr"]) if p]
        dper = [d / p * 1000 for d, p in zip(h["dur_incr"], h["pages_incr"]) if p]
        if per:
            parts.append("%s: %.0f-%.0f B and %.1f-%.1f ms per 1000 pages (%d-%d pages)" % (
                row, min(per), max(per), min(dper), max(dper), min(h["pages_incr"]), max(h["pages_incr"])))
    print("goal incremental cost proportional to pages dirtied (bytes stored and duration per page):")
    for p in parts:
        print("    " + p)
    for size in dict.fromkeys(size_of(r) for r in hvs):
        z = [r["bytes"] for r in runs if r.get("size") == size and r["tool"] == "zstd"]
        fulls = [h["st_full"] for row, h in hvs.items() if size_of(row) == size]
        if z:
            print("goal full checkpoint bytes <= zstd -1's, %s: %.1f-%.1f MiB against %.1f MiB (%s)" % (
                size, min(fulls) / MiB, max(fulls) / MiB, z[0] / MiB,
                "met" if max(fulls) <= z[0] else "missed"))
    lazy = [r for r in runs if r["tool"] == "restore" and r["mode"] == "lazy" and size_of(r["row"]) == "4G"]
    fr = [r["report"]["first_run_ms"] for r in lazy if isinstance(r.get("report"), dict)]
    if fr:
        print("goal lazy restore to first instruction <= 10 ms for 4 GiB: max %.1f ms (%s)" % (
            max(fr), "met" if max(fr) <= 10 else "missed"))
    elif lazy:
        print("goal lazy restore to first instruction <= 10 ms for 4 GiB: not available in this hv")
    else:
        print("goal lazy restore to first instruction <= 10 ms for 4 GiB: no 4G row ran")
    live = [r["reply"]["return"]["live"] for r in runs if r["tool"] == "hv" and "reply" in r
            and "live" in r["reply"]["return"]]
    if live:
        print("note: hv's replies carry \"live\": %s" % ", ".join(sorted(set(json.dumps(v) for v in live))))

cmd = sys.argv[1]
args = sys.argv[2:]
{"field": field, "qemu-save": qemu_save, "dirty": dirty, "nonzero": nonzero,
 "incr-pages": incr_pages, "header": header, "row": print_row, "goals": goals}[cmd](*args)
PY
)

# ---- the run ----

echo "checkpoints: hv (--accel $accel, hvctl checkpoint --store in $(dirname "$dir")) vs QEMU" \
	"(-accel $qemu_accel, migrate to a file), zstd -1, restic $(restic version 2>/dev/null | cut -d' ' -f2 || true);" \
	"$(nproc) CPUs; $nincr incremental(s) ${interval} s apart; guest dirtyrate wss=$wss"
py header
for size in $sizes; do
	content_file "$size"
	py nonzero "$raw" >"$dir/nonzero-$size"
	[[ " $tools " != *" zstd "* ]] || zstd_once "$size"
	[[ " $tools " != *" restic "* ]] || restic_full "$size"
	for rate in $rates; do
		cmdline="wss=$wss rate=$rate seconds=0 report=1"
		row="$size $rate"
		wstart=0x200000
		if [[ " $tools " = *" hv "* ]]; then
			ck_once "$row" "$size" "$rate" || failures=$((failures + 1))
		fi
		[[ " $tools " != *" qemu "* ]] || qemu_once "$row" "$size"
		if [[ " $tools " = *" restic "* ]]; then
			# as many pages as hv's median incremental wrote (or what the rate gives)
			pages=$(py incr-pages "$runs" "$row")
			[ "$pages" != 0 ] || pages=$(awk -v r="$rate" -v i="$interval" 'BEGIN { printf "%d", r * i * 256 }')
			restic_incr "$row" "$pages"
		fi
		py row "$runs" "$row" "$dir/nonzero-$size"
	done
	rm -rf "$raw" "$dir/img" "$dir/restic"
done
py goals "$runs"
if [ "$failures" != 0 ]; then
	echo "checkpoint: $failures checkpoint or restore run(s) failed"
	exit 1
fi
