#!/usr/bin/env bash
# run-all.sh [BUILD] - run every benchmark in bench/ and print their figures.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)

echo "== emu vs QEMU TCG"
bash "$here/emu_vs_qemu.sh" "$build"
echo
echo "== VM start to first instruction, port-I/O exit round trip (emu, KVM where it works)"
"$build/bench/vmstart" --hv "$build/hv" "$build/guest/iobench.elf"
echo
echo "== dirty-log overhead (harvest every 100 ms, then every 20 ms)"
"$build/bench/dirty_overhead" --rounds 3 --interval 100 "$build/guest/memtouch.elf"
"$build/bench/dirty_overhead" --rounds 3 --interval 20 "$build/guest/memtouch.elf"
echo
echo "== save/restore throughput: hv vs cp vs QEMU migration to a file (1 GiB image, 4 GiB zero)"
bash "$here/saverestore.sh" "$build"
echo
echo "== live migration over loopback: hv vs QEMU (matrix: MIG_* variables, bench/README.md)"
bash "$here/migration.sh" "$build"
echo
echo "== checkpoints into the store: hv vs QEMU to a file, zstd -1, restic (CK_* variables, bench/README.md)"
bash "$here/checkpoint.sh" "$build"
