#!/bin/bash
# linux.sh DEST KERNEL BUSYBOX - the HVM Linux guest for the nested lane (run by run.sh).
#
# Puts into DEST/linux/ (the lane guest's /build/linux/) the lane's own kernel as
# `vmlinuz` (Debian's linux-image-amd64 bzImage) and `initramfs.cpio.gz`: static busybox
# and an /init that prints HVM-LINUX-OK, runs a few commands, prints HVM-LINUX-DONE and
# ends the VM as the kernel command line's `hvm.end=` says:
#   reboot (default)  `reboot -f`: with `reboot=k` the kernel resets through the i8042,
#                     hv exits 0
#   poweroff          `poweroff -f`: without ACPI the kernel cannot power off, init dies,
#                     and with `panic=-1` the panic reboots: hv exits 0 after a panic
#   port:N            writes byte N to the debug-exit port 0xf4 through /dev/port: hv
#                     exits N
# The test is the HVM Linux line of kvm-tests.list.
set -eu
DEST=${1:?usage: linux.sh DEST KERNEL BUSYBOX}
KERNEL=${2:?}
BUSYBOX=${3:?}
OUT=$DEST/linux
ROOT=$OUT/root

rm -rf "$OUT"
mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp}
cp -L "$KERNEL" "$OUT/vmlinuz"
cp -L "$BUSYBOX" "$ROOT/bin/busybox"
ldd "$BUSYBOX" >/dev/null 2>&1 && { echo "linux.sh: $BUSYBOX is not static"; exit 1; }
cat >"$ROOT/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "HVM-LINUX-OK: init is pid $$ on $(uname -s) $(uname -r) $(uname -m)"
grep -E '^(vendor_id|model name|flags)' /proc/cpuinfo | head -3 | cut -c1-100
echo "memory: $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB," \
	"cpus: $(grep -c ^processor /proc/cpuinfo), uptime: $(cut -d' ' -f1 /proc/uptime) s"
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "root: $(ls / | tr '\n' ' ')"
grep -E 'ttyS0|i8042' /proc/interrupts
echo "HVM-LINUX-DONE"
end=$(sed -n 's/.*hvm\.end=\([^ ]*\).*/\1/p' /proc/cmdline)
case $end in
poweroff) poweroff -f ;;
port:*) printf "\\$(printf %03o "${end#port:}")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null ;;
*) reboot -f ;;
esac
sleep 5
echo "HVM-LINUX: ${end:-reboot} returned"
INIT
chmod +x "$ROOT/init"
if command -v cpio >/dev/null 2>&1; then
	CPIO=(cpio --quiet -o -H newc -R 0:0)
else
	CPIO=("$BUSYBOX" cpio -o -H newc)
fi
(cd "$ROOT" && find . | LC_ALL=C sort | "${CPIO[@]}") | gzip -9 >"$OUT/initramfs.cpio.gz"
rm -rf "$ROOT"
