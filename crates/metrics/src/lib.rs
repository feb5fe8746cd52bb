//! Host-side metrics of the vhost-user virtio-gpu daemon.
//!
//! One [`Metrics`] value (shared as `Arc<Metrics>`) holds every counter,
//! gauge and the DETACH latency histogram. The worker thread records into it
//! with lock-free atomics; two readers render snapshots of it:
//!
//! - [`serve`] answers `GET /metrics` over HTTP/1.x on a loopback TCP
//!   address or a unix socket ([`MetricsListen`]) with the Prometheus text
//!   exposition format 0.0.4;
//! - [`spawn_logger`] logs the same values as one JSON object per line
//!   (`log` target [`LOG_TARGET`]) at a fixed interval.
//!
//! Metric names (the binding contract with the rest of the project):
//!
//! | name | type | recorded by |
//! |---|---|---|
//! | `vugpu_commands_total{cmd}` | counter | [`Metrics::command`] |
//! | `vugpu_command_errors_total{code}` | counter | [`Metrics::error`] |
//! | `vugpu_attach_backing_total` | counter | [`Metrics::attached`] |
//! | `vugpu_detach_backing_total` | counter | [`Metrics::detached`] |
//! | `vugpu_attached_bytes` | gauge | [`Metrics::attached`], [`Metrics::detached`], [`Metrics::backing_released`] |
//! | `vugpu_attached_bytes_total` | counter | [`Metrics::attached`] |
//! | `vugpu_detached_bytes_total` | counter | [`Metrics::detached`] |
//! | `vugpu_resources` | gauge | [`Metrics::resource_created`], [`Metrics::resource_destroyed`], [`Metrics::set_resources`] |
//! | `vugpu_resources_created_total` | counter | [`Metrics::resource_created`] |
//! | `vugpu_resources_destroyed_total` | counter | [`Metrics::resource_destroyed`] |
//! | `vugpu_host_memory_bytes` | gauge | [`Metrics::set_host_memory`] |
//! | `vugpu_refused_guest_accesses_total` | counter | [`Metrics::refused_access`] |
//! | `vugpu_decode_errors_total` | counter | [`Metrics::decode_error`] |
//! | `vugpu_fences_completed_total` | counter | [`Metrics::fence_completed`] |
//! | `vugpu_injected_faults_total` | counter | [`Metrics::injected_fault`] |
//! | `vugpu_frontend_messages_refused_total` | counter | [`Metrics::frontend_message_refused`] |
//! | `vugpu_detach_latency_seconds` | histogram | [`Metrics::detached`] |
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use vugpu_metrics::{serve, spawn_logger, Metrics, MetricsListen};
//!
//! # fn main() -> Result<(), vugpu_metrics::MetricsError> {
//! let metrics = Arc::new(Metrics::new());
//! let listen: MetricsListen = "127.0.0.1:9100".parse()?;
//! let _server = serve(&listen, Arc::clone(&metrics))?;
//! let _logger = spawn_logger(Duration::from_secs(10), Arc::clone(&metrics))?;
//! metrics.command("resource_detach_backing");
//! metrics.detached(4096, Duration::from_micros(12));
//! # Ok(())
//! # }
//! ```

mod error;
mod histogram;
mod listen;
mod logger;
mod metrics;
mod server;

pub use error::MetricsError;
pub use histogram::{
    Histogram, HistogramBucket, HistogramSnapshot, DETACH_LATENCY_BUCKETS, INF_LABEL,
};
pub use listen::MetricsListen;
pub use logger::{spawn_logger, LoggerHandle, LOG_TARGET, MIN_LOG_INTERVAL};
pub use metrics::{Metrics, MetricsSnapshot, COMMAND_NAMES, ERROR_CODE_NAMES};
pub use server::{serve, serve_with, MetricsServer, ServerOptions, PROMETHEUS_CONTENT_TYPE};
