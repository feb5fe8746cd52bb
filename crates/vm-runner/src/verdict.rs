//! Scenario verdicts: pure functions from the collected evidence (guest
//! status and report, host metrics, screendump) to pass/fail with reasons.
//!
//! Every check records a failure message naming the values it saw, so a
//! failing run explains itself in `summary.json`. Harness-level failures
//! (timeouts, crashes, daemon exit status) are added by the runner on top.

use serde::Serialize;
use serde_json::Value;

use crate::digest::{self, DeviceRead};
use crate::guest::{GuestStatus, Report};
use crate::prom::Metrics;
use crate::scenario::Fault;
pub use crate::scenario::PressureKind;

/// What a screendump showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScreenCheck {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Number of distinct colours seen (capped by the PPM reader).
    pub distinct_colours: usize,
}

/// Inputs of a verdict.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evidence<'a> {
    /// The guest's `VUGPU-STATUS` line, if it wrote one.
    pub status: Option<&'a GuestStatus>,
    /// The guest's `VUGPU-RESULT` JSON, or why there is none.
    pub report: Option<Result<&'a Value, &'a str>>,
    /// The daemon's metrics, scraped before it was stopped.
    pub metrics: Option<&'a Metrics>,
    /// The screendump, or why it could not be taken.
    pub screen: Option<Result<&'a ScreenCheck, &'a str>>,
    /// The guest console's first out-of-memory line (`Out of memory: ...`,
    /// `... deadlocked on memory`), if any.
    pub console_oom: Option<&'a str>,
    /// The daemon's digest log of guest-memory reads, or why there is none
    /// (`None` when the scenario does not check content).
    pub device_reads: Option<Result<&'a [DeviceRead], &'a str>>,
}

/// Result class of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every check held.
    Pass,
    /// A baseline whose expected failure mode was observed and recorded.
    Recorded,
    /// Not run because the host cannot provide what it needs (the reason
    /// is in the notes); counts as a failure with `--strict`.
    Skipped,
    /// At least one check failed.
    Fail,
}

/// A verdict with its reasons.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// Pass, recorded or fail.
    pub outcome: Outcome,
    /// Why it failed (empty when it did not).
    pub failures: Vec<String>,
    /// Observations worth reporting that are not failures.
    pub notes: Vec<String>,
}

impl Verdict {
    /// `true` unless the outcome is [`Outcome::Fail`].
    pub fn ok(&self) -> bool {
        self.outcome != Outcome::Fail
    }

    /// A scenario that could not run on this host.
    pub fn skipped(reason: String) -> Self {
        Self {
            outcome: Outcome::Skipped,
            failures: Vec::new(),
            notes: vec![reason],
        }
    }

    /// Adds a failure found outside the verdict function (harness level).
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.failures.push(reason.into());
        self.outcome = Outcome::Fail;
    }
}

/// Accumulates failures and notes.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Checks {
    fn require(&mut self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.failures.push(msg());
        }
    }

    /// Unwraps an accessor result, recording its error as a failure.
    fn take<T>(&mut self, value: Result<T, String>) -> Option<T> {
        value.map_err(|e| self.failures.push(e)).ok()
    }

    fn note(&mut self, msg: String) {
        self.notes.push(msg);
    }

    fn finish(self, success: Outcome) -> Verdict {
        let outcome = if self.failures.is_empty() {
            success
        } else {
            Outcome::Fail
        };
        Verdict {
            outcome,
            failures: self.failures,
            notes: self.notes,
        }
    }

    /// The guest must have reported `PASS`.
    fn guest_passed(&mut self, ev: &Evidence<'_>) {
        match ev.status {
            None => self
                .failures
                .push("guest never reported VUGPU-STATUS".to_owned()),
            Some(s) if !s.pass => self
                .failures
                .push(format!("guest reported FAIL: {}", s.reason)),
            Some(_) => {}
        }
    }

    /// The guest's report, or a failure saying why there is none.
    fn report<'a>(&mut self, ev: &Evidence<'a>) -> Option<Report<'a>> {
        match ev.report {
            None => {
                self.failures
                    .push("guest wrote no VUGPU-RESULT line".to_owned());
                None
            }
            Some(Err(e)) => {
                self.failures.push(e.to_owned());
                None
            }
            Some(Ok(v)) => Some(Report(v)),
        }
    }

    fn metrics<'a>(&mut self, ev: &Evidence<'a>) -> Option<&'a Metrics> {
        if ev.metrics.is_none() {
            self.failures
                .push("no daemon metrics were scraped".to_owned());
        }
        ev.metrics
    }
}

/// `smoke`: the guest booted and drew its console through the daemon.
///
/// The screendump must have the daemon's display size (`expected`): QEMU
/// shows a 640x480 two-colour placeholder ("display not initialized") until
/// a scanout is set, which must not count as a drawn console.
pub fn smoke(ev: &Evidence<'_>, expected: (u32, u32)) -> Verdict {
    let mut c = Checks::default();
    c.guest_passed(ev);
    if let Some(m) = c.metrics(ev) {
        for cmd in ["set_scanout", "resource_flush", "transfer_to_host_2d"] {
            let n = m.command(cmd).unwrap_or(0.0);
            c.require(n >= 1.0, || {
                format!("daemon saw no {cmd} command (vugpu_commands_total{{cmd=\"{cmd}\"}} = {n})")
            });
        }
        let refused = m.value("vugpu_refused_guest_accesses_total");
        c.require(refused == Some(0.0), || {
            format!("vugpu_refused_guest_accesses_total = {refused:?}, expected 0")
        });
    }
    match ev.screen {
        None => c.failures.push("no screendump was taken".to_owned()),
        Some(Err(e)) => c.failures.push(format!("screendump failed: {e}")),
        Some(Ok(s)) => {
            c.require((s.width, s.height) == expected, || {
                format!(
                    "screendump is {}x{}, not the daemon's {}x{} scanout (QEMU placeholder?)",
                    s.width, s.height, expected.0, expected.1
                )
            });
            c.require(s.distinct_colours > 1, || {
                format!(
                    "screendump {}x{} is uniformly one colour: nothing was drawn",
                    s.width, s.height
                )
            });
            c.note(format!(
                "screendump {}x{} with {} distinct colours",
                s.width, s.height, s.distinct_colours
            ));
        }
    }
    c.finish(Outcome::Pass)
}

/// Adds the display checks of [`smoke`] (the daemon drew commands, the
/// screenshot has the daemon's size and more than one colour) to the
/// verdict of a scenario that also takes screenshots (`libvirt`, through
/// `virsh screenshot`); checks already in `v` are not repeated.
pub fn display(v: &mut Verdict, ev: &Evidence<'_>, expected: (u32, u32)) {
    let screen = smoke(ev, expected);
    for f in screen.failures {
        if !v.failures.contains(&f) {
            v.fail(f);
        }
    }
    for n in screen.notes {
        if !v.notes.contains(&n) {
            v.notes.push(n);
        }
    }
}

/// `evict` (and `blob` with [`PressureKind::Blob`]): objects larger than
/// guest RAM were evicted to swap and swapped back in intact, and the host
/// saw exactly the DETACH/ATTACH traffic the guest sent.
pub fn evict(ev: &Evidence<'_>, kind: PressureKind) -> Verdict {
    let mut c = Checks::default();
    c.guest_passed(ev);
    if let Some(r) = c.report(ev) {
        check_kind(&mut c, r, kind);
        check_pressure_workload(&mut c, r);
        check_shrinker_evicted(&mut c, r);
        if let Some(m) = c.metrics(ev) {
            check_host_matches_guest(&mut c, r, m);
        }
    }
    c.finish(Outcome::Pass)
}

/// Bytes per MiB, for messages.
const MIB_F64: f64 = 1048576.0;

/// Share of the evictable object bytes that memory pressure must reclaim
/// in the `swap-ratio` reclaim check (issue 9), percent.
pub const MIN_RECLAIMED_PCT: f64 = 95.0;

/// `swap-ratio`: the 2D evict checks, plus the workload's `swap_ratio`
/// figures (pages moved and phase times of anonymous memory and of the
/// objects, both ratios, the PSI memory stall of each phase), and its
/// reclaim check: at least [`MIN_RECLAIMED_PCT`] of the evictable object
/// bytes reclaimed under pressure. The throughput and stall ratios go into
/// the notes (targets, not checks).
pub fn swap_ratio(ev: &Evidence<'_>) -> Verdict {
    let mut v = evict(ev, PressureKind::TwoD);
    let Some(Ok(report)) = ev.report else {
        return v;
    };
    let r = Report(report);
    let mut missing = Vec::new();
    let mut num = |path: String| {
        let x = r.get(&path).and_then(Value::as_f64);
        if x.is_none() {
            missing.push(path);
        }
        x
    };
    let mut rates = Vec::new();
    for kind in ["anon", "bo"] {
        let mut f = |k: &str| num(format!("swap_ratio.{kind}.{k}"));
        let (wp, ws, rp, rs) = (
            f("written_pages"),
            f("write_secs"),
            f("read_pages"),
            f("read_secs"),
        );
        rates.push(format!(
            "{kind} {:.0} pages out in {:.2} s, {:.0} pages in in {:.2} s",
            wp.unwrap_or(0.0),
            ws.unwrap_or(0.0),
            rp.unwrap_or(0.0),
            rs.unwrap_or(0.0)
        ));
    }
    // The second anonymous pass, after the objects (optional).
    let opt = |path: &str| r.get(path).and_then(Value::as_f64);
    if r.get("swap_ratio.anon_after").is_some() {
        let f = |k: &str| opt(&format!("swap_ratio.anon_after.{k}")).unwrap_or(0.0);
        rates.push(format!(
            "anonymous again {:.0} pages out in {:.2} s, {:.0} pages in in {:.2} s, {:.2}x/{:.2}x the first pass",
            f("written_pages"),
            f("write_secs"),
            f("read_pages"),
            f("read_secs"),
            opt("swap_ratio.anon_after_written_ratio").unwrap_or(0.0),
            opt("swap_ratio.anon_after_read_ratio").unwrap_or(0.0)
        ));
    }
    let written = num("swap_ratio.written_ratio".to_owned());
    let read = num("swap_ratio.read_ratio".to_owned());
    // PSI: the stall of the allocating process per phase.
    let mut stall = Vec::new();
    for phase in ["write", "read"] {
        let mut us = |kind: &str| num(format!("swap_ratio.{kind}.{phase}_psi.full_stall_us"));
        let (a, b) = (us("anon"), us("bo"));
        // With a second anonymous pass, its mean with the first.
        let a = match opt(&format!("swap_ratio.anon_after.{phase}_psi.full_stall_us")) {
            Some(after) => a.map(|a| (a + after) / 2.0),
            None => a,
        };
        let secs = |kind: &str| {
            let first = opt(&format!("swap_ratio.{kind}.{phase}_secs")).unwrap_or(0.0);
            match opt(&format!("swap_ratio.{kind}_after.{phase}_secs")) {
                Some(after) => (first + after) / 2.0,
                None => first,
            }
        };
        if let (Some(a), Some(b)) = (a, b) {
            let verdict = if b <= a { "met" } else { "missed" };
            stall.push(format!(
                "{phase}: BO {:.0} ms vs anonymous {:.0} ms full stall (mean of the anonymous passes; {}; target BO <= anonymous {verdict}), phase time BO {:.2} s vs anonymous {:.2} s",
                b / 1000.0,
                a / 1000.0,
                if a > 0.0 { format!("{:.2}x", b / a) } else { "anonymous 0".to_owned() },
                secs("bo"),
                secs("anon")
            ));
        }
    }
    let evictable = num("swap_ratio.reclaim.evictable_bytes".to_owned());
    let under = num("swap_ratio.reclaim.resident_under_pressure_bytes".to_owned());
    let pct = num("swap_ratio.reclaim.reclaimed_under_pressure_pct".to_owned());
    if !missing.is_empty() {
        v.fail(format!("missing swap-ratio fields: {}", missing.join(", ")));
        return v;
    }
    v.notes.push(format!(
        "swap ratio BO/anonymous: {:.2}x pages/s written, {:.2}x pages/s read ({})",
        written.unwrap_or(0.0),
        read.unwrap_or(0.0),
        rates.join("; ")
    ));
    v.notes.push(format!(
        "BO stall vs anon stall (PSI memory full): {}",
        stall.join("; ")
    ));
    let (evictable, under, pct) = (
        evictable.unwrap_or(0.0),
        under.unwrap_or(0.0),
        pct.unwrap_or(0.0),
    );
    let scanned = r
        .get("swap_ratio.reclaim.resident_after_forced_scan_bytes")
        .and_then(Value::as_f64)
        .map_or_else(
            || {
                format!(
                    "no forced scan ({})",
                    r.str("swap_ratio.reclaim.forced_scan_error")
                        .unwrap_or("not reported")
                )
            },
            |b| {
                format!(
                    "{:.1} MiB resident after forced shrinker scans",
                    b / MIB_F64
                )
            },
        );
    let claim = format!(
        "reclaimed under pressure {pct:.1}% of {:.1} MiB evictable object bytes ({:.1} MiB still resident; target >= {MIN_RECLAIMED_PCT}%); {scanned}",
        evictable / MIB_F64,
        under / MIB_F64
    );
    if pct >= MIN_RECLAIMED_PCT {
        v.notes.push(claim);
    } else {
        v.fail(claim);
    }
    v
}

/// `qemu-builtin`, `reference`: the evict workload where the device has no
/// metrics of ours (QEMU's built-in device, QEMU's C daemon): guest-side
/// checks only.
pub fn guest_only(ev: &Evidence<'_>, kind: PressureKind) -> Verdict {
    let mut c = Checks::default();
    c.guest_passed(ev);
    if let Some(r) = c.report(ev) {
        check_kind(&mut c, r, kind);
        check_pressure_workload(&mut c, r);
        check_shrinker_evicted(&mut c, r);
    }
    c.finish(Outcome::Pass)
}

/// `purge`: objects marked DONTNEED were purged, reported as not retained,
/// and the host saw their resources released (RESOURCE_UNREF).
pub fn purge(ev: &Evidence<'_>) -> Verdict {
    let mut c = Checks::default();
    c.guest_passed(ev);
    if let Some(r) = c.report(ev) {
        check_pressure_workload(&mut c, r);
        let dontneed = c.take(r.u64("madvise.dontneed"));
        let purged = c.take(r.u64("madvise.purged"));
        let retained = c.take(r.u64("madvise.retained"));
        let shrinker_purged = c.take(r.u64("shrinker.purged_objects"));
        if let (Some(d), Some(p), Some(k)) = (dontneed, purged, retained) {
            c.require(d > 0, || "workload marked no object DONTNEED".to_owned());
            c.require(p > 0, || {
                format!("no DONTNEED object was purged ({d} marked, {k} retained)")
            });
            c.require(k.checked_add(p) == Some(d), || {
                format!("madvise.retained {k} + madvise.purged {p} != madvise.dontneed {d}")
            });
        }
        if let (Some(p), Some(sp)) = (purged, shrinker_purged) {
            c.require(p == sp, || {
                format!(
                    "the kernel purged {sp} objects but the workload saw {p} reported not retained"
                )
            });
        }
        // A purge releases the host resource too: the guest answers it with
        // a fenced RESOURCE_UNREF, counted on both sides.
        let guest_unref = c.take(r.u64("shrinker.unref_cmds"));
        if let (Some(sp), Some(gu)) = (shrinker_purged, guest_unref) {
            c.require(gu >= sp, || {
                format!("the guest purged {sp} objects but sent only {gu} RESOURCE_UNREF for them")
            });
        }
        if let Some(m) = c.metrics(ev) {
            check_host_matches_guest(&mut c, r, m);
            if let (Some(gu), Some(host)) = (guest_unref, m.command("resource_unref")) {
                c.require(host >= gu as f64, || {
                    format!("host saw {host} RESOURCE_UNREF but the guest purged with {gu}")
                });
            }
        }
    }
    c.finish(Outcome::Pass)
}

/// `baseline`: the unpatched kernel cannot reclaim pinned objects, so the
/// workload must end in an OOM kill or an allocation failure, and that must
/// be reported (a hang or silence fails).
pub fn baseline(ev: &Evidence<'_>) -> Verdict {
    let mut c = Checks::default();
    if ev.status.is_none() && ev.report.is_none() {
        // /init could not report: acceptable only when the kernel itself
        // logged the out-of-memory outcome (it OOM-killed the workload and
        // then, unable to free the pinned objects, panicked).
        match ev.console_oom {
            Some(line) => c.note(format!(
                "guest could not report; its kernel logged the OOM outcome: {line}"
            )),
            None => c.failures.push(
                "guest never reported VUGPU-STATUS and its console shows no OOM (hung or crashed)"
                    .to_owned(),
            ),
        }
        return c.finish(Outcome::Recorded);
    }
    if ev.status.is_none() {
        c.failures
            .push("guest never reported VUGPU-STATUS (hung or crashed)".to_owned());
    }
    if let Some(r) = c.report(ev) {
        if r.get("madvise_supported").and_then(Value::as_bool) == Some(true) {
            c.failures.push(
                "baseline kernel supports VIRTGPU_MADVISE: it is not the unpatched kernel"
                    .to_owned(),
            );
        }
        let oom = r.opt_u64("vmstat.oom_kill").unwrap_or(None).unwrap_or(0);
        let signal = r.killed_by_signal();
        let error = r.str("error");
        if let Some(sig) = signal {
            c.note(format!("workload killed by signal {sig} (oom_kill {oom})"));
        } else if oom > 0 {
            c.note(format!("guest OOM killer ran {oom} times"));
        }
        if let Some(e) = error {
            c.note(format!("workload error: {e}"));
        }
        if let Ok(b) = r.u64("object_bytes_total") {
            c.note(format!("objects created before the end: {b} bytes"));
        }
        c.require(signal.is_some() || oom > 0 || error.is_some(), || {
            "unpatched kernel reported neither an OOM kill nor an allocation failure: \
             memory pressure was not reached or not reported"
                .to_owned()
        });
    }
    c.finish(Outcome::Recorded)
}

/// `blob-noswap`: the daemon did not offer blob swap, so the guest must not
/// evict a single blob: the shrinker evicted nothing, the host saw no
/// DETACH_BACKING, and every byte the workload verified is intact. Blobs
/// beyond RAM then cannot fit: an OOM kill or an allocation failure is the
/// expected outcome and is recorded; a workload that passed is fine too
/// (e.g. with a bigger guest), a hang or silence fails.
pub fn blob_noswap(ev: &Evidence<'_>) -> Verdict {
    let mut c = Checks::default();
    if let Some(m) = c.metrics(ev) {
        check_no_refused(&mut c, m);
        let detach = m.value("vugpu_detach_backing_total");
        c.require(detach == Some(0.0), || {
            format!(
                "host saw DETACH_BACKING {detach:?} times without blob swap: the guest evicted blobs the device did not agree to give back"
            )
        });
    }
    if ev.status.is_none() && ev.report.is_none() {
        match ev.console_oom {
            Some(line) => c.note(format!(
                "guest could not report; its kernel logged the OOM outcome: {line}"
            )),
            None => c.failures.push(
                "guest never reported VUGPU-STATUS and its console shows no OOM (hung or crashed)"
                    .to_owned(),
            ),
        }
        return c.finish(Outcome::Recorded);
    }
    if ev.status.is_none() {
        c.failures
            .push("guest never reported VUGPU-STATUS (hung or crashed)".to_owned());
    }
    let Some(r) = c.report(ev) else {
        return c.finish(Outcome::Recorded);
    };
    // A workload the OOM killer ended leaves a report without its own
    // fields (kind, counters): that is the outcome this scenario records.
    if r.str("kind").is_some() {
        check_kind(&mut c, r, PressureKind::Blob);
    }
    if let Some(bad) = r.opt_u64("mismatched_bytes").unwrap_or(None) {
        c.require(bad == 0, || {
            format!("{bad} bytes read back differ from what was written")
        });
    }
    let evicted = r
        .opt_u64("shrinker.evicted_objects")
        .unwrap_or(None)
        .unwrap_or(0);
    c.require(evicted == 0, || {
        format!("the guest evicted {evicted} objects (all blobs) although blob swap was off")
    });
    let outcome = record_pressure_outcome(&mut c, r);
    c.finish(outcome)
}

/// Notes how a run that could not fit its objects ended; returns
/// [`Outcome::Recorded`] for an OOM kill or allocation failure and
/// [`Outcome::Pass`] when the workload passed.
fn record_pressure_outcome(c: &mut Checks, r: Report<'_>) -> Outcome {
    if let Some(t) = r.opt_u64("timeout_s").ok().flatten() {
        c.failures.push(format!(
            "the guest watchdog stopped a workload still running after {t} s: reclaim or the \
             workload stalled (a hang is not an expected outcome)"
        ));
    }
    let oom = r.opt_u64("vmstat.oom_kill").unwrap_or(None).unwrap_or(0);
    let signal = r.killed_by_signal();
    let error = r.str("error");
    if let Some(sig) = signal {
        c.note(format!("workload killed by signal {sig} (oom_kill {oom})"));
    } else if oom > 0 {
        c.note(format!("guest OOM killer ran {oom} times"));
    }
    if let Some(e) = error {
        c.note(format!("workload error: {e}"));
    }
    if let Ok(b) = r.u64("object_bytes_total") {
        c.note(format!("objects created before the end: {b} bytes"));
    }
    if signal.is_some() || oom > 0 || error.is_some() {
        Outcome::Recorded
    } else {
        Outcome::Pass
    }
}

fn check_no_refused(c: &mut Checks, m: &Metrics) {
    let refused = m.value("vugpu_refused_guest_accesses_total");
    c.require(refused == Some(0.0), || {
        format!("vugpu_refused_guest_accesses_total = {refused:?}, expected 0")
    });
}

/// Fault scenarios (the daemon misbehaves on purpose).
///
/// Always: the guest reports (no hang; the runner adds the console checks
/// and the phase time bound), the daemon injected at least one fault
/// (`vugpu_injected_faults_total`, else the fault was not exercised), the
/// device never had to refuse an access (the guest never let it touch an
/// object without backing), and no byte the workload verified was lost.
///
/// - `DetachDelay`: eviction still works, so everything `evict` checks
///   holds (no OOM kill, every byte verified, host and guest counts match).
/// - `DetachError` / `DetachHang`: no DETACH completes, so the guest must
///   keep every page: the shrinker evicts nothing and the device may keep
///   using them. Objects beyond RAM then cannot fit: an OOM kill or an
///   allocation failure is recorded, not failed.
/// - `AttachError`: swap-in cannot re-attach, so the guest must fail the
///   use (an ioctl error is the expected, recorded outcome) rather than let
///   the device read a resource without backing.
pub fn fault(ev: &Evidence<'_>, f: Fault) -> Verdict {
    if f == Fault::DetachDelay {
        return evict(ev, PressureKind::TwoD);
    }
    let mut c = Checks::default();
    if let Some(m) = c.metrics(ev) {
        check_no_refused(&mut c, m);
        let injected = m.sum("vugpu_injected_faults_total").unwrap_or(0.0);
        c.require(injected > 0.0, || {
            "the daemon injected no fault (vugpu_injected_faults_total 0): the fault was not \
             exercised"
                .to_owned()
        });
        c.note(format!("daemon injected {injected} faults"));
    }
    if ev.status.is_none() && ev.report.is_none() {
        // Without any eviction the objects cannot fit: the kernel may end in
        // an OOM panic, like the unpatched baseline; time_bound checks when.
        match ev.console_oom {
            Some(line) => c.note(format!(
                "guest could not report; its kernel logged the OOM outcome: {line}"
            )),
            None => c.failures.push(
                "guest never reported VUGPU-STATUS and its console shows no OOM: reclaim or \
                 the workload stalled on the faulty device"
                    .to_owned(),
            ),
        }
        return c.finish(Outcome::Recorded);
    }
    if ev.status.is_none() {
        c.failures.push(
            "guest never reported VUGPU-STATUS: reclaim or the workload stalled on the faulty device"
                .to_owned(),
        );
    }
    let Some(r) = c.report(ev) else {
        return c.finish(Outcome::Recorded);
    };
    if let Some(bad) = r.opt_u64("mismatched_bytes").unwrap_or(None) {
        c.require(bad == 0, || {
            format!("{bad} bytes read back differ from what was written")
        });
    }
    if matches!(f, Fault::DetachError | Fault::DetachHang) {
        let evicted = r
            .opt_u64("shrinker.evicted_objects")
            .unwrap_or(None)
            .unwrap_or(0);
        c.require(evicted == 0, || {
            format!(
                "the guest released the pages of {evicted} objects although no DETACH completed"
            )
        });
    }
    let outcome = record_pressure_outcome(&mut c, r);
    c.finish(outcome)
}

/// Adds the host-side content check to `v`: every object the workload made
/// the device read after swap-in was read with the content it wrote.
pub fn content(v: &mut Verdict, ev: &Evidence<'_>) {
    let log = match ev.device_reads {
        None => {
            v.fail("no device digest log was collected");
            return;
        }
        Some(Err(e)) => {
            v.fail(e.to_owned());
            return;
        }
        Some(Ok(log)) => log,
    };
    let Some(Ok(report)) = ev.report else {
        // The verdict already says why there is no report.
        return;
    };
    let expected = match digest::expected_reads(report) {
        Ok(e) => e,
        Err(e) => {
            // A run that ended early (baseline-like outcomes) has nothing to
            // compare; only a passing workload must have digests.
            if ev.status.is_some_and(|s| s.pass) {
                v.fail(e);
            } else {
                v.notes.push(format!("host content check: {e}"));
            }
            return;
        }
    };
    let cmp = digest::compare(&expected, log);
    let failed = cmp.failures.len();
    for f in cmp.failures.into_iter().take(4) {
        v.fail(format!("host content check: {f}"));
    }
    if failed > 4 {
        v.fail(format!(
            "host content check: {} more objects failed",
            failed - 4
        ));
    }
    let objects = report.get("objects").and_then(Value::as_u64).unwrap_or(0);
    let passed = ev.status.is_some_and(|s| s.pass);
    if passed && (expected.len() as u64) < objects {
        v.fail(format!(
            "host content check: the workload reported digests for {} of its {objects} objects",
            expected.len()
        ));
    }
    v.notes.push(format!(
        "host content check: {} objects, {} device reads compared, {} log lines",
        cmp.matched_objects,
        cmp.compared_reads,
        log.len()
    ));
}

/// Seconds a TCG guest may spend booting before the workload starts.
pub const BOOT_ALLOWANCE_SECS: u64 = 15;

/// The kernel timestamp of a console line (`[  160.916257] ...`), in
/// seconds.
fn console_secs(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (stamp, _) = rest.split_once(']')?;
    stamp.trim().parse().ok()
}

/// Fails `v` when the workload's phases together took longer than
/// `max_secs`: a reclaim stall on a slow or silent device.
///
/// Without a report, an OOM line on the console must carry a kernel
/// timestamp within the bound (plus [`BOOT_ALLOWANCE_SECS`] for the boot).
pub fn time_bound(v: &mut Verdict, ev: &Evidence<'_>, max_secs: u64) {
    let Some(Ok(report)) = ev.report else {
        if let Some(t) = ev.console_oom.and_then(console_secs) {
            let limit = (max_secs + BOOT_ALLOWANCE_SECS) as f64;
            if t > limit {
                v.fail(format!(
                    "the kernel reached its OOM outcome {t:.0} s after boot, later than the \
                     {max_secs} s bound plus {BOOT_ALLOWANCE_SECS} s for booting (reclaim stalled)"
                ));
            }
        }
        return;
    };
    let r = Report(report);
    if r.get("timeout_s").is_some() {
        // A hang; record_pressure_outcome (or guest_passed) fails it.
        return;
    }
    let phases: u64 = ["create", "fill", "pressure", "reuse_verify"]
        .iter()
        .filter_map(|p| r.opt_u64(&format!("phases_ms.{p}")).ok().flatten())
        .sum();
    // /init's own report (workload killed) has only the elapsed seconds.
    let elapsed = r.opt_u64("elapsed_s").ok().flatten().unwrap_or(0) * 1000;
    let ms = phases.max(elapsed);
    if ms > max_secs * 1000 {
        v.fail(format!(
            "workload phases took {:.1} s, more than the {max_secs} s bound (reclaim stalled)",
            ms as f64 / 1000.0
        ));
    } else {
        v.notes.push(format!(
            "workload phases took {:.1} s (bound {max_secs} s)",
            ms as f64 / 1000.0
        ));
    }
}

fn check_kind(c: &mut Checks, r: Report<'_>, kind: PressureKind) {
    let want = kind.as_str();
    match r.str("kind") {
        None => c.failures.push("missing field kind".to_owned()),
        Some(k) => c.require(k == want, || {
            format!("workload kind {k:?}, expected {want:?}")
        }),
    }
}

/// Checks shared by every memory-pressure scenario on the patched kernel.
fn check_pressure_workload(c: &mut Checks, r: Report<'_>) {
    if let Some(sig) = r.killed_by_signal() {
        c.failures
            .push(format!("workload was killed by signal {sig}"));
    }
    if let Some(e) = r.str("error") {
        c.failures.push(format!("workload error: {e}"));
    }
    for f in r.failures() {
        c.failures.push(format!("workload failure: {f}"));
    }
    if let Some(oom) = c.take(r.u64("vmstat.oom_kill")) {
        c.require(oom == 0, || format!("guest OOM killer ran {oom} times"));
    }
    if let Some(bad) = c.take(r.u64("mismatched_bytes")) {
        c.require(bad == 0, || {
            format!("{bad} bytes read back differ from what was written")
        });
    }
    let ram = c.take(r.u64("ram_bytes"));
    let objects = c.take(r.u64("objects"));
    let total = c.take(r.u64("object_bytes_total"));
    let verified = c.take(r.u64("verified_bytes"));
    let purged = r.opt_u64("madvise.purged").unwrap_or(None).unwrap_or(0);
    if let (Some(ram), Some(total)) = (ram, total) {
        c.require(total > ram, || {
            format!("objects total {total} bytes do not exceed guest RAM {ram} bytes: no memory pressure")
        });
    }
    let each = c.take(r.u64("object_bytes"));
    if let (Some(n), Some(total), Some(each)) = (objects, total, each) {
        c.require(n.checked_mul(each) == Some(total), || {
            format!("object_bytes_total {total} != {n} objects x {each} bytes")
        });
    }
    if let (Some(n), Some(each), Some(verified)) = (objects, each, verified) {
        let retained = n - purged.min(n);
        let expected = retained.saturating_mul(each);
        c.require(verified == expected, || {
            format!(
                "verified {verified} bytes, expected {expected} ({retained} retained objects of {each} bytes)"
            )
        });
    }
}

/// The patched kernel's shrinker must have evicted and swapped back in.
fn check_shrinker_evicted(c: &mut Checks, r: Report<'_>) {
    if r.get("shrinker").is_none() {
        c.failures.push(
            "missing field shrinker: no shrinker counters (unpatched kernel or debugfs missing)"
                .to_owned(),
        );
        return;
    }
    if let Some(n) = c.take(r.u64("shrinker.evicted_objects")) {
        c.require(n > 0, || "shrinker evicted no object".to_owned());
    }
    if let Some(n) = c.take(r.u64("shrinker.swapped_in_objects")) {
        c.require(n > 0, || "no evicted object was swapped back in".to_owned());
    }
    // Evicted pages must really have gone through the swap device.
    let out = c.take(r.u64("vmstat.pswpout"));
    let back = c.take(r.u64("vmstat.pswpin"));
    if let (Some(out), Some(back)) = (out, back) {
        c.require(out > 0 && back > 0, || {
            format!("no swap traffic (pswpout {out}, pswpin {back}): eviction never reached swap")
        });
    }
}

/// Host DETACH/ATTACH counts must match what the guest says it sent, and
/// the host must never have refused a guest-memory access.
///
/// DETACH must match exactly. ATTACH may exceed the guest's count by at most
/// the number of resources the workload did not create itself (the console
/// framebuffer and cursor attach their backing before the workload starts,
/// outside its counter delta); any other difference fails.
fn check_host_matches_guest(c: &mut Checks, r: Report<'_>, m: &Metrics) {
    check_no_refused(c, m);
    for (name, what) in [
        ("vugpu_command_errors_total", "error responses"),
        ("vugpu_decode_errors_total", "malformed descriptor chains"),
    ] {
        if let Some(n) = m.sum(name).filter(|&n| n > 0.0) {
            c.note(format!("host sent/saw {n} {what} ({name})"));
        }
    }
    let host_detach = m.value("vugpu_detach_backing_total");
    let host_attach = m.value("vugpu_attach_backing_total");
    let guest_detach = c.take(r.u64("shrinker.detach_backing_cmds"));
    let guest_attach = c.take(r.u64("shrinker.attach_backing_cmds"));
    match (host_detach, guest_detach) {
        (None, _) => c
            .failures
            .push("metric vugpu_detach_backing_total missing".to_owned()),
        (Some(h), Some(g)) => c.require(h == g as f64, || {
            format!("host counted {h} DETACH_BACKING, guest sent {g}")
        }),
        _ => {}
    }
    match (host_attach, guest_attach) {
        (None, _) => c
            .failures
            .push("metric vugpu_attach_backing_total missing".to_owned()),
        (Some(h), Some(g)) => {
            let created = m.value("vugpu_resources_created_total").unwrap_or(0.0);
            let objects = r.u64("objects").unwrap_or(0) as f64;
            let outside = (created - objects).max(0.0);
            // A guest blob gets its first backing inside RESOURCE_CREATE_BLOB:
            // the host counts that as an attach, the guest's counter only
            // counts ATTACH_BACKING commands. So each workload blob adds
            // exactly one.
            let blobs = if r.str("kind") == Some("blob") {
                objects
            } else {
                0.0
            };
            let (low, high) = (blobs, blobs + outside);
            let extra = h - g as f64;
            c.require((low..=high).contains(&extra), || {
                format!(
                    "host counted {h} ATTACH_BACKING, guest sent {g}: difference {extra} is \
                     outside [{low}, {high}] (blobs created with their backing, resources not \
                     created by the workload)"
                )
            });
            if extra > 0.0 {
                c.note(format!(
                    "host ATTACH {h} = guest {g} + {blobs} blob creations with backing + {} \
                     attaches of resources created before the workload",
                    extra - blobs
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn pass() -> GuestStatus {
        GuestStatus {
            pass: true,
            reason: "ok".to_owned(),
        }
    }

    /// A report of a successful evict run: 96 objects of 4 MiB in 256 MiB.
    fn evict_report() -> Value {
        json!({
            "tool": "vugpu-workload", "scenario": "evict", "kind": "2d",
            "madvise_supported": true, "ram_bytes": 256 * MIB,
            "objects": 96, "object_bytes": 4 * MIB, "object_bytes_total": 384 * MIB,
            "verified_bytes": 384 * MIB, "mismatched_bytes": 0,
            "shrinker": {
                "evicted_objects": 50, "evicted_bytes": 200 * MIB,
                "purged_objects": 0, "purged_bytes": 0,
                "swapped_in_objects": 50, "swapped_in_bytes": 200 * MIB,
                "detach_backing_cmds": 50, "attach_backing_cmds": 146
            },
            "vmstat": {"pswpin": 51200, "pswpout": 51200, "oom_kill": 0},
            "madvise": {"dontneed": 0, "purged": 0, "retained": 0},
            "failures": [], "error": null, "result": "pass"
        })
    }

    fn host_metrics(detach: u64, attach: u64, created: u64) -> Metrics {
        let text = format!(
            "vugpu_detach_backing_total {detach}\nvugpu_attach_backing_total {attach}\n\
             vugpu_resources_created_total {created}\nvugpu_refused_guest_accesses_total 0\n\
             vugpu_commands_total{{cmd=\"set_scanout\"}} 1\n\
             vugpu_commands_total{{cmd=\"resource_flush\"}} 9\n\
             vugpu_commands_total{{cmd=\"transfer_to_host_2d\"}} 9\n"
        );
        Metrics::parse(&text).expect("valid metrics")
    }

    fn evidence<'a>(s: &'a GuestStatus, r: &'a Value, m: &'a Metrics) -> Evidence<'a> {
        Evidence {
            status: Some(s),
            report: Some(Ok(r)),
            metrics: Some(m),
            screen: None,
            console_oom: None,
            device_reads: None,
        }
    }

    #[test]
    fn test_evict_consistent_run_passes() {
        let (s, r, m) = (pass(), evict_report(), host_metrics(50, 147, 97));

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.failures);
    }

    #[test]
    fn test_swap_ratio_with_figures_passes_and_notes_both_ratios() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 147, 97));
        r["swap_ratio"] = swap_ratio_figures(97.5);

        let v = swap_ratio(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.failures);
        assert!(
            v.notes
                .iter()
                .any(|n| n.contains("1.35x pages/s written, 0.93x pages/s read")),
            "{:?}",
            v.notes
        );
        assert!(
            v.notes.iter().any(|n| n.contains("BO stall vs anon stall")
                && n.contains("write: BO 300 ms vs anonymous 400 ms full stall (mean of the anonymous passes; 0.75x")),
            "{:?}",
            v.notes
        );
        assert!(
            v.notes
                .iter()
                .any(|n| n.contains("reclaimed under pressure 97.5% of 100.0 MiB")),
            "{:?}",
            v.notes
        );
    }

    #[test]
    fn test_swap_ratio_reclaim_below_target_fails() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 147, 97));
        r["swap_ratio"] = swap_ratio_figures(90.0);

        let v = swap_ratio(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.failures[0].contains("reclaimed under pressure 90.0%"),
            "{:?}",
            v.failures
        );
    }

    #[test]
    fn test_swap_ratio_without_figures_fails() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 147, 97));
        r["swap_ratio"] = json!({"anon": {"written_pages": 1}, "written_ratio": null});

        let v = swap_ratio(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.failures[0].contains("swap_ratio.bo.read_secs")
                && v.failures[0].contains("swap_ratio.written_ratio")
                && v.failures[0].contains("swap_ratio.anon.write_psi.full_stall_us")
                && v.failures[0].contains("swap_ratio.reclaim.evictable_bytes"),
            "{:?}",
            v.failures
        );
    }

    fn swap_ratio_figures(reclaimed_pct: f64) -> Value {
        let phases = |write_stall: u64| {
            json!({"written_pages": 1000, "write_secs": 2.0,
                   "read_pages": 800, "read_secs": 4.0,
                   "write_psi": {"full_stall_us": write_stall},
                   "read_psi": {"full_stall_us": 1000}})
        };
        json!({"anon": phases(400_000), "bo": phases(300_000),
               "written_ratio": 1.35, "read_ratio": 0.93,
               "reclaim": {"evictable_bytes": 100 << 20,
                           "resident_under_pressure_bytes": 1 << 20,
                           "reclaimed_under_pressure_pct": reclaimed_pct,
                           "resident_after_forced_scan_bytes": 0}})
    }

    #[test]
    fn test_evict_host_detach_mismatch_fails() {
        let (s, r, m) = (pass(), evict_report(), host_metrics(49, 146, 96));

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.failures[0].contains("DETACH_BACKING"), "{:?}", v.failures);
    }

    #[test]
    fn test_evict_host_attach_excess_beyond_preexisting_fails() {
        // 96 workload objects, 97 resources: at most 1 extra ATTACH allowed.
        let (s, r, m) = (pass(), evict_report(), host_metrics(50, 149, 97));

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_evict_nothing_evicted_fails() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(0, 96, 96));
        r["shrinker"]["evicted_objects"] = json!(0);
        r["shrinker"]["detach_backing_cmds"] = json!(0);
        r["shrinker"]["attach_backing_cmds"] = json!(96);

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.failures, vec!["shrinker evicted no object".to_owned()]);
    }

    #[test]
    fn test_evict_without_swap_traffic_fails() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 147, 97));
        r["vmstat"]["pswpout"] = json!(0);

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    }

    #[test]
    fn test_evict_missing_shrinker_field_fails_with_name() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 146, 96));
        r["shrinker"]
            .as_object_mut()
            .expect("object")
            .remove("swapped_in_objects");

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert!(v
            .failures
            .contains(&"missing field shrinker.swapped_in_objects".to_owned()));
    }

    #[test]
    fn test_evict_mismatched_bytes_fails() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 146, 96));
        r["mismatched_bytes"] = json!(4096);

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_evict_refused_access_fails() {
        let (s, r) = (pass(), evict_report());
        let m = Metrics::parse(
            "vugpu_detach_backing_total 50\nvugpu_attach_backing_total 146\n\
             vugpu_refused_guest_accesses_total 3\n",
        )
        .expect("valid");

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    }

    #[test]
    fn test_evict_objects_below_ram_fails() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 146, 96));
        r["ram_bytes"] = json!(1024 * MIB);

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_evict_guest_fail_status_fails() {
        let (r, m) = (evict_report(), host_metrics(50, 146, 96));
        let s = GuestStatus {
            pass: false,
            reason: "verify".to_owned(),
        };

        let v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        assert_eq!(v.failures, vec!["guest reported FAIL: verify".to_owned()]);
    }

    #[test]
    fn test_blob_with_2d_report_fails() {
        let (s, r, m) = (pass(), evict_report(), host_metrics(50, 146, 96));

        let v = evict(&evidence(&s, &r, &m), PressureKind::Blob);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_qemu_builtin_without_metrics_passes() {
        let (s, r) = (pass(), evict_report());
        let ev = Evidence {
            status: Some(&s),
            report: Some(Ok(&r)),
            ..Evidence::default()
        };

        let v = guest_only(&ev, PressureKind::TwoD);

        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.failures);
    }

    #[test]
    fn test_qemu_builtin_oom_kill_fails() {
        let (s, mut r) = (pass(), evict_report());
        r["vmstat"]["oom_kill"] = json!(1);
        let ev = Evidence {
            status: Some(&s),
            report: Some(Ok(&r)),
            ..Evidence::default()
        };

        let v = guest_only(&ev, PressureKind::TwoD);

        assert_eq!(v.failures, vec!["guest OOM killer ran 1 times".to_owned()]);
    }

    fn purge_report() -> Value {
        let mut r = evict_report();
        r["scenario"] = json!("purge");
        r["madvise"] = json!({"dontneed": 48, "purged": 20, "retained": 28});
        r["shrinker"]["purged_objects"] = json!(20);
        r["shrinker"]["unref_cmds"] = json!(20);
        r["shrinker"]["detach_backing_cmds"] = json!(70);
        r["verified_bytes"] = json!(76 * 4 * MIB);
        r
    }

    #[test]
    fn test_purge_without_unref_fails() {
        let (s, mut r, m) = (pass(), purge_report(), host_metrics(70, 146, 96));
        r["shrinker"]["unref_cmds"] = json!(0);

        let v = purge(&evidence(&s, &r, &m));

        assert_eq!(
            v.failures,
            vec!["the guest purged 20 objects but sent only 0 RESOURCE_UNREF for them".to_owned()]
        );
    }

    #[test]
    fn test_purge_consistent_run_passes() {
        let (s, r, m) = (pass(), purge_report(), host_metrics(70, 146, 96));

        let v = purge(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.failures);
    }

    #[test]
    fn test_purge_counts_do_not_add_up_fails() {
        let (s, mut r, m) = (pass(), purge_report(), host_metrics(70, 146, 96));
        r["madvise"]["retained"] = json!(29);

        let v = purge(&evidence(&s, &r, &m));

        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    }

    #[test]
    fn test_purge_nothing_purged_fails() {
        let (s, mut r, m) = (pass(), purge_report(), host_metrics(70, 146, 96));
        r["madvise"] = json!({"dontneed": 48, "purged": 0, "retained": 48});
        r["shrinker"]["purged_objects"] = json!(0);
        r["verified_bytes"] = json!(384 * MIB);

        let v = purge(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_purge_verified_includes_purged_objects_fails() {
        let (s, mut r, m) = (pass(), purge_report(), host_metrics(70, 146, 96));
        r["verified_bytes"] = json!(384 * MIB);

        let v = purge(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_baseline_oom_kill_is_recorded() {
        let s = GuestStatus {
            pass: false,
            reason: "workload killed by signal 9".to_owned(),
        };
        let r =
            json!({"killed_by_signal": 9, "vmstat": {"oom_kill": 1}, "madvise_supported": false});
        let ev = Evidence {
            status: Some(&s),
            report: Some(Ok(&r)),
            ..Evidence::default()
        };

        let v = baseline(&ev);

        assert_eq!(v.outcome, Outcome::Recorded, "{:?}", v.failures);
    }

    #[test]
    fn test_baseline_kernel_oom_panic_is_recorded() {
        let ev = Evidence {
            console_oom: Some("Out of memory: Killed process 48 (vugpu-workload)"),
            ..Evidence::default()
        };

        let v = baseline(&ev);

        assert_eq!(v.outcome, Outcome::Recorded, "{:?}", v.failures);
    }

    #[test]
    fn test_baseline_silent_guest_fails() {
        let v = baseline(&Evidence::default());

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_baseline_workload_survived_fails() {
        let (s, mut r) = (pass(), evict_report());
        r["madvise_supported"] = json!(false);
        let ev = Evidence {
            status: Some(&s),
            report: Some(Ok(&r)),
            ..Evidence::default()
        };

        let v = baseline(&ev);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_smoke_drawn_console_passes() {
        let s = pass();
        let m = host_metrics(0, 1, 1);
        let screen = ScreenCheck {
            width: 1280,
            height: 800,
            distinct_colours: 7,
        };
        let ev = Evidence {
            status: Some(&s),
            metrics: Some(&m),
            screen: Some(Ok(&screen)),
            ..Evidence::default()
        };

        let v = smoke(&ev, (1280, 800));

        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.failures);
    }

    #[test]
    fn test_smoke_uniform_screen_fails() {
        let s = pass();
        let m = host_metrics(0, 1, 1);
        let screen = ScreenCheck {
            width: 1280,
            height: 800,
            distinct_colours: 1,
        };
        let ev = Evidence {
            status: Some(&s),
            metrics: Some(&m),
            screen: Some(Ok(&screen)),
            ..Evidence::default()
        };

        let v = smoke(&ev, (1280, 800));

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_smoke_placeholder_screen_fails() {
        let s = pass();
        let m = host_metrics(0, 1, 1);
        let screen = ScreenCheck {
            width: 640,
            height: 480,
            distinct_colours: 2,
        };
        let ev = Evidence {
            status: Some(&s),
            metrics: Some(&m),
            screen: Some(Ok(&screen)),
            ..Evidence::default()
        };

        let v = smoke(&ev, (1280, 800));

        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    }

    #[test]
    fn test_smoke_no_flush_fails() {
        let s = pass();
        let m = Metrics::parse(
            "vugpu_commands_total{cmd=\"set_scanout\"} 1\nvugpu_refused_guest_accesses_total 0\n",
        )
        .expect("valid");
        let screen = ScreenCheck {
            width: 1280,
            height: 800,
            distinct_colours: 2,
        };
        let ev = Evidence {
            status: Some(&s),
            metrics: Some(&m),
            screen: Some(Ok(&screen)),
            ..Evidence::default()
        };

        let v = smoke(&ev, (1280, 800));

        assert_eq!(v.failures.len(), 2, "{:?}", v.failures);
    }

    fn noswap_metrics(detach: u64) -> Metrics {
        Metrics::parse(&format!(
            "vugpu_detach_backing_total {detach}\nvugpu_refused_guest_accesses_total 0\n\
             vugpu_injected_faults_total {detach}\n"
        ))
        .expect("valid metrics")
    }

    fn enomem_report() -> Value {
        json!({
            "kind": "blob", "objects": 60, "object_bytes_total": 180 * MIB,
            "mismatched_bytes": 0, "shrinker": {"evicted_objects": 0},
            "vmstat": {"oom_kill": 0},
            "error": "DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB failed for object 60: ENOMEM",
            "result": "fail"
        })
    }

    fn failed(reason: &str) -> GuestStatus {
        GuestStatus {
            pass: false,
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn test_blob_noswap_allocation_failure_is_recorded() {
        let (s, r, m) = (failed("ENOMEM"), enomem_report(), noswap_metrics(0));

        let v = blob_noswap(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Recorded, "{:?}", v.failures);
    }

    #[test]
    fn test_blob_noswap_oom_killed_workload_is_recorded() {
        let s = failed("workload killed by signal 9 (oom_kill +1)");
        let r = json!({
            "error": "workload killed by signal 9 (oom_kill +1)",
            "exit_status": 137, "result": "fail", "scenario": "blob-noswap",
            "shrinker": {"evicted_objects": 0}, "vmstat": {"oom_kill": 1}
        });
        let m = noswap_metrics(0);

        let v = blob_noswap(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Recorded, "{:?}", v.failures);
    }

    #[test]
    fn test_blob_noswap_host_detach_fails() {
        let (s, r, m) = (failed("ENOMEM"), enomem_report(), noswap_metrics(3));

        let v = blob_noswap(&evidence(&s, &r, &m));

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_blob_noswap_guest_eviction_fails() {
        let (s, mut r, m) = (failed("ENOMEM"), enomem_report(), noswap_metrics(0));
        r["shrinker"]["evicted_objects"] = json!(2);

        let v = blob_noswap(&evidence(&s, &r, &m));

        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    }

    #[test]
    fn test_fault_detach_error_with_kept_pages_is_recorded() {
        let (s, mut r, m) = (failed("ENOMEM"), enomem_report(), noswap_metrics(5));
        r["kind"] = json!("2d");

        let v = fault(&evidence(&s, &r, &m), Fault::DetachError);

        assert_eq!(v.outcome, Outcome::Recorded, "{:?}", v.failures);
    }

    #[test]
    fn test_fault_detach_hang_released_pages_fail() {
        let (s, mut r, m) = (failed("ENOMEM"), enomem_report(), noswap_metrics(5));
        r["shrinker"]["evicted_objects"] = json!(1);

        let v = fault(&evidence(&s, &r, &m), Fault::DetachHang);

        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    }

    #[test]
    fn test_fault_detach_error_never_exercised_fails() {
        let (s, r, m) = (failed("ENOMEM"), enomem_report(), noswap_metrics(0));

        let v = fault(&evidence(&s, &r, &m), Fault::DetachError);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_fault_silent_guest_fails() {
        let m = noswap_metrics(5);
        let ev = Evidence {
            metrics: Some(&m),
            ..Evidence::default()
        };

        let v = fault(&ev, Fault::DetachHang);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_time_bound_slow_phases_fail() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 147, 97));
        r["phases_ms"] =
            json!({"create": 1000, "fill": 90000, "pressure": 0, "reuse_verify": 70000});
        let mut v = evict(&evidence(&s, &r, &m), PressureKind::TwoD);

        time_bound(&mut v, &evidence(&s, &r, &m), 150);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    fn digest_report() -> Value {
        let mut r = evict_report();
        r["objects"] = json!(1);
        r["device_reads"] = json!([{"object": 0, "resource_id": 7, "x": 0, "y": 0,
            "w": 1024, "h": 1024, "fnv1a64": "0123456789abcdef", "reads": 2}]);
        r
    }

    fn log_line(digest: &str) -> DeviceRead {
        DeviceRead {
            resource_id: 7,
            op: "transfer".to_owned(),
            x: 0,
            y: 0,
            w: 1024,
            h: 1024,
            fnv1a64: digest.to_owned(),
        }
    }

    #[test]
    fn test_content_matching_reads_pass() {
        let (s, r) = (pass(), digest_report());
        let log = [log_line("0123456789abcdef"), log_line("0123456789abcdef")];
        let ev = Evidence {
            status: Some(&s),
            report: Some(Ok(&r)),
            device_reads: Some(Ok(&log)),
            ..Evidence::default()
        };
        let mut v = Verdict {
            outcome: Outcome::Pass,
            failures: Vec::new(),
            notes: Vec::new(),
        };

        content(&mut v, &ev);

        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.failures);
    }

    #[test]
    fn test_content_stale_read_fails() {
        let (s, r) = (pass(), digest_report());
        let log = [log_line("0123456789abcdef"), log_line("00000000deadbeef")];
        let ev = Evidence {
            status: Some(&s),
            report: Some(Ok(&r)),
            device_reads: Some(Ok(&log)),
            ..Evidence::default()
        };
        let mut v = Verdict {
            outcome: Outcome::Pass,
            failures: Vec::new(),
            notes: Vec::new(),
        };

        content(&mut v, &ev);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_content_missing_log_fails() {
        let (s, r) = (pass(), digest_report());
        let ev = Evidence {
            status: Some(&s),
            report: Some(Ok(&r)),
            device_reads: Some(Err("no device digest log")),
            ..Evidence::default()
        };
        let mut v = Verdict {
            outcome: Outcome::Pass,
            failures: Vec::new(),
            notes: Vec::new(),
        };

        content(&mut v, &ev);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_evict_blob_creations_count_as_host_attaches() {
        // 96 blobs created with their backing (96 host attaches the guest
        // does not count), 50 re-attaches, 1 console framebuffer.
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 147, 97));
        r["kind"] = json!("blob");
        r["shrinker"]["attach_backing_cmds"] = json!(50);

        let v = evict(&evidence(&s, &r, &m), PressureKind::Blob);

        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.failures);
    }

    #[test]
    fn test_evict_blob_missing_creation_attaches_fail() {
        let (s, mut r, m) = (pass(), evict_report(), host_metrics(50, 60, 97));
        r["kind"] = json!("blob");
        r["shrinker"]["attach_backing_cmds"] = json!(50);

        let v = evict(&evidence(&s, &r, &m), PressureKind::Blob);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_fault_quick_oom_panic_is_recorded() {
        let m = noswap_metrics(5);
        let ev = Evidence {
            metrics: Some(&m),
            console_oom: Some(
                "[   20.5] Kernel panic - not syncing: System is deadlocked on memory",
            ),
            ..Evidence::default()
        };

        let mut v = fault(&ev, Fault::DetachHang);
        time_bound(&mut v, &ev, 150);

        assert_eq!(v.outcome, Outcome::Recorded, "{:?}", v.failures);
    }

    #[test]
    fn test_fault_late_oom_panic_fails_the_time_bound() {
        let m = noswap_metrics(5);
        let ev = Evidence {
            metrics: Some(&m),
            console_oom: Some(
                "[  160.916257] Kernel panic - not syncing: System is deadlocked on memory",
            ),
            ..Evidence::default()
        };

        let mut v = fault(&ev, Fault::DetachHang);
        time_bound(&mut v, &ev, 140);

        assert_eq!(v.outcome, Outcome::Fail);
    }

    #[test]
    fn test_time_bound_watchdog_timeout_fails() {
        let (s, r, m) = (
            failed("workload timed out after 180 s"),
            json!({"tool": "init", "timeout_s": 180, "error": "workload timed out after 180 s"}),
            noswap_metrics(5),
        );
        let ev = evidence(&s, &r, &m);
        let mut v = fault(&ev, Fault::DetachHang);

        time_bound(&mut v, &ev, 60);

        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    }
}
