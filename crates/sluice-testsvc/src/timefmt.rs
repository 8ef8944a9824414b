//! Timestamp formatting in the layouts that real log producers use.
//!
//! Works on microseconds since the Unix epoch (UTC) and appends to a `String`
//! without allocating.

use std::fmt::Write;

/// The timestamp layouts the generator mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsFormat {
    /// `2026-11-21T06:00:00.123Z`
    Rfc3339Millis,
    /// `2026-11-21T06:00:00.123456+00:00`
    Rfc3339Micros,
    /// `2026-11-21 06:00:00,123` (Python `logging` default)
    Python,
    /// `21/Nov/2026:06:00:00 +0000` (nginx/apache `$time_local`)
    Clf,
    /// `1795327200.123` (seconds since the epoch, as zap writes it)
    EpochMillis,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    micros: u32,
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil(us: i64) -> Civil {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        min: sod / 60 % 60,
        sec: sod % 60,
        micros,
    }
}

/// Appends `us` (microseconds since the epoch) to `out` in layout `fmt`.
pub fn write_ts(out: &mut String, us: i64, fmt: TsFormat) {
    let c = civil(us);
    // Writing to a String cannot fail.
    let _ = match fmt {
        TsFormat::Rfc3339Millis => write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.min,
            c.sec,
            c.micros / 1000
        ),
        TsFormat::Rfc3339Micros => write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
            c.year, c.month, c.day, c.hour, c.min, c.sec, c.micros
        ),
        TsFormat::Python => write!(
            out,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.min,
            c.sec,
            c.micros / 1000
        ),
        TsFormat::Clf => write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            c.day,
            MONTHS[(c.month - 1) as usize],
            c.year,
            c.hour,
            c.min,
            c.sec
        ),
        TsFormat::EpochMillis => write!(
            out,
            "{}.{:03}",
            us.div_euclid(1_000_000),
            us.rem_euclid(1_000_000) / 1000
        ),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(us: i64, f: TsFormat) -> String {
        let mut s = String::new();
        write_ts(&mut s, us, f);
        s
    }

    #[test]
    fn known_instants() {
        // 2026-11-21T06:00:00.123456Z
        let base = days_from_civil(2026, 11, 21) * 86_400 + 6 * 3600;
        let us = base * 1_000_000 + 123_456;
        assert_eq!(fmt(us, TsFormat::Rfc3339Millis), "2026-11-21T06:00:00.123Z");
        assert_eq!(
            fmt(us, TsFormat::Rfc3339Micros),
            "2026-11-21T06:00:00.123456+00:00"
        );
        assert_eq!(fmt(us, TsFormat::Python), "2026-11-21 06:00:00,123");
        assert_eq!(fmt(us, TsFormat::Clf), "21/Nov/2026:06:00:00 +0000");
        assert_eq!(fmt(us, TsFormat::EpochMillis), format!("{base}.123"));
        assert_eq!(fmt(0, TsFormat::Rfc3339Millis), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn agrees_with_humantime() {
        use std::time::{Duration, UNIX_EPOCH};
        for secs in [
            0u64,
            951_782_400,
            1_709_251_199,
            1_795_327_200,
            4_102_444_800,
        ] {
            let us = secs as i64 * 1_000_000 + 7_000;
            let t = UNIX_EPOCH + Duration::from_micros(us as u64);
            let want = humantime::format_rfc3339_millis(t).to_string();
            assert_eq!(fmt(us, TsFormat::Rfc3339Millis), want);
        }
    }

    #[test]
    fn days_round_trip() {
        for d in [-1000i64, 0, 59, 60, 365, 11_016, 20_778, 100_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
