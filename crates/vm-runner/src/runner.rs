//! Runs scenarios: swap disk, daemon, QEMU, the wait for the guest's
//! status, screendump, metrics scrape, shutdown, verdict.
//!
//! Every wait has a deadline, every process is stopped by the PID the runner
//! spawned (SIGTERM, then SIGKILL after a grace period), and every artifact
//! lands in the scenario's directory:
//!
//! ```text
//! <run-dir>/summary.json
//! <run-dir>/<scenario>/{commands.txt,console.log,result.log,guest.json,
//!                       daemon.log,qemu.log,metrics.prom,screen.ppm,verdict.json}
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use log::{info, warn};
use serde_json::Value;

use crate::error::{fs_err, Error};
use crate::guest::{parse_result_log, GuestOutput};
use crate::hostmem;
use crate::http::scrape_unix;
use crate::libvirt;
use crate::ppm::check_ppm;
use crate::process::{describe, Proc, Stopped};
use crate::prom::Metrics;
use crate::qemu::{daemon_command, qemu_command, shell_line, Accel, QemuSpec};
use crate::qmp::Qmp;
use crate::scenario::{Device, KernelKind, Scenario};
use crate::summary::{Figures, ScenarioSummary, Summary};
use crate::timeline;
use crate::verdict::{self, Evidence, Outcome, PressureKind, ScreenCheck, Verdict};

/// How long the daemon may take to create its socket.
const DAEMON_START: Duration = Duration::from_secs(15);
/// How long the guest may take to power off after its status line.
pub(crate) const GUEST_POWEROFF: Duration = Duration::from_secs(20);
/// How long the daemon may take to exit after QEMU disconnected.
const DAEMON_EXIT: Duration = Duration::from_secs(15);
/// SIGTERM-to-SIGKILL grace period.
pub(crate) const GRACE: Duration = Duration::from_secs(10);
/// Timeout of one QMP or metrics request.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll period of the main wait loop.
pub(crate) const POLL: Duration = Duration::from_millis(200);
/// Display size the daemon is started with (and the smoke screendump must
/// have).
pub const DISPLAY: (u32, u32) = (1280, 800);
/// Longest unix socket path (sun_path is 108 bytes with the NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// Accelerator selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// Probe KVM with a short boot, fall back to TCG.
    Auto,
    /// Always TCG.
    Tcg,
    /// Always KVM.
    Kvm,
}

/// What to run and with which artifacts.
#[derive(Clone, Debug)]
pub struct Config {
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Patched bzImage.
    pub kernel: PathBuf,
    /// Unpatched bzImage (baseline).
    pub unpatched_kernel: Option<PathBuf>,
    /// Initramfs with /init and the workload.
    pub initrd: PathBuf,
    /// The vhost-user-gpu daemon binary.
    pub daemon: Option<PathBuf>,
    /// QEMU's own vhost-user-gpu daemon (reference scenario).
    pub reference_daemon: Option<PathBuf>,
    /// Where artifacts go.
    pub run_dir: PathBuf,
    /// Per-scenario deadline for the guest's status line.
    pub timeout: Duration,
    /// Guest RAM in MiB.
    pub mem_mib: u32,
    /// Guest vCPUs.
    pub smp: u32,
    /// Accelerator selection.
    pub accel: AccelChoice,
    /// Deadline of the KVM probe boot.
    pub probe_timeout: Duration,
    /// QEMU binary.
    pub qemu: String,
    /// Print the commands only.
    pub dry_run: bool,
    /// Count skipped scenarios as failures.
    pub strict: bool,
}

impl Config {
    /// Checks argument combinations and that the input files exist.
    ///
    /// # Errors
    /// [`Error::Config`] naming the problem.
    pub fn validate(&self) -> Result<(), Error> {
        if self.scenarios.is_empty() {
            return Err(Error::Config("no scenario given".to_owned()));
        }
        let mut inputs = vec![("--kernel", &self.kernel), ("--initrd", &self.initrd)];
        if self
            .scenarios
            .iter()
            .any(|s| s.kernel() == KernelKind::Unpatched)
        {
            let k = self.unpatched_kernel.as_ref().ok_or_else(|| {
                Error::Config("the baseline scenario needs --unpatched-kernel".to_owned())
            })?;
            inputs.push(("--unpatched-kernel", k));
        }
        if self.scenarios.iter().any(|s| s.reference_daemon()) {
            let d = self.reference_daemon.as_ref().ok_or_else(|| {
                Error::Config("the reference scenario needs --reference-daemon".to_owned())
            })?;
            inputs.push(("--reference-daemon", d));
        }
        if self
            .scenarios
            .iter()
            .any(|s| s.needs_daemon() && !s.reference_daemon())
        {
            let d = self.daemon.as_ref().ok_or_else(|| {
                Error::Config("scenarios with the daemon need --daemon".to_owned())
            })?;
            inputs.push(("--daemon", d));
        }
        if !self.dry_run {
            for (flag, path) in inputs {
                if !path.is_file() {
                    return Err(Error::Config(format!(
                        "{flag} {} is not a file",
                        path.display()
                    )));
                }
            }
        }
        let longest = self.run_dir.join("kvm-probe").join("metrics.sock");
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::Config(format!(
                "--run-dir {} is too long for unix socket paths (max {MAX_SOCKET_PATH} bytes with the file name)",
                self.run_dir.display()
            )));
        }
        if self.mem_mib < 64 {
            return Err(Error::Config("--mem-mib must be at least 64".to_owned()));
        }
        Ok(())
    }

    fn kernel_for(&self, s: Scenario) -> &Path {
        match (s.kernel(), &self.unpatched_kernel) {
            (KernelKind::Unpatched, Some(k)) => k,
            _ => &self.kernel,
        }
    }
}

/// Files of one scenario run.
pub(crate) struct Paths {
    pub(crate) dir: PathBuf,
    pub(crate) commands: PathBuf,
    pub(crate) console: PathBuf,
    pub(crate) result: PathBuf,
    pub(crate) qmp: PathBuf,
    pub(crate) vhost: PathBuf,
    pub(crate) metrics_sock: PathBuf,
    pub(crate) swap: PathBuf,
}

impl Paths {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            commands: dir.join("commands.txt"),
            console: dir.join("console.log"),
            result: dir.join("result.log"),
            qmp: dir.join("qmp.sock"),
            vhost: dir.join("vhost-user-gpu.sock"),
            metrics_sock: dir.join("metrics.sock"),
            swap: dir.join("swap.img"),
            dir,
        }
    }

    /// Creates the directory and removes what a previous run left.
    pub(crate) fn prepare(&self) -> Result<(), Error> {
        fs::create_dir_all(&self.dir).map_err(fs_err("create", &self.dir))?;
        for stale in [
            &self.commands,
            &self.console,
            &self.result,
            &self.qmp,
            &self.vhost,
            &self.metrics_sock,
            &self.swap,
        ] {
            match fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(fs_err("remove", stale)(e)),
            }
        }
        Ok(())
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Harness-level failures and notes of one scenario.
#[derive(Default)]
pub(crate) struct Harness {
    pub(crate) failures: Vec<String>,
    pub(crate) notes: Vec<String>,
}

impl Harness {
    pub(crate) fn fail(&mut self, msg: String) {
        warn!("{msg}");
        self.failures.push(msg);
    }
}

/// What one scenario produced.
#[derive(Default)]
pub(crate) struct Collected {
    pub(crate) guest: GuestOutput,
    pub(crate) metrics: Option<Metrics>,
    pub(crate) screen: Option<Result<ScreenCheck, String>>,
    pub(crate) console_oom: Option<String>,
    pub(crate) host_memory: Option<Result<hostmem::HostMemory, String>>,
}

/// Why the wait for the guest ended.
#[derive(Debug)]
enum Ending {
    Status,
    QemuExited,
    DaemonExited(ExitStatus),
    GuestStopped(String),
    Timeout,
}

/// Prints a command and appends it to `commands.txt`.
pub(crate) fn record_command(paths: &Paths, words: &[String], env: &str) -> Result<(), Error> {
    let line = format!("{env}{}", shell_line(words));
    eprintln!("vugpu-vm: $ {line}");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.commands)
        .map_err(fs_err("open", &paths.commands))?;
    writeln!(f, "{line}").map_err(fs_err("write", &paths.commands))
}

fn log_file(path: &Path) -> Result<(File, File), Error> {
    let f = File::create(path).map_err(fs_err("create", path))?;
    let g = f.try_clone().map_err(fs_err("duplicate", path))?;
    Ok((f, g))
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` non-empty lines of a log, joined with " | ".
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = read_lossy(path);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').trim())
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

pub(crate) fn spawn(
    name: &'static str,
    words: &[String],
    log: &Path,
    env: &[(&str, &str)],
) -> Result<Proc, Error> {
    let (out, err) = log_file(log)?;
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn(name, &mut cmd).map_err(|source| Error::Spawn {
        name: words[0].clone(),
        source,
    })
}

/// Waits for the daemon's socket to appear.
fn wait_for_socket(daemon: &mut Proc, sock: &Path, daemon_log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + DAEMON_START;
    loop {
        if sock.exists() {
            return Ok(());
        }
        if let Some(s) = daemon.try_wait() {
            return Err(format!(
                "daemon exited with {} before creating its socket: {}",
                describe(s),
                tail(daemon_log, 5)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "daemon did not create {} within {} s",
                sock.display(),
                DAEMON_START.as_secs()
            ));
        }
        sleep(Duration::from_millis(50));
    }
}

fn qmp_status(qmp: &mut Option<Qmp>, path: &Path) -> Option<String> {
    if qmp.is_none() && path.exists() {
        *qmp = Qmp::connect(path, IO_TIMEOUT).ok();
    }
    let status = qmp.as_mut().map(Qmp::status)?;
    match status {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("{e}");
            *qmp = None;
            None
        }
    }
}

/// First console line reporting an out-of-memory outcome, if any.
pub(crate) fn console_oom(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains("Out of memory") || l.contains("deadlocked on memory"))
        .map(|l| l.trim_end_matches('\r').trim().to_owned())
}

/// First console line reporting a kernel panic or BUG, if any.
pub(crate) fn console_fatal(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains("Kernel panic") || l.contains("BUG:") || l.contains("Oops:"))
        .map(|l| l.trim_end_matches('\r').trim().to_owned())
}

/// The guest watchdog: fires well before the host deadline so that a stuck
/// workload is reported by the guest (with its counters) rather than only
/// by the host timeout.
pub(crate) fn guest_timeout(host: Duration) -> Option<u64> {
    let secs = host.as_secs();
    let margin = (secs / 4).clamp(10, 60);
    (secs > margin + 10).then(|| secs - margin)
}

/// Builds the QEMU spec for `scenario` on `accel`.
fn qemu_spec(cfg: &Config, s: Scenario, device: Device, accel: Accel, paths: &Paths) -> QemuSpec {
    QemuSpec {
        qemu: cfg.qemu.clone(),
        accel,
        mem_mib: cfg.mem_mib,
        smp: cfg.smp,
        kernel: cfg.kernel_for(s).to_path_buf(),
        initrd: cfg.initrd.clone(),
        append: s.kernel_cmdline(guest_timeout(cfg.timeout)),
        device,
        vhost_socket: paths.vhost.clone(),
        swap: Some(paths.swap.clone()),
        console: paths.console.clone(),
        result: paths.result.clone(),
        qmp: paths.qmp.clone(),
    }
}

/// The daemon command line of scenario `s`.
fn daemon_words(cfg: &Config, s: Scenario, paths: &Paths) -> Result<Vec<String>, Error> {
    if s.reference_daemon() {
        let bin = cfg
            .reference_daemon
            .as_ref()
            .ok_or_else(|| Error::Config("--reference-daemon missing".to_owned()))?;
        return Ok(vec![
            bin.display().to_string(),
            "--socket-path".to_owned(),
            paths.vhost.display().to_string(),
        ]);
    }
    let bin = cfg
        .daemon
        .as_ref()
        .ok_or_else(|| Error::Config("--daemon missing".to_owned()))?;
    Ok(daemon_command(
        bin,
        &paths.vhost,
        &paths.metrics_sock,
        s == Scenario::Blob,
        DISPLAY,
    ))
}

/// Runs one scenario to completion and collects its evidence. Harness
/// problems go to `h`; an `Err` means nothing useful could be collected.
fn execute(
    cfg: &Config,
    s: Scenario,
    accel: Accel,
    paths: &Paths,
    h: &mut Harness,
) -> Result<Collected, Error> {
    paths.prepare()?;
    let mut out = Collected::default();

    // Sparse raw swap disk, twice guest RAM.
    let swap = File::create(&paths.swap).map_err(fs_err("create", &paths.swap))?;
    swap.set_len(u64::from(cfg.mem_mib) * 2 * 1024 * 1024)
        .map_err(fs_err("size", &paths.swap))?;
    drop(swap);

    let mut daemon = None;
    if s.needs_daemon() {
        let words = daemon_words(cfg, s, paths)?;
        let level = std::env::var("VUGPU_DAEMON_LOG").unwrap_or_else(|_| "info".to_owned());
        record_command(paths, &words, &format!("RUST_LOG={level} "))?;
        let daemon_log = paths.file("daemon.log");
        let mut d = spawn("daemon", &words, &daemon_log, &[("RUST_LOG", &level)])?;
        if let Err(e) = wait_for_socket(&mut d, &paths.vhost, &daemon_log) {
            h.fail(e);
            let _ = d.stop(GRACE);
            return Ok(out);
        }
        daemon = Some(d);
    }

    let mut words = qemu_command(&qemu_spec(cfg, s, s.device(), accel, paths));
    if s.host_memory() {
        words = hostmem::qemu_words(words).map_err(Error::Config)?;
    }
    record_command(paths, &words, "")?;
    let qemu_log = paths.file("qemu.log");
    let mut qemu = spawn("qemu", &words, &qemu_log, &[])?;
    let timeline = s.host_memory().then(|| {
        timeline::Sampler::start(timeline::Sources {
            qemu_pid: qemu.pid(),
            daemon_pid: daemon.as_ref().map(Proc::pid),
            metrics_sock: Some(paths.metrics_sock.clone()),
            console: paths.console.clone(),
        })
    });

    // Wait for the guest's status line.
    let deadline = Instant::now() + cfg.timeout;
    let mut qmp: Option<Qmp> = None;
    let mut screen = Screen::default();
    let mut next_poll = Instant::now() + Duration::from_secs(1);
    let ending = loop {
        if parse_result_log(&read_lossy(&paths.result))
            .status
            .is_some()
        {
            break Ending::Status;
        }
        if qemu.try_wait().is_some() {
            break Ending::QemuExited;
        }
        if let Some(st) = daemon.as_mut().and_then(Proc::try_wait) {
            break Ending::DaemonExited(st);
        }
        let now = Instant::now();
        if now >= next_poll {
            next_poll = now + Duration::from_secs(1);
            match qmp_status(&mut qmp, &paths.qmp).as_deref() {
                Some("running") if s == Scenario::Smoke => screen.grab(&mut qmp, paths),
                None | Some("running" | "prelaunch" | "inmigrate" | "debug") => {}
                Some(other) => break Ending::GuestStopped(other.to_owned()),
            }
        }
        if now >= deadline {
            break Ending::Timeout;
        }
        sleep(POLL);
    };
    info!("{}: wait ended: {ending:?}", s.name());
    if let Some(t) = timeline {
        let (fig, notes) = hostmem::finish(&t.finish(), &paths.dir, s.name());
        h.notes.extend(notes);
        out.host_memory = Some(fig);
    }

    if matches!(ending, Ending::Status) && s == Scenario::Smoke {
        screen.grab(&mut qmp, paths);
    }
    if s == Scenario::Smoke {
        out.screen = Some(screen.result());
    }

    if matches!(ending, Ending::Status) {
        // Let /init finish and power off so the host counters are final.
        let until = Instant::now() + GUEST_POWEROFF;
        loop {
            if qemu.try_wait().is_some() {
                break;
            }
            match qmp_status(&mut qmp, &paths.qmp).as_deref() {
                None | Some("running") => {}
                Some(_) => break,
            }
            if Instant::now() >= until {
                h.notes.push(format!(
                    "guest did not power off within {} s of its status line",
                    GUEST_POWEROFF.as_secs()
                ));
                break;
            }
            sleep(POLL);
        }
    }

    // Scrape the daemon before QEMU goes away (it exits on disconnect).
    if let Some(d) = daemon.as_mut().filter(|_| !s.reference_daemon()) {
        if d.try_wait().is_none() {
            match scrape_with_retry(&paths.metrics_sock) {
                Ok(text) => {
                    let file = paths.file("metrics.prom");
                    fs::write(&file, &text).map_err(fs_err("write", &file))?;
                    match Metrics::parse(&text) {
                        Ok(m) => out.metrics = Some(m),
                        Err(e) => h.fail(format!("daemon metrics do not parse: {e}")),
                    }
                }
                Err(e) => h.fail(format!("cannot scrape daemon metrics: {e}")),
            }
        }
    }

    drop(qmp);
    // With `-action shutdown=pause` QEMU never exits by itself: if it did,
    // it failed (bad arguments, vhost-user error, crash).
    match qemu.stop(GRACE) {
        Stopped::AlreadyExited(st) => h.fail(format!(
            "QEMU exited by itself with {}: {}",
            describe(st),
            tail(&qemu_log, 3)
        )),
        Stopped::Killed(_) | Stopped::Unreaped => h.fail(format!(
            "QEMU ignored SIGTERM for {} s and was killed",
            GRACE.as_secs()
        )),
        Stopped::Terminated(_) => {}
    }

    if let Some(mut d) = daemon.take() {
        let daemon_log = paths.file("daemon.log");
        match ending {
            Ending::DaemonExited(st) => h.fail(format!(
                "daemon exited during the run with {}: {}",
                describe(st),
                tail(&daemon_log, 3)
            )),
            _ => match d.wait_timeout(DAEMON_EXIT) {
                Some(st) if st.success() => {}
                Some(st) => h.fail(format!(
                    "daemon exited with {} after QEMU disconnected: {}",
                    describe(st),
                    tail(&daemon_log, 3)
                )),
                None => {
                    let st = d.stop(GRACE);
                    h.fail(format!(
                        "daemon still running {} s after QEMU exited (then {})",
                        DAEMON_EXIT.as_secs(),
                        st.status()
                            .map_or_else(|| "not reaped".to_owned(), describe)
                    ));
                }
            },
        }
        let log = read_lossy(&daemon_log);
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            h.fail(format!("daemon panicked: {}", line.trim()));
        }
    }

    out.guest = parse_result_log(&read_lossy(&paths.result));
    if let Some(Ok(json)) = &out.guest.result {
        let file = paths.file("guest.json");
        let text = serde_json::to_string_pretty(json).unwrap_or_default();
        fs::write(&file, text).map_err(fs_err("write", &file))?;
    }
    if let Some(bad) = &out.guest.malformed_status {
        h.fail(format!("malformed VUGPU-STATUS line: {bad:?}"));
    }
    let console = read_lossy(&paths.console);
    out.console_oom = console_oom(&console);
    // The unpatched baseline may legitimately end in an OOM panic; its
    // verdict judges that. Everywhere else a panic or a silent stop fails.
    let oom_expected = s == Scenario::Baseline && out.console_oom.is_some();
    if let Some(line) = console_fatal(&console) {
        if oom_expected {
            h.notes.push(format!("guest kernel: {line}"));
        } else {
            h.fail(format!("guest kernel: {line}"));
        }
    }
    let warnings = console.lines().filter(|l| l.contains("WARNING:")).count();
    if warnings > 0 {
        h.notes
            .push(format!("guest console has {warnings} WARNING lines"));
    }
    match ending {
        Ending::Status | Ending::QemuExited | Ending::DaemonExited(_) => {}
        Ending::GuestStopped(st) if out.guest.status.is_none() => {
            let msg = format!(
                "guest stopped (QEMU state {st}) without a status line; console: {}",
                tail(&paths.console, 3)
            );
            if oom_expected {
                h.notes.push(msg);
            } else {
                h.fail(msg);
            }
        }
        Ending::GuestStopped(_) => {}
        Ending::Timeout => h.fail(format!(
            "TIMEOUT: no VUGPU-STATUS within {} s; console: {}",
            cfg.timeout.as_secs(),
            tail(&paths.console, 3)
        )),
    }
    Ok(out)
}

/// Screendumps taken while the guest runs; the one with the most colours
/// is kept as `screen.ppm`. (The display goes away when the guest powers
/// off and resets the device, which `/init` does right after its status
/// line, so a single screendump at the end would race with it.)
#[derive(Default)]
struct Screen {
    best: Option<ScreenCheck>,
    last_error: Option<String>,
}

impl Screen {
    fn grab(&mut self, qmp: &mut Option<Qmp>, paths: &Paths) {
        let Some(q) = qmp.as_mut() else {
            self.last_error = Some("no QMP connection".to_owned());
            return;
        };
        let tmp = paths.file("screen.tmp.ppm");
        let check = q
            .screendump(&tmp)
            .map_err(|e| e.to_string())
            .and_then(|()| fs::read(&tmp).map_err(|e| format!("read {}: {e}", tmp.display())))
            .and_then(|data| check_ppm(&data));
        match check {
            Ok(c) => {
                // Prefer the daemon's display size, then more colours.
                let rank = |s: &ScreenCheck| ((s.width, s.height) == DISPLAY, s.distinct_colours);
                let better = self.best.as_ref().is_none_or(|b| rank(&c) > rank(b));
                if better {
                    if let Err(e) = fs::rename(&tmp, paths.file("screen.ppm")) {
                        warn!("cannot keep screendump: {e}");
                    }
                    self.best = Some(c);
                }
            }
            Err(e) => self.last_error = Some(e),
        }
        let _ = fs::remove_file(&tmp);
    }

    fn result(self) -> Result<ScreenCheck, String> {
        match (self.best, self.last_error) {
            (Some(b), _) => Ok(b),
            (None, Some(e)) => Err(e),
            (None, None) => Err("the guest never ran long enough for a screendump".to_owned()),
        }
    }
}

pub(crate) fn scrape_with_retry(sock: &Path) -> Result<String, Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match scrape_unix(sock, IO_TIMEOUT) {
            Ok(text) => return Ok(text),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(250)),
        }
    }
}

/// Judges the collected evidence.
fn judge(s: Scenario, c: &Collected) -> Verdict {
    let report = c.guest.result.as_ref().map(|r| match r {
        Ok(v) => Ok(v),
        Err(e) => Err(e.as_str()),
    });
    let screen = c.screen.as_ref().map(|r| match r {
        Ok(v) => Ok(v),
        Err(e) => Err(e.as_str()),
    });
    let ev = Evidence {
        status: c.guest.status.as_ref(),
        report,
        metrics: c.metrics.as_ref(),
        screen,
        console_oom: c.console_oom.as_deref(),
    };
    match s {
        Scenario::Smoke => verdict::smoke(&ev, DISPLAY),
        Scenario::Evict => verdict::evict(&ev, PressureKind::TwoD),
        Scenario::Libvirt => libvirt::judge(&ev, DISPLAY),
        Scenario::HostMemory => hostmem::judge(verdict::purge(&ev), c.host_memory.as_ref(), true),
        Scenario::HostMemoryBaseline => {
            hostmem::judge(verdict::baseline(&ev), c.host_memory.as_ref(), false)
        }
        Scenario::Blob => verdict::evict(&ev, PressureKind::Blob),
        Scenario::Purge => verdict::purge(&ev),
        Scenario::Baseline => verdict::baseline(&ev),
        Scenario::QemuBuiltin | Scenario::Reference => verdict::qemu_builtin(&ev),
    }
}

/// Asks QEMU whether it lets users create the device model `name`
/// (`-device help` lists only user-creatable devices).
fn qemu_has_device(qemu: &str, name: &str) -> Result<bool, String> {
    let out = Command::new(qemu)
        .args(["-device", "help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {qemu} -device help: {e}"))?;
    Ok(device_listed(&String::from_utf8_lossy(&out.stdout), name))
}

/// `true` when `-device help` output lists the device `name` exactly.
fn device_listed(help: &str, name: &str) -> bool {
    let quoted = format!("name \"{name}\"");
    help.lines()
        .any(|l| l.split(',').next().is_some_and(|first| first == quoted))
}

/// Why `s` cannot run with this QEMU, if it cannot.
fn unsupported(cfg: &Config, s: Scenario) -> Option<String> {
    if s == Scenario::Libvirt {
        return libvirt::unsupported();
    }
    if s.device() != Device::VhostUserDevice {
        return None;
    }
    let name = "vhost-user-device-pci";
    match qemu_has_device(&cfg.qemu, name) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "SKIPPED: {} does not offer the user-creatable {name} this scenario needs \
             (vhost-user-gpu-pci masks VIRTIO_GPU_F_RESOURCE_BLOB, so guest blobs cannot \
             reach the daemon through it)",
            cfg.qemu
        )),
        Err(e) => Some(format!("SKIPPED: {e}")),
    }
}

/// Runs one scenario and summarises it.
fn run_scenario(cfg: &Config, s: Scenario, accel: Accel) -> ScenarioSummary {
    let started = Instant::now();
    let paths = Paths::new(cfg.run_dir.join(s.name()));
    eprintln!("vugpu-vm: === scenario {} ({}) ===", s.name(), accel.name());
    let mut h = Harness::default();
    let skip = unsupported(cfg, s);
    let collected = match &skip {
        Some(reason) => {
            eprintln!("vugpu-vm: {reason}");
            Collected::default()
        }
        None => match if s == Scenario::Libvirt {
            libvirt::execute(cfg, &paths, &mut h)
        } else {
            execute(cfg, s, accel, &paths, &mut h)
        } {
            Ok(c) => c,
            Err(e) => {
                h.fail(format!("harness error: {}", error_chain(&e)));
                Collected::default()
            }
        },
    };
    let mut verdict = match skip {
        Some(reason) => Verdict::skipped(reason),
        None => judge(s, &collected),
    };
    for f in h.failures {
        verdict.fail(f);
    }
    verdict.notes.extend(h.notes);
    let report: Option<&Value> = collected
        .guest
        .result
        .as_ref()
        .and_then(|r| r.as_ref().ok());
    let summary = ScenarioSummary {
        scenario: s.name().to_owned(),
        verdict,
        guest_status: collected
            .guest
            .status
            .as_ref()
            .map(|g| format!("{} {}", if g.pass { "PASS" } else { "FAIL" }, g.reason)),
        accel: accel.name().to_owned(),
        mem_mib: cfg.mem_mib,
        wall_secs: started.elapsed().as_secs_f64(),
        run_dir: paths.dir.display().to_string(),
        figures: Figures::collect(report, collected.metrics.as_ref()),
    };
    if let Err(e) = fs::create_dir_all(&paths.dir) {
        warn!("cannot create {}: {e}", paths.dir.display());
    }
    let file = paths.file("verdict.json");
    if let Ok(text) = serde_json::to_string_pretty(&summary) {
        if let Err(e) = fs::write(&file, text) {
            warn!("cannot write {}: {e}", file.display());
        }
    }
    eprintln!(
        "vugpu-vm: === scenario {}: {:?} in {:.0} s ===",
        s.name(),
        summary.verdict.outcome,
        summary.wall_secs
    );
    summary
}

/// Formats an error with its sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

/// Boots the patched kernel with KVM on QEMU's built-in GPU and reports
/// whether the guest reached its status line within the deadline.
fn probe_kvm(cfg: &Config) -> Result<bool, Error> {
    let paths = Paths::new(cfg.run_dir.join("kvm-probe"));
    paths.prepare()?;
    let mut spec = qemu_spec(cfg, Scenario::Smoke, Device::Builtin, Accel::Kvm, &paths);
    spec.swap = None;
    let words = qemu_command(&spec);
    record_command(&paths, &words, "")?;
    let mut qemu = spawn("kvm-probe", &words, &paths.file("qemu.log"), &[])?;
    let deadline = Instant::now() + cfg.probe_timeout;
    let booted = loop {
        if parse_result_log(&read_lossy(&paths.result))
            .status
            .is_some()
        {
            break true;
        }
        if qemu.try_wait().is_some() || Instant::now() >= deadline {
            break false;
        }
        sleep(POLL);
    };
    qemu.stop(GRACE);
    Ok(booted)
}

/// Picks the accelerator; returns it with the reason.
fn choose_accel(cfg: &Config) -> Result<(Accel, String), Error> {
    match cfg.accel {
        AccelChoice::Tcg => return Ok((Accel::Tcg, "forced by --accel tcg".to_owned())),
        AccelChoice::Kvm => return Ok((Accel::Kvm, "forced by --accel kvm".to_owned())),
        AccelChoice::Auto => {}
    }
    if cfg.dry_run {
        return Ok((
            Accel::Tcg,
            "auto: KVM probe skipped in --dry-run".to_owned(),
        ));
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Ok((Accel::Tcg, format!("auto: /dev/kvm not usable ({e})")));
    }
    eprintln!(
        "vugpu-vm: probing KVM with a {} s boot",
        cfg.probe_timeout.as_secs()
    );
    let started = Instant::now();
    if probe_kvm(cfg)? {
        Ok((
            Accel::Kvm,
            format!(
                "auto: KVM probe boot reached /init in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        ))
    } else {
        Ok((
            Accel::Tcg,
            format!(
                "auto: KVM probe boot gave no status within {} s, using TCG",
                cfg.probe_timeout.as_secs()
            ),
        ))
    }
}

/// Runs every configured scenario (or prints the commands with
/// `dry_run`) and returns the summary, which is also written to
/// `<run-dir>/summary.json`.
///
/// # Errors
/// [`Error`] for invalid configuration or when the run directory cannot be
/// written; scenario failures are in the summary, not errors.
pub fn run(cfg: &Config) -> Result<Option<Summary>, Error> {
    cfg.validate()?;
    let started = Instant::now();
    let (accel, reason) = choose_accel(cfg)?;
    eprintln!("vugpu-vm: accelerator {} ({reason})", accel.name());
    if cfg.dry_run {
        for &s in &cfg.scenarios {
            let paths = Paths::new(cfg.run_dir.join(s.name()));
            println!("# scenario {}", s.name());
            if s == Scenario::Libvirt {
                print!("{}", libvirt::dry_run(cfg, &paths)?);
                continue;
            }
            if s.needs_daemon() {
                let words = daemon_words(cfg, s, &paths)?;
                println!("RUST_LOG=info {} &", shell_line(&words));
            }
            println!(
                "{}",
                shell_line(&qemu_command(&qemu_spec(cfg, s, s.device(), accel, &paths)))
            );
        }
        return Ok(None);
    }
    fs::create_dir_all(&cfg.run_dir).map_err(fs_err("create", &cfg.run_dir))?;
    let scenarios: Vec<ScenarioSummary> = cfg
        .scenarios
        .iter()
        .map(|&s| run_scenario(cfg, s, libvirt::accel_for(s, accel)))
        .collect();
    let summary = Summary {
        passed: scenarios
            .iter()
            .all(|s| s.verdict.ok() && !(cfg.strict && s.verdict.outcome == Outcome::Skipped)),
        accel: accel.name().to_owned(),
        accel_reason: reason,
        wall_secs: started.elapsed().as_secs_f64(),
        run_dir: cfg.run_dir.display().to_string(),
        scenarios,
    };
    let file = cfg.run_dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    fs::write(&file, text).map_err(fs_err("write", &file))?;
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_console_fatal_finds_panic_line() {
        let console =
            "[    1.0] ok\r\n[    2.0] Kernel panic - not syncing: Attempted to kill init!\r\n";

        let line = console_fatal(console);

        assert_eq!(
            line.as_deref(),
            Some("[    2.0] Kernel panic - not syncing: Attempted to kill init!")
        );
    }

    #[test]
    fn test_guest_timeout_leaves_a_margin() {
        assert_eq!(guest_timeout(Duration::from_secs(240)), Some(180));
    }

    #[test]
    fn test_guest_timeout_too_short_is_off() {
        assert_eq!(guest_timeout(Duration::from_secs(15)), None);
    }

    #[test]
    fn test_device_listed_exact_name_only() {
        let help =
            "name \"vhost-user-gpu\", bus virtio-bus\nname \"vhost-user-gpu-pci\", bus PCI\n";

        assert!(device_listed(help, "vhost-user-gpu-pci"));
        assert!(!device_listed(help, "vhost-user-device-pci"));
    }

    #[test]
    fn test_device_listed_prefix_does_not_match() {
        let help = "name \"vhost-user-device-pci-extra\", bus PCI\n";

        assert!(!device_listed(help, "vhost-user-device-pci"));
    }

    #[test]
    fn test_console_fatal_clean_boot_returns_none() {
        assert_eq!(console_fatal("[    0.1] Linux version 6.12\n"), None);
    }

    #[test]
    fn test_validate_baseline_without_unpatched_kernel_fails() {
        let cfg = Config {
            scenarios: vec![Scenario::Baseline],
            kernel: PathBuf::from("k"),
            unpatched_kernel: None,
            initrd: PathBuf::from("i"),
            daemon: Some(PathBuf::from("d")),
            reference_daemon: None,
            run_dir: PathBuf::from("r"),
            timeout: Duration::from_secs(1),
            mem_mib: 256,
            smp: 1,
            accel: AccelChoice::Tcg,
            probe_timeout: Duration::from_secs(1),
            qemu: "qemu".to_owned(),
            dry_run: true,
            strict: false,
        };

        let err = cfg.validate();

        assert!(matches!(err, Err(Error::Config(_))));
    }
}
