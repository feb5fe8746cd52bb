//! The virtio-gpu device as the worker thread sees it: descriptor chains in,
//! [`GpuState`] calls, responses and display messages out.
//!
//! Per descriptor chain ([`Device::process_chain`]):
//!
//! 1. the device-readable part is copied into a reusable buffer of
//!    [`max_command_len`] bytes (a longer request is a decode error);
//! 2. it is decoded into a [`GpuCommand`], except RESOURCE_ATTACH_BACKING,
//!    whose entries are validated and coalesced by
//!    [`GpuState::attach_backing_entries`] straight from that buffer;
//! 3. `Device::dispatch` calls one `handle_*` helper per command, which
//!    validates and calls [`GpuState`];
//! 4. the response is encoded into the device-writable part.
//!
//! All work is synchronous, so a fenced command (`VIRTIO_GPU_FLAG_FENCE`) is
//! complete when its response is written: for RESOURCE_DETACH_BACKING that
//! is after `GpuState::detach_backing` returned, i.e. after every host
//! reference to the pages was dropped. The response echoes the fence id,
//! context and ring index, and the descriptor is only then returned to the
//! guest.
//!
//! Malformed input never stops the device: a request that decodes to a
//! header gets an error response; a chain without room for a response header
//! (control queue) or outside guest memory is returned with length 0 and
//! counted as a decode error. Guest-triggered warnings are rate limited.

use std::io::{Read, Write};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use crate::digest::{DigestLog, Fnv1a64, ReadOp, ReadRecord};

use log::{debug, error, info, log_enabled, warn, Level};
use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryMmap;
use vugpu_metrics::Metrics;
use vugpu_protocol::wire::{
    virtio_gpu_mem_entry, VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM,
    VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
    VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM,
    VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM, VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM,
    VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, VIRTIO_GPU_F_EDID, VIRTIO_GPU_F_RESOURCE_BLOB,
    VIRTIO_GPU_F_RESOURCE_UUID,
};
use vugpu_protocol::{
    command_name, decode_attach_backing_in_place, decode_command, decode_header, max_command_len,
    CtrlHeader, CursorPos, DecodeError, DecodeLimits, DisplayOne, ErrorCode, GpuCommand,
    GpuResponse, MemEntry, Rect,
};
use vugpu_resources::{BackingEntries, GpuState, GpuStateConfig, ResourceError, ScanoutUpdate};

use crate::config::DeviceConfig;
use crate::display::{Display, DisplayError, CURSOR_BYTES};
use crate::guest_warn;
use crate::mailbox::{GuestMemory, Mailbox, Pending};
use crate::ratelimit::{Admit, LogLimiter};

/// Size of a `virtio_gpu_ctrl_hdr`, the smallest response.
const HDR_SIZE: usize = 24;
/// Room for the largest response this device sends (GET_EDID: 1056 bytes).
const RESP_BUF_SIZE: usize = 2048;
/// Refresh rate of the generated EDID's preferred mode.
const EDID_REFRESH_HZ: u32 = 60;
/// Pixels are read from a resource and sent to the display in bands of
/// about this many bytes.
const PIXEL_BAND_BYTES: u64 = 1 << 20;
/// Guest-triggered warnings logged per second at most.
const GUEST_WARN_BURST: u32 = 20;

/// Which virtqueue a chain came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Queue 0: every command but the cursor ones; each chain has a response.
    Control,
    /// Queue 1: UPDATE_CURSOR and MOVE_CURSOR; chains usually have no
    /// device-writable part (Linux sends none).
    Cursor,
}

impl QueueKind {
    /// The virtqueue index.
    pub fn index(self) -> usize {
        match self {
            Self::Control => 0,
            Self::Cursor => 1,
        }
    }
}

/// Why a command failed. The guest sees only [`CommandError::code`]; the
/// rest is for the host log.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The resource state refused the operation.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// The request could not be decoded.
    #[error("Malformed request")]
    Decode(#[source] DecodeError),
    /// The request's readable part exceeds the largest legal command.
    #[error("Request of {len} bytes exceeds the largest command of {max} bytes")]
    TooLong {
        /// Readable bytes in the chain.
        len: usize,
        /// [`max_command_len`] for the configured limits.
        max: usize,
    },
    /// The device refuses the command in its current configuration.
    #[error("{reason}")]
    Rejected {
        /// Response code.
        code: ErrorCode,
        /// Why.
        reason: &'static str,
    },
}

impl CommandError {
    /// The error response sent to the guest.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Resource(e) => e.error_code(),
            Self::Decode(e) => e.error_code(),
            Self::TooLong { .. } => ErrorCode::Unspec,
            Self::Rejected { code, .. } => *code,
        }
    }

    fn rejected(code: ErrorCode, reason: &'static str) -> Self {
        Self::Rejected { code, reason }
    }
}

/// Host memory a resource costs besides its pixels, charged against
/// `--max-host-memory` by capping the number of resources.
pub const RESOURCE_OVERHEAD_BYTES: u64 = 4096;
/// Host memory charged per backing range held (its 16-byte record plus a
/// margin for the state's bookkeeping), by capping the number of ranges.
pub const RANGE_OVERHEAD_BYTES: u64 = 256;

/// Bounds the host memory that resource bookkeeping uses beyond pixel
/// storage (which `GpuState` accounts itself): at most
/// `max_host_memory / RESOURCE_OVERHEAD_BYTES` resources and
/// `max_host_memory / RANGE_OVERHEAD_BYTES` backing ranges at a time, so a
/// guest creating millions of 1x1 resources, or attaching thousands of
/// scattered entries to each, gets `ERR_OUT_OF_MEMORY` instead of growing
/// the daemon without bound.
///
/// The charge lives where backings are created and dropped: each
/// resource's ranges are charged when its backing is attached and released
/// when that backing goes, whether by DETACH, UNREF, reset or a memory-table
/// change that dropped it ([`MetaBudget::retain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetaBudget {
    max_resources: usize,
    max_ranges: u64,
    ranges: u64,
    /// Ranges and bytes charged per resource with backing.
    charged: std::collections::BTreeMap<u32, (u64, u64)>,
}

impl MetaBudget {
    fn new(max_host_memory: u64) -> Self {
        Self {
            max_resources: usize::try_from(max_host_memory / RESOURCE_OVERHEAD_BYTES)
                .unwrap_or(usize::MAX)
                .max(1),
            max_ranges: (max_host_memory / RANGE_OVERHEAD_BYTES).max(1),
            ranges: 0,
            charged: std::collections::BTreeMap::new(),
        }
    }

    fn check_new_resource(&self, existing: usize) -> Result<(), CommandError> {
        if existing < self.max_resources {
            Ok(())
        } else {
            Err(CommandError::rejected(
                ErrorCode::OutOfMemory,
                "resource count limit of --max-host-memory reached",
            ))
        }
    }

    fn check_new_ranges(&self, entries: usize) -> Result<(), CommandError> {
        let wanted = self
            .ranges
            .saturating_add(u64::try_from(entries).unwrap_or(u64::MAX));
        if wanted <= self.max_ranges {
            Ok(())
        } else {
            Err(CommandError::rejected(
                ErrorCode::OutOfMemory,
                "backing range limit of --max-host-memory reached",
            ))
        }
    }

    /// Charges resource `id`'s new backing of `ranges` ranges, `bytes`
    /// bytes.
    fn charge(&mut self, id: u32, ranges: usize, bytes: u64) {
        let ranges = u64::try_from(ranges).unwrap_or(u64::MAX);
        if ranges == 0 {
            return;
        }
        let old = self.charged.insert(id, (ranges, bytes));
        self.ranges = self
            .ranges
            .saturating_add(ranges)
            .saturating_sub(old.map_or(0, |(r, _)| r));
    }

    /// Releases resource `id`'s charge (its backing is gone).
    fn release(&mut self, id: u32) {
        if let Some((ranges, _)) = self.charged.remove(&id) {
            self.ranges = self.ranges.saturating_sub(ranges);
        }
    }

    /// Releases the charge of every resource for which `has_backing` is
    /// false (backing dropped by a memory-table change); returns the bytes
    /// of backing so released.
    fn retain(&mut self, has_backing: impl Fn(u32) -> bool) -> u64 {
        let mut released_bytes = 0;
        let mut released_ranges = 0;
        self.charged.retain(|&id, &mut (ranges, bytes)| {
            let keep = has_backing(id);
            if !keep {
                released_ranges += ranges;
                released_bytes += bytes;
            }
            keep
        });
        self.ranges = self.ranges.saturating_sub(released_ranges);
        released_bytes
    }

    fn clear(&mut self) {
        self.ranges = 0;
        self.charged.clear();
    }
}

/// What to record once the response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    Nothing,
    /// A successful DETACH of this many bytes: its latency ends now.
    Detached(u64),
    /// Test-only fault `detach-no-reply`: the chain is consumed and never
    /// returned to the guest.
    NoReply,
}

type CommandResult = Result<(GpuResponse, Completion), CommandError>;

fn ok(resp: GpuResponse) -> CommandResult {
    Ok((resp, Completion::Nothing))
}

fn wrong_queue() -> CommandError {
    CommandError::rejected(ErrorCode::Unspec, "command sent on the wrong queue")
}

/// The device state owned by the worker thread.
pub struct Device {
    config: DeviceConfig,
    metrics: Arc<Metrics>,
    state: GpuState,
    display: Option<Display>,
    mailbox: Arc<Mailbox>,
    limits: DecodeLimits,
    /// Reusable copy of one request's readable bytes.
    cmd_buf: Vec<u8>,
    /// Reusable encoded response.
    resp_buf: Vec<u8>,
    /// Reusable pixel buffer for display updates.
    pixels: Vec<u8>,
    warn_limiter: LogLimiter,
    budget: MetaBudget,
    /// Test-only read digest log.
    digest_log: Option<DigestLog>,
    /// `GpuState::dropped_backings_total` when the budget last caught up.
    seen_dropped_backings: u64,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("config", &self.config)
            .field("display", &self.display)
            .field("acked_features", &self.mailbox.acked_features())
            .finish_non_exhaustive()
    }
}

impl Drop for Device {
    /// Takes this device's resources out of the process-wide gauges: a
    /// device ends with its connection (or a reset of the daemon), and the
    /// next connection starts from nothing.
    fn drop(&mut self) {
        self.metrics.backing_released(self.state.attached_bytes());
        for _ in 0..self.state.resource_count() {
            self.metrics.resource_destroyed();
        }
        self.metrics.set_resources(0);
        self.metrics.set_host_memory(0);
    }
}

/// A decoded request. RESOURCE_ATTACH_BACKING keeps its entries where
/// they sit in the request bytes: they are validated and coalesced straight
/// from there, never copied into a vector.
enum Request<'a> {
    /// RESOURCE_ATTACH_BACKING, entries in wire form.
    AttachBacking {
        resource_id: u32,
        entries: &'a [virtio_gpu_mem_entry],
    },
    /// Any other command.
    Command(GpuCommand),
}

impl Request<'_> {
    /// Decodes `bytes` (at most `max_command_len` of them): ATTACH_BACKING
    /// in place, every other command with [`decode_command`]. Both give
    /// the same errors for the same bytes.
    fn decode<'a>(
        bytes: &'a [u8],
        limits: &DecodeLimits,
    ) -> Result<(CtrlHeader, Request<'a>), DecodeError> {
        let hdr = decode_header(bytes)?;
        if hdr.type_ == VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING {
            let (hdr, resource_id, entries) = decode_attach_backing_in_place(bytes, limits)?;
            return Ok((
                hdr,
                Request::AttachBacking {
                    resource_id,
                    entries,
                },
            ));
        }
        decode_command(bytes, limits).map(|(hdr, cmd)| (hdr, Request::Command(cmd)))
    }

    /// The metrics name of the command.
    fn name(&self) -> &'static str {
        match self {
            Self::AttachBacking { .. } => command_name(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING),
            Self::Command(cmd) => cmd.name(),
        }
    }

    /// A one-line description for debug logs (entry lists shortened to
    /// their count).
    fn describe(&self) -> String {
        match self {
            Self::AttachBacking {
                resource_id,
                entries,
            } => format!(
                "ResourceAttachBacking {{ resource_id: {resource_id}, entries: {} }}",
                entries.len()
            ),
            Self::Command(cmd) => describe(cmd),
        }
    }
}

/// A one-line description of `cmd` for debug logs (entry lists shortened
/// to their count).
fn describe(cmd: &GpuCommand) -> String {
    match cmd {
        GpuCommand::ResourceAttachBacking {
            resource_id,
            entries,
        } => format!(
            "ResourceAttachBacking {{ resource_id: {resource_id}, entries: {} }}",
            entries.len()
        ),
        GpuCommand::ResourceCreateBlob {
            resource_id,
            blob_mem,
            blob_flags,
            size,
            entries,
            ..
        } => format!(
            "ResourceCreateBlob {{ resource_id: {resource_id}, blob_mem: {blob_mem}, \
             blob_flags: {blob_flags:#x}, size: {size}, entries: {} }}",
            entries.len()
        ),
        other => format!("{other:?}"),
    }
}

/// True if pixels of `format` already are in the byte order QEMU's display
/// expects, so [`to_bgrx`] leaves them as they are.
fn is_bgrx(format: u32) -> bool {
    matches!(
        format,
        VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM | VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM
    )
}

/// Converts pixels of `format` in place to the byte order QEMU's display
/// expects (`PIXMAN_x8r8g8b8`/`a8r8g8b8` on little endian: B, G, R, X/A).
pub fn to_bgrx(format: u32, pixels: &mut [u8]) {
    let chunks = pixels.chunks_exact_mut(4);
    match format {
        VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM | VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM => {
            chunks.for_each(|px| px.reverse());
        }
        VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM | VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM => {
            chunks.for_each(|px| px.swap(0, 2));
        }
        VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM | VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM => {
            chunks.for_each(|px| px.rotate_left(1));
        }
        // B8G8R8A8 / B8G8R8X8 already are; formats `GpuState` refuses to
        // create never reach the display.
        _ => {}
    }
}

impl Device {
    /// Creates the device state over `mem`.
    ///
    /// # Errors
    /// The [`ResourceError`] of `GpuState::new` (invalid configuration).
    pub fn new(
        config: DeviceConfig,
        metrics: Arc<Metrics>,
        mem: GuestMemory,
        mailbox: Arc<Mailbox>,
    ) -> Result<Self, ResourceError> {
        let state = GpuState::new(
            GpuStateConfig {
                num_scanouts: config.num_outputs,
                max_host_memory: config.max_host_memory,
                max_backing_entries: config.max_backing_entries,
                display_width: config.width,
                display_height: config.height,
            },
            mem,
        )?;
        let limits = DecodeLimits {
            max_backing_entries: config.max_backing_entries,
        };
        let budget = MetaBudget::new(config.max_host_memory);
        let digest_log =
            config
                .read_digest_log
                .as_deref()
                .and_then(|path| match DigestLog::open(path) {
                    Ok(log) => Some(log),
                    Err(e) => {
                        error!(
                            "vhost-user-gpu: cannot open the read digest log {}: {e}",
                            path.display()
                        );
                        None
                    }
                });
        Ok(Self {
            digest_log,
            seen_dropped_backings: 0,
            cmd_buf: vec![0; max_command_len(&limits)],
            resp_buf: vec![0; RESP_BUF_SIZE],
            pixels: Vec::new(),
            config,
            metrics,
            state,
            display: None,
            mailbox,
            limits,
            warn_limiter: LogLimiter::new(GUEST_WARN_BURST),
            budget,
        })
    }

    /// Number of coalesced backing ranges resource `id` holds.
    fn ranges_of(&self, id: u32) -> usize {
        self.state.backing_ranges(id).map_or(0, <[_]>::len)
    }

    fn feature_acked(&self, bit: u32) -> bool {
        self.mailbox.acked_features() & (1u64 << bit) != 0
    }

    /// Applies work posted by the frontend thread (see [`crate::backend`]).
    pub fn apply_mailbox(&mut self) {
        let pending = self.mailbox.take();
        self.apply_pending(pending);
    }

    /// Applies `pending` work.
    pub fn apply_pending(&mut self, pending: Pending) {
        if pending.reset {
            self.reset();
        }
        if pending.memory_changed {
            self.refresh_memory();
        }
        if let Some(socket) = pending.display {
            match Display::connect(socket) {
                Ok(display) => {
                    info!(
                        "vhost-user-gpu: display socket connected (EDID from frontend: {})",
                        display.has_edid()
                    );
                    self.display = Some(display);
                }
                Err(e) => {
                    warn!("vhost-user-gpu: {}; running headless", error_chain(&e));
                    self.display = None;
                }
            }
        }
    }

    /// Drops every resource (device reset).
    pub fn reset(&mut self) {
        let attached = self.state.attached_bytes();
        let dropped = self.state.resource_count();
        let shown: Vec<u32> = (0..self.config.num_outputs)
            .filter(|&s| self.state.scanout_resource(s).is_some())
            .collect();
        if let Err(e) = self.state.reset() {
            error!("vhost-user-gpu: device reset: {}", error_chain(&e));
        }
        self.budget.clear();
        self.metrics.backing_released(attached);
        for _ in 0..dropped {
            self.metrics.resource_destroyed();
        }
        self.update_gauges();
        // QEMU closes the display socket when it stops the device and sends
        // a new one on restart, so a failure here is expected: drop the old
        // socket quietly.
        for scanout_id in shown {
            let failed = self
                .display
                .as_mut()
                .is_some_and(|d| d.set_scanout(scanout_id, 0, 0).is_err());
            if failed {
                info!("vhost-user-gpu: display socket closed by the frontend during reset");
                self.display = None;
            }
        }
        // A guest can reset its device in a loop: rate limited.
        if let Admit::Yes { .. } = self.warn_limiter.admit(Instant::now()) {
            info!("vhost-user-gpu: device reset, every resource dropped");
        }
    }

    /// Re-derives host pointers after a memory table change, and releases
    /// the budget and gauge of backings the change dropped.
    pub fn refresh_memory(&mut self) {
        match self.state.refresh_memory() {
            Ok(true) => info!("vhost-user-gpu: guest memory table changed, backing re-derived"),
            Ok(false) => {}
            Err(e) => warn!(
                "vhost-user-gpu: refreshing guest memory: {}",
                error_chain(&e)
            ),
        }
        // The state may also have dropped backing on its own (it refreshes
        // before every guest-memory access); its counter says when.
        let dropped = self.state.dropped_backings_total();
        if dropped != self.seen_dropped_backings {
            self.seen_dropped_backings = dropped;
            let state = &self.state;
            let released = self.budget.retain(|id| state.has_backing(id));
            warn!("vhost-user-gpu: {released} bytes of backing left guest memory and were dropped");
            self.metrics.backing_released(released);
        }
    }

    fn update_gauges(&self) {
        self.metrics
            .set_resources(u64::try_from(self.state.resource_count()).unwrap_or(u64::MAX));
        self.metrics.set_host_memory(self.state.host_memory_used());
    }

    /// Runs `f` on the display, if any; on failure logs, drops the display
    /// socket and continues headless.
    fn with_display<T>(
        &mut self,
        f: impl FnOnce(&mut Display) -> Result<T, DisplayError>,
    ) -> Option<T> {
        on_display(&mut self.display, f)
    }

    fn decode_failure(&mut self, what: std::fmt::Arguments<'_>) -> u32 {
        self.metrics.decode_error();
        guest_warn!(
            self.warn_limiter,
            "vhost-user-gpu: malformed descriptor chain: {what}"
        );
        0
    }

    /// Serves one descriptor chain and returns the used length to report,
    /// or `None` if the chain must not be returned to the guest (test-only
    /// fault `detach-no-reply`).
    pub fn process_chain<M>(
        &mut self,
        chain: DescriptorChain<M>,
        mem: &GuestMemoryMmap<()>,
        kind: QueueKind,
        dequeued: Instant,
    ) -> Option<u32>
    where
        M: Deref<Target = GuestMemoryMmap<()>> + Clone,
    {
        let reader = chain.clone().reader(mem);
        let writer = chain.writer(mem);
        let (mut reader, mut writer) = match (reader, writer) {
            (Ok(r), Ok(w)) => (r, w),
            (Err(e), _) | (_, Err(e)) => {
                return Some(self.decode_failure(format_args!("{e}")));
            }
        };
        let room = writer.available_bytes();
        if kind == QueueKind::Control && room < HDR_SIZE {
            return Some(self.decode_failure(format_args!(
                "{room} writable bytes, a response needs {HDR_SIZE}"
            )));
        }

        let len = reader.available_bytes();
        let n = len.min(self.cmd_buf.len());
        if let Err(e) = reader.read_exact(&mut self.cmd_buf[..n]) {
            return Some(self.decode_failure(format_args!("reading the request: {e}")));
        }
        // The request is served from the buffer moved out of `self` (a
        // pointer swap), so ATTACH_BACKING's entries can stay in it while
        // the handler mutates the device.
        let cmd_buf = std::mem::take(&mut self.cmd_buf);
        let (hdr, resp, completion) = self.serve(&cmd_buf[..n], len, cmd_buf.len(), kind);
        self.cmd_buf = cmd_buf;

        if completion == Completion::NoReply {
            return None;
        }
        let written = self.write_response(&hdr, &resp, &mut writer, kind);
        if let Completion::Detached(bytes) = completion {
            self.metrics.detached(bytes, dequeued.elapsed());
        }
        if written > 0 && hdr.is_fenced() {
            self.metrics.fence_completed();
        }
        Some(u32::try_from(written).unwrap_or(0))
    }

    /// Decodes and executes one request of `len` readable bytes, of which
    /// `bytes` (at most `max` bytes) were read; returns the header to echo,
    /// the response and what to record once it is written.
    fn serve(
        &mut self,
        bytes: &[u8],
        len: usize,
        max: usize,
        kind: QueueKind,
    ) -> (CtrlHeader, GpuResponse, Completion) {
        let decoded = if len > max {
            decode_header(bytes).map(|hdr| (hdr, Err(CommandError::TooLong { len, max })))
        } else {
            match Request::decode(bytes, &self.limits) {
                Ok((hdr, request)) => Ok((hdr, Ok(request))),
                Err(e) => decode_header(bytes).map(|hdr| (hdr, Err(CommandError::Decode(e)))),
            }
        };
        let (hdr, request) = match decoded {
            Ok(v) => v,
            // Not even a header: answer ERR_UNSPEC with a zeroed header
            // (nothing to echo), as QEMU does.
            Err(e) => (CtrlHeader::default(), Err(CommandError::Decode(e))),
        };

        let (resp, completion) = match request {
            Ok(request) => {
                self.metrics.command(request.name());
                let summary = log_enabled!(Level::Debug).then(|| request.describe());
                let result = self.dispatch_request(request, kind);
                if let Some(summary) = summary {
                    match &result {
                        Ok((resp, _)) => debug!(
                            "vhost-user-gpu: {summary} fenced={} fence_id={} -> {:#06x}",
                            hdr.is_fenced(),
                            hdr.fence_id,
                            resp.response_type()
                        ),
                        Err(e) => debug!("vhost-user-gpu: {summary} -> {}", error_chain(e)),
                    }
                }
                result.unwrap_or_else(|e| self.command_failed(&hdr, &e))
            }
            Err(e) => {
                self.metrics.decode_error();
                self.metrics.command(command_name(hdr.type_));
                self.command_failed(&hdr, &e)
            }
        };
        (hdr, resp, completion)
    }

    /// Counts and logs a failed command; returns its error response.
    fn command_failed(&mut self, hdr: &CtrlHeader, e: &CommandError) -> (GpuResponse, Completion) {
        let code = e.code();
        self.metrics.error(code.name());
        if matches!(e, CommandError::Resource(r) if r.is_refused_access()) {
            self.metrics.refused_access();
        }
        guest_warn!(
            self.warn_limiter,
            "vhost-user-gpu: {} failed with {}: {}",
            vugpu_protocol::command::command_c_name(hdr.type_),
            code.name(),
            error_chain(e)
        );
        (GpuResponse::Err(code), Completion::Nothing)
    }

    fn write_response(
        &mut self,
        hdr: &CtrlHeader,
        resp: &GpuResponse,
        writer: &mut virtio_queue::Writer<'_>,
        kind: QueueKind,
    ) -> usize {
        let room = writer.available_bytes();
        if kind == QueueKind::Cursor && room == 0 {
            return 0;
        }
        let n = match resp.encode(hdr, &mut self.resp_buf) {
            Ok(n) if n <= room => n,
            Ok(n) => {
                self.decode_failure(format_args!(
                    "{room} writable bytes, the response needs {n}"
                ));
                return 0;
            }
            Err(e) => {
                error!("vhost-user-gpu: encoding a response: {e}");
                return 0;
            }
        };
        if let Err(e) = writer.write_all(&self.resp_buf[..n]) {
            self.decode_failure(format_args!("writing the response: {e}"));
            return 0;
        }
        n
    }

    /// Executes one decoded request: ATTACH_BACKING from the request
    /// bytes, every other command through [`Device::dispatch`].
    fn dispatch_request(&mut self, request: Request<'_>, kind: QueueKind) -> CommandResult {
        match request {
            Request::AttachBacking {
                resource_id,
                entries,
            } => {
                if kind == QueueKind::Cursor {
                    return Err(wrong_queue());
                }
                self.handle_attach_backing(resource_id, entries)
            }
            Request::Command(cmd) => self.dispatch(cmd, kind),
        }
    }

    /// Executes one decoded command: one arm per command, each a call to a
    /// `handle_*` helper.
    fn dispatch(&mut self, cmd: GpuCommand, kind: QueueKind) -> CommandResult {
        if cmd.is_cursor() != (kind == QueueKind::Cursor) {
            return Err(wrong_queue());
        }
        match cmd {
            GpuCommand::GetDisplayInfo => self.handle_get_display_info(),
            GpuCommand::GetEdid { scanout } => self.handle_get_edid(scanout),
            GpuCommand::ResourceCreate2d {
                resource_id,
                format,
                width,
                height,
            } => self.handle_resource_create_2d(resource_id, format, width, height),
            GpuCommand::ResourceUnref { resource_id } => self.handle_resource_unref(resource_id),
            GpuCommand::SetScanout {
                scanout_id,
                resource_id,
                rect,
            } => self.handle_set_scanout(scanout_id, resource_id, rect),
            GpuCommand::ResourceFlush { resource_id, rect } => {
                self.handle_resource_flush(resource_id, rect)
            }
            GpuCommand::TransferToHost2d {
                resource_id,
                rect,
                offset,
            } => self.handle_transfer_to_host_2d(resource_id, rect, offset),
            GpuCommand::ResourceAttachBacking {
                resource_id,
                entries,
            } => self.handle_attach_backing(resource_id, entries.as_slice()),
            GpuCommand::ResourceDetachBacking { resource_id } => {
                self.handle_detach_backing(resource_id)
            }
            GpuCommand::GetCapsetInfo { capset_index } => self.handle_get_capset_info(capset_index),
            GpuCommand::GetCapset { capset_id, .. } => self.handle_get_capset(capset_id),
            GpuCommand::ResourceAssignUuid { resource_id } => {
                self.handle_resource_assign_uuid(resource_id)
            }
            GpuCommand::ResourceCreateBlob {
                resource_id,
                blob_mem,
                blob_flags,
                blob_id,
                size,
                entries,
            } => self.handle_resource_create_blob(
                resource_id,
                blob_mem,
                blob_flags,
                blob_id,
                size,
                &entries,
            ),
            GpuCommand::SetScanoutBlob {
                scanout_id,
                resource_id,
                width,
                height,
                format,
                strides,
                offsets,
                rect,
            } => self.handle_set_scanout_blob(
                scanout_id,
                resource_id,
                BlobImage {
                    width,
                    height,
                    format,
                    strides,
                    offsets,
                },
                rect,
            ),
            GpuCommand::UpdateCursor {
                pos,
                resource_id,
                hot_x,
                hot_y,
            } => self.handle_update_cursor(pos, resource_id, hot_x, hot_y),
            GpuCommand::MoveCursor { pos, resource_id } => {
                self.handle_move_cursor(pos, resource_id)
            }
        }
    }

    /// The display configuration reported when the frontend gives none:
    /// scanout 0 enabled at the configured size, the others disabled.
    fn default_display_info(&self) -> Vec<DisplayOne> {
        (0..self.config.num_outputs)
            .map(|i| DisplayOne {
                rect: Rect {
                    x: 0,
                    y: 0,
                    width: self.config.width,
                    height: self.config.height,
                },
                enabled: i == 0,
                flags: 0,
            })
            .collect()
    }

    fn handle_get_display_info(&mut self) -> CommandResult {
        let outputs = usize::try_from(self.config.num_outputs).unwrap_or(usize::MAX);
        if let Some(mut modes) = self.with_display(Display::display_info) {
            modes.truncate(outputs);
            return ok(GpuResponse::OkDisplayInfo(modes));
        }
        ok(GpuResponse::OkDisplayInfo(self.default_display_info()))
    }

    fn handle_get_edid(&mut self, scanout: u32) -> CommandResult {
        if !self.feature_acked(VIRTIO_GPU_F_EDID) {
            return Err(CommandError::rejected(
                ErrorCode::Unspec,
                "GET_EDID without VIRTIO_GPU_F_EDID",
            ));
        }
        if scanout >= self.config.num_outputs {
            return Err(CommandError::rejected(
                ErrorCode::InvalidParameter,
                "GET_EDID for a scanout that does not exist",
            ));
        }
        if let Some(Some(edid)) = self.with_display(|d| d.edid(scanout)) {
            return ok(GpuResponse::OkEdid(edid));
        }
        let edid = vugpu_protocol::edid::generate_edid(
            self.config.width,
            self.config.height,
            EDID_REFRESH_HZ,
        )
        .map_err(|_| {
            CommandError::rejected(ErrorCode::Unspec, "no EDID can describe the display size")
        })?;
        ok(GpuResponse::OkEdid(edid.to_vec()))
    }

    fn handle_resource_create_2d(
        &mut self,
        resource_id: u32,
        format: u32,
        width: u32,
        height: u32,
    ) -> CommandResult {
        self.budget
            .check_new_resource(self.state.resource_count())?;
        self.state.create_2d(resource_id, format, width, height)?;
        self.metrics.resource_created();
        self.update_gauges();
        ok(GpuResponse::OkNoData)
    }

    fn handle_resource_unref(&mut self, resource_id: u32) -> CommandResult {
        // As QEMU and crosvm do: a scanout showing the resource is disabled
        // first, and the unref succeeds (the Linux driver never retries a
        // failed unref, so refusing would leak the resource and its id).
        if self.state.resource_kind(resource_id).is_some() {
            for scanout_id in 0..self.config.num_outputs {
                if self.state.scanout_resource(scanout_id) != Some(resource_id) {
                    continue;
                }
                let none = vugpu_resources::Rect {
                    x: 0,
                    y: 0,
                    width: 0,
                    height: 0,
                };
                if let Ok(update) = self.state.set_scanout(scanout_id, 0, none) {
                    self.show_scanout(update, None);
                }
            }
        }
        let released = self.state.unref(resource_id)?;
        self.budget.release(resource_id);
        self.metrics.backing_released(released);
        self.metrics.resource_destroyed();
        self.update_gauges();
        ok(GpuResponse::OkNoData)
    }

    fn handle_set_scanout(
        &mut self,
        scanout_id: u32,
        resource_id: u32,
        rect: Rect,
    ) -> CommandResult {
        let update = self.state.set_scanout(scanout_id, resource_id, rect)?;
        self.show_scanout(update, None);
        ok(GpuResponse::OkNoData)
    }

    fn handle_resource_flush(&mut self, resource_id: u32, rect: Rect) -> CommandResult {
        let updates = self.state.flush(resource_id, rect)?;
        for update in updates {
            self.push_pixels(&update, Some(ReadOp::Flush));
        }
        ok(GpuResponse::OkNoData)
    }

    fn handle_transfer_to_host_2d(
        &mut self,
        resource_id: u32,
        rect: Rect,
        offset: u64,
    ) -> CommandResult {
        self.state.transfer_to_host_2d(resource_id, rect, offset)?;
        if self.digest_log.is_some() && rect.width > 0 && rect.height > 0 {
            self.log_transfer_digest(resource_id, rect);
        }
        ok(GpuResponse::OkNoData)
    }

    /// Logs the digest of what a TRANSFER_TO_HOST_2D of `rect` read, as the
    /// state's host copy now holds it (see [`crate::digest`]).
    fn log_transfer_digest(&mut self, resource_id: u32, rect: vugpu_resources::Rect) {
        if !matches!(
            self.state.resource_kind(resource_id),
            Some(kind) if !kind.is_blob()
        ) {
            return;
        }
        let mut pixels = std::mem::take(&mut self.pixels);
        let mut hasher = Fnv1a64::default();
        let row_bytes = u64::from(rect.width) * 4;
        let band_rows = u32::try_from((PIXEL_BAND_BYTES / row_bytes).max(1)).unwrap_or(u32::MAX);
        let mut done = 0;
        let mut failed = false;
        while done < rect.height {
            let rows = band_rows.min(rect.height - done);
            let band = vugpu_resources::Rect {
                y: rect.y + done,
                height: rows,
                ..rect
            };
            if let Err(e) = self.state.read_pixels(resource_id, band, &mut pixels) {
                error!(
                    "vhost-user-gpu: read digest of a transfer: {}",
                    error_chain(&e)
                );
                failed = true;
                break;
            }
            hasher.update(&pixels);
            done += rows;
        }
        self.pixels = pixels;
        if !failed {
            self.append_digest(ReadRecord {
                resource_id,
                op: ReadOp::Transfer,
                x: rect.x,
                y: rect.y,
                w: rect.width,
                h: rect.height,
                digest: hasher.value(),
            });
        }
    }

    fn append_digest(&mut self, record: ReadRecord) {
        if let Some(log) = &mut self.digest_log {
            if let Err(e) = log.append(&record) {
                error!("vhost-user-gpu: writing the read digest log: {e}");
            }
        }
    }

    fn handle_attach_backing<E: BackingEntries + ?Sized>(
        &mut self,
        resource_id: u32,
        entries: &E,
    ) -> CommandResult {
        if self.config.faults.attach_error {
            self.metrics.injected_fault();
            return Err(CommandError::rejected(
                ErrorCode::Unspec,
                "test-only fault attach-error",
            ));
        }
        self.budget.check_new_ranges(entries.count())?;
        let bytes = self.state.attach_backing_entries(resource_id, entries)?;
        self.budget
            .charge(resource_id, self.ranges_of(resource_id), bytes);
        self.metrics.attached(bytes);
        ok(GpuResponse::OkNoData)
    }

    fn handle_detach_backing(&mut self, resource_id: u32) -> CommandResult {
        let faults = &self.config.faults;
        if faults.detach_no_reply {
            self.metrics.injected_fault();
            return Ok((GpuResponse::OkNoData, Completion::NoReply));
        }
        if faults.detach_error {
            self.metrics.injected_fault();
            return Err(CommandError::rejected(
                ErrorCode::Unspec,
                "test-only fault detach-error",
            ));
        }
        let delay = faults.detach_delay;
        match self.state.detach_backing(resource_id) {
            Ok(bytes) => {
                self.budget.release(resource_id);
                if let Some(delay) = delay {
                    // Bounded by --test-only-fault detach-delay-ms (at most a
                    // minute); only this worker waits.
                    self.metrics.injected_fault();
                    std::thread::sleep(delay);
                }
                Ok((GpuResponse::OkNoData, Completion::Detached(bytes)))
            }
            // Detaching what is not attached touches no guest memory: an
            // error for the guest, but not a refused access.
            Err(ResourceError::NoBacking { .. }) => Err(CommandError::rejected(
                ErrorCode::Unspec,
                "RESOURCE_DETACH_BACKING of a resource without backing",
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn handle_get_capset_info(&mut self, _capset_index: u32) -> CommandResult {
        Err(CommandError::rejected(
            ErrorCode::InvalidParameter,
            "GET_CAPSET_INFO: the device has no capsets",
        ))
    }

    fn handle_get_capset(&mut self, _capset_id: u32) -> CommandResult {
        Err(CommandError::rejected(
            ErrorCode::Unspec,
            "GET_CAPSET: the device has no capsets",
        ))
    }

    fn handle_resource_assign_uuid(&mut self, resource_id: u32) -> CommandResult {
        if !self.feature_acked(VIRTIO_GPU_F_RESOURCE_UUID) {
            return Err(CommandError::rejected(
                ErrorCode::Unspec,
                "RESOURCE_ASSIGN_UUID without VIRTIO_GPU_F_RESOURCE_UUID",
            ));
        }
        let uuid = self.state.assign_uuid(resource_id)?;
        ok(GpuResponse::OkResourceUuid(uuid))
    }

    fn require_blob(&self, what: &'static str) -> Result<(), CommandError> {
        if self.config.blob && self.feature_acked(VIRTIO_GPU_F_RESOURCE_BLOB) {
            Ok(())
        } else {
            Err(CommandError::rejected(ErrorCode::Unspec, what))
        }
    }

    fn handle_resource_create_blob(
        &mut self,
        resource_id: u32,
        blob_mem: u32,
        blob_flags: u32,
        blob_id: u64,
        size: u64,
        entries: &[MemEntry],
    ) -> CommandResult {
        self.require_blob("RESOURCE_CREATE_BLOB without VIRTIO_GPU_F_RESOURCE_BLOB")?;
        self.budget
            .check_new_resource(self.state.resource_count())?;
        self.budget.check_new_ranges(entries.len())?;
        let bytes =
            self.state
                .create_blob(resource_id, blob_mem, blob_flags, blob_id, size, entries)?;
        self.budget
            .charge(resource_id, self.ranges_of(resource_id), bytes);
        self.metrics.resource_created();
        if bytes > 0 {
            self.metrics.attached(bytes);
        }
        self.update_gauges();
        ok(GpuResponse::OkNoData)
    }

    fn handle_set_scanout_blob(
        &mut self,
        scanout_id: u32,
        resource_id: u32,
        image: BlobImage,
        rect: Rect,
    ) -> CommandResult {
        self.require_blob("SET_SCANOUT_BLOB without VIRTIO_GPU_F_RESOURCE_BLOB")?;
        // A detached guest blob is never shown: its old pages may belong to
        // anyone now (blob swap, DESIGN 4.5). Refused and counted like every
        // access to a resource without backing, with or without the
        // VIRTIO_GPU_F_BLOB_SWAP feature.
        if resource_id != 0
            && matches!(self.state.resource_kind(resource_id), Some(kind) if kind.is_blob())
            && !self.state.has_backing(resource_id)
        {
            return Err(ResourceError::NoBacking {
                id: resource_id,
                op: "set scanout blob",
            }
            .into());
        }
        let update = self.state.set_scanout_blob(
            scanout_id,
            resource_id,
            image.width,
            image.height,
            image.format,
            image.strides,
            image.offsets,
            rect,
        )?;
        self.show_scanout(update, Some(ReadOp::Scanout));
        ok(GpuResponse::OkNoData)
    }

    fn handle_update_cursor(
        &mut self,
        pos: CursorPos,
        resource_id: u32,
        hot_x: u32,
        hot_y: u32,
    ) -> CommandResult {
        self.state.move_cursor(pos.scanout_id, pos.x, pos.y)?;
        let image = self.state.update_cursor(resource_id, hot_x, hot_y)?;
        match image {
            Some(image) if image.pixels.len() == CURSOR_BYTES => {
                let mut data = [0u8; CURSOR_BYTES];
                data.copy_from_slice(&image.pixels);
                to_bgrx(image.format, &mut data);
                self.with_display(|d| {
                    d.cursor_update(pos.scanout_id, pos.x, pos.y, hot_x, hot_y, &data)
                });
            }
            Some(image) => {
                guest_warn!(
                    self.warn_limiter,
                    "vhost-user-gpu: cursor image of {} bytes, expected {CURSOR_BYTES}",
                    image.pixels.len()
                );
            }
            None => {
                self.with_display(|d| d.cursor_hide(pos.scanout_id, pos.x, pos.y));
            }
        }
        ok(GpuResponse::OkNoData)
    }

    fn handle_move_cursor(&mut self, pos: CursorPos, resource_id: u32) -> CommandResult {
        self.state.move_cursor(pos.scanout_id, pos.x, pos.y)?;
        // As in QEMU, MOVE_CURSOR's resource_id (the driver repeats the
        // current cursor's) says whether the cursor is visible.
        if resource_id == 0 {
            self.with_display(|d| d.cursor_hide(pos.scanout_id, pos.x, pos.y));
        } else {
            self.with_display(|d| d.cursor_pos(pos.scanout_id, pos.x, pos.y));
        }
        ok(GpuResponse::OkNoData)
    }

    /// True if reads of resource `id` for `op` go to the digest log.
    fn digests(&self, id: u32, op: Option<ReadOp>) -> bool {
        self.digest_log.is_some()
            && op.is_some()
            && matches!(self.state.resource_kind(id), Some(kind) if kind.is_blob())
    }

    /// Tells the display about a scanout change and sends its content;
    /// `op` names the read for the digest log (blob scanouts).
    fn show_scanout(&mut self, update: ScanoutUpdate, op: Option<ReadOp>) {
        if self.display.is_none() {
            if update.resource_id != 0 && self.backing_readable(update.resource_id) {
                // Headless: read only if the digest log wants it.
                self.push_pixels(&update, op);
            }
            return;
        }
        let (width, height) = if update.resource_id == 0 {
            (0, 0)
        } else {
            (update.width, update.height)
        };
        if self
            .with_display(|d| d.set_scanout(update.scanout_id, width, height))
            .is_none()
        {
            return;
        }
        // A guest blob without backing has no content to show yet; reading
        // it would be a refused access, so wait for a flush after ATTACH.
        if update.resource_id != 0 && self.backing_readable(update.resource_id) {
            self.push_pixels(&update, op);
        }
    }

    /// True if showing resource `id` touches no guest memory it does not own.
    fn backing_readable(&self, id: u32) -> bool {
        match self.state.resource_kind(id) {
            Some(kind) if kind.is_blob() => self.state.has_backing(id),
            Some(_) => true,
            None => false,
        }
    }

    /// Reads the pixels of `update` and sends them to the display, and
    /// logs their digest when `op` is given, the resource is a blob and the
    /// digest log is on (then even without a display). Full-width bands of
    /// a 2D resource in the display's byte order are sent straight from the
    /// host copy ([`GpuState::host_rows`]); others are copied out first.
    fn push_pixels(&mut self, update: &ScanoutUpdate, op: Option<ReadOp>) {
        let digest = self.digests(update.resource_id, op);
        if (self.display.is_none() && !digest) || update.resource_id == 0 {
            return;
        }
        let mut hasher = Fnv1a64::default();
        let mut complete = true;
        // Read and send in bands of whole rows so the host buffer stays
        // around PIXEL_BAND_BYTES whatever the resource size.
        let row_bytes = u64::from(update.src.width).saturating_mul(4).max(1);
        let band_rows = u32::try_from((PIXEL_BAND_BYTES / row_bytes).max(1)).unwrap_or(u32::MAX);
        let mut pixels = std::mem::take(&mut self.pixels);
        let mut done = 0;
        while done < update.src.height && (self.display.is_some() || digest) {
            // A display that stopped reading gets no pixels: unless the
            // digest log needs them, do not even read them.
            if !digest && !self.display.as_mut().is_some_and(Display::ready_for_update) {
                break;
            }
            let rows = band_rows.min(update.src.height - done);
            let src = vugpu_resources::Rect {
                y: update.src.y + done,
                height: rows,
                ..update.src
            };
            let rect = Rect {
                x: update.dst_x,
                y: update.dst_y.saturating_add(done),
                width: src.width,
                height: rows,
            };
            // A full-width band of a 2D resource already in the display's
            // byte order goes to the socket straight from the host copy.
            if !digest && is_bgrx(update.format) {
                if let Some(band) = self.state.host_rows(update.resource_id, src) {
                    on_display(&mut self.display, |d| {
                        if band.own_mapping {
                            d.update_mapped(update.scanout_id, rect, band.bytes)
                        } else {
                            d.update(update.scanout_id, rect, band.bytes)
                        }
                    });
                    done += rows;
                    continue;
                }
            }
            if let Err(e) = self.state.read_pixels(update.resource_id, src, &mut pixels) {
                if e.is_refused_access() {
                    self.metrics.refused_access();
                }
                guest_warn!(
                    self.warn_limiter,
                    "vhost-user-gpu: reading scanout {} pixels: {}",
                    update.scanout_id,
                    error_chain(&e)
                );
                complete = false;
                break;
            }
            if digest {
                hasher.update(&pixels);
            }
            if self.display.is_none() {
                done += rows;
                continue;
            }
            to_bgrx(update.format, &mut pixels);
            self.with_display(|d| d.update(update.scanout_id, rect, &pixels));
            done += rows;
        }
        self.pixels = pixels;
        if let (true, true, Some(op)) = (digest, complete, op) {
            self.append_digest(ReadRecord {
                resource_id: update.resource_id,
                op,
                x: update.src.x,
                y: update.src.y,
                w: update.src.width,
                h: update.src.height,
                digest: hasher.value(),
            });
        }
    }
}

/// The image layout fields of SET_SCANOUT_BLOB.
#[derive(Debug, Clone, Copy)]
struct BlobImage {
    width: u32,
    height: u32,
    format: u32,
    strides: [u32; 4],
    offsets: [u32; 4],
}

/// Runs `f` on `display`, if any; on failure logs and drops the display
/// socket (the device continues headless). [`Device::with_display`] for
/// callers that borrow other parts of the device at the same time.
fn on_display<T>(
    display: &mut Option<Display>,
    f: impl FnOnce(&mut Display) -> Result<T, DisplayError>,
) -> Option<T> {
    let d = display.as_mut()?;
    match f(d) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!("vhost-user-gpu: {}; continuing headless", error_chain(&e));
            *display = None;
            None
        }
    }
}

/// `error: cause: cause...` for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
