//! The end-to-end scenarios: which kernel, which device, which workload
//! arguments, which verdict.

use clap::ValueEnum;
use serde::Serialize;

/// Arguments of the memory-pressure workload shared by every scenario that
/// runs it: 2D objects of 4 MiB totalling 1.5x guest RAM, none marked
/// DONTNEED (purge overrides that; the workload lets the last value of a
/// repeated option win). Every value is explicit so that a change of the
/// workload's defaults cannot silently change a scenario.
const PRESSURE_ARGS: [&str; 8] = [
    "--kind",
    "2d",
    "--total-ram-ratio",
    "1.5",
    "--object-mib",
    "4",
    "--dontneed-every",
    "0",
];

/// One end-to-end scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Boot, draw the console through the daemon, screendump it.
    Smoke,
    /// Patched kernel, daemon, 2D objects 1.5x RAM: evict and swap back in.
    Evict,
    /// As `evict`, every second object marked DONTNEED: purge.
    Purge,
    /// The evict workload without madvise on the unpatched kernel: record
    /// the OOM kill or allocation failure.
    Baseline,
    /// The evict workload on QEMU's built-in virtio-gpu-pci (no daemon).
    QemuBuiltin,
    /// Guest blobs through vhost-user-device-pci, daemon `--blob`.
    Blob,
    /// The evict workload against QEMU's own vhost-user-gpu daemon (the
    /// C reference backend, `--reference-daemon`): guest-side checks only.
    /// Not part of `all`.
    Reference,
    /// The evict workload in a transient TCG domain started by libvirt,
    /// which launches the daemon itself through its vhost-user descriptor
    /// (`--print-capabilities`, `--fd=N`); display checked through `virsh
    /// screenshot`. Not part of `all` (needs libvirt: `ci/install-deps.sh
    /// libvirt`).
    Libvirt,
    /// Issue 9, "the host gets memory back": the purge workload plus
    /// anonymous pressure and a settle pause, a virtio-balloon with free
    /// page reporting, the swap disk with `cache=none`; a 250 ms timeline
    /// of guest progress, host counters and host memory (`timeline.csv`,
    /// `timeline.svg`, `hostmem.json`). Not part of `all`.
    HostMemory,
    /// `host-memory` on the unpatched kernel (no madvise): the baseline.
    /// Not part of `all`.
    HostMemoryBaseline,
}

/// Free page reporting order of the host-memory guests (128 KiB blocks).
/// The default is pageblock_order, 10 (4 MiB) in this guest config (no THP,
/// no hugetlbfs), and without compaction the memory the workload frees is
/// too fragmented for it: measured here with about 140 MiB free in the
/// guest, order 10 gave back nothing, order 9 31 MiB, order 5 129 MiB,
/// order 0 138 MiB.
const PAGE_REPORTING_ORDER: u32 = 5;

/// What the host-memory scenarios add to [`PRESSURE_ARGS`]: anonymous
/// pressure of 128 MiB after the fill (half the default guest RAM), an
/// 8 s settle pause after it, progress lines every 250 ms.
const HOST_MEMORY_ARGS: [&str; 6] = [
    "--pressure-mib",
    "128",
    "--settle-ms",
    "8000",
    "--progress-ms",
    "250",
];

/// Which guest kernel a scenario boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// The kernel with the shrinker series.
    Patched,
    /// The same kernel without the series.
    Unpatched,
}

/// How the GPU is attached to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// `vhost-user-gpu-pci` talking to the daemon (with display).
    VhostUserGpu,
    /// `vhost-user-device-pci` (virtio-id 16) talking to the daemon with
    /// `--blob`: the backend's features, including blobs, reach the guest.
    VhostUserDevice,
    /// QEMU's own `virtio-gpu-pci`.
    Builtin,
}

impl Scenario {
    /// Every scenario, in the order CI runs them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Smoke,
        Scenario::Evict,
        Scenario::Purge,
        Scenario::Baseline,
        Scenario::QemuBuiltin,
        Scenario::Blob,
    ];

    /// The name used on the command line, the kernel command line and in
    /// reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Smoke => "smoke",
            Self::Evict => "evict",
            Self::Purge => "purge",
            Self::Baseline => "baseline",
            Self::QemuBuiltin => "qemu-builtin",
            Self::Blob => "blob",
            Self::Reference => "reference",
            Self::Libvirt => "libvirt",
            Self::HostMemory => "host-memory",
            Self::HostMemoryBaseline => "host-memory-baseline",
        }
    }

    /// `true` when the daemon is the reference backend rather than ours.
    pub fn reference_daemon(self) -> bool {
        self == Self::Reference
    }

    /// The kernel this scenario boots.
    pub fn kernel(self) -> KernelKind {
        match self {
            Self::Baseline | Self::HostMemoryBaseline => KernelKind::Unpatched,
            _ => KernelKind::Patched,
        }
    }

    /// The GPU device model.
    pub fn device(self) -> Device {
        match self {
            Self::QemuBuiltin => Device::Builtin,
            Self::Blob => Device::VhostUserDevice,
            _ => Device::VhostUserGpu,
        }
    }

    /// `true` for the scenarios that record the host-memory timeline.
    pub fn host_memory(self) -> bool {
        matches!(self, Self::HostMemory | Self::HostMemoryBaseline)
    }

    /// `true` when the scenario needs the daemon.
    pub fn needs_daemon(self) -> bool {
        self.device() != Device::Builtin
    }

    /// Arguments for `vugpu-workload` (joined with commas into
    /// `vugpu.args=` on the kernel command line).
    pub fn workload_args(self) -> Vec<String> {
        let mut args: Vec<&str> = match self {
            Self::Smoke => vec!["--smoke"],
            Self::Evict | Self::QemuBuiltin | Self::Reference | Self::Libvirt => {
                PRESSURE_ARGS.to_vec()
            }
            Self::Purge => [&PRESSURE_ARGS[..], &["--dontneed-every", "2"]].concat(),
            Self::Baseline => [&PRESSURE_ARGS[..], &["--no-madvise"]].concat(),
            Self::HostMemory => [
                &PRESSURE_ARGS[..],
                &["--dontneed-every", "2"],
                &HOST_MEMORY_ARGS,
            ]
            .concat(),
            Self::HostMemoryBaseline => {
                [&PRESSURE_ARGS[..], &["--no-madvise"], &HOST_MEMORY_ARGS].concat()
            }
            Self::Blob => {
                let mut a = PRESSURE_ARGS.to_vec();
                a[1] = "blob";
                a
            }
        };
        args.splice(0..0, ["--scenario", self.name()]);
        args.into_iter().map(str::to_owned).collect()
    }

    /// The `vugpu.scenario=` value for the initramfs' `/init`.
    ///
    /// `/init` knows a fixed set of scenario names, each with default
    /// workload arguments, and appends `vugpu.args` after them; the
    /// workload lets a repeated option's last value win. So each scenario
    /// maps to the `/init` scenario whose defaults are compatible, `custom`
    /// (no defaults) where there is none, and [`Scenario::workload_args`]
    /// always carries the complete argument list including `--scenario
    /// <name>`, which makes the report name the runner's scenario.
    pub fn init_scenario(self) -> &'static str {
        match self {
            Self::Smoke => "smoke",
            Self::Evict | Self::QemuBuiltin | Self::Reference | Self::Libvirt => "evict",
            Self::Purge | Self::HostMemory | Self::HostMemoryBaseline => "custom",
            Self::Baseline => "baseline",
            Self::Blob => "evict-blob",
        }
    }

    /// The kernel command line.
    ///
    /// smoke and libvirt also log to the framebuffer console (`console=tty0`
    /// first, so `/dev/console` stays on the serial port) so that their
    /// screenshots show text drawn by the guest rather than only the cursor.
    ///
    /// `guest_timeout` arms `/init`'s watchdog (`vugpu.timeout=`), which
    /// reports a stuck workload as a FAIL line before the host deadline.
    pub fn kernel_cmdline(self, guest_timeout: Option<u64>) -> String {
        let consoles = if matches!(self, Self::Smoke | Self::Libvirt) {
            "console=tty0 console=ttyS0"
        } else {
            "console=ttyS0"
        };
        let mut line = format!(
            "{consoles} panic=-1 vugpu.scenario={} vugpu.args={}",
            self.init_scenario(),
            self.workload_args().join(",")
        );
        if self.host_memory() {
            line.push_str(&format!(
                " page_reporting.page_reporting_order={PAGE_REPORTING_ORDER}"
            ));
        }
        if let Some(t) = guest_timeout {
            line.push_str(&format!(" vugpu.timeout={t}"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_workload_args_blob_uses_blob_kind() {
        let args = Scenario::Blob.workload_args();

        assert_eq!(
            args,
            [
                "--scenario",
                "blob",
                "--kind",
                "blob",
                "--total-ram-ratio",
                "1.5",
                "--object-mib",
                "4",
                "--dontneed-every",
                "0"
            ]
        );
    }

    #[test]
    fn test_kernel_cmdline_purge_joins_args_with_commas() {
        let line = Scenario::Purge.kernel_cmdline(None);

        assert!(line.ends_with(
            "vugpu.scenario=custom vugpu.args=--scenario,purge,--kind,2d,--total-ram-ratio,1.5,--object-mib,4,--dontneed-every,0,--dontneed-every,2"
        ), "{line}");
    }

    #[test]
    fn test_workload_args_have_no_separators() {
        let all: Vec<String> = Scenario::ALL
            .iter()
            .flat_map(|s| s.workload_args())
            .collect();

        assert!(all.iter().all(|a| !a.contains([',', ' '])), "{all:?}");
    }
}
