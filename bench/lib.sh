# shellcheck shell=bash
# lib.sh - helpers shared by the bench scripts (sourced by bash under set -euo pipefail).
#
# The sourcing script keeps every process it starts in the array `pids` (its EXIT trap
# passes them to stop), and its scratch directory in `dir`. Helpers never judge timings
# and never exit: they return non-zero and leave the decision to the script.

# Debian's python3 first: a pyenv shim ahead in PATH costs a second or more per call,
# inside the timed window of a run.
# shellcheck disable=SC2034 # used by the sourcing scripts
python=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}

bytes() { # bytes SIZE: 256M -> 268435456 (binary suffixes, as hv takes them)
	numfmt --from=iec "$1"
}

stop() { # stop PID...: end processes we started (quietly, also when already gone)
	local p q keep
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do
		# SIGTERM first; SIGKILL for one that ignores it (hvmigrate recv still waiting for
		# its connection blocks the signal)
		for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.01; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
		# reaped: forget it, so that cleanup never signals a recycled pid
		keep=()
		for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
		pids=("${keep[@]}")
	done
}

wait_line() { # wait_line FILE ERE SECONDS: until FILE has a line matching ERE
	local end=$((SECONDS + $3))
	until grep -Eq "$2" "$1" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.01
	done
}

jstr() { # jstr TEXT: TEXT made safe inside a JSON string (one line, no quotes)
	# shellcheck disable=SC1003 # a backslash to delete, not an escaped quote
	printf '%s' "$1" | tr -d '"\\' | tr '\n\t' '  '
}

# image_raw IMAGE SIZE OUT: OUT = the zstd-compressed RAM image IMAGE decompressed, cut
# to or zero-extended to SIZE. OUT is sparse, so its zero pages cost nothing in /dev/shm
# and are holes for hv --preload and for QEMU's memory-backend-file alike. Streamed: the
# whole image is never on disk when SIZE is smaller.
image_raw() {
	# (zstd ends by SIGPIPE when head has enough: that is no error)
	{ zstd -q -dc --long=30 "$1" || [ $? = 141 ]; } | head -c "$(bytes "$2")" |
		dd of="$3" bs=1M conv=sparse iflag=fullblock status=none
	truncate -s "$2" "$3"
}
