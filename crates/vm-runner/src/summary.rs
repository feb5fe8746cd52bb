//! Per-scenario figures and the run summary (`summary.json` plus a table on
//! stdout).

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::guest::Report;
use crate::prom::Metrics;
use crate::verdict::{Outcome, Verdict};

const MIB: f64 = 1048576.0;

/// Numbers extracted from one scenario's guest report and host metrics.
/// Every field is optional: absent when the source did not provide it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Guest RAM as the guest saw it (MemTotal).
    pub guest_ram_bytes: Option<u64>,
    /// Swap the guest had.
    pub swap_total_bytes: Option<u64>,
    /// Number of buffer objects created.
    pub objects: Option<u64>,
    /// Their total size.
    pub object_bytes: Option<u64>,
    /// Bytes the shrinker evicted.
    pub evicted_bytes: Option<u64>,
    /// Bytes the shrinker purged.
    pub purged_bytes: Option<u64>,
    /// Bytes swapped back in.
    pub swapped_in_bytes: Option<u64>,
    /// Bytes verified after reuse.
    pub verified_bytes: Option<u64>,
    /// Eviction throughput: evicted bytes over the fill + pressure phase
    /// time (eviction starts as soon as the objects outgrow RAM during the
    /// fill; with `--pressure-mib 0` there is no separate pressure phase).
    pub evict_mib_per_s: Option<f64>,
    /// Swap-in throughput: swapped-in bytes over the reuse/verify phase time.
    pub swap_in_mib_per_s: Option<f64>,
    /// OOM kills during the workload.
    pub oom_kills: Option<u64>,
    /// Workload killed by this signal (baseline).
    pub killed_by_signal: Option<u64>,
    /// Guest-side DETACH_BACKING commands sent (workload delta).
    pub guest_detach_cmds: Option<u64>,
    /// Guest-side ATTACH_BACKING commands sent (workload delta).
    pub guest_attach_cmds: Option<u64>,
    /// Host-side successful DETACH_BACKING.
    pub host_detach: Option<u64>,
    /// Host-side successful ATTACH_BACKING.
    pub host_attach: Option<u64>,
    /// Host-side refused guest-memory accesses.
    pub host_refused_accesses: Option<u64>,
    /// Host bytes ever attached as backing.
    pub host_attached_bytes_total: Option<u64>,
    /// Host bytes detached.
    pub host_detached_bytes_total: Option<u64>,
    /// Host resources created.
    pub host_resources_created: Option<u64>,
    /// Host fences completed.
    pub host_fences_completed: Option<u64>,
    /// Host error responses of every kind.
    pub host_command_errors: Option<u64>,
    /// Host resources destroyed.
    pub host_resources_destroyed: Option<u64>,
    /// DETACH latency p50 in microseconds (histogram estimate).
    pub detach_p50_us: Option<f64>,
    /// DETACH latency p90 in microseconds (histogram estimate).
    pub detach_p90_us: Option<f64>,
    /// DETACH latency p99 in microseconds (histogram estimate).
    pub detach_p99_us: Option<f64>,
    /// Workload phase times in milliseconds, as reported.
    pub phases_ms: Option<Value>,
    /// `swap-ratio`: BO/anonymous pages per second written to swap.
    pub swap_written_ratio: Option<f64>,
    /// `swap-ratio`: BO/anonymous pages per second read from swap.
    pub swap_read_ratio: Option<f64>,
    /// `swap-ratio`: PSI memory `full` stall of the anonymous write phase, ms.
    pub anon_write_stall_ms: Option<f64>,
    /// `swap-ratio`: the same for the BO write phase (target: no more
    /// than the anonymous one).
    pub bo_write_stall_ms: Option<f64>,
    /// `swap-ratio`: PSI memory `full` stall of the anonymous read phase, ms.
    pub anon_read_stall_ms: Option<f64>,
    /// `swap-ratio`: the same for the BO read phase.
    pub bo_read_stall_ms: Option<f64>,
    /// `swap-ratio`: share of the evictable object bytes reclaimed under
    /// pressure, percent.
    pub reclaimed_under_pressure_pct: Option<f64>,
}

fn throughput(bytes: Option<u64>, ms: Option<u64>) -> Option<f64> {
    match (bytes, ms) {
        (Some(b), Some(ms)) if ms > 0 && b > 0 => Some(b as f64 / MIB / (ms as f64 / 1000.0)),
        _ => None,
    }
}

fn count(m: Option<&Metrics>, name: &str) -> Option<u64> {
    m.and_then(|m| m.value(name)).map(|v| v as u64)
}

impl Figures {
    /// Extracts the figures; missing inputs leave fields empty.
    pub fn collect(report: Option<&Value>, metrics: Option<&Metrics>) -> Self {
        let mut f = Self::default();
        if let Some(v) = report {
            let r = Report(v);
            let u = |p: &str| r.opt_u64(p).ok().flatten();
            f.guest_ram_bytes = u("ram_bytes");
            f.swap_total_bytes = u("swap_total_bytes");
            f.objects = u("objects");
            f.object_bytes = u("object_bytes_total");
            f.evicted_bytes = u("shrinker.evicted_bytes");
            f.purged_bytes = u("shrinker.purged_bytes");
            f.swapped_in_bytes = u("shrinker.swapped_in_bytes");
            f.verified_bytes = u("verified_bytes");
            f.oom_kills = u("vmstat.oom_kill");
            f.killed_by_signal = r.killed_by_signal();
            f.guest_detach_cmds = u("shrinker.detach_backing_cmds");
            f.guest_attach_cmds = u("shrinker.attach_backing_cmds");
            let fill_pressure = match (u("phases_ms.fill"), u("phases_ms.pressure")) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            };
            f.evict_mib_per_s = throughput(f.evicted_bytes, fill_pressure);
            f.swap_in_mib_per_s = throughput(f.swapped_in_bytes, u("phases_ms.reuse_verify"));
            f.phases_ms = r.get("phases_ms").cloned();
            let x = |p: &str| r.get(p).and_then(Value::as_f64);
            let ms = |p: &str| x(p).map(|us| us / 1000.0);
            f.swap_written_ratio = x("swap_ratio.written_ratio");
            f.swap_read_ratio = x("swap_ratio.read_ratio");
            f.anon_write_stall_ms = ms("swap_ratio.anon.write_psi.full_stall_us");
            f.bo_write_stall_ms = ms("swap_ratio.bo.write_psi.full_stall_us");
            f.anon_read_stall_ms = ms("swap_ratio.anon.read_psi.full_stall_us");
            f.bo_read_stall_ms = ms("swap_ratio.bo.read_psi.full_stall_us");
            f.reclaimed_under_pressure_pct = x("swap_ratio.reclaim.reclaimed_under_pressure_pct");
        }
        f.host_detach = count(metrics, "vugpu_detach_backing_total");
        f.host_attach = count(metrics, "vugpu_attach_backing_total");
        f.host_refused_accesses = count(metrics, "vugpu_refused_guest_accesses_total");
        f.host_resources_destroyed = count(metrics, "vugpu_resources_destroyed_total");
        f.host_attached_bytes_total = count(metrics, "vugpu_attached_bytes_total");
        f.host_detached_bytes_total = count(metrics, "vugpu_detached_bytes_total");
        f.host_resources_created = count(metrics, "vugpu_resources_created_total");
        f.host_fences_completed = count(metrics, "vugpu_fences_completed_total");
        f.host_command_errors = metrics
            .and_then(|m| m.sum("vugpu_command_errors_total"))
            .map(|v| v as u64);
        if let Some(h) = metrics.and_then(|m| m.histogram("vugpu_detach_latency_seconds")) {
            f.detach_p50_us = h.quantile(0.5).map(|s| s * 1e6);
            f.detach_p90_us = h.quantile(0.9).map(|s| s * 1e6);
            f.detach_p99_us = h.quantile(0.99).map(|s| s * 1e6);
        }
        f
    }
}

/// One scenario's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioSummary {
    /// Scenario name.
    pub scenario: String,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The guest's own status line (`PASS ...`/`FAIL ...`).
    pub guest_status: Option<String>,
    /// Accelerator used.
    pub accel: String,
    /// Guest RAM configured, MiB.
    pub mem_mib: u32,
    /// Wall time of the scenario, seconds.
    pub wall_secs: f64,
    /// Where its artifacts are.
    pub run_dir: String,
    /// Extracted numbers.
    pub figures: Figures,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `true` when no scenario failed.
    pub passed: bool,
    /// Accelerator and how it was chosen.
    pub accel: String,
    /// Why that accelerator.
    pub accel_reason: String,
    /// Total wall time, seconds.
    pub wall_secs: f64,
    /// The run directory.
    pub run_dir: String,
    /// Per scenario.
    pub scenarios: Vec<ScenarioSummary>,
}

fn mib(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |b| format!("{:.0}", b as f64 / MIB))
}

fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"))
}

impl Summary {
    /// Renders the human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let skipped = self
            .scenarios
            .iter()
            .filter(|s| s.verdict.outcome == Outcome::Skipped)
            .count();
        let verdict = match (self.passed, skipped) {
            (false, _) => "FAIL".to_owned(),
            (true, 0) => "PASS".to_owned(),
            (true, n) => format!("PASS with {n} SKIPPED"),
        };
        let _ = writeln!(
            out,
            "== vugpu-vm summary: {} (accel {}: {}), {:.0} s, {}",
            verdict, self.accel, self.accel_reason, self.wall_secs, self.run_dir
        );
        let _ = writeln!(
            out,
            "{:<13} {:<8} {:>5} {:>5} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>4} {:>11} {:>11} {:>17}",
            "scenario", "result", "wall", "ram", "objMiB", "evict", "purge", "swapin",
            "evMiB/s", "inMiB/s", "oom", "host D/A", "guest D/A", "detach p50/90/99us"
        );
        for s in &self.scenarios {
            let f = &s.figures;
            let _ = writeln!(
                out,
                "{:<13} {:<8} {:>4.0}s {:>5} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>4} {:>11} {:>11} {:>17}",
                s.scenario,
                format!("{:?}", s.verdict.outcome).to_lowercase(),
                s.wall_secs,
                mib(f.guest_ram_bytes),
                mib(f.object_bytes),
                mib(f.evicted_bytes),
                mib(f.purged_bytes),
                mib(f.swapped_in_bytes),
                rate(f.evict_mib_per_s),
                rate(f.swap_in_mib_per_s),
                num(f.oom_kills),
                format!("{}/{}", num(f.host_detach), num(f.host_attach)),
                format!("{}/{}", num(f.guest_detach_cmds), num(f.guest_attach_cmds)),
                format!("{}/{}/{}", us(f.detach_p50_us), us(f.detach_p90_us), us(f.detach_p99_us)),
            );
        }
        for s in &self.scenarios {
            let f = &s.figures;
            if f.host_attach.is_some() {
                let _ = writeln!(
                    out,
                    "  {} host: attach {} ({} MiB), detach {} ({} MiB), resources {} created / {} destroyed, \
                     fences {}, error responses {}, refused accesses {}",
                    s.scenario,
                    num(f.host_attach),
                    mib(f.host_attached_bytes_total),
                    num(f.host_detach),
                    mib(f.host_detached_bytes_total),
                    num(f.host_resources_created),
                    num(f.host_resources_destroyed),
                    num(f.host_fences_completed),
                    num(f.host_command_errors),
                    num(f.host_refused_accesses),
                );
            }
            for fail in &s.verdict.failures {
                let _ = writeln!(out, "  {} FAIL: {fail}", s.scenario);
            }
            for note in &s.verdict.notes {
                let _ = writeln!(out, "  {} note: {note}", s.scenario);
            }
            if let Some(g) = &s.guest_status {
                let _ = writeln!(out, "  {} guest: {g}", s.scenario);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn test_figures_throughput_from_phase_time() {
        let report = json!({
            "shrinker": {"evicted_bytes": 100 * 1048576_u64, "swapped_in_bytes": 50 * 1048576_u64},
            "phases_ms": {"fill": 1500, "pressure": 500, "reuse_verify": 0}
        });

        let f = Figures::collect(Some(&report), None);

        assert_eq!(f.evict_mib_per_s, Some(50.0));
        assert_eq!(f.swap_in_mib_per_s, None);
    }

    #[test]
    fn test_figures_detach_percentiles_in_microseconds() {
        let m = Metrics::parse(
            "vugpu_detach_latency_seconds_bucket{le=\"0.0001\"} 10\n\
             vugpu_detach_latency_seconds_bucket{le=\"+Inf\"} 10\n\
             vugpu_detach_latency_seconds_count 10\n",
        )
        .expect("valid");

        let f = Figures::collect(None, Some(&m));

        let p50 = f.detach_p50_us.expect("estimated");
        assert!((p50 - 50.0).abs() < 1e-6, "{p50}");
    }
}
