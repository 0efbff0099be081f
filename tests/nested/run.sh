#!/bin/bash
# run.sh BUILD - the nested lane: run the KVM tests inside a QEMU TCG guest.
#
# QEMU's `-cpu max` exposes AMD SVM, so Debian's own kernel (linux-image-amd64) with its
# kvm + kvm-amd modules gives a working /dev/kvm inside the guest. This script builds an
# initramfs (busybox, BUILD/hv, BUILD/guest/*.elf, the programs of kvm-tests.list, their
# shared libraries, the KVM modules, an /init and inside.sh), boots it and reports:
#   exit 0   every test inside passed
#   exit 1   a test failed, or the lane itself broke (kernel/module missing, no /dev/kvm,
#            QEMU timeout, guest panic); the message says which
#   exit 77  SKIP: QEMU cannot run on this host at all
# Missing Debian packages (qemu-system-x86, linux-image-amd64, busybox-static) are
# installed when running as root.
#
# Environment:
#   NESTED_TEST="LINE"       run this one test line instead of kvm-tests.list
#   NESTED_LIST=FILE         use another list file
#   NESTED_KERNEL=VERSION    the kernel under /boot + /lib/modules (default: newest with kvm-amd)
#   NESTED_TIMEOUT=S         hard limit for the whole QEMU run (default 600)
#   NESTED_TEST_TIMEOUT=S    limit for one test inside (default 300)
#   NESTED_VERBOSE=1         show every test's output, not just failures'; kernel messages too
#   NESTED_APPEND="..."      extra kernel command line (e.g. kvm_amd.npt=0)
#   QEMU=...                 the QEMU binary (default qemu-system-x86_64)
# Work files (initramfs root, the image, serial.log) stay in BUILD/tests/nested/lane/.
set -u
set -o pipefail

BUILD=${1:?usage: run.sh BUILD}
BUILD=$(cd "$BUILD" && pwd) || { echo "FAIL: no build directory $1"; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
QEMU=${QEMU:-qemu-system-x86_64}
LIST=${NESTED_LIST:-$HERE/kvm-tests.list}
TIMEOUT=${NESTED_TIMEOUT:-600}
TEST_TIMEOUT=${NESTED_TEST_TIMEOUT:-300}
VERBOSE=${NESTED_VERBOSE:-0}
WORK=$BUILD/tests/nested/lane
ROOT=$WORK/root
MODULES=(kvm kvm-amd ccp irqbypass) # their dependencies come from modules.dep

fail() {
	echo "FAIL: nested lane: $*"
	exit 1
}
note() { echo "nested: $*"; }

# --- packages ----------------------------------------------------------------------------
have_kernel() {
	local d
	for d in /lib/modules/*/; do
		d=${d%/}
		[ -f "/boot/vmlinuz-${d##*/}" ] && grep -q 'kvm-amd\.ko' "$d/modules.dep" 2>/dev/null &&
			return 0
	done
	return 1
}
missing=()
command -v "$QEMU" >/dev/null 2>&1 || missing+=(qemu-system-x86)
have_kernel || missing+=(linux-image-amd64)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	note "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt_install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$WORK.apt.log" 2>&1; }
	mkdir -p "$(dirname "$WORK")"
	if ! apt_install; then
		apt-get update -qq >>"$WORK.apt.log" 2>&1
		apt_install || { tail -20 "$WORK.apt.log"; note "apt-get install ${missing[*]} failed"; }
	fi
fi

# --- QEMU --------------------------------------------------------------------------------
if ! command -v "$QEMU" >/dev/null 2>&1; then
	echo "SKIP: nested lane: $QEMU not installed (apt-get install qemu-system-x86, as root)"
	exit 77
fi
if ! timeout 30 "$QEMU" -version >/dev/null 2>&1; then
	echo "SKIP: nested lane: $QEMU does not run on this host"
	exit 77
fi

# --- kernel ------------------------------------------------------------------------------
if [ -n "${NESTED_KERNEL:-}" ]; then
	KVER=$NESTED_KERNEL
else
	KVER=
	for d in $(ls -1 /lib/modules 2>/dev/null | sort -V); do
		[ -f "/boot/vmlinuz-$d" ] && grep -q 'kvm-amd\.ko' "/lib/modules/$d/modules.dep" 2>/dev/null &&
			KVER=$d
	done
	[ -n "$KVER" ] || fail "kernel not found: no /boot/vmlinuz-VER with /lib/modules/VER/.../kvm-amd.ko" \
		"(install linux-image-amd64 as root: apt-get install linux-image-amd64)"
fi
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER
[ -f "$KERNEL" ] || fail "kernel not found: $KERNEL (NESTED_KERNEL=$KVER?)"
[ -r "$KERNEL" ] || fail "kernel $KERNEL is not readable by $(id -un)"
[ -f "$MODDIR/modules.dep" ] || fail "no $MODDIR/modules.dep for kernel $KVER"

BUSYBOX=$(command -v busybox) || fail "busybox not found (apt-get install busybox-static, as root)"

# --- initramfs ---------------------------------------------------------------------------
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,build,dev,etc,lib/modules/nested,lib64,nested,proc,sys,tmp} ||
	fail "cannot create $ROOT"

# copy_lib PATH: one shared library (or the loader), at its own path, symlinks resolved.
copy_lib() {
	[ -e "$ROOT$1" ] && return 0
	mkdir -p "$ROOT$(dirname "$1")" && cp -L "$1" "$ROOT$1" || fail "cannot copy library $1"
}
# add_prog SRC DEST: an executable at DEST in the initramfs plus everything ldd says it needs.
add_prog() {
	local src=$1 dest=$2 deps lib
	mkdir -p "$ROOT$(dirname "$dest")"
	cp -L "$src" "$ROOT$dest" || fail "cannot copy $src"
	chmod +x "$ROOT$dest"
	deps=$(ldd "$src" 2>/dev/null) || return 0 # static (or not an ELF): nothing more
	if grep -q 'not found' <<<"$deps"; then
		fail "$src needs libraries ldd cannot find:"$'\n'"$(grep 'not found' <<<"$deps")"
	fi
	for lib in $(grep -o '/[^ ]*' <<<"$deps"); do
		copy_lib "$lib"
	done
}

add_prog "$BUSYBOX" /bin/busybox
ln -s busybox "$ROOT/bin/sh"
[ -x "$BUILD/hv" ] && add_prog "$BUILD/hv" /build/hv || note "warning: no $BUILD/hv (tests using hv will fail)"
for f in "$BUILD"/guest/*.elf; do
	[ -f "$f" ] && mkdir -p "$ROOT/build/guest" && cp "$f" "$ROOT/build/guest/"
done
# Extra test inputs: each tests/nested/extra/*.sh runs as `SCRIPT DEST KERNEL BUSYBOX` and
# adds files under DEST, the guest's /build (extra/linux.sh: the HVM Linux kernel + initramfs).
for x in "$HERE"/extra/*.sh; do
	[ -f "$x" ] || continue
	out=$(bash "$x" "$ROOT/build" "$KERNEL" "$BUSYBOX" 2>&1) || fail "extra/${x##*/}: $out"
done

# The test list: comments and blank lines dropped; the first program word of each line is
# copied from BUILD (with its libraries).
if [ -n "${NESTED_TEST:-}" ]; then
	printf '%s\n' "$NESTED_TEST" >"$ROOT/nested/tests.list"
else
	[ -f "$LIST" ] || fail "no test list $LIST"
	sed -e 's/^[[:space:]]*//' -e '/^#/d' -e '/^$/d' "$LIST" >"$ROOT/nested/tests.list"
fi
ntests=0
while IFS= read -r line; do
	ntests=$((ntests + 1))
	read -r -a words <<<"$line"
	for w in "${words[@]}"; do
		case $w in '!' | *=*) continue ;; esac
		if [ -f "$BUILD/$w" ] && [ -x "$BUILD/$w" ]; then
			[ -e "$ROOT/build/$w" ] || add_prog "$BUILD/$w" "/build/$w"
		elif [ "$w" != hv ] && [[ $w == */* ]]; then
			note "warning: test '$line': $BUILD/$w is not built (the test will fail)"
		fi
		break
	done
done <"$ROOT/nested/tests.list"
[ "$ntests" -gt 0 ] || fail "no tests in ${NESTED_TEST:+NESTED_TEST}${NESTED_TEST:-$LIST}"

# Modules: each wanted module after its dependencies (modules.dep), decompressed.
declare -A seen=()
order=()
dep_line() { grep -E "(^|/)($1|${1//-/_}|${1//_/-})\.ko(\.xz|\.zst|\.gz)?:" "$MODDIR/modules.dep" | head -1; }
visit() {
	local name=$1 line path deps i
	[ -n "${seen[$name]:-}" ] && return 0
	seen[$name]=1
	line=$(dep_line "$name")
	if [ -z "$line" ]; then
		if grep -Eq "/($name|${name//-/_}|${name//_/-})\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
			note "module $name is built into $KVER"
			return 0
		fi
		fail "module missing: $name is neither in $MODDIR/modules.dep nor built in"
	fi
	path=${line%%:*}
	read -r -a deps <<<"${line#*:}"
	for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
		local d=${deps[$i]##*/}
		visit "${d%%.ko*}"
	done
	order+=("$path")
}
for m in "${MODULES[@]}"; do visit "$m"; done
: >"$ROOT/nested/modules"
for path in "${order[@]}"; do
	src=$MODDIR/$path
	base=${path##*/}
	base=${base%%.ko*}.ko
	[ -f "$src" ] || fail "module missing: $src (listed in modules.dep)"
	case $src in
	*.ko) cp "$src" "$ROOT/lib/modules/nested/$base" ;;
	*.ko.xz) xz -dc "$src" >"$ROOT/lib/modules/nested/$base" ;;
	*.ko.zst) zstd -qdc "$src" >"$ROOT/lib/modules/nested/$base" ;;
	*.ko.gz) gzip -dc "$src" >"$ROOT/lib/modules/nested/$base" ;;
	*) false ;;
	esac || fail "cannot copy/decompress module $src"
	echo "$base" >>"$ROOT/nested/modules"
done

cp "$HERE/inside.sh" "$ROOT/nested/inside.sh"
cat >"$ROOT/init" <<'EOF'
#!/bin/busybox sh
# The nested lane's init: mount, load the KVM modules, run inside.sh, report the result
# through isa-debug-exit (port 0xf4: QEMU exits with code*2+1) and the serial log.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
if ! mount -t devtmpfs devtmpfs /dev 2>/dev/null; then
	mount -t tmpfs tmpfs /dev
	mknod /dev/console c 5 1; mknod /dev/null c 1 3; mknod /dev/port c 1 4
	mknod /dev/ttyS0 c 4 64; mknod /dev/kvm c 10 232
fi
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1

finish() {
	echo "NESTED-RESULT: $1"
	sync
	printf "\\$(printf %03o "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	echo "nested: isa-debug-exit did not stop QEMU; powering off"
	poweroff -f
	sleep 10
}

echo "nested: guest up: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu," \
	"$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
grep -qw svm /proc/cpuinfo || { echo "nested: FAIL: the guest CPU has no svm flag (-cpu max?)"; finish 2; }
for m in $(cat /nested/modules); do
	if ! out=$(insmod /lib/modules/nested/$m 2>&1); then
		echo "nested: FAIL: insmod $m: $out"
		dmesg | tail -20
		finish 2
	fi
done
echo "nested: loaded $(sed 's/\.ko$//' /nested/modules | tr '\n' ' ')"
for p in npt nested avic; do
	[ -r /sys/module/kvm_amd/parameters/$p ] &&
		echo "nested: kvm_amd.$p=$(cat /sys/module/kvm_amd/parameters/$p)"
done
if [ ! -c /dev/kvm ]; then
	echo "nested: FAIL: no /dev/kvm after loading the modules"
	dmesg | grep -i -E 'kvm|svm' | tail -20
	finish 2
fi
[ -x /build/tests/nested/kvm_smoke ] && /build/tests/nested/kvm_smoke --caps
sh /nested/inside.sh /nested/tests.list
rc=$?
[ "$rc" = 0 ] || rc=1
[ "${NESTED_VERBOSE:-0}" = 1 ] && { echo "nested: kernel log:"; dmesg | tail -50; }
finish $rc
EOF
chmod +x "$ROOT/init"

IMAGE=$WORK/initramfs.cpio.gz
if command -v cpio >/dev/null 2>&1; then
	CPIO=(cpio --quiet -o -H newc -R 0:0)
else
	CPIO=("$BUSYBOX" cpio -o -H newc)
fi
(cd "$ROOT" && find . | LC_ALL=C sort | "${CPIO[@]}") | gzip -1 >"$IMAGE" ||
	fail "cannot build the initramfs $IMAGE"
note "kernel $KERNEL, initramfs $IMAGE ($(($(stat -c %s "$IMAGE") / 1024)) KiB), $ntests test(s)"

# --- boot --------------------------------------------------------------------------------
LOG=$WORK/serial.log
APPEND="console=ttyS0 panic=-1 oops=panic rdinit=/init"
[ "$VERBOSE" = 1 ] || APPEND+=" quiet"
APPEND+=" NESTED_TEST_TIMEOUT=$TEST_TIMEOUT NESTED_VERBOSE=$VERBOSE ${NESTED_APPEND:-}"
note "booting under $QEMU -accel tcg -cpu max (limit ${TIMEOUT}s)"
start=$(date +%s)
timeout -k 10 "$TIMEOUT" "$QEMU" -accel tcg -cpu max -m 2G -smp 1 \
	-kernel "$KERNEL" -initrd "$IMAGE" -append "$APPEND" \
	-nographic -no-reboot -net none \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 </dev/null 2>&1 |
	tr -d '\r' | sed -u -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' >"$LOG"
rc=${PIPESTATUS[0]}
secs=$(($(date +%s) - start))

echo "---- guest serial log ($LOG) ----"
cat "$LOG"
echo "---- end of guest serial log ----"

summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOG" | tail -1)
reported=$(sed -n 's/^NESTED-RESULT: \([0-9]*\)$/\1/p' "$LOG" | tail -1)
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	fail "QEMU timed out after ${TIMEOUT}s (NESTED_TIMEOUT); see the log above"
elif [ $((rc % 2)) = 1 ] && [ "$rc" -ge 1 ] && [ "$rc" -lt 512 ] && [ -n "$reported" ]; then
	code=$(((rc - 1) / 2))
elif [ -n "$reported" ]; then
	code=$reported # debug-exit missing; init powered off instead
elif grep -q 'Kernel panic' "$LOG"; then
	fail "guest kernel panicked after ${secs}s (QEMU exit $rc); see the log above"
else
	fail "QEMU exited $rc after ${secs}s without a result from the guest; see the log above"
fi
case $code in
0)
	[ -n "$summary" ] || fail "guest reported success but printed no summary"
	echo "nested lane: PASS in ${secs}s ($summary)"
	exit 0
	;;
1) fail "tests failed inside the guest (${summary:-no summary}) in ${secs}s" ;;
2) fail "the guest could not set up KVM (see 'nested: FAIL' above)" ;;
*) fail "guest reported code $code (QEMU exit $rc)" ;;
esac
