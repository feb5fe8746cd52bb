//! The machine-readable run report (schema documented in the crate docs).

use serde::Serialize;

use crate::sysinfo::{Counters, Psi};

/// Prefix of the report line on stdout.
pub const RESULT_PREFIX: &str = "VUGPU-RESULT ";
/// Maximum number of entries in [`Report::failures`].
pub const MAX_FAILURES: usize = 16;

/// Milliseconds spent per phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PhasesMs {
    /// Sum of the RESOURCE_CREATE(_BLOB) ioctls.
    pub create: u64,
    /// Sum of map + fill + transfer + wait + unmap (+ MADVISE DONTNEED).
    pub fill: u64,
    /// Anonymous pressure allocation and touch.
    pub pressure: u64,
    /// MADVISE WILLNEED + map + verify + unmap + transfer + wait of every object.
    pub reuse_verify: u64,
    /// GEM_CLOSE of every object plus one fenced sync command.
    pub teardown: u64,
}

/// Memory stall over one measured phase, from `/proc/pressure/memory`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PsiPhase {
    /// `some avg10` at the end of the phase, percent.
    pub some_avg10: f64,
    /// `full avg10` at the end of the phase, percent.
    pub full_avg10: f64,
    /// `some total` delta over the phase: microseconds in which at least
    /// one task was stalled on memory.
    pub some_stall_us: u64,
    /// `full total` delta over the phase: microseconds in which every
    /// non-idle task was stalled on memory. The workload is the only busy
    /// task in the guest, so this is the allocating process's stall.
    pub full_stall_us: u64,
}

impl PsiPhase {
    /// The stall between two readings (a counter that went backwards
    /// counts as 0) with the averages of the later one.
    pub fn between(start: &Psi, end: &Psi) -> Self {
        Self {
            some_avg10: end.some_avg10,
            full_avg10: end.full_avg10,
            some_stall_us: end.some_total_us.saturating_sub(start.some_total_us),
            full_stall_us: end.full_total_us.saturating_sub(start.full_total_us),
        }
    }
}

/// Where the wall time of a measured phase went, in seconds, as far as
/// the workload can time it (the rest is loop overhead).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Steps {
    /// RESOURCE_CREATE ioctls (BO write phase only).
    pub create: f64,
    /// VIRTGPU_MAP + mmap of each object.
    pub map: f64,
    /// Writing (fill) or checking (verify) the pattern: the page faults
    /// that allocate, swap in and make reclaim run happen here.
    pub cpu: f64,
    /// munmap of each object.
    pub unmap: f64,
    /// TRANSFER_TO_HOST ioctls, which attach (or re-attach) the backing.
    pub transfer: f64,
    /// VIRTGPU_WAIT for the transfers' fences.
    pub wait: f64,
}

/// Swap traffic of one kind of memory (`--swap-ratio`): pages that really
/// moved (`/proc/vmstat` deltas) over the phase's wall time.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SwapPhases {
    /// `pswpout` delta of the write phase (allocate + dirty).
    pub written_pages: u64,
    /// Wall time of that phase, in seconds.
    pub write_secs: f64,
    /// `pswpin` delta of the read phase (read back; BOs also go back to
    /// the device).
    pub read_pages: u64,
    /// Wall time of that phase, in seconds.
    pub read_secs: f64,
    /// Memory stall over the write phase, `null` without PSI.
    pub write_psi: Option<PsiPhase>,
    /// Memory stall over the read phase, `null` without PSI.
    pub read_psi: Option<PsiPhase>,
    /// Where the write phase's time went.
    pub write_steps: Steps,
    /// Where the read phase's time went.
    pub read_steps: Steps,
    /// Deltas of the shrinker's debugfs counters over the write phase
    /// (`evicted_objects`, `reclaim_skipped`, ...), `null` without the file.
    pub write_shrinker: Option<Counters>,
    /// The same over the read phase.
    pub read_shrinker: Option<Counters>,
}

impl SwapPhases {
    /// Pages written to swap per second.
    pub fn write_rate(&self) -> Option<f64> {
        rate(self.written_pages, self.write_secs)
    }

    /// Pages read from swap per second.
    pub fn read_rate(&self) -> Option<f64> {
        rate(self.read_pages, self.read_secs)
    }
}

fn rate(pages: u64, secs: f64) -> Option<f64> {
    (pages > 0 && secs > 0.0).then(|| pages as f64 / secs)
}

/// The mean of the values that are present, `None` if one is missing:
/// `first` always counts, `second` only when given.
fn mean(first: Option<f64>, second: Option<Option<f64>>) -> Option<f64> {
    match second {
        None => first,
        Some(second) => Some((first? + second?) / 2.0),
    }
}

/// `b / a`, `None` when either is missing or `a` is not positive.
fn ratio(b: Option<f64>, a: Option<f64>) -> Option<f64> {
    let (b, a) = (b?, a?);
    (a > 0.0).then(|| b / a)
}

/// PSI `full` stall microseconds of a phase, `None` without PSI.
fn full_stall(psi: Option<&PsiPhase>) -> Option<f64> {
    psi.map(|p| p.full_stall_us as f64)
}

/// How much of the objects' evictable memory memory pressure really
/// reclaimed (`--swap-ratio`, after the read phase).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReclaimCheck {
    /// The last objects transferred again (swapped in and attached) before
    /// the check, up to 40% of RAM: the read phase leaves most evicted.
    pub brought_back_objects: u64,
    /// Resident bytes of the run's objects before the pressure (fdinfo
    /// `drm-resident-memory` of the workload's DRM file). All of them are
    /// evictable: 2D objects, idle, never pinned, exported or scanned out.
    pub evictable_bytes: u64,
    /// Bytes of the objects (fdinfo `drm-total-memory`).
    pub total_bytes: u64,
    /// Anonymous memory touched and held as pressure (MemTotal).
    pub pressure_bytes: u64,
    /// Time to touch it, seconds.
    pub pressure_secs: f64,
    /// Memory stall while touching it, `null` without PSI.
    pub pressure_psi: Option<PsiPhase>,
    /// Resident object bytes with the pressure still held.
    pub resident_under_pressure_bytes: u64,
    /// `evictable - resident under pressure` as a percentage of
    /// `evictable` (`null` when nothing was evictable).
    pub reclaimed_under_pressure_pct: Option<f64>,
    /// Shrinker `evicted_bytes` delta over the pressure.
    pub shrinker_evicted_bytes: u64,
    /// Resident object bytes after forced scans of the shrinker's debugfs
    /// `scan` file once the pressure was released (`null` if not done).
    pub resident_after_forced_scan_bytes: Option<u64>,
    /// Forced scans written.
    pub forced_scans: u32,
    /// Why the forced scan was not done or failed, if so.
    pub forced_scan_error: Option<String>,
}

/// BO against anonymous swap throughput in one boot (`--swap-ratio`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SwapRatio {
    /// Bytes of each kind (the objects' total size).
    pub bytes: u64,
    /// Anonymous bytes of the untimed warm-up pass.
    pub warmup_bytes: u64,
    /// Whether the BO phases waited for every object's transfer
    /// (`--swap-ratio-wait-each`) instead of once at the phase end.
    pub wait_each: bool,
    /// Anonymous memory, before the objects.
    pub anon: SwapPhases,
    /// Anonymous memory again, after the objects were closed: with
    /// [`Self::anon`] around the BO phases, a change of the machine's speed
    /// during the run shows and averages out.
    pub anon_after: Option<SwapPhases>,
    /// Buffer objects.
    pub bo: SwapPhases,
    /// BO pages/s written over the mean of the anonymous passes' pages/s
    /// written (`null` when a phase moved nothing).
    pub written_ratio: Option<f64>,
    /// The same for pages read.
    pub read_ratio: Option<f64>,
    /// Second anonymous pass's pages/s written over the first's: how much
    /// the machine drifted during the run (1.0 = not at all).
    pub anon_after_written_ratio: Option<f64>,
    /// The same for pages read.
    pub anon_after_read_ratio: Option<f64>,
    /// BO write-phase stall over the mean anonymous write-phase stall (PSI
    /// `full` microseconds); target <= 1.
    pub write_stall_ratio: Option<f64>,
    /// The same for the read phases.
    pub read_stall_ratio: Option<f64>,
    /// Reclaimable share of the evictable object bytes.
    pub reclaim: Option<ReclaimCheck>,
}

impl SwapRatio {
    /// Builds the report object and its ratios (against `anon` alone).
    pub fn new(bytes: u64, warmup_bytes: u64, anon: SwapPhases, bo: SwapPhases) -> Self {
        let mut r = Self {
            bytes,
            warmup_bytes,
            anon,
            bo,
            ..Default::default()
        };
        r.compute();
        r
    }

    /// Adds the second anonymous pass and computes the ratios again,
    /// against the mean of both passes.
    pub fn set_anon_after(&mut self, after: SwapPhases) {
        self.anon_after = Some(after);
        self.compute();
    }

    fn compute(&mut self) {
        let (a, b, after) = (&self.anon, &self.bo, self.anon_after.as_ref());
        let anon_write = mean(a.write_rate(), after.map(SwapPhases::write_rate));
        let anon_read = mean(a.read_rate(), after.map(SwapPhases::read_rate));
        self.written_ratio = ratio(b.write_rate(), anon_write);
        self.read_ratio = ratio(b.read_rate(), anon_read);
        self.anon_after_written_ratio = after.and_then(|x| ratio(x.write_rate(), a.write_rate()));
        self.anon_after_read_ratio = after.and_then(|x| ratio(x.read_rate(), a.read_rate()));
        let stall = |f: fn(&SwapPhases) -> Option<&PsiPhase>| {
            let anon = mean(full_stall(f(a)), after.map(|x| full_stall(f(x))));
            ratio(full_stall(f(b)), anon)
        };
        self.write_stall_ratio = stall(|p| p.write_psi.as_ref());
        self.read_stall_ratio = stall(|p| p.read_psi.as_ref());
    }
}

/// MADVISE outcome counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MadviseStats {
    /// Objects marked DONTNEED.
    pub dontneed: u64,
    /// DONTNEED objects found purged (`retained == 0`) at WILLNEED.
    pub purged: u64,
    /// DONTNEED objects still retained at WILLNEED.
    pub retained: u64,
}

/// Device parameters from `DRM_IOCTL_VIRTGPU_GETPARAM` (`null` if the query failed).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeviceParams {
    /// `VIRTGPU_PARAM_3D_FEATURES`.
    pub virgl_3d: Option<bool>,
    /// `VIRTGPU_PARAM_RESOURCE_BLOB`.
    pub resource_blob: Option<bool>,
    /// `VIRTGPU_PARAM_HOST_VISIBLE`.
    pub host_visible: Option<bool>,
    /// `VIRTGPU_PARAM_CONTEXT_INIT`.
    pub context_init: Option<bool>,
}

/// Kernel log findings during the run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KernelLogReport {
    /// virtio-gpu error responses (`*ERROR* response 0x...`).
    pub device_errors: u64,
    /// `WARNING:` / `BUG:` reports.
    pub warnings: u64,
    /// Records lost to ring-buffer wrap.
    pub overruns: u64,
    /// First device error lines.
    pub device_error_lines: Vec<String>,
    /// First warning lines.
    pub warning_lines: Vec<String>,
}

/// One object the device was made to read, for the host-side content
/// check (`--device-digests`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeviceRead {
    /// Object index.
    pub object: u64,
    /// Host resource id (`VIRTGPU_RESOURCE_INFO`).
    pub resource_id: u32,
    /// Rectangle origin x, in pixels.
    pub x: u32,
    /// Rectangle origin y, in pixels.
    pub y: u32,
    /// Rectangle width, in pixels.
    pub w: u32,
    /// Rectangle height, in pixels.
    pub h: u32,
    /// FNV-1a 64 of the written pattern over the rectangle, 16 lowercase
    /// hex digits.
    pub fnv1a64: String,
    /// Uses that made the device read the rectangle (fill, then one per
    /// reuse round, after swap-in).
    pub reads: u64,
}

/// One run's report, printed as a single JSON line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Always `vugpu-workload`.
    pub tool: &'static str,
    /// Tool version.
    pub tool_version: &'static str,
    /// Scenario name from `--scenario`.
    pub scenario: String,
    /// `2d` or `blob`.
    pub kind: &'static str,
    /// `--smoke` run.
    pub smoke: bool,
    /// `uname -r`.
    pub kernel: String,
    /// DRM driver name and version (`virtio_gpu 0.1.0`), if the card opened.
    pub driver: Option<String>,
    /// Device parameters.
    pub params: DeviceParams,
    /// Whether the kernel has `DRM_IOCTL_VIRTGPU_MADVISE` (probed).
    pub madvise_supported: bool,
    /// Whether this run called MADVISE on objects.
    pub madvise_used: bool,
    /// `MemTotal` in bytes.
    pub ram_bytes: u64,
    /// `MemAvailable` at start, in bytes.
    pub mem_available_bytes: u64,
    /// `SwapTotal` in bytes.
    pub swap_total_bytes: u64,
    /// Pattern seed.
    pub seed: u64,
    /// Bytes per object.
    pub object_bytes: u64,
    /// Objects the run intended to create.
    pub objects_planned: u64,
    /// Objects actually created.
    pub objects: u64,
    /// Bytes of all created objects.
    pub object_bytes_total: u64,
    /// `--dontneed-every`.
    pub dontneed_every: u64,
    /// `--rounds`: reuse + verify passes requested.
    pub rounds: u64,
    /// Reuse + verify passes completed.
    pub rounds_done: u64,
    /// Anonymous pressure bytes allocated and touched.
    pub pressure_bytes: u64,
    /// Per-phase wall time.
    pub phases_ms: PhasesMs,
    /// TRANSFER_TO_HOST ioctls issued.
    pub transfers: u64,
    /// Blob scanouts (ADDFB2 + SETCRTC + DIRTYFB) issued.
    pub scanouts: u64,
    /// Per object, what the device must have read (`--device-digests`).
    pub device_reads: Option<Vec<DeviceRead>>,
    /// Delta of every counter in the shrinker debugfs file, `null` if absent.
    pub shrinker: Option<Counters>,
    /// Delta of `pswpin`, `pswpout`, `oom_kill` from `/proc/vmstat`.
    pub vmstat: Counters,
    /// MADVISE outcome.
    pub madvise: MadviseStats,
    /// `--swap-ratio` figures, `null` otherwise.
    pub swap_ratio: Option<SwapRatio>,
    /// Bytes verified in the reuse phase.
    pub verified_bytes: u64,
    /// Bytes that differed from the expected content.
    pub mismatched_bytes: u64,
    /// Objects with at least one differing byte (counted once per round).
    pub mismatched_objects: u64,
    /// Kernel log findings, `null` if `/dev/kmsg` could not be read.
    pub kernel_log: Option<KernelLogReport>,
    /// Human-readable failures (at most [`MAX_FAILURES`]).
    pub failures: Vec<String>,
    /// Failures not listed because of the cap.
    pub failures_dropped: u64,
    /// The error that ended or failed the run, with its cause chain.
    pub error: Option<String>,
    /// `pass` or `fail`.
    pub result: &'static str,
}

impl Report {
    /// Records a failure, respecting the cap.
    pub fn add_failure(&mut self, msg: String) {
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(msg);
        } else {
            self.failures_dropped += 1;
        }
    }

    /// The `VUGPU-RESULT {json}` line (single line; JSON never contains a raw
    /// newline).
    pub fn to_line(&self) -> String {
        match serde_json::to_string(self) {
            Ok(json) => format!("{RESULT_PREFIX}{json}"),
            // Serializing plain structs and maps of strings cannot fail; keep
            // the contract (one parseable line) even so.
            Err(e) => format!(
                "{RESULT_PREFIX}{{\"tool\":\"vugpu-workload\",\"result\":\"fail\",\"error\":{:?}}}",
                e.to_string()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_to_line_is_single_line_with_prefix() {
        let mut r = Report {
            tool: "vugpu-workload",
            result: "fail",
            ..Default::default()
        };
        r.add_failure("object 1: bad\nbytes".to_string());

        let line = r.to_line();

        assert!(line.starts_with(RESULT_PREFIX));
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line[RESULT_PREFIX.len()..]).unwrap();
        assert_eq!(v["result"], "fail");
        assert!(v["shrinker"].is_null());
        assert_eq!(v["failures"][0], "object 1: bad\nbytes");
    }

    #[test]
    fn test_swap_ratio_divides_bo_rates_by_anonymous_rates() {
        let anon = SwapPhases {
            written_pages: 1000,
            write_secs: 2.0,
            read_pages: 900,
            read_secs: 3.0,
            ..Default::default()
        };
        let bo = SwapPhases {
            written_pages: 1500,
            write_secs: 2.0,
            read_pages: 0,
            read_secs: 1.0,
            ..Default::default()
        };

        let r = SwapRatio::new(1 << 20, 1 << 19, anon, bo);

        assert_eq!(r.written_ratio, Some(1.5));
        assert_eq!(r.read_ratio, None);
        assert_eq!(r.write_stall_ratio, None);
    }

    #[test]
    fn test_swap_ratio_stall_ratio_divides_full_stall_times() {
        let psi = |full| PsiPhase {
            full_stall_us: full,
            ..Default::default()
        };
        let anon = SwapPhases {
            write_psi: Some(psi(400)),
            read_psi: Some(psi(0)),
            ..Default::default()
        };
        let bo = SwapPhases {
            write_psi: Some(psi(300)),
            read_psi: Some(psi(10)),
            ..Default::default()
        };

        let r = SwapRatio::new(1, 0, anon, bo);

        assert_eq!(r.write_stall_ratio, Some(0.75));
        assert_eq!(r.read_stall_ratio, None);
    }

    #[test]
    fn test_swap_ratio_second_anonymous_pass_averages_the_rates() {
        let phases = |written: u64, stall: u64| SwapPhases {
            written_pages: written,
            write_secs: 1.0,
            read_pages: 100,
            read_secs: 1.0,
            write_psi: Some(PsiPhase {
                full_stall_us: stall,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r = SwapRatio::new(1, 0, phases(1000, 100), phases(1500, 150));
        assert_eq!(r.written_ratio, Some(1.5));

        r.set_anon_after(phases(2000, 200));

        assert_eq!(r.written_ratio, Some(1.0));
        assert_eq!(r.anon_after_written_ratio, Some(2.0));
        assert_eq!(r.read_ratio, Some(1.0));
        assert_eq!(r.write_stall_ratio, Some(1.0));
    }

    #[test]
    fn test_psi_phase_between_takes_deltas_and_end_averages() {
        let a = Psi {
            some_avg10: 1.0,
            full_avg10: 0.5,
            some_total_us: 100,
            full_total_us: 50,
        };
        let b = Psi {
            some_avg10: 9.0,
            full_avg10: 4.0,
            some_total_us: 350,
            full_total_us: 40,
        };

        let p = PsiPhase::between(&a, &b);

        assert_eq!(p.some_stall_us, 250);
        assert_eq!(p.full_stall_us, 0);
        assert_eq!(p.full_avg10, 4.0);
    }

    #[test]
    fn test_add_failure_over_cap_counts_dropped() {
        let mut r = Report::default();
        for i in 0..MAX_FAILURES + 3 {
            r.add_failure(format!("f{i}"));
        }

        assert_eq!(r.failures.len(), MAX_FAILURES);
        assert_eq!(r.failures_dropped, 3);
    }
}
