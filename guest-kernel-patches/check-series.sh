#!/usr/bin/env bash
# Check the series the way a maintainer would before applying it: every patch
# applies in order to the pristine base, is `checkpatch.pl --strict` clean
# (apart from the Fixes: hash, which the tarball's history cannot resolve,
# and the MAINTAINERS reminder for the new file, which the virtio-gpu entry's
# F: drivers/gpu/drm/virtio/ already covers), and everything the series
# touches (drm_gem_shmem, its KUnit test, drivers/gpu/drm/virtio/) builds with
# W=1 without a warning after each patch.
#
# Usage: guest-kernel-patches/check-series.sh [--jobs N]
#
# Uses the pristine tree and configuration of ci/build-guest-kernel.sh (run
# that first) in ${VUGPU_CACHE:-$HOME/.cache/vugpu}/kernel/check. Exit status
# is non-zero if any patch fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KDIR="${VUGPU_CACHE:-$HOME/.cache/vugpu}/kernel"
JOBS=$(nproc)
[ "${1:-}" = --jobs ] && JOBS=$2
WT="$KDIR/check/src" OUT="$KDIR/check/build"
[ -f "$KDIR/patched/config" ] || { echo "check-series: build the patched kernel first" >&2; exit 2; }

export GIT_COMMITTER_NAME="vugpu build" GIT_COMMITTER_EMAIL="build@vugpu.invalid"
g() { git -c advice.detachedHead=false -C "$@"; }
if [ ! -e "$WT/.git" ]; then
	rm -rf "$WT"
	g "$KDIR/pristine" worktree prune
	g "$KDIR/pristine" worktree add -q --detach "$WT" base
fi
g "$WT" am --abort >/dev/null 2>&1 || true
g "$WT" checkout -q -f --detach base
g "$WT" clean -q -f -d
mkdir -p "$OUT"
cp "$KDIR/patched/config" "$OUT/.config"
export CCACHE_DIR="${CCACHE_DIR:-$KDIR/../ccache}" CCACHE_BASEDIR="$KDIR" CCACHE_NOHASHDIR=1
make -s -C "$WT" O="$OUT" ARCH=x86_64 olddefconfig

# Everything the series touches, so header changes are covered too.
OBJS=(drivers/gpu/drm/drm_gem_shmem_helper.o drivers/gpu/drm/tests/drm_gem_shmem_test.o
	drivers/gpu/drm/virtio/)
build() { make -s -C "$WT" O="$OUT" ARCH=x86_64 CC="ccache gcc" W=1 -j"$JOBS" "${OBJS[@]}" 2>&1; }
# Warnings the base already has (7.3.4 has a kernel-doc one in
# drm_gem_shmem_helper.c) are not the series'; compare without line numbers.
strip() { sed -E 's/:[0-9]+(:[0-9]+)?//g' | sort -u; }
BASE_WARNINGS=$(build | strip || true)

bad=0
while read -r patch; do
	case "$patch" in '' | \#*) continue ;; esac
	echo "== $patch"
	if ! g "$WT" am -q "$HERE/$patch"; then
		echo "   does not apply"; exit 1
	fi
	report=$("$WT/scripts/checkpatch.pl" --strict --terse "$HERE/$patch" 2>&1 |
		grep -v "Unknown commit id" | grep -E "ERROR|WARNING|CHECK" |
		grep -v "added, moved or deleted file" || true)
	[ -z "$report" ] || { echo "$report"; bad=1; }
	if ! out=$(build); then
		echo "$out" | tail -20; bad=1; continue
	fi
	new=$(comm -13 <(echo "$BASE_WARNINGS") <(echo "$out" | strip) | sed '/^$/d')
	if [ -n "$new" ]; then echo "$new" | head -20; bad=1; continue; fi
	echo "   ok: checkpatch --strict, W=1 ${OBJS[*]}"
done <"$HERE/series"
exit $bad
