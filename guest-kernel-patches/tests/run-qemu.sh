#!/usr/bin/env bash
# Boot a guest kernel under QEMU (TCG) with QEMU's built-in virtio-gpu, a swap
# disk and an initramfs running shrink-test, and report its result.
#
# Usage: guest-kernel-patches/tests/run-qemu.sh [--kernel BZIMAGE] [--mem MiB]
#            [--timeout SECS] [--kunit] [-- shrink-test args...]
#
#   --kernel   bzImage to boot (default: build the patched one with
#              ci/build-guest-kernel.sh)
#   --mem      guest RAM in MiB (default 256)
#   --timeout  give up after this many seconds (default 1800); exit 124
#   --kunit    run the drm_gem_shmem KUnit suite at boot instead
#
# Work files and the serial log go to ${VUGPU_CACHE:-$HOME/.cache/vugpu}/shrink-test.
# Exit status: 0 pass, 1 test failure or kernel report (lockdep, KASAN, ...),
# 2 usage or setup error, 124 timeout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK="${VUGPU_CACHE:-$HOME/.cache/vugpu}/shrink-test"

say() { printf 'run-qemu: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

KERNEL=""
MEM=256
TIMEOUT=1800
KUNIT=0
while [ $# -gt 0 ]; do
	case "$1" in
	--kernel) KERNEL=$2; shift ;;
	--mem) MEM=$2; shift ;;
	--timeout) TIMEOUT=$2; shift ;;
	--kunit) KUNIT=1 ;;
	--) shift; break ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 0 ;;
	*) die "unknown argument '$1'" ;;
	esac
	shift
done
TEST_ARGS=$(IFS=,; echo "$*")

for tool in qemu-system-x86_64 gcc cpio gzip; do
	command -v "$tool" >/dev/null || die "'$tool' not found (ci/install-deps.sh)"
done
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -q static ||
	BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "no static busybox (package busybox-static)"

if [ -z "$KERNEL" ]; then
	KERNEL=$("$REPO/ci/build-guest-kernel.sh" | tail -n 1)
fi
[ -f "$KERNEL" ] || die "no kernel at '$KERNEL'"

mkdir -p "$WORK"
ROOT="$WORK/rootfs"
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,dev,proc,sys}
cp "$BUSYBOX" "$ROOT/bin/busybox"
for c in sh mount mkswap swapon dmesg grep sed tr poweroff ls cat; do
	ln -s busybox "$ROOT/bin/$c"
done
gcc -static -O2 -Wall -o "$ROOT/bin/shrink-test" "$HERE/shrink-test.c"

cat >"$ROOT/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
echo "INIT: $(uname -r) $(cat /proc/cmdline)"
if ! grep -q kunit.enable=1 /proc/cmdline; then
	mkswap /dev/vda >/dev/null && swapon /dev/vda && echo "swap on /dev/vda"
	ls /sys/kernel/debug/shrinker | grep drm-virtio-gpu
	/bin/shrink-test $(sed -n 's/.*shrinktest=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
	echo "SHRINK-TEST-EXIT $?"
fi
echo "DMESG-CHECK-BEGIN"
dmesg | grep -E "WARNING:|BUG:|circular locking|sleeping function|KASAN:|inconsistent lock|possible recursive|oom-kill" 
echo "DMESG-CHECK-END"
poweroff -f
EOF
chmod +x "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc 2>/dev/null | gzip) >"$WORK/initramfs.gz"
rm -f "$WORK/swap.img"
truncate -s 1G "$WORK/swap.img"

APPEND="console=ttyS0 panic=-1"
if [ "$KUNIT" = 1 ]; then
	APPEND="$APPEND kunit.enable=1 kunit.filter_glob=drm_gem_shmem"
elif [ -n "$TEST_ARGS" ]; then
	APPEND="$APPEND shrinktest=$TEST_ARGS"
fi
LOG="$WORK/serial.log"
CMD=(qemu-system-x86_64 -accel tcg -m "$MEM" -smp 2 -kernel "$KERNEL"
	-initrd "$WORK/initramfs.gz" -append "$APPEND" -nographic -no-reboot
	-device virtio-gpu-pci,max_hostmem=2G
	-drive "file=$WORK/swap.img,format=raw,if=virtio")
say "\$ ${CMD[*]}"
say "serial log: $LOG"
rc=0
timeout "$TIMEOUT" "${CMD[@]}" </dev/null >"$LOG" 2>&1 || rc=$?
if [ "$rc" = 124 ]; then
	say "TIMEOUT after $TIMEOUT s"
	exit 124
fi
[ "$rc" = 0 ] || { say "QEMU exited with $rc"; exit 1; }

reports=$(sed -n '/DMESG-CHECK-BEGIN/,/DMESG-CHECK-END/p' "$LOG" | grep -v DMESG-CHECK || true)
if [ -n "$reports" ]; then
	say "kernel reports:"
	printf '%s\n' "$reports" >&2
	exit 1
fi
if [ "$KUNIT" = 1 ]; then
	grep -a -E '^\[ *[0-9.]+\] +(not )?ok ' "$LOG" >&2 || true
	grep -a -q '# drm_gem_shmem: pass:[0-9]* fail:0 ' "$LOG" || { say "KUnit FAILED"; exit 1; }
	say "KUnit passed"
	exit 0
fi
grep -a 'shrink-test' "$LOG" >&2 || true
grep -a -q '^SHRINK-TEST-EXIT 0' "$LOG" || { say "shrink-test FAILED"; exit 1; }
say "shrink-test passed"
