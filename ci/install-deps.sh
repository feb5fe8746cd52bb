#!/usr/bin/env bash
# Install the Debian packages the project needs on a fresh Debian 12 machine.
#
# QEMU 10 comes from bookworm-backports. The backports entry is derived at run
# time from the machine's existing Debian source entry (deb822 or one-line
# format), so no mirror host name is written into the repository.
#
# The guest kernel source (linux-source-7.3, an arch-all package of
# trixie-backports) is fetched with `apt-get download` through a private apt
# state (its own source list, lists and cache under $VUGPU_CACHE), so the
# machine's apt configuration is never changed for it, and unpacked with
# `dpkg -x` into $VUGPU_CACHE/kernel/linux-source-7.3/: it is not installed.
#
# Usage: ci/install-deps.sh [host|kernel|guest|qemu-build|libvirt|all]...   (default: all)
#
# qemu-build: what ci/build-qemu.sh needs (meson >= 1.5 from
# bookworm-backports, ninja, glib, libfdt, Debian's firmware packages).
# libvirt: libvirt 11 for the libvirt scenario; not part of all.
# Sourcing this file defines its functions (debian_uri) without running main.
set -euo pipefail

say() { printf 'install-deps: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

BACKPORTS_LIST=/etc/apt/sources.list.d/vhost-user-gpu-backports.sources

# Print the URI of the first main Debian archive entry (not security).
debian_uri() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		uri=$(awk '
			BEGIN { RS=""; FS="\n" }
			{
				u=""; s=""
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^URIs:/)   { u=$i; sub(/^URIs:[ \t]*/, "", u) }
					if ($i ~ /^Suites:/) { s=$i }
				}
				if (u != "" && s ~ /[ \t]bookworm([ \t]|$)/) { split(u, a, " "); print a[1]; exit }
			}' "$f")
		if [ -n "$uri" ]; then echo "$uri"; return 0; fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] || continue
		uri=$(awk '$1 == "deb" && $0 !~ /security/ {
				for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == "bookworm") { print $i; exit } }
			}' "$f")
		if [ -n "$uri" ]; then echo "$uri"; return 0; fi
	done
	return 1
}

ensure_backports() {
	if apt-cache policy 2>/dev/null | grep -q 'bookworm-backports'; then
		return 0
	fi
	local uri
	uri=$(debian_uri) || die "no Debian bookworm source entry found to derive bookworm-backports from"
	say "adding bookworm-backports from existing entry ($uri)"
	$SUDO tee "$BACKPORTS_LIST" >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	$SUDO apt-get update -qq
}

# Install packages that are not installed yet. Extra apt-get arguments
# (e.g. -t bookworm-backports) come before "--".
install_missing() {
	local opts=() pkgs=() missing=()
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
	[ "${1:-}" = "--" ] && shift
	pkgs=("$@")
	local p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "apt-get install ${opts[*]} ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${opts[@]}" "${missing[@]}" ||
		{ $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${opts[@]}" "${missing[@]}"; }
}

qemu_major() {
	qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'
}

install_host() {
	ensure_backports
	local major
	major=$(qemu_major || true)
	if [ -z "$major" ] || [ "$major" -lt 10 ]; then
		install_missing -t bookworm-backports -- qemu-system-x86 qemu-system-gui qemu-utils
		major=$(qemu_major)
		[ "$major" -ge 10 ] || die "QEMU $major installed, need >= 10"
	fi
	install_missing -- qemu-system-gui ovmf
	install_missing -- curl jq
}

KERNEL_SRC_PKG=linux-source-7.3
KERNEL_SRC_SUITE=trixie-backports

# Fetch and unpack $KERNEL_SRC_PKG (newest version in $KERNEL_SRC_SUITE) into
# $VUGPU_CACHE/kernel/$KERNEL_SRC_PKG unless that version is already there.
# The unpacked tree has usr/src/$KERNEL_SRC_PKG.tar.xz and a VERSION file.
fetch_kernel_source() {
	local cache=${VUGPU_CACHE:-$HOME/.cache/vugpu}
	local dest="$cache/kernel/$KERNEL_SRC_PKG" apt="$cache/apt-$KERNEL_SRC_SUITE"
	local uri opts version deb
	uri=$(debian_uri) || die "no Debian source entry found to derive $KERNEL_SRC_SUITE from"
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
	cat >"$apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $KERNEL_SRC_SUITE main
SRC
	opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
		-o APT::Sandbox::User=root -qq)
	apt-get "${opts[@]}" update || die "apt-get update of the private $KERNEL_SRC_SUITE list failed"
	version=$(apt-cache "${opts[@]}" show "$KERNEL_SRC_PKG" | sed -n 's/^Version: //p' | sort -V | tail -n 1)
	[ -n "$version" ] || die "$KERNEL_SRC_PKG is not in $KERNEL_SRC_SUITE"
	if [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ] && [ -f "$dest/usr/src/$KERNEL_SRC_PKG.tar.xz" ]; then
		return 0
	fi
	say "fetching $KERNEL_SRC_PKG $version from $KERNEL_SRC_SUITE (private apt state in $apt)"
	(cd "$apt" && rm -f ./*.deb && apt-get "${opts[@]}" download "$KERNEL_SRC_PKG=$version") ||
		die "apt-get download $KERNEL_SRC_PKG failed"
	deb=$(ls "$apt"/"${KERNEL_SRC_PKG}"_*.deb)
	rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
	dpkg -x "$deb" "$dest.tmp" || die "dpkg -x $deb failed"
	echo "$version" >"$dest.tmp/VERSION"
	rm -rf "$dest" && mv "$dest.tmp" "$dest"
	rm -f "$deb"
}

install_kernel() {
	install_missing -- build-essential flex bison bc libelf-dev libssl-dev \
		ccache cpio xz-utils kmod python3 perl
	fetch_kernel_source
}

install_guest() {
	install_missing -- busybox-static cpio gzip
}

install_qemu_build() {
	ensure_backports
	install_missing -t bookworm-backports -- meson python3-pycotap
	install_missing -- ninja-build pkg-config libglib2.0-dev libfdt-dev device-tree-compiler \
		flex bison python3-venv python3-distlib dpkg-dev xz-utils seabios qemu-system-data
}

# libvirt for the libvirt scenario (libvirtd, virtlogd, the QEMU driver,
# virsh), 11.x from bookworm-backports: it knows QEMU 10's machine types.
# Each package is pinned to the suite on its own (pkg/suite) rather than
# with -t, which would also pull systemd and friends from backports. Not
# libvirt-daemon-system: no service units, no users; the runner starts
# virtlogd and libvirtd itself with private configuration.
install_libvirt() {
	ensure_backports
	local pkgs=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-log
		libvirt-daemon-common libvirt-common libvirt0 libvirt-clients)
	local missing=() p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p/bookworm-backports")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	install_missing -- "${missing[@]}"
	command -v virsh >/dev/null || die "libvirt installed but virsh is missing"
}

main() {
	# Everything goes to stderr: callers print their own results on stdout.
	exec 1>&2
	local what=("$@")
	[ ${#what[@]} -eq 0 ] && what=(all)
	local w
	for w in "${what[@]}"; do
		case "$w" in
		host) install_host ;;
		kernel) install_kernel ;;
		guest) install_guest ;;
		qemu-build) install_qemu_build ;;
		libvirt) install_libvirt ;;
		all) install_host; install_kernel; install_guest; install_qemu_build ;;
		*) die "unknown group '$w' (host, kernel, guest, qemu-build, libvirt, all)" ;;
		esac
	done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main "$@"
fi
