//! Periodic progress lines for a host that draws a timeline (`--progress-ms`).
//!
//! A sampler thread prints, every period, one line on stderr (the guest
//! console):
//!
//! ```text
//! VUGPU-PROGRESS t_ms=1250 phase=fill evicted_bytes=0 purged_bytes=0 swapped_in_bytes=0 mem_free_bytes=123 mem_available_bytes=456 swap_free_bytes=789
//! ```
//!
//! `t_ms` counts from the start of the run; the shrinker counters are the
//! absolute values of the kernel's debugfs file (absent on kernels without
//! it); memory figures come from `/proc/meminfo`. The format is one line of
//! `key=value` words so that a host can parse it out of a console log with
//! other text around it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::sysinfo;

/// The line prefix.
pub const PREFIX: &str = "VUGPU-PROGRESS";

/// Phase names, indexed by [`set_phase`]'s argument.
pub const PHASES: [&str; 7] = [
    "start", "fill", "pressure", "settle", "reuse", "teardown", "done",
];

/// The phase the workload is in (index into [`PHASES`]).
static PHASE: AtomicUsize = AtomicUsize::new(0);

/// The running sampler thread, woken on every phase change.
static SAMPLER: Mutex<Option<Thread>> = Mutex::new(None);

/// Records the current phase (a name from [`PHASES`]; others are ignored)
/// and has the sampler print a line right away, so that the first line of
/// a phase carries the counters at its start.
pub fn set_phase(name: &str) {
    if let Some(i) = PHASES.iter().position(|p| *p == name) {
        PHASE.store(i, Ordering::Relaxed);
        if let Ok(s) = SAMPLER.lock() {
            if let Some(t) = s.as_ref() {
                t.unpark();
            }
        }
    }
}

/// Shrinker counters the line carries.
const SHRINKER_KEYS: [&str; 3] = ["evicted_bytes", "purged_bytes", "swapped_in_bytes"];

/// Formats one progress line (without newline).
pub fn line(
    t: Duration,
    phase: &str,
    shrinker: Option<&sysinfo::Counters>,
    meminfo: &str,
) -> String {
    let mut out = format!("{PREFIX} t_ms={} phase={phase}", t.as_millis());
    if let Some(c) = shrinker {
        for k in SHRINKER_KEYS {
            if let Some(v) = c.get(k) {
                let _ = write!(out, " {k}={v}");
            }
        }
    }
    for (name, key) in [
        ("MemFree", "mem_free_bytes"),
        ("MemAvailable", "mem_available_bytes"),
        ("SwapFree", "swap_free_bytes"),
    ] {
        if let Some(v) = meminfo_bytes(meminfo, name) {
            let _ = write!(out, " {key}={v}");
        }
    }
    out
}

/// One `/proc/meminfo` field in bytes.
fn meminfo_bytes(text: &str, field: &str) -> Option<u64> {
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    let mut it = rest.split_whitespace();
    let v: u64 = it.next()?.parse().ok()?;
    Some(match it.next() {
        Some("kB") => v.saturating_mul(1024),
        _ => v,
    })
}

/// The running sampler; stops (and prints a last line) when dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts printing a line every `period`.
    pub fn start(period: Duration, shrinker_file: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let started = Instant::now();
        let thread = thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || loop {
                let done = flag.load(Ordering::Relaxed);
                let shrinker = sysinfo::read_shrinker(&shrinker_file);
                let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
                let phase = PHASES
                    .get(PHASE.load(Ordering::Relaxed))
                    .copied()
                    .unwrap_or("?");
                eprintln!(
                    "{}",
                    line(started.elapsed(), phase, shrinker.as_ref(), &meminfo)
                );
                if done {
                    break;
                }
                thread::park_timeout(period);
            })
            .inspect_err(|e| eprintln!("vugpu-workload: no progress lines: {e}"))
            .ok();
        if let (Ok(mut s), Some(t)) = (SAMPLER.lock(), thread.as_ref()) {
            *s = Some(t.thread().clone());
        }
        Self { stop, thread }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut s) = SAMPLER.lock() {
            *s = None;
        }
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_line_carries_shrinker_and_meminfo_fields() {
        let mut c = sysinfo::Counters::new();
        c.insert("evicted_bytes".to_owned(), 8192);
        c.insert("evicted_objects".to_owned(), 2);
        let meminfo = "MemTotal: 100 kB\nMemFree:  2 kB\nMemAvailable: 3 kB\nSwapFree: 4 kB\n";

        let l = line(Duration::from_millis(1500), "fill", Some(&c), meminfo);

        assert_eq!(
            l,
            "VUGPU-PROGRESS t_ms=1500 phase=fill evicted_bytes=8192 mem_free_bytes=2048 mem_available_bytes=3072 swap_free_bytes=4096"
        );
    }

    #[test]
    fn test_line_without_shrinker_has_memory_only() {
        let l = line(Duration::ZERO, "start", None, "MemFree: 1 kB\n");

        assert_eq!(l, "VUGPU-PROGRESS t_ms=0 phase=start mem_free_bytes=1024");
    }
}
