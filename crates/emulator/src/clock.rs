//! Wall-clock helpers: Unix seconds and the timestamp spellings Entra ID and ARM use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

pub fn now_unix() -> u64 {
    unix(SystemTime::now())
}

fn utc(secs: u64) -> jiff::civil::DateTime {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    at.to_zoned(jiff::tz::TimeZone::UTC).datetime()
}

/// `2024-01-02 03:04:05Z`, as in Entra ID error bodies.
pub fn entra_timestamp(secs: u64) -> String {
    utc(secs).strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `2024-01-02T03:04:05.0000000+00:00`, as in ARM bodies.
pub fn arm_timestamp(t: SystemTime) -> String {
    utc(unix(t)).strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(entra_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(entra_timestamp(1_700_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(
            arm_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.0000000+00:00"
        );
    }
}
