//! The host-memory timeline: a sampler thread that records, every 250 ms,
//! the guest's progress (from the workload's `VUGPU-PROGRESS` lines on the
//! console), the daemon's counters (metrics endpoint) and the host memory
//! of QEMU and the daemon; then `timeline.csv` and `timeline.svg`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::hostmem::{self, ProcMem};
use crate::http::scrape_unix;
use crate::prom::Metrics;

/// Sampling period.
pub const PERIOD: Duration = Duration::from_millis(250);
/// Timeout of one metrics scrape inside the sampler.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(500);
/// Prefix of the workload's progress lines.
const PROGRESS: &str = "VUGPU-PROGRESS ";

/// One `VUGPU-PROGRESS` line of the guest workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Guest milliseconds since the workload started.
    pub t_ms: u64,
    /// Workload phase.
    pub phase: String,
    /// Bytes the shrinker evicted so far.
    pub evicted: Option<u64>,
    /// Bytes the shrinker purged so far.
    pub purged: Option<u64>,
    /// Bytes swapped back in so far.
    pub swapped_in: Option<u64>,
    /// Guest MemFree.
    pub mem_free: Option<u64>,
    /// Guest MemAvailable.
    pub mem_available: Option<u64>,
    /// Guest SwapFree.
    pub swap_free: Option<u64>,
}

/// Parses a progress line (text around the prefix, e.g. a timestamp or a
/// carriage return, is ignored).
pub fn parse_progress(line: &str) -> Option<Progress> {
    let at = line.find(PROGRESS)?;
    let mut p = Progress::default();
    let mut seen_t = false;
    for word in line[at + PROGRESS.len()..].split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        let n = v.parse::<u64>().ok();
        match k {
            "t_ms" => {
                p.t_ms = n?;
                seen_t = true;
            }
            "phase" => p.phase = v.to_owned(),
            "evicted_bytes" => p.evicted = n,
            "purged_bytes" => p.purged = n,
            "swapped_in_bytes" => p.swapped_in = n,
            "mem_free_bytes" => p.mem_free = n,
            "mem_available_bytes" => p.mem_available = n,
            "swap_free_bytes" => p.swap_free = n,
            _ => {}
        }
    }
    seen_t.then_some(p)
}

/// One sample of the timeline.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Host seconds since the sampler started (QEMU start).
    pub t_s: f64,
    /// The guest's latest progress line so far.
    pub guest: Option<Progress>,
    /// Host DETACH_BACKING successes so far.
    pub host_detach: Option<f64>,
    /// Host ATTACH_BACKING successes so far.
    pub host_attach: Option<f64>,
    /// Bytes of guest memory attached as backing now.
    pub host_attached_bytes: Option<f64>,
    /// The daemon's own account of its resource storage (pixel copies).
    pub daemon_storage_bytes: Option<f64>,
    /// QEMU's memory.
    pub qemu: Option<ProcMem>,
    /// The daemon's memory.
    pub daemon: Option<ProcMem>,
}

impl Sample {
    /// Host memory the VM holds: QEMU's resident share of guest RAM plus
    /// the daemon's private memory (its pixel copies and heap).
    pub fn host_bytes(&self) -> Option<u64> {
        let q = self.qemu.as_ref()?.guest_ram_rss?;
        let d = self.daemon.as_ref().map_or(0, |d| d.rss_anon);
        Some(q + d)
    }
}

/// Reads new complete lines of a growing file.
struct Tail {
    path: PathBuf,
    pos: u64,
    partial: String,
}

impl Tail {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            pos: 0,
            partial: String::new(),
        }
    }

    /// Feeds every new complete line to `f`.
    fn read(&mut self, mut f: impl FnMut(&str)) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if let Ok(n) = file.read_to_end(&mut buf) {
            self.pos += n as u64;
        }
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            f(line.trim_end());
        }
    }
}

/// What the sampler watches.
#[derive(Clone, Debug)]
pub struct Sources {
    /// QEMU's PID.
    pub qemu_pid: u32,
    /// The daemon's PID, if there is one.
    pub daemon_pid: Option<u32>,
    /// The daemon's metrics socket.
    pub metrics_sock: Option<PathBuf>,
    /// The guest console log.
    pub console: PathBuf,
}

/// The running sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Recorded>>,
}

/// What the sampler recorded.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// One sample per period.
    pub samples: Vec<Sample>,
    /// Every progress line the guest printed, in order (the workload prints
    /// one at each phase change, which a 250 ms sample may miss).
    pub lines: Vec<Progress>,
}

impl Sampler {
    /// Starts sampling every [`PERIOD`].
    pub fn start(src: Sources) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("timeline".to_owned())
            .spawn(move || sample_loop(&src, &flag))
            .inspect_err(|e| log::warn!("timeline: cannot start the sampler: {e}"))
            .ok();
        Self { stop, thread }
    }

    /// Stops the sampler and returns what it recorded.
    pub fn finish(mut self) -> Recorded {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

fn sample_loop(src: &Sources, stop: &AtomicBool) -> Recorded {
    let started = Instant::now();
    let mut tail = Tail::new(src.console.clone());
    let mut guest: Option<Progress> = None;
    let mut lines = Vec::new();
    let mut out = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tail.read(|l| {
            if let Some(p) = parse_progress(l) {
                lines.push(p.clone());
                guest = Some(p);
            }
        });
        let metrics = src
            .metrics_sock
            .as_deref()
            .and_then(|s| scrape_unix(s, SCRAPE_TIMEOUT).ok())
            .and_then(|t| Metrics::parse(&t).ok());
        let m = |name: &str| metrics.as_ref().and_then(|m| m.value(name));
        out.push(Sample {
            t_s: started.elapsed().as_secs_f64(),
            guest: guest.clone(),
            host_detach: m("vugpu_detach_backing_total"),
            host_attach: m("vugpu_attach_backing_total"),
            host_attached_bytes: m("vugpu_attached_bytes"),
            daemon_storage_bytes: m("vugpu_host_memory_bytes"),
            qemu: hostmem::read(src.qemu_pid),
            daemon: src.daemon_pid.and_then(hostmem::read),
        });
        next += PERIOD;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Recorded {
        samples: out,
        lines,
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// The CSV text of the samples (one header line, one line per sample,
/// empty fields where a source had nothing).
pub fn csv(samples: &[Sample]) -> String {
    let mut s = String::from(
        "t_s,guest_t_ms,guest_phase,guest_evicted_bytes,guest_purged_bytes,guest_swapped_in_bytes,\
         guest_mem_free_bytes,guest_mem_available_bytes,guest_swap_free_bytes,host_detach,host_attach,\
         host_attached_bytes,daemon_storage_bytes,qemu_guest_ram_rss_bytes,qemu_rss_bytes,\
         daemon_rss_bytes,daemon_rss_anon_bytes,host_bytes\n",
    );
    for x in samples {
        let g = x.guest.as_ref();
        let _ = writeln!(
            s,
            "{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            x.t_s,
            opt(g.map(|g| g.t_ms)),
            g.map(|g| g.phase.as_str()).unwrap_or_default(),
            opt(g.and_then(|g| g.evicted)),
            opt(g.and_then(|g| g.purged)),
            opt(g.and_then(|g| g.swapped_in)),
            opt(g.and_then(|g| g.mem_free)),
            opt(g.and_then(|g| g.mem_available)),
            opt(g.and_then(|g| g.swap_free)),
            opt(x.host_detach),
            opt(x.host_attach),
            opt(x.host_attached_bytes),
            opt(x.daemon_storage_bytes),
            opt(x.qemu.as_ref().and_then(|q| q.guest_ram_rss)),
            opt(x.qemu.as_ref().map(|q| q.rss)),
            opt(x.daemon.as_ref().map(|d| d.rss)),
            opt(x.daemon.as_ref().map(|d| d.rss_anon)),
            opt(x.host_bytes()),
        );
    }
    s
}

/// Writes `timeline.csv` and `timeline.svg` into `dir`.
///
/// # Errors
/// A message naming the file that could not be written.
pub fn write(samples: &[Sample], dir: &Path, title: &str) -> Result<(PathBuf, PathBuf), String> {
    let csv_path = dir.join("timeline.csv");
    std::fs::write(&csv_path, csv(samples))
        .map_err(|e| format!("write {}: {e}", csv_path.display()))?;
    let svg_path = dir.join("timeline.svg");
    svg(samples, &svg_path, title).map_err(|e| format!("draw {}: {e}", svg_path.display()))?;
    Ok((csv_path, svg_path))
}

const MIB: f64 = 1048576.0;

/// One curve of a timeline panel: legend label, colour, value of a sample.
type Series<'a> = (
    &'a str,
    plotters::style::RGBColor,
    Box<dyn Fn(&Sample) -> Option<f64>>,
);

/// Draws `series` against time on `area`, scaled to their largest value,
/// with the legend at `legend`.
fn draw_panel<DB>(
    area: &plotters::drawing::DrawingArea<DB, plotters::coord::Shift>,
    samples: &[Sample],
    series: &[Series<'_>],
    t_max: f64,
    y_desc: &str,
    legend: plotters::chart::SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB: plotters::backend::DrawingBackend,
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;

    let y_max = samples
        .iter()
        .flat_map(|s| series.iter().filter_map(move |(_, _, f)| f(s)))
        .fold(1.0_f64, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since QEMU start")
        .y_desc(y_desc)
        .draw()?;
    for (name, colour, f) in series {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| f(s).map(|v| (s.t_s, v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let c = *colour;
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()?;
    Ok(())
}

/// Draws the timeline: memory in MiB on top, DETACH/ATTACH counts below.
fn svg(samples: &[Sample], path: &Path, title: &str) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (top, bottom) = root.split_vertically(500);
    let t_max = samples.last().map_or(1.0, |s| s.t_s).max(1.0);

    let mem: Vec<Series<'_>> = vec![
        (
            "host: QEMU guest-RAM RSS + daemon anon RSS",
            RGBColor(0, 0, 0),
            Box::new(|s: &Sample| s.host_bytes().map(|b| b as f64 / MIB)),
        ),
        (
            "host: QEMU guest-RAM (memfd) RSS",
            RGBColor(31, 119, 180),
            Box::new(|s: &Sample| {
                s.qemu
                    .as_ref()
                    .and_then(|q| q.guest_ram_rss)
                    .map(|b| b as f64 / MIB)
            }),
        ),
        (
            "host: daemon anon RSS",
            RGBColor(255, 127, 14),
            Box::new(|s: &Sample| s.daemon.as_ref().map(|d| d.rss_anon as f64 / MIB)),
        ),
        (
            "host: attached backing",
            RGBColor(148, 103, 189),
            Box::new(|s: &Sample| s.host_attached_bytes.map(|b| b / MIB)),
        ),
        (
            "guest: MemFree",
            RGBColor(44, 160, 44),
            Box::new(|s: &Sample| {
                s.guest
                    .as_ref()
                    .and_then(|g| g.mem_free)
                    .map(|b| b as f64 / MIB)
            }),
        ),
        (
            "guest: evicted (cumulative)",
            RGBColor(214, 39, 40),
            Box::new(|s: &Sample| {
                s.guest
                    .as_ref()
                    .and_then(|g| g.evicted)
                    .map(|b| b as f64 / MIB)
            }),
        ),
        (
            "guest: purged (cumulative)",
            RGBColor(140, 86, 75),
            Box::new(|s: &Sample| {
                s.guest
                    .as_ref()
                    .and_then(|g| g.purged)
                    .map(|b| b as f64 / MIB)
            }),
        ),
        (
            "guest: swapped in (cumulative)",
            RGBColor(227, 119, 194),
            Box::new(|s: &Sample| {
                s.guest
                    .as_ref()
                    .and_then(|g| g.swapped_in)
                    .map(|b| b as f64 / MIB)
            }),
        ),
    ];
    draw_panel(
        &top,
        samples,
        &mem,
        t_max,
        "MiB",
        SeriesLabelPosition::UpperRight,
    )?;

    let counts: Vec<Series<'_>> = vec![
        (
            "host DETACH_BACKING",
            RGBColor(214, 39, 40),
            Box::new(|s: &Sample| s.host_detach),
        ),
        (
            "host ATTACH_BACKING",
            RGBColor(31, 119, 180),
            Box::new(|s: &Sample| s.host_attach),
        ),
    ];
    draw_panel(
        &bottom,
        samples,
        &counts,
        t_max,
        "commands",
        SeriesLabelPosition::UpperLeft,
    )?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_progress_reads_fields_after_prefix() {
        let line = "[  12.5] x VUGPU-PROGRESS t_ms=750 phase=settle evicted_bytes=4096 purged_bytes=8192 mem_free_bytes=1\r";

        let p = parse_progress(line.trim_end()).expect("progress");

        assert_eq!(p.t_ms, 750);
        assert_eq!(p.phase, "settle");
        assert_eq!(
            (p.evicted, p.purged, p.mem_free),
            (Some(4096), Some(8192), Some(1))
        );
        assert_eq!(p.swapped_in, None);
    }

    #[test]
    fn test_write_draws_svg_with_labels() {
        let dir = std::env::temp_dir().join(format!("vugpu-timeline-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let samples: Vec<Sample> = (0..4)
            .map(|i| Sample {
                t_s: f64::from(i),
                host_detach: Some(f64::from(i)),
                guest: Some(Progress {
                    t_ms: u64::from(i as u8) * 1000,
                    phase: "fill".to_owned(),
                    mem_free: Some(1 << 20),
                    ..Progress::default()
                }),
                ..Sample::default()
            })
            .collect();

        let (csv_path, svg_path) = write(&samples, &dir, "test").expect("written");

        let svg = std::fs::read_to_string(&svg_path).expect("svg");
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("guest: MemFree"), "{svg}");
        assert!(csv_path.is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_parse_progress_without_time_is_none() {
        assert_eq!(parse_progress("VUGPU-PROGRESS phase=fill"), None);
    }

    #[test]
    fn test_csv_has_one_line_per_sample_plus_header() {
        let samples = vec![Sample::default(), Sample::default()];

        let text = csv(&samples);

        assert_eq!(text.lines().count(), 3);
        assert_eq!(
            text.lines().next().map(|l| l.split(',').count()),
            text.lines().nth(1).map(|l| l.split(',').count())
        );
    }
}
