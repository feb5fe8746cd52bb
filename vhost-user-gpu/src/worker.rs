//! The vring worker: pops descriptor chains, hands them to the [`Device`],
//! publishes completions (never to a queue the frontend stopped: see
//! [`Mailbox::finish_chain`]), runs the EVENT_IDX notification-suppression
//! loop and signals the used ring once per batch.

use std::sync::Arc;
use std::time::Instant;

use vhost_user_backend::{VringRwLock, VringT};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::GuestAddressSpace;
use vugpu_metrics::Metrics;

use crate::device::{Device, QueueKind};
use crate::guest_warn;
use crate::mailbox::{GuestMemory, Mailbox};
use crate::ratelimit::LogLimiter;

/// Worker warnings (broken rings, notification failures) logged per second
/// at most.
const WORKER_WARN_BURST: u32 = 20;

/// Why [`Worker::drain`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// No more available chains.
    Empty,
    /// The ring is disabled, not ready, or its indices are invalid.
    Stopped,
}

/// The device of one connection together with what pumping its queues
/// needs; lives on the worker thread.
pub struct Worker {
    device: Device,
    mem: GuestMemory,
    mailbox: Arc<Mailbox>,
    metrics: Arc<Metrics>,
    warn_limiter: LogLimiter,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Wraps `device`, which must have been created over `mem`, `mailbox`
    /// and `metrics`.
    pub fn new(
        device: Device,
        mem: GuestMemory,
        mailbox: Arc<Mailbox>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            device,
            mem,
            mailbox,
            metrics,
            warn_limiter: LogLimiter::new(WORKER_WARN_BURST),
        }
    }

    /// The device.
    pub fn device_mut(&mut self) -> &mut Device {
        &mut self.device
    }

    /// Serves every available chain of `vring`, with the EVENT_IDX
    /// notification-suppression loop when `event_idx` is set.
    pub fn process_vring(&mut self, vring: &VringRwLock, kind: QueueKind, event_idx: bool) {
        self.device.refresh_memory();
        loop {
            if event_idx {
                if let Err(e) = vring.disable_notification() {
                    guest_warn!(
                        self.warn_limiter,
                        "vhost-user-gpu: disabling notifications: {e}"
                    );
                }
            }
            if self.drain(vring, kind) == Drained::Stopped {
                // A disabled or broken ring stays as it is until the
                // frontend re-enables, fixes or resets it; retrying now
                // would spin.
                break;
            }
            if !event_idx {
                break;
            }
            match vring.enable_notification() {
                // New buffers arrived while notifications were off.
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    guest_warn!(
                        self.warn_limiter,
                        "vhost-user-gpu: enabling notifications: {e}"
                    );
                    break;
                }
            }
        }
    }

    /// Serves chains until the ring is empty ([`Drained::Empty`]), or is
    /// disabled or invalid, e.g. an available index more than a ring size
    /// ahead ([`Drained::Stopped`]); then signals the used ring once for
    /// the whole batch (if the driver wants it), not once per command.
    fn drain(&mut self, vring: &VringRwLock, kind: QueueKind) -> Drained {
        let mut published = false;
        let drained = self.drain_batch(vring, kind, &mut published);
        if published {
            self.signal_used(vring);
        }
        drained
    }

    /// Signals the used ring if the driver asked for it (EVENT_IDX).
    fn signal_used(&mut self, vring: &VringRwLock) {
        match vring.needs_notification() {
            Ok(true) => {
                if let Err(e) = vring.signal_used_queue() {
                    guest_warn!(
                        self.warn_limiter,
                        "vhost-user-gpu: signalling the used queue: {e}"
                    );
                }
            }
            Ok(false) => {}
            Err(e) => {
                guest_warn!(
                    self.warn_limiter,
                    "vhost-user-gpu: checking notification need: {e}"
                );
            }
        }
    }

    /// The loop of [`Worker::drain`]; sets `published` when a completion
    /// was added to the used ring.
    fn drain_batch(
        &mut self,
        vring: &VringRwLock,
        kind: QueueKind,
        published: &mut bool,
    ) -> Drained {
        loop {
            // Work posted meanwhile (reset, new memory table) applies before
            // the next command, which then sees the current memory.
            self.device.apply_mailbox();
            let mem = self.mem.memory();
            // The vring lock is held only to pop: the frontend thread may
            // need it (GET_VRING_BASE) while a command waits on the display.
            let next = {
                let mut state = vring.get_mut();
                if !state.is_enabled() || !state.get_queue().ready() {
                    log::trace!("vhost-user-gpu: {kind:?} queue not enabled or not ready");
                    return Drained::Stopped;
                }
                let next = state
                    .get_queue_mut()
                    .iter(mem.clone())
                    .map(|mut chains| chains.next());
                if matches!(next, Ok(Some(_))) {
                    self.mailbox.start_chain(kind.index());
                }
                next
            };
            let chain = match next {
                Ok(Some(chain)) => chain,
                Ok(None) => return Drained::Empty,
                Err(e) => {
                    self.metrics.decode_error();
                    guest_warn!(
                        self.warn_limiter,
                        "vhost-user-gpu: {kind:?} queue is broken, not serving it until it is reset: {e}"
                    );
                    return Drained::Stopped;
                }
            };
            let dequeued = Instant::now();
            let head = chain.head_index();
            let Some(used_len) = self.device.process_chain(chain, &mem, kind, dequeued) else {
                // Consumed without a reply (test-only fault).
                self.mailbox.drop_chain(kind.index());
                continue;
            };
            let mut added = Ok(());
            let kept = self.mailbox.finish_chain(kind.index(), || {
                added = vring.add_used(head, used_len);
            });
            if !kept {
                // GET_VRING_BASE gave up waiting for this chain: the ring is
                // stopped and may be reused by the guest; never write it.
                guest_warn!(
                    self.warn_limiter,
                    "vhost-user-gpu: {kind:?} queue was stopped while descriptor {head} \
                     was served; dropping its completion"
                );
                return Drained::Stopped;
            }
            match added {
                Ok(()) => *published = true,
                Err(e) => guest_warn!(
                    self.warn_limiter,
                    "vhost-user-gpu: adding descriptor {head} to the used ring: {e}"
                ),
            }
        }
    }
}
