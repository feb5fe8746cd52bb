//! Command-line arguments of the `vhost-user-gpu` daemon.
//!
//! Kept apart from the validated [`crate::GpuConfig`] so that the parser
//! (and the help text, which is generated from the doc comments below) can be
//! reused, for example to build a man page.

use std::path::PathBuf;

use clap::Parser;

/// A vhost-user virtio-gpu 2D device backend.
///
/// A VMM (QEMU's vhost-user-gpu-pci or vhost-user-vga, or
/// vhost-user-test-device-pci with virtio-id=16) connects to the unix socket
/// given with --socket-path, or is already connected through the descriptor
/// given with --fd, and gets a virtio-gpu device with a control and a cursor
/// queue. When the guest
/// detaches the backing pages of a resource (RESOURCE_DETACH_BACKING), every
/// host reference to those pages is dropped before the command completes, so
/// the guest may swap them out; a later RESOURCE_ATTACH_BACKING restores the
/// resource with its content intact.
///
/// With --socket-path the daemon serves one frontend at a time: after a
/// disconnect it starts a fresh device (nothing of the old connection is
/// kept) and accepts the next frontend, until SIGINT/SIGTERM, which remove
/// the socket file. With --fd it serves that one connection (a connected
/// socket, or a listening one from which it accepts one frontend) and exits
/// with status 0 when the frontend disconnects. Inherited descriptors other
/// than --fd are left open. Malformed vhost-user messages are refused (a
/// non-zero REPLY_ACK where negotiated) and the connection goes on.
///
/// Test-only options (--test-only-*) change what the guest sees; never use
/// them in production. Read digest log format (--test-only-read-digest-log):
/// one JSON line per read of guest backing,
/// {"resource_id":R,"op":"transfer"|"flush"|"scanout","x":X,"y":Y,"w":W,"h":H,"fnv1a64":"<16 hex>"},
/// where the digest is 64-bit FNV-1a over the rectangle's bytes as read
/// from guest memory, rows top to bottom, W*4 bytes each.
///
/// Logging is configured with RUST_LOG (for example RUST_LOG=debug).
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(name = "vhost-user-gpu", version, about, long_about)]
pub struct GpuArgs {
    /// Path of the vhost-user unix socket to listen on (an existing file at
    /// that path is replaced). Exactly one of --socket-path and --fd.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "fd",
        required_unless_present_any = ["fd", "print_capabilities"]
    )]
    pub socket_path: Option<PathBuf>,

    /// Serve vhost-user on this inherited file descriptor: one end of a
    /// connected socket pair (as libvirt passes it) or a listening unix
    /// socket. The daemon exits with status 0 when that frontend disconnects.
    #[arg(long, value_name = "N")]
    pub fd: Option<i32>,

    /// Print the vhost-user backend capabilities as JSON
    /// ({"type":"gpu","features":[]}: neither render-node nor virgl) and
    /// exit.
    #[arg(long)]
    pub print_capabilities: bool,

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
    /// QEMU 10.2's vhost-user-test-device-pci (virtio-id=16) for it. Also
    /// offers the experimental VIRTIO_GPU_F_BLOB_SWAP (see --no-blob-swap).
    #[arg(long)]
    pub blob: bool,

    /// With --blob, do not offer the experimental VIRTIO_GPU_F_BLOB_SWAP
    /// feature (bit 23): the guest then keeps guest blobs resident instead
    /// of detaching their backing to swap them out.
    #[arg(long)]
    pub no_blob_swap: bool,

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

    /// TEST ONLY: inject a fault (repeatable). SPEC is one of
    /// detach-delay-ms=N (delay each DETACH_BACKING response by N ms),
    /// detach-error (answer DETACH_BACKING with ERR_UNSPEC, backing kept),
    /// attach-error (answer ATTACH_BACKING with ERR_UNSPEC, nothing
    /// attached), detach-no-reply (never answer DETACH_BACKING, backing
    /// kept). Counted in vugpu_injected_faults_total.
    #[arg(long = "test-only-fault", value_name = "SPEC")]
    pub test_only_fault: Vec<String>,

    /// TEST ONLY: append one JSON line per read of guest backing
    /// (TRANSFER_TO_HOST_2D, and RESOURCE_FLUSH / SET_SCANOUT_BLOB of a blob
    /// scanout) with a 64-bit FNV-1a digest of the bytes read (see above).
    #[arg(long = "test-only-read-digest-log", value_name = "PATH")]
    pub test_only_read_digest_log: Option<PathBuf>,
}
