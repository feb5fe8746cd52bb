#!/usr/bin/env bash
# The test command (README "test it"; .ci/run calls it on a clean clone).
#
# Usage: ci/test.sh
#
# Steps, each printed with its wall time; a failing step does not stop the
# independent ones, and the exit status is non-zero if any step failed:
#   1. ci/install-deps.sh                      (skip: VUGPU_SKIP_DEPS=1)
#   2. cargo fmt --all --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo test --workspace
#   5. cargo build --release -p vhost-user-gpu -p vugpu-vm-runner
#   6. ci/build-guest-kernel.sh                 (patched)
#   7. ci/build-guest-kernel.sh --unpatched     (baseline)
#   8. ci/build-qemu.sh                         QEMU 10.2.2 for blob, blob-noswap
#                                               (if it fails, those scenarios fail)
#   9. ci/build-initramfs.sh
#  10. guest-kernel-patches/tests/run-qemu.sh   in-guest shrinker subtests
#                                               (IGT style) on the patched kernel
#  11. vugpu-vm run <scenarios>                 boots the guests
#
# Environment:
#   VUGPU_SCENARIOS   scenarios for step 11 (default: "smoke evict purge
#                     baseline qemu-builtin blob blob-noswap", plus "reference"
#                     when QEMU's own vhost-user-gpu daemon is installed
#                     (qemu-system-gui)); the fault-* scenarios are opt-in
#   VUGPU_ACCEL       auto|tcg|kvm for vugpu-vm (default: auto)
#   VUGPU_TIMEOUT     per-scenario guest deadline in seconds (default: 240)
#   VUGPU_RUN_DIR     artifact directory (default: target/vugpu-runs/ci-<UTC time>)
#   VUGPU_KERNEL_JOBS make -j for the kernel builds (default: nproc)
#   VUGPU_KERNEL_SUBTESTS  ':'-separated subtests for step 10 (see
#                     guest-kernel-patches/tests/shrink-test.c)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PROG=test
# shellcheck source=ci/lib.sh
. "$SCRIPT_DIR/lib.sh"
cd "$REPO_DIR"

[ $# -eq 0 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

# QEMU's C vhost-user-gpu daemon, the reference backend for the kernel series.
REFERENCE=$(dpkg -L qemu-system-gui 2>/dev/null | grep '/vhost-user-gpu$' | head -n 1 || :)
DEFAULT_SCENARIOS="smoke evict purge baseline qemu-builtin blob blob-noswap"
[ -x "$REFERENCE" ] && DEFAULT_SCENARIOS="$DEFAULT_SCENARIOS reference"
SCENARIOS=${VUGPU_SCENARIOS:-$DEFAULT_SCENARIOS}
ACCEL=${VUGPU_ACCEL:-auto}
TIMEOUT=${VUGPU_TIMEOUT:-240}
RUN_DIR=${VUGPU_RUN_DIR:-$REPO_DIR/target/vugpu-runs/ci-$(date -u +%Y%m%d-%H%M%S)}
JOBS=${VUGPU_KERNEL_JOBS:-$(nproc)}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
START=$(date +%s)

# Every step has a deadline (coreutils timeout, SIGTERM then SIGKILL 30 s
# later, to the step's whole process group): a hung test or build fails its
# step instead of hanging CI. Budgets are for a cold 2-core machine.
T="timeout -k 30"

if [ "${VUGPU_SKIP_DEPS:-0}" != 1 ]; then
	step "install dependencies" $T 900 ci/install-deps.sh || :
fi

step "cargo fmt --check" $T 300 cargo fmt --all -- --check || :
step "cargo clippy -D warnings" $T 900 cargo clippy --workspace --all-targets -- -D warnings || :
step "cargo test --workspace" $T 600 cargo test --workspace || :

BUILD_OK=1
step "cargo build --release" $T 1200 cargo build --release -p vhost-user-gpu -p vugpu-vm-runner ||
	BUILD_OK=0

KERNEL="" UNPATCHED=""
step "guest kernel (patched)" build_artifact KERNEL \
	$T 1500 ci/build-guest-kernel.sh --jobs "$JOBS" || BUILD_OK=0
step "guest kernel (unpatched)" build_artifact UNPATCHED \
	$T 1500 ci/build-guest-kernel.sh --unpatched --jobs "$JOBS" || BUILD_OK=0
# Only the blob scenarios need it: a failed build does not stop the others,
# and without --qemu-10-2 the runner fails the blob scenarios.
QEMU_10_2=""
step "QEMU 10.2.2 (ci/build-qemu.sh)" build_artifact QEMU_10_2 \
	$T 1800 ci/build-qemu.sh --jobs "$JOBS" || :
INITRD=""
step "initramfs" build_artifact INITRD $T 900 ci/build-initramfs.sh --skip-deps || BUILD_OK=0

# Subtests of the kernel series, with QEMU's built-in virtio-gpu.
KERNEL_SUBTESTS=${VUGPU_KERNEL_SUBTESTS:-mmap-scan-fault:export-resident:purge-sigbus:forked-race:basic}
if [ -n "$KERNEL" ]; then
	step "kernel subtests ($KERNEL_SUBTESTS)" $T 900 guest-kernel-patches/tests/run-qemu.sh \
		--kernel "$KERNEL" --timeout 840 -- -t "$KERNEL_SUBTESTS" || :
else
	step_skip "kernel subtests" "the patched kernel did not build"
fi

if [ "$BUILD_OK" = 1 ]; then
	# The runner owns the per-scenario deadlines; this outer one only
	# catches a runner bug.
	set -f
	# shellcheck disable=SC2206 # the scenario list is split on purpose
	LIST=($SCENARIOS)
	set +f
	OUTER=$((${#LIST[@]} * (TIMEOUT + 120) + 120))
	REF_ARGS=()
	[ -x "$REFERENCE" ] && REF_ARGS=(--reference-daemon "$REFERENCE")
	[ -n "$QEMU_10_2" ] && REF_ARGS+=(--qemu-10-2 "$QEMU_10_2")
	step "guest scenarios ($SCENARIOS)" run $T "$OUTER" "$TARGET_DIR/release/vugpu-vm" run "${LIST[@]}" \
		--kernel "$KERNEL" --unpatched-kernel "$UNPATCHED" --initrd "$INITRD" \
		--daemon "$TARGET_DIR/release/vhost-user-gpu" "${REF_ARGS[@]}" --accel "$ACCEL" \
		--timeout-secs "$TIMEOUT" --run-dir "$RUN_DIR" || :
else
	step_skip "guest scenarios ($SCENARIOS)" "a build step failed"
fi

step_report
say "wall time $(($(date +%s) - START)) s; artifacts in $RUN_DIR"
if [ "$STEP_FAILED" -ne 0 ]; then
	say "FAILED"
	exit 1
fi
say "PASSED"
