#!/usr/bin/env python3
"""qmp.py - the Python half of bench/migration.sh: a tiny QMP client and what the shell
cannot do well.

  qmp.py migrate --src SOCK --dst SOCK --src-pid P --dst-pid P [options]
        one QEMU live migration between two running QEMUs (the destination started with
        -incoming defer) over loopback, configured like the hv row (multifd, zstd, TLS,
        downtime limit, bandwidth); prints one JSON line of results from query-migrate
  qmp.py cpu PID [--minus-busiest]
        CPU seconds of a process (dead threads included); --minus-busiest leaves out the
        thread that burns the most CPU over the next 0.2 s (the running vCPU: hv's threads
        have no names to tell them apart)
  qmp.py memcpy BYTES       memcpy bandwidth (GB/s) over BYTES of touched memory
  qmp.py loopback BYTES     one TCP stream over 127.0.0.1 (GB/s)
  qmp.py row FILE ROW       aggregate the runs of ROW in FILE into the table lines
  qmp.py header             the table's heading
  qmp.py goals FILE [MEMCPY]  the goals of issue 5 that the rows of FILE can judge
                            (MEMCPY: lines "SIZE GB/s")

Standard library only (no pip installs on the bench machines). CPU accounting: QEMU's
vCPU threads are named "CPU n/TCG" and are left out, so a side's figure is the cost of
migrating, not of running the guest.
"""
import json
import os
import re
import socket
import statistics
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


class QMP:
    """A QMP connection over a unix socket: commands in, replies out, events kept aside."""

    def __init__(self, path, wait_s=10):
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self.f = self.s.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP connection closed during " + name)
            r = json.loads(line)
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"].get("desc", r["error"])))
            if "event" in r:
                self.events.append(r)

    def event_time(self, name):
        """Host time (s) of the last event @name seen, or None."""
        for e in reversed(self.events):
            if e["event"] == name:
                return e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
        return None


# ---- CPU accounting from /proc ----

def _ticks(stat):
    """utime + stime (and for a process, its reaped threads) from a /proc stat line."""
    rest = stat[stat.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def _comm(stat):
    return stat[stat.index("(") + 1:stat.rindex(")")]


def proc_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        return _ticks(f.read())


def thread_ticks(pid):
    """{tid: (name, ticks)} of the live threads of @pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read()
            out[tid] = (_comm(st), _ticks(st))
        except OSError:
            pass
    return out


VCPU_NAME = re.compile(r"^CPU \d+/")


def cpu_without_vcpus(pid):
    """CPU ticks of @pid less its vCPU threads (QEMU names them)."""
    total = proc_ticks(pid)
    return total - sum(t for n, t in thread_ticks(pid).values() if VCPU_NAME.match(n))


def cpu_minus_busiest(pid, window=0.2):
    """CPU ticks of @pid less the thread that runs most over the next @window seconds."""
    total, before = proc_ticks(pid), thread_ticks(pid)
    time.sleep(window)
    after = thread_ticks(pid)
    grow = {t: after[t][1] - before[t][1] for t in before if t in after}
    busiest = max(grow, key=grow.get) if grow else None
    return total - (before[busiest][1] if busiest else 0)


# ---- the QEMU migration ----

def qemu_migrate(a):
    src, dst = QMP(a.src), QMP(a.dst)
    # multifd always: with one channel too it beats QEMU's single stream (an idle 1 GiB
    # guest here: 0.3-0.7 s against 1.8-2.1 s); --single-stream for the other.
    multifd = not a.single_stream
    for q in (src, dst):
        if multifd:
            q.cmd("migrate-set-capabilities",
                  capabilities=[{"capability": "multifd", "state": True}])
    if a.auto_converge:
        src.cmd("migrate-set-capabilities",
                capabilities=[{"capability": "auto-converge", "state": True}])
    common = {}
    if multifd:
        common["multifd-channels"] = a.channels
        common["multifd-compression"] = "zstd" if a.compress == "zstd" else "none"
        if a.compress == "zstd":
            common["multifd-zstd-level"] = a.zstd_level
    if a.tls:
        common["tls-creds"] = "tls0"
    for q in (src, dst):
        if common:
            q.cmd("migrate-set-parameters", **common)
    # QEMU's default max-bandwidth is 32 MiB/s: "unlimited" has to be said.
    src.cmd("migrate-set-parameters", **{
        "downtime-limit": a.downtime_ms,
        "max-bandwidth": a.bandwidth if a.bandwidth > 0 else 100 << 30})
    if a.tls:
        src.cmd("migrate-set-parameters", **{"tls-hostname": "127.0.0.1"})

    # Port 0: the kernel picks one; query-migrate on the destination tells which.
    dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
    port = None
    for _ in range(1000):
        addrs = dst.cmd("query-migrate").get("socket-address", [])
        if addrs:
            port = int(addrs[0]["port"])
            break
        time.sleep(0.002)
    if port is None:
        raise RuntimeError("destination never listened")

    src_cpu0, dst_cpu0 = cpu_without_vcpus(a.src_pid), cpu_without_vcpus(a.dst_pid)
    t0 = time.monotonic()
    src.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
    status, info = "?", {}
    while True:
        info = src.cmd("query-migrate")
        status = info.get("status", "?")
        if status in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() - t0 > a.timeout:
            src.cmd("migrate_cancel")
            status = "timeout"
            break
        time.sleep(0.005)
    res = {"result": status, "rounds": info.get("ram", {}).get("dirty-sync-count", 0)}
    if status == "completed":
        # The destination owns the VM once it runs; its CPU is sampled then.
        for _ in range(2500):
            if dst.cmd("query-status").get("status") == "running":
                break
            time.sleep(0.002)
        else:
            res["result"] = "dest-not-running"
        ram = info.get("ram", {})
        # QEMU's "downtime" ends when the source has sent the last byte; hv's ends when the
        # destination runs. Like for like: the source's STOP event to the destination's
        # RESUME event (host clock, microseconds, both on this machine).
        stop, resume = src.event_time("STOP"), dst.event_time("RESUME")
        for _ in range(100):  # an event still on its way: any reply comes after it
            if stop and resume:
                break
            time.sleep(0.01)
            src.cmd("query-status")
            dst.cmd("query-status")
            stop, resume = src.event_time("STOP"), dst.event_time("RESUME")
        if not (stop and resume):
            print("qmp.py: no %s event" % ("STOP" if not stop else "RESUME"), file=sys.stderr)
        res.update(total_ms=info.get("total-time", 0),
                   downtime_ms=round((resume - stop) * 1000, 1) if stop and resume else None,
                   downtime_qemu_ms=info.get("downtime", 0),
                   # QEMU 7.2 counts a multifd page as 4 KiB, compressed or not
                   bytes_wire=ram.get("transferred", 0), pages_zero=ram.get("duplicate", 0),
                   cpu_src=(cpu_without_vcpus(a.src_pid) - src_cpu0) / TICK,
                   cpu_dst=(cpu_without_vcpus(a.dst_pid) - dst_cpu0) / TICK)
    else:
        res["error"] = info.get("error-desc", status)
    print(json.dumps(res))
    return 0 if res["result"] == "completed" else 1


# ---- physical references ----

def memcpy_gbs(n):
    a = bytearray(b"\x5a") * n   # touched source
    b = bytearray(n)
    mb = memoryview(b)
    mb[:] = a                    # touch the destination: time the copy, not page faults
    best = None
    for _ in range(3):
        t = time.perf_counter()
        mb[:] = a
        t = time.perf_counter() - t
        best = t if best is None or t < best else best
    return n / best / 1e9


def loopback_gbs(n):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = [0]

    def sink():
        c, _ = srv.accept()
        buf = memoryview(bytearray(1 << 20))
        while got[0] < n:
            k = c.recv_into(buf)
            if not k:
                break
            got[0] += k
        c.close()

    th = threading.Thread(target=sink)
    th.start()
    s = socket.create_connection(srv.getsockname())
    chunk = memoryview(bytearray(1 << 20))
    t = time.perf_counter()
    left = n
    while left > 0:
        s.sendall(chunk[:min(left, len(chunk))])
        left -= len(chunk)
    s.close()
    th.join()
    t = time.perf_counter() - t
    srv.close()
    return got[0] / t / 1e9


# ---- the table ----

def load_runs(path):
    """Lines of 'ROW\\tJSON' (one per migration) -> {row: {tool: [dict]}} in file order."""
    rows = {}
    with open(path) as f:
        for line in f:
            row, js = line.rstrip("\n").split("\t", 1)
            d = json.loads(js)
            # hv's summary says "round" and "cpu_seconds" (its migration threads)
            d.setdefault("rounds", d.get("round", 0))
            d.setdefault("cpu_src", d.get("cpu_seconds", 0))
            rows.setdefault(row, {}).setdefault(d["tool"], []).append(d)
    return rows


def agg(runs):
    """Medians over the repeats; (None, why) unless every repeat completed."""
    ok = [r for r in runs if r.get("result") == "completed"]
    bad = [r for r in runs if r.get("result") != "completed"]
    if not runs:
        return None, "not run"
    if bad:
        why = bad[0].get("result", "?")
        if bad[0].get("error") and bad[0]["error"] != why:
            why += ": " + str(bad[0]["error"])
        return None, "%d of %d: %s" % (len(bad), len(runs), why)

    def vals(k):  # a figure a run could not measure is null, left out
        return [float(r[k]) for r in ok if r.get(k) is not None]

    def med(k):
        return statistics.median(vals(k)) if vals(k) else None
    total = med("total_ms")
    return {"total": total, "down": med("downtime_ms"),
            "down_max": max(vals("downtime_ms")) if vals("downtime_ms") else None,
            "down_own": med("downtime_qemu_ms") if "downtime_qemu_ms" in ok[0] else None,
            "rounds": med("rounds"), "wire": (med("bytes_wire") or 0) / (1 << 20),
            "cpu_src": med("cpu_src"), "cpu_dst": med("cpu_dst"),
            "gbs": ok[0]["ram_bytes"] / (total / 1000) / 1e9 if total else None}, None


def ratio(h, q):
    return "%.2fx" % (h / q) if h is not None and q else "-"


def fmt(fmt, v):
    return "?" if v is None else fmt % v


ROW = "%-28s %-4s %8s %21s %5s %10s %13s %8s  %s"


def header():
    print(ROW % ("row: RAM content load mode ch", "", "total ms", "downtime ms", "rnds",
                 "wire MiB", "CPU s src/dst", "RAM GB/s", "hv/QEMU total, downtime"))
    print(ROW % ("", "", "(median)", "median / max (QEMU's)", "", "", "", "", ""))


def print_row(rows, row):
    stats = {t: agg(r) for t, r in rows.get(row, {}).items()}
    label = row
    for tool in ("hv", "qemu"):
        if tool not in stats:
            continue
        s, why = stats[tool]
        if s is None:
            what = "FAILED"
            if all(r.get("result") == "timeout" for r in rows[row][tool]
                   if r.get("result") != "completed"):
                what = "NO CONVERGENCE in time"
            print("%-28s %-4s %s (%s)" % (label, tool, what, why[:90]))
        else:
            # QEMU 7.2 counts multifd pages uncompressed: its zstd wire figure is no wire figure
            star = "*" if tool == "qemu" and "zstd" in row else " "
            rat = ""
            if tool == "qemu" and stats.get("hv", (None,))[0]:
                h = stats["hv"][0]
                rat = "%s, %s" % (ratio(h["total"], s["total"]), ratio(h["down"], s["down"]))
            print(ROW % (label, tool, fmt("%.0f", s["total"]),
                         "%s / %s%s" % (fmt("%.1f", s["down"]), fmt("%.1f", s["down_max"]),
                                        fmt(" (%.0f)", s["down_own"]) if s["down_own"] is not None
                                        else ""),
                         fmt("%.0f", s["rounds"]), fmt("%.2f", s["wire"]) + star,
                         "%s / %s" % (fmt("%.2f", s["cpu_src"]), fmt("%.2f", s["cpu_dst"])),
                         fmt("%.2f", s["gbs"]), rat))
        label = ""
    sys.stdout.flush()


def goals(path, memcpy_path=None):
    """The goals of issue 5 that the rows run can judge, one line each."""
    rows = load_runs(path)
    hv = {row: agg(t.get("hv", []))[0] for row, t in rows.items()}
    qemu = {row: agg(t.get("qemu", []))[0] for row, t in rows.items()}
    if any("zstd" in row and qemu[row] for row in rows):
        print("* QEMU 7.2's ram.transferred counts each multifd page as 4 KiB, compressed or not")
    for key, goal, what in (("total", 0.5, "total"), ("down", 0.2, "downtime")):
        both = [r for r in rows if hv[r] and qemu[r] and hv[r][key] is not None
                and qemu[r][key] is not None]
        if both:
            print("goal hv %s <= %.1fx QEMU's: met on %d of %d rows where both converged" % (
                what, goal, sum(hv[r][key] <= goal * qemu[r][key] for r in both), len(both)))
    busy = [r for r in rows if r.startswith("1G ") and r.split()[2] == "100" and hv[r]
            and hv[r]["down_max"] is not None]
    if busy:
        print("goal hv downtime <= 10 ms, 1 GiB at 100 MB/s: max %.1f ms over %d rows" % (
            max(hv[r]["down_max"] for r in busy), len(busy)))
    tls = []
    for r in rows:
        f = r.split()
        if len(f) == 5 and f[3].startswith("tls"):
            plain = " ".join(f[:3] + [f[3][4:] or "plain", f[4]])
            if hv[r] and hv.get(plain):
                tls.append(hv[r]["total"] / hv[plain]["total"])
    if tls:
        print("goal TLS costs <= 20%% over plain (hv total time): %s" %
              ", ".join("%+.0f%%" % (100 * (x - 1)) for x in tls))
    if memcpy_path:
        ref = dict(line.split() for line in open(memcpy_path))
        out = []
        for r in rows:
            f = r.split()
            if f[1:4] == ["zero", "idle", "plain"] and hv[r] and hv[r]["gbs"] and f[0] in ref:
                out.append("%s ch%s: %.1fx" % (f[0], f[4], float(ref[f[0]]) / hv[r]["gbs"]))
        if out:
            print("goal plain zero-heavy RAM rate within 2x of memcpy, idle guests "
                  "(memcpy/hv): " + ", ".join(out))


def main():
    argv = sys.argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv.pop(0)
    if cmd == "migrate":
        import argparse
        p = argparse.ArgumentParser(prog="qmp.py migrate")
        p.add_argument("--src", required=True)
        p.add_argument("--dst", required=True)
        p.add_argument("--src-pid", type=int, required=True)
        p.add_argument("--dst-pid", type=int, required=True)
        p.add_argument("--channels", type=int, default=1)
        p.add_argument("--compress", default="none")
        p.add_argument("--zstd-level", type=int, default=1)
        p.add_argument("--tls", action="store_true")
        p.add_argument("--downtime-ms", type=int, default=300)
        p.add_argument("--bandwidth", type=int, default=0)
        p.add_argument("--auto-converge", action="store_true")
        p.add_argument("--single-stream", action="store_true")
        p.add_argument("--timeout", type=float, default=120)
        return qemu_migrate(p.parse_args(argv))
    if cmd == "cpu":
        pid = int(argv[0])
        t = cpu_minus_busiest(pid) if "--minus-busiest" in argv else proc_ticks(pid)
        print("%.3f" % (t / TICK))
        return 0
    if cmd == "memcpy":
        print("%.2f" % memcpy_gbs(int(argv[0])))
        return 0
    if cmd == "loopback":
        print("%.2f" % loopback_gbs(int(argv[0])))
        return 0
    if cmd == "header":
        header()
        return 0
    if cmd == "row":
        print_row(load_runs(argv[0]), argv[1])
        return 0
    if cmd == "goals":
        goals(argv[0], argv[1] if len(argv) > 1 else None)
        return 0
    print("qmp.py: unknown command " + cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
