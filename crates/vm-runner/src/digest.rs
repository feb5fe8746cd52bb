//! The host-side content check: what the device read from guest memory,
//! compared with what the workload wrote.
//!
//! The daemon, started with `--test-only-read-digest-log PATH`, appends one
//! JSON line each time it reads a resource's guest backing (TRANSFER_TO_HOST_2D,
//! or SET_SCANOUT_BLOB / RESOURCE_FLUSH of a guest blob):
//!
//! ```text
//! {"resource_id":R,"op":"transfer"|"flush"|"scanout","x":X,"y":Y,"w":W,"h":H,"fnv1a64":"<16 hex>"}
//! ```
//!
//! The digest is 64-bit FNV-1a over the rectangle's bytes row by row
//! (`w * 4` bytes per row, rows `y..y + h`, at `offset + row * stride + x * 4`).
//! The workload reports, per object it made the device read, the resource
//! id, the rectangle, the digest of its seeded pattern over that rectangle
//! and how many reads it asked for (`device_reads` in its report).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of the daemon's digest log.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct DeviceRead {
    /// Host resource id.
    pub resource_id: u32,
    /// `transfer`, `flush` or `scanout`.
    pub op: String,
    /// Rectangle origin x, in pixels.
    pub x: u32,
    /// Rectangle origin y, in pixels.
    pub y: u32,
    /// Rectangle width, in pixels.
    pub w: u32,
    /// Rectangle height, in pixels.
    pub h: u32,
    /// FNV-1a 64 of the rectangle's bytes, 16 lowercase hex digits.
    pub fnv1a64: String,
}

/// One object the workload made the device read (its `device_reads`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExpectedRead {
    /// Workload object index.
    pub object: u64,
    /// Host resource id (`VIRTGPU_RESOURCE_INFO`).
    pub resource_id: u32,
    /// Rectangle origin x, in pixels.
    pub x: u32,
    /// Rectangle origin y, in pixels.
    pub y: u32,
    /// Rectangle width, in pixels.
    pub w: u32,
    /// Rectangle height, in pixels.
    pub h: u32,
    /// Digest of the seeded pattern over the rectangle.
    pub fnv1a64: String,
    /// How many times the workload made the device read this rectangle
    /// (fill, then once per reuse round after swap-in).
    pub reads: u64,
}

/// Parses the daemon's digest log (one JSON object per line; blank lines
/// are ignored).
///
/// # Errors
/// The first line that is not a valid entry, with its line number.
pub fn parse_log(text: &str) -> Result<Vec<DeviceRead>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let r: DeviceRead = serde_json::from_str(l)
                .map_err(|e| format!("device digest log line {}: {e}", i + 1))?;
            if r.fnv1a64.len() != 16 || !r.fnv1a64.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "device digest log line {}: fnv1a64 {:?} is not 16 hex digits",
                    i + 1,
                    r.fnv1a64
                ));
            }
            Ok(r)
        })
        .collect()
}

/// Reads the workload's `device_reads` array.
///
/// # Errors
/// When the field is missing or malformed.
pub fn expected_reads(report: &Value) -> Result<Vec<ExpectedRead>, String> {
    let v = report
        .get("device_reads")
        .filter(|v| !v.is_null())
        .ok_or("missing field device_reads: the workload computed no digests")?;
    serde_json::from_value(v.clone()).map_err(|e| format!("field device_reads: {e}"))
}

/// What the comparison found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Objects whose every device read of the rectangle matched, with at
    /// least as many reads as the workload asked for.
    pub matched_objects: u64,
    /// Device reads compared.
    pub compared_reads: u64,
    /// One message per object that failed (capped by the caller).
    pub failures: Vec<String>,
}

/// Compares the device's reads with the workload's expectations.
///
/// For every expected object: every device read of the same resource and
/// rectangle must carry the expected digest (a read from stale or wrong
/// pages changes it), there must be at least `reads` of them (a missing
/// re-ATTACH makes the device refuse the read, so none is logged), and the
/// last one must match (the read after the last swap-in). Reads of other
/// resources (console framebuffer) and of other rectangles are ignored.
pub fn compare(expected: &[ExpectedRead], log: &[DeviceRead]) -> Comparison {
    let mut c = Comparison::default();
    for e in expected {
        let same: Vec<&DeviceRead> = log
            .iter()
            .filter(|r| {
                r.resource_id == e.resource_id && (r.x, r.y, r.w, r.h) == (e.x, e.y, e.w, e.h)
            })
            .collect();
        c.compared_reads += same.len() as u64;
        let bad: Vec<&&DeviceRead> = same
            .iter()
            .filter(|r| !r.fnv1a64.eq_ignore_ascii_case(&e.fnv1a64))
            .collect();
        let rect = format!("{}x{}+{}+{}", e.w, e.h, e.x, e.y);
        if let Some(first) = bad.first() {
            c.failures.push(format!(
                "object {} (resource {}): {} of {} device reads of {rect} differ from the \
                 written content (first: {} {}, expected {})",
                e.object,
                e.resource_id,
                bad.len(),
                same.len(),
                first.op,
                first.fnv1a64,
                e.fnv1a64
            ));
        } else if (same.len() as u64) < e.reads {
            c.failures.push(format!(
                "object {} (resource {}): the device read {rect} {} times, the workload asked \
                 {} times (a use after swap-in was refused or never reached the device)",
                e.object,
                e.resource_id,
                same.len(),
                e.reads
            ));
        } else {
            c.matched_objects += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(resource_id: u32, op: &str, digest: &str) -> DeviceRead {
        DeviceRead {
            resource_id,
            op: op.to_owned(),
            x: 0,
            y: 0,
            w: 1024,
            h: 768,
            fnv1a64: digest.to_owned(),
        }
    }

    fn expect(resource_id: u32, digest: &str, reads: u64) -> ExpectedRead {
        ExpectedRead {
            object: u64::from(resource_id),
            resource_id,
            x: 0,
            y: 0,
            w: 1024,
            h: 768,
            fnv1a64: digest.to_owned(),
            reads,
        }
    }

    const A: &str = "0123456789abcdef";
    const B: &str = "fedcba9876543210";

    #[test]
    fn test_parse_log_reads_lines() {
        let text = "{\"resource_id\":3,\"op\":\"flush\",\"x\":0,\"y\":0,\"w\":1024,\"h\":768,\"fnv1a64\":\"0123456789abcdef\"}\n\n";

        let log = parse_log(text).expect("valid");

        assert_eq!(log, [read(3, "flush", A)]);
    }

    #[test]
    fn test_parse_log_short_digest_is_rejected() {
        let text = "{\"resource_id\":3,\"op\":\"flush\",\"x\":0,\"y\":0,\"w\":1,\"h\":1,\"fnv1a64\":\"12\"}";

        assert!(parse_log(text).is_err());
    }

    #[test]
    fn test_compare_all_reads_match_passes() {
        let log = [
            read(5, "scanout", A),
            read(5, "flush", A),
            read(9, "flush", B),
        ];

        let c = compare(&[expect(5, A, 2)], &log);

        assert_eq!(c.failures, Vec::<String>::new());
        assert_eq!(c.matched_objects, 1);
        assert_eq!(c.compared_reads, 2);
    }

    #[test]
    fn test_compare_stale_read_after_swap_in_fails() {
        // The first read saw the written content, the one after swap-in
        // read other pages.
        let log = [read(5, "transfer", A), read(5, "transfer", B)];

        let c = compare(&[expect(5, A, 2)], &log);

        assert_eq!(c.failures.len(), 1, "{:?}", c.failures);
        assert_eq!(c.matched_objects, 0);
    }

    #[test]
    fn test_compare_missing_read_after_swap_in_fails() {
        // Only the read at fill time reached the device.
        let log = [read(5, "transfer", A)];

        let c = compare(&[expect(5, A, 2)], &log);

        assert_eq!(c.failures.len(), 1, "{:?}", c.failures);
    }

    #[test]
    fn test_compare_other_rectangles_are_ignored() {
        let mut partial = read(5, "flush", B);
        partial.h = 16;
        let log = [read(5, "flush", A), partial];

        let c = compare(&[expect(5, A, 1)], &log);

        assert!(c.failures.is_empty(), "{:?}", c.failures);
    }

    #[test]
    fn test_expected_reads_missing_field_is_an_error() {
        let r = expected_reads(&serde_json::json!({"objects": 3}));

        assert!(r.is_err());
    }
}
