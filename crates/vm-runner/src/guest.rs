//! The guest's side of the contract: the lines `/init` writes to the second
//! serial port (`/dev/ttyS1`, saved as `result.log`).
//!
//! ```text
//! VUGPU-RESULT {"tool":"vugpu-workload","scenario":"evict",...}
//! VUGPU-STATUS PASS|FAIL <reason>
//! ```
//!
//! The JSON is kept as a [`serde_json::Value`] and read through [`Report`],
//! whose accessors turn a missing or mistyped field into a "missing field"
//! message instead of a crash, so a half-written report still yields a
//! verdict that names what is wrong.

use serde_json::Value;

/// Prefix of the result line.
pub const RESULT_PREFIX: &str = "VUGPU-RESULT ";
/// Prefix of the final status line.
pub const STATUS_PREFIX: &str = "VUGPU-STATUS ";

/// The guest's final verdict about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestStatus {
    /// `true` for `PASS`.
    pub pass: bool,
    /// The text after `PASS`/`FAIL` (may be empty).
    pub reason: String,
}

/// Everything parsed from `result.log`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestOutput {
    /// The last `VUGPU-RESULT` line: its JSON, or why it did not parse.
    pub result: Option<Result<Value, String>>,
    /// The last `VUGPU-STATUS` line.
    pub status: Option<GuestStatus>,
    /// Status lines that were neither `PASS` nor `FAIL`.
    pub malformed_status: Option<String>,
}

/// Parses the text of `result.log`.
///
/// Lines may end in `\r\n` (serial ports translate newlines) and may carry
/// leading noise; the prefixes are searched anywhere in a line. When a line
/// type appears more than once the last one wins.
pub fn parse_result_log(text: &str) -> GuestOutput {
    let mut out = GuestOutput::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(pos) = line.find(RESULT_PREFIX) {
            let json = line[pos + RESULT_PREFIX.len()..].trim();
            out.result = Some(
                serde_json::from_str::<Value>(json)
                    .map_err(|e| format!("VUGPU-RESULT is not valid JSON: {e}"))
                    .and_then(|v| {
                        if v.is_object() {
                            Ok(v)
                        } else {
                            Err("VUGPU-RESULT is not a JSON object".to_owned())
                        }
                    }),
            );
        } else if let Some(pos) = line.find(STATUS_PREFIX) {
            let rest = line[pos + STATUS_PREFIX.len()..].trim();
            let (word, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "PASS" | "FAIL" => {
                    out.status = Some(GuestStatus {
                        pass: word == "PASS",
                        reason: reason.trim().to_owned(),
                    });
                }
                _ => out.malformed_status = Some(rest.to_owned()),
            }
        }
    }
    out
}

/// Read access to the workload's JSON report with descriptive errors.
#[derive(Clone, Copy, Debug)]
pub struct Report<'a>(pub &'a Value);

impl<'a> Report<'a> {
    /// The value at a dotted path, if present and not `null`.
    pub fn get(&self, path: &str) -> Option<&'a Value> {
        let mut cur = self.0;
        for key in path.split('.') {
            cur = cur.get(key)?;
        }
        (!cur.is_null()).then_some(cur)
    }

    /// An unsigned integer at a dotted path.
    ///
    /// # Errors
    /// `"missing field <path>"` when absent or `null`, `"field <path> is not
    /// an unsigned integer"` otherwise.
    pub fn u64(&self, path: &str) -> Result<u64, String> {
        let value = self
            .get(path)
            .ok_or_else(|| format!("missing field {path}"))?;
        value
            .as_u64()
            .ok_or_else(|| format!("field {path} is not an unsigned integer: {value}"))
    }

    /// An unsigned integer at a dotted path, `None` when absent or `null`.
    ///
    /// # Errors
    /// When present but not an unsigned integer.
    pub fn opt_u64(&self, path: &str) -> Result<Option<u64>, String> {
        match self.get(path) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("field {path} is not an unsigned integer: {v}")),
        }
    }

    /// A string at a dotted path, `None` when absent or `null`.
    pub fn str(&self, path: &str) -> Option<&'a str> {
        self.get(path).and_then(Value::as_str)
    }

    /// `true` when the report comes from `/init` after the workload was
    /// killed by a signal (for example by the OOM killer).
    pub fn killed_by_signal(&self) -> Option<u64> {
        self.get("killed_by_signal").and_then(Value::as_u64)
    }

    /// The entries of the `failures` array rendered as strings.
    pub fn failures(&self) -> Vec<String> {
        self.get("failures")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_result_log_pass_with_json_returns_both() {
        let text = "noise\r\nVUGPU-RESULT {\"scenario\":\"evict\",\"objects\":96}\r\nVUGPU-STATUS PASS all checks passed\r\n";

        let out = parse_result_log(text);

        let json = out.result.expect("result line").expect("valid JSON");
        assert_eq!(Report(&json).u64("objects"), Ok(96));
        assert_eq!(
            out.status,
            Some(GuestStatus {
                pass: true,
                reason: "all checks passed".to_owned()
            })
        );
    }

    #[test]
    fn test_parse_result_log_truncated_json_reports_error() {
        let text = "VUGPU-RESULT {\"scenario\":\"ev\nVUGPU-STATUS FAIL workload crashed\n";

        let out = parse_result_log(text);

        assert!(matches!(out.result, Some(Err(_))));
        assert_eq!(out.status.map(|s| s.pass), Some(false));
    }

    #[test]
    fn test_parse_result_log_without_status_returns_none() {
        let out = parse_result_log("VUGPU-RESULT {}\n");

        assert_eq!(out.status, None);
    }

    #[test]
    fn test_parse_result_log_unknown_status_word_is_malformed() {
        let out = parse_result_log("VUGPU-STATUS MAYBE\n");

        assert_eq!(out.status, None);
        assert_eq!(out.malformed_status.as_deref(), Some("MAYBE"));
    }

    #[test]
    fn test_report_u64_null_field_is_missing() {
        let json: Value = serde_json::json!({"shrinker": null});

        let err = Report(&json).u64("shrinker.evicted_objects");

        assert_eq!(
            err,
            Err("missing field shrinker.evicted_objects".to_owned())
        );
    }

    #[test]
    fn test_report_u64_negative_is_rejected() {
        let json: Value = serde_json::json!({"vmstat": {"oom_kill": -1}});

        let err = Report(&json).u64("vmstat.oom_kill");

        assert!(err.is_err());
    }
}
