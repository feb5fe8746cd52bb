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

/// One reading of a PSI file (`/proc/pressure/memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    /// `some avg10`: share of the last 10 s, in percent, in which at least
    /// one task was stalled on memory.
    pub some_avg10: f64,
    /// `full avg10`: the same for every non-idle task at once.
    pub full_avg10: f64,
    /// `some total`: microseconds with at least one task stalled, since boot.
    pub some_total_us: u64,
    /// `full total`: microseconds with every non-idle task stalled.
    pub full_total_us: u64,
}

/// Parses the `some` and `full` lines of a PSI file; `None` unless both
/// carry `avg10=` and `total=`.
pub fn parse_psi(text: &str) -> Option<Psi> {
    let fields = |prefix: &str| -> Option<(f64, u64)> {
        let line = text.lines().find(|l| l.starts_with(prefix))?;
        let mut avg10 = None;
        let mut total = None;
        for w in line.split_whitespace() {
            if let Some(v) = w.strip_prefix("avg10=") {
                avg10 = v.parse().ok();
            } else if let Some(v) = w.strip_prefix("total=") {
                total = v.parse().ok();
            }
        }
        Some((avg10?, total?))
    };
    let (some_avg10, some_total_us) = fields("some ")?;
    let (full_avg10, full_total_us) = fields("full ")?;
    Some(Psi {
        some_avg10,
        full_avg10,
        some_total_us,
        full_total_us,
    })
}

/// `/proc/pressure/memory`, `None` without PSI (`CONFIG_PSI`).
pub fn read_memory_psi() -> Option<Psi> {
    std::fs::read_to_string("/proc/pressure/memory")
        .ok()
        .and_then(|t| parse_psi(&t))
}

/// The value of a DRM fdinfo size key (`drm-resident-memory:\t1024 KiB`)
/// in bytes; units none, `KiB`, `MiB` or `GiB` (as `drm_fdinfo_print_size()`
/// writes them).
pub fn parse_fdinfo_bytes(text: &str, key: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then_some(v)
    })?;
    let mut it = rest.split_whitespace();
    let value: u64 = it.next()?.parse().ok()?;
    let shift = match it.next() {
        None => 0,
        Some("KiB") => 10,
        Some("MiB") => 20,
        Some("GiB") => 30,
        Some(_) => return None,
    };
    value.checked_mul(1 << shift)
}

/// The debugfs directory of the first shrinker whose name starts with
/// `prefix` under `dir` (`/sys/kernel/debug/shrinker`, entries are
/// `<name>-<id>`), `None` if there is none or `dir` is unreadable.
pub fn find_shrinker_dir(dir: &Path, prefix: &str) -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found.into_iter().next()
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
    fn test_parse_psi_reads_some_and_full_lines() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.50 total=123\nfull avg10=7.25 avg60=1.00 avg300=0.20 total=99\n";

        let p = parse_psi(text).unwrap();

        assert_eq!(p.some_avg10, 12.5);
        assert_eq!(p.full_avg10, 7.25);
        assert_eq!(p.some_total_us, 123);
        assert_eq!(p.full_total_us, 99);
    }

    #[test]
    fn test_parse_psi_without_full_line_is_none() {
        assert_eq!(
            parse_psi("some avg10=1.00 avg60=0 avg300=0 total=5\n"),
            None
        );
        assert_eq!(parse_psi("some avg10=1.00\nfull avg10=2.00\n"), None);
    }

    #[test]
    fn test_parse_fdinfo_bytes_units() {
        let text = "pos:\t0\ndrm-driver:\tvirtio_gpu\ndrm-total-memory:\t360 MiB\ndrm-resident-memory:\t151552 KiB\ndrm-purgeable-memory:\t0\n";

        assert_eq!(
            parse_fdinfo_bytes(text, "drm-total-memory"),
            Some(360 << 20)
        );
        assert_eq!(
            parse_fdinfo_bytes(text, "drm-resident-memory"),
            Some(151_552 << 10)
        );
        assert_eq!(parse_fdinfo_bytes(text, "drm-purgeable-memory"), Some(0));
        assert_eq!(parse_fdinfo_bytes(text, "drm-active-memory"), None);
        assert_eq!(
            parse_fdinfo_bytes("drm-total-memory:\t3 PiB\n", "drm-total-memory"),
            None
        );
    }

    #[test]
    fn test_find_shrinker_dir_missing_dir_is_none() {
        assert!(find_shrinker_dir(Path::new("/nonexistent/shrinker"), "drm-virtio-gpu").is_none());
    }

    #[test]
    fn test_read_shrinker_missing_file_is_none() {
        let c = read_shrinker(Path::new("/nonexistent/virtio-gpu-shrinker"));

        assert!(c.is_none());
    }
}
