//! Command line (clap derive; the doc comments are the `--help` text) and its
//! conversion into a validated [`Config`].

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::error::WorkloadError;

/// Largest accepted object size (MiB).
pub const MAX_OBJECT_MIB: u64 = 256;
/// Largest accepted object count: keeps the tool's own bookkeeping small.
pub const MAX_OBJECTS: u64 = 65_536;
/// Largest accepted `--rounds`.
pub const MAX_ROUNDS: u64 = 100;
/// Object size used by `--smoke`.
pub const SMOKE_OBJECT_BYTES: u64 = 64 * 1024;
/// Default ratio of object bytes to guest RAM.
pub const DEFAULT_RAM_RATIO: f64 = 1.5;
/// Bytes per row of a 2D resource: 1024 pixels of 4 bytes, one page.
pub const ROW_BYTES: u64 = 4096;

/// Kind of buffer object to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// 2D resources (RESOURCE_CREATE, target 2, B8G8R8X8), sent to the
    /// device with TRANSFER_TO_HOST.
    #[value(name = "2d")]
    TwoD,
    /// Mappable guest blobs (RESOURCE_CREATE_BLOB, BLOB_MEM_GUEST), read by
    /// the device in place; needs VIRTGPU_PARAM_RESOURCE_BLOB.
    #[value(name = "blob")]
    Blob,
}

impl Kind {
    /// Name as used on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TwoD => "2d",
            Kind::Blob => "blob",
        }
    }
}

/// Creates virtio-gpu buffer objects larger in total than guest RAM, fills
/// them with known content, lets memory pressure act, then uses every object
/// again and checks every byte. Prints one `VUGPU-RESULT {json}` line.
#[derive(Debug, Clone, Parser)]
#[command(name = "vugpu-workload", version, args_override_self = true)]
pub struct Args {
    /// Kind of buffer object.
    #[arg(long, value_enum, default_value = "2d")]
    pub kind: Kind,

    /// Number of objects (instead of --total-mib / --total-ram-ratio).
    #[arg(long, conflicts_with_all = ["total_mib", "total_ram_ratio"])]
    pub count: Option<u64>,

    /// Total object size in MiB (rounded up to whole objects).
    #[arg(long, conflicts_with = "total_ram_ratio")]
    pub total_mib: Option<u64>,

    /// Total object size as a multiple of MemTotal [default: 1.5].
    #[arg(long)]
    pub total_ram_ratio: Option<f64>,

    /// Size of each object in MiB.
    #[arg(long, default_value_t = 4)]
    pub object_mib: u64,

    /// Seed of the content pattern.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Mark every Kth object DONTNEED with VIRTGPU_MADVISE (0 = none).
    #[arg(long, default_value_t = 4)]
    pub dontneed_every: u64,

    /// Extra anonymous memory (MiB) to allocate and touch between the fill and
    /// the reuse phase.
    #[arg(long, default_value_t = 0)]
    pub pressure_mib: u64,

    /// Sleep this long after the pressure phase, before reuse, so that a
    /// host can observe the settled state (evicted and purged objects, the
    /// pressure memory freed).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub settle_ms: u64,

    /// Print a VUGPU-PROGRESS line (shrinker counters, free memory) on
    /// stderr every MS milliseconds (0 = off).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub progress_ms: u64,

    /// How many times the reuse + verify phase runs over all objects
    /// (1..=100); later rounds re-use objects evicted again after a re-attach.
    #[arg(long, default_value_t = 1)]
    pub rounds: u64,

    /// Negative control: corrupt one byte of object I right after filling
    /// it, so the run must fail with a mismatch in that object.
    #[arg(long, value_name = "I")]
    pub inject_corruption: Option<u64>,

    /// Never call VIRTGPU_MADVISE (for kernels without the shrinker series).
    #[arg(long)]
    pub no_madvise: bool,

    /// Report, per object, the host resource id, the rectangle the device
    /// reads on each use (transfer for 2D, scanout and flush for blobs), the
    /// FNV-1a 64 digest of the written pattern over it and how many reads
    /// were asked for (`device_reads`), for the host-side content check.
    #[arg(long)]
    pub device_digests: bool,

    /// Swap-throughput comparison (issue 9) in one boot: an untimed
    /// warm-up (anonymous memory of 1.2x RAM dirtied and freed), then
    /// anonymous memory of the objects' total size dirtied and re-read, then
    /// the objects created, filled and transferred, then read back and
    /// transferred again (one WAIT at the end of each BO phase); pswpout,
    /// pswpin and the PSI memory stall per phase, a reclaim check under
    /// pressure, and the anonymous pass again once the objects are closed
    /// go into the report's `swap_ratio`. No --pressure-mib.
    #[arg(long)]
    pub swap_ratio: bool,

    /// With --swap-ratio: WAIT for every object's transfer before the next
    /// object (the structure before issue 9's profile), instead of once at
    /// the end of each BO phase.
    #[arg(long)]
    pub swap_ratio_wait_each: bool,

    /// Free-text scenario name echoed in the report.
    #[arg(long, default_value = "manual")]
    pub scenario: String,

    /// Only open the card, query parameters, and create, map, transfer and
    /// verify one small object.
    #[arg(long)]
    pub smoke: bool,

    /// DRM card node.
    #[arg(long, default_value = "/dev/dri/card0")]
    pub card: PathBuf,

    /// Shrinker counter file (debugfs).
    #[arg(long, default_value = "/sys/kernel/debug/dri/0/virtio-gpu-shrinker")]
    pub shrinker_file: PathBuf,

    /// Kernel log device watched for device error responses and warnings.
    #[arg(long, default_value = "/dev/kmsg")]
    pub kmsg: PathBuf,
}

/// How many objects to create.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sizing {
    /// Exactly this many objects.
    Count(u64),
    /// Enough objects to reach this many bytes.
    TotalBytes(u64),
    /// Enough objects to reach this multiple of MemTotal.
    RamRatio(f64),
}

impl Sizing {
    /// Number of objects of `object_bytes` each, given `mem_total` bytes of RAM.
    pub fn object_count(self, object_bytes: u64, mem_total: u64) -> Result<u64, WorkloadError> {
        if object_bytes == 0 {
            return Err(WorkloadError::Config("object size is 0".into()));
        }
        let count = match self {
            Sizing::Count(n) => n,
            Sizing::TotalBytes(b) => b.div_ceil(object_bytes),
            Sizing::RamRatio(r) => {
                if mem_total == 0 {
                    return Err(WorkloadError::Config(
                        "MemTotal unknown: use --count or --total-mib".into(),
                    ));
                }
                // Float to integer: `as` saturates; the range check follows.
                let total = (mem_total as f64 * r).ceil() as u64;
                total.div_ceil(object_bytes)
            }
        };
        if count == 0 || count > MAX_OBJECTS {
            return Err(WorkloadError::Config(format!(
                "object count {count} outside 1..={MAX_OBJECTS}"
            )));
        }
        Ok(count)
    }
}

/// Validated run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Object kind.
    pub kind: Kind,
    /// How many objects.
    pub sizing: Sizing,
    /// Bytes per object (multiple of [`ROW_BYTES`]).
    pub object_bytes: u64,
    /// Pattern seed.
    pub seed: u64,
    /// Every Kth object is marked DONTNEED (0 = none).
    pub dontneed_every: u64,
    /// Anonymous pressure bytes.
    pub pressure_bytes: u64,
    /// Pause after the pressure phase.
    pub settle: std::time::Duration,
    /// Period of the progress lines (`None`: off).
    pub progress: Option<std::time::Duration>,
    /// Reuse + verify rounds.
    pub rounds: u64,
    /// Object to corrupt after filling (negative control).
    pub inject_corruption: Option<u64>,
    /// Whether MADVISE may be used at all.
    pub use_madvise: bool,
    /// Report the digests of what the device must read.
    pub device_digests: bool,
    /// Measure anonymous against BO swap throughput (`--swap-ratio`).
    pub swap_ratio: bool,
    /// `--swap-ratio-wait-each`: WAIT per object in the BO phases.
    pub swap_ratio_wait_each: bool,
    /// Scenario name for the report.
    pub scenario: String,
    /// Smoke mode.
    pub smoke: bool,
    /// Card node.
    pub card: PathBuf,
    /// Shrinker counter file.
    pub shrinker_file: PathBuf,
    /// Kernel log device.
    pub kmsg: PathBuf,
}

impl TryFrom<Args> for Config {
    type Error = WorkloadError;

    fn try_from(a: Args) -> Result<Self, Self::Error> {
        if a.object_mib == 0 || a.object_mib > MAX_OBJECT_MIB {
            return Err(WorkloadError::Config(format!(
                "--object-mib {} outside 1..={MAX_OBJECT_MIB}",
                a.object_mib
            )));
        }
        let sizing = if a.smoke {
            Sizing::Count(1)
        } else if let Some(n) = a.count {
            Sizing::Count(n)
        } else if let Some(m) = a.total_mib {
            Sizing::TotalBytes(
                m.checked_mul(1 << 20)
                    .ok_or_else(|| WorkloadError::Config(format!("--total-mib {m} too large")))?,
            )
        } else {
            let r = a.total_ram_ratio.unwrap_or(DEFAULT_RAM_RATIO);
            if !(r.is_finite() && r > 0.0 && r <= 64.0) {
                return Err(WorkloadError::Config(format!(
                    "--total-ram-ratio {r} outside (0, 64]"
                )));
            }
            Sizing::RamRatio(r)
        };
        if a.rounds == 0 || a.rounds > MAX_ROUNDS {
            return Err(WorkloadError::Config(format!(
                "--rounds {} outside 1..={MAX_ROUNDS}",
                a.rounds
            )));
        }
        let pressure_bytes = a
            .pressure_mib
            .checked_mul(1 << 20)
            .ok_or_else(|| WorkloadError::Config("--pressure-mib too large".into()))?;
        Ok(Config {
            kind: a.kind,
            sizing,
            object_bytes: if a.smoke {
                SMOKE_OBJECT_BYTES
            } else {
                a.object_mib << 20
            },
            seed: a.seed,
            dontneed_every: if a.no_madvise { 0 } else { a.dontneed_every },
            pressure_bytes: if a.smoke || a.swap_ratio {
                0
            } else {
                pressure_bytes
            },
            settle: std::time::Duration::from_millis(if a.smoke { 0 } else { a.settle_ms }),
            progress: (a.progress_ms > 0).then(|| std::time::Duration::from_millis(a.progress_ms)),
            rounds: if a.smoke { 1 } else { a.rounds },
            inject_corruption: a.inject_corruption,
            use_madvise: !a.no_madvise,
            device_digests: a.device_digests,
            swap_ratio: a.swap_ratio && !a.smoke,
            swap_ratio_wait_each: a.swap_ratio_wait_each,
            scenario: a.scenario,
            smoke: a.smoke,
            card: a.card,
            shrinker_file: a.shrinker_file,
            kmsg: a.kmsg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("vugpu-workload").chain(args.iter().copied()))
    }

    #[test]
    fn test_parse_defaults_use_ram_ratio() {
        let a = parse(&[]).unwrap();

        let c = Config::try_from(a).unwrap();

        assert_eq!(c.kind, Kind::TwoD);
        assert_eq!(c.sizing, Sizing::RamRatio(DEFAULT_RAM_RATIO));
        assert_eq!(c.object_bytes, 4 << 20);
        assert!(c.use_madvise);
    }

    #[test]
    fn test_parse_count_with_total_mib_is_rejected() {
        let r = parse(&["--count", "3", "--total-mib", "10"]);

        assert!(r.is_err());
    }

    #[test]
    fn test_parse_repeated_option_last_value_wins() {
        // /init appends vugpu.args after the scenario's defaults.
        let a = parse(&["--object-mib", "4", "--object-mib", "2"]).unwrap();

        assert_eq!(a.object_mib, 2);
    }

    #[test]
    fn test_parse_repeated_flag_is_accepted() {
        let a = parse(&["--smoke", "--scenario", "a", "--smoke", "--scenario", "b"]).unwrap();

        assert!(a.smoke);
        assert_eq!(a.scenario, "b");
    }

    #[test]
    fn test_parse_blob_kind_accepted() {
        let a = parse(&["--kind", "blob"]).unwrap();

        assert_eq!(a.kind, Kind::Blob);
    }

    #[test]
    fn test_config_no_madvise_disables_dontneed() {
        let a = parse(&["--no-madvise", "--dontneed-every", "2"]).unwrap();

        let c = Config::try_from(a).unwrap();

        assert_eq!(c.dontneed_every, 0);
        assert!(!c.use_madvise);
    }

    #[test]
    fn test_config_smoke_uses_one_small_object() {
        let a = parse(&["--smoke", "--pressure-mib", "100"]).unwrap();

        let c = Config::try_from(a).unwrap();

        assert_eq!(c.sizing, Sizing::Count(1));
        assert_eq!(c.object_bytes, SMOKE_OBJECT_BYTES);
        assert_eq!(c.pressure_bytes, 0);
    }

    #[test]
    fn test_config_swap_ratio_drops_pressure() {
        let a = parse(&["--swap-ratio", "--pressure-mib", "100"]).unwrap();

        let c = Config::try_from(a).unwrap();

        assert!(c.swap_ratio);
        assert_eq!(c.pressure_bytes, 0);
    }

    #[test]
    fn test_config_zero_rounds_is_rejected() {
        let a = parse(&["--rounds", "0"]).unwrap();

        let r = Config::try_from(a);

        assert!(matches!(r, Err(WorkloadError::Config(_))));
    }

    #[test]
    fn test_config_zero_object_size_is_rejected() {
        let a = parse(&["--object-mib", "0"]).unwrap();

        let r = Config::try_from(a);

        assert!(matches!(r, Err(WorkloadError::Config(_))));
    }

    #[test]
    fn test_sizing_ram_ratio_rounds_up_to_whole_objects() {
        // 256 MiB of RAM at 1.5x = 384 MiB = 96 objects of 4 MiB; one more
        // byte of RAM needs a 97th object.
        let n = Sizing::RamRatio(1.5)
            .object_count(4 << 20, (256 << 20) + 1)
            .unwrap();

        assert_eq!(n, 97);
    }

    #[test]
    fn test_sizing_huge_count_is_rejected() {
        let r = Sizing::Count(MAX_OBJECTS + 1).object_count(4096, 1 << 30);

        assert!(matches!(r, Err(WorkloadError::Config(_))));
    }
}
