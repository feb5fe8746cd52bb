//! `vhost-user-gpu`: parses the command line, builds the configuration and
//! runs the daemon (see the library crate for everything else).

use std::process::ExitCode;

use clap::Parser;
use log::error;
use vhost_user_gpu::device::error_chain;
use vhost_user_gpu::{start, GpuArgs, GpuConfig, CAPABILITIES_JSON};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = GpuArgs::parse();
    if args.print_capabilities {
        println!("{CAPABILITIES_JSON}");
        return ExitCode::SUCCESS;
    }
    let config = match GpuConfig::try_from(args) {
        Ok(config) => config,
        Err(e) => {
            error!("{}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    match start(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
