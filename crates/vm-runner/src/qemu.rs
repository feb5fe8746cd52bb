//! Command lines for QEMU and the daemon (pure, so they can be printed in
//! `--dry-run` and tested), and shell quoting for printing them.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::scenario::Device;

/// The accelerator QEMU runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Software emulation.
    Tcg,
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
}

impl Accel {
    /// The accelerator's QEMU name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}

/// Everything a QEMU command line is built from.
#[derive(Clone, Debug)]
pub struct QemuSpec {
    /// The QEMU binary.
    pub qemu: String,
    /// Accelerator.
    pub accel: Accel,
    /// Guest RAM in MiB.
    pub mem_mib: u32,
    /// Virtual CPUs.
    pub smp: u32,
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
    /// The GPU device model.
    pub device: Device,
    /// The daemon's vhost-user socket (not used with [`Device::Builtin`]).
    pub vhost_socket: PathBuf,
    /// Raw swap disk image, if any.
    pub swap: Option<PathBuf>,
    /// File receiving the first serial port (kernel console).
    pub console: PathBuf,
    /// File receiving the second serial port (workload results).
    pub result: PathBuf,
    /// QMP unix socket path.
    pub qmp: PathBuf,
    /// Firmware directories (`-L`), for a QEMU built without its blobs.
    pub firmware_dirs: Vec<PathBuf>,
}

/// Escapes a value for a QEMU option list (commas are doubled).
fn opt_value(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// Builds the QEMU argument vector (binary first).
///
/// The guest never reboots (`-no-reboot`, `panic=-1` on the command line),
/// and a guest power-off pauses the VM instead of exiting
/// (`-action shutdown=pause`) so that the runner can still scrape the daemon
/// before the vhost-user connection goes away; the runner stops QEMU itself.
pub fn qemu_command(spec: &QemuSpec) -> Vec<String> {
    let mut a: Vec<String> = vec![spec.qemu.clone()];
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    for dir in &spec.firmware_dirs {
        let dir = dir.display().to_string();
        push(&["-L", &dir]);
    }
    push(&["-no-reboot", "-action", "shutdown=pause"]);
    match spec.accel {
        Accel::Tcg => push(&["-accel", "tcg"]),
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
    }
    let mem = format!("{}M", spec.mem_mib);
    let smp = spec.smp.to_string();
    push(&["-m", &mem, "-smp", &smp]);
    let backend = format!("memory-backend-memfd,id=mem,size={mem},share=on");
    push(&["-object", &backend, "-numa", "node,memdev=mem"]);
    match spec.device {
        Device::Builtin => {
            // The built-in device caps host resource memory at 256 MiB by
            // default; the pressure workload creates 1.5x guest RAM.
            let dev = format!(
                "virtio-gpu-pci,max_hostmem={}M",
                spec.mem_mib.saturating_mul(4)
            );
            push(&["-device", &dev]);
        }
        Device::VhostUserGpu | Device::VhostUserVga | Device::VhostUserTestDevice => {
            let chardev = format!("socket,id=vgpu,path={}", opt_value(&spec.vhost_socket));
            let device = match spec.device {
                Device::VhostUserTestDevice => format!(
                    "{},chardev=vgpu,virtio-id=16,num_vqs=2,config_size=16",
                    spec.device.model()
                ),
                other => format!("{},chardev=vgpu,queue_reset=off", other.model()),
            };
            push(&["-chardev", &chardev, "-device", &device]);
        }
    }
    if let Some(swap) = &spec.swap {
        let drive = format!("file={},format=raw,if=virtio,cache=unsafe", opt_value(swap));
        push(&["-drive", &drive]);
    }
    let console = format!("file:{}", spec.console.display());
    let result = format!("file:{}", spec.result.display());
    push(&["-serial", &console, "-serial", &result]);
    let qmp = format!("unix:{},server=on,wait=off", opt_value(&spec.qmp));
    push(&["-qmp", &qmp]);
    let kernel = spec.kernel.display().to_string();
    let initrd = spec.initrd.display().to_string();
    push(&[
        "-kernel",
        &kernel,
        "-initrd",
        &initrd,
        "-append",
        &spec.append,
    ]);
    a
}

/// Builds the daemon argument vector (binary first): the common options,
/// then the scenario's `options`, then the digest log if one is wanted.
pub fn daemon_command(
    daemon: &Path,
    socket: &Path,
    metrics: &Path,
    options: &[&str],
    digest_log: Option<&Path>,
    display: (u32, u32),
) -> Vec<String> {
    let mut a = vec![
        daemon.display().to_string(),
        "--socket-path".to_owned(),
        socket.display().to_string(),
        "--width".to_owned(),
        display.0.to_string(),
        "--height".to_owned(),
        display.1.to_string(),
        "--metrics-listen".to_owned(),
        format!("unix:{}", metrics.display()),
    ];
    a.extend(options.iter().map(|o| (*o).to_owned()));
    if let Some(log) = digest_log {
        a.push("--test-only-read-digest-log".to_owned());
        a.push(log.display().to_string());
    }
    a
}

/// Quotes one word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Quotes a whole command line.
pub fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(device: Device) -> QemuSpec {
        QemuSpec {
            qemu: "qemu-system-x86_64".to_owned(),
            accel: Accel::Tcg,
            mem_mib: 256,
            smp: 1,
            kernel: PathBuf::from("/k/bzImage"),
            initrd: PathBuf::from("/k/initrd.img"),
            append: "console=ttyS0 vugpu.scenario=smoke".to_owned(),
            device,
            vhost_socket: PathBuf::from("/run/a,b/gpu.sock"),
            swap: Some(PathBuf::from("/run/swap.img")),
            console: PathBuf::from("/run/console.log"),
            result: PathBuf::from("/run/result.log"),
            qmp: PathBuf::from("/run/qmp.sock"),
            firmware_dirs: Vec::new(),
        }
    }

    #[test]
    fn test_qemu_command_vhost_user_gpu_escapes_comma_in_socket_path() {
        let cmd = qemu_command(&spec(Device::VhostUserGpu));

        assert!(cmd.contains(&"socket,id=vgpu,path=/run/a,,b/gpu.sock".to_owned()));
        assert!(cmd.contains(&"vhost-user-gpu-pci,chardev=vgpu,queue_reset=off".to_owned()));
        assert!(cmd.contains(&"memory-backend-memfd,id=mem,size=256M,share=on".to_owned()));
    }

    #[test]
    fn test_qemu_command_builtin_has_no_chardev() {
        let cmd = qemu_command(&spec(Device::Builtin));

        assert!(!cmd.contains(&"-chardev".to_owned()));
        assert!(cmd.contains(&"virtio-gpu-pci,max_hostmem=1024M".to_owned()));
    }

    #[test]
    fn test_qemu_command_test_device_uses_generic_device() {
        let cmd = qemu_command(&spec(Device::VhostUserTestDevice));

        assert!(cmd.contains(
            &"vhost-user-test-device-pci,chardev=vgpu,virtio-id=16,num_vqs=2,config_size=16"
                .to_owned()
        ));
    }

    #[test]
    fn test_qemu_command_firmware_dirs_become_l_options() {
        let mut s = spec(Device::VhostUserTestDevice);
        s.firmware_dirs = vec![PathBuf::from("/usr/share/qemu"), PathBuf::from("/fw")];

        let cmd = qemu_command(&s);

        let l: Vec<&String> = cmd
            .iter()
            .zip(cmd.iter().skip(1))
            .filter(|(a, _)| *a == "-L")
            .map(|(_, b)| b)
            .collect();
        assert_eq!(l, ["/usr/share/qemu", "/fw"]);
    }

    #[test]
    fn test_daemon_command_appends_options_and_digest_log() {
        let cmd = daemon_command(
            Path::new("/d"),
            Path::new("/s"),
            Path::new("/m"),
            &["--blob", "--no-blob-swap"],
            Some(Path::new("/r/digests.jsonl")),
            (640, 480),
        );

        assert_eq!(
            cmd,
            [
                "/d",
                "--socket-path",
                "/s",
                "--width",
                "640",
                "--height",
                "480",
                "--metrics-listen",
                "unix:/m",
                "--blob",
                "--no-blob-swap",
                "--test-only-read-digest-log",
                "/r/digests.jsonl"
            ]
        );
    }

    #[test]
    fn test_shell_quote_plain_word_unchanged() {
        assert_eq!(shell_quote("-device"), "-device");
    }

    #[test]
    fn test_shell_quote_space_and_quote_are_quoted() {
        assert_eq!(shell_quote("it's a b"), r"'it'\''s a b'");
    }

    #[test]
    fn test_shell_quote_empty_is_quoted() {
        assert_eq!(shell_quote(""), "''");
    }
}
