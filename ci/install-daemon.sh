#!/usr/bin/env bash
# Install the vhost-user-gpu daemon where QEMU's vhost-user interop docs and
# libvirt look for backends.
#
# Usage: ci/install-daemon.sh [--prefix DIR] [--binary PATH] [--dry-run]
#
#   --prefix DIR   install under DIR (default /usr/local):
#                    DIR/libexec/vhost-user-gpu-rs                  the daemon
#                    DIR/share/qemu/vhost-user/40-vhost-user-gpu-rs.json
#                  The descriptor's name sorts before QEMU's own
#                  50-qemu-gpu.json, so libvirt tries this backend first.
#   --binary PATH  install this already built binary instead of running
#                  cargo build --release -p vhost-user-gpu
#   --dry-run      print the commands, change nothing
#
# The descriptor is generated from vhost-user-gpu/40-vhost-user-gpu-rs.json
# with "binary" set to the installed path. The installed binary is checked
# with --print-capabilities (libvirt silently skips a backend for which that
# fails). Exit status is non-zero on any failure.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
TEMPLATE="$REPO_DIR/vhost-user-gpu/40-vhost-user-gpu-rs.json"
NAME=vhost-user-gpu-rs
DESCRIPTOR=40-vhost-user-gpu-rs.json

prefix=/usr/local
binary=
dry_run=0

die() { echo "install-daemon: $*" >&2; exit 1; }
run() {
    echo "+ $*" >&2
    if [ "$dry_run" = 0 ]; then "$@"; fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#--binary=}; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

case "$prefix" in
    /*) ;;
    *) prefix="$(pwd)/$prefix" ;;
esac
[ -f "$TEMPLATE" ] || die "descriptor template $TEMPLATE missing"

if [ -z "$binary" ]; then
    run cargo build --release --manifest-path "$REPO_DIR/Cargo.toml" -p vhost-user-gpu
    binary="$REPO_DIR/target/release/vhost-user-gpu"
fi
[ "$dry_run" = 1 ] || [ -x "$binary" ] || die "$binary is not an executable"

libexec="$prefix/libexec"
share="$prefix/share/qemu/vhost-user"
installed="$libexec/$NAME"

run install -d "$libexec" "$share"
run install -m 0755 "$binary" "$installed"

# The template's "binary" line, rewritten to the installed path (JSON-escaped).
escaped=$(printf '%s' "$installed" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
if [ "$dry_run" = 1 ]; then
    echo "+ write $share/$DESCRIPTOR (binary: $installed)" >&2
else
    tmp=$(mktemp "$share/.$DESCRIPTOR.XXXXXX")
    # Escape the sed replacement's own specials (backslash, & and the | delimiter).
    replacement=$(printf '%s' "$escaped" | sed -e 's/[\\&|]/\\&/g')
    sed -e "s|\"binary\": *\"[^\"]*\"|\"binary\": \"$replacement\"|" "$TEMPLATE" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$share/$DESCRIPTOR"
    caps=$("$installed" --print-capabilities) \
        || die "$installed --print-capabilities failed"
    case "$caps" in
        *'"type":"gpu"'*) ;;
        *) die "unexpected capabilities from $installed: $caps" ;;
    esac
fi
echo "$share/$DESCRIPTOR"
