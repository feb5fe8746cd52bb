//! The [`VhostUserBackend`] implementation: feature negotiation, the
//! configuration space, and the hand-off of queue events to the worker.
//!
//! # Threads and ownership
//!
//! vhost-user-backend calls this backend from two kinds of threads:
//!
//! - the *frontend thread*, which handles vhost-user messages
//!   (`SET_FEATURES`, `SET_MEM_TABLE`, `GET_CONFIG`, `RESET_DEVICE`,
//!   `GPU_SET_SOCKET`, ...), and
//! - one *worker thread* (`queues_per_thread() == [0b11]`: both the control
//!   and the cursor queue are served by worker 0), which calls
//!   [`VhostUserBackend::handle_event`] when a queue is kicked.
//!
//! The device state ([`Device`], which owns `vugpu_resources::GpuState`,
//! not `Send`: it holds host pointers into the guest mapping) lives only on the worker
//! thread: it is created lazily by the first `handle_event` and kept in a
//! thread-local map keyed by the backend instance. The backend value itself
//! ([`GpuBackend`], cloned into the worker by the library) therefore holds
//! only `Send + Sync` data: configuration, atomics, and a small
//! [`Mailbox`] (acked features and a [`Pending`] record behind a mutex)
//! shared with the worker's device.
//!
//! Requests that arrive on the frontend thread but concern the device state
//! are posted to that mailbox and applied by the worker at the start of its
//! next pass and again before every descriptor chain it pops (so a reset
//! posted while a queue is being drained takes effect before the next
//! command):
//!
//! - `update_memory` (new memory table): the worker calls
//!   `GpuState::refresh_memory`, which re-derives every host pointer from the
//!   guest-physical ranges. Until then the state keeps its own reference to
//!   the previous mapping, so no pointer it holds dangles.
//! - `reset_device` (`VHOST_USER_RESET_DEVICE`): every resource is dropped.
//! - `set_gpu_socket`: the display socket; its handshake (which waits for a
//!   reply from QEMU) runs on the worker, never on the frontend thread.
//!
//! After posting, the frontend thread writes a wake-up eventfd that the
//! worker's epoll set also watches ([`WAKE_EVENT`]), so a reset takes effect
//! (and releases host memory) even if the guest never kicks a queue again.
//! The mailbox mutex is only ever held for a few instructions, so the
//! frontend thread never waits for a command being processed.
//!
//! # Working around vhost-user-backend 0.24
//!
//! - A worker thread ends for good when `handle_event` returns an error, so
//!   this backend only returns one when the device state cannot be created;
//!   guest errors become error responses.
//! - The library reads a vring's *current* kick eventfd for a queue event
//!   that may have been queued for a previous one; an empty eventfd is an
//!   error that ends the worker. See `prime_replaced_kicks`.
//! - [`crate::start`] also watches the worker threads and disconnects with
//!   an error if one ends anyway, instead of serving a deaf device.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, error, info, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::GpuBackend as LibraryDisplaySocket;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::{VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vugpu_metrics::Metrics;
use vugpu_protocol::wire::{
    virtio_gpu_config, VIRTIO_GPU_F_BLOB_SWAP, VIRTIO_GPU_F_EDID, VIRTIO_GPU_F_RESOURCE_BLOB,
    VIRTIO_GPU_F_RESOURCE_UUID,
};

use crate::config::DeviceConfig;
use crate::device::{Device, QueueKind};
use crate::mailbox::lock;
use crate::worker::Worker;

/// Queue index of the control queue.
pub const CONTROL_QUEUE: u16 = 0;
/// Queue index of the cursor queue.
pub const CURSOR_QUEUE: u16 = 1;
pub use crate::mailbox::{GuestMemory, Mailbox, Pending, NUM_QUEUES};
/// Largest queue size accepted from the frontend.
pub const MAX_QUEUE_SIZE: usize = 1024;
/// Epoll token of the wake-up eventfd. Tokens `0..=NUM_QUEUES` belong to
/// the library (the queues, then its exit/enable event); an upstream change
/// proposes more library events right after them, so ours keeps clear of
/// that range.
pub const WAKE_EVENT: u16 = 0x100;

/// Longest wait in `stop_vring` for the request being served to complete.
const STOP_VRING_TIMEOUT: Duration = Duration::from_millis(500);

/// State shared by every clone of the backend (frontend and worker threads).
struct Shared {
    /// Key of this instance's [`Device`] in the worker's thread-local map.
    id: u64,
    device_config: DeviceConfig,
    metrics: Arc<Metrics>,
    mem: GuestMemory,
    mailbox: Arc<Mailbox>,
    event_idx: AtomicBool,
    config_space: Mutex<virtio_gpu_config>,
    wake: EventFd,
    /// Exit notifiers handed out by [`VhostUserBackend::exit_event`].
    exit_notifiers: Mutex<Vec<EventNotifier>>,
    /// Exit-event consumer descriptors the library took with `into_raw_fd`
    /// and never closes, with their `eventfd-id` (see
    /// [`GpuBackend::reclaim_exit_events`]).
    orphaned_exit_fds: Mutex<Vec<(RawFd, String)>>,
}

/// The virtio-gpu vhost-user backend. Cheap to clone; all clones share one
/// device.
#[derive(Clone)]
pub struct GpuBackend {
    shared: Arc<Shared>,
}

/// Errors setting up the backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The wake-up eventfd could not be created.
    #[error("Failed to create the worker wake-up eventfd")]
    WakeEvent(#[source] io::Error),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Devices owned by this (worker) thread, keyed by [`Shared::id`].
    static DEVICES: RefCell<HashMap<u64, Worker>> = RefCell::new(HashMap::new());
}

impl GpuBackend {
    /// Creates a backend for `config` over guest memory `mem` (the same
    /// `GuestMemoryAtomic` given to `VhostUserDaemon::new`).
    ///
    /// # Errors
    /// [`BackendError::WakeEvent`] if the eventfd cannot be created.
    pub fn new(
        device_config: DeviceConfig,
        metrics: Arc<Metrics>,
        mem: GuestMemory,
    ) -> Result<Self, BackendError> {
        let wake = EventFd::new(EFD_NONBLOCK).map_err(BackendError::WakeEvent)?;
        let config_space = virtio_gpu_config::new(device_config.num_outputs, 0);
        Ok(Self {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                device_config,
                metrics,
                mem,
                mailbox: Arc::new(Mailbox::default()),
                event_idx: AtomicBool::new(false),
                config_space: Mutex::new(config_space),
                wake,
                exit_notifiers: Mutex::new(Vec::new()),
                orphaned_exit_fds: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The wake-up eventfd, to register with the worker's epoll handler
    /// under [`WAKE_EVENT`].
    pub fn wake_event(&self) -> &EventFd {
        &self.shared.wake
    }

    /// Virtio features acknowledged by the driver.
    pub fn acked_features(&self) -> u64 {
        self.shared.mailbox.acked_features()
    }

    /// Hands the worker a new display socket (from GPU_SET_SOCKET); its
    /// handshake runs on the worker.
    pub fn set_display(&self, stream: std::os::unix::net::UnixStream) {
        info!("vhost-user-gpu: display socket received");
        self.post(|p| p.display = Some(stream));
    }

    /// Closes the exit-event consumer descriptors vhost-user-backend 0.24
    /// leaks: `VringEpollHandler::new` registers `consumer.into_raw_fd()`
    /// with its epoll set and never closes it, one descriptor per
    /// connection. Call only after the connection's worker threads ended
    /// and the daemon was dropped. A descriptor is closed only if it still
    /// is the very eventfd handed out (same `eventfd-id` in
    /// /proc/self/fdinfo), so a library that closes it itself, and a number
    /// reused since, are left alone.
    pub fn reclaim_exit_events(&self) {
        lock(&self.shared.exit_notifiers).clear();
        for (fd, id) in lock(&self.shared.orphaned_exit_fds).drain(..) {
            if eventfd_id(fd).as_deref() == Some(id.as_str()) {
                // SAFETY: `fd` is the consumer descriptor the library
                // orphaned (checked by its unique eventfd id); nothing in
                // this process refers to it any more, so closing it cannot
                // affect another owner.
                unsafe { libc::close(fd) };
            }
        }
    }

    /// Tells every worker thread to exit.
    pub fn notify_exit(&self) {
        for n in lock(&self.shared.exit_notifiers).iter() {
            if let Err(e) = n.notify() {
                warn!("vhost-user-gpu: failed to notify a worker exit event: {e}");
            }
        }
    }

    fn post(&self, f: impl FnOnce(&mut Pending)) {
        self.shared.mailbox.post(f);
        if let Err(e) = self.shared.wake.write(1) {
            warn!("vhost-user-gpu: failed to wake the worker: {e}");
        }
    }

    /// Runs `f` with this backend's device on the current (worker) thread,
    /// creating the device on first use.
    fn with_device<R>(&self, f: impl FnOnce(&mut Worker) -> R) -> io::Result<R> {
        DEVICES.with(|devices| {
            let mut devices = devices.borrow_mut();
            let device = match devices.entry(self.shared.id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let device = Device::new(
                        self.shared.device_config.clone(),
                        Arc::clone(&self.shared.metrics),
                        self.shared.mem.clone(),
                        Arc::clone(&self.shared.mailbox),
                    )
                    .map_err(|e| {
                        error!("vhost-user-gpu: cannot create the device state: {e}");
                        io::Error::other(e)
                    })?;
                    v.insert(Worker::new(
                        device,
                        self.shared.mem.clone(),
                        Arc::clone(&self.shared.mailbox),
                        Arc::clone(&self.shared.metrics),
                    ))
                }
            };
            Ok(f(device))
        })
    }

    /// Applies posted work and processes the queue behind `device_event`.
    fn run_worker(&self, device_event: u16, vrings: &[VringRwLock]) -> io::Result<()> {
        let event_idx = self.shared.event_idx.load(Ordering::Acquire);
        log::trace!("vhost-user-gpu: worker event {device_event}");
        let kicks_before = kick_fds(vrings);
        let result = self.with_device(|device| {
            // Drain the wake-up counter before taking the posted work: work
            // posted after the drain writes the counter again and gets its
            // own pass; draining after taking would lose it until the next
            // guest kick.
            drain_then_apply(device_event == WAKE_EVENT, &self.shared.wake, || {
                device.device_mut().apply_mailbox();
            });
            match device_event {
                CONTROL_QUEUE | CURSOR_QUEUE => {
                    let kind = if device_event == CONTROL_QUEUE {
                        QueueKind::Control
                    } else {
                        QueueKind::Cursor
                    };
                    match vrings.get(usize::from(device_event)) {
                        Some(vring) => device.process_vring(vring, kind, event_idx),
                        None => warn!("vhost-user-gpu: no vring for queue {device_event}"),
                    }
                }
                WAKE_EVENT => {}
                other => warn!("vhost-user-gpu: unexpected event {other}"),
            }
            log::trace!("vhost-user-gpu: worker event {device_event} done");
        });
        prime_replaced_kicks(vrings, &kicks_before);
        result
    }
}

/// The `eventfd-id` line of descriptor `fd` in /proc/self/fdinfo (unique
/// per eventfd object), `None` if `fd` is not an open eventfd.
fn eventfd_id(fd: RawFd) -> Option<String> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines()
        .find(|l| l.starts_with("eventfd-id:"))
        .map(|l| l.trim().to_owned())
}

/// For a wake-up event, reads (drains) `wake` first, then runs `apply`.
fn drain_then_apply(is_wake: bool, wake: &EventFd, apply: impl FnOnce()) {
    if is_wake {
        let _ = wake.read();
    }
    apply();
}

/// The kick eventfd of every vring, by descriptor number.
fn kick_fds(vrings: &[VringRwLock]) -> Vec<Option<RawFd>> {
    vrings
        .iter()
        .map(|v| v.get_ref().get_kick().as_ref().map(AsRawFd::as_raw_fd))
        .collect()
}

/// Works around vhost-user-backend 0.24 killing the worker thread.
///
/// The library's event loop handles a batch of epoll events and, for each
/// queue event, reads the vring's *current* kick eventfd; a read that would
/// block is an error that ends the worker thread for good. If the frontend
/// replaced a kick eventfd (device reset, ring restart) while this worker
/// was busy with an earlier event of the same batch, the stale readiness of
/// the old eventfd leads to such a read on the new, empty one. Writing one
/// kick to every eventfd replaced during our call makes that read succeed;
/// it costs one empty queue pass, which virtio allows (spurious kick).
fn prime_replaced_kicks(vrings: &[VringRwLock], before: &[Option<RawFd>]) {
    for (after, before) in kick_fds(vrings).into_iter().zip(before) {
        let Some(fd) = after else { continue };
        if Some(fd) == *before {
            continue;
        }
        let one: u64 = 1;
        // SAFETY: `fd` is the vring's open kick eventfd; writing 8 bytes from
        // a live u64 is the eventfd protocol and touches no Rust memory.
        let rc = unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
        if rc != 8 {
            debug!(
                "vhost-user-gpu: priming a replaced kick eventfd: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Byte range of `events_clear` in `struct virtio_gpu_config`.
const EVENTS_CLEAR: std::ops::Range<usize> = 4..8;

/// The part of a config write of `buf` at `offset` that falls on
/// `events_clear` (the only driver-writable field), as (offset, bytes);
/// `None` if the write does not touch it.
fn events_clear_part(offset: u32, buf: &[u8]) -> Option<(u32, &[u8])> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(buf.len())?;
    let lo = start.max(EVENTS_CLEAR.start);
    let hi = end.min(EVENTS_CLEAR.end);
    if lo >= hi {
        return None;
    }
    Some((u32::try_from(lo).ok()?, &buf[lo - start..hi - start]))
}

/// Virtio feature bits offered for `config`.
///
/// `VIRTIO_F_RING_RESET` is offered because QEMU's vhost-user-gpu-pci offers
/// it to the guest itself and forwards the guest's ack in SET_FEATURES, which
/// vhost-user-backend rejects unless the backend offered it too. Per-queue
/// reset is handled by the frontend (the rings are stopped and restarted
/// through the usual vring messages).
pub fn offered_features(config: &DeviceConfig) -> u64 {
    let mut features = (1u64 << VIRTIO_F_VERSION_1)
        | (1u64 << VIRTIO_F_RING_RESET)
        | (1u64 << VIRTIO_RING_F_EVENT_IDX)
        | (1u64 << VIRTIO_RING_F_INDIRECT_DESC)
        | (1u64 << VIRTIO_GPU_F_EDID)
        | (1u64 << VIRTIO_GPU_F_RESOURCE_UUID)
        | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    if config.blob {
        features |= 1u64 << VIRTIO_GPU_F_RESOURCE_BLOB;
        if config.blob_swap {
            features |= 1u64 << VIRTIO_GPU_F_BLOB_SWAP;
        }
    }
    features
}

impl VhostUserBackend for GpuBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        offered_features(&self.shared.device_config)
    }

    fn acked_features(&self, features: u64) {
        info!("vhost-user-gpu: driver acked features {features:#x}");
        self.shared.mailbox.set_acked_features(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn reset_device(&self) {
        info!("vhost-user-gpu: device reset");
        self.shared.mailbox.set_acked_features(0);
        *lock(&self.shared.config_space) =
            virtio_gpu_config::new(self.shared.device_config.num_outputs, 0);
        self.post(|p| p.reset = true);
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // The ring is already marked not ready, so no new chain is popped;
        // wait for the one being served so that the used index the frontend
        // reads next includes it. Bounded: the worker may be blocked on the
        // display socket, which QEMU serves from the thread now waiting for
        // this GET_VRING_BASE reply.
        let queue = usize::try_from(queue_index).unwrap_or(usize::MAX);
        if !self.shared.mailbox.wait_idle(queue, STOP_VRING_TIMEOUT) {
            warn!(
                "vhost-user-gpu: queue {queue_index} still serving a request after \
                 {STOP_VRING_TIMEOUT:?}; stopping anyway and dropping its completion"
            );
        }
        Ok(())
    }

    fn set_event_idx(&self, enabled: bool) {
        self.shared.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = lock(&self.shared.config_space);
        match config.read_range(offset, size) {
            Some(bytes) => bytes.to_vec(),
            None => {
                warn!("vhost-user-gpu: GET_CONFIG outside the config space: offset {offset}, size {size}");
                Vec::new()
            }
        }
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        // Never an error: vhost-user-backend drops the connection on any
        // Err, and QEMU forwards every guest config write as a write of the
        // whole 16-byte struct (read-only fields included).
        match events_clear_part(offset, buf) {
            Some((at, part)) => {
                lock(&self.shared.config_space).write_range(at, part);
            }
            None => debug!(
                "vhost-user-gpu: SET_CONFIG of {} bytes at offset {offset} changes nothing writable",
                buf.len()
            ),
        }
        Ok(())
    }

    fn update_memory(&self, _mem: GuestMemory) -> io::Result<()> {
        // The GuestMemoryAtomic we hold was already updated in place; the
        // worker re-derives its host pointers before its next descriptor.
        debug!("vhost-user-gpu: memory table updated");
        self.post(|p| p.memory_changed = true);
        Ok(())
    }

    fn set_gpu_socket(&self, _socket: LibraryDisplaySocket) -> io::Result<()> {
        // The request gate ([`crate::relay`]) takes GPU_SET_SOCKET's
        // descriptor itself and hands it to [`GpuBackend::set_display`]:
        // vhost's display socket type gives no access to the descriptor and
        // blocks without a deadline. The library never sees the request.
        warn!("vhost-user-gpu: GPU_SET_SOCKET reached the library; ignored");
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // One worker serves both queues: the device state is single-threaded.
        vec![0b11]
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        let (consumer, notifier) =
            match new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC) {
                Ok(pair) => pair,
                Err(e) => {
                    error!("vhost-user-gpu: cannot create a worker exit event: {e}");
                    return None;
                }
            };
        match notifier.try_clone() {
            Ok(clone) => lock(&self.shared.exit_notifiers).push(clone),
            Err(e) => warn!("vhost-user-gpu: cannot keep a worker exit notifier: {e}"),
        }
        let fd = consumer.as_raw_fd();
        if let Some(id) = eventfd_id(fd) {
            lock(&self.shared.orphaned_exit_fds).push((fd, id));
        }
        Some((consumer, notifier))
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if !evset.contains(EventSet::IN) {
            warn!("vhost-user-gpu: unexpected event set {evset:?} for event {device_event}");
            return Ok(());
        }
        self.run_worker(device_event, vrings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

    fn backend(config: DeviceConfig) -> GpuBackend {
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::<()>::new());
        GpuBackend::new(config, Arc::new(Metrics::new()), mem).expect("backend")
    }

    #[test]
    fn test_offered_features_without_blob_lacks_resource_blob() {
        let features = offered_features(&DeviceConfig::default());

        assert_eq!(features & (1 << VIRTIO_GPU_F_RESOURCE_BLOB), 0);
        assert_ne!(features & (1 << VIRTIO_GPU_F_EDID), 0);
        assert_ne!(features & (1 << VIRTIO_GPU_F_RESOURCE_UUID), 0);
        assert_ne!(features & (1 << VIRTIO_F_VERSION_1), 0);
        assert_ne!(features & (1 << VIRTIO_RING_F_EVENT_IDX), 0);
    }

    #[test]
    fn test_offered_features_with_blob_has_resource_blob() {
        let config = DeviceConfig {
            blob: true,
            ..DeviceConfig::default()
        };

        let features = offered_features(&config);

        assert_ne!(features & (1 << VIRTIO_GPU_F_RESOURCE_BLOB), 0);
    }

    #[test]
    fn test_offered_features_blob_swap_needs_blob_and_no_opt_out() {
        let swap = DeviceConfig {
            blob: true,
            blob_swap: true,
            ..DeviceConfig::default()
        };
        let no_swap = DeviceConfig {
            blob: true,
            blob_swap: false,
            ..DeviceConfig::default()
        };
        let no_blob = DeviceConfig {
            blob: false,
            blob_swap: true,
            ..DeviceConfig::default()
        };

        assert_ne!(offered_features(&swap) & (1 << VIRTIO_GPU_F_BLOB_SWAP), 0);
        assert_eq!(
            offered_features(&no_swap) & (1 << VIRTIO_GPU_F_BLOB_SWAP),
            0
        );
        assert_eq!(
            offered_features(&no_blob) & (1 << VIRTIO_GPU_F_BLOB_SWAP),
            0
        );
        assert_ne!(
            offered_features(&swap) & (1 << VIRTIO_RING_F_INDIRECT_DESC),
            0
        );
    }

    #[test]
    fn test_get_config_reports_num_scanouts() {
        let b = backend(DeviceConfig {
            num_outputs: 3,
            ..DeviceConfig::default()
        });

        let bytes = b.get_config(8, 4);

        assert_eq!(bytes, 3u32.to_le_bytes());
    }

    #[test]
    fn test_set_config_of_read_only_field_is_ignored() {
        let b = backend(DeviceConfig::default());

        let result = b.set_config(8, &7u32.to_le_bytes());

        assert!(result.is_ok());
        assert_eq!(b.get_config(8, 4), 1u32.to_le_bytes());
    }

    #[test]
    fn test_set_config_whole_struct_like_qemu_clears_events_and_keeps_the_rest() {
        let b = backend(DeviceConfig::default());
        lock(&b.shared.config_space).events_read = 0b11.into();
        // events_read 0, events_clear 1, num_scanouts 9, num_capsets 0.
        let mut write = [0u8; 16];
        write[4..8].copy_from_slice(&1u32.to_le_bytes());
        write[8..12].copy_from_slice(&9u32.to_le_bytes());

        let result = b.set_config(0, &write);

        assert!(result.is_ok());
        assert_eq!(b.get_config(0, 4), 0b10u32.to_le_bytes());
        assert_eq!(b.get_config(8, 4), 1u32.to_le_bytes());
    }

    #[test]
    fn test_events_clear_part_outside_the_field_is_none() {
        assert_eq!(events_clear_part(8, &[1, 2, 3, 4]), None);
        assert_eq!(events_clear_part(u32::MAX, &[1]), None);
        assert_eq!(events_clear_part(6, &[1, 2, 3]), Some((6, &[1u8, 2][..])));
    }

    #[test]
    fn test_reset_device_posts_reset_and_clears_acked_features() {
        let b = backend(DeviceConfig::default());
        VhostUserBackend::acked_features(&b, 1 << VIRTIO_GPU_F_EDID);

        b.reset_device();

        assert_eq!(b.acked_features(), 0);
        assert!(b.shared.mailbox.take().reset);
        assert_eq!(b.wake_event().read().expect("wake posted"), 1);
    }

    #[test]
    fn test_wake_posted_while_applying_is_not_lost() {
        // The frontend posts work (and writes the wake eventfd) while the
        // worker is applying the mailbox: the eventfd must stay readable so
        // that the worker makes another pass for it.
        let wake = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        wake.write(1).expect("first post");

        drain_then_apply(true, &wake, || wake.write(1).expect("racing post"));

        assert_eq!(wake.read().expect("wake still pending"), 1);
    }

    #[test]
    fn test_queues_per_thread_serves_both_queues_on_one_worker() {
        let b = backend(DeviceConfig::default());

        assert_eq!(b.queues_per_thread(), vec![0b11]);
        assert!(b.exit_event(0).is_some());
    }
}
