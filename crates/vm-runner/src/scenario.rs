//! The end-to-end scenarios as data: which kernel, which QEMU and device,
//! which daemon with which options, which workload arguments, which host
//! probes and which verdict. A new scenario is a new entry in [`TABLE`]; the
//! runner has no per-scenario branches.

use std::fmt;

use serde::{Serialize, Serializer};

/// Arguments of the memory-pressure workload shared by every scenario that
/// runs it: 2D objects of 4 MiB totalling 1.5x guest RAM, none marked
/// DONTNEED (purge overrides that; the workload lets the last value of a
/// repeated option win). Every value is explicit so that a change of the
/// workload's defaults cannot silently change a scenario.
const PRESSURE_2D: &[&str] = &[
    "--kind",
    "2d",
    "--total-ram-ratio",
    "1.5",
    "--object-mib",
    "4",
    "--dontneed-every",
    "0",
];

/// The pressure workload with guest blobs of 3 MiB: 1024x768 pixels of 4
/// bytes, exactly the scanout the workload sets on the CRTC, so the device
/// reads every byte of a blob on each scanout and flush.
const PRESSURE_BLOB: &[&str] = &[
    "--kind",
    "blob",
    "--total-ram-ratio",
    "1.5",
    "--object-mib",
    "3",
    "--dontneed-every",
    "0",
];

/// The host-memory scenarios (issue 9): the purge workload or its
/// unpatched baseline, plus 128 MiB of anonymous pressure after the fill
/// (half the default guest RAM), an 8 s settle pause after it and progress
/// lines every 250 ms for the timeline.
const HOST_MEMORY: &[&str] = &[
    "--kind",
    "2d",
    "--total-ram-ratio",
    "1.5",
    "--object-mib",
    "4",
    "--dontneed-every",
    "2",
    "--pressure-mib",
    "128",
    "--settle-ms",
    "8000",
    "--progress-ms",
    "250",
];

/// [`HOST_MEMORY`] on the unpatched kernel: nothing marked DONTNEED, no
/// madvise.
const HOST_MEMORY_BASELINE: &[&str] = &[
    "--kind",
    "2d",
    "--total-ram-ratio",
    "1.5",
    "--object-mib",
    "4",
    "--dontneed-every",
    "0",
    "--no-madvise",
    "--pressure-mib",
    "128",
    "--settle-ms",
    "8000",
    "--progress-ms",
    "250",
];

/// The swap-ratio scenario (issue 9): [`PRESSURE_2D`] with `--swap-ratio`,
/// anonymous memory of the same total size measured first in the same boot.
const SWAP_RATIO: &[&str] = &[
    "--kind",
    "2d",
    "--total-ram-ratio",
    "1.5",
    "--object-mib",
    "4",
    "--dontneed-every",
    "0",
    "--swap-ratio",
];

/// [`SWAP_RATIO`] with a WAIT after every object's transfer, the BO phases'
/// structure before issue 9's profile, for comparison.
const SWAP_RATIO_WAIT_EACH: &[&str] = &[
    "--kind",
    "2d",
    "--total-ram-ratio",
    "1.5",
    "--object-mib",
    "4",
    "--dontneed-every",
    "0",
    "--swap-ratio",
    "--swap-ratio-wait-each",
];

/// Free page reporting order of the host-memory guests (128 KiB blocks).
/// The default is pageblock_order, 10 (4 MiB) in this guest config (no THP,
/// no hugetlbfs), and without compaction the memory the workload frees is
/// too fragmented for it: measured here with about 140 MiB free in the
/// guest, order 10 gave back nothing, order 9 31 MiB, order 5 129 MiB,
/// order 0 138 MiB.
pub const PAGE_REPORTING_ORDER: u32 = 5;

/// Which guest kernel a scenario boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    /// The kernel with the shrinker series (`--kernel`).
    Patched,
    /// The same kernel without the series (`--unpatched-kernel`).
    Unpatched,
    /// The patched kernel with lockdep, KASAN and friends (`--debug-kernel`).
    Debug,
}

/// Which QEMU binary a scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QemuKind {
    /// The system QEMU (`--qemu`, Debian's 10.0.2 from bookworm-backports).
    System,
    /// The one-target QEMU 10.2.2 of `ci/build-qemu.sh` (`--qemu-10-2`),
    /// whose `vhost-user-test-device-pci` passes the backend's feature bits
    /// (blob included) through.
    Qemu10_2,
}

/// How the GPU is attached to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Device {
    /// `vhost-user-gpu-pci` talking to a daemon (QEMU relays the display).
    VhostUserGpu,
    /// `vhost-user-vga` talking to a daemon (libvirt's primary vhostuser
    /// video on q35).
    VhostUserVga,
    /// `vhost-user-test-device-pci` (virtio-id 16) talking to the daemon:
    /// QEMU adds no features and no display, the backend's features
    /// (RESOURCE_BLOB, blob swap) reach the guest verbatim. QEMU >= 10.2.
    VhostUserTestDevice,
    /// QEMU's own `virtio-gpu-pci`.
    Builtin,
}

impl Device {
    /// The QEMU device model name.
    pub fn model(self) -> &'static str {
        match self {
            Self::VhostUserGpu => "vhost-user-gpu-pci",
            Self::VhostUserVga => "vhost-user-vga",
            Self::VhostUserTestDevice => "vhost-user-test-device-pci",
            Self::Builtin => "virtio-gpu-pci",
        }
    }
}

/// Who starts QEMU and the daemon: the runner backend of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Launcher {
    /// The runner spawns the daemon and QEMU itself and talks QMP
    /// ([`crate::runner`]).
    Runner,
    /// libvirt does, from a transient TCG domain, finding the daemon through
    /// its vhost-user descriptor; the runner starts `virtlogd` and
    /// `libvirtd` in a private mount namespace ([`crate::libvirt`]).
    Libvirt,
}

/// What the host-memory timeline adds to a scenario (issue 9): a
/// virtio-balloon with free page reporting, the swap disk with
/// `cache=none`, a 250 ms timeline of guest progress, host counters and host
/// memory (`timeline.csv`, `timeline.svg`, `hostmem.json`) and the
/// give-back figures ([`crate::hostmem`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HostMemorySpec {
    /// The figures must exist (the workload reaches its settle phase); the
    /// baseline may die before it, which its own verdict judges.
    pub figures_required: bool,
}

/// Which vhost-user backend serves the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DaemonKind {
    /// This project's daemon (`--daemon`), scraped for metrics.
    Ours,
    /// QEMU's C vhost-user-gpu (`--reference-daemon`): no metrics.
    Reference,
}

/// The daemon a scenario starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DaemonSpec {
    /// Which daemon.
    pub kind: DaemonKind,
    /// Options added after the common ones (socket, display size, metrics).
    pub options: &'static [&'static str],
    /// Start it with `--test-only-read-digest-log` and compare what the
    /// device read after swap-in with what the workload wrote.
    pub content_check: bool,
}

/// Which memory-pressure workload variant a verdict expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PressureKind {
    /// 2D resources (`--kind 2d`).
    TwoD,
    /// Guest blobs (`--kind blob`).
    Blob,
}

impl PressureKind {
    /// The workload's `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TwoD => "2d",
            Self::Blob => "blob",
        }
    }
}

/// A fault the daemon injects (`--test-only-fault`), and so what the guest
/// can still be expected to achieve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// DETACH answers late: eviction still works, only slower.
    DetachDelay,
    /// DETACH answers with an error: the guest must keep the pages.
    DetachError,
    /// ATTACH answers with an error: the guest must not mark the object
    /// attached nor let the device use it.
    AttachError,
    /// DETACH never answers: the guest must give up on those objects
    /// without stalling reclaim and without releasing their pages.
    DetachHang,
}

/// How a scenario is judged (see [`crate::verdict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VerdictKind {
    /// Boot, console drawn through the daemon, screendump.
    Smoke,
    /// Objects beyond RAM evicted and swapped back in, every byte intact;
    /// `host` compares the daemon's DETACH/ATTACH with the guest's.
    Evict {
        /// Object kind.
        pressure: PressureKind,
        /// The daemon's metrics are available and must match the guest.
        host: bool,
    },
    /// DONTNEED objects purged.
    Purge,
    /// Unpatched kernel: an OOM kill or allocation failure is recorded.
    Baseline,
    /// Blobs without the blob-swap feature: no blob may be evicted; an
    /// OOM kill or allocation failure is the expected, recorded outcome.
    BlobNoSwap,
    /// [`VerdictKind::Evict`] for 2D objects plus the `--swap-ratio`
    /// figures: BO against anonymous swap throughput in one boot (issue 9).
    SwapRatio,
    /// Fault injection (see [`Fault`]).
    Fault {
        /// The injected fault.
        fault: Fault,
    },
}

/// One end-to-end scenario.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spec {
    /// The name used on the command line, in directories and reports.
    pub name: &'static str,
    /// One line for `vugpu-vm list`.
    pub about: &'static str,
    /// Guest kernel.
    pub kernel: KernelKind,
    /// QEMU binary.
    pub qemu: QemuKind,
    /// GPU device model.
    pub device: Device,
    /// The daemon behind a vhost-user device (`None` with the builtin one).
    pub daemon: Option<DaemonSpec>,
    /// `/init` scenario (`vugpu.scenario=`).
    pub init: &'static str,
    /// Workload arguments (`vugpu.args=`); `--scenario <name>` is prepended.
    pub workload: &'static [&'static str],
    /// Log to the framebuffer console too and take QMP screendumps.
    pub screendump: bool,
    /// The guest kernel may end in an OOM panic (no status line) and that
    /// is an expected outcome rather than a harness failure.
    pub oom_panic_expected: bool,
    /// Longest acceptable sum of the workload's phases (create, fill,
    /// pressure, reuse), in seconds: a bound on reclaim stalls.
    pub max_workload_secs: Option<u64>,
    /// Whether the driver must have acked VIRTIO_GPU_F_BLOB_SWAP (bit 23),
    /// read from the daemon's log; `None`: only noted.
    pub expect_blob_swap: Option<bool>,
    /// The verdict.
    pub verdict: VerdictKind,
    /// Part of `all`.
    pub in_all: bool,
    /// Who starts QEMU and the daemon.
    pub launcher: Launcher,
    /// Record the host-memory timeline and figures.
    pub host_memory: Option<HostMemorySpec>,
}

const fn ours(options: &'static [&'static str], content_check: bool) -> Option<DaemonSpec> {
    Some(DaemonSpec {
        kind: DaemonKind::Ours,
        options,
        content_check,
    })
}

/// A patched-kernel scenario on the system QEMU with `vhost-user-gpu-pci`
/// and the project's daemon; entries override what differs.
const BASE: Spec = Spec {
    name: "",
    about: "",
    kernel: KernelKind::Patched,
    qemu: QemuKind::System,
    device: Device::VhostUserGpu,
    daemon: ours(&[], false),
    init: "custom",
    workload: PRESSURE_2D,
    screendump: false,
    oom_panic_expected: false,
    max_workload_secs: None,
    expect_blob_swap: None,
    verdict: VerdictKind::Evict {
        pressure: PressureKind::TwoD,
        host: true,
    },
    in_all: true,
    launcher: Launcher::Runner,
    host_memory: None,
};

/// A blob scenario: QEMU 10.2.2's generic device, daemon with `--blob`.
const BLOB: Spec = Spec {
    qemu: QemuKind::Qemu10_2,
    device: Device::VhostUserTestDevice,
    daemon: ours(&["--blob"], true),
    workload: PRESSURE_BLOB,
    verdict: VerdictKind::Evict {
        pressure: PressureKind::Blob,
        host: true,
    },
    ..BASE
};

const EVICT: Spec = Spec {
    name: "evict",
    about: "2D objects 1.5x RAM evicted to swap and used again; device reads checked",
    daemon: ours(&[], true),
    init: "evict",
    ..BASE
};

const PURGE: Spec = Spec {
    name: "purge",
    about: "as evict, every second object DONTNEED: purged",
    workload: &[
        "--kind",
        "2d",
        "--total-ram-ratio",
        "1.5",
        "--object-mib",
        "4",
        "--dontneed-every",
        "2",
    ],
    verdict: VerdictKind::Purge,
    ..BASE
};

/// Reclaim must not stall on a slow device for longer than this (the
/// workload's phases together; a healthy evict run takes 20-40 s under TCG,
/// and 180 DETACHs delayed 20 ms each add under 4 s even if the guest waited
/// for every one in turn). With 200 ms per DETACH the 7.3 series, which
/// does not wait for the device in direct reclaim, ends in ENOMEM instead.
const DELAY_BOUND_SECS: u64 = 150;

/// With DETACH errors or no answer the guest cannot evict: it must give up
/// quickly and reach its end (allocation failure or OOM) within this bound,
/// about 3x a healthy run's phases. The 6.12 guest, which waits 10 s for
/// each unanswered DETACH, needs 160 s.
const NO_EVICTION_BOUND_SECS: u64 = 60;

const fn fault(
    name: &'static str,
    about: &'static str,
    option: &'static [&'static str],
    f: Fault,
) -> Spec {
    Spec {
        name,
        about,
        daemon: ours(option, true),
        max_workload_secs: Some(if matches!(f, Fault::DetachDelay) {
            DELAY_BOUND_SECS
        } else {
            NO_EVICTION_BOUND_SECS
        }),
        oom_panic_expected: !matches!(f, Fault::DetachDelay),
        verdict: VerdictKind::Fault { fault: f },
        in_all: false,
        ..BASE
    }
}

/// Every scenario, in the order `all` runs them.
pub static TABLE: &[Spec] = &[
    Spec {
        name: "smoke",
        about: "boot, draw the console through the daemon, screendump it",
        init: "smoke",
        workload: &["--smoke"],
        screendump: true,
        verdict: VerdictKind::Smoke,
        ..BASE
    },
    EVICT,
    PURGE,
    Spec {
        name: "baseline",
        about: "evict workload on the unpatched kernel: OOM or ENOMEM recorded",
        kernel: KernelKind::Unpatched,
        init: "baseline",
        workload: &[
            "--kind",
            "2d",
            "--total-ram-ratio",
            "1.5",
            "--object-mib",
            "4",
            "--dontneed-every",
            "0",
            "--no-madvise",
        ],
        oom_panic_expected: true,
        verdict: VerdictKind::Baseline,
        ..BASE
    },
    Spec {
        name: "qemu-builtin",
        about: "evict workload on QEMU's built-in virtio-gpu-pci (guest-side checks)",
        device: Device::Builtin,
        daemon: None,
        init: "evict",
        verdict: VerdictKind::Evict {
            pressure: PressureKind::TwoD,
            host: false,
        },
        ..BASE
    },
    Spec {
        name: "blob",
        about: "guest blobs 1.5x RAM through vhost-user-test-device-pci (QEMU 10.2.2), \
                evicted, swapped in, re-attached and scanned out; device reads checked",
        expect_blob_swap: Some(true),
        ..BLOB
    },
    Spec {
        name: "blob-noswap",
        about: "as blob with --no-blob-swap: no blob evicted; OOM or ENOMEM recorded",
        daemon: ours(&["--blob", "--no-blob-swap"], true),
        oom_panic_expected: true,
        expect_blob_swap: Some(false),
        verdict: VerdictKind::BlobNoSwap,
        ..BLOB
    },
    Spec {
        name: "reference",
        about: "evict workload against QEMU's C vhost-user-gpu (guest-side checks)",
        daemon: Some(DaemonSpec {
            kind: DaemonKind::Reference,
            options: &[],
            content_check: false,
        }),
        init: "evict",
        verdict: VerdictKind::Evict {
            pressure: PressureKind::TwoD,
            host: false,
        },
        in_all: false,
        ..BASE
    },
    Spec {
        name: "evict-debug",
        about: "evict on the debug kernel (lockdep, KASAN, atomic-sleep checks; \
                any report fails)",
        kernel: KernelKind::Debug,
        in_all: false,
        ..EVICT
    },
    Spec {
        name: "purge-debug",
        about: "purge on the debug kernel",
        kernel: KernelKind::Debug,
        in_all: false,
        ..PURGE
    },
    Spec {
        name: "blob-debug",
        about: "blob on the debug kernel",
        kernel: KernelKind::Debug,
        in_all: false,
        ..BLOB
    },
    fault(
        "fault-detach-delay",
        "DETACH answered 20 ms late (a slow device): eviction still works, no OOM, bounded time",
        &["--test-only-fault", "detach-delay-ms=20"],
        Fault::DetachDelay,
    ),
    fault(
        "fault-detach-error",
        "DETACH answered with an error: pages kept, no byte lost, bounded time",
        &["--test-only-fault", "detach-error"],
        Fault::DetachError,
    ),
    fault(
        "fault-attach-error",
        "ATTACH answered with an error: no device access without backing, bounded time",
        &["--test-only-fault", "attach-error"],
        Fault::AttachError,
    ),
    fault(
        "fault-detach-hang",
        "DETACH never answered: reclaim gives up in bounded time, no page released",
        &["--test-only-fault", "detach-no-reply"],
        Fault::DetachHang,
    ),
    Spec {
        name: "libvirt",
        about: "evict in a transient TCG domain that libvirt starts with the daemon from its \
                vhost-user descriptor (needs ci/install-deps.sh libvirt); virsh screenshot",
        // libvirt's primary vhostuser video on q35; the run notes what QEMU
        // really got.
        device: Device::VhostUserVga,
        // libvirt starts the daemon through a wrapper that has no digest log.
        daemon: ours(&[], false),
        screendump: true,
        in_all: false,
        launcher: Launcher::Libvirt,
        ..EVICT
    },
    Spec {
        name: "host-memory",
        about: "purge plus anonymous pressure with a free-page-reporting balloon: \
                host memory given back against what the guest evicted and purged",
        workload: HOST_MEMORY,
        verdict: VerdictKind::Purge,
        in_all: false,
        host_memory: Some(HostMemorySpec {
            figures_required: true,
        }),
        ..PURGE
    },
    Spec {
        name: "host-memory-baseline",
        about: "host-memory on the unpatched kernel (no madvise): the baseline",
        kernel: KernelKind::Unpatched,
        workload: HOST_MEMORY_BASELINE,
        oom_panic_expected: true,
        verdict: VerdictKind::Baseline,
        in_all: false,
        host_memory: Some(HostMemorySpec {
            figures_required: false,
        }),
        ..BASE
    },
    Spec {
        name: "swap-ratio",
        about: "evict after a warm-up and an anonymous pass of the same size: BO/anonymous \
                pages per second written to and read from swap",
        workload: SWAP_RATIO,
        verdict: VerdictKind::SwapRatio,
        in_all: false,
        ..EVICT
    },
    Spec {
        name: "swap-ratio-wait-each",
        about: "swap-ratio with a WAIT after every object's transfer (the BO phases as \
                measured before issue 9's profile)",
        workload: SWAP_RATIO_WAIT_EACH,
        verdict: VerdictKind::SwapRatio,
        in_all: false,
        ..EVICT
    },
];

/// A scenario: a reference to its entry in [`TABLE`].
#[derive(Clone, Copy, PartialEq)]
pub struct Scenario(&'static Spec);

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl Serialize for Scenario {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

impl std::ops::Deref for Scenario {
    type Target = Spec;

    fn deref(&self) -> &Spec {
        self.0
    }
}

impl Scenario {
    /// Every scenario in table order.
    pub fn every() -> impl Iterator<Item = Scenario> {
        TABLE.iter().map(Scenario)
    }

    /// The scenarios `all` stands for.
    pub fn all() -> Vec<Scenario> {
        Self::every().filter(|s| s.in_all).collect()
    }

    /// Looks a scenario up by name.
    pub fn by_name(name: &str) -> Option<Scenario> {
        Self::every().find(|s| s.name == name)
    }

    /// The scenario's name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// `true` when the scenario needs a daemon.
    pub fn needs_daemon(self) -> bool {
        self.0.daemon.is_some()
    }

    /// `true` when the daemon is QEMU's reference backend.
    pub fn reference_daemon(self) -> bool {
        self.0
            .daemon
            .is_some_and(|d| d.kind == DaemonKind::Reference)
    }

    /// `true` when the project's daemon serves it (metrics are scraped).
    pub fn our_daemon(self) -> bool {
        self.0.daemon.is_some_and(|d| d.kind == DaemonKind::Ours)
    }

    /// `true` when the device reads are compared with the workload's.
    pub fn content_check(self) -> bool {
        self.0.daemon.is_some_and(|d| d.content_check)
    }

    /// Arguments for `vugpu-workload` (joined with commas into
    /// `vugpu.args=` on the kernel command line).
    ///
    /// `/init` knows a fixed set of scenario names, each with default
    /// workload arguments, and appends `vugpu.args` after them; the workload
    /// lets a repeated option's last value win, and `vugpu.args` always
    /// carries the complete argument list including `--scenario <name>`,
    /// which makes the report name the runner's scenario.
    pub fn workload_args(self) -> Vec<String> {
        let mut args = vec!["--scenario".to_owned(), self.0.name.to_owned()];
        args.extend(self.0.workload.iter().map(|a| (*a).to_owned()));
        if self.content_check() {
            args.push("--device-digests".to_owned());
        }
        args
    }

    /// The kernel command line.
    ///
    /// Scenarios with screendumps also log to the framebuffer console
    /// (`console=tty0` first, so `/dev/console` stays on the serial port)
    /// so that the screendump shows text drawn by the guest.
    ///
    /// `guest_timeout` arms `/init`'s watchdog (`vugpu.timeout=`), which
    /// reports a stuck workload as a FAIL line before the host deadline.
    pub fn kernel_cmdline(self, guest_timeout: Option<u64>) -> String {
        let consoles = if self.0.screendump {
            "console=tty0 console=ttyS0"
        } else {
            "console=ttyS0"
        };
        let mut line = format!(
            "{consoles} panic=-1 vugpu.scenario={} vugpu.args={}",
            self.0.init,
            self.workload_args().join(",")
        );
        if self.0.host_memory.is_some() {
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

    fn named(name: &str) -> Scenario {
        Scenario::by_name(name).expect("scenario exists")
    }

    #[test]
    fn test_workload_args_blob_uses_blob_kind_and_digests() {
        let args = named("blob").workload_args();

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
                "3",
                "--dontneed-every",
                "0",
                "--device-digests"
            ]
        );
    }

    #[test]
    fn test_kernel_cmdline_purge_joins_args_with_commas() {
        let line = named("purge").kernel_cmdline(None);

        assert!(line.ends_with(
            "vugpu.scenario=custom vugpu.args=--scenario,purge,--kind,2d,--total-ram-ratio,1.5,--object-mib,4,--dontneed-every,2"
        ), "{line}");
    }

    #[test]
    fn test_workload_args_have_no_separators() {
        let all: Vec<String> = Scenario::every().flat_map(|s| s.workload_args()).collect();

        assert!(all.iter().all(|a| !a.contains([',', ' '])), "{all:?}");
    }

    #[test]
    fn test_names_are_unique() {
        let mut names: Vec<&str> = TABLE.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();

        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn test_all_keeps_the_ci_scenarios_in_order() {
        let names: Vec<&str> = Scenario::all().iter().map(|s| s.name()).collect();

        assert_eq!(
            names,
            [
                "smoke",
                "evict",
                "purge",
                "baseline",
                "qemu-builtin",
                "blob",
                "blob-noswap"
            ]
        );
    }

    #[test]
    fn test_builtin_device_has_no_daemon() {
        assert!(Scenario::every()
            .filter(|s| s.device == Device::Builtin)
            .all(|s| s.daemon.is_none()));
    }

    #[test]
    fn test_test_device_scenarios_use_qemu_10_2() {
        assert!(Scenario::every()
            .filter(|s| s.device == Device::VhostUserTestDevice)
            .all(|s| s.qemu == QemuKind::Qemu10_2));
    }

    #[test]
    fn test_debug_scenarios_are_opt_in() {
        assert!(Scenario::every()
            .filter(|s| s.kernel == KernelKind::Debug)
            .all(|s| !s.in_all && s.name().ends_with("-debug")));
    }

    #[test]
    fn test_kernel_cmdline_host_memory_sets_page_reporting_order() {
        let line = named("host-memory").kernel_cmdline(None);

        assert!(
            line.ends_with(" page_reporting.page_reporting_order=5"),
            "{line}"
        );
    }

    #[test]
    fn test_kernel_cmdline_libvirt_draws_on_the_framebuffer_console() {
        let line = named("libvirt").kernel_cmdline(None);

        assert!(line.starts_with("console=tty0 console=ttyS0 "), "{line}");
    }

    #[test]
    fn test_workload_args_host_memory_prints_progress_and_settles() {
        let args = named("host-memory").workload_args();

        assert!(
            args.windows(2).any(|w| w == ["--progress-ms", "250"]),
            "{args:?}"
        );
        assert!(
            args.windows(2).any(|w| w == ["--settle-ms", "8000"]),
            "{args:?}"
        );
        assert!(
            args.windows(2).any(|w| w == ["--dontneed-every", "2"]),
            "{args:?}"
        );
    }

    #[test]
    fn test_host_memory_baseline_boots_the_unpatched_kernel() {
        let s = named("host-memory-baseline");

        assert_eq!(s.kernel, KernelKind::Unpatched);
        assert!(s.host_memory.is_some_and(|h| !h.figures_required));
    }

    #[test]
    fn test_libvirt_and_host_memory_are_opt_in() {
        assert!(Scenario::every()
            .filter(|s| s.launcher == Launcher::Libvirt || s.host_memory.is_some())
            .all(|s| !s.in_all));
    }

    #[test]
    fn test_swap_ratio_is_opt_in_and_asks_for_the_ratio() {
        let s = named("swap-ratio");

        assert!(!s.in_all);
        assert_eq!(s.kernel, KernelKind::Patched);
        assert!(s.workload_args().iter().any(|a| a == "--swap-ratio"));
    }

    #[test]
    fn test_fault_scenarios_bound_the_workload_time() {
        assert!(Scenario::every()
            .filter(|s| matches!(s.verdict, VerdictKind::Fault { .. }))
            .all(|s| s.max_workload_secs.is_some()));
    }
}
