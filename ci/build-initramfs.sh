#!/usr/bin/env bash
# Build the guest initramfs: busybox (Debian busybox-static) + the static
# vugpu-workload + ci/guest/init as /init, packed as a gzip'ed newc cpio.
#
# Usage: ci/build-initramfs.sh [--skip-deps]
#
#   --skip-deps   do not call ci/install-deps.sh guest first
#
# Environment:
#   CARGO_TARGET_DIR   cargo target dir (default: <repo>/target); the image is
#                      written to $CARGO_TARGET_DIR/guest/initramfs.cpio.gz
#   BUSYBOX            busybox binary to pack (default: /bin/busybox)
#
# The workload is built for x86_64-unknown-linux-gnu with +crt-static set via
# CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS (only for this explicit
# --target build; host builds stay dynamic) and must have no PT_INTERP.
# Always rebuilds (cargo is incremental; packing takes about a second).
# Logs go to stderr; the last stdout line is the image's absolute path.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
TRIPLE=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
OUT_DIR="$TARGET_DIR/guest"
OUT="$OUT_DIR/initramfs.cpio.gz"
BUSYBOX=${BUSYBOX:-/bin/busybox}

# Applets /init and a person debugging on the console use.
APPLETS="sh ash awk cat cut date dmesg echo free grep head ls mkdir mkswap mount
poweroff printf reboot rm sed sleep stty swapoff swapon sync tail tr uname wc"

PROG=build-initramfs
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }

SKIP_DEPS=0
while [ $# -gt 0 ]; do
	case "$1" in
	--skip-deps) SKIP_DEPS=1 ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 0 ;;
	*) die "unknown argument '$1'" ;;
	esac
	shift
done

[ "$SKIP_DEPS" = 1 ] || "$SCRIPT_DIR/install-deps.sh" guest >&2

say "building vugpu-workload (release, static, $TRIPLE)"
(
	cd "$REPO_DIR"
	# RUSTFLAGS would take precedence over the per-target flags below.
	if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
		say "ignoring RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS for the static guest build"
	fi
	unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --release -p vugpu-workload --target "$TRIPLE" >&2
) || die "cargo build failed"
WORKLOAD="$TARGET_DIR/$TRIPLE/release/vugpu-workload"
[ -x "$WORKLOAD" ] || die "no binary at $WORKLOAD"
if readelf -l "$WORKLOAD" | grep -q INTERP; then
	die "$WORKLOAD has a PT_INTERP: not static"
fi

[ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX (Debian package busybox-static)"
if readelf -l "$BUSYBOX" | grep -q INTERP; then
	die "$BUSYBOX is dynamically linked; need busybox-static"
fi
[ -f "$SCRIPT_DIR/guest/init" ] || die "missing $SCRIPT_DIR/guest/init"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/vugpu-initramfs.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,run,tmp,etc}
install -m 0755 "$BUSYBOX" "$STAGE/bin/busybox"
for a in $APPLETS; do
	ln -s busybox "$STAGE/bin/$a"
done
install -m 0755 "$WORKLOAD" "$STAGE/bin/vugpu-workload"
strip --strip-debug "$STAGE/bin/vugpu-workload" 2>/dev/null || say "strip failed; packing with debug info"
install -m 0755 "$SCRIPT_DIR/guest/init" "$STAGE/init"
# The kernel opens /dev/console for /init before anything is mounted; make the
# node when we may (root), else /init reopens it after mounting devtmpfs.
if [ "$(id -u)" -eq 0 ]; then
	mknod -m 0600 "$STAGE/dev/console" c 5 1
	mknod -m 0666 "$STAGE/dev/null" c 1 3
fi

mkdir -p "$OUT_DIR"
TMP_OUT="$OUT.tmp.$$"
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
	gzip -9n >"$TMP_OUT" || die "packing failed"
mv -f "$TMP_OUT" "$OUT"
say "wrote $OUT ($(du -h "$OUT" | cut -f1); workload $(du -h "$WORKLOAD" | cut -f1))"
echo "$OUT"
