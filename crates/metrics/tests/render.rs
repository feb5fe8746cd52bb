//! Rendering tests: record values, render, parse the output back, compare
//! numbers.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::parse_exposition;
use vugpu_metrics::{Metrics, COMMAND_NAMES, ERROR_CODE_NAMES};

#[test]
fn test_render_prometheus_command_counts_are_per_label() {
    // Arrange
    let m = Metrics::new();
    m.command("resource_attach_backing");
    m.command("resource_attach_backing");
    m.command("resource_detach_backing");
    m.command("not_a_command"); // counted as unknown

    // Act
    let exp = parse_exposition(&m.render_prometheus());

    // Assert
    assert_eq!(
        exp.value(r#"vugpu_commands_total{cmd="resource_attach_backing"}"#),
        2.0
    );
    assert_eq!(
        exp.value(r#"vugpu_commands_total{cmd="resource_detach_backing"}"#),
        1.0
    );
    assert_eq!(exp.value(r#"vugpu_commands_total{cmd="unknown"}"#), 1.0);
    assert_eq!(exp.value(r#"vugpu_commands_total{cmd="get_edid"}"#), 0.0);
}

#[test]
fn test_render_prometheus_every_command_and_error_label_is_present() {
    // Arrange
    let m = Metrics::new();

    // Act
    let exp = parse_exposition(&m.render_prometheus());

    // Assert: series exist from the start (zero), so rate() works at once.
    let missing_cmds: Vec<_> = COMMAND_NAMES
        .iter()
        .filter(|c| {
            !exp.samples
                .contains_key(&format!("vugpu_commands_total{{cmd=\"{c}\"}}"))
        })
        .collect();
    let missing_codes: Vec<_> = ERROR_CODE_NAMES
        .iter()
        .filter(|c| {
            !exp.samples
                .contains_key(&format!("vugpu_command_errors_total{{code=\"{c}\"}}"))
        })
        .collect();
    assert!(missing_cmds.is_empty(), "{missing_cmds:?}");
    assert!(missing_codes.is_empty(), "{missing_codes:?}");
    assert_eq!(COMMAND_NAMES.len(), 17);
}

#[test]
fn test_render_prometheus_error_codes_count_unknown_as_unspec() {
    // Arrange
    let m = Metrics::new();
    m.error("err_invalid_parameter");
    m.error("err_invalid_parameter");
    m.error("err_invalid_resource_id");
    m.error("err_bogus");

    // Act
    let exp = parse_exposition(&m.render_prometheus());

    // Assert
    assert_eq!(
        exp.value(r#"vugpu_command_errors_total{code="err_invalid_parameter"}"#),
        2.0
    );
    assert_eq!(
        exp.value(r#"vugpu_command_errors_total{code="err_invalid_resource_id"}"#),
        1.0
    );
    assert_eq!(
        exp.value(r#"vugpu_command_errors_total{code="err_unspec"}"#),
        1.0
    );
    assert_eq!(
        exp.value(r#"vugpu_command_errors_total{code="err_out_of_memory"}"#),
        0.0
    );
}

#[test]
fn test_render_prometheus_attach_detach_moves_bytes_between_gauge_and_counters() {
    // Arrange: 64 MiB and 4 KiB attached, the 64 MiB one detached.
    let m = Metrics::new();
    m.attached(64 << 20);
    m.attached(4096);
    m.detached(64 << 20, Duration::from_micros(40));

    // Act
    let exp = parse_exposition(&m.render_prometheus());

    // Assert
    assert_eq!(exp.value("vugpu_attach_backing_total"), 2.0);
    assert_eq!(exp.value("vugpu_detach_backing_total"), 1.0);
    assert_eq!(exp.value("vugpu_attached_bytes"), 4096.0);
    assert_eq!(
        exp.value("vugpu_attached_bytes_total"),
        f64::from((64u32 << 20) + 4096)
    );
    assert_eq!(
        exp.value("vugpu_detached_bytes_total"),
        f64::from(64u32 << 20)
    );
}

#[test]
fn test_attached_bytes_gauge_detach_more_than_attached_saturates_at_zero() {
    // Arrange
    let m = Metrics::new();
    m.attached(4096);

    // Act: a caller bug must not wrap the gauge to 2^64 - 4096.
    m.detached(8192, Duration::from_micros(1));

    // Assert
    assert_eq!(m.snapshot().attached_bytes, 0);
}

#[test]
fn test_backing_released_lowers_gauge_without_counting_detach() {
    // Arrange
    let m = Metrics::new();
    m.attached(8192);

    // Act
    m.backing_released(8192);

    // Assert
    let s = m.snapshot();
    assert_eq!(
        (
            s.attached_bytes,
            s.detach_backing_total,
            s.detached_bytes_total
        ),
        (0, 0, 0)
    );
}

#[test]
fn test_render_prometheus_resource_gauge_follows_create_destroy_and_set() {
    // Arrange
    let m = Metrics::new();
    m.resource_created();
    m.resource_created();
    m.resource_created();
    m.resource_destroyed();

    // Act
    let before_reset = parse_exposition(&m.render_prometheus());
    m.set_resources(0);
    let after_reset = parse_exposition(&m.render_prometheus());

    // Assert
    assert_eq!(before_reset.value("vugpu_resources"), 2.0);
    assert_eq!(before_reset.value("vugpu_resources_created_total"), 3.0);
    assert_eq!(before_reset.value("vugpu_resources_destroyed_total"), 1.0);
    assert_eq!(after_reset.value("vugpu_resources"), 0.0);
    assert_eq!(after_reset.value("vugpu_resources_created_total"), 3.0);
}

#[test]
fn test_render_prometheus_simple_counters_and_host_memory_gauge() {
    // Arrange
    let m = Metrics::new();
    m.set_host_memory(1 << 30);
    m.set_host_memory(3 << 20); // a gauge: last value wins
    m.refused_access();
    m.refused_access();
    m.decode_error();
    m.fence_completed();
    m.fence_completed();
    m.fence_completed();

    // Act
    let exp = parse_exposition(&m.render_prometheus());

    // Assert
    assert_eq!(exp.value("vugpu_host_memory_bytes"), f64::from(3u32 << 20));
    assert_eq!(exp.value("vugpu_refused_guest_accesses_total"), 2.0);
    assert_eq!(exp.value("vugpu_decode_errors_total"), 1.0);
    assert_eq!(exp.value("vugpu_fences_completed_total"), 3.0);
}

#[test]
fn test_render_prometheus_histogram_buckets_sum_and_count() {
    // Arrange: 5 us, 2 x 30 us, 2 ms and 5 s.
    let m = Metrics::new();
    m.detached(0, Duration::from_micros(5));
    m.detached(0, Duration::from_micros(30));
    m.detached(0, Duration::from_micros(30));
    m.detached(0, Duration::from_millis(2));
    m.detached(0, Duration::from_secs(5));

    // Act
    let exp = parse_exposition(&m.render_prometheus());

    // Assert
    let h = "vugpu_detach_latency_seconds";
    assert_eq!(exp.types.get(h).map(String::as_str), Some("histogram"));
    assert_eq!(exp.value(&format!("{h}_bucket{{le=\"0.00001\"}}")), 1.0);
    assert_eq!(exp.value(&format!("{h}_bucket{{le=\"0.000025\"}}")), 1.0);
    assert_eq!(exp.value(&format!("{h}_bucket{{le=\"0.00005\"}}")), 3.0);
    assert_eq!(exp.value(&format!("{h}_bucket{{le=\"0.001\"}}")), 3.0);
    assert_eq!(exp.value(&format!("{h}_bucket{{le=\"0.0025\"}}")), 4.0);
    assert_eq!(exp.value(&format!("{h}_bucket{{le=\"1\"}}")), 4.0);
    assert_eq!(exp.value(&format!("{h}_bucket{{le=\"+Inf\"}}")), 5.0);
    assert_eq!(exp.value(&format!("{h}_count")), 5.0);
    let expected_sum = 5.002_065; // 5 s + 2 ms + 65 us
    assert!((exp.value(&format!("{h}_sum")) - expected_sum).abs() < 1e-9);
}

#[test]
fn test_render_prometheus_histogram_buckets_are_cumulative_and_end_with_inf() {
    // Arrange: one observation in each of several buckets.
    let m = Metrics::new();
    m.detached(0, Duration::from_micros(7));
    m.detached(0, Duration::from_micros(70));
    m.detached(0, Duration::from_micros(700));
    m.detached(0, Duration::from_millis(7));
    m.detached(0, Duration::from_millis(70));
    m.detached(0, Duration::from_millis(700));

    // Act
    let exp = parse_exposition(&m.render_prometheus());
    let buckets = exp.buckets("vugpu_detach_latency_seconds");

    // Assert: bounds increase, counts never decrease, +Inf last == _count.
    let bounds: Vec<f64> = buckets
        .iter()
        .map(|(le, _)| {
            if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("float le")
            }
        })
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().map(|(le, _)| le.as_str()), Some("+Inf"));
    assert_eq!(
        buckets.last().map(|b| b.1),
        Some(exp.value("vugpu_detach_latency_seconds_count"))
    );
    assert_eq!(exp.value("vugpu_detach_latency_seconds_count"), 6.0);
}

#[test]
fn test_render_prometheus_declares_every_contract_family_with_help_and_type() {
    // Arrange
    let m = Metrics::new();
    let expected = [
        ("vugpu_commands_total", "counter"),
        ("vugpu_command_errors_total", "counter"),
        ("vugpu_attach_backing_total", "counter"),
        ("vugpu_detach_backing_total", "counter"),
        ("vugpu_attached_bytes", "gauge"),
        ("vugpu_attached_bytes_total", "counter"),
        ("vugpu_detached_bytes_total", "counter"),
        ("vugpu_resources", "gauge"),
        ("vugpu_resources_created_total", "counter"),
        ("vugpu_resources_destroyed_total", "counter"),
        ("vugpu_host_memory_bytes", "gauge"),
        ("vugpu_refused_guest_accesses_total", "counter"),
        ("vugpu_decode_errors_total", "counter"),
        ("vugpu_fences_completed_total", "counter"),
        ("vugpu_injected_faults_total", "counter"),
        ("vugpu_frontend_messages_refused_total", "counter"),
        ("vugpu_detach_latency_seconds", "histogram"),
    ];

    // Act
    let exp = parse_exposition(&m.render_prometheus());

    // Assert
    let types: Vec<(&str, &str)> = exp
        .types
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut expected_sorted = expected.to_vec();
    expected_sorted.sort_unstable();
    assert_eq!(types, expected_sorted);
    let mut helps = exp.helps.clone();
    helps.sort_unstable();
    let names: Vec<&str> = expected_sorted.iter().map(|(n, _)| *n).collect();
    assert_eq!(helps, names);
}

#[test]
fn test_json_line_parses_and_matches_snapshot() {
    // Arrange
    let m = Metrics::new();
    m.command("get_display_info");
    m.error("err_out_of_memory");
    m.attached(12288);
    m.detached(4096, Duration::from_micros(30));
    m.resource_created();
    m.fence_completed();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();

    // Act
    let line = m.json_line();

    // Assert
    assert!(!line.contains('\n'));
    let mut v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    let ts = v["timestamp_ms"]
        .as_u64()
        .expect("timestamp_ms is an integer");
    assert!(
        u128::from(ts).abs_diff(now_ms) < 10_000,
        "timestamp {ts} vs now {now_ms}"
    );
    assert_eq!(v["commands"]["get_display_info"], 1);
    assert_eq!(v["command_errors"]["err_out_of_memory"], 1);
    assert_eq!(v["attached_bytes"], 8192);
    assert_eq!(v["detach_latency_seconds"]["count"], 1);
    assert_eq!(v["detach_latency_seconds"]["sum_ns"], 30_000);
    // Apart from the timestamp, the line is exactly the serialized snapshot.
    v.as_object_mut().expect("object").remove("timestamp_ms");
    assert_eq!(v, serde_json::to_value(m.snapshot()).expect("serializable"));
}

#[test]
fn test_metrics_recorded_from_many_threads_are_all_counted() {
    // Arrange: 4 writer threads while a reader renders continuously.
    let m = std::sync::Arc::new(Metrics::new());
    const PER_THREAD: u64 = 10_000;

    // Act
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let m = std::sync::Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    m.command("resource_flush");
                    m.detached(0, Duration::from_micros(20));
                }
            })
        })
        .collect();
    let renders: usize = (0..50).map(|_| m.render_prometheus().len()).sum();
    for w in writers {
        w.join().expect("writer thread");
    }

    // Assert
    let exp = parse_exposition(&m.render_prometheus());
    assert!(renders > 0);
    assert_eq!(
        exp.value(r#"vugpu_commands_total{cmd="resource_flush"}"#),
        40_000.0
    );
    assert_eq!(exp.value("vugpu_detach_latency_seconds_count"), 40_000.0);
    assert_eq!(
        exp.value(r#"vugpu_detach_latency_seconds_bucket{le="0.000025"}"#),
        40_000.0
    );
}
