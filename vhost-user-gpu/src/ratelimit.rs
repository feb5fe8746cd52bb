//! Rate limiting of guest-triggered log messages.
//!
//! A guest can send millions of bad commands per second; logging each one
//! would let it fill the host's disk. [`LogLimiter`] lets at most
//! `burst` messages through per one-second window and reports how many it
//! suppressed when the next window opens.

use std::time::{Duration, Instant};

/// Length of one rate-limiting window.
const WINDOW: Duration = Duration::from_secs(1);

/// Admits at most `burst` messages per second.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

/// The verdict for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log it; `suppressed` messages were dropped since the last one logged.
    Yes {
        /// Messages dropped before this one.
        suppressed: u64,
    },
    /// Drop it.
    No,
}

impl LogLimiter {
    /// A limiter admitting `burst` messages per second.
    pub const fn new(burst: u32) -> Self {
        Self {
            burst,
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Decides about a message arriving at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if expired {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.burst {
            self.in_window += 1;
            let suppressed = std::mem::take(&mut self.suppressed);
            Admit::Yes { suppressed }
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            Admit::No
        }
    }
}

/// Logs at `warn` level through `limiter`, appending the suppressed count.
#[macro_export]
macro_rules! guest_warn {
    ($limiter:expr, $($arg:tt)+) => {
        match $limiter.admit(std::time::Instant::now()) {
            $crate::ratelimit::Admit::Yes { suppressed: 0 } => log::warn!($($arg)+),
            $crate::ratelimit::Admit::Yes { suppressed } => {
                log::warn!($($arg)+);
                log::warn!("vhost-user-gpu: {suppressed} similar guest errors were not logged");
            }
            $crate::ratelimit::Admit::No => {}
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_log_limiter_burst_exceeded_drops_messages() {
        let mut limiter = LogLimiter::new(2);
        let t0 = Instant::now();

        let verdicts = [limiter.admit(t0), limiter.admit(t0), limiter.admit(t0)];

        assert_eq!(
            verdicts,
            [
                Admit::Yes { suppressed: 0 },
                Admit::Yes { suppressed: 0 },
                Admit::No
            ]
        );
    }

    #[test]
    fn test_log_limiter_next_window_reports_suppressed_count() {
        let mut limiter = LogLimiter::new(1);
        let t0 = Instant::now();
        limiter.admit(t0);
        limiter.admit(t0);
        limiter.admit(t0);

        let verdict = limiter.admit(t0 + WINDOW);

        assert_eq!(verdict, Admit::Yes { suppressed: 2 });
    }
}
