#!/usr/bin/env bash
# demo-migrate.sh [BUILD] - `make demo`: live-migrate a running VM over TLS on loopback.
#
# Starts memtouch (256 MiB guest, a 124 MiB working set checked on every pass) under
# `hv run --control`, a receiver `hvmigrate recv` with TLS 1.3 (certificates made for
# the occasion by tests/migrate/mkcerts.sh), migrates with `hvmigrate send` (2 channels,
# zstd), and shows both consoles: the source stops, the destination counts on from the
# same pass. Prints the sender's and the receiver's summaries.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/hv-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

sh "$here/tests/migrate/mkcerts.sh" "$dir" >/dev/null 2>&1
echo "== source: hv run memtouch (256 MiB guest, 124 MiB working set) on the software CPU"
"$build/hv" run --accel emu --memory 256M --control "$dir/src.sock" \
	--cmdline "start=4M end=128M passes=0" "$build/guest/memtouch.elf" >"$dir/src.out" 2>"$dir/src.err" &
pids+=($!)
"$build/hvmigrate" recv --listen tcp:127.0.0.1:0 --control "$dir/dst.sock" \
	--tls-cert "$dir/server.pem" --tls-key "$dir/server.key" --tls-ca "$dir/ca.pem" \
	>"$dir/dst.out" 2>"$dir/dst.err" &
pids+=($!)
for _ in $(seq 100); do grep -q 'listening on' "$dir/dst.err" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^hvmigrate: listening on \([^ ]*\).*/\1/p' "$dir/dst.err")
sleep 2
echo "   source console: $(tail -n 1 "$dir/src.out")"
echo "== hvmigrate send $addr over TLS 1.3, 2 channels, zstd"
"$build/hvmigrate" send "$dir/src.sock" "$addr" --channels 2 \
	--tls-cert "$dir/client.pem" --tls-key "$dir/client.key" --tls-ca "$dir/ca.pem"
sleep 2
echo "== source: $(tail -n 1 "$dir/src.err")"
echo "   last pass on the source:        $(grep '^memtouch pass' "$dir/src.out" | tail -n 1)"
echo "   first pass on the destination:  $(grep '^memtouch pass' "$dir/dst.out" | head -n 1)"
echo "   destination now:                $(grep '^memtouch pass' "$dir/dst.out" | tail -n 1)"
grep -h CORRUPT "$dir/src.out" "$dir/dst.out" && { echo "CORRUPT pages!"; exit 1; }
grep 'received from' "$dir/dst.err"
"$build/hvctl" "$dir/dst.sock" quit >/dev/null
