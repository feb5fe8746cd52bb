#!/usr/bin/env bash
# Run it (README "run it"): install what is needed, build what is missing,
# boot the patched guest with the vhost-user-gpu daemon under memory
# pressure (the evict scenario) and print the summary with the host metrics.
#
# Usage: ci/run.sh [SCENARIO...] [-- VUGPU-VM-OPTION...]
#
#   SCENARIO   a name from "vugpu-vm list" (smoke evict purge baseline
#              qemu-builtin blob blob-noswap reference fault-... libvirt
#              host-memory host-memory-baseline), or all
#              (default: evict)
#   after --   extra options for "vugpu-vm run", e.g. -- --accel tcg --mem-mib 384
#
# Environment:
#   VUGPU_SKIP_DEPS=1  do not call ci/install-deps.sh
#   VUGPU_RUN_DIR      artifact directory (default: target/vugpu-runs/<UTC time>)
# Artifacts (console, daemon log, metrics, guest report, summary.json) go to
# the run directory printed at the end.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PROG=run
# shellcheck source=ci/lib.sh
. "$SCRIPT_DIR/lib.sh"
cd "$REPO_DIR"

SCENARIOS=()
EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 0 ;;
	--) shift; EXTRA=("$@"); break ;;
	*) SCENARIOS+=("$1") ;;
	esac
	shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(evict)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
RUN_DIR=${VUGPU_RUN_DIR:-$REPO_DIR/target/vugpu-runs/$(date -u +%Y%m%d-%H%M%S)}

# Builds get generous deadlines (coreutils timeout); the runner owns the
# deadlines of the guest runs.
T="timeout -k 30"
if [ "${VUGPU_SKIP_DEPS:-0}" != 1 ]; then
	DEPS=(all)
	case " ${SCENARIOS[*]} " in *" libvirt "*) DEPS+=(libvirt) ;; esac
	step "install dependencies" $T 900 ci/install-deps.sh "${DEPS[@]}" || die "installing dependencies failed"
fi
step "cargo build --release" $T 1200 cargo build --release -p vhost-user-gpu -p vugpu-vm-runner ||
	die "cargo build failed"
KERNEL=""
step "guest kernel (patched)" build_artifact KERNEL $T 1500 ci/build-guest-kernel.sh ||
	die "guest kernel build failed"
UNPATCHED_ARGS=()
case " ${SCENARIOS[*]} " in
*" baseline "* | *" all "* | *" host-memory-baseline "*)
	UNPATCHED=""
	step "guest kernel (unpatched)" build_artifact UNPATCHED $T 1500 ci/build-guest-kernel.sh --unpatched ||
		die "unpatched guest kernel build failed"
	UNPATCHED_ARGS=(--unpatched-kernel "$UNPATCHED")
	;;
esac
QEMU_ARGS=()
case " ${SCENARIOS[*]} " in
*" blob"* | *" all "*)
	QEMU_10_2=""
	step "QEMU 10.2.2" build_artifact QEMU_10_2 $T 1800 ci/build-qemu.sh ||
		die "QEMU 10.2.2 build failed (the blob scenarios need it)"
	QEMU_ARGS=(--qemu-10-2 "$QEMU_10_2")
	;;
esac
INITRD=""
step "initramfs" build_artifact INITRD $T 900 ci/build-initramfs.sh --skip-deps || die "initramfs build failed"

rc=0
step "vugpu-vm run ${SCENARIOS[*]}" run "$TARGET_DIR/release/vugpu-vm" run "${SCENARIOS[@]}" \
	--kernel "$KERNEL" "${UNPATCHED_ARGS[@]}" "${QEMU_ARGS[@]}" --initrd "$INITRD" \
	--daemon "$TARGET_DIR/release/vhost-user-gpu" --run-dir "$RUN_DIR" "${EXTRA[@]}" || rc=$?
step_report
exit "$rc"
