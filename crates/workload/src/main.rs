//! `vugpu-workload` binary: parses the command line, runs the workload, prints
//! the `VUGPU-RESULT` line and exits 0 (pass) or 1 (fail). See the library
//! docs (`vugpu_workload`) for the report schema and the guest boot contract.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use vugpu_workload::args::{Args, Config};
use vugpu_workload::error::chain_to_string;
use vugpu_workload::report::Report;
use vugpu_workload::run::run;

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = args.scenario.clone();
    let report = match Config::try_from(args) {
        Ok(cfg) => run(&cfg),
        Err(e) => Report {
            tool: "vugpu-workload",
            tool_version: env!("CARGO_PKG_VERSION"),
            scenario,
            error: Some(chain_to_string(&e)),
            result: "fail",
            ..Default::default()
        },
    };
    let line = report.to_line();
    let mut out = std::io::stdout().lock();
    // If stdout is gone there is nowhere left to report; the exit code stays.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    if let Some(e) = &report.error {
        eprintln!("vugpu-workload: FAIL: {e}");
    }
    if report.result == "pass" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
