#!/usr/bin/env bash
# Build a one-target qemu-system-x86_64 10.2.2 from Debian's `qemu` source
# package (sid), for the scenarios that need QEMU's generic vhost-user device
# (`vhost-user-test-device-pci`, user-creatable since 10.2; it passes the
# backend's feature bits through, RESOURCE_BLOB included). The system QEMU
# (Debian's 10.0.2 from bookworm-backports) is left alone: this binary is only
# used where a scenario asks for it.
#
# Usage: ci/build-qemu.sh [--skip-deps] [--jobs N] [--dry-run]
#
#   --skip-deps   do not call ci/install-deps.sh qemu-build first
#   --jobs N      ninja -j N (default: number of CPUs)
#   --dry-run     print what would be done, change nothing
#
# The source is fetched with `apt-get source` through a private apt state (its
# own source list, lists and cache under the cache directory): the machine's
# apt configuration is not touched. The deb-src entry is derived at run time
# from the machine's existing Debian entry, so no mirror host name is written
# into the repository.
#
# Everything lives outside the checkout, under ${VUGPU_CACHE:-$HOME/.cache/vugpu}/qemu:
#   apt/                  the private apt state (lists, downloaded source files)
#   src-<version>/        the unpacked source with Debian's patches applied
#   build/                the meson/ninja build directory
#   build.stamp           source version + configure flags of build/
#   qemu-system-x86_64    a copy of the last good build (replaced atomically)
#
# Incremental: the build directory is reconfigured from scratch only when the
# source version or the configure flags change; ninja does the rest. The +ds
# tarball has no firmware blobs: their installation is disabled and the
# firmware path points at Debian's seabios and qemu-system-data directories
# (the runner passes -L for them as well). Logs go to stderr; the last line of
# stdout is the absolute path of the binary.
#
# Environment:
#   VUGPU_QEMU_VERSION  Debian source version (default: 1:10.2.2+ds-1)
#   VUGPU_QEMU_SUITE    suite of the deb-src entry (default: sid)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE="${VUGPU_CACHE:-$HOME/.cache/vugpu}"
QDIR="$CACHE/qemu"
VERSION=${VUGPU_QEMU_VERSION:-1:10.2.2+ds-1}
SUITE=${VUGPU_QEMU_SUITE:-sid}
FIRMWARE_DIRS=/usr/share/qemu:/usr/share/seabios

PROG=build-qemu
say() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
run() { say "\$ $*"; [ "$DRY_RUN" = 1 ] || "$@"; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit "${1:-0}"; }

JOBS=$(nproc 2>/dev/null || echo 2)
DRY_RUN=0
SKIP_DEPS=0
while [ $# -gt 0 ]; do
	case "$1" in
	--skip-deps) SKIP_DEPS=1 ;;
	--jobs) [ $# -ge 2 ] || die "--jobs needs a number"; JOBS=$2; shift ;;
	--jobs=*) JOBS=${1#--jobs=} ;;
	--dry-run) DRY_RUN=1 ;;
	-h | --help) usage 0 ;;
	*) say "unknown argument '$1'"; usage 2 ;;
	esac
	shift
done
case "$JOBS" in '' | *[!0-9]* | 0) die "--jobs wants a positive number, got '$JOBS'" ;; esac

# Upstream version without epoch and Debian revision: 1:10.2.2+ds-1 -> 10.2.2
UPSTREAM=${VERSION#*:}
UPSTREAM=${UPSTREAM%%+*}
UPSTREAM=${UPSTREAM%-*}
SRC="$QDIR/src-$UPSTREAM"
BUILD="$QDIR/build"
STAMP="$QDIR/build.stamp"
OUT="$QDIR/qemu-system-x86_64"

# The smallest configuration the scenarios need: TCG (and KVM for machines
# where it works), vhost-user with the generic test device, memfd guest RAM,
# virtio-blk/-balloon/-serial, QMP and socket chardevs (always built in).
# Debian's python3 explicitly: its meson (from bookworm-backports) is only
# importable there, not from a python3 that PATH may find first (pyenv).
CONFIG_FLAGS=(
	--python=/usr/bin/python3
	--target-list=x86_64-softmmu
	--without-default-features
	--enable-tcg
	--enable-kvm
	--enable-vhost-user
	--enable-vhost-kernel
	--enable-fdt=system
	--disable-install-blobs
	--disable-download
	--disable-docs
	--firmwarepath="$FIRMWARE_DIRS"
	--with-pkgversion="Debian $VERSION, vugpu one-target build"
)
WANT_STAMP="$VERSION ${CONFIG_FLAGS[*]}"

if [ -x "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] &&
	[ -d "$BUILD" ] && [ "$DRY_RUN" = 0 ]; then
	# Same source and flags: let ninja decide whether anything changed
	# (normally nothing; this takes a second).
	say "up to date ($VERSION); checking with ninja"
	ninja -C "$BUILD" -j "$JOBS" qemu-system-x86_64 >&2 || die "ninja failed"
	install -m 0755 "$BUILD/qemu-system-x86_64" "$OUT.tmp" && mv -f "$OUT.tmp" "$OUT"
	echo "$OUT"
	exit 0
fi

if [ "$SKIP_DEPS" = 0 ]; then
	run "$SCRIPT_DIR/install-deps.sh" qemu-build || die "installing the build dependencies failed"
fi

# The deb-src entry for $SUITE, from the machine's own Debian archive URI
# (install-deps.sh's debian_uri, sourced in a subshell).
fetch_source() {
	local uri apt=$QDIR/apt
	# shellcheck source=ci/install-deps.sh
	uri=$(. "$SCRIPT_DIR/install-deps.sh" && debian_uri) ||
		die "no Debian source entry found to derive a deb-src entry from"
	run mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/source"
	[ "$DRY_RUN" = 1 ] || cat >"$apt/src.sources" <<SRC
Types: deb-src
URIs: $uri
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	local opts=(
		-o "Dir::Etc::SourceList=$apt/src.sources"
		-o "Dir::Etc::SourceParts=/nonexistent"
		-o "Dir::State::Lists=$apt/lists"
		-o "Dir::Cache=$apt/cache"
		-o "APT::Sandbox::User=root"
	)
	run apt-get "${opts[@]}" -qq update || die "apt-get update of the private deb-src state failed"
	# dpkg-source unpacks into a fresh directory and applies Debian's patches.
	(cd "$apt/source" && run apt-get "${opts[@]}" -qq --only-source source "qemu=$VERSION") ||
		die "apt-get source qemu=$VERSION failed"
	local dir
	dir=$(find "$apt/source" -mindepth 1 -maxdepth 1 -type d -name "qemu-$UPSTREAM*" | head -n 1)
	[ -n "$dir" ] || [ "$DRY_RUN" = 1 ] || die "apt-get source left no qemu-$UPSTREAM directory"
	run rm -rf "$SRC"
	run mv "$dir" "$SRC"
	run rm -f "$apt/source"/qemu_*
}

if [ ! -f "$SRC/VERSION" ]; then
	say "fetching the qemu $VERSION source package from $SUITE"
	fetch_source
fi
if [ "$DRY_RUN" = 0 ]; then
	got=$(cat "$SRC/VERSION")
	[ "$got" = "$UPSTREAM" ] || die "$SRC/VERSION says $got, expected $UPSTREAM"
fi

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT_STAMP" ] || [ ! -f "$BUILD/build.ninja" ]; then
	run rm -rf "$BUILD" "$STAMP"
	run mkdir -p "$BUILD"
	(cd "$BUILD" && run "$SRC/configure" "${CONFIG_FLAGS[@]}" >&2) || die "configure failed"
fi
start=$(date +%s)
run ninja -C "$BUILD" -j "$JOBS" qemu-system-x86_64 >&2 || die "ninja failed"
say "built in $(($(date +%s) - start)) s"
if [ "$DRY_RUN" = 0 ]; then
	"$BUILD/qemu-system-x86_64" -device help 2>/dev/null | grep -q '"vhost-user-test-device-pci"' ||
		die "the build has no vhost-user-test-device-pci"
	printf '%s\n' "$WANT_STAMP" >"$STAMP"
	install -m 0755 "$BUILD/qemu-system-x86_64" "$OUT.tmp" && mv -f "$OUT.tmp" "$OUT"
fi
echo "$OUT"
