//! Fixed-bucket latency histogram with lock-free recording.
//!
//! The bucket bounds are chosen for `RESOURCE_DETACH_BACKING` completion
//! latency: a detach that only drops host references takes microseconds, one
//! that waits for the renderer or a display flush may take milliseconds, and
//! anything beyond a second is a bug worth seeing in the `+Inf` bucket. The
//! microsecond range is split finely (2.5 µs steps up to 25 µs) so that a
//! p99 estimated from the buckets can be compared with a 20 µs target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the finite buckets, in nanoseconds, with the `le` label
/// value (seconds) that the Prometheus and JSON renderers print for each.
///
/// The labels are written out by hand instead of formatted from floats so
/// that they are exact and identical in both renderers.
pub const DETACH_LATENCY_BUCKETS: [(u64, &str); 19] = [
    (2_500, "0.0000025"),
    (5_000, "0.000005"),
    (7_500, "0.0000075"),
    (10_000, "0.00001"),
    (15_000, "0.000015"),
    (20_000, "0.00002"),
    (25_000, "0.000025"),
    (35_000, "0.000035"),
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (100_000_000, "0.1"),
    (1_000_000_000, "1"),
];

/// `le` label of the bucket that counts every observation.
pub const INF_LABEL: &str = "+Inf";

/// Number of stored slots: the finite buckets plus one overflow slot.
const SLOTS: usize = DETACH_LATENCY_BUCKETS.len() + 1;

/// A latency histogram with the fixed bounds of [`DETACH_LATENCY_BUCKETS`].
///
/// Each observation increments exactly one (non-cumulative) slot and adds its
/// duration to a nanosecond sum, both with `Relaxed` atomics: recording never
/// locks and never allocates. Snapshots derive the cumulative counts and the
/// total count from the slots, so `+Inf` always equals `_count` and the
/// buckets are always non-decreasing even while a writer is recording.
#[derive(Debug)]
pub struct Histogram {
    /// Observations per slot; the last slot holds those above the largest
    /// finite bound.
    slots: [AtomicU64; SLOTS],
    /// Sum of all observations in nanoseconds (saturating at `u64::MAX`,
    /// about 584 years).
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Creates an empty histogram.
    pub const fn new() -> Self {
        Self {
            slots: [const { AtomicU64::new(0) }; SLOTS],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, latency: Duration) {
        // Durations beyond u64 nanoseconds (584 years) saturate.
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let slot = DETACH_LATENCY_BUCKETS
            .iter()
            .position(|&(bound, _)| ns <= bound)
            .unwrap_or(SLOTS - 1);
        self.slots[slot].fetch_add(1, Ordering::Relaxed);
        saturating_add(&self.sum_ns, ns);
    }

    /// Returns the cumulative bucket counts, sum and count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(SLOTS);
        for (i, slot) in self.slots.iter().enumerate() {
            cumulative = cumulative.saturating_add(slot.load(Ordering::Relaxed));
            let le = DETACH_LATENCY_BUCKETS
                .get(i)
                .map_or(INF_LABEL, |&(_, label)| label);
            buckets.push(HistogramBucket {
                le,
                count: cumulative,
            });
        }
        let sum_ns = self.sum_ns.load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            sum_ns,
            sum_seconds: ns_to_seconds(sum_ns),
            count: cumulative,
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// One cumulative bucket of a [`HistogramSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramBucket {
    /// Upper bound in seconds as printed in the `le` label (`"+Inf"` for the
    /// last bucket).
    pub le: &'static str,
    /// Number of observations less than or equal to the bound.
    pub count: u64,
}

/// Point-in-time copy of a [`Histogram`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramSnapshot {
    /// Cumulative buckets in increasing bound order, ending with `+Inf`.
    pub buckets: Vec<HistogramBucket>,
    /// Sum of all observations in nanoseconds (exact).
    pub sum_ns: u64,
    /// Sum of all observations in seconds (`sum_ns / 1e9`).
    pub sum_seconds: f64,
    /// Number of observations (equal to the `+Inf` bucket).
    pub count: u64,
}

/// Adds `value` to `counter`, saturating at `u64::MAX` instead of wrapping.
pub(crate) fn saturating_add(counter: &AtomicU64, value: u64) {
    // The closure always returns Some, so fetch_update cannot fail.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_add(value))
    });
}

/// Subtracts `value` from `counter`, saturating at zero instead of wrapping.
pub(crate) fn saturating_sub(counter: &AtomicU64, value: u64) {
    // The closure always returns Some, so fetch_update cannot fail.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(value))
    });
}

/// Converts nanoseconds to seconds for display.
#[allow(clippy::cast_precision_loss)] // Display only; exact value is in sum_ns.
fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_histogram_observation_on_bound_lands_in_that_bucket() {
        // Arrange: 1 ms exactly is the bound of the "0.001" bucket (le = <=).
        let h = Histogram::new();

        // Act
        h.observe(Duration::from_millis(1));

        // Assert
        let snap = h.snapshot();
        let le_500us = snap.buckets.iter().find(|b| b.le == "0.0005");
        let le_1ms = snap.buckets.iter().find(|b| b.le == "0.001");
        assert_eq!(le_500us.map(|b| b.count), Some(0));
        assert_eq!(le_1ms.map(|b| b.count), Some(1));
        assert_eq!(snap.sum_ns, 1_000_000);
    }

    #[test]
    fn test_histogram_observation_above_largest_bound_counts_only_in_inf() {
        // Arrange
        let h = Histogram::new();

        // Act: 2 s is above the largest finite bound (1 s).
        h.observe(Duration::from_secs(2));

        // Assert
        let snap = h.snapshot();
        let finite_total: u64 = snap.buckets[..snap.buckets.len() - 1]
            .iter()
            .map(|b| b.count)
            .sum();
        assert_eq!(finite_total, 0);
        assert_eq!(
            snap.buckets.last(),
            Some(&HistogramBucket {
                le: "+Inf",
                count: 1
            })
        );
        assert_eq!(snap.count, 1);
    }

    #[test]
    fn test_histogram_huge_duration_saturates_sum() {
        // Arrange
        let h = Histogram::new();

        // Act: Duration::MAX does not fit u64 nanoseconds; two of them would
        // wrap a plain fetch_add.
        h.observe(Duration::MAX);
        h.observe(Duration::MAX);

        // Assert
        assert_eq!(h.snapshot().sum_ns, u64::MAX);
    }

    #[test]
    fn test_bucket_labels_match_bounds() {
        // Arrange / Act: parse every hand-written label back to nanoseconds.
        let parsed: Vec<u64> = DETACH_LATENCY_BUCKETS
            .iter()
            .map(|&(_, label)| {
                let secs: f64 = label.parse().expect("label is a float");
                (secs * 1e9).round() as u64
            })
            .collect();

        // Assert
        let bounds: Vec<u64> = DETACH_LATENCY_BUCKETS.iter().map(|&(b, _)| b).collect();
        assert_eq!(parsed, bounds);
    }
}
