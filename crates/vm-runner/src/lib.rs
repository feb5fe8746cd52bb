//! The end-to-end VM test harness of the vhost-user virtio-gpu project.
//!
//! `vugpu-vm run <scenario>...` boots guests in QEMU 10 with the
//! `vhost-user-gpu` daemon (or QEMU's built-in device), waits for the
//! in-guest workload's verdict with a deadline, scrapes the daemon's
//! Prometheus metrics before stopping it, judges each scenario and writes
//! `summary.json`. The pure parts (Prometheus parsing, histogram quantiles,
//! result-line parsing, verdicts, command lines) are unit-tested here; the
//! orchestration lives in [`runner`].

pub mod digest;
pub mod error;
pub mod guest;
pub mod hostmem;
pub mod http;
pub mod libvirt;
pub mod png_screen;
pub mod ppm;
pub mod process;
pub mod prom;
pub mod qemu;
pub mod qmp;
pub mod runner;
pub mod scenario;
pub mod summary;
pub mod time;
pub mod timeline;
pub mod verdict;

pub use error::Error;
pub use runner::{run, AccelChoice, Config};
pub use scenario::Scenario;
