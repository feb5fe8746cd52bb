#!/usr/bin/env bash
# Write the guest kernel series from a development tree into this directory.
#
# Usage: guest-kernel-patches/format-series.sh KERNEL_TREE [BASE_REF]
#
# KERNEL_TREE is a git tree of the pristine source (ci/build-guest-kernel.sh
# keeps one in $VUGPU_CACHE/kernel/pristine, tag "base") with one commit per
# patch on top of BASE_REF (default: base). Every commit is re-authored and
# signed off with the identity from $VUGPU_KERNEL_AUTHOR, or else from the
# file AUTHOR next to this script ("Name <email>"; the default there is a
# placeholder: set your own before posting). The commits in KERNEL_TREE are
# rewritten in place. 0000-cover-letter.patch is kept as it is (it is written
# by hand); the other patches and the series file are replaced.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TREE=${1:?usage: format-series.sh KERNEL_TREE [BASE_REF]}
BASE_REF=${2:-base}
IDENT=${VUGPU_KERNEL_AUTHOR:-$(sed -n '/^[^#]/{p;q}' "$HERE/AUTHOR")}
NAME=${IDENT% <*}
EMAIL=${IDENT##*<}
EMAIL=${EMAIL%>}
[ -n "$NAME" ] && [ -n "$EMAIL" ] && [ "$NAME" != "$IDENT" ] ||
	{ echo "format-series: identity must read 'Name <email>', got '$IDENT'" >&2; exit 2; }

export GIT_AUTHOR_NAME="$NAME" GIT_AUTHOR_EMAIL="$EMAIL"
export GIT_COMMITTER_NAME="$NAME" GIT_COMMITTER_EMAIL="$EMAIL"
git -C "$TREE" -c core.hooksPath=/dev/null rebase -q "$BASE_REF" \
	--exec 'git commit -q --amend --no-edit --reset-author --signoff'

find "$HERE" -maxdepth 1 -name '0*.patch' ! -name '0000-cover-letter.patch' -delete
git -C "$TREE" format-patch -q --zero-commit --no-signature \
	-o "$HERE" "$BASE_REF"..HEAD
{
	echo "# Patches applied in order by ci/build-guest-kernel.sh (git am)."
	(cd "$HERE" && ls 0*.patch | grep -v '^0000-')
} >"$HERE/series"
echo "format-series: $(grep -vc '^#' "$HERE/series") patches as $IDENT" >&2
