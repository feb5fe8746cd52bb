//! What the vhost-user frontend thread shares with the worker thread: work
//! posted for the device (memory table change, reset, display socket), the
//! acked features, and the per-queue state that lets `stop_vring` wait for
//! the chain being served, or make sure it is never published.
//!
//! The mutexes are held only for a few instructions; nothing blocks while
//! holding them except [`Mailbox::finish_chain`]'s `publish` (one used-ring
//! write).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

/// Number of virtqueues.
pub const NUM_QUEUES: usize = 2;

/// Locks `m`, ignoring poisoning: a poisoned mutex only means another
/// thread panicked while holding it; the plain data inside is consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned mutex only means another thread panicked while holding it;
    // the plain data inside is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Guest memory as vhost-user-backend provides it.
pub type GuestMemory = GuestMemoryAtomic<GuestMemoryMmap<()>>;

/// Work posted by the frontend thread for the worker.
#[derive(Default)]
pub struct Pending {
    /// The memory table changed: host pointers must be re-derived.
    pub memory_changed: bool,
    /// The device was reset: drop every resource.
    pub reset: bool,
    /// A new display socket, not yet handshaken.
    pub display: Option<std::os::unix::net::UnixStream>,
}

/// Per-queue bookkeeping shared by the worker and `stop_vring`.
#[derive(Debug, Default)]
struct QueueStates {
    /// A popped chain has not been returned to the used ring yet.
    busy: [bool; NUM_QUEUES],
    /// `stop_vring` gave up waiting for the busy chain: its completion must
    /// be dropped, never written to the stopped ring.
    abandoned: [bool; NUM_QUEUES],
    /// Number of `stop_vring` calls waiting for a chain to complete.
    waiters: usize,
}

/// What the frontend thread shares with the worker's [`Device`].
#[derive(Default)]
pub struct Mailbox {
    pending: Mutex<Pending>,
    /// Set by `post` after the work is recorded, cleared by `take`.
    posted: AtomicBool,
    acked_features: AtomicU64,
    queues: Mutex<QueueStates>,
    /// Signalled when an in-flight chain completes while a stop waits.
    idle: Condvar,
}

impl Mailbox {
    /// Takes the posted work, leaving nothing pending.
    pub fn take(&self) -> Pending {
        // Checked before every command: without posted work this is one
        // atomic load, no lock.
        if !self.posted.swap(false, Ordering::AcqRel) {
            return Pending::default();
        }
        std::mem::take(&mut *lock(&self.pending))
    }

    /// Records posted work.
    pub fn post(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut lock(&self.pending));
        self.posted.store(true, Ordering::Release);
    }

    /// Virtio features acknowledged by the driver.
    pub fn acked_features(&self) -> u64 {
        self.acked_features.load(Ordering::Acquire)
    }

    /// Records the features acknowledged by the driver.
    pub fn set_acked_features(&self, features: u64) {
        self.acked_features.store(features, Ordering::Release);
    }

    /// Marks a chain popped from `queue` as being served. The worker calls
    /// it while it still holds the vring lock it popped under, so a
    /// frontend that marked the ring not ready and then waits in
    /// [`Mailbox::wait_idle`] cannot miss a chain.
    pub fn start_chain(&self, queue: usize) {
        let mut states = lock(&self.queues);
        if let Some(slot) = states.busy.get_mut(queue) {
            *slot = true;
        }
    }

    /// Ends the chain being served on `queue`: runs `publish` (which writes
    /// the used ring) unless a stop gave up waiting for this chain, in which
    /// case the completion is dropped and `false` returned. `publish` runs
    /// under the queue lock, so a stop either sees the chain completed or
    /// is sure it never will be.
    ///
    /// Wakes a waiting stop only if there is one (no futex call per
    /// command otherwise).
    pub fn finish_chain(&self, queue: usize, publish: impl FnOnce()) -> bool {
        let mut states = lock(&self.queues);
        let abandoned = states.abandoned.get(queue).copied().unwrap_or(false);
        if abandoned {
            if let Some(slot) = states.abandoned.get_mut(queue) {
                *slot = false;
            }
        } else {
            publish();
        }
        if let Some(slot) = states.busy.get_mut(queue) {
            *slot = false;
        }
        if states.waiters > 0 {
            self.idle.notify_all();
        }
        !abandoned
    }

    /// Ends the chain on `queue` without publishing anything (the chain is
    /// consumed without a reply).
    pub fn drop_chain(&self, queue: usize) {
        self.finish_chain(queue, || {});
    }

    /// Waits up to `timeout` until no chain of `queue` is being served;
    /// returns false on timeout, after marking the busy chain abandoned so
    /// that the worker never publishes it to the (stopped) ring.
    pub fn wait_idle(&self, queue: usize, timeout: Duration) -> bool {
        let mut states = lock(&self.queues);
        states.waiters += 1;
        let (mut states, _) = self
            .idle
            .wait_timeout_while(states, timeout, |s| {
                s.busy.get(queue).copied().unwrap_or(false)
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states.waiters -= 1;
        let busy = states.busy.get(queue).copied().unwrap_or(false);
        if busy {
            if let Some(slot) = states.abandoned.get_mut(queue) {
                *slot = true;
            }
        }
        !busy
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn test_mailbox_take_returns_posted_work_once() {
        let mailbox = Mailbox::default();
        mailbox.post(|p| p.reset = true);

        let first = mailbox.take();
        let second = mailbox.take();

        assert!(first.reset);
        assert!(!second.reset);
    }

    #[test]
    fn test_mailbox_wait_idle_times_out_while_a_chain_is_in_flight() {
        let mailbox = Mailbox::default();
        mailbox.start_chain(0);

        let idle = mailbox.wait_idle(0, Duration::from_millis(10));

        assert!(!idle);
        assert!(mailbox.wait_idle(1, Duration::from_millis(10)));
    }

    #[test]
    fn test_mailbox_wait_idle_returns_when_the_chain_completes() {
        let mailbox = Arc::new(Mailbox::default());
        mailbox.start_chain(0);
        let worker = Arc::clone(&mailbox);
        let done = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            worker.finish_chain(0, || {})
        });

        let idle = mailbox.wait_idle(0, Duration::from_secs(5));

        assert!(idle);
        assert!(done.join().expect("worker thread"));
    }

    #[test]
    fn test_mailbox_chain_abandoned_by_a_timed_out_stop_is_not_published() {
        let mailbox = Mailbox::default();
        mailbox.start_chain(0);
        let idle = mailbox.wait_idle(0, Duration::from_millis(10));
        let mut published = false;

        let kept = mailbox.finish_chain(0, || published = true);

        assert!(!idle);
        assert!(!kept);
        assert!(!published, "completion written to a stopped ring");
        // The next chain (after the frontend restarted the ring) publishes.
        mailbox.start_chain(0);
        assert!(mailbox.finish_chain(0, || {}));
    }

    #[test]
    fn test_mailbox_finish_without_waiting_stop_does_not_notify() {
        let mailbox = Mailbox::default();
        mailbox.start_chain(0);

        let kept = mailbox.finish_chain(0, || {});

        assert!(kept);
        assert_eq!(lock(&mailbox.queues).waiters, 0);
    }
}
