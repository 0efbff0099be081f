#!/usr/bin/env bash
# deps.sh - install the Debian packages hv needs to build, test and benchmark.
#
#   scripts/deps.sh          install what is missing (needs root)
#   scripts/deps.sh --check  only list what is missing; exit 1 if anything is
set -euo pipefail

PKGS=(
	meson ninja-build gcc pkg-config
	libcmocka-dev libzstd-dev libev-dev libssl-dev liburing-dev libjansson-dev
	clang libclang-rt-14-dev
	qemu-system-x86 linux-image-amd64 busybox-static
	zstd
	restic   # bench/checkpoint.sh: the CAS backup tool the checkpoint store is compared with
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "${1:-}" = "--check" ] || [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
	echo "deps.sh: run as root: scripts/deps.sh" >&2
	exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
