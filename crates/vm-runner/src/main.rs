//! `vugpu-vm`: boots guests with the vhost-user-gpu daemon and judges the
//! end-to-end scenarios.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vugpu_vm_runner::runner::error_chain;
use vugpu_vm_runner::{run, time, AccelChoice, Config, Scenario};

/// End-to-end VM test harness for the vhost-user virtio-gpu daemon and the
/// guest shrinker series.
#[derive(Debug, Parser)]
#[command(name = "vugpu-vm", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run scenarios; exits 0 only when every scenario passed (or, for
    /// baseline, recorded its expected failure).
    Run(Box<RunArgs>),
    /// List the scenarios with their kernel command lines.
    List,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Scenarios to run, in order (`vugpu-vm list` shows them all); `all`
    /// means smoke evict purge baseline qemu-builtin blob blob-noswap.
    #[arg(required = true, value_parser = parse_scenario)]
    scenarios: Vec<Vec<Scenario>>,
    /// Patched guest bzImage.
    #[arg(long)]
    kernel: PathBuf,
    /// Unpatched guest bzImage (needed by baseline).
    #[arg(long)]
    unpatched_kernel: Option<PathBuf>,
    /// Debug guest bzImage (ci/build-guest-kernel.sh --debug), for
    /// scenarios that boot the debug kernel.
    #[arg(long)]
    debug_kernel: Option<PathBuf>,
    /// Initramfs with /init and vugpu-workload.
    #[arg(long)]
    initrd: PathBuf,
    /// The vhost-user-gpu daemon binary (needed unless only qemu-builtin).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// QEMU's own vhost-user-gpu daemon, for the reference scenario (Debian:
    /// package qemu-system-gui, `dpkg -L qemu-system-gui | grep vhost-user-gpu`).
    #[arg(long)]
    reference_daemon: Option<PathBuf>,
    /// Artifact directory [default: target/vugpu-runs/<UTC timestamp>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Per-scenario deadline for the guest's status line, in seconds.
    #[arg(long, default_value_t = 240)]
    timeout_secs: u64,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 256)]
    mem_mib: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Accelerator: auto probes KVM with a short boot and falls back to TCG.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    accel: AccelChoice,
    /// Deadline of the KVM probe boot, in seconds.
    #[arg(long, default_value_t = 20)]
    probe_timeout_secs: u64,
    /// QEMU binary of the scenarios on the system QEMU.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// QEMU 10.2.2 built by ci/build-qemu.sh (its last output line), for
    /// the scenarios with vhost-user-test-device-pci (blob, blob-noswap);
    /// without it they fail.
    #[arg(long = "qemu-10-2", value_name = "PATH")]
    qemu_10_2: Option<PathBuf>,
    /// Do not start the daemon with --test-only-read-digest-log and skip
    /// the host-side content check (for daemon builds without the option).
    #[arg(long)]
    no_content_check: bool,
    /// Print the daemon and QEMU command lines without running anything.
    #[arg(long)]
    dry_run: bool,
    /// Count scenarios this host cannot run (SKIPPED) as failures.
    #[arg(long)]
    strict: bool,
}

fn parse_scenario(text: &str) -> Result<Vec<Scenario>, String> {
    if text == "all" {
        return Ok(Scenario::all());
    }
    Scenario::by_name(text).map(|s| vec![s]).ok_or_else(|| {
        let names: Vec<&str> = Scenario::every().map(Scenario::name).collect();
        format!(
            "unknown scenario {text:?}; known: {}, all",
            names.join(", ")
        )
    })
}

/// Makes an existing path absolute so the printed commands work from any
/// directory; a path that does not exist is kept as given (validation
/// reports it).
fn absolute(path: PathBuf) -> PathBuf {
    std::fs::canonicalize(&path).unwrap_or(path)
}

fn config(args: Box<RunArgs>) -> Result<Config, String> {
    let run_dir = match args.run_dir {
        Some(d) => d,
        None => PathBuf::from("target/vugpu-runs").join(time::now_stamp()),
    };
    let run_dir = if run_dir.is_absolute() {
        run_dir
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot get the current directory: {e}"))?
            .join(run_dir)
    };
    let mut scenarios: Vec<Scenario> = args.scenarios.into_iter().flatten().collect();
    let mut seen = Vec::new();
    scenarios.retain(|s| {
        let first = !seen.contains(s);
        seen.push(*s);
        first
    });
    Ok(Config {
        scenarios,
        kernel: absolute(args.kernel),
        unpatched_kernel: args.unpatched_kernel.map(absolute),
        debug_kernel: args.debug_kernel.map(absolute),
        initrd: absolute(args.initrd),
        daemon: args.daemon.map(absolute),
        reference_daemon: args.reference_daemon.map(absolute),
        run_dir,
        timeout: Duration::from_secs(args.timeout_secs),
        mem_mib: args.mem_mib,
        smp: args.smp,
        accel: args.accel,
        probe_timeout: Duration::from_secs(args.probe_timeout_secs),
        qemu: args.qemu,
        qemu_10_2: args.qemu_10_2.map(absolute),
        content_check: !args.no_content_check,
        dry_run: args.dry_run,
        strict: args.strict,
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let args = match cli.command {
        Cmd::List => {
            for s in Scenario::every() {
                println!("{:<20} {}", s.name(), s.about);
                println!(
                    "{:<20} kernel {:?}, QEMU {:?}, device {}, daemon options {:?}, launcher {:?}{}",
                    "",
                    s.kernel,
                    s.qemu,
                    s.device.model(),
                    s.daemon.map(|d| d.options).unwrap_or_default(),
                    s.launcher,
                    if s.host_memory.is_some() {
                        ", host-memory timeline"
                    } else {
                        ""
                    }
                );
                println!("{:<20} {}", "", s.kernel_cmdline(None));
            }
            return ExitCode::SUCCESS;
        }
        Cmd::Run(args) => args,
    };
    let cfg = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vugpu-vm: error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(summary)) => {
            print!("{}", summary.render());
            println!("summary: {}", cfg.run_dir.join("summary.json").display());
            if summary.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("vugpu-vm: error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}
