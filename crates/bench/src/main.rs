//! `vugpu-bench`: drives vhost-user GPU daemon binaries through a real
//! vhost-user socket, the way a VMM does, and compares them.
//!
//! Both daemons run side by side, each with its own memfd guest RAM, split
//! virtqueues and display socket. Every round runs every workload on both,
//! alternating which daemon goes first, so slow drifts of the machine load
//! hit both alike; ratios are paired per round. See README.md.

mod display;
mod mem;
mod procfs;
mod vmm;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::vmm::{DaemonSpec, Vmm, CTRL_Q, TIMEOUT};
use crate::workloads::{
    Kind, Plan, Workload, FRAME_BYTES, FRAME_H, FRAME_PAGES, FRAME_W, RAM_SIZE,
};

/// Benchmarks vhost-user GPU daemons through a real vhost-user socket.
#[derive(Parser, Debug)]
#[command(name = "vugpu-bench", version, about)]
struct Args {
    /// This project's daemon binary.
    #[arg(long, default_value = "target/release/vhost-user-gpu")]
    ours: PathBuf,
    /// QEMU's C daemon (Debian package qemu-system-gui).
    #[arg(long, default_value = "/usr/lib/qemu/vhost-user-gpu")]
    qemu: PathBuf,
    /// Run only this project's daemon.
    #[arg(long)]
    no_qemu: bool,
    /// Rounds (each runs every workload on both daemons).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Multiplies every workload's operation count.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run only these workloads (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip the display warm-up: measure freshly started daemons, whose
    /// allocators have not yet sent a frame (see README.md).
    #[arg(long)]
    cold: bool,
}

/// Measurements of one workload on one daemon in one round.
#[derive(Clone, Debug, Default)]
struct Sample {
    times: Vec<Duration>,
    cpu: Duration,
    commands: usize,
    peak_rss_kib: u64,
}

/// Everything measured for one workload over all rounds.
#[derive(Debug, Default)]
struct Series {
    /// Per daemon, per round.
    rounds: Vec<Vec<Sample>>,
    /// Per round: medians of the memcpy reference (transfer workload only).
    memcpy: Vec<Duration>,
    /// First failure per daemon, if the daemon could not run the workload.
    errors: Vec<Option<String>>,
}

fn median(v: &mut [Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn median_f(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `w` on `vmm` once: warm-up, then timed operations.
fn run_workload(vmm: &mut Vmm, plan: &mut Plan, w: &Workload) -> Result<Sample, String> {
    let batch = vmm.prepare(CTRL_Q, 0, plan.chains(w.kind));
    let display_bytes = Plan::display_bytes(w.kind);
    let mut shown = vmm.display.update_bytes();
    let mut op = |vmm: &mut Vmm, plan: &mut Plan| -> Result<(), String> {
        plan.before_op(vmm, w.kind);
        vmm.run(&batch)?;
        if display_bytes > 0 {
            shown += display_bytes;
            vmm.display.wait_update_bytes(shown, TIMEOUT)?;
        }
        Ok(())
    };
    vmm.clear_responses(&batch);
    for _ in 0..w.warmup.max(1) {
        op(vmm, plan)?;
    }
    let failed = vmm.failed_responses(&batch);
    if !failed.is_empty() {
        return Err(format!(
            "{} answered {} of {} commands with errors (index, type): {:x?}",
            vmm.name,
            failed.len(),
            batch.len(),
            &failed[..failed.len().min(4)]
        ));
    }
    let pid = vmm.pid();
    let rss_reset = procfs::reset_peak_rss(pid);
    let cpu0 = procfs::cpu_time(pid);
    let mut times = Vec::with_capacity(w.ops);
    for _ in 0..w.ops {
        let t = Instant::now();
        op(vmm, plan)?;
        times.push(t.elapsed());
    }
    let cpu = procfs::cpu_time(pid).saturating_sub(cpu0);
    let failed = vmm.failed_responses(&batch);
    if !failed.is_empty() {
        return Err(format!(
            "{}: errors after the timed run: {failed:x?}",
            vmm.name
        ));
    }
    let peak_rss_kib = if rss_reset {
        procfs::peak_rss_kib(pid)
    } else {
        0
    };
    Ok(Sample {
        times,
        cpu,
        commands: w.ops * batch.len(),
        peak_rss_kib,
    })
}

/// The memcpy reference of the transfer workload: the same bytes, from the
/// same guest RAM into a pre-faulted host buffer of the same size.
fn memcpy_median(vmm: &Vmm, ops: usize) -> Duration {
    let src = vmm.ram.slice(FRAME_PAGES, FRAME_BYTES as usize);
    let mut dst = vec![1u8; src.len()];
    let mut times = Vec::with_capacity(ops);
    for _ in 0..ops + 3 {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(src));
        std::hint::black_box(&mut dst);
        times.push(t.elapsed());
    }
    median(&mut times[3..])
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn fmt_mib(kib: u64) -> String {
    if kib == 0 {
        "?".into()
    } else {
        format!("{:.0} MiB", kib as f64 / 1024.0)
    }
}

struct Row {
    name: String,
    ours: String,
    qemu: String,
    ratio: String,
    target: String,
    met: String,
    cpu: (String, String),
    rss: (String, String),
}

fn verdict(ok: bool) -> String {
    if ok { "yes" } else { "**no**" }.into()
}

/// Per round medians (or `p` percentiles) of daemon `d`.
fn per_round(series: &Series, d: usize, p: Option<f64>) -> Vec<Duration> {
    series.rounds[d]
        .iter()
        .map(|s| {
            let mut t = s.times.clone();
            match p {
                Some(p) => percentile(&mut t, p),
                None => median(&mut t),
            }
        })
        .collect()
}

/// Pooled median over every round of daemon `d`, or for a percentile `p`
/// the median over rounds of the per-round percentile (one preempted round
/// on a loaded machine would otherwise own the pooled tail).
fn pooled(series: &Series, d: usize, p: Option<f64>) -> Duration {
    match p {
        Some(_) => median(&mut per_round(series, d, p)),
        None => {
            let mut all: Vec<Duration> = series.rounds[d]
                .iter()
                .flat_map(|s| s.times.iter().copied())
                .collect();
            median(&mut all)
        }
    }
}

/// Median over rounds of qemu / ours.
fn paired_ratio(series: &Series, p: Option<f64>) -> f64 {
    let ours = per_round(series, 0, p);
    let qemu = per_round(series, 1, p);
    let mut r: Vec<f64> = ours
        .iter()
        .zip(&qemu)
        .filter(|(o, _)| !o.is_zero())
        .map(|(o, q)| q.as_secs_f64() / o.as_secs_f64())
        .collect();
    median_f(&mut r)
}

/// Daemon CPU per command: the median over rounds of each round's CPU
/// time divided by its commands (a round disturbed by the machine, e.g.
/// reclaim charged to the daemon, does not skew it).
fn cpu_per_command(series: &Series, d: usize) -> Option<Duration> {
    let mut per_round: Vec<Duration> = series.rounds[d]
        .iter()
        .filter_map(|s| {
            let n = u32::try_from(s.commands).ok().filter(|&n| n > 0)?;
            Some(s.cpu / n)
        })
        .collect();
    (!per_round.is_empty()).then(|| median(&mut per_round))
}

fn peak_rss(series: &Series, d: usize) -> u64 {
    series.rounds[d]
        .iter()
        .map(|s| s.peak_rss_kib)
        .max()
        .unwrap_or(0)
}

fn row_base(series: &Series, name: &str, daemons: usize, p: Option<f64>) -> Row {
    let get = |d: usize| {
        if d >= daemons {
            return "—".to_owned();
        }
        if let Some(e) = &series.errors[d] {
            return format!("error: {}", e.lines().next().unwrap_or(""));
        }
        fmt_dur(pooled(series, d, p))
    };
    let cpu = |d: usize| {
        if d >= daemons || series.errors[d].is_some() {
            return "—".to_owned();
        }
        cpu_per_command(series, d).map_or("?".into(), fmt_dur)
    };
    let rss = |d: usize| {
        if d >= daemons || series.errors[d].is_some() {
            return "—".to_owned();
        }
        fmt_mib(peak_rss(series, d))
    };
    Row {
        name: name.to_owned(),
        ours: get(0),
        qemu: get(1),
        ratio: "—".into(),
        target: "—".into(),
        met: "—".into(),
        cpu: (cpu(0), cpu(1)),
        rss: (rss(0), rss(1)),
    }
}

fn both_ok(series: &Series, daemons: usize) -> bool {
    daemons == 2 && series.errors.iter().all(Option::is_none)
}

/// Builds the result table rows.
fn table(results: &[(Workload, Series)], daemons: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let find = |k: Kind| results.iter().find(|(w, _)| w.kind == k).map(|(_, s)| s);
    let speed = |rows: &mut Vec<Row>, k: Kind, name: &str, target: f64| {
        let Some(s) = find(k) else { return };
        let mut row = row_base(s, name, daemons, None);
        if both_ok(s, daemons) {
            let r = paired_ratio(s, None);
            row.ratio = format!("{r:.2}x");
            row.target = format!("≥ {target}x");
            row.met = verdict(r >= target);
        }
        rows.push(row);
    };
    speed(
        &mut rows,
        Kind::AttachScattered,
        "ATTACH+DETACH, 16384 scattered 4 KiB entries",
        2.0,
    );
    speed(
        &mut rows,
        Kind::AttachContiguous,
        "ATTACH+DETACH, 16384 contiguous entries",
        4.0,
    );
    speed(
        &mut rows,
        Kind::Churn,
        "create 64x64 / attach 4 / detach / unref, 64 cmds per kick",
        1.2,
    );
    speed(
        &mut rows,
        Kind::Frame,
        "1080p frame: TRANSFER + FLUSH + UPDATE drained",
        1.5,
    );
    speed(&mut rows, Kind::Transfer, "TRANSFER_TO_HOST_2D 1080p", 1.0);
    if let Some(s) = find(Kind::Transfer) {
        let mut row = row_base(
            s,
            "TRANSFER_TO_HOST_2D 1080p / memcpy (memcpy ÷ transfer)",
            daemons,
            None,
        );
        let ratios = |d: usize| -> Option<f64> {
            if d >= daemons || s.errors[d].is_some() {
                return None;
            }
            let t = per_round(s, d, None);
            let mut r: Vec<f64> = t
                .iter()
                .zip(&s.memcpy)
                .filter(|(t, _)| !t.is_zero())
                .map(|(t, m)| m.as_secs_f64() / t.as_secs_f64())
                .collect();
            Some(median_f(&mut r))
        };
        let ours = ratios(0);
        let qemu = ratios(1);
        let mut memcpy = s.memcpy.clone();
        row.ours = ours.map_or("—".into(), |r| format!("{r:.2}"));
        row.qemu = qemu.map_or("—".into(), |r| format!("{r:.2}"));
        row.ratio = format!("memcpy {}", fmt_dur(median(&mut memcpy)));
        row.target = "≥ 0.95 (ours)".into();
        row.met = ours.map_or("—".into(), |r| verdict(r >= 0.95));
        row.cpu = ("—".into(), "—".into());
        row.rss = ("—".into(), "—".into());
        rows.push(row);
    }
    let unfenced = find(Kind::SmallUnfenced);
    let fenced = find(Kind::SmallFenced);
    for (s, name) in [
        (unfenced, "small command p99, unfenced (1 per kick)"),
        (fenced, "small command p99, fenced (1 per kick)"),
    ] {
        let Some(s) = s else { continue };
        let mut row = row_base(s, name, daemons, Some(0.99));
        if both_ok(s, daemons) {
            row.ratio = format!("{:.2}x", paired_ratio(s, Some(0.99)));
        }
        rows.push(row);
    }
    if let (Some(u), Some(f)) = (unfenced, fenced) {
        let ratio = |d: usize| -> Option<f64> {
            if d >= daemons || u.errors[d].is_some() || f.errors[d].is_some() {
                return None;
            }
            let uu = per_round(u, d, Some(0.99));
            let ff = per_round(f, d, Some(0.99));
            let mut r: Vec<f64> = uu
                .iter()
                .zip(&ff)
                .filter(|(u, _)| !u.is_zero())
                .map(|(u, f)| f.as_secs_f64() / u.as_secs_f64())
                .collect();
            Some(median_f(&mut r))
        };
        let mut row = row_base(f, "fenced p99 ÷ unfenced p99", daemons, None);
        let ours = ratio(0);
        row.ours = ours.map_or("—".into(), |r| format!("{r:.2}"));
        row.qemu = ratio(1).map_or("—".into(), |r| format!("{r:.2}"));
        row.target = "≤ 1.5 (ours)".into();
        row.met = ours.map_or("—".into(), |r| verdict(r <= 1.5));
        row.cpu = ("—".into(), "—".into());
        row.rss = ("—".into(), "—".into());
        rows.push(row);
        let mut row = row_base(u, "daemon CPU per small command (unfenced)", daemons, None);
        let ours = cpu_per_command(u, 0);
        let qemu = if daemons == 2 {
            cpu_per_command(u, 1)
        } else {
            None
        };
        row.ours = ours.map_or("?".into(), fmt_dur);
        row.qemu = qemu.map_or("—".into(), fmt_dur);
        if let (Some(o), Some(q)) = (ours, qemu) {
            if !o.is_zero() && both_ok(u, daemons) {
                let r = q.as_secs_f64() / o.as_secs_f64();
                row.ratio = format!("{r:.2}x");
                row.target = "≥ 2x".into();
                row.met = verdict(r >= 2.0);
            }
        }
        rows.push(row);
    }
    rows
}

fn print_table(rows: &[Row]) {
    println!(
        "| workload | ours | QEMU | QEMU ÷ ours (paired) | target | met | CPU/cmd ours | CPU/cmd QEMU | peak RSS ours | peak RSS QEMU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name, r.ours, r.qemu, r.ratio, r.target, r.met, r.cpu.0, r.cpu.1, r.rss.0, r.rss.1
        );
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut specs = vec![DaemonSpec {
        name: "ours",
        binary: args.ours.clone(),
        args: vec![
            "--width".into(),
            FRAME_W.to_string(),
            "--height".into(),
            FRAME_H.to_string(),
        ],
    }];
    if !args.no_qemu {
        specs.push(DaemonSpec {
            name: "qemu",
            binary: args.qemu.clone(),
            args: Vec::new(),
        });
    }
    let workloads: Vec<Workload> = workloads::all()
        .into_iter()
        .filter(|w| args.only.is_empty() || args.only.iter().any(|o| o == w.name))
        .map(|w| Workload {
            ops: ((w.ops as f64 * args.scale).ceil() as usize).max(1),
            ..w
        })
        .collect();
    if workloads.is_empty() {
        return Err("no workload selected".into());
    }

    let load_before = procfs::loadavg();
    println!(
        "vugpu-bench: {} rounds{}, daemons: {}, {} CPUs, loadavg before: {load_before}",
        args.rounds,
        if args.cold {
            ", cold (no display warm-up)"
        } else {
            ""
        },
        specs
            .iter()
            .map(|s| format!("{}={}", s.name, s.binary.display()))
            .collect::<Vec<_>>()
            .join(" "),
        procfs::cpus()
    );
    let mut vmms = Vec::new();
    let mut plans = Vec::new();
    for spec in &specs {
        let mut vmm = Vmm::start(spec, RAM_SIZE, FRAME_W, FRAME_H)?;
        let mut plan = Plan::setup(&mut vmm).map_err(|e| format!("{e}\n{}", vmm.log()))?;
        if !args.cold {
            // Five full frames: both daemons then hold the allocator state
            // of a VM whose display has been running (README.md).
            let warm = Workload {
                kind: Kind::Frame,
                name: "display warm-up",
                ops: 0,
                warmup: 5,
            };
            run_workload(&mut vmm, &mut plan, &warm)
                .map_err(|e| format!("display warm-up: {e}\n{}", vmm.log()))?;
        }
        vmms.push(vmm);
        plans.push(plan);
    }
    let daemons = vmms.len();
    let mut results: Vec<(Workload, Series)> = workloads
        .iter()
        .map(|w| {
            (
                *w,
                Series {
                    rounds: vec![Vec::new(); daemons],
                    memcpy: Vec::new(),
                    errors: vec![None; daemons],
                },
            )
        })
        .collect();
    let started = Instant::now();
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..daemons).collect()
        } else {
            (0..daemons).rev().collect()
        };
        for (w, series) in results.iter_mut() {
            for &d in &order {
                if series.errors[d].is_some() {
                    continue;
                }
                match run_workload(&mut vmms[d], &mut plans[d], w) {
                    Ok(sample) => series.rounds[d].push(sample),
                    Err(e) => {
                        eprintln!("vugpu-bench: {} on {}: {e}", w.name, vmms[d].name);
                        series.errors[d] = Some(e);
                    }
                }
            }
            if w.kind == Kind::Transfer {
                series.memcpy.push(memcpy_median(&vmms[0], w.ops));
            }
        }
        eprintln!(
            "vugpu-bench: round {}/{} done after {:.1} s, loadavg {}",
            round + 1,
            args.rounds,
            started.elapsed().as_secs_f64(),
            procfs::loadavg()
        );
    }
    let (updates, scanouts) = vmms[0].display.message_counts();
    let qemu_msgs = vmms.get(1).map(|v| v.display.message_counts());
    for vmm in vmms {
        vmm.stop();
    }
    let load_after = procfs::loadavg();
    println!();
    print_table(&table(&results, daemons));
    println!();
    println!(
        "Medians pooled over {} rounds ({}); ratios are medians of per-round ratios. \
         p99 rows: median over rounds of the per-round p99. CPU: daemon threads' schedstat run time per command, median over rounds. \
         Peak RSS: VmHWM reset before each workload, max over rounds (includes mapped guest RAM the daemon touched).",
        args.rounds,
        workloads
            .iter()
            .map(|w| format!("{} {} ops", w.name, w.ops))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("Per-round medians (p99 for small-*), in run order, ours / QEMU:");
    for (w, series) in &results {
        let p = matches!(w.kind, Kind::SmallFenced | Kind::SmallUnfenced).then_some(0.99);
        let fmt = |d: usize| {
            if d >= daemons {
                return "—".to_owned();
            }
            per_round(series, d, p)
                .into_iter()
                .map(fmt_dur)
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("  {:<18} {} / {}", w.name, fmt(0), fmt(1));
    }
    println!(
        "Display messages: ours {updates} UPDATE / {scanouts} SCANOUT{}.",
        qemu_msgs.map_or(String::new(), |(u, s)| format!(
            ", QEMU {u} UPDATE / {s} SCANOUT"
        ))
    );
    println!(
        "Machine: {} CPUs, loadavg before {load_before}, after {load_after}, {:.1} s.",
        procfs::cpus(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vugpu-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
