//! The `libvirt` scenario: libvirt, not the runner, starts QEMU and the
//! daemon, the way an operator deploys it.
//!
//! The runner starts `virtlogd` and `libvirtd` itself (there is no systemd
//! here) inside a private mount namespace in which the directories libvirt
//! reads and writes are bind mounts of directories under the scenario's run
//! directory:
//!
//! ```text
//! <scenario>/sandbox/etc         -> /etc/libvirt   (libvirtd.conf, qemu.conf, virtlogd.conf)
//! <scenario>/sandbox/run         -> /run           (sockets, pid files, domain status)
//! <scenario>/sandbox/lib         -> /var/lib/libvirt
//! <scenario>/sandbox/cache       -> /var/cache/libvirt (QEMU capabilities cache)
//! <scenario>/sandbox/log         -> /var/log/libvirt   (log/qemu/<domain>.log)
//! <scenario>/sandbox/vhost-user  -> /usr/share/qemu/vhost-user (backend descriptors)
//! ```
//!
//! So every setting this sandbox needs (root user, no security driver, no
//! cgroups, no namespaces) lives in files of this run only, and nothing on
//! the machine changes: the namespace goes away with the two daemons, which
//! the runner stops by PID.
//!
//! libvirt finds the daemon through a vhost-user descriptor
//! (`10-vugpu.json`, sorting before QEMU's `50-qemu-gpu.json`, which is
//! copied beside it as on a real install), runs its binary with
//! `--print-capabilities` and then with `--fd=N`. The descriptor's binary
//! is a small generated wrapper that adds the harness's display size and
//! metrics socket and keeps the daemon's log. The transient domain
//! (`virsh create`) is TCG with memfd shared memory, the guest kernel and
//! initramfs, a swap disk, both serial ports in files and
//! `<video><driver name='vhostuser'/><model type='virtio'/></video>`; the
//! guest runs the evict workload and the display is checked through `virsh
//! screenshot`.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::error::{fs_err, Error};
use crate::guest::parse_result_log;
use crate::png_screen::check_png;
use crate::prom::Metrics;
use crate::qemu::{shell_quote, Accel};
use crate::runner::{
    acked_features, check_blob_swap, console_fatal, console_oom, console_problems, guest_timeout,
    read_lossy, record_command, scrape_with_retry, spawn, tail, Collected, Config, Harness, Paths,
    DISPLAY, GRACE, GUEST_POWEROFF, MAX_SOCKET_PATH, POLL,
};
use crate::scenario::{Launcher, Scenario};
use crate::verdict::ScreenCheck;

/// Name of the transient domain.
pub const DOMAIN: &str = "vugpu-libvirt";
/// Environment variable choosing the machine type (`q35`, the default, or
/// `pc`).
pub const MACHINE_ENV: &str = "VUGPU_LIBVIRT_MACHINE";
/// How long `virtlogd` and `libvirtd` may take to create their sockets
/// (libvirtd probes QEMU's capabilities into its empty cache first).
const DAEMONS_START: Duration = Duration::from_secs(60);
/// Deadline of one `virsh` command (`create` waits for QEMU to start).
const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Period of the domain-state / screenshot / metrics polls.
const SAMPLE_PERIOD: Duration = Duration::from_secs(2);
/// Seconds `/init` stays up after its status line (`vugpu.linger=`), so the
/// daemon can be scraped before libvirt destroys the powered-off domain
/// (the QEMU driver has no `preserve` action for `on_poweroff`).
const LINGER_SECS: u64 = 4;
/// Where QEMU's packages put the vhost-user descriptors libvirt reads.
const SYSTEM_VHOST_USER_DIR: &str = "/usr/share/qemu/vhost-user";
/// Our descriptor's file name: sorts before QEMU's `50-qemu-gpu.json`.
const DESCRIPTOR_NAME: &str = "10-vugpu.json";

/// Private directories and the system paths they replace in the namespace.
const BINDS: [(&str, &str); 6] = [
    ("etc", "/etc/libvirt"),
    ("run", "/run"),
    ("lib", "/var/lib/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
    ("vhost-user", SYSTEM_VHOST_USER_DIR),
];

/// Programs the scenario runs, looked up in `PATH`, `/usr/sbin` and `/sbin`.
const TOOLS: [&str; 6] = [
    "libvirtd", "virtlogd", "virsh", "unshare", "nsenter", "mount",
];

/// `libvirtd.conf`: local root clients on the private socket, no polkit
/// (there is no D-Bus system bus here).
const LIBVIRTD_CONF: &str = "\
# Written by vugpu-vm for one libvirt scenario run.
unix_sock_rw_perms = \"0700\"
auth_unix_ro = \"none\"
auth_unix_rw = \"none\"
log_outputs = \"3:stderr\"
";

/// `virtlogd.conf`.
const VIRTLOGD_CONF: &str = "\
# Written by vugpu-vm for one libvirt scenario run.
log_outputs = \"3:stderr\"
";

/// `qemu.conf` of the run. Measured on this machine (libvirt 11.3, no
/// systemd, running as root): only `user`/`group` root are required, because
/// the run directory, the swap disk, the serial files and the backend's
/// log and metrics socket belong to the runner (root) and libvirt's default
/// `libvirt-qemu` user cannot open them (an empty qemu.conf fails with
/// "Could not get process id of vhost-user-gpu", no `user`/`group` with
/// "Permission denied" on the swap disk). The other settings were not
/// needed here; they keep libvirt from relabelling or chowning the runner's
/// files, from asking for cgroup controllers or a private /dev on hosts
/// where those would fail, and from depending on an AppArmor or SELinux
/// profile.
const QEMU_CONF: &str = "\
# Written by vugpu-vm for one libvirt scenario run (sandbox settings).
# Required here: QEMU and the vhost-user backend run as the owner of the
# run directory.
user = \"root\"
group = \"root\"
# Not required on the machine this was measured on; they keep the run
# independent of the host's security modules, cgroup setup and /dev.
dynamic_ownership = 0
remember_owner = 0
security_driver = \"none\"
namespaces = []
cgroup_controllers = []
";

/// The accelerator a scenario really runs with: libvirt domains here are
/// always TCG (`type='qemu'`), whatever the probe chose for the others.
pub fn accel_for(s: Scenario, probed: Accel) -> Accel {
    if s.launcher == Launcher::Libvirt {
        Accel::Tcg
    } else {
        probed
    }
}

/// Finds `name` in `PATH`, `/usr/sbin` or `/sbin`.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why this host cannot run the scenario, if it cannot.
pub fn unsupported() -> Option<String> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "SKIPPED: {} not installed (ci/install-deps.sh libvirt installs libvirt from Debian)",
            missing.join(", ")
        ));
    }
    if !Path::new(SYSTEM_VHOST_USER_DIR).is_dir() {
        return Some(format!(
            "SKIPPED: {SYSTEM_VHOST_USER_DIR} does not exist (Debian package qemu-system-gui)"
        ));
    }
    None
}

/// The machine type: `q35` unless [`MACHINE_ENV`] says otherwise.
fn machine() -> String {
    std::env::var(MACHINE_ENV)
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "q35".to_owned())
}

/// Escapes text for XML content and single- or double-quoted attributes.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Everything the domain XML is built from.
#[derive(Clone, Debug)]
pub struct DomainSpec {
    /// Domain name.
    pub name: String,
    /// Machine type (`q35`, `pc`).
    pub machine: String,
    /// Guest RAM in MiB.
    pub mem_mib: u32,
    /// Virtual CPUs.
    pub smp: u32,
    /// Absolute path of the QEMU binary.
    pub emulator: PathBuf,
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Raw swap disk image (the guest's /dev/vda).
    pub swap: PathBuf,
    /// Host cache mode of the swap disk (`unsafe`, `none`).
    pub swap_cache: &'static str,
    /// File receiving the first serial port (kernel console).
    pub console: PathBuf,
    /// File receiving the second serial port (workload results).
    pub result: PathBuf,
}

/// The transient domain's XML: TCG, memfd shared memory (vhost-user needs
/// it), direct kernel boot, swap disk, two file serial ports, the vhost-user
/// video device, no balloon.
pub fn domain_xml(d: &DomainSpec) -> String {
    let p = |path: &Path| xml_escape(&path.display().to_string());
    let mut x = String::new();
    let _ = write!(
        x,
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>{smp}</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='{cache}'/>
      <source file='{swap}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
    <serial type='file'>
      <source path='{result}'/>
      <target port='1'/>
    </serial>
    <video>
      <driver name='vhostuser'/>
      <model type='virtio'/>
    </video>
    <memballoon model='none'/>
  </devices>
</domain>
",
        name = xml_escape(&d.name),
        mem = d.mem_mib,
        smp = d.smp,
        machine = xml_escape(&d.machine),
        kernel = p(&d.kernel),
        initrd = p(&d.initrd),
        cmdline = xml_escape(&d.cmdline),
        emulator = p(&d.emulator),
        cache = d.swap_cache,
        swap = p(&d.swap),
        console = p(&d.console),
        result = p(&d.result),
    );
    x
}

/// The vhost-user descriptor naming `binary` as a GPU backend.
pub fn descriptor_json(binary: &Path) -> String {
    let v = serde_json::json!({
        "description": "vhost-user-gpu daemon of this repository (vugpu-vm libvirt scenario)",
        "type": "gpu",
        "binary": binary.display().to_string(),
    });
    let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
    text.push('\n');
    text
}

/// The backend wrapper libvirt runs. `--print-capabilities` goes straight
/// to the daemon (libvirt reads its stdout); otherwise (`--fd=N`) the
/// daemon gets the harness's display size and metrics socket, and its
/// stderr goes to `log`.
pub fn wrapper_script(
    daemon: &Path,
    options: &[&str],
    display: (u32, u32),
    metrics: &Path,
    log: &Path,
    rust_log: &str,
) -> String {
    let d = shell_quote(&daemon.display().to_string());
    let opts: String = options
        .iter()
        .map(|o| format!(" {}", shell_quote(o)))
        .collect();
    format!(
        "#!/bin/sh
# Written by vugpu-vm: the backend binary of the vhost-user descriptor of
# the libvirt scenario. libvirt runs it with --print-capabilities, then with
# --fd=N (one end of a connected socketpair).
case \" $* \" in
*\" --print-capabilities \"*) exec {d} \"$@\" ;;
esac
RUST_LOG={level}
export RUST_LOG
exec {d} \"$@\"{opts} --width {w} --height {h} --metrics-listen {m} 2>>{log}
",
        level = shell_quote(rust_log),
        w = display.0,
        h = display.1,
        m = shell_quote(&format!("unix:{}", metrics.display())),
        log = shell_quote(&log.display().to_string()),
    )
}

/// The private directory tree of one run.
struct Private {
    root: PathBuf,
}

impl Private {
    fn new(scenario_dir: &Path) -> Self {
        Self {
            root: scenario_dir.join("sandbox"),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// libvirtd's read-write socket as seen from outside the namespace.
    fn socket(&self) -> PathBuf {
        self.dir("run").join("libvirt/libvirt-sock")
    }

    fn virtlogd_socket(&self) -> PathBuf {
        self.dir("run").join("libvirt/virtlogd-sock")
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.socket().display())
    }

    /// The shell script that makes the bind mounts in the new namespace and
    /// becomes `virtlogd`.
    fn namespace_script(&self, virtlogd: &Path) -> String {
        let mut s = String::from("set -e\n");
        for (name, target) in BINDS {
            let _ = writeln!(
                s,
                "mount --bind {} {target}",
                shell_quote(&self.dir(name).display().to_string())
            );
        }
        let _ = writeln!(s, "exec {}", shell_quote(&virtlogd.display().to_string()));
        s
    }

    /// Creates the tree: empty state directories (stale state of a previous
    /// run removed), the three configuration files, the wrapper and the
    /// descriptors.
    fn create(&self, wrapper: &str) -> Result<(), Error> {
        if self.root.exists() {
            fs::remove_dir_all(&self.root).map_err(fs_err("remove", &self.root))?;
        }
        for (name, _) in BINDS {
            let d = self.dir(name);
            fs::create_dir_all(&d).map_err(fs_err("create", &d))?;
        }
        let etc = self.dir("etc");
        for (file, text) in [
            ("libvirtd.conf", LIBVIRTD_CONF),
            ("virtlogd.conf", VIRTLOGD_CONF),
            ("qemu.conf", QEMU_CONF),
        ] {
            let f = etc.join(file);
            fs::write(&f, text).map_err(fs_err("write", &f))?;
        }
        let bin = self.root.join("vugpu-backend");
        fs::write(&bin, wrapper).map_err(fs_err("write", &bin))?;
        set_executable(&bin)?;
        let vu = self.dir("vhost-user");
        let ours = vu.join(DESCRIPTOR_NAME);
        fs::write(&ours, descriptor_json(&bin)).map_err(fs_err("write", &ours))?;
        // Keep QEMU's own descriptors beside ours, as on a real install, so
        // that libvirt's name order is what picks ours.
        if let Ok(entries) = fs::read_dir(SYSTEM_VHOST_USER_DIR) {
            for e in entries.flatten() {
                let to = vu.join(e.file_name());
                if to != ours {
                    fs::copy(e.path(), &to).map_err(fs_err("copy", &e.path()))?;
                }
            }
        }
        Ok(())
    }

    /// The pid file libvirt writes for a domain's vhost-user-gpu backend.
    fn backend_pid_file(&self) -> Option<PathBuf> {
        let dir = self.dir("run").join("libvirt/qemu");
        fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("-vhost-user-gpu.pid"))
            })
    }

    /// The pid file of the domain's QEMU.
    fn qemu_pid_file(&self) -> PathBuf {
        self.dir("run").join(format!("libvirt/qemu/{DOMAIN}.pid"))
    }
}

fn set_executable(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(fs_err("chmod", path))
}

/// Reads a pid file.
fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A process's command line, words separated by spaces.
fn proc_cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    Some(words.join(" "))
}

/// Runs a short command with a deadline; returns its status, stdout and
/// stderr. Output goes through files in `dir`, so a chatty command cannot
/// block on a full pipe while we wait.
fn run_bounded(
    dir: &Path,
    program: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let out_path = dir.join("cmd.out");
    let err_path = dir.join("cmd.err");
    let out = File::create(&out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
    let err = File::create(&err_path).map_err(|e| format!("create {}: {e}", err_path.display()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                // Our own child, not yet reaped: its PID cannot be reused.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {} did not finish within {} s",
                    program.display(),
                    args.join(" "),
                    timeout.as_secs()
                ));
            }
            Ok(None) => sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    };
    Ok((status, read_lossy(&out_path), read_lossy(&err_path)))
}

/// Runs `daemon --print-capabilities` as libvirt does and checks that it
/// answers a GPU capabilities object (libvirt silently skips a backend for
/// which this fails). Returns the JSON text.
fn capabilities(dir: &Path, daemon: &Path) -> Result<String, String> {
    let args = ["--print-capabilities".to_owned()];
    let (st, out, err) = run_bounded(dir, daemon, &args, Duration::from_secs(10))?;
    if !st.success() {
        return Err(format!(
            "{} --print-capabilities failed ({st}): {}; libvirt skips such a backend \
             (the daemon needs --print-capabilities and --fd=N, issue 10)",
            daemon.display(),
            err.trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_str(out.trim()).map_err(|e| {
        format!(
            "{} --print-capabilities printed no JSON ({e}): {:?}",
            daemon.display(),
            out.trim()
        )
    })?;
    if v.get("type").and_then(|t| t.as_str()) != Some("gpu") {
        return Err(format!(
            "{} --print-capabilities does not say type gpu: {}",
            daemon.display(),
            out.trim()
        ));
    }
    Ok(out.trim().to_owned())
}

/// virtlogd and libvirtd of one run, in their private namespace.
struct Daemons {
    virtlogd: crate::process::Proc,
    libvirtd: crate::process::Proc,
    virsh: PathBuf,
    uri: String,
    dir: PathBuf,
}

impl Daemons {
    /// Starts virtlogd in a new mount namespace with the bind mounts, then
    /// libvirtd in the same namespace (`nsenter` execs it, so both PIDs are
    /// the daemons' own), and waits for their sockets.
    fn start(private: &Private, paths: &Paths) -> Result<Self, String> {
        let tool = |n: &str| find_tool(n).ok_or_else(|| format!("{n} not found"));
        let script = private.namespace_script(&tool("virtlogd")?);
        let words = vec![
            tool("unshare")?.display().to_string(),
            "--mount".to_owned(),
            "--propagation".to_owned(),
            "private".to_owned(),
            "--".to_owned(),
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script,
        ];
        record_command(paths, &words, "").map_err(|e| e.to_string())?;
        let vlog = private.root.join("virtlogd.log");
        let mut virtlogd = spawn("virtlogd", &words, &vlog, &[]).map_err(|e| e.to_string())?;
        wait_socket(&mut virtlogd, &private.virtlogd_socket(), &vlog)?;
        let words = vec![
            tool("nsenter")?.display().to_string(),
            format!("--target={}", virtlogd.pid()),
            "--mount".to_owned(),
            "--".to_owned(),
            tool("libvirtd")?.display().to_string(),
        ];
        record_command(paths, &words, "").map_err(|e| e.to_string())?;
        let llog = private.root.join("libvirtd.log");
        let mut libvirtd = match spawn("libvirtd", &words, &llog, &[]) {
            Ok(p) => p,
            Err(e) => {
                virtlogd.stop(GRACE);
                return Err(e.to_string());
            }
        };
        if let Err(e) = wait_socket(&mut libvirtd, &private.socket(), &llog) {
            libvirtd.stop(GRACE);
            virtlogd.stop(GRACE);
            return Err(e);
        }
        info!(
            "libvirt: virtlogd pid {}, libvirtd pid {}",
            virtlogd.pid(),
            libvirtd.pid()
        );
        Ok(Self {
            virtlogd,
            libvirtd,
            virsh: tool("virsh")?,
            uri: private.uri(),
            dir: private.root.clone(),
        })
    }

    /// Runs `virsh -c <uri> args...`; stdout on success, a message with
    /// stderr otherwise.
    fn virsh(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-c".to_owned(), self.uri.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let (st, out, err) = run_bounded(&self.dir, &self.virsh, &all, VIRSH_TIMEOUT)?;
        if st.success() {
            Ok(out)
        } else {
            Err(format!("virsh {}: {}", args.join(" "), err.trim()))
        }
    }

    /// The words of a virsh command, for commands.txt.
    fn virsh_words(&self, args: &[&str]) -> Vec<String> {
        let mut w = vec![
            self.virsh.display().to_string(),
            "-c".to_owned(),
            self.uri.clone(),
        ];
        w.extend(args.iter().map(|a| (*a).to_owned()));
        w
    }

    /// Stops libvirtd, then virtlogd, by PID.
    fn stop(mut self, h: &mut Harness) {
        for (name, p) in [
            ("libvirtd", &mut self.libvirtd),
            ("virtlogd", &mut self.virtlogd),
        ] {
            use crate::process::Stopped;
            match p.stop(GRACE) {
                Stopped::Terminated(_) => {}
                Stopped::AlreadyExited(st) => h.fail(format!(
                    "{name} exited during the run with {}",
                    crate::process::describe(st)
                )),
                Stopped::Killed(_) | Stopped::Unreaped => h.fail(format!(
                    "{name} ignored SIGTERM for {} s and was killed",
                    GRACE.as_secs()
                )),
            }
        }
    }
}

/// Waits for a daemon's socket.
fn wait_socket(p: &mut crate::process::Proc, sock: &Path, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + DAEMONS_START;
    loop {
        if sock.exists() {
            return Ok(());
        }
        if let Some(st) = p.try_wait() {
            return Err(format!(
                "exited with {} before creating {}: {}",
                crate::process::describe(st),
                sock.display(),
                tail(log, 5)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not appear within {} s",
                sock.display(),
                DAEMONS_START.as_secs()
            ));
        }
        sleep(Duration::from_millis(50));
    }
}

/// The kernel command line: the scenario's plus the linger of `/init`.
fn cmdline(cfg: &Config, s: Scenario) -> String {
    format!(
        "{} vugpu.linger={LINGER_SECS}",
        s.kernel_cmdline(guest_timeout(cfg.timeout))
    )
}

/// The domain of scenario `s`.
///
/// # Errors
/// When the scenario's QEMU is not configured (`--qemu-10-2`).
fn domain_spec(cfg: &Config, s: Scenario, paths: &Paths) -> Result<DomainSpec, Error> {
    let qemu = PathBuf::from(cfg.qemu_for(s).map_err(Error::Config)?);
    let emulator = if qemu.is_absolute() {
        qemu
    } else {
        find_tool(&qemu.display().to_string()).unwrap_or(qemu)
    };
    Ok(DomainSpec {
        name: DOMAIN.to_owned(),
        machine: machine(),
        mem_mib: cfg.mem_mib,
        smp: cfg.smp,
        emulator,
        kernel: cfg.kernel_for(s).to_path_buf(),
        initrd: cfg.initrd.clone(),
        cmdline: cmdline(cfg, s),
        swap: paths.swap.clone(),
        swap_cache: "unsafe",
        console: paths.console.clone(),
        result: paths.result.clone(),
    })
}

/// The scenario's own daemon options (after libvirt's `--fd=N`).
fn daemon_options(s: Scenario) -> &'static [&'static str] {
    s.daemon.map_or(&[], |d| d.options)
}

/// What `--dry-run` prints for this scenario.
///
/// # Errors
/// [`Error::Config`] without `--daemon`.
pub(crate) fn dry_run(cfg: &Config, s: Scenario, paths: &Paths) -> Result<String, Error> {
    let daemon = cfg
        .daemon
        .as_ref()
        .ok_or_else(|| Error::Config("--daemon missing".to_owned()))?;
    let private = Private::new(&paths.dir);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# private libvirt tree {} (bind-mounted in a new mount namespace):",
        private.root.display()
    );
    let _ = writeln!(
        out,
        "unshare --mount --propagation private -- /bin/sh -c {} &",
        shell_quote(&private.namespace_script(Path::new("virtlogd")))
    );
    let _ = writeln!(out, "nsenter --target=<virtlogd pid> --mount -- libvirtd &");
    let _ = writeln!(
        out,
        "# {}/{DESCRIPTOR_NAME}:\n{}",
        private.dir("vhost-user").display(),
        descriptor_json(&private.root.join("vugpu-backend"))
    );
    let _ = writeln!(
        out,
        "# {}/vugpu-backend:\n{}",
        private.root.display(),
        wrapper_script(
            daemon,
            daemon_options(s),
            DISPLAY,
            &paths.metrics_sock,
            &paths.file("daemon.log"),
            "info"
        )
    );
    let _ = writeln!(
        out,
        "virsh -c {} create {}",
        shell_quote(&private.uri()),
        paths.file("domain.xml").display()
    );
    out.push_str(&domain_xml(&domain_spec(cfg, s, paths)?));
    Ok(out)
}

/// Screenshots taken while the guest runs; the best one is kept as
/// `screen.png` (the daemon's display size first, then more colours).
#[derive(Default)]
struct Screens {
    best: Option<ScreenCheck>,
    last_error: Option<String>,
    taken: u32,
}

impl Screens {
    fn grab(&mut self, d: &Daemons, paths: &Paths) {
        let tmp = paths.file("screen.tmp.png");
        let tmp_s = tmp.display().to_string();
        let check = d
            .virsh(&["screenshot", DOMAIN, "--file", &tmp_s])
            .and_then(|_| fs::read(&tmp).map_err(|e| format!("read {tmp_s}: {e}")))
            .and_then(|data| check_png(&data));
        self.taken += 1;
        match check {
            Ok(c) => {
                let rank = |s: &ScreenCheck| ((s.width, s.height) == DISPLAY, s.distinct_colours);
                if self.best.as_ref().is_none_or(|b| rank(&c) > rank(b)) {
                    if let Err(e) = fs::rename(&tmp, paths.file("screen.png")) {
                        warn!("cannot keep screenshot: {e}");
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
            (None, None) => Err("the domain never ran long enough for a screenshot".to_owned()),
        }
    }
}

/// Why the wait for the guest ended.
#[derive(Debug)]
enum Ending {
    Status,
    DomainGone(String),
    Timeout,
}

/// Runs the scenario: private tree, daemons, domain, wait, evidence,
/// teardown. Harness problems go to `h`.
///
/// # Errors
/// [`Error`] when the run directory cannot be written.
pub(crate) fn execute(
    cfg: &Config,
    s: Scenario,
    paths: &Paths,
    h: &mut Harness,
) -> Result<Collected, Error> {
    paths.prepare()?;
    let mut out = Collected::default();
    let daemon = cfg
        .daemon
        .as_ref()
        .ok_or_else(|| Error::Config("--daemon missing".to_owned()))?;
    let private = Private::new(&paths.dir);
    if private.socket().as_os_str().len() > MAX_SOCKET_PATH {
        h.fail(format!(
            "{} is too long for a unix socket path; use a shorter --run-dir",
            private.socket().display()
        ));
        return Ok(out);
    }
    match capabilities(&paths.dir, daemon) {
        Ok(caps) => h.notes.push(format!("daemon --print-capabilities: {caps}")),
        Err(e) => {
            h.fail(e);
            return Ok(out);
        }
    }

    let swap = File::create(&paths.swap).map_err(fs_err("create", &paths.swap))?;
    swap.set_len(u64::from(cfg.mem_mib) * 2 * 1024 * 1024)
        .map_err(fs_err("size", &paths.swap))?;
    drop(swap);

    let level = std::env::var("VUGPU_DAEMON_LOG").unwrap_or_else(|_| "info".to_owned());
    let daemon_log = paths.file("daemon.log");
    fs::write(&daemon_log, "").map_err(fs_err("create", &daemon_log))?;
    private.create(&wrapper_script(
        daemon,
        daemon_options(s),
        DISPLAY,
        &paths.metrics_sock,
        &daemon_log,
        &level,
    ))?;
    let spec = domain_spec(cfg, s, paths)?;
    let xml_path = paths.file("domain.xml");
    fs::write(&xml_path, domain_xml(&spec)).map_err(fs_err("write", &xml_path))?;

    let daemons = match Daemons::start(&private, paths) {
        Ok(d) => d,
        Err(e) => {
            h.fail(format!("libvirt daemons: {e}"));
            return Ok(out);
        }
    };
    h.notes.push(format!(
        "libvirt {}, machine {}, private tree {}",
        daemons
            .virsh(&["version", "--daemon"])
            .ok()
            .and_then(|v| v
                .lines()
                .find(|l| l.contains("Running against daemon"))
                .map(|l| l.trim().to_owned()))
            .unwrap_or_else(|| "version unknown".to_owned()),
        spec.machine,
        private.root.display()
    ));
    run_domain(cfg, &daemons, &private, paths, h, &mut out)?;
    daemons.stop(h);

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
    if let Some(line) = console_fatal(&console) {
        h.fail(format!("guest kernel: {line}"));
    }
    let (problems, n) = console_problems(&console, 3);
    if n > 0 {
        h.fail(format!(
            "guest console has {n} lockdep/KASAN/WARN/BUG/atomic-sleep/hung-task lines: {}",
            problems.join(" | ")
        ));
    }
    let log = read_lossy(&daemon_log);
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        h.fail(format!("daemon panicked: {}", line.trim()));
    }
    check_blob_swap(s, acked_features(&log), h);
    Ok(out)
}

/// Creates the domain, waits for the guest's status with periodic
/// screenshots and metrics scrapes, scrapes the final metrics, and makes
/// sure the domain and its backend are gone.
fn run_domain(
    cfg: &Config,
    d: &Daemons,
    private: &Private,
    paths: &Paths,
    h: &mut Harness,
    out: &mut Collected,
) -> Result<(), Error> {
    let xml = paths.file("domain.xml").display().to_string();
    record_command(paths, &d.virsh_words(&["create", &xml]), "")?;
    if let Err(e) = d.virsh(&["create", &xml]) {
        h.fail(format!(
            "{e}; libvirtd log: {}",
            tail(&private.root.join("libvirtd.log"), 3)
        ));
        return Ok(());
    }

    let started = Instant::now();
    let deadline = started + cfg.timeout;
    let mut screens = Screens::default();
    let mut metrics_text: Option<String> = None;
    let mut backend: Option<u32> = None;
    let mut next_sample = Instant::now();
    let ending = loop {
        if parse_result_log(&read_lossy(&paths.result))
            .status
            .is_some()
        {
            break Ending::Status;
        }
        let now = Instant::now();
        if now >= next_sample {
            next_sample = now + SAMPLE_PERIOD;
            if backend.is_none() {
                backend = note_processes(private, h);
            }
            match d.virsh(&["domstate", DOMAIN]) {
                Ok(state) if state.trim() == "running" => {
                    screens.grab(d, paths);
                    if let Ok(text) = crate::http::scrape_unix(&paths.metrics_sock, POLL * 10) {
                        metrics_text = Some(text);
                    }
                }
                Ok(state) if state.trim() == "paused" => {}
                Ok(state) => break Ending::DomainGone(state.trim().to_owned()),
                Err(e) => break Ending::DomainGone(e),
            }
        }
        if now >= deadline {
            break Ending::Timeout;
        }
        sleep(POLL);
    };
    info!(
        "libvirt: wait ended after {:.0} s: {ending:?}",
        started.elapsed().as_secs_f64()
    );

    if matches!(ending, Ending::Status) {
        // /init lingers after its status line: the display is still up and
        // the workload's counters are final.
        screens.grab(d, paths);
        match scrape_with_retry(&paths.metrics_sock) {
            Ok(text) => metrics_text = Some(text),
            Err(e) => h.fail(format!(
                "cannot scrape daemon metrics after the status line: {e}"
            )),
        }
    } else if metrics_text.is_some() {
        h.notes
            .push("metrics are from the last periodic scrape before the end".to_owned());
    }
    out.screen = Some(screens.result());
    if let Some(text) = metrics_text {
        let file = paths.file("metrics.prom");
        fs::write(&file, &text).map_err(fs_err("write", &file))?;
        match Metrics::parse(&text) {
            Ok(m) => out.metrics = Some(m),
            Err(e) => h.fail(format!("daemon metrics do not parse: {e}")),
        }
    }

    // The guest powers off after the linger; on_poweroff=destroy ends the
    // domain. Otherwise, or if it does not, destroy it.
    let until = Instant::now() + GUEST_POWEROFF + Duration::from_secs(LINGER_SECS);
    let gone = loop {
        match d.virsh(&["domstate", DOMAIN]) {
            Ok(state) if state.trim() == "running" || state.trim() == "paused" => {}
            _ => break true,
        }
        if Instant::now() >= until || !matches!(ending, Ending::Status) {
            break false;
        }
        sleep(POLL);
    };
    if !gone {
        if matches!(ending, Ending::Status) {
            h.notes.push(format!(
                "domain still running {} s after the status line; destroyed",
                (GUEST_POWEROFF.as_secs() + LINGER_SECS)
            ));
        }
        record_command(paths, &d.virsh_words(&["destroy", DOMAIN]), "")?;
        if let Err(e) = d.virsh(&["destroy", DOMAIN]) {
            h.fail(e);
        }
    }
    // libvirt stops the backend with the domain.
    if let Some(pid) = backend {
        let until = Instant::now() + GRACE;
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
            sleep(POLL);
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            h.fail(format!(
                "vhost-user backend pid {pid} still runs {} s after the domain ended",
                GRACE.as_secs()
            ));
        }
    }
    let qemu_log = private.dir("log").join(format!("qemu/{DOMAIN}.log"));
    match ending {
        Ending::Status => {}
        Ending::DomainGone(state) => h.fail(format!(
            "domain ended ({state}) without a status line; console: {}; QEMU log: {}",
            tail(&paths.console, 3),
            tail(&qemu_log, 3)
        )),
        Ending::Timeout => h.fail(format!(
            "TIMEOUT: no VUGPU-STATUS within {} s; console: {}",
            cfg.timeout.as_secs(),
            tail(&paths.console, 3)
        )),
    }
    Ok(())
}

/// Records which backend libvirt started (and how) and which GPU device
/// QEMU got; returns the backend's PID once libvirt has written it.
fn note_processes(private: &Private, h: &mut Harness) -> Option<u32> {
    let pid = read_pid(&private.backend_pid_file()?)?;
    let cmd = proc_cmdline(pid).unwrap_or_default();
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    h.notes.push(format!(
        "libvirt started the backend: pid {pid}, {exe}: {cmd}"
    ));
    if let Some(qcmd) = read_pid(&private.qemu_pid_file()).and_then(proc_cmdline) {
        let device = ["vhost-user-vga", "vhost-user-gpu-pci"]
            .into_iter()
            .find(|d| qcmd.contains(&format!("\"driver\":\"{d}\"")));
        h.notes.push(format!(
            "QEMU GPU device: {}",
            device.unwrap_or("neither vhost-user-vga nor vhost-user-gpu-pci")
        ));
    }
    Some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DomainSpec {
        DomainSpec {
            name: DOMAIN.to_owned(),
            machine: "q35".to_owned(),
            mem_mib: 256,
            smp: 1,
            emulator: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            kernel: PathBuf::from("/k/bzImage"),
            initrd: PathBuf::from("/k/initrd & co.img"),
            cmdline: "console=ttyS0 vugpu.args=--a,b".to_owned(),
            swap: PathBuf::from("/r/swap.img"),
            swap_cache: "unsafe",
            console: PathBuf::from("/r/console.log"),
            result: PathBuf::from("/r/result.log"),
        }
    }

    #[test]
    fn test_domain_xml_has_vhostuser_video_and_shared_memfd() {
        let xml = domain_xml(&spec());

        assert!(xml.contains("<driver name='vhostuser'/>"), "{xml}");
        assert!(xml.contains("<model type='virtio'/>"), "{xml}");
        assert!(xml.contains("<source type='memfd'/>"), "{xml}");
        assert!(xml.contains("<access mode='shared'/>"), "{xml}");
        assert!(xml.starts_with("<domain type='qemu'>"), "{xml}");
    }

    #[test]
    fn test_domain_xml_escapes_paths() {
        let xml = domain_xml(&spec());

        assert!(
            xml.contains("<initrd>/k/initrd &amp; co.img</initrd>"),
            "{xml}"
        );
    }

    #[test]
    fn test_xml_escape_quotes() {
        assert_eq!(xml_escape("a'b\"c<d>"), "a&apos;b&quot;c&lt;d&gt;");
    }

    #[test]
    fn test_descriptor_json_is_a_gpu_descriptor() {
        let text = descriptor_json(Path::new("/x/vugpu-backend"));

        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["type"], "gpu");
        assert_eq!(v["binary"], "/x/vugpu-backend");
        assert!(v["description"].is_string());
    }

    #[test]
    fn test_descriptor_name_sorts_before_qemus() {
        assert!(DESCRIPTOR_NAME < "50-qemu-gpu.json");
    }

    #[test]
    fn test_wrapper_script_passes_print_capabilities_through() {
        let s = wrapper_script(
            Path::new("/bin/d"),
            &[],
            (1280, 800),
            Path::new("/r/m.sock"),
            Path::new("/r/daemon.log"),
            "info",
        );

        assert!(
            s.contains("*\" --print-capabilities \"*) exec /bin/d \"$@\" ;;"),
            "{s}"
        );
        assert!(s.contains(
            "exec /bin/d \"$@\" --width 1280 --height 800 --metrics-listen unix:/r/m.sock 2>>/r/daemon.log"
        ), "{s}");
    }

    #[test]
    fn test_namespace_script_binds_every_private_dir_then_execs_virtlogd() {
        let p = Private::new(Path::new("/r"));

        let s = p.namespace_script(Path::new("/usr/sbin/virtlogd"));

        assert!(s.starts_with("set -e\n"), "{s}");
        assert!(s.contains("mount --bind /r/sandbox/run /run\n"), "{s}");
        assert!(
            s.contains("mount --bind /r/sandbox/vhost-user /usr/share/qemu/vhost-user\n"),
            "{s}"
        );
        assert!(s.ends_with("exec /usr/sbin/virtlogd\n"), "{s}");
        assert_eq!(s.matches("mount --bind").count(), BINDS.len());
    }

    #[test]
    fn test_accel_for_libvirt_is_tcg() {
        let libvirt = Scenario::by_name("libvirt").expect("libvirt exists");

        assert_eq!(accel_for(libvirt, Accel::Kvm), Accel::Tcg);
    }

    #[test]
    fn test_accel_for_runner_scenario_keeps_the_probed_accel() {
        let evict = Scenario::by_name("evict").expect("evict exists");

        assert_eq!(accel_for(evict, Accel::Kvm), Accel::Kvm);
    }
}
