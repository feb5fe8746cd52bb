//! Logger tests. This binary installs its own global `log` logger, which is
//! why it is a separate test file (one process, one logger).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vugpu_metrics::{spawn_logger, Metrics, LOG_TARGET};

/// Records (target, message) of every log record.
struct Capture(Mutex<Vec<(String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut v) = self.0.lock() {
            v.push((record.target().to_owned(), record.args().to_string()));
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn test_spawn_logger_emits_json_lines_each_interval_and_a_final_one_on_drop() {
    // Arrange
    log::set_logger(&CAPTURE).expect("first logger of this process");
    log::set_max_level(log::LevelFilter::Info);
    let metrics = Arc::new(Metrics::new());
    let interval = Duration::from_millis(50);

    // Act: run for 6 intervals, then record a value and stop.
    let handle = spawn_logger(interval, Arc::clone(&metrics)).expect("thread starts");
    std::thread::sleep(interval * 6);
    metrics.command("move_cursor");
    drop(handle);

    // Assert
    let records = CAPTURE.0.lock().expect("not poisoned").clone();
    let lines: Vec<&String> = records
        .iter()
        .filter(|(t, _)| t == LOG_TARGET)
        .map(|(_, m)| m)
        .collect();
    // 6 ticks are expected; allow scheduling slack on a loaded machine but
    // require more than the final line alone.
    assert!(lines.len() >= 3, "{} lines", lines.len());
    assert!(lines.len() <= 8, "{} lines", lines.len());
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let last = parsed.last().expect("at least one line");
    assert_eq!(
        last["commands"]["move_cursor"], 1,
        "final line has the late value"
    );
    assert_eq!(parsed[0]["commands"]["move_cursor"], 0);
    let stamps: Vec<u64> = parsed
        .iter()
        .map(|v| v["timestamp_ms"].as_u64().expect("timestamp"))
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
}
