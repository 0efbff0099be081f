#!/bin/sh
# inside.sh LIST - run the nested lane's tests (busybox sh, inside the QEMU guest).
#
# LIST holds one test a line (kvm-tests.list without comments). Each runs as
# `sh -o pipefail -c LINE` in /build (the build directory's copy, also first in PATH) with
# a timeout of NESTED_TEST_TIMEOUT seconds. Prints "ok - LINE" or "not ok - LINE" followed
# by the output (the output of every test with NESTED_VERBOSE=1), then "N passed, M failed".
# Exit status: 0 when every test passed.
LIST=${1:-/nested/tests.list}
TIMEOUT=${NESTED_TEST_TIMEOUT:-300}
VERBOSE=${NESTED_VERBOSE:-0}
OUT=/tmp/nested-test.out
cd /build || exit 1
export PATH=/build:$PATH

pass=0
failed=0
while IFS= read -r line <&3; do
	case $line in '' | '#'*) continue ;; esac
	t0=$(date +%s)
	timeout "$TIMEOUT" sh -o pipefail -c "$line" </dev/null >"$OUT" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	if [ "$rc" = 0 ]; then
		pass=$((pass + 1))
		echo "ok - $line (${secs}s)"
		[ "$VERBOSE" = 1 ] && sed 's/^/    | /' "$OUT"
	else
		failed=$((failed + 1))
		why="exit status $rc"
		[ "$rc" = 143 ] || [ "$rc" = 124 ] && [ "$secs" -ge "$TIMEOUT" ] && why="timed out after ${TIMEOUT}s"
		echo "not ok - $line ($why, ${secs}s)"
		sed 's/^/    | /' "$OUT"
	fi
done 3<"$LIST"
echo "$pass passed, $failed failed"
[ "$failed" = 0 ] && [ "$pass" -gt 0 ]
