//! A second thread for large copies out of guest memory.
//!
//! A 1080p TRANSFER_TO_HOST_2D copies 8 MB, and one thread's `memcpy` is
//! what bounds it. [`Copier::read`] splits such a copy into chunks that the
//! caller and one helper thread claim from a shared counter:
//!
//! - the caller never waits for the helper to start: if the helper is not
//!   scheduled (a busy host), the caller claims every chunk itself and the
//!   copy costs what it did on one thread;
//! - the caller withdraws the job when no chunk is left, so a helper that
//!   wakes up late finds nothing; it then waits only for the chunks the
//!   helper already claimed (at most one each), after which nothing of the
//!   job is touched again. A copy therefore ends before its call returns,
//!   and guest memory is never read after that: a later DETACH completes
//!   with no copy in flight.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::backing::{Backing, HostReader, ReadError, RegionMap};

/// Copies from this size on are shared with the helper.
pub const PARALLEL_MIN: usize = 2 << 20;

/// Bytes per claimed chunk.
const CHUNK: usize = 512 << 10;

/// One shared copy: everything the helper needs, by address. Valid while
/// the job is published or claimed (see the module docs).
#[derive(Clone, Copy)]
struct Job {
    backing: *const Backing,
    regions: *const RegionMap,
    /// Backing offset of `dst[0]`.
    offset: u64,
    dst: *mut u8,
    len: usize,
    /// Chunk counter, failure flag and active-helper count of this job.
    shared: *const JobState,
}

// SAFETY: the pointers are only dereferenced while the caller of
// `Copier::read` keeps what they point to alive and unaliased (chunks are
// claimed exclusively), as the module docs explain.
unsafe impl Send for Job {}

#[derive(Default)]
struct JobState {
    next: AtomicUsize,
    failed: AtomicBool,
    /// Helpers inside the job.
    active: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    job: Option<Job>,
    /// Bumped for every published job, so the helper runs each once.
    generation: u64,
    stop: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
    /// Chunks the helper copied (for tests and curiosity).
    helper_chunks: AtomicUsize,
}

/// The helper thread (started on first use) and its mailbox.
pub(crate) struct Copier {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The helper could not be started: copy on one thread.
    unavailable: bool,
}

impl std::fmt::Debug for Copier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier")
            .field("started", &self.thread.is_some())
            .finish()
    }
}

impl Default for Copier {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                slot: Mutex::new(Slot::default()),
                wake: Condvar::new(),
                helper_chunks: AtomicUsize::new(0),
            }),
            thread: None,
            unavailable: false,
        }
    }
}

/// Copies chunks of `job` until none is left or one fails.
///
/// # Safety
/// `job`'s pointers must be valid, and every chunk index this returns for
/// claimed by no one else, until the caller's `active` accounting says
/// otherwise (see [`Copier::read`]).
unsafe fn run_chunks(job: &Job) -> usize {
    // SAFETY: valid for the job's life (caller contract).
    let (state, backing, regions) = unsafe { (&*job.shared, &*job.backing, &*job.regions) };
    let mut reader = HostReader::new(backing, regions);
    let mut copied = 0;
    loop {
        let k = state.next.fetch_add(1, Ordering::Relaxed);
        let start = k.saturating_mul(CHUNK);
        if start >= job.len || state.failed.load(Ordering::Relaxed) {
            return copied;
        }
        let n = CHUNK.min(job.len - start);
        // SAFETY: chunk `k` was claimed by this thread alone; it lies inside
        // `dst..dst + len`, which the caller keeps borrowed mutably.
        let dst = unsafe { std::slice::from_raw_parts_mut(job.dst.add(start), n) };
        if reader.read_at(job.offset + start as u64, dst).is_err() {
            state.failed.store(true, Ordering::Relaxed);
            return copied;
        }
        copied += 1;
    }
}

fn helper(shared: &Shared) {
    let mut seen = 0u64;
    let mut slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if slot.stop {
            return;
        }
        match slot.job {
            Some(job) if slot.generation != seen => {
                seen = slot.generation;
                // SAFETY: the job is published, so its owner is inside
                // `Copier::read`, and it withdraws the job under this lock
                // before waiting for `active` to drop to 0.
                unsafe { (*job.shared).active.fetch_add(1, Ordering::Acquire) };
                drop(slot);
                // SAFETY: as above; chunks are claimed through the counter.
                // A panic (a bug) must not leave `active` raised: the owner
                // would wait for it forever. It fails the job instead.
                let copied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    run_chunks(&job)
                }));
                match copied {
                    Ok(n) => {
                        shared.helper_chunks.fetch_add(n, Ordering::Relaxed);
                    }
                    // SAFETY: still valid, as above.
                    Err(_) => unsafe { (*job.shared).failed.store(true, Ordering::Relaxed) },
                }
                // SAFETY: still valid: the owner waits for this decrement.
                unsafe { (*job.shared).active.fetch_sub(1, Ordering::Release) };
                slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
            }
            _ => {
                slot = shared
                    .wake
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

impl Copier {
    fn start(&mut self) -> bool {
        if self.thread.is_some() {
            return true;
        }
        if self.unavailable {
            return false;
        }
        let shared = Arc::clone(&self.shared);
        match std::thread::Builder::new()
            .name("copy_helper".into())
            .spawn(move || helper(&shared))
        {
            Ok(t) => {
                self.thread = Some(t);
                true
            }
            Err(e) => {
                log::warn!("resources: no copy helper thread ({e}); copying on one thread");
                self.unavailable = true;
                false
            }
        }
    }

    /// Fills `dst` with the bytes of `backing` from `offset`, through
    /// `regions`, on this thread and the helper when `dst` is at least
    /// [`PARALLEL_MIN`] bytes.
    pub(crate) fn read(
        &mut self,
        backing: &Backing,
        regions: &RegionMap,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), ReadError> {
        if dst.len() < PARALLEL_MIN || !self.start() {
            return HostReader::new(backing, regions).read_at(offset, dst);
        }
        let state = JobState::default();
        let job = Job {
            backing,
            regions,
            offset,
            dst: dst.as_mut_ptr(),
            len: dst.len(),
            shared: &state,
        };
        {
            let mut slot = self
                .shared
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            slot.job = Some(job);
            slot.generation = slot.generation.wrapping_add(1);
        }
        self.shared.wake.notify_one();
        // SAFETY: everything the job names outlives this call, which waits
        // below until no helper is inside it.
        unsafe { run_chunks(&job) };
        {
            let mut slot = self
                .shared
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            slot.job = None;
        }
        // The helper is inside the job only while copying a chunk it
        // claimed: a bounded wait.
        while state.active.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
        if state.failed.load(Ordering::Relaxed) {
            // Name the failure as one thread would have found it.
            return HostReader::new(backing, regions).read_at(offset, dst);
        }
        Ok(())
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stop = true;
            self.shared.wake.notify_all();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::proto::MemEntry;

    #[test]
    fn test_the_helper_takes_chunks_and_every_byte_arrives() {
        const PAGE: u64 = 4096;
        let len = 4usize << 20;
        let mem: GuestMemoryMmap<()> =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 3 * len)]).expect("memory");
        // Every other page, so a chunk spans many ranges.
        let entries: Vec<MemEntry> = (0..len as u64 / PAGE)
            .map(|i| MemEntry {
                addr: 2 * i * PAGE,
                length: PAGE as u32,
            })
            .collect();
        for (i, e) in entries.iter().enumerate() {
            let page: Vec<u8> = (0..PAGE)
                .map(|b| ((i as u64 * PAGE + b).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
                .collect();
            mem.write_slice(&page, GuestAddress(e.addr)).expect("write");
        }
        let regions = RegionMap::new(&mem);
        let backing =
            Backing::from_entries(1, &entries[..], 16384, &regions, Vec::new()).expect("backing");
        let mut expected = vec![0u8; len];
        HostReader::new(&backing, &regions)
            .read_at(0, &mut expected)
            .expect("one-thread read");
        let mut copier = Copier::default();

        for _ in 0..200 {
            let mut dst = vec![0u8; len - 4096];
            copier
                .read(&backing, &regions, 4096, &mut dst)
                .expect("two-thread read");
            assert!(dst[..] == expected[4096..]);
            if copier.shared.helper_chunks.load(Ordering::Relaxed) > 0 {
                return;
            }
        }
        panic!("the helper never took a chunk in 200 copies");
    }

    #[test]
    fn test_a_read_past_the_backing_fails_as_on_one_thread() {
        let mem: GuestMemoryMmap<()> =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).expect("memory");
        let regions = RegionMap::new(&mem);
        let entries = [MemEntry {
            addr: 0,
            length: 3 << 20,
        }];
        let backing =
            Backing::from_entries(1, &entries[..], 16384, &regions, Vec::new()).expect("backing");
        let mut copier = Copier::default();
        let mut dst = vec![0u8; 3 << 20];

        let err = copier.read(&backing, &regions, 4096, &mut dst);

        assert!(matches!(err, Err(ReadError::OutsideBacking)));
    }
}
