//! UTC timestamps for run directory names (no date crate needed).

use std::time::{SystemTime, UNIX_EPOCH};

/// Converts days since 1970-01-01 to a (year, month, day) civil date
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is 1..=31 and month 1..=12 by construction.
    (year, month as u32, day as u32)
}

/// Formats seconds since the epoch as `YYYYMMDD-HHMMSS` (UTC).
pub fn stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current UTC time as `YYYYMMDD-HHMMSS`.
pub fn now_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    stamp(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stamp_known_instant() {
        // 2026-11-21 20:16:04 UTC.
        assert_eq!(stamp(1_795_292_164), "20261121-201604");
    }

    #[test]
    fn test_stamp_leap_day() {
        // 2024-02-29 00:00:00 UTC.
        assert_eq!(stamp(1_709_164_800), "20240229-000000");
    }
}
