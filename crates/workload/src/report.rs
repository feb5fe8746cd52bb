//! The machine-readable run report (schema documented in the crate docs).

use serde::Serialize;

use crate::sysinfo::Counters;

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

/// Swap traffic of one kind of memory (`--swap-ratio`): pages that really
/// moved (`/proc/vmstat` deltas) over the phase's wall time.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SwapPhases {
    /// `pswpout` delta of the dirty (anonymous) or create + fill (BO) phase.
    pub written_pages: u64,
    /// Wall time of that phase, in seconds.
    pub write_secs: f64,
    /// `pswpin` delta of the re-read (anonymous) or read-back + transfer
    /// (BO) phase.
    pub read_pages: u64,
    /// Wall time of that phase, in seconds.
    pub read_secs: f64,
    /// `/proc/pressure/memory` `full avg10` at the end of the write phase,
    /// `null` without PSI.
    pub write_psi_full_avg10: Option<f64>,
    /// The same at the end of the read phase.
    pub read_psi_full_avg10: Option<f64>,
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

/// BO against anonymous swap throughput in one boot (`--swap-ratio`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SwapRatio {
    /// Bytes of each kind (the objects' total size).
    pub bytes: u64,
    /// Anonymous bytes of the untimed warm-up pass.
    pub warmup_bytes: u64,
    /// Anonymous memory.
    pub anon: SwapPhases,
    /// Buffer objects.
    pub bo: SwapPhases,
    /// BO pages/s written over anonymous pages/s written (`null` when
    /// either moved nothing).
    pub written_ratio: Option<f64>,
    /// The same for pages read.
    pub read_ratio: Option<f64>,
}

impl SwapRatio {
    /// Builds the report object and its two ratios.
    pub fn new(bytes: u64, warmup_bytes: u64, anon: SwapPhases, bo: SwapPhases) -> Self {
        let ratio = |b: Option<f64>, a: Option<f64>| Some(b? / a?);
        Self {
            bytes,
            warmup_bytes,
            written_ratio: ratio(bo.write_rate(), anon.write_rate()),
            read_ratio: ratio(bo.read_rate(), anon.read_rate()),
            anon,
            bo,
        }
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
