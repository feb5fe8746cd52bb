//! Backing lifecycle benchmark of [`vugpu_resources::GpuState`], each figure
//! printed beside a reference measured in the same run (interleaved, so both
//! see the same machine load):
//!
//! (a) ATTACH + DETACH of a 64 MiB backing given as 16384 4-KiB entries on a
//!     4096x4096 B8G8R8X8 resource (target < 1 ms per pair) vs a memcpy of
//!     the 256 KiB entry array and vs `decode_command` of the same ATTACH
//!     request; median and p99. Also the fragmented case (every other page,
//!     nothing coalesces).
//! (b) TRANSFER_TO_HOST_2D of a full 1920x1080 B8G8R8X8 frame vs a memcpy of
//!     the same 8,294,400 bytes (target: >= 80 % of memcpy bandwidth).
//! (c) Heap retained by the state per attached MiB, measured with a counting
//!     global allocator (target < 64 bytes/MiB coalesced), contiguous and
//!     fragmented.
//!
//! Run: `cargo bench -p vugpu-resources --bench lifecycle`
//! (`-- --quick` for fewer iterations). Exits non-zero if the state returns
//! an error or the transferred pixels are wrong; missed targets are printed
//! as `MISS`, not turned into a failure, since timings depend on the host.

use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vugpu_protocol::{
    decode_attach_backing_in_place, decode_command, CtrlHeader, DecodeLimits, GpuCommand,
};
use vugpu_resources::{GpuState, GpuStateConfig, MemEntry, Rect};

/// Live heap bytes (requested sizes, without malloc's own overhead).
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Live heap allocations.
static LIVE_ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Highest `LIVE_BYTES` since the last [`reset_peak`].
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Forwards to the system allocator and counts live bytes.
struct CountingAllocator;

fn count_alloc(size: usize) {
    let live = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
    LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

fn count_dealloc(size: usize) {
    LIVE_BYTES.fetch_sub(size, Ordering::Relaxed);
    LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the bookkeeping only touches atomics
// (no allocation, no unwinding).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `alloc`'s contract for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `alloc_zeroed`'s contract for `layout`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (thus by `System`)
        // with `layout`, as our caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        count_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: our caller guarantees `ptr`/`layout` came from this
        // allocator (thus `System`) and that `new_size` is valid.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_dealloc(layout.size());
            count_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn live_allocs() -> usize {
    LIVE_ALLOCS.load(Ordering::Relaxed)
}

fn reset_peak() {
    PEAK_BYTES.store(live_bytes(), Ordering::Relaxed);
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const PAGE: u64 = 4 * KIB;
/// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`.
const FORMAT_B8G8R8X8: u32 = 2;
/// Resource of (a) and (c): 4096 x 4096 x 4 bytes = 64 MiB.
const BIG_ID: u32 = 1;
const BIG_SIDE: u32 = 4096;
const BIG_BYTES: u64 = 64 * MIB;
/// Entries of 4 KiB making up 64 MiB; also QEMU's and our entry cap.
const BIG_ENTRIES: u32 = 16384;
/// Resource of (b): one 1920x1080 frame.
const FRAME_ID: u32 = 2;
const FRAME_W: u32 = 1920;
const FRAME_H: u32 = 1080;
const FRAME_BYTES: u64 = FRAME_W as u64 * FRAME_H as u64 * 4; // 8,294,400
/// Guest address of the frame backing, above the 128 MiB the fragmented
/// 64 MiB backing spans.
const FRAME_GPA: u64 = 128 * MIB;
/// Guest memory: the fragmented backing plus the frame, rounded up.
const GUEST_BYTES: u64 = 144 * MIB;

/// Median and 99th percentile of a set of durations.
#[derive(Clone, Copy)]
struct Stats {
    min: Duration,
    median: Duration,
    p99: Duration,
}

fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort_unstable();
    let n = samples.len();
    Stats {
        min: samples[0],
        median: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn gib_per_s(bytes: u64, d: Duration) -> f64 {
    // Display only; u64 -> f64 rounding is irrelevant here.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / d.as_secs_f64() / (1024.0 * 1024.0 * 1024.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t0 = Instant::now();
    let r = f();
    (t0.elapsed(), r)
}

/// Involuntary context switches of this thread so far (Linux
/// `/proc/thread-self/status`), `None` if unavailable. Read outside the
/// timed regions to tell preempted iterations from slow ones.
fn involuntary_switches() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// 4 KiB entries covering `count` pages starting at `base`, `stride` bytes
/// apart (`PAGE` = contiguous, `2 * PAGE` = every other page).
fn page_entries(base: u64, count: u32, stride: u64) -> Vec<MemEntry> {
    (0..u64::from(count))
        .map(|i| MemEntry {
            addr: base + i * stride,
            length: PAGE as u32,
        })
        .collect()
}

/// The ATTACH_BACKING request bytes a guest would send for `entries`.
fn attach_request(id: u32, entries: &[MemEntry]) -> Vec<u8> {
    GpuCommand::ResourceAttachBacking {
        resource_id: id,
        // vugpu_resources::MemEntry is the protocol crate's type.
        entries: entries.to_vec(),
    }
    .to_bytes(&CtrlHeader::default())
}

/// Raw bytes of the entry array as it sits in the request (16 bytes each).
fn entry_bytes(entries: &[MemEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 16);
    for e in entries {
        out.extend_from_slice(&e.addr.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    out
}

/// (a): times ATTACH+DETACH pairs interleaved with the two references.
fn bench_attach_detach(
    state: &mut GpuState,
    label: &str,
    entries: &[MemEntry],
    iterations: usize,
) -> Result<Stats, Box<dyn Error>> {
    let request = attach_request(BIG_ID, entries);
    let src = entry_bytes(entries);
    let mut dst = vec![0u8; src.len()];
    let limits = DecodeLimits::default();
    let mut pair = Vec::with_capacity(iterations);
    let mut attach = Vec::with_capacity(iterations);
    let mut detach = Vec::with_capacity(iterations);
    let mut memcpy = Vec::with_capacity(iterations);
    let mut decode = Vec::with_capacity(iterations);
    let mut from_request_copied = Vec::with_capacity(iterations);
    let mut from_request_in_place = Vec::with_capacity(iterations);
    // Pairs during which the thread was not preempted.
    let mut pair_unpreempted = Vec::with_capacity(iterations);
    for i in 0..iterations + 10 {
        let switches_before = involuntary_switches();
        let (ta, attached) = time(|| state.attach_backing(BIG_ID, black_box(entries)));
        let (td, detached) = time(|| state.detach_backing(BIG_ID));
        let preempted = switches_before != involuntary_switches();
        if attached? != BIG_BYTES || detached? != BIG_BYTES {
            return Err("attach/detach returned a wrong byte count".into());
        }
        let (tm, ()) = time(|| dst.copy_from_slice(black_box(&src)));
        black_box(&dst);
        let (tc, decoded) = time(|| decode_command(black_box(&request), &limits));
        let decoded = decoded.map_err(|e| format!("decode_command: {e}"))?;
        black_box(decoded);
        // From the request bytes to attached and detached again: the way
        // the daemon does it today (decode_command copies the entries into
        // a Vec, the daemon copies them again into the resources' type) ...
        let (tr, r) = time(|| -> Result<u64, Box<dyn Error>> {
            let (_, cmd) = decode_command(black_box(&request), &limits)?;
            let GpuCommand::ResourceAttachBacking { entries, .. } = cmd else {
                return Err("not an ATTACH_BACKING".into());
            };
            let copied: Vec<MemEntry> = entries.to_vec();
            let n = state.attach_backing(BIG_ID, &copied)?;
            state.detach_backing(BIG_ID)?;
            Ok(n)
        });
        r?;
        // ... and straight from the request bytes.
        let (tp, r) = time(|| -> Result<u64, Box<dyn Error>> {
            let (_, id, entries) = decode_attach_backing_in_place(black_box(&request), &limits)?;
            let n = state.attach_backing_entries(id, entries)?;
            state.detach_backing(BIG_ID)?;
            Ok(n)
        });
        r?;
        if i >= 10 {
            from_request_copied.push(tr);
            from_request_in_place.push(tp);
            // The first 10 are warm-up.
            pair.push(ta + td);
            if !preempted {
                pair_unpreempted.push(ta + td);
            }
            attach.push(ta);
            detach.push(td);
            memcpy.push(tm);
            decode.push(tc);
        }
    }
    let p = stats(&mut pair);
    let a = stats(&mut attach);
    let d = stats(&mut detach);
    let m = stats(&mut memcpy);
    let c = stats(&mut decode);
    let rc = stats(&mut from_request_copied);
    let rp = stats(&mut from_request_in_place);
    println!(
        "  {label}: {} entries, {iterations} iterations",
        entries.len()
    );
    let row = |name: &str, s: Stats| {
        println!(
            "    {name:<40} median {:>9.1} us   p99 {:>9.1} us",
            us(s.median),
            us(s.p99)
        );
    };
    row("attach+detach pair", p);
    row("  attach_backing alone", a);
    row("  detach_backing alone", d);
    row(
        &format!("ref: memcpy of entry array ({} KiB)", src.len() / 1024),
        m,
    );
    row(
        &format!("ref: decode_command ATTACH ({} B)", request.len()),
        c,
    );
    row("request -> attach+detach, decoded + copied", rc);
    row("request -> attach+detach, in place", rp);
    println!(
        "    ratio pair/memcpy {:.1}x, pair/decode {:.1}x (medians); target pair < 1 ms: \
         median {}, p99 {}",
        p.median.as_secs_f64() / m.median.as_secs_f64(),
        p.median.as_secs_f64() / c.median.as_secs_f64(),
        verdict(p.median < Duration::from_millis(1)),
        verdict(p.p99 < Duration::from_millis(1)),
    );
    let preempted = iterations - pair_unpreempted.len();
    if !pair_unpreempted.is_empty() {
        let u = stats(&mut pair_unpreempted);
        println!(
            "    {preempted} of {iterations} pairs were preempted (involuntary context switch); \
             without them: median {:.1} us, p99 {:.1} us ({})",
            us(u.median),
            us(u.p99),
            verdict(u.p99 < Duration::from_millis(1)),
        );
    }
    Ok(p)
}

/// (b): times full-frame transfers interleaved with a memcpy of the frame.
fn bench_transfer(
    state: &mut GpuState,
    mem: &GuestMemoryMmap<()>,
    iterations: usize,
) -> Result<(), Box<dyn Error>> {
    // A recognisable pattern in the guest frame.
    let frame: Vec<u8> = (0..FRAME_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    mem.write_slice(&frame, GuestAddress(FRAME_GPA))?;
    state.create_2d(FRAME_ID, FORMAT_B8G8R8X8, FRAME_W, FRAME_H)?;
    let pages = u32::try_from(FRAME_BYTES.div_ceil(PAGE))?;
    let mut entries = page_entries(FRAME_GPA, pages, PAGE);
    if let Some(last) = entries.last_mut() {
        // 8,294,400 is not a multiple of 4 KiB: trim the last entry.
        last.length = u32::try_from(FRAME_BYTES - (u64::from(pages) - 1) * PAGE)?;
    }
    state.attach_backing(FRAME_ID, &entries)?;
    let rect = Rect {
        x: 0,
        y: 0,
        width: FRAME_W,
        height: FRAME_H,
    };
    let src = frame.clone();
    let mut dst = vec![1u8; src.len()];
    let mut transfer = Vec::with_capacity(iterations);
    let mut memcpy = Vec::with_capacity(iterations);
    for i in 0..iterations + 5 {
        let (tt, r) = time(|| state.transfer_to_host_2d(FRAME_ID, black_box(rect), 0));
        r?;
        let (tm, ()) = time(|| dst.copy_from_slice(black_box(&src)));
        black_box(&dst);
        if i >= 5 {
            transfer.push(tt);
            memcpy.push(tm);
        }
    }
    // The transfer must really have copied the guest frame.
    let mut readback = Vec::new();
    state.read_pixels(FRAME_ID, rect, &mut readback)?;
    if readback != frame {
        return Err("host copy differs from the guest frame after TRANSFER_TO_HOST_2D".into());
    }
    let t = stats(&mut transfer);
    let m = stats(&mut memcpy);
    let bw_t = gib_per_s(FRAME_BYTES, t.median);
    let bw_m = gib_per_s(FRAME_BYTES, m.median);
    println!(
        "  {FRAME_W}x{FRAME_H} B8G8R8X8 ({FRAME_BYTES} bytes, {} entries), {iterations} iterations",
        entries.len()
    );
    println!(
        "    transfer_to_host_2d                      median {:>9.1} us   p99 {:>9.1} us   {bw_t:>6.2} GiB/s",
        us(t.median),
        us(t.p99)
    );
    println!(
        "    ref: memcpy of the same bytes            median {:>9.1} us   p99 {:>9.1} us   {bw_m:>6.2} GiB/s",
        us(m.median),
        us(m.p99)
    );
    let ratio = bw_t / bw_m;
    println!(
        "    ratio transfer/memcpy bandwidth {:.1} % (target >= 80 %): {}",
        ratio * 100.0,
        verdict(ratio >= 0.8)
    );
    println!(
        "    best runs (least disturbed): transfer {:.2} GiB/s, memcpy {:.2} GiB/s, ratio {:.1} %",
        gib_per_s(FRAME_BYTES, t.min),
        gib_per_s(FRAME_BYTES, m.min),
        m.min.as_secs_f64() / t.min.as_secs_f64() * 100.0
    );
    state.detach_backing(FRAME_ID)?;
    Ok(())
}

/// (c): heap retained by one attach, per attached MiB.
fn measure_memory(
    state: &mut GpuState,
    label: &str,
    entries: &[MemEntry],
) -> Result<f64, Box<dyn Error>> {
    let before = live_bytes();
    let allocs_before = live_allocs();
    reset_peak();
    let attached = state.attach_backing(BIG_ID, entries)?;
    let after = live_bytes();
    let allocs_after = live_allocs();
    let peak = PEAK_BYTES.load(Ordering::Relaxed);
    state.detach_backing(BIG_ID)?;
    let after_detach = live_bytes();
    let retained = after.saturating_sub(before);
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let per_mib = retained as f64 / (attached as f64 / MIB as f64);
    println!(
        "  {label}: {} entries -> retained {retained} bytes in {} allocations for {} MiB \
         = {per_mib:.2} bytes/MiB; transient peak +{} bytes; after detach {:+} bytes",
        entries.len(),
        allocs_after.saturating_sub(allocs_before),
        attached / MIB,
        peak.saturating_sub(before),
        i128::try_from(after_detach)? - i128::try_from(before)?,
    );
    Ok(per_mib)
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes `--bench`; `--quick` shortens the run.
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_pair, n_frag, n_transfer) = if quick {
        (200, 50, 20)
    } else {
        (2000, 300, 150)
    };

    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), GUEST_BYTES as usize)])?;
    // Fault the guest pages in once, as a running guest's would be.
    let zeros = vec![0u8; MIB as usize];
    for mib in 0..GUEST_BYTES / MIB {
        mem.write_slice(&zeros, GuestAddress(mib * MIB))?;
    }
    drop(zeros);
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let config = GpuStateConfig {
        num_scanouts: 1,
        max_host_memory: GUEST_BYTES * 2,
        max_backing_entries: BIG_ENTRIES,
        display_width: FRAME_W,
        display_height: FRAME_H,
    };
    let mut state = GpuState::new(config, atomic)?;
    let before_create = live_bytes();
    state.create_2d(BIG_ID, FORMAT_B8G8R8X8, BIG_SIDE, BIG_SIDE)?;
    println!(
        "vugpu-resources lifecycle bench ({} mode); host pixel copy of the 4096x4096 resource: \
         {} bytes heap",
        if quick { "quick" } else { "full" },
        live_bytes().saturating_sub(before_create)
    );

    let contiguous = page_entries(0, BIG_ENTRIES, PAGE);
    let fragmented = page_entries(0, BIG_ENTRIES, 2 * PAGE);

    println!("(a) ATTACH+DETACH of 64 MiB as 16384 x 4 KiB entries");
    bench_attach_detach(
        &mut state,
        "contiguous (coalesces to 1 range)",
        &contiguous,
        n_pair,
    )?;
    bench_attach_detach(
        &mut state,
        "fragmented (every other page, 16384 ranges)",
        &fragmented,
        n_frag,
    )?;

    println!("(b) TRANSFER_TO_HOST_2D of a full frame");
    bench_transfer(&mut state, &mem, n_transfer)?;

    println!("(c) heap retained by the state per attached MiB (counting global allocator)");
    let c = measure_memory(&mut state, "contiguous", &contiguous)?;
    println!("    target < 64 bytes/MiB: {}", verdict(c < 64.0));
    let f = measure_memory(&mut state, "fragmented", &fragmented)?;
    println!("    fragmented worst case (no target): {f:.0} bytes/MiB");
    println!(
        "    (a backing of many ranges reuses the range buffer of an earlier detach, so its \
         16 bytes per range, {} KiB here, were allocated before this measurement)",
        fragmented.len() * 16 / 1024
    );
    Ok(())
}
