#!/usr/bin/env bash
# Build the guest kernel (bzImage) for the virtio-gpu shrinker tests.
#
# Usage: ci/build-guest-kernel.sh [--unpatched] [--debug] [--jobs N] [--dry-run]
#
#   (default)     Debian's linux-source-7.3 + guest-kernel-patches/series,
#                 config fragment guest-kernel-patches/config/guest.config
#   --unpatched   the same kernel and config without the series (baseline)
#   --debug       the patched kernel plus config/debug.config (lockdep, KASAN,
#                 SLUB debug, DEBUG_VM, atomic-sleep checks)
#   --jobs N      make -j N (default: number of CPUs)
#   --dry-run     print what would be done, change nothing
#
# Everything lives outside the checkout, under ${VUGPU_CACHE:-$HOME/.cache/vugpu}:
#   kernel/linux-source-7.3/  the source package, unpacked (ci/install-deps.sh kernel)
#   kernel/pristine/          the unpacked tarball as a git repository (tag "base")
#   kernel/<variant>/src      git worktree of the pristine tree (+ the series)
#   kernel/<variant>/build    the O= build directory
#   kernel/<variant>/bzImage  a copy of the last good build (replaced atomically)
#   ccache/                   the compiler cache
#
# Incremental: the series is re-applied and the config regenerated only when
# their content hash changes; make does the rest. Logs go to stderr; the last
# line of stdout is the absolute path of the bzImage. Exit status is non-zero
# on any failure.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PATCH_DIR="$REPO_DIR/guest-kernel-patches"
CONFIG_DIR="$PATCH_DIR/config"

CACHE="${VUGPU_CACHE:-$HOME/.cache/vugpu}"
KDIR="$CACHE/kernel"
PRISTINE="$KDIR/pristine"
SRC_PKG=linux-source-7.3
SRC_DIR="$KDIR/$SRC_PKG"
TARBALL="${VUGPU_LINUX_TARBALL:-$SRC_DIR/usr/src/$SRC_PKG.tar.xz}"

PROG=build-guest-kernel
if [ -t 2 ]; then
	say() { printf '\033[1m%s %s:\033[0m %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
else
	say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
fi
die() { say "error: $*"; exit 1; }
run() { say "\$ $*"; [ "$DRY_RUN" = 1 ] || "$@"; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit "${1:-0}"; }

VARIANT=patched
JOBS=$(nproc 2>/dev/null || echo 2)
DRY_RUN=0
DEBUG=0
UNPATCHED=0
while [ $# -gt 0 ]; do
	case "$1" in
	--unpatched) UNPATCHED=1 ;;
	--debug) DEBUG=1 ;;
	--jobs) [ $# -ge 2 ] || die "--jobs needs a number"; JOBS=$2; shift ;;
	--jobs=*) JOBS=${1#--jobs=} ;;
	--dry-run) DRY_RUN=1 ;;
	-h | --help) usage 0 ;;
	*) say "unknown argument '$1'"; usage 2 ;;
	esac
	shift
done
case "$JOBS" in '' | *[!0-9]* | 0) die "--jobs wants a positive number, got '$JOBS'" ;; esac
[ "$UNPATCHED" = 1 ] && [ "$DEBUG" = 1 ] && die "--unpatched and --debug cannot be combined"
[ "$UNPATCHED" = 1 ] && VARIANT=unpatched
[ "$DEBUG" = 1 ] && VARIANT=debug

VDIR="$KDIR/$VARIANT"
WT="$VDIR/src"
OUT="$VDIR/build"
FRAGMENTS=("$CONFIG_DIR/guest.config")
[ "$DEBUG" = 1 ] && FRAGMENTS+=("$CONFIG_DIR/debug.config")
PATCHES=()
if [ "$UNPATCHED" = 0 ]; then
	[ -f "$PATCH_DIR/series" ] || die "no $PATCH_DIR/series"
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%%#*}
		line=$(echo "$line" | tr -d '[:space:]')
		[ -n "$line" ] || continue
		[ -f "$PATCH_DIR/$line" ] || die "series lists '$line', which is not in $PATCH_DIR"
		PATCHES+=("$PATCH_DIR/$line")
	done <"$PATCH_DIR/series"
fi

# Git identity for the cache repositories only (git am needs a committer).
export GIT_AUTHOR_NAME="vugpu build" GIT_AUTHOR_EMAIL="build@vugpu.invalid"
export GIT_COMMITTER_NAME="vugpu build" GIT_COMMITTER_EMAIL="build@vugpu.invalid"
g() { git -c advice.detachedHead=false -c core.autocrlf=false -c gc.auto=0 "$@"; }

# --- dependencies --------------------------------------------------------------
if [ "$DRY_RUN" = 0 ]; then
	"$SCRIPT_DIR/install-deps.sh" kernel || die "ci/install-deps.sh kernel failed"
fi
for tool in git make gcc ccache flex bison bc xz tar sha256sum flock; do
	command -v "$tool" >/dev/null || die "'$tool' not found (ci/install-deps.sh kernel installs it)"
done

# --- base version --------------------------------------------------------------
[ -f "$PATCH_DIR/BASE" ] || die "no $PATCH_DIR/BASE (the linux-source version the series is based on)"
BASE_VERSION=$(tr -d '[:space:]' <"$PATCH_DIR/BASE")
INSTALLED_VERSION=$(cat "$SRC_DIR/VERSION" 2>/dev/null || true)
[ -f "$TARBALL" ] || die "$TARBALL missing (ci/install-deps.sh kernel fetches $SRC_PKG)"
[ -n "$INSTALLED_VERSION" ] || INSTALLED_VERSION="unknown-$(stat -c %Y "$TARBALL")"
if [ "$INSTALLED_VERSION" = "$BASE_VERSION" ]; then
	say "base: $SRC_PKG $INSTALLED_VERSION (matches guest-kernel-patches/BASE)"
else
	say "WARNING: installed $SRC_PKG is $INSTALLED_VERSION, but the series is based on $BASE_VERSION"
	say "WARNING: building on $INSTALLED_VERSION; whether the series still applies is reported below"
fi

mkdir -p "$KDIR"
exec 9>"$KDIR/.lock"

# --- pristine tree: unpack once per installed version --------------------------
pristine_version() { cat "$PRISTINE/.vugpu-version" 2>/dev/null || true; }
if [ "$(pristine_version)" != "$INSTALLED_VERSION" ] || ! g -C "$PRISTINE" rev-parse -q --verify base >/dev/null 2>&1; then
	[ "$DRY_RUN" = 1 ] && { say "would unpack $TARBALL into $PRISTINE"; }
	if [ "$DRY_RUN" = 0 ]; then
		flock 9
		if [ "$(pristine_version)" != "$INSTALLED_VERSION" ] || ! g -C "$PRISTINE" rev-parse -q --verify base >/dev/null 2>&1; then
			say "unpacking $TARBALL ($INSTALLED_VERSION) into $PRISTINE (once)"
			rm -rf "$PRISTINE.tmp" "$PRISTINE"
			# Old worktrees point at the removed repository; drop them too.
			for v in patched unpatched debug; do rm -rf "$KDIR/$v/src" "$KDIR/$v/stamp-"*; done
			mkdir -p "$PRISTINE.tmp"
			tar -C "$PRISTINE.tmp" --strip-components=1 -xf "$TARBALL"
			say "recording the pristine tree in git"
			g -C "$PRISTINE.tmp" init -q
			g -C "$PRISTINE.tmp" add -A -f .
			g -C "$PRISTINE.tmp" commit -q -m "$SRC_PKG $INSTALLED_VERSION (pristine)"
			g -C "$PRISTINE.tmp" tag base
			echo "$INSTALLED_VERSION" >"$PRISTINE.tmp/.vugpu-version"
			mv "$PRISTINE.tmp" "$PRISTINE"
		fi
		flock -u 9
	fi
fi

# One build of a variant at a time (others may run concurrently).
exec 8>"$KDIR/.lock-$VARIANT"
if [ "$DRY_RUN" = 0 ] && ! flock -n 8; then
	say "another build of '$VARIANT' is running; waiting for it"
	flock 8
fi

SERIES_HASH=$(
	{
		echo "$INSTALLED_VERSION"
		[ ${#PATCHES[@]} -eq 0 ] || cat "${PATCHES[@]}"
	} | sha256sum | cut -c1-16
)
CONFIG_HASH=$(
	{
		echo "$SERIES_HASH"
		cat "${FRAGMENTS[@]}"
	} | sha256sum | cut -c1-16
)

# --- source worktree with the series applied ------------------------------------
if [ "$DRY_RUN" = 1 ]; then
	say "would prepare $WT with ${#PATCHES[@]} patch(es) (series hash $SERIES_HASH)"
elif [ "$(cat "$VDIR/stamp-series" 2>/dev/null)" != "$SERIES_HASH" ] || [ ! -e "$WT/.git" ]; then
	mkdir -p "$VDIR"
	rm -f "$VDIR/stamp-series" "$VDIR/stamp-config"
	if [ ! -e "$WT/.git" ]; then
		rm -rf "$WT"
		g -C "$PRISTINE" worktree prune
		say "creating worktree $WT"
		g -C "$PRISTINE" worktree add -q --detach "$WT" base
	fi
	g -C "$WT" am --abort >/dev/null 2>&1 || true
	# checkout only rewrites files that differ, so make rebuilds only what the
	# series touches.
	g -C "$WT" checkout -q -f --detach base
	g -C "$WT" clean -q -f -d
	if [ ${#PATCHES[@]} -gt 0 ]; then
		say "applying ${#PATCHES[@]} patch(es) from guest-kernel-patches/series onto $INSTALLED_VERSION"
		if ! g -C "$WT" am -q --whitespace=nowarn "${PATCHES[@]}" >&2; then
			g -C "$WT" am --show-current-patch=diff >/dev/null 2>&1 &&
				say "failing patch: $(g -C "$WT" am --show-current-patch=raw 2>/dev/null | sed -n 's/^Subject: //p' | head -1)"
			g -C "$WT" am --abort >/dev/null 2>&1 || true
			if [ "$INSTALLED_VERSION" != "$BASE_VERSION" ]; then
				die "the series does NOT apply to $SRC_PKG $INSTALLED_VERSION (it is based on $BASE_VERSION); rebase it"
			fi
			die "the series does not apply to its own base $BASE_VERSION"
		fi
		if [ "$INSTALLED_VERSION" != "$BASE_VERSION" ]; then
			say "the series still applies cleanly to $INSTALLED_VERSION (based on $BASE_VERSION)"
		fi
	fi
	echo "$SERIES_HASH" >"$VDIR/stamp-series"
else
	say "series unchanged ($SERIES_HASH); worktree $WT up to date"
fi

# --- configuration ---------------------------------------------------------------
MAKE=(make -C "$WT" O="$OUT" ARCH=x86_64 -j"$JOBS")

# Print "CONFIG_FOO=value" lines requested by the fragments that did not end up
# in the final .config. "# CONFIG_FOO is not set" requests are checked too.
check_config() {
	local cfg=$1 frag line name want have bad=0
	for frag in "${FRAGMENTS[@]}"; do
		while IFS= read -r line; do
			case "$line" in
			CONFIG_*=*)
				name=${line%%=*} want=${line#*=}
				have=$(sed -n "s/^$name=//p" "$cfg" | tail -1)
				if [ "$have" != "$want" ]; then
					say "config: $name=$want requested by $(basename "$frag"), got '${have:-not set}'"
					bad=1
				fi
				;;
			"# CONFIG_"*" is not set")
				name=${line#\# } name=${name%% *}
				if grep -q "^$name=" "$cfg"; then
					say "config: $name must be unset (requested by $(basename "$frag")), got '$(sed -n "s/^$name=//p" "$cfg")'"
					bad=1
				fi
				;;
			esac
		done <"$frag"
	done
	return $bad
}

if [ "$DRY_RUN" = 1 ]; then
	say "would generate .config: tinyconfig + ${FRAGMENTS[*]##*/} (config hash $CONFIG_HASH)"
elif [ "$(cat "$VDIR/stamp-config" 2>/dev/null)" != "$CONFIG_HASH" ] || [ ! -f "$OUT/.config" ]; then
	# Generate in a scratch O= dir and copy only if the result differs, so an
	# unchanged configuration keeps its timestamp and nothing is rebuilt.
	CFG="$VDIR/config-gen"
	rm -rf "$CFG"
	mkdir -p "$CFG" "$OUT"
	say "generating .config: tinyconfig + ${FRAGMENTS[*]##*/}"
	# merge_config.sh reports every redefined value; keep that in a log.
	if ! {
		make -s -C "$WT" O="$CFG" ARCH=x86_64 tinyconfig &&
			(cd "$CFG" && "$WT/scripts/kconfig/merge_config.sh" -m -O "$CFG" "$CFG/.config" "${FRAGMENTS[@]}") &&
			make -s -C "$WT" O="$CFG" ARCH=x86_64 olddefconfig
	} >"$VDIR/config.log" 2>&1; then
		tail -n 30 "$VDIR/config.log" >&2
		die "config generation failed (full log: $VDIR/config.log)"
	fi
	if ! check_config "$CFG/.config"; then
		die "requested config options did not stick (missing dependency?); see the lines above"
	fi
	if cmp -s "$CFG/.config" "$OUT/.config"; then
		say "config unchanged"
	else
		say "config changed; installing new .config"
		cp "$CFG/.config" "$OUT/.config"
	fi
	rm -rf "$CFG"
	echo "$CONFIG_HASH" >"$VDIR/stamp-config"
else
	say "config fragments unchanged ($CONFIG_HASH)"
fi

# --- build ------------------------------------------------------------------------
export CCACHE_DIR="${CCACHE_DIR:-$CACHE/ccache}"
# Paths relative to the kernel dir let the variants share cache entries.
export CCACHE_BASEDIR="$KDIR"
export CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-time_macros,include_file_mtime,include_file_ctime}"
export KBUILD_BUILD_USER=vugpu KBUILD_BUILD_HOST=vugpu
mkdir -p "$CCACHE_DIR"
[ "$DRY_RUN" = 0 ] && ccache -M "${VUGPU_CCACHE_SIZE:-5G}" >/dev/null

start=$(date +%s)
if ! run "${MAKE[@]}" CC="ccache gcc" bzImage >&2; then
	die "kernel build failed ($VARIANT); see the make output above"
fi
[ "$DRY_RUN" = 1 ] && { echo "$VDIR/bzImage"; exit 0; }
check_config "$OUT/.config" || die "the built .config lost requested options"
say "built $VARIANT in $(($(date +%s) - start)) s ($(ccache -s 2>/dev/null | sed -n 's/^ *Hits: *\([0-9]*\) .*/\1/p' | head -1) ccache hits so far)"

# Hand out a stable copy so guests booting it are not hit by the next build.
cp "$OUT/arch/x86/boot/bzImage" "$VDIR/bzImage.tmp"
mv -f "$VDIR/bzImage.tmp" "$VDIR/bzImage"
cp "$OUT/.config" "$VDIR/config"
printf '%s\n' "variant=$VARIANT" "base=$BASE_VERSION" "source=$INSTALLED_VERSION" \
	"series=$SERIES_HASH" "config=$CONFIG_HASH" \
	"head=$(g -C "$WT" log -1 --format='%h %s')" >"$VDIR/build-info"
echo "$VDIR/bzImage"
