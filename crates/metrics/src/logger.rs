//! Periodic JSON log lines.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{Metrics, MetricsError};

/// `log` target of the metrics lines, so they can be filtered with
/// `RUST_LOG=vugpu::metrics=info`.
pub const LOG_TARGET: &str = "vugpu::metrics";

/// Shortest accepted interval; shorter ones (including zero) are raised to
/// it so that a typo cannot turn the logger into a busy loop.
pub const MIN_LOG_INTERVAL: Duration = Duration::from_millis(10);

/// A running metrics logger; stops (after one final line) when dropped.
#[derive(Debug)]
pub struct LoggerHandle {
    /// Dropping the sender wakes the thread and tells it to stop.
    stop: Option<Sender<()>>,
    /// The logger thread, `None` once joined.
    thread: Option<JoinHandle<()>>,
}

/// Starts a thread that logs [`Metrics::json_line`] at `info` level with
/// target [`LOG_TARGET`] every `interval` (at least [`MIN_LOG_INTERVAL`]),
/// on a fixed schedule that does not drift with logging time, plus one
/// final line when the handle is dropped, so that even a run shorter than
/// the interval leaves its totals in the log.
///
/// # Errors
/// [`MetricsError::SpawnThread`] if the thread cannot be created.
pub fn spawn_logger(
    interval: Duration,
    metrics: Arc<Metrics>,
) -> Result<LoggerHandle, MetricsError> {
    let interval = interval.max(MIN_LOG_INTERVAL);
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = thread::Builder::new()
        .name("vugpu-metrics-log".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            loop {
                let wait = next.saturating_duration_since(Instant::now());
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {
                        log::info!(target: LOG_TARGET, "{}", metrics.json_line());
                        next += interval;
                        // After a stall (suspended process), skip missed
                        // ticks instead of logging a burst.
                        let now = Instant::now();
                        if next <= now {
                            next = now + interval;
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                        log::info!(target: LOG_TARGET, "{}", metrics.json_line());
                        return;
                    }
                }
            }
        })
        .map_err(|source| MetricsError::SpawnThread {
            name: "vugpu-metrics-log",
            source,
        })?;
    Ok(LoggerHandle {
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl Drop for LoggerHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::warn!("metrics: the logger thread panicked");
            }
        }
    }
}
