//! Parsing of query times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a query's time range starts when none is given: an hour ago.
pub const DEFAULT_FROM: &str = "1h";
/// Where a query's time range ends when none is given.
pub const DEFAULT_TO: &str = "now";

/// A query time in none of the forms [`parse_time_ms`] accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "cannot parse time {value:?}: use a duration ago (5m, 1h30m, 7d), an RFC 3339 time (2026-11-21T06:00:00Z), Unix milliseconds, or now"
)]
pub struct TimeError {
    /// The value given, trimmed.
    pub value: String,
}

/// Parse a query time into Unix milliseconds, relative to `now_ms`.
///
/// Accepted: `now`; a duration meaning that long ago (`5m`, `1h30m`, `7d`);
/// an RFC 3339 timestamp; a plain integer of Unix milliseconds.
pub fn parse_time_ms(value: &str, now_ms: u64) -> Result<u64, TimeError> {
    let value = value.trim();
    let err = || TimeError {
        value: value.to_string(),
    };
    if value.is_empty() {
        return Err(err());
    }
    if value == "now" {
        return Ok(now_ms);
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().map_err(|_| err());
    }
    if let Ok(ago) = humantime::parse_duration(value) {
        return Ok(now_ms.saturating_sub(ago.as_millis() as u64));
    }
    let time = humantime::parse_rfc3339_weak(value).map_err(|_| err())?;
    Ok(time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64)
}

/// Format Unix milliseconds as RFC 3339 with millisecond precision.
pub fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The current time in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_parses() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time_ms("now", now), Ok(now));
        assert_eq!(parse_time_ms("5m", now), Ok(now - 300_000));
        assert_eq!(parse_time_ms("1h30m", now), Ok(now - 5_400_000));
        assert_eq!(parse_time_ms("1234", now), Ok(1234));
        assert_eq!(
            parse_time_ms("2026-11-21T06:00:00Z", now),
            Ok(1_795_240_800_000)
        );
        assert_eq!(format_ms(1_795_240_800_000), "2026-11-21T06:00:00.000Z");
        assert!(parse_time_ms("yesterday-ish", now).is_err());
        assert!(parse_time_ms("", now).is_err());
    }
}
