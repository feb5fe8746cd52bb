#!/usr/bin/env bash
# Host-side benchmark: this daemon against QEMU's C vhost-user-gpu daemon.
#
# Usage: ci/bench.sh [vugpu-bench options...]
#
# Builds the release daemon and crates/bench (vugpu-bench), prints the
# machine load, then runs vugpu-bench with the given options (default: 5
# rounds of every workload on both daemons, alternating). The table it
# prints is markdown (crates/bench/README.md shows one). Examples:
#   ci/bench.sh                           the full comparison
#   ci/bench.sh --rounds 9 --scale 2      longer, for a quieter median
#   ci/bench.sh --only attach-scattered   one workload
#   ci/bench.sh --no-qemu                 this daemon only
#
# Environment:
#   VUGPU_QEMU_DAEMON   QEMU's daemon (default: from the qemu-system-gui
#                       package, /usr/lib/qemu/vhost-user-gpu)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PROG=bench
# shellcheck source=ci/lib.sh
. "$SCRIPT_DIR/lib.sh"
cd "$REPO_DIR"

case "${1:-}" in -h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 0
	;;
esac

QEMU_DAEMON=${VUGPU_QEMU_DAEMON:-$(dpkg -L qemu-system-gui 2>/dev/null | grep '/vhost-user-gpu$' | head -n 1 || :)}
QEMU_DAEMON=${QEMU_DAEMON:-/usr/lib/qemu/vhost-user-gpu}
QEMU_ARGS=(--qemu "$QEMU_DAEMON")
if [ ! -x "$QEMU_DAEMON" ]; then
	say "QEMU's vhost-user-gpu ($QEMU_DAEMON) is missing: install qemu-system-gui" \
		"(ci/install-deps.sh); running this daemon only"
	QEMU_ARGS=(--no-qemu)
fi

run cargo build --release -p vhost-user-gpu -p vugpu-bench
say "machine: $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
run target/release/vugpu-bench --ours target/release/vhost-user-gpu "${QEMU_ARGS[@]}" "$@"
