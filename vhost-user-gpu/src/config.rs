//! Validated daemon configuration, built from [`GpuArgs`].
//!
//! Every bound on a user-supplied number is checked here, once, so that the
//! rest of the daemon can rely on them (for example the command buffer is
//! sized from `max_backing_entries`).

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use vugpu_metrics::{MetricsError, MetricsListen};

use crate::args::GpuArgs;

/// Largest accepted display width or height in pixels.
pub const MAX_DIMENSION: u32 = 16384;
/// Largest number of scanouts a virtio-gpu device can have
/// (`VIRTIO_GPU_MAX_SCANOUTS`).
pub const MAX_OUTPUTS: u32 = 16;
/// Largest accepted `--max-backing-entries`: 262144 entries of 16 bytes make
/// a 4 MiB command, the largest buffer the daemon ever allocates for one.
pub const MAX_BACKING_ENTRIES_LIMIT: u32 = 262_144;
/// Smallest accepted `--max-host-memory`: one 64x64 cursor.
pub const MIN_HOST_MEMORY: u64 = 16 * 1024;
/// Largest accepted `detach-delay-ms=N` fault: one minute.
pub const MAX_FAULT_DELAY_MS: u64 = 60_000;

/// Faults injected by `--test-only-fault` (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Delay of each RESOURCE_DETACH_BACKING response.
    pub detach_delay: Option<Duration>,
    /// Answer RESOURCE_DETACH_BACKING with ERR_UNSPEC, keeping the backing.
    pub detach_error: bool,
    /// Answer RESOURCE_ATTACH_BACKING with ERR_UNSPEC, attaching nothing.
    pub attach_error: bool,
    /// Never answer RESOURCE_DETACH_BACKING, keeping the backing.
    pub detach_no_reply: bool,
}

impl FaultConfig {
    /// True if any fault is enabled.
    pub fn any(&self) -> bool {
        self.detach_delay.is_some()
            || self.detach_error
            || self.attach_error
            || self.detach_no_reply
    }

    /// Adds the fault described by `spec` (see `--test-only-fault`).
    ///
    /// # Errors
    /// [`ConfigError::FaultSpec`] for an unknown or malformed spec.
    pub fn add(&mut self, spec: &str) -> Result<(), ConfigError> {
        let bad = || ConfigError::FaultSpec(spec.to_owned());
        match spec {
            "detach-error" => self.detach_error = true,
            "attach-error" => self.attach_error = true,
            "detach-no-reply" => self.detach_no_reply = true,
            _ => {
                let ms = spec.strip_prefix("detach-delay-ms=").ok_or_else(bad)?;
                let ms: u64 = ms.parse().map_err(|_| bad())?;
                if ms > MAX_FAULT_DELAY_MS {
                    return Err(bad());
                }
                self.detach_delay = Some(Duration::from_millis(ms));
            }
        }
        Ok(())
    }
}

/// Where the vhost-user connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenOn {
    /// Listen on a unix socket at this path, one frontend after another.
    SocketPath(PathBuf),
    /// Serve the inherited descriptor: a connected socket or a listening
    /// one; one frontend, then exit.
    Fd(RawFd),
}

/// Configuration of the virtio-gpu device itself (what the worker needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Width of the default display mode.
    pub width: u32,
    /// Height of the default display mode.
    pub height: u32,
    /// Number of scanouts, 1..=16.
    pub num_outputs: u32,
    /// Whether `VIRTIO_GPU_F_RESOURCE_BLOB` is offered.
    pub blob: bool,
    /// Whether `VIRTIO_GPU_F_BLOB_SWAP` is offered (only with `blob`).
    pub blob_swap: bool,
    /// Cap on memory entries per ATTACH_BACKING / CREATE_BLOB.
    pub max_backing_entries: u32,
    /// Cap on host memory for resource storage, in bytes.
    pub max_host_memory: u64,
    /// Test-only fault injection.
    pub faults: FaultConfig,
    /// Test-only read digest log.
    pub read_digest_log: Option<PathBuf>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 800,
            num_outputs: 1,
            blob: false,
            blob_swap: false,
            max_backing_entries: 16384,
            max_host_memory: 1 << 30,
            faults: FaultConfig::default(),
            read_digest_log: None,
        }
    }
}

/// Complete, validated configuration of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuConfig {
    /// Where the vhost-user connection comes from.
    pub listen: ListenOn,
    /// Device parameters.
    pub device: DeviceConfig,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<MetricsListen>,
    /// Interval of the JSON metrics log line, `None` for off.
    pub metrics_log_interval: Option<Duration>,
}

/// Invalid command-line values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A display dimension is zero or too large.
    #[error("Display {name} {value} is outside 1..={MAX_DIMENSION}")]
    Dimension {
        /// `width` or `height`.
        name: &'static str,
        /// The rejected value.
        value: u32,
    },
    /// The number of outputs is outside 1..=16.
    #[error("Number of outputs {0} is outside 1..={MAX_OUTPUTS}")]
    NumOutputs(u32),
    /// The backing entry cap is outside its bounds.
    #[error("Maximum backing entries {0} is outside 1..={MAX_BACKING_ENTRIES_LIMIT}")]
    MaxBackingEntries(u32),
    /// The host memory size does not parse.
    #[error("Host memory size {0:?} is not a number with an optional K, M or G suffix")]
    HostMemorySyntax(String),
    /// The host memory size is too small or overflows.
    #[error("Host memory size {0:?} is outside {MIN_HOST_MEMORY} bytes..=16E")]
    HostMemoryRange(String),
    /// The metrics address does not parse.
    #[error("Invalid --metrics-listen address")]
    MetricsListen(#[source] MetricsError),
    /// The socket path is empty.
    #[error("The socket path is empty")]
    EmptySocketPath,
    /// Neither or both of --socket-path and --fd were given.
    #[error("Exactly one of --socket-path and --fd is required")]
    ListenChoice,
    /// The --fd value is negative.
    #[error("File descriptor {0} is not valid")]
    Fd(i32),
    /// A --test-only-fault spec is not understood.
    #[error(
        "Fault spec {0:?} is not one of detach-delay-ms=N (N <= {MAX_FAULT_DELAY_MS}), \
         detach-error, attach-error, detach-no-reply"
    )]
    FaultSpec(String),
}

/// Parses a size such as `1G`, `512M`, `64k` or `4096` (suffixes are powers
/// of 1024, case-insensitive, an optional trailing `B`/`iB` is accepted).
///
/// # Errors
/// [`ConfigError::HostMemorySyntax`] for text that is not a size,
/// [`ConfigError::HostMemoryRange`] when it overflows `u64` or is below
/// [`MIN_HOST_MEMORY`].
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    let syntax = || ConfigError::HostMemorySyntax(text.to_owned());
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let unit_stripped = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match unit_stripped.chars().last() {
        Some('k') => (&unit_stripped[..unit_stripped.len() - 1], 10),
        Some('m') => (&unit_stripped[..unit_stripped.len() - 1], 20),
        Some('g') => (&unit_stripped[..unit_stripped.len() - 1], 30),
        Some('t') => (&unit_stripped[..unit_stripped.len() - 1], 40),
        _ => (unit_stripped, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let range = || ConfigError::HostMemoryRange(text.to_owned());
    let value: u64 = digits.parse().map_err(|_| range())?;
    let bytes = value.checked_mul(1u64 << shift).ok_or_else(range)?;
    if bytes < MIN_HOST_MEMORY {
        return Err(range());
    }
    Ok(bytes)
}

impl TryFrom<GpuArgs> for GpuConfig {
    type Error = ConfigError;

    fn try_from(args: GpuArgs) -> Result<Self, Self::Error> {
        let listen = match (args.socket_path, args.fd) {
            (Some(path), None) => {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError::EmptySocketPath);
                }
                ListenOn::SocketPath(path)
            }
            (None, Some(fd)) if fd >= 0 => ListenOn::Fd(fd),
            (None, Some(fd)) => return Err(ConfigError::Fd(fd)),
            _ => return Err(ConfigError::ListenChoice),
        };
        let mut faults = FaultConfig::default();
        for spec in &args.test_only_fault {
            faults.add(spec)?;
        }
        for (name, value) in [("width", args.width), ("height", args.height)] {
            if !(1..=MAX_DIMENSION).contains(&value) {
                return Err(ConfigError::Dimension { name, value });
            }
        }
        if !(1..=MAX_OUTPUTS).contains(&args.num_outputs) {
            return Err(ConfigError::NumOutputs(args.num_outputs));
        }
        if !(1..=MAX_BACKING_ENTRIES_LIMIT).contains(&args.max_backing_entries) {
            return Err(ConfigError::MaxBackingEntries(args.max_backing_entries));
        }
        let max_host_memory = parse_size(&args.max_host_memory)?;
        let metrics_listen = args
            .metrics_listen
            .as_deref()
            .map(MetricsListen::parse)
            .transpose()
            .map_err(ConfigError::MetricsListen)?;
        let metrics_log_interval =
            (args.metrics_log_interval > 0).then(|| Duration::from_secs(args.metrics_log_interval));
        Ok(Self {
            listen,
            device: DeviceConfig {
                width: args.width,
                height: args.height,
                num_outputs: args.num_outputs,
                blob: args.blob,
                blob_swap: args.blob && !args.no_blob_swap,
                max_backing_entries: args.max_backing_entries,
                max_host_memory,
                faults,
                read_digest_log: args.test_only_read_digest_log,
            },
            metrics_listen,
            metrics_log_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(extra: &[&str]) -> GpuArgs {
        let mut argv = vec!["vhost-user-gpu", "--socket-path", "/tmp/gpu.sock"];
        argv.extend_from_slice(extra);
        GpuArgs::try_parse_from(argv).expect("arguments parse")
    }

    #[test]
    fn test_config_from_args_defaults_match_contract() {
        let args = args(&[]);

        let config = GpuConfig::try_from(args).expect("valid config");

        assert_eq!(
            config.listen,
            ListenOn::SocketPath(PathBuf::from("/tmp/gpu.sock"))
        );
        assert_eq!(config.device, DeviceConfig::default());
        assert_eq!(config.device.max_host_memory, 1 << 30);
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.metrics_log_interval, None);
    }

    #[test]
    fn test_config_from_args_all_options_are_carried_over() {
        let args = args(&[
            "--width",
            "1024",
            "--height",
            "768",
            "--num-outputs",
            "4",
            "--blob",
            "--max-backing-entries",
            "100",
            "--max-host-memory",
            "512M",
            "--metrics-listen",
            "127.0.0.1:9100",
            "--metrics-log-interval",
            "5",
        ]);

        let config = GpuConfig::try_from(args).expect("valid config");

        assert_eq!(
            config.device,
            DeviceConfig {
                width: 1024,
                height: 768,
                num_outputs: 4,
                blob: true,
                blob_swap: true,
                max_backing_entries: 100,
                max_host_memory: 512 << 20,
                faults: FaultConfig::default(),
                read_digest_log: None,
            }
        );
        assert_eq!(
            config.metrics_listen,
            Some(MetricsListen::Tcp("127.0.0.1:9100".parse().expect("addr")))
        );
        assert_eq!(config.metrics_log_interval, Some(Duration::from_secs(5)));
    }

    #[test]
    fn test_config_from_args_missing_socket_path_is_rejected() {
        let argv = ["vhost-user-gpu"];

        let result = GpuArgs::try_parse_from(argv);

        assert!(result.is_err());
    }

    #[test]
    fn test_config_from_args_fd_is_accepted() {
        let argv = ["vhost-user-gpu", "--fd=3"];

        let config = GpuConfig::try_from(GpuArgs::try_parse_from(argv).expect("parse"));

        assert_eq!(config.expect("valid").listen, ListenOn::Fd(3));
    }

    #[test]
    fn test_config_from_args_fd_and_socket_path_conflict() {
        let argv = ["vhost-user-gpu", "--fd=3", "--socket-path", "/tmp/x"];

        let result = GpuArgs::try_parse_from(argv);

        assert!(result.is_err());
    }

    #[test]
    fn test_config_from_args_print_capabilities_needs_no_socket() {
        let argv = ["vhost-user-gpu", "--print-capabilities"];

        let args = GpuArgs::try_parse_from(argv).expect("parse");

        assert!(args.print_capabilities);
    }

    #[test]
    fn test_config_from_args_no_blob_swap_turns_the_feature_off() {
        let with = GpuConfig::try_from(args(&["--blob"])).expect("valid");
        let without = GpuConfig::try_from(args(&["--blob", "--no-blob-swap"])).expect("valid");
        let no_blob = GpuConfig::try_from(args(&[])).expect("valid");

        assert!(with.device.blob_swap);
        assert!(!without.device.blob_swap);
        assert!(!no_blob.device.blob_swap);
    }

    #[test]
    fn test_config_from_args_faults_are_parsed() {
        let config = GpuConfig::try_from(args(&[
            "--test-only-fault",
            "detach-delay-ms=250",
            "--test-only-fault",
            "attach-error",
        ]))
        .expect("valid");

        assert_eq!(
            config.device.faults,
            FaultConfig {
                detach_delay: Some(Duration::from_millis(250)),
                attach_error: true,
                ..FaultConfig::default()
            }
        );
        assert!(config.device.faults.any());
    }

    #[test]
    fn test_config_from_args_unknown_fault_is_rejected() {
        let result = GpuConfig::try_from(args(&["--test-only-fault", "detach-delay-ms=x"]));

        assert!(matches!(result, Err(ConfigError::FaultSpec(_))));
    }

    #[test]
    fn test_config_from_args_zero_outputs_is_rejected() {
        let args = args(&["--num-outputs", "0"]);

        let result = GpuConfig::try_from(args);

        assert!(matches!(result, Err(ConfigError::NumOutputs(0))));
    }

    #[test]
    fn test_config_from_args_seventeen_outputs_is_rejected() {
        let args = args(&["--num-outputs", "17"]);

        let result = GpuConfig::try_from(args);

        assert!(matches!(result, Err(ConfigError::NumOutputs(17))));
    }

    #[test]
    fn test_config_from_args_zero_width_is_rejected() {
        let args = args(&["--width", "0"]);

        let result = GpuConfig::try_from(args);

        assert!(matches!(
            result,
            Err(ConfigError::Dimension {
                name: "width",
                value: 0
            })
        ));
    }

    #[test]
    fn test_config_from_args_huge_backing_entries_is_rejected() {
        let args = args(&["--max-backing-entries", "4294967295"]);

        let result = GpuConfig::try_from(args);

        assert!(matches!(
            result,
            Err(ConfigError::MaxBackingEntries(4_294_967_295))
        ));
    }

    #[test]
    fn test_config_from_args_non_loopback_metrics_is_rejected() {
        let args = args(&["--metrics-listen", "0.0.0.0:9100"]);

        let result = GpuConfig::try_from(args);

        assert!(matches!(result, Err(ConfigError::MetricsListen(_))));
    }

    #[test]
    fn test_config_from_args_unix_metrics_is_accepted() {
        let args = args(&["--metrics-listen", "unix:/tmp/m.sock"]);

        let config = GpuConfig::try_from(args).expect("valid config");

        assert_eq!(
            config.metrics_listen,
            Some(MetricsListen::Unix(PathBuf::from("/tmp/m.sock")))
        );
    }

    #[test]
    fn test_parse_size_suffixes_are_powers_of_1024() {
        assert_eq!(parse_size("64K").expect("64K"), 64 << 10);
        assert_eq!(parse_size("3m").expect("3m"), 3 << 20);
        assert_eq!(parse_size("2G").expect("2G"), 2 << 30);
        assert_eq!(parse_size("1GiB").expect("1GiB"), 1 << 30);
        assert_eq!(parse_size("65536").expect("plain"), 65536);
    }

    #[test]
    fn test_parse_size_garbage_is_a_syntax_error() {
        let result = parse_size("12X");

        assert!(matches!(result, Err(ConfigError::HostMemorySyntax(_))));
    }

    #[test]
    fn test_parse_size_negative_is_a_syntax_error() {
        let result = parse_size("-1G");

        assert!(matches!(result, Err(ConfigError::HostMemorySyntax(_))));
    }

    #[test]
    fn test_parse_size_overflow_is_a_range_error() {
        let result = parse_size("99999999999999G");

        assert!(matches!(result, Err(ConfigError::HostMemoryRange(_))));
    }

    #[test]
    fn test_parse_size_below_minimum_is_a_range_error() {
        let result = parse_size("1K");

        assert!(matches!(result, Err(ConfigError::HostMemoryRange(_))));
    }
}
