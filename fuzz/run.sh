#!/usr/bin/env bash
# run.sh BUILD SECONDS - run every libFuzzer target in BUILD/fuzz for SECONDS each,
# starting from the seed corpus in fuzz/corpus/<target>/ (plus the guest images for the
# ELF loader). A crash fails the run and leaves the reproducer in BUILD/fuzz/artifacts/.
set -euo pipefail
build=${1:?usage: run.sh BUILD SECONDS}
secs=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)

shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz/run.sh: no fuzz targets in $build/fuzz (configure with CC=clang -Dfuzz=true)" >&2
	exit 1
fi
mkdir -p "$build/fuzz/artifacts"
for t in "${targets[@]}"; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	name=$(basename "$t")
	corpus="$build/fuzz/corpus-$name"
	mkdir -p "$corpus"
	[ -d "$here/corpus/$name" ] && cp -n "$here/corpus/$name"/* "$corpus"/ 2>/dev/null || true
	if [ "$name" = fuzz_pvh ]; then
		cp -n "$build"/guest/*.elf "$corpus"/ 2>/dev/null || true
	fi
	t_secs=$secs
	# The state-stream reader is the most exposed parser (migration, restore, checkpoints):
	# it gets three times as long.
	[ "$name" = fuzz_stream ] && t_secs=$((secs * 3))
	# A target may come with a dictionary of its format's tokens (fuzz/<target>.dict).
	dict=()
	[ -f "$here/$name.dict" ] && dict=(-dict="$here/$name.dict")
	echo "fuzz: $name for ${t_secs}s"
	"$t" -max_total_time="$t_secs" -max_len=65536 -rss_limit_mb=2048 ${dict[@]+"${dict[@]}"} \
		-artifact_prefix="$build/fuzz/artifacts/$name-" -print_final_stats=1 \
		"$corpus" 2>&1 | tail -n 12
done
echo "fuzz: all targets ran clean"
