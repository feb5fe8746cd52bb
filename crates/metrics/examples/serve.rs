//! Serves a `Metrics` with some synthetic activity, for trying the endpoint
//! with curl or Prometheus:
//!
//! ```text
//! cargo run -p vugpu-metrics --example serve -- 127.0.0.1:9100
//! curl -s http://127.0.0.1:9100/metrics
//! cargo run -p vugpu-metrics --example serve -- unix:/tmp/vugpu-metrics.sock
//! curl -s --unix-socket /tmp/vugpu-metrics.sock http://localhost/metrics
//! ```
//!
//! Runs for the number of seconds given as second argument (default 30),
//! logging a JSON line every second (set `RUST_LOG=info` to see them with a
//! logger; this example prints them to stderr itself).

use std::sync::Arc;
use std::time::Duration;

use vugpu_metrics::{serve, spawn_logger, Metrics, MetricsError, MetricsListen};

/// Prints log records to stderr.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }

    fn log(&self, r: &log::Record<'_>) {
        eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

fn main() -> Result<(), MetricsError> {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    let mut args = std::env::args().skip(1);
    let listen: MetricsListen = args.next().as_deref().unwrap_or("127.0.0.1:9100").parse()?;
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let metrics = Arc::new(Metrics::new());
    let server = serve(&listen, Arc::clone(&metrics))?;
    eprintln!("serving on {}", server.local_addr());
    let _logger = spawn_logger(Duration::from_secs(1), Arc::clone(&metrics))?;
    for i in 0..seconds * 10 {
        metrics.command("resource_attach_backing");
        metrics.attached(4096 * (i % 7 + 1));
        metrics.command("resource_detach_backing");
        metrics.detached(4096 * (i % 7 + 1), Duration::from_micros(5 + 37 * (i % 11)));
        std::thread::sleep(Duration::from_millis(100));
    }
    server.shutdown()
}
