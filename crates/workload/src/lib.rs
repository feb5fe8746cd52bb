//! `vugpu-workload`: the in-guest workload of the end-to-end tests.
//!
//! It runs inside a guest booted from the project's initramfs (`/init` from
//! `ci/guest/init`), talks to `/dev/dri/card0` through the DRM and virtio-gpu
//! ioctls ([`drm`]) and checks that buffer objects survive memory pressure:
//!
//! 1. **create + fill**: create `N` objects (2D resources, or guest blobs with
//!    `--kind blob`) totalling more than RAM (default 1.5 x `MemTotal`). Each
//!    one is mapped, filled with content derived from (seed, object index,
//!    offset) ([`pattern`]), sent to the device (`TRANSFER_TO_HOST` + `WAIT`
//!    for 2D), unmapped, and every Kth is marked `MADVISE DONTNEED`.
//! 2. **pressure**: optionally allocate and touch `--pressure-mib` of
//!    anonymous memory.
//! 3. **reuse + verify**: `MADVISE WILLNEED` the purgeable objects (purged ones
//!    are counted and skipped), map every retained object, check every byte,
//!    unmap, and send it to the device again (this makes a patched guest
//!    re-attach evicted backing). `--rounds N` repeats this phase, so objects
//!    are evicted again after a re-attach and come back again.
//! 4. **teardown**: close every object and wait for a fenced sync command
//!    queued behind the unrefs, so the kernel log read at the end contains
//!    every error response of the run.
//!
//! `--inject-corruption I` is a negative control: it flips one byte of object
//! `I` right after filling it, and the run must then fail with a mismatch at
//! that offset (checked in a guest: `Content mismatch: 1 bytes in 1 objects`).
//!
//! On an unpatched kernel the objects are pinned, so the run ends in an
//! allocation failure (`ENOMEM` from `RESOURCE_CREATE`, reported) or in the OOM
//! killer (reported by `/init`). `--smoke` only opens the card, queries
//! parameters and runs one 64 KiB object through create/map/fill/transfer/
//! verify (plus DONTNEED/WILLNEED where MADVISE exists).
//!
//! # Output
//!
//! Progress goes to stderr. The result is ONE line on stdout:
//! `VUGPU-RESULT {json}`; exit status 0 when `result` is `pass`, 1 otherwise
//! (the line is printed in both cases), 2 for command-line errors (clap).
//!
//! # Report schema (`VUGPU-RESULT` JSON)
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `tool` | string | `"vugpu-workload"` (`/init` writes `"init"` for its own reports) |
//! | `tool_version` | string | crate version |
//! | `scenario` | string | `--scenario` |
//! | `kind` | string | `"2d"` or `"blob"` |
//! | `smoke` | bool | `--smoke` run |
//! | `kernel` | string | `uname -r` |
//! | `driver` | string/null | DRM driver name and version, e.g. `"virtio_gpu 0.1.0"` |
//! | `params` | object | `virgl_3d`, `resource_blob`, `host_visible`, `context_init`: bool or null (GETPARAM) |
//! | `madvise_supported` | bool | kernel has `DRM_IOCTL_VIRTGPU_MADVISE` (probed with handle 0: `ENOENT` = present, `EINVAL`/`ENOTTY` = absent) |
//! | `madvise_used` | bool | the run marked objects DONTNEED (false with `--no-madvise`) |
//! | `ram_bytes` | u64 | `MemTotal` |
//! | `mem_available_bytes` | u64 | `MemAvailable` at start |
//! | `swap_total_bytes` | u64 | `SwapTotal` |
//! | `seed` | u64 | pattern seed |
//! | `object_bytes` | u64 | bytes per object |
//! | `objects_planned` | u64 | objects the run meant to create |
//! | `objects` | u64 | objects created |
//! | `object_bytes_total` | u64 | bytes of the created objects |
//! | `dontneed_every` | u64 | every Kth object was marked DONTNEED (0 = none) |
//! | `rounds`, `rounds_done` | u64 | reuse + verify passes requested (`--rounds`, default 1) and completed |
//! | `pressure_bytes` | u64 | anonymous bytes allocated and touched |
//! | `phases_ms` | object | `create`, `fill`, `pressure`, `reuse_verify`, `teardown`: wall ms (create and fill are interleaved per object and summed separately) |
//! | `transfers` | u64 | `TRANSFER_TO_HOST` ioctls issued (1 + rounds per retained 2D object) |
//! | `scanouts` | u64 | blob uses: ADDFB2 + SETCRTC (SET_SCANOUT_BLOB + RESOURCE_FLUSH) + DIRTYFB (RESOURCE_FLUSH), 1 + rounds per retained blob |
//! | `device_reads` | [object]/null | with `--device-digests`: per object `object`, `resource_id`, rectangle `x`,`y`,`w`,`h`, `fnv1a64` (FNV-1a 64 of the pattern over the rectangle, rows of `w*4` bytes at `row*stride + x*4`, stride `w*4`) and `reads` (uses that made the device read it) |
//! | `shrinker` | object/null | delta over the run of every counter in `/sys/kernel/debug/dri/0/virtio-gpu-shrinker`; null if the file does not exist |
//! | `vmstat` | object | delta of `pswpin`, `pswpout`, `oom_kill` from `/proc/vmstat` |
//! | `madvise` | object | `dontneed` (marked), `purged` (WILLNEED returned retained=0), `retained` |
//! | `swap_ratio` | object/null | with `--swap-ratio`: `bytes` (each kind), `warmup_bytes` (untimed anonymous pass, 1.2 x RAM), `wait_each` (`--swap-ratio-wait-each`: a WAIT per object in the BO phases instead of one per phase), `anon` and `bo` each `written_pages` (`pswpout` delta of the write phase: allocate + dirty, BOs also transferred), `write_secs`, `read_pages` (`pswpin` delta of the read phase: re-read and check, BOs also transferred again), `read_secs`, `write_psi` and `read_psi` (`/proc/pressure/memory` over the phase: `some_avg10`, `full_avg10` at its end, `some_stall_us`, `full_stall_us` deltas of `total`; null without PSI), `write_steps` and `read_steps` (seconds in `create`, `map`, `cpu` (fill or check), `unmap`, `transfer`, `wait`), `write_shrinker` and `read_shrinker` (deltas of the shrinker debugfs counters over the phase, null without the file); `anon_after`: the anonymous phases again after the objects were closed (same fields); `written_ratio`, `read_ratio`: BO pages/s over the mean of both anonymous passes' pages/s (null if a phase moved nothing); `anon_after_written_ratio`, `anon_after_read_ratio`: second anonymous pass over the first (drift of the machine during the run); `write_stall_ratio`, `read_stall_ratio`: BO over the mean anonymous `full_stall_us` (null without PSI or anonymous stall); `reclaim` (after the read phase): `evictable_bytes` (fdinfo `drm-resident-memory` of the run's objects, all idle and unpinned), `total_bytes`, `pressure_bytes` (MemTotal of anonymous memory touched and held), `pressure_secs`, `pressure_psi`, `resident_under_pressure_bytes`, `reclaimed_under_pressure_pct`, `shrinker_evicted_bytes`, `resident_after_forced_scan_bytes` (after writes to the shrinker's debugfs `scan` with the pressure released), `forced_scans`, `forced_scan_error` |
//! | `verified_bytes` | u64 | bytes compared in the reuse phase (all rounds) |
//! | `mismatched_bytes` | u64 | bytes that differed |
//! | `mismatched_objects` | u64 | objects with at least one differing byte (per round) |
//! | `kernel_log` | object/null | from `/dev/kmsg` during the run: `device_errors` (virtio-gpu `*ERROR* response` lines), `warnings` (`WARNING:`/`BUG:`), `overruns`, `device_error_lines`, `warning_lines` (first 4 each); null if unreadable. Either count > 0 fails the run |
//! | `failures` | [string] | per-object failures (first offsets, found/expected word), at most 16 |
//! | `failures_dropped` | u64 | failures beyond the cap |
//! | `error` | string/null | the error that ended or failed the run, with its cause chain |
//! | `result` | string | `"pass"` or `"fail"` |
//!
//! Throughput: `object_bytes_total / phases_ms.fill` and
//! `verified_bytes / phases_ms.reuse_verify`.
//!
//! When the workload is killed by a signal (OOM killer), `/init` writes the
//! report itself: `{"tool":"init","scenario":..,"kernel":..,"killed_by_signal":
//! N,"exit_status":128+N,"vmstat":{pswpin,pswpout,oom_kill deltas},"shrinker":
//! {..}|null,"error":..,"result":"fail"}`.
//!
//! # Guest boot contract (shared with `crates/vm-runner`)
//!
//! Kernel command line: `vugpu.scenario=<name>` and optionally
//! `vugpu.args=<comma-separated extra workload args>` (commas become spaces,
//! appended after the scenario's defaults; the last value of a repeated option
//! wins). Scenarios known to `/init`:
//!
//! | scenario | workload arguments |
//! |---|---|
//! | `smoke` | `--smoke` |
//! | `evict` | (defaults: 2D, 1.5 x RAM, 4 MiB objects, DONTNEED every 4th) |
//! | `evict-blob` | `--kind blob` |
//! | `baseline` | `--no-madvise` (expected to fail on an unpatched kernel: ENOMEM or OOM kill) |
//! | `custom` | only `vugpu.args` |
//!
//! Optional `vugpu.timeout=<seconds>` arms a guest-side watchdog in `/init`:
//! if the workload has not finished by then, `/init` writes its own report
//! (`"timeout_s"`, `"error":"workload timed out after N s"`) and `VUGPU-STATUS
//! FAIL workload timed out after N s`, and powers off (useful when the device
//! stops answering and the workload blocks in the kernel).
//!
//! `/dev/vda`, if present, becomes swap. Serial: `ttyS0` is the console;
//! `ttyS1` is the result port and receives exactly one `VUGPU-RESULT {json}`
//! line followed by one final `VUGPU-STATUS PASS` or `VUGPU-STATUS FAIL
//! <reason>` line (both also echoed to the console). Then the guest powers off.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod args;
pub mod drm;
pub mod error;
pub mod kmsg;
pub mod pattern;
pub mod progress;
pub mod report;
pub mod run;
pub mod sysinfo;
