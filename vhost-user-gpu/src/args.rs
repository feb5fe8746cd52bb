//! Command-line arguments of the `vhost-user-gpu` daemon.
//!
//! Kept apart from the validated [`crate::GpuConfig`] so that the parser
//! (and the help text, which is generated from the doc comments below) can be
//! reused, for example to build a man page.

use std::path::PathBuf;

use clap::Parser;

/// A vhost-user virtio-gpu 2D device backend.
///
/// A VMM (QEMU's vhost-user-gpu-pci, or vhost-user-device-pci with
/// virtio-id=16) connects to the unix socket given with --socket-path and
/// gets a virtio-gpu device with a control and a cursor queue. When the guest
/// detaches the backing pages of a resource (RESOURCE_DETACH_BACKING), every
/// host reference to those pages is dropped before the command completes, so
/// the guest may swap them out; a later RESOURCE_ATTACH_BACKING restores the
/// resource with its content intact.
///
/// The daemon serves one connection and exits with status 0 when the
/// frontend disconnects or on SIGINT/SIGTERM, removing the socket file.
/// Logging is configured with RUST_LOG (for example RUST_LOG=debug).
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(name = "vhost-user-gpu", version, about, long_about)]
pub struct GpuArgs {
    /// Path of the vhost-user unix socket to listen on (an existing file at
    /// that path is replaced).
    #[arg(long, value_name = "PATH")]
    pub socket_path: PathBuf,

    /// Width in pixels of the display mode reported to the guest when the
    /// frontend does not provide one (1..=16384).
    #[arg(long, default_value_t = 1280, value_name = "PIXELS")]
    pub width: u32,

    /// Height in pixels of the display mode reported to the guest when the
    /// frontend does not provide one (1..=16384).
    #[arg(long, default_value_t = 800, value_name = "PIXELS")]
    pub height: u32,

    /// Number of scanouts (virtual monitors) of the device (1..=16). Only the
    /// first one is reported as enabled.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub num_outputs: u32,

    /// Offer VIRTIO_GPU_F_RESOURCE_BLOB: guest-memory blob resources
    /// (RESOURCE_CREATE_BLOB with BLOB_MEM_GUEST) and SET_SCANOUT_BLOB.
    /// QEMU's vhost-user-gpu-pci never passes this feature to the guest; use
    /// vhost-user-device-pci (virtio-id=16) for it.
    #[arg(long)]
    pub blob: bool,

    /// Largest number of guest memory entries accepted in one
    /// RESOURCE_ATTACH_BACKING or RESOURCE_CREATE_BLOB; more is answered
    /// with ERR_INVALID_PARAMETER (1..=262144).
    #[arg(long, default_value_t = 16384, value_name = "N")]
    pub max_backing_entries: u32,

    /// Upper bound of host memory used for resource storage (pixel copies),
    /// with an optional K, M or G suffix (powers of 1024). Resource creation
    /// beyond it fails with ERR_OUT_OF_MEMORY. Bookkeeping is bounded by the
    /// same value: at most SIZE/4K resources and SIZE/256 backing ranges
    /// exist at a time (more is ERR_OUT_OF_MEMORY too).
    #[arg(long, default_value = "1G", value_name = "SIZE")]
    pub max_host_memory: String,

    /// Serve Prometheus metrics at GET /metrics on this address: a loopback
    /// TCP address (127.0.0.1:PORT) or a unix socket (unix:PATH).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Log all metrics as one JSON line every SECS seconds (0 = off).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub metrics_log_interval: u64,
}
