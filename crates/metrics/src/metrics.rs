//! The metric store ([`Metrics`]), its snapshot and the two renderers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::histogram::{saturating_add, saturating_sub, Histogram, HistogramSnapshot};

/// Values of the `cmd` label of `vugpu_commands_total`, in protocol order.
///
/// Any other name passed to [`Metrics::command`] is counted as `"unknown"`,
/// the last entry.
pub const COMMAND_NAMES: [&str; 17] = [
    "get_display_info",
    "get_edid",
    "resource_create_2d",
    "resource_unref",
    "set_scanout",
    "resource_flush",
    "transfer_to_host_2d",
    "resource_attach_backing",
    "resource_detach_backing",
    "get_capset_info",
    "get_capset",
    "resource_assign_uuid",
    "resource_create_blob",
    "set_scanout_blob",
    "update_cursor",
    "move_cursor",
    "unknown",
];

/// Values of the `code` label of `vugpu_command_errors_total`.
///
/// Any other name passed to [`Metrics::error`] is counted as `"err_unspec"`,
/// the first entry (the protocol's catch-all error).
pub const ERROR_CODE_NAMES: [&str; 6] = [
    "err_unspec",
    "err_out_of_memory",
    "err_invalid_scanout_id",
    "err_invalid_resource_id",
    "err_invalid_context_id",
    "err_invalid_parameter",
];

/// Index of `"unknown"` in [`COMMAND_NAMES`].
const UNKNOWN_COMMAND: usize = COMMAND_NAMES.len() - 1;
/// Index of `"err_unspec"` in [`ERROR_CODE_NAMES`].
const UNSPEC_ERROR: usize = 0;

/// All host-side metrics of one daemon.
///
/// Every recording method is a handful of `Relaxed` atomic operations: no
/// lock, no allocation, safe to call from the worker thread while the HTTP
/// and log threads take snapshots. Values are cumulative from creation
/// (nothing resets on read), so the Prometheus endpoint and every JSON log
/// line show the same numbers.
///
/// A snapshot reads each atomic once; values recorded concurrently may be
/// in one field of a snapshot and not yet in another (for example a detach
/// counted in `detach_backing_total` but not yet in the histogram).
#[derive(Debug)]
pub struct Metrics {
    /// `vugpu_commands_total`, indexed like [`COMMAND_NAMES`].
    commands: [AtomicU64; COMMAND_NAMES.len()],
    /// `vugpu_command_errors_total`, indexed like [`ERROR_CODE_NAMES`].
    errors: [AtomicU64; ERROR_CODE_NAMES.len()],
    /// `vugpu_attach_backing_total`.
    attach_backing_total: AtomicU64,
    /// `vugpu_detach_backing_total`.
    detach_backing_total: AtomicU64,
    /// `vugpu_attached_bytes` (gauge).
    attached_bytes: AtomicU64,
    /// `vugpu_attached_bytes_total`.
    attached_bytes_total: AtomicU64,
    /// `vugpu_detached_bytes_total`.
    detached_bytes_total: AtomicU64,
    /// `vugpu_resources` (gauge).
    resources: AtomicU64,
    /// `vugpu_resources_created_total`.
    resources_created_total: AtomicU64,
    /// `vugpu_resources_destroyed_total`.
    resources_destroyed_total: AtomicU64,
    /// `vugpu_host_memory_bytes` (gauge).
    host_memory_bytes: AtomicU64,
    /// `vugpu_refused_guest_accesses_total`.
    refused_guest_accesses_total: AtomicU64,
    /// `vugpu_decode_errors_total`.
    decode_errors_total: AtomicU64,
    /// `vugpu_fences_completed_total`.
    fences_completed_total: AtomicU64,
    /// `vugpu_injected_faults_total`.
    injected_faults_total: AtomicU64,
    /// `vugpu_frontend_messages_refused_total`.
    frontend_messages_refused_total: AtomicU64,
    /// `vugpu_detach_latency_seconds`.
    detach_latency: Histogram,
}

impl Metrics {
    /// Creates a store with every value at zero. `const`, so it can back a
    /// `static` as well as an `Arc`.
    pub const fn new() -> Self {
        Self {
            commands: [const { AtomicU64::new(0) }; COMMAND_NAMES.len()],
            errors: [const { AtomicU64::new(0) }; ERROR_CODE_NAMES.len()],
            attach_backing_total: AtomicU64::new(0),
            detach_backing_total: AtomicU64::new(0),
            attached_bytes: AtomicU64::new(0),
            attached_bytes_total: AtomicU64::new(0),
            detached_bytes_total: AtomicU64::new(0),
            resources: AtomicU64::new(0),
            resources_created_total: AtomicU64::new(0),
            resources_destroyed_total: AtomicU64::new(0),
            host_memory_bytes: AtomicU64::new(0),
            refused_guest_accesses_total: AtomicU64::new(0),
            decode_errors_total: AtomicU64::new(0),
            fences_completed_total: AtomicU64::new(0),
            injected_faults_total: AtomicU64::new(0),
            frontend_messages_refused_total: AtomicU64::new(0),
            detach_latency: Histogram::new(),
        }
    }

    /// Counts one decoded command in `vugpu_commands_total{cmd=name}`.
    ///
    /// `name` should be one of [`COMMAND_NAMES`]; anything else is counted
    /// under `cmd="unknown"` (use that for undecodable command types).
    pub fn command(&self, name: &'static str) {
        let idx = COMMAND_NAMES
            .iter()
            .position(|&n| n == name)
            .unwrap_or(UNKNOWN_COMMAND);
        self.commands[idx].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error response in `vugpu_command_errors_total{code=code_name}`.
    ///
    /// `code_name` should be one of [`ERROR_CODE_NAMES`]; anything else is
    /// counted under `code="err_unspec"`.
    pub fn error(&self, code_name: &'static str) {
        let idx = ERROR_CODE_NAMES
            .iter()
            .position(|&n| n == code_name)
            .unwrap_or(UNSPEC_ERROR);
        self.errors[idx].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a successful `RESOURCE_ATTACH_BACKING` (or `CREATE_BLOB` with
    /// entries) of `bytes` guest bytes: increments
    /// `vugpu_attach_backing_total`, adds `bytes` to `vugpu_attached_bytes`
    /// and `vugpu_attached_bytes_total`.
    pub fn attached(&self, bytes: u64) {
        self.attach_backing_total.fetch_add(1, Ordering::Relaxed);
        saturating_add(&self.attached_bytes, bytes);
        saturating_add(&self.attached_bytes_total, bytes);
    }

    /// Records a successful `RESOURCE_DETACH_BACKING` of `bytes` guest bytes
    /// that took `latency` from dequeue to response: increments
    /// `vugpu_detach_backing_total`, moves `bytes` from
    /// `vugpu_attached_bytes` (saturating at zero) to
    /// `vugpu_detached_bytes_total` and observes `latency` in
    /// `vugpu_detach_latency_seconds`.
    ///
    /// Backing dropped for another reason (unref, reset) should be reported
    /// with [`Metrics::backing_released`] so the gauge stays right without
    /// counting a DETACH.
    pub fn detached(&self, bytes: u64, latency: Duration) {
        self.detach_backing_total.fetch_add(1, Ordering::Relaxed);
        saturating_sub(&self.attached_bytes, bytes);
        saturating_add(&self.detached_bytes_total, bytes);
        self.detach_latency.observe(latency);
    }

    /// Lowers `vugpu_attached_bytes` by `bytes` (saturating at zero) for
    /// backing released without a DETACH command (resource unref with
    /// backing still attached, device reset). Counts nothing else.
    pub fn backing_released(&self, bytes: u64) {
        saturating_sub(&self.attached_bytes, bytes);
    }

    /// Sets the `vugpu_resources` gauge to `n` (for example to 0 after a
    /// device reset). The created/destroyed counters are not touched.
    pub fn set_resources(&self, n: u64) {
        self.resources.store(n, Ordering::Relaxed);
    }

    /// Records a resource creation: increments
    /// `vugpu_resources_created_total` and the `vugpu_resources` gauge.
    pub fn resource_created(&self) {
        self.resources_created_total.fetch_add(1, Ordering::Relaxed);
        saturating_add(&self.resources, 1);
    }

    /// Records a resource destruction: increments
    /// `vugpu_resources_destroyed_total` and decrements the
    /// `vugpu_resources` gauge (saturating at zero).
    pub fn resource_destroyed(&self) {
        self.resources_destroyed_total
            .fetch_add(1, Ordering::Relaxed);
        saturating_sub(&self.resources, 1);
    }

    /// Sets the `vugpu_host_memory_bytes` gauge (host-side resource storage
    /// in use).
    pub fn set_host_memory(&self, bytes: u64) {
        self.host_memory_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Counts a refused guest-memory access in
    /// `vugpu_refused_guest_accesses_total` (resource had no backing, or the
    /// range was outside the backing or guest memory).
    pub fn refused_access(&self) {
        self.refused_guest_accesses_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a malformed descriptor chain in `vugpu_decode_errors_total`.
    pub fn decode_error(&self) {
        self.decode_errors_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a completed fence in `vugpu_fences_completed_total`.
    pub fn fence_completed(&self) {
        self.fences_completed_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a fault injected by a `--test-only-fault` option in
    /// `vugpu_injected_faults_total`.
    pub fn injected_fault(&self) {
        self.injected_faults_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a vhost-user message refused because it was malformed or not
    /// acceptable in `vugpu_frontend_messages_refused_total`.
    pub fn frontend_message_refused(&self) {
        self.frontend_messages_refused_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Returns a copy of every value, the input of both renderers.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            commands: COMMAND_NAMES
                .iter()
                .zip(&self.commands)
                .map(|(&n, v)| (n, load(v)))
                .collect(),
            command_errors: ERROR_CODE_NAMES
                .iter()
                .zip(&self.errors)
                .map(|(&n, v)| (n, load(v)))
                .collect(),
            attach_backing_total: load(&self.attach_backing_total),
            detach_backing_total: load(&self.detach_backing_total),
            attached_bytes: load(&self.attached_bytes),
            attached_bytes_total: load(&self.attached_bytes_total),
            detached_bytes_total: load(&self.detached_bytes_total),
            resources: load(&self.resources),
            resources_created_total: load(&self.resources_created_total),
            resources_destroyed_total: load(&self.resources_destroyed_total),
            host_memory_bytes: load(&self.host_memory_bytes),
            refused_guest_accesses_total: load(&self.refused_guest_accesses_total),
            decode_errors_total: load(&self.decode_errors_total),
            fences_completed_total: load(&self.fences_completed_total),
            injected_faults_total: load(&self.injected_faults_total),
            frontend_messages_refused_total: load(&self.frontend_messages_refused_total),
            detach_latency_seconds: self.detach_latency.snapshot(),
        }
    }

    /// Renders the current values in the Prometheus text exposition format,
    /// version 0.0.4 (see [`MetricsSnapshot::render_prometheus`]).
    pub fn render_prometheus(&self) -> String {
        self.snapshot().render_prometheus()
    }

    /// Renders the current values as one JSON object on one line (no
    /// trailing newline), with a `timestamp_ms` field (milliseconds since the
    /// Unix epoch) followed by the fields of [`MetricsSnapshot`].
    pub fn json_line(&self) -> String {
        self.snapshot().json_line(SystemTime::now())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Point-in-time copy of [`Metrics`].
///
/// Field names are the Prometheus metric names without the `vugpu_` prefix;
/// serialized with serde it is the body of a JSON log line:
///
/// ```json
/// {"timestamp_ms":1763755200000,
///  "commands":{"get_display_info":1,...,"unknown":0},
///  "command_errors":{"err_invalid_parameter":0,...},
///  "attach_backing_total":3,"detach_backing_total":2,"attached_bytes":4096,
///  ...,
///  "detach_latency_seconds":{"buckets":[{"le":"0.00001","count":1},...,
///    {"le":"+Inf","count":2}],"sum_ns":31000,"sum_seconds":3.1e-5,"count":2}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// `vugpu_commands_total` per `cmd` label (every name of
    /// [`COMMAND_NAMES`] is present).
    pub commands: BTreeMap<&'static str, u64>,
    /// `vugpu_command_errors_total` per `code` label (every name of
    /// [`ERROR_CODE_NAMES`] is present).
    pub command_errors: BTreeMap<&'static str, u64>,
    /// `vugpu_attach_backing_total`: successful ATTACH (incl. CREATE_BLOB
    /// with entries).
    pub attach_backing_total: u64,
    /// `vugpu_detach_backing_total`: successful DETACH.
    pub detach_backing_total: u64,
    /// `vugpu_attached_bytes`: guest bytes currently attached as backing.
    pub attached_bytes: u64,
    /// `vugpu_attached_bytes_total`: guest bytes ever attached.
    pub attached_bytes_total: u64,
    /// `vugpu_detached_bytes_total`: guest bytes ever detached.
    pub detached_bytes_total: u64,
    /// `vugpu_resources`: resources alive.
    pub resources: u64,
    /// `vugpu_resources_created_total`.
    pub resources_created_total: u64,
    /// `vugpu_resources_destroyed_total`.
    pub resources_destroyed_total: u64,
    /// `vugpu_host_memory_bytes`: host-side resource storage in use.
    pub host_memory_bytes: u64,
    /// `vugpu_refused_guest_accesses_total`.
    pub refused_guest_accesses_total: u64,
    /// `vugpu_decode_errors_total`: malformed descriptor chains.
    pub decode_errors_total: u64,
    /// `vugpu_fences_completed_total`.
    pub fences_completed_total: u64,
    /// `vugpu_injected_faults_total`: faults injected by test-only options.
    pub injected_faults_total: u64,
    /// `vugpu_frontend_messages_refused_total`: vhost-user messages refused.
    pub frontend_messages_refused_total: u64,
    /// `vugpu_detach_latency_seconds`: DETACH dequeue-to-response latency.
    pub detach_latency_seconds: HistogramSnapshot,
}

/// A JSON log line: the timestamp, then the snapshot's fields.
#[derive(Serialize)]
struct JsonLine<'a> {
    /// Milliseconds since the Unix epoch.
    timestamp_ms: u64,
    /// The values.
    #[serde(flatten)]
    snapshot: &'a MetricsSnapshot,
}

/// A scalar metric family: name, help text, type, value.
type Scalar = (&'static str, &'static str, &'static str, u64);

impl MetricsSnapshot {
    /// Renders the snapshot in the Prometheus text exposition format 0.0.4:
    /// a `# HELP` and a `# TYPE` line per family, one sample per label
    /// value, the histogram as cumulative `_bucket{le="..."}` samples ending
    /// with `le="+Inf"`, then `_sum` (seconds) and `_count`. Ends with a
    /// newline.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "vugpu_commands_total",
            "Commands received, per command type.",
            "counter",
        );
        for (cmd, v) in &self.commands {
            let _ = writeln!(out, "vugpu_commands_total{{cmd=\"{cmd}\"}} {v}");
        }
        family(
            &mut out,
            "vugpu_command_errors_total",
            "Error responses sent, per error code.",
            "counter",
        );
        for (code, v) in &self.command_errors {
            let _ = writeln!(out, "vugpu_command_errors_total{{code=\"{code}\"}} {v}");
        }
        for (name, help, kind, value) in self.scalars() {
            family(&mut out, name, help, kind);
            let _ = writeln!(out, "{name} {value}");
        }
        let h = &self.detach_latency_seconds;
        let name = "vugpu_detach_latency_seconds";
        family(
            &mut out,
            name,
            "RESOURCE_DETACH_BACKING latency from request dequeued to response written.",
            "histogram",
        );
        for b in &h.buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {}", b.le, b.count);
        }
        let _ = writeln!(out, "{name}_sum {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", h.count);
        out
    }

    /// Renders the snapshot as one JSON line with `timestamp_ms` taken from
    /// `now` (see [`Metrics::json_line`]).
    pub fn json_line(&self, now: SystemTime) -> String {
        let timestamp_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let line = JsonLine {
            timestamp_ms,
            snapshot: self,
        };
        // Serializing plain integers, floats that are always finite (a
        // quotient of a u64 by 1e9), and string keys cannot fail; fall back
        // to an empty object rather than panic if it ever did.
        serde_json::to_string(&line).unwrap_or_else(|_| String::from("{}"))
    }

    /// The single-sample families in output order.
    fn scalars(&self) -> [Scalar; 14] {
        [
            (
                "vugpu_attach_backing_total",
                "Successful RESOURCE_ATTACH_BACKING (and CREATE_BLOB with entries).",
                "counter",
                self.attach_backing_total,
            ),
            (
                "vugpu_detach_backing_total",
                "Successful RESOURCE_DETACH_BACKING.",
                "counter",
                self.detach_backing_total,
            ),
            (
                "vugpu_attached_bytes",
                "Guest bytes currently attached as resource backing.",
                "gauge",
                self.attached_bytes,
            ),
            (
                "vugpu_attached_bytes_total",
                "Guest bytes ever attached as resource backing.",
                "counter",
                self.attached_bytes_total,
            ),
            (
                "vugpu_detached_bytes_total",
                "Guest bytes ever detached from resources.",
                "counter",
                self.detached_bytes_total,
            ),
            (
                "vugpu_resources",
                "Resources alive.",
                "gauge",
                self.resources,
            ),
            (
                "vugpu_resources_created_total",
                "Resources created.",
                "counter",
                self.resources_created_total,
            ),
            (
                "vugpu_resources_destroyed_total",
                "Resources destroyed.",
                "counter",
                self.resources_destroyed_total,
            ),
            (
                "vugpu_host_memory_bytes",
                "Host-side resource storage in use, in bytes.",
                "gauge",
                self.host_memory_bytes,
            ),
            (
                "vugpu_refused_guest_accesses_total",
                "Guest-memory accesses refused (no backing, or range outside backing or guest memory).",
                "counter",
                self.refused_guest_accesses_total,
            ),
            (
                "vugpu_decode_errors_total",
                "Malformed descriptor chains.",
                "counter",
                self.decode_errors_total,
            ),
            (
                "vugpu_fences_completed_total",
                "Fences completed.",
                "counter",
                self.fences_completed_total,
            ),
            (
                "vugpu_injected_faults_total",
                "Faults injected by --test-only-fault options (0 in production).",
                "counter",
                self.injected_faults_total,
            ),
            (
                "vugpu_frontend_messages_refused_total",
                "vhost-user messages from the frontend refused as malformed or unacceptable.",
                "counter",
                self.frontend_messages_refused_total,
            ),
        ]
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
