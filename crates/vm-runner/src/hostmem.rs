//! The `host-memory` scenarios: how much host memory the VM holds before
//! the workload, at its peak and once eviction and purge settled, against
//! the bytes the guest evicted and purged.
//!
//! Host memory of the VM = QEMU's resident share of the guest-RAM memfd
//! (the `Rss` of that mapping in `/proc/<qemu>/smaps`: free page reporting
//! punches reported pages out of it) plus the daemon's private resident
//! memory (`RssAnon`: its pixel copies and heap; its view of guest RAM is
//! the same memfd and is not counted twice).

use std::path::Path;

use serde::Serialize;

use crate::timeline::{Progress, Recorded, Sample};

/// Resident memory of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcMem {
    /// `VmRSS`.
    pub rss: u64,
    /// `RssAnon`.
    pub rss_anon: u64,
    /// `RssShmem`.
    pub rss_shmem: u64,
    /// `Rss` of the largest memfd mapping (guest RAM), if there is one.
    pub guest_ram_rss: Option<u64>,
}

/// A `kB` field of `/proc/<pid>/status` or smaps, in bytes.
fn kb_field(line: &str, name: &str) -> Option<u64> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    let mut it = rest.split_whitespace();
    let v: u64 = it.next()?.parse().ok()?;
    Some(v * 1024)
}

/// Parses `VmRSS`, `RssAnon` and `RssShmem` of a status file.
pub fn parse_status(text: &str) -> (u64, u64, u64) {
    let mut r = (0, 0, 0);
    for l in text.lines() {
        if let Some(v) = kb_field(l, "VmRSS") {
            r.0 = v;
        } else if let Some(v) = kb_field(l, "RssAnon") {
            r.1 = v;
        } else if let Some(v) = kb_field(l, "RssShmem") {
            r.2 = v;
        }
    }
    r
}

/// The `Rss` of the largest `/memfd:` mapping in an smaps text (summed if
/// the same size appears in several mappings of the same name, e.g. split
/// by mprotect).
pub fn parse_memfd_rss(smaps: &str) -> Option<u64> {
    // (name, size, rss) of every memfd mapping.
    let mut maps: Vec<(String, u64, u64)> = Vec::new();
    let mut current: Option<usize> = None;
    for l in smaps.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        let is_header =
            first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if is_header {
            current = l.find("/memfd:").map(|at| {
                maps.push((l[at..].to_owned(), 0, 0));
                maps.len() - 1
            });
            continue;
        }
        let Some(i) = current else { continue };
        if let Some(v) = kb_field(l, "Size") {
            maps[i].1 = v;
        } else if let Some(v) = kb_field(l, "Rss") {
            maps[i].2 = v;
        }
    }
    let biggest = maps.iter().max_by_key(|m| m.1)?.0.clone();
    Some(maps.iter().filter(|m| m.0 == biggest).map(|m| m.2).sum())
}

/// Reads a process's memory (`None` once it is gone).
pub fn read(pid: u32) -> Option<ProcMem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (rss, rss_anon, rss_shmem) = parse_status(&status);
    let guest_ram_rss = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .ok()
        .and_then(|s| parse_memfd_rss(&s));
    Some(ProcMem {
        rss,
        rss_anon,
        rss_shmem,
        guest_ram_rss,
    })
}

/// Adapts the runner's QEMU command for the host-memory scenarios: a
/// virtio-balloon with free page reporting (reported pages are discarded
/// from the memfd) and the swap disk opened with `cache=none`, so that
/// swapped-out bytes do not land in the host page cache.
///
/// # Errors
/// When the command has no `-drive` with `cache=unsafe` or no `-kernel`
/// (the runner's command changed shape).
pub fn qemu_words(mut words: Vec<String>) -> Result<Vec<String>, String> {
    let drive = words
        .iter_mut()
        .find(|w| w.starts_with("file=") && w.contains(",cache=unsafe"))
        .ok_or("the QEMU command has no swap -drive with cache=unsafe")?;
    *drive = drive.replace(",cache=unsafe", ",cache=none");
    let at = words
        .iter()
        .position(|w| w == "-kernel")
        .ok_or("the QEMU command has no -kernel")?;
    words.splice(
        at..at,
        [
            "-device".to_owned(),
            "virtio-balloon-pci,free-page-reporting=on".to_owned(),
        ],
    );
    Ok(words)
}

/// The figures of one host-memory run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HostMemory {
    /// Host bytes when the workload started.
    pub before_bytes: u64,
    /// Most host bytes before the settled point.
    pub peak_bytes: u64,
    /// Host seconds of the peak.
    pub peak_t_s: f64,
    /// Host bytes at the end of the workload's settle pause.
    pub settled_bytes: u64,
    /// Host seconds of the settled point.
    pub settled_t_s: f64,
    /// `peak - settled`.
    pub given_back_bytes: u64,
    /// Bytes the guest evicted + purged in its pressure and settle phases
    /// (from the last sample before the pressure phase to the settled
    /// point).
    pub guest_evicted_purged_window_bytes: u64,
    /// Bytes evicted from the workload's start to the settled point.
    pub guest_evicted_bytes: u64,
    /// Bytes purged from the workload's start to the settled point.
    pub guest_purged_bytes: u64,
    /// Daemon private RSS at the peak and at the settled point.
    pub daemon_anon_peak_bytes: u64,
    /// See [`HostMemory::daemon_anon_peak_bytes`].
    pub daemon_anon_settled_bytes: u64,
    /// `given_back / guest_evicted_purged_window` (`None` when the guest
    /// evicted and purged nothing in that window).
    pub given_back_ratio: Option<f64>,
    /// Samples taken.
    pub samples: usize,
}

fn guest_ep(s: &Sample) -> (u64, u64) {
    s.guest.as_ref().map_or((0, 0), line_ep)
}

fn line_ep(g: &Progress) -> (u64, u64) {
    (g.evicted.unwrap_or(0), g.purged.unwrap_or(0))
}

/// Computes the figures: before = the first sample with a guest progress
/// line, settled = the last sample in the `settle` phase, peak = the
/// largest host memory between them. The guest's evicted + purged bytes
/// under pressure are taken from its own lines (`lines`): from the first
/// line of the pressure phase, printed at the phase change, to its last
/// line of the settle phase; without lines, from the samples.
///
/// # Errors
/// A message when the samples lack the workload's start or settle phase.
pub fn figures(samples: &[Sample], lines: &[Progress]) -> Result<HostMemory, String> {
    let first = samples
        .iter()
        .position(|s| s.guest.is_some() && s.host_bytes().is_some())
        .ok_or("no sample has both a guest progress line and QEMU's guest-RAM RSS")?;
    let settled = samples
        .iter()
        .rposition(|s| s.guest.as_ref().is_some_and(|g| g.phase == "settle"))
        .ok_or("the workload never reached its settle phase (no VUGPU-PROGRESS phase=settle)")?;
    let window = &samples[first..=settled];
    let (peak_i, peak) = window
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.host_bytes().map(|b| (i, b)))
        .max_by_key(|&(_, b)| b)
        .ok_or("no host memory sample before the settled point")?;
    let peak_s = &window[peak_i];
    let set = &samples[settled];
    let settled_bytes = set
        .host_bytes()
        .ok_or("no host memory at the settled point")?;
    // The window starts at the last sample before the pressure phase: what
    // the fill phase evicted was recycled for later objects, what pressure
    // and settle evicted and purged is what the guest can give back.
    let pressure = samples
        .iter()
        .position(|s| {
            s.guest
                .as_ref()
                .is_some_and(|g| g.phase == "pressure" || g.phase == "settle")
        })
        .unwrap_or(settled);
    let base = &samples[pressure.saturating_sub(1).max(first)];
    let (e0, p0) = guest_ep(&samples[first]);
    let first_line = |phase: &str| lines.iter().find(|l| l.phase == phase);
    let (eb, pb) = first_line("pressure")
        .or_else(|| first_line("settle"))
        .map_or_else(|| guest_ep(base), line_ep);
    let (es, ps) = lines
        .iter()
        .rfind(|l| l.phase == "settle")
        .map_or_else(|| guest_ep(set), line_ep);
    let win = (es + ps).saturating_sub(eb + pb);
    let given = peak.saturating_sub(settled_bytes);
    let anon = |s: &Sample| s.daemon.as_ref().map_or(0, |d| d.rss_anon);
    Ok(HostMemory {
        before_bytes: samples[first].host_bytes().unwrap_or(0),
        peak_bytes: peak,
        peak_t_s: peak_s.t_s,
        settled_bytes,
        settled_t_s: set.t_s,
        given_back_bytes: given,
        guest_evicted_purged_window_bytes: win,
        guest_evicted_bytes: es.saturating_sub(e0),
        guest_purged_bytes: ps.saturating_sub(p0),
        daemon_anon_peak_bytes: anon(peak_s),
        daemon_anon_settled_bytes: anon(set),
        given_back_ratio: (win > 0).then(|| given as f64 / win as f64),
        samples: samples.len(),
    })
}

const MIB: f64 = 1048576.0;

impl HostMemory {
    /// One line for the verdict notes.
    pub fn describe(&self) -> String {
        let ratio = self
            .given_back_ratio
            .map_or_else(|| "n/a".to_owned(), |r| format!("{:.0}%", r * 100.0));
        format!(
            "host memory of the VM: before {:.1} MiB, peak {:.1} MiB at {:.1} s, settled {:.1} MiB at {:.1} s; \
             given back {:.1} MiB vs {:.1} MiB the guest evicted+purged under pressure ({ratio}); \
             workload total evicted {:.1} MiB, purged {:.1} MiB; daemon anon RSS {:.1} -> {:.1} MiB",
            self.before_bytes as f64 / MIB,
            self.peak_bytes as f64 / MIB,
            self.peak_t_s,
            self.settled_bytes as f64 / MIB,
            self.settled_t_s,
            self.given_back_bytes as f64 / MIB,
            self.guest_evicted_purged_window_bytes as f64 / MIB,
            self.guest_evicted_bytes as f64 / MIB,
            self.guest_purged_bytes as f64 / MIB,
            self.daemon_anon_peak_bytes as f64 / MIB,
            self.daemon_anon_settled_bytes as f64 / MIB,
        )
    }
}

/// Writes the timeline files and `hostmem.json` into `dir`; returns the
/// figures (or why there are none) and notes for the verdict.
pub fn finish(
    rec: &Recorded,
    dir: &Path,
    title: &str,
) -> (Result<HostMemory, String>, Vec<String>) {
    let samples = &rec.samples;
    let mut notes = Vec::new();
    match crate::timeline::write(samples, dir, title) {
        Ok((csv, svg)) => {
            eprintln!("vugpu-vm: timeline: {}", svg.display());
            notes.push(format!(
                "timeline: {} ({} samples), {}",
                csv.display(),
                samples.len(),
                svg.display()
            ));
        }
        Err(e) => notes.push(format!("timeline not written: {e}")),
    }
    let fig = figures(samples, &rec.lines);
    if let Ok(f) = &fig {
        let file = dir.join("hostmem.json");
        if let Ok(text) = serde_json::to_string_pretty(f) {
            if let Err(e) = std::fs::write(&file, text) {
                notes.push(format!("cannot write {}: {e}", file.display()));
            }
        }
        notes.push(f.describe());
    } else if let Some(last) = samples.iter().rev().find_map(Sample::host_bytes) {
        // No settle point (the baseline dies before it): peak and last.
        let peak = samples
            .iter()
            .filter_map(Sample::host_bytes)
            .max()
            .unwrap_or(0);
        notes.push(format!(
            "host memory of the VM: peak {:.1} MiB, last sample {:.1} MiB",
            peak as f64 / MIB,
            last as f64 / MIB
        ));
    }
    (fig, notes)
}

/// Adds the host-memory checks to a scenario's verdict: the figures must
/// exist when `required` (the patched run must reach its settle phase; the
/// baseline may die before it, which its own verdict judges); the 80%
/// give-back target of issue 9 is reported as a note either way.
pub fn judge(
    mut v: crate::verdict::Verdict,
    fig: Option<&Result<HostMemory, String>>,
    required: bool,
) -> crate::verdict::Verdict {
    match fig {
        Some(Ok(f)) => match f.given_back_ratio {
            Some(r) if r >= TARGET_RATIO => v.notes.push(format!(
                "host got back {:.0}% of what the guest evicted+purged under pressure (target {:.0}%)",
                r * 100.0,
                TARGET_RATIO * 100.0
            )),
            Some(r) => v.notes.push(format!(
                "TARGET MISSED: host got back {:.0}% of what the guest evicted+purged under pressure (target {:.0}%)",
                r * 100.0,
                TARGET_RATIO * 100.0
            )),
            None => v.notes.push("the guest evicted and purged nothing under pressure".to_owned()),
        },
        Some(Err(e)) if required => v.fail(format!("no host-memory figures: {e}")),
        Some(Err(e)) => v.notes.push(format!("no host-memory figures: {e}")),
        None if required => v.fail("no host-memory timeline was recorded"),
        None => {}
    }
    v
}

/// Issue 9's target: the host gets back at least this share of what the
/// guest evicted or purged.
pub const TARGET_RATIO: f64 = 0.8;

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0000000000-7f0010000000 rw-s 00000000 00:01 1234   /memfd:mem (deleted)
Size:             262144 kB
Rss:              200000 kB
7f0020000000-7f0020001000 rw-s 00000000 00:01 99     /memfd:small (deleted)
Size:                  4 kB
Rss:                   4 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
Size:                132 kB
Rss:                  12 kB
";

    #[test]
    fn test_parse_memfd_rss_takes_largest_memfd() {
        assert_eq!(parse_memfd_rss(SMAPS), Some(200000 * 1024));
    }

    #[test]
    fn test_parse_memfd_rss_without_memfd_is_none() {
        assert_eq!(
            parse_memfd_rss("00400000-00452000 r-xp 0 08:02 1 /bin/x\nRss: 4 kB\n"),
            None
        );
    }

    #[test]
    fn test_parse_status_reads_three_fields() {
        let t =
            "Name:\tx\nVmRSS:\t  300 kB\nRssAnon:\t 100 kB\nRssFile:\t 50 kB\nRssShmem:\t 150 kB\n";

        assert_eq!(parse_status(t), (300 * 1024, 100 * 1024, 150 * 1024));
    }

    #[test]
    fn test_qemu_words_adds_balloon_and_cache_none() {
        let words: Vec<String> = [
            "qemu",
            "-drive",
            "file=/s.img,format=raw,if=virtio,cache=unsafe",
            "-kernel",
            "k",
        ]
        .map(str::to_owned)
        .to_vec();

        let w = qemu_words(words).expect("adapted");

        assert_eq!(
            w,
            [
                "qemu",
                "-drive",
                "file=/s.img,format=raw,if=virtio,cache=none",
                "-device",
                "virtio-balloon-pci,free-page-reporting=on",
                "-kernel",
                "k"
            ]
        );
    }

    fn sample(t: f64, phase: &str, host_mib: u64, evicted_mib: u64) -> Sample {
        Sample {
            t_s: t,
            guest: Some(Progress {
                phase: phase.to_owned(),
                evicted: Some(evicted_mib << 20),
                purged: Some(0),
                ..Progress::default()
            }),
            qemu: Some(ProcMem {
                guest_ram_rss: Some(host_mib << 20),
                ..ProcMem::default()
            }),
            ..Sample::default()
        }
    }

    #[test]
    fn test_figures_pressure_window_against_peak_to_settled() {
        let s = vec![
            sample(0.0, "fill", 50, 0),
            sample(1.0, "fill", 250, 10),
            sample(2.0, "pressure", 250, 60),
            sample(3.0, "settle", 150, 110),
            sample(4.0, "reuse", 250, 110),
        ];

        let f = figures(&s, &[]).expect("figures");

        assert_eq!(f.peak_bytes, 250 << 20);
        assert_eq!(f.settled_bytes, 150 << 20);
        assert_eq!(f.given_back_bytes, 100 << 20);
        assert_eq!(f.guest_evicted_purged_window_bytes, 100 << 20);
        assert_eq!(f.given_back_ratio, Some(1.0));
    }

    #[test]
    fn test_figures_guest_window_from_phase_change_lines() {
        let s = vec![
            sample(0.0, "fill", 50, 0),
            sample(1.0, "fill", 250, 10),
            sample(2.0, "pressure", 250, 60),
            sample(3.0, "settle", 150, 110),
        ];
        let line = |phase: &str, evicted_mib: u64| Progress {
            phase: phase.to_owned(),
            evicted: Some(evicted_mib << 20),
            ..Progress::default()
        };
        let lines = [line("fill", 10), line("pressure", 30), line("settle", 130)];

        let f = figures(&s, &lines).expect("figures");

        assert_eq!(f.guest_evicted_purged_window_bytes, 100 << 20);
    }

    #[test]
    fn test_judge_missing_figures_fails_only_when_required() {
        let pass = || crate::verdict::Verdict {
            outcome: crate::verdict::Outcome::Pass,
            failures: Vec::new(),
            notes: Vec::new(),
        };
        let missing: Result<HostMemory, String> = Err("no settle".to_owned());

        assert!(!judge(pass(), Some(&missing), true).ok());
        assert!(judge(pass(), Some(&missing), false).ok());
    }

    #[test]
    fn test_judge_ratio_below_target_is_a_note() {
        let fig: Result<HostMemory, String> = Ok(HostMemory {
            given_back_ratio: Some(0.5),
            ..HostMemory::default()
        });

        let v = judge(
            crate::verdict::Verdict {
                outcome: crate::verdict::Outcome::Pass,
                failures: Vec::new(),
                notes: Vec::new(),
            },
            Some(&fig),
            true,
        );

        assert!(v.ok());
        assert!(v.notes[0].starts_with("TARGET MISSED"), "{:?}", v.notes);
    }

    #[test]
    fn test_figures_without_settle_phase_fails() {
        let s = vec![sample(0.0, "fill", 50, 0)];

        assert!(figures(&s, &[]).is_err());
    }
}
