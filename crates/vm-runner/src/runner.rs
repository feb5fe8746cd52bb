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
//!                       daemon.log,qemu.log,metrics.prom,screen.ppm,
//!                       device-digests.jsonl,verdict.json}
//! <run-dir>/<scenario>/{timeline.csv,timeline.svg,hostmem.json}  (host_memory)
//! ```
//!
//! Scenarios with `launcher: Launcher::Libvirt` run through
//! [`crate::libvirt`] instead (libvirt starts QEMU and the daemon).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use log::{info, warn};
use serde_json::Value;

use crate::digest::{self, DeviceRead};
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
use crate::scenario::{DaemonKind, Device, KernelKind, Launcher, QemuKind, Scenario, VerdictKind};
use crate::summary::{Figures, ScenarioSummary, Summary};
use crate::timeline;
use crate::verdict::{self, Evidence, Outcome, ScreenCheck, Verdict};

/// How long the daemon may take to create its socket.
const DAEMON_START: Duration = Duration::from_secs(15);
/// How long the guest may take to power off after its status line.
pub(crate) const GUEST_POWEROFF: Duration = Duration::from_secs(20);
/// How long the daemon may take to exit on SIGTERM.
const DAEMON_EXIT: Duration = Duration::from_secs(15);
/// How long a single-connection daemon may take to exit by itself after
/// QEMU disconnected, before it gets SIGTERM.
const DAEMON_EXIT_BY_ITSELF: Duration = Duration::from_secs(3);
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
/// Debian's firmware directories (packages qemu-system-data and seabios),
/// passed with `-L` to the QEMU built by `ci/build-qemu.sh`, whose +ds
/// source has no firmware blobs.
pub const DEBIAN_FIRMWARE_DIRS: [&str; 2] = ["/usr/share/qemu", "/usr/share/seabios"];

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
    /// Debug bzImage (lockdep, KASAN; scenarios with the debug kernel).
    pub debug_kernel: Option<PathBuf>,
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
    /// QEMU binary of the scenarios on the system QEMU.
    pub qemu: String,
    /// The QEMU 10.2.2 of `ci/build-qemu.sh`, for the scenarios that need
    /// `vhost-user-test-device-pci`.
    pub qemu_10_2: Option<PathBuf>,
    /// Compare the device's reads with the workload's digests where the
    /// scenario asks for it (off only for daemons without
    /// `--test-only-read-digest-log`).
    pub content_check: bool,
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
        for (kind, flag, k) in [
            (
                KernelKind::Unpatched,
                "--unpatched-kernel",
                &self.unpatched_kernel,
            ),
            (KernelKind::Debug, "--debug-kernel", &self.debug_kernel),
        ] {
            if let Some(s) = self.scenarios.iter().find(|s| s.kernel == kind) {
                let k = k.as_ref().ok_or_else(|| {
                    Error::Config(format!("the {} scenario needs {flag}", s.name()))
                })?;
                inputs.push((flag, k));
            }
        }
        if self.scenarios.iter().any(|s| s.reference_daemon()) {
            let d = self.reference_daemon.as_ref().ok_or_else(|| {
                Error::Config("the reference scenario needs --reference-daemon".to_owned())
            })?;
            inputs.push(("--reference-daemon", d));
        }
        if self.scenarios.iter().any(|s| s.our_daemon()) {
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

    pub(crate) fn kernel_for(&self, s: Scenario) -> &Path {
        match (s.kernel, &self.unpatched_kernel, &self.debug_kernel) {
            (KernelKind::Unpatched, Some(k), _) | (KernelKind::Debug, _, Some(k)) => k,
            _ => &self.kernel,
        }
    }

    /// The QEMU binary of scenario `s`, or why there is none.
    pub(crate) fn qemu_for(&self, s: Scenario) -> Result<String, String> {
        match (s.qemu, &self.qemu_10_2) {
            (QemuKind::System, _) => Ok(self.qemu.clone()),
            (QemuKind::Qemu10_2, Some(q)) => Ok(q.display().to_string()),
            (QemuKind::Qemu10_2, None) => Err(format!(
                "scenario {} needs QEMU 10.2.2 ({}): pass --qemu-10-2 with the binary \
                 ci/build-qemu.sh prints",
                s.name(),
                s.device.model()
            )),
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
    pub(crate) digests: PathBuf,
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
            digests: dir.join("device-digests.jsonl"),
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
            &self.digests,
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
    pub(crate) device_reads: Option<Result<Vec<DeviceRead>, String>>,
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

/// `VIRTIO_GPU_F_BLOB_SWAP`: the experimental device feature bit that lets
/// the guest evict guest blobs (DESIGN 4.5).
pub const VIRTIO_GPU_F_BLOB_SWAP: u32 = 23;

/// The last feature set the daemon logged as acked by the driver
/// (`driver acked features 0x...`), if any.
pub(crate) fn acked_features(daemon_log: &str) -> Option<u64> {
    daemon_log
        .lines()
        .rev()
        .filter_map(|l| l.split("driver acked features 0x").nth(1))
        .find_map(|rest| {
            let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            u64::from_str_radix(&hex, 16).ok()
        })
}

/// Notes whether blob swap was negotiated and fails a scenario whose table
/// entry says what it must be.
pub(crate) fn check_blob_swap(s: Scenario, acked: Option<u64>, h: &mut Harness) {
    let Some(features) = acked else {
        if s.expect_blob_swap.is_some() {
            h.fail("the daemon log has no acked feature set to check blob swap in".to_owned());
        }
        return;
    };
    let swap = features & (1 << VIRTIO_GPU_F_BLOB_SWAP) != 0;
    h.notes.push(format!(
        "driver acked features {features:#x}: blob swap (bit {VIRTIO_GPU_F_BLOB_SWAP}) {}",
        if swap { "negotiated" } else { "not negotiated" }
    ));
    if let Some(want) = s.expect_blob_swap {
        if want != swap {
            h.fail(format!(
                "blob swap (bit {VIRTIO_GPU_F_BLOB_SWAP}) {} but scenario {} needs it {}",
                if swap { "negotiated" } else { "not negotiated" },
                s.name(),
                if want { "negotiated" } else { "off" }
            ));
        }
    }
}

/// Console markers of kernel self-checks that fail every scenario: lockdep
/// reports, KASAN, WARN()/BUG(), sleeping in atomic context, RCU and hung
/// task reports. ("KernelAddressSanitizer initialized" at boot does not
/// match.)
const CONSOLE_PROBLEMS: [&str; 8] = [
    "WARNING:",
    "BUG:",
    "KASAN:",
    "sleeping function called from invalid context",
    "possible circular locking dependency",
    "inconsistent lock state",
    "suspicious RCU usage",
    "blocked for more than",
];

/// The console lines matching [`CONSOLE_PROBLEMS`] (at most `max`) and
/// how many there were.
pub(crate) fn console_problems(console: &str, max: usize) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut n = 0;
    for l in console.lines() {
        if CONSOLE_PROBLEMS.iter().any(|p| l.contains(p)) {
            n += 1;
            if lines.len() < max {
                lines.push(l.trim_end_matches('\r').trim().to_owned());
            }
        }
    }
    (lines, n)
}

/// The guest watchdog: fires well before the host deadline so that a stuck
/// workload is reported by the guest (with its counters) rather than only
/// by the host timeout.
pub(crate) fn guest_timeout(host: Duration) -> Option<u64> {
    let secs = host.as_secs();
    let margin = (secs / 4).clamp(10, 60);
    (secs > margin + 10).then(|| secs - margin)
}

/// Builds the QEMU spec for `scenario` on `accel` with the QEMU binary
/// `qemu`.
fn qemu_spec(
    cfg: &Config,
    s: Scenario,
    device: Device,
    accel: Accel,
    paths: &Paths,
    qemu: String,
) -> QemuSpec {
    let firmware_dirs = match s.qemu {
        QemuKind::System => Vec::new(),
        QemuKind::Qemu10_2 => DEBIAN_FIRMWARE_DIRS.iter().map(PathBuf::from).collect(),
    };
    QemuSpec {
        qemu,
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
        firmware_dirs,
    }
}

/// The QEMU command line of scenario `s`: [`qemu_spec`] plus, with the
/// host-memory timeline, the free-page-reporting balloon and the swap disk
/// with `cache=none` ([`hostmem::qemu_words`]).
fn scenario_qemu_words(
    cfg: &Config,
    s: Scenario,
    accel: Accel,
    paths: &Paths,
    qemu: String,
) -> Result<Vec<String>, Error> {
    let words = qemu_command(&qemu_spec(cfg, s, s.device, accel, paths, qemu));
    if s.host_memory.is_some() {
        hostmem::qemu_words(words).map_err(Error::Config)
    } else {
        Ok(words)
    }
}

/// The daemon command line of scenario `s`.
fn daemon_words(cfg: &Config, s: Scenario, paths: &Paths) -> Result<Vec<String>, Error> {
    let spec = s
        .daemon
        .ok_or_else(|| Error::Config(format!("scenario {} has no daemon", s.name())))?;
    if spec.kind == DaemonKind::Reference {
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
    let digests = (cfg.content_check && spec.content_check).then_some(paths.digests.as_path());
    Ok(daemon_command(
        bin,
        &paths.vhost,
        &paths.metrics_sock,
        spec.options,
        digests,
        DISPLAY,
    ))
}

/// Runs one scenario to completion and collects its evidence. Harness
/// problems go to `h`; an `Err` means nothing useful could be collected.
fn execute(
    cfg: &Config,
    s: Scenario,
    accel: Accel,
    qemu_bin: String,
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

    let words = scenario_qemu_words(cfg, s, accel, paths, qemu_bin)?;
    record_command(paths, &words, "")?;
    let qemu_log = paths.file("qemu.log");
    let mut qemu = spawn("qemu", &words, &qemu_log, &[])?;
    let timeline = s.host_memory.is_some().then(|| {
        timeline::Sampler::start(timeline::Sources {
            qemu_pid: qemu.pid(),
            daemon_pid: daemon.as_ref().map(Proc::pid),
            metrics_sock: s.our_daemon().then(|| paths.metrics_sock.clone()),
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
                Some("running") if s.screendump => screen.grab(&mut qmp, paths),
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

    if matches!(ending, Ending::Status) && s.screendump {
        screen.grab(&mut qmp, paths);
    }
    if s.screendump {
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
    if let Some(d) = daemon.as_mut().filter(|_| s.our_daemon()) {
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
            // A daemon serving one connection exits when QEMU disconnects;
            // one that waits for the next frontend (--socket-path in newer
            // builds) must stop cleanly on SIGTERM.
            _ => match d.wait_timeout(DAEMON_EXIT_BY_ITSELF) {
                Some(st) if st.success() => {}
                Some(st) => h.fail(format!(
                    "daemon exited with {} after QEMU disconnected: {}",
                    describe(st),
                    tail(&daemon_log, 3)
                )),
                None => match d.stop(DAEMON_EXIT) {
                    Stopped::Terminated(st) | Stopped::AlreadyExited(st) if st.success() => {}
                    st => h.fail(format!(
                        "daemon did not exit cleanly on SIGTERM after QEMU exited: {}: {}",
                        st.status()
                            .map_or_else(|| "not reaped".to_owned(), describe),
                        tail(&daemon_log, 3)
                    )),
                },
            },
        }
        let log = read_lossy(&daemon_log);
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            h.fail(format!("daemon panicked: {}", line.trim()));
        }
        if s.our_daemon() {
            check_blob_swap(s, acked_features(&log), h);
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
    let oom_expected = s.oom_panic_expected && out.console_oom.is_some();
    if let Some(line) = console_fatal(&console) {
        if oom_expected && line.contains("Kernel panic") {
            h.notes.push(format!("guest kernel: {line}"));
        } else {
            h.fail(format!("guest kernel: {line}"));
        }
    }
    let (problems, n) = console_problems(&console, 3);
    if n > 0 {
        h.fail(format!(
            "guest console has {n} lockdep/KASAN/WARN/BUG/atomic-sleep/hung-task lines: {}",
            problems.join(" | ")
        ));
    }
    if s.content_check() && cfg.content_check {
        out.device_reads = Some(
            fs::read_to_string(&paths.digests)
                .map_err(|e| format!("no device digest log {}: {e}", paths.digests.display()))
                .and_then(|text| digest::parse_log(&text)),
        );
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
fn judge(s: Scenario, c: &Collected, content_check: bool) -> Verdict {
    let report = c.guest.result.as_ref().map(|r| match r {
        Ok(v) => Ok(v),
        Err(e) => Err(e.as_str()),
    });
    let screen = c.screen.as_ref().map(|r| match r {
        Ok(v) => Ok(v),
        Err(e) => Err(e.as_str()),
    });
    let device_reads = c.device_reads.as_ref().map(|r| match r {
        Ok(v) => Ok(v.as_slice()),
        Err(e) => Err(e.as_str()),
    });
    let ev = Evidence {
        status: c.guest.status.as_ref(),
        report,
        metrics: c.metrics.as_ref(),
        screen,
        console_oom: c.console_oom.as_deref(),
        device_reads,
    };
    let mut v = match s.verdict {
        VerdictKind::Smoke => verdict::smoke(&ev, DISPLAY),
        VerdictKind::Evict {
            pressure,
            host: true,
        } => verdict::evict(&ev, pressure),
        VerdictKind::Evict {
            pressure,
            host: false,
        } => verdict::guest_only(&ev, pressure),
        VerdictKind::SwapRatio => verdict::swap_ratio(&ev),
        VerdictKind::Purge => verdict::purge(&ev),
        VerdictKind::Baseline => verdict::baseline(&ev),
        VerdictKind::BlobNoSwap => verdict::blob_noswap(&ev),
        VerdictKind::Fault { fault } => verdict::fault(&ev, fault),
    };
    if s.content_check() {
        if content_check {
            verdict::content(&mut v, &ev);
        } else {
            v.notes
                .push("host content check off (--no-content-check)".to_owned());
        }
    }
    if let Some(max) = s.max_workload_secs {
        verdict::time_bound(&mut v, &ev, max);
    }
    if s.screendump && s.verdict != VerdictKind::Smoke {
        verdict::display(&mut v, &ev, DISPLAY);
    }
    if let Some(hm) = s.host_memory {
        v = hostmem::judge(v, c.host_memory.as_ref(), hm.figures_required);
    }
    v
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

/// The QEMU binary for `s`, or why `s` cannot run (a failure, not a skip:
/// `ci/build-qemu.sh` provides the QEMU these scenarios need).
fn qemu_for_scenario(cfg: &Config, s: Scenario) -> Result<String, String> {
    let qemu = cfg.qemu_for(s)?;
    if s.qemu == QemuKind::System || cfg.dry_run {
        return Ok(qemu);
    }
    let name = s.device.model();
    match qemu_has_device(&qemu, name) {
        Ok(true) => Ok(qemu),
        Ok(false) => Err(format!(
            "{qemu} does not offer the user-creatable {name} scenario {} needs",
            s.name()
        )),
        Err(e) => Err(e),
    }
}

/// Runs one scenario and summarises it.
fn run_scenario(cfg: &Config, s: Scenario, accel: Accel) -> ScenarioSummary {
    let started = Instant::now();
    let paths = Paths::new(cfg.run_dir.join(s.name()));
    eprintln!("vugpu-vm: === scenario {} ({}) ===", s.name(), accel.name());
    let mut h = Harness::default();
    let mut skipped = None;
    let executed = match s.launcher {
        Launcher::Runner => {
            qemu_for_scenario(cfg, s).map(|qemu| execute(cfg, s, accel, qemu, &paths, &mut h))
        }
        Launcher::Libvirt => match libvirt::unsupported() {
            Some(reason) => {
                eprintln!("vugpu-vm: {reason}");
                skipped = Some(reason);
                Ok(Ok(Collected::default()))
            }
            None => Ok(libvirt::execute(cfg, s, &paths, &mut h)),
        },
    };
    let collected = match executed {
        Err(reason) => {
            h.fail(reason);
            None
        }
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            h.fail(format!("harness error: {}", error_chain(&e)));
            Some(Collected::default())
        }
    };
    let ran = collected.is_some();
    let collected = collected.unwrap_or_default();
    let mut verdict = match skipped {
        Some(reason) => Verdict::skipped(reason),
        None if ran => judge(s, &collected, cfg.content_check),
        None => Verdict {
            outcome: Outcome::Fail,
            failures: Vec::new(),
            notes: Vec::new(),
        },
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
    let smoke = Scenario::by_name("smoke")
        .ok_or_else(|| Error::Config("no smoke scenario in the table".to_owned()))?;
    let mut spec = qemu_spec(
        cfg,
        smoke,
        Device::Builtin,
        Accel::Kvm,
        &paths,
        cfg.qemu.clone(),
    );
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
            if s.launcher == Launcher::Libvirt {
                print!("{}", libvirt::dry_run(cfg, s, &paths)?);
                continue;
            }
            if s.needs_daemon() {
                let words = daemon_words(cfg, s, &paths)?;
                println!("RUST_LOG=info {} &", shell_line(&words));
            }
            let qemu = cfg.qemu_for(s).unwrap_or_else(|e| format!("<{e}>"));
            println!(
                "{}",
                shell_line(&scenario_qemu_words(cfg, s, accel, &paths, qemu)?)
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
    fn test_console_problems_finds_lockdep_and_kasan_not_kasan_init() {
        let console = "[0.0] KernelAddressSanitizer initialized (generic)\n\
                       [5.0] WARNING: possible circular locking dependency detected\n\
                       [6.0] BUG: KASAN: use-after-free in virtio_gpu_x\n";

        let (lines, n) = console_problems(console, 1);

        assert_eq!(n, 2);
        assert_eq!(
            lines,
            ["[5.0] WARNING: possible circular locking dependency detected"]
        );
    }

    #[test]
    fn test_acked_features_takes_the_last_logged_set() {
        let log = "x INFO vhost-user-gpu: driver acked features 0x1000000000e\n\
                   x INFO vhost-user-gpu: driver acked features 0x10170800000e\n";

        assert_eq!(acked_features(log), Some(0x1017_0800_000e));
    }

    #[test]
    fn test_check_blob_swap_negotiated_against_noswap_fails() {
        let noswap = Scenario::by_name("blob-noswap").expect("blob-noswap exists");
        let mut h = Harness::default();

        check_blob_swap(noswap, Some(1 << 23 | 0xe), &mut h);

        assert_eq!(h.failures.len(), 1, "{:?}", h.failures);
    }

    #[test]
    fn test_console_problems_atomic_sleep_is_found() {
        let console = "[1.0] BUG: sleeping function called from invalid context at mm/x.c:1\n";

        let (_, n) = console_problems(console, 3);

        assert_eq!(n, 1);
    }

    #[test]
    fn test_console_problems_clean_boot_has_none() {
        let (_, n) = console_problems("[0.1] Linux version 6.12\n[0.2] Run /init\n", 3);

        assert_eq!(n, 0);
    }

    fn config(scenarios: Vec<Scenario>) -> Config {
        Config {
            scenarios,
            kernel: PathBuf::from("k"),
            unpatched_kernel: None,
            debug_kernel: None,
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
            qemu_10_2: None,
            content_check: true,
            dry_run: true,
            strict: false,
        }
    }

    #[test]
    fn test_qemu_for_blob_without_qemu_10_2_is_an_error() {
        let blob = Scenario::by_name("blob").expect("blob exists");
        let cfg = config(vec![blob]);

        let q = cfg.qemu_for(blob);

        assert!(q.is_err_and(|e| e.contains("--qemu-10-2")));
    }

    #[test]
    fn test_qemu_for_evict_uses_system_qemu() {
        let evict = Scenario::by_name("evict").expect("evict exists");
        let mut cfg = config(vec![evict]);
        cfg.qemu_10_2 = Some(PathBuf::from("/q/qemu-system-x86_64"));

        assert_eq!(cfg.qemu_for(evict).as_deref(), Ok("qemu"));
    }

    #[test]
    fn test_validate_baseline_without_unpatched_kernel_fails() {
        let cfg = config(vec![Scenario::by_name("baseline").expect("baseline exists")]);

        let err = cfg.validate();

        assert!(matches!(err, Err(Error::Config(_))));
    }
}
