//! Reading the guest's memory facts and counters: `/proc/meminfo`,
//! `/proc/vmstat`, the shrinker debugfs file and `uname -r`.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::Path;

/// Counters as `name -> value`.
pub type Counters = BTreeMap<String, u64>;

/// The `/proc/vmstat` counters reported as deltas.
pub const VMSTAT_KEYS: [&str; 3] = ["pswpin", "pswpout", "oom_kill"];

/// Parses `name value` lines (the format of `/proc/vmstat` and of the
/// `virtio-gpu-shrinker` debugfs file). Lines that do not have exactly a name
/// and a decimal value (e.g. comments or headers) are skipped.
pub fn parse_counters(text: &str) -> Counters {
    let mut out = Counters::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut it = line.split_whitespace();
        let (Some(name), Some(value), None) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if let Ok(v) = value.parse::<u64>() {
            out.insert(name.to_string(), v);
        }
    }
    out
}

/// `end - start` for every counter present in `end` (a counter missing from
/// `start` counts from 0; a counter that went backwards gives 0).
pub fn delta(start: &Counters, end: &Counters) -> Counters {
    end.iter()
        .map(|(k, &e)| {
            let s = start.get(k).copied().unwrap_or(0);
            (k.clone(), e.saturating_sub(s))
        })
        .collect()
}

/// Memory facts from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub mem_total: u64,
    /// `MemAvailable`.
    pub mem_available: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
}

/// Parses `/proc/meminfo` text (`Name:   123 kB` lines).
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let Some(Ok(v)) = it.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = match it.next() {
            Some("kB") => v.saturating_mul(1024),
            _ => v,
        };
        match name {
            "MemTotal" => m.mem_total = bytes,
            "MemAvailable" => m.mem_available = bytes,
            "SwapTotal" => m.swap_total = bytes,
            _ => {}
        }
    }
    m
}

/// Reads `/proc/meminfo` (all zero if unreadable).
pub fn read_meminfo() -> MemInfo {
    std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default()
}

/// Reads the [`VMSTAT_KEYS`] from `/proc/vmstat` (empty if unreadable).
pub fn read_vmstat() -> Counters {
    let all = std::fs::read_to_string("/proc/vmstat")
        .map(|t| parse_counters(&t))
        .unwrap_or_default();
    all.into_iter()
        .filter(|(k, _)| VMSTAT_KEYS.contains(&k.as_str()))
        .collect()
}

/// The `full avg10` value of a PSI file (`/proc/pressure/memory`):
/// the share of the last 10 s, in percent, in which every non-idle task
/// was stalled on memory.
pub fn parse_psi_full_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("full "))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// `full avg10` of `/proc/pressure/memory`, `None` without PSI.
pub fn read_memory_psi_full_avg10() -> Option<f64> {
    std::fs::read_to_string("/proc/pressure/memory")
        .ok()
        .and_then(|t| parse_psi_full_avg10(&t))
}

/// Reads the shrinker counter file, or `None` if it does not exist or cannot
/// be read (unpatched kernel, debugfs not mounted).
pub fn read_shrinker(path: &Path) -> Option<Counters> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| parse_counters(&t))
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; zeroed is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".to_string();
    }
    // SAFETY: uname NUL-terminates `release` within the array.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_counters_shrinker_file_reads_all_pairs() {
        let text = "evicted_objects 3\nevicted_bytes 12288\nattach_backing_cmds 9   # note\n";

        let c = parse_counters(text);

        assert_eq!(c.len(), 3);
        assert_eq!(c["evicted_bytes"], 12288);
        assert_eq!(c["attach_backing_cmds"], 9);
    }

    #[test]
    fn test_parse_counters_malformed_lines_are_skipped() {
        let text = "header line with words\nbad x\nok 5\n\n";

        let c = parse_counters(text);

        assert_eq!(c.len(), 1);
        assert_eq!(c["ok"], 5);
    }

    #[test]
    fn test_delta_new_and_decreasing_counters_are_handled() {
        let start = parse_counters("a 10\nb 5\n");
        let end = parse_counters("a 15\nb 1\nc 7\n");

        let d = delta(&start, &end);

        assert_eq!(d["a"], 5);
        assert_eq!(d["b"], 0);
        assert_eq!(d["c"], 7);
    }

    #[test]
    fn test_parse_meminfo_converts_kb_to_bytes() {
        let text = "MemTotal:         233444 kB\nMemFree:  100 kB\nMemAvailable:   200000 kB\nSwapTotal:        524284 kB\nHugePages_Total:       0\n";

        let m = parse_meminfo(text);

        assert_eq!(m.mem_total, 233_444 * 1024);
        assert_eq!(m.mem_available, 200_000 * 1024);
        assert_eq!(m.swap_total, 524_284 * 1024);
    }

    #[test]
    fn test_parse_psi_full_avg10_reads_the_full_line() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.50 total=123\nfull avg10=7.25 avg60=1.00 avg300=0.20 total=99\n";

        assert_eq!(parse_psi_full_avg10(text), Some(7.25));
        assert_eq!(parse_psi_full_avg10("some avg10=1.00\n"), None);
    }

    #[test]
    fn test_read_shrinker_missing_file_is_none() {
        let c = read_shrinker(Path::new("/nonexistent/virtio-gpu-shrinker"));

        assert!(c.is_none());
    }
}
