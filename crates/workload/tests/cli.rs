//! The binary's output contract: exactly one `VUGPU-RESULT {json}` line on
//! stdout, exit status 0 only for a pass, also when the run cannot start.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_vugpu-workload");

fn result_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("VUGPU-RESULT "))
        .map(|j| serde_json::from_str(j).expect("VUGPU-RESULT carries valid JSON"))
        .collect()
}

#[test]
fn test_cli_non_drm_card_prints_one_fail_report_and_exits_1() {
    let out = Command::new(BIN)
        .args([
            "--card",
            "/dev/null",
            "--count",
            "1",
            "--scenario",
            "cli-test",
        ])
        .args(["--kmsg", "/nonexistent/kmsg"])
        .output()
        .expect("run vugpu-workload");

    let reports = result_lines(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["result"], "fail");
    assert_eq!(reports[0]["scenario"], "cli-test");
    assert!(reports[0]["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("DRM_IOCTL_VERSION failed")));
}

#[test]
fn test_cli_invalid_object_size_prints_fail_report() {
    let out = Command::new(BIN)
        .args(["--object-mib", "0", "--scenario", "bad-size"])
        .output()
        .expect("run vugpu-workload");

    let reports = result_lines(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["scenario"], "bad-size");
    assert!(reports[0]["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("Invalid configuration")));
}
