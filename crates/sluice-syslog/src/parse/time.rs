//! Timestamps: RFC 3339 (RFC 5424's, and rsyslog's in a 3164 header) and
//! the yearless BSD form of RFC 3164.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

use super::num;

const DAY_MS: i64 = 86_400_000;

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to UTC milliseconds.
pub(super) fn rfc3339_ms(b: &[u8]) -> Option<i64> {
    let [
        y1,
        y2,
        y3,
        y4,
        b'-',
        mo1,
        mo2,
        b'-',
        d1,
        d2,
        b'T' | b't',
        h1,
        h2,
        b':',
        mi1,
        mi2,
        b':',
        s1,
        s2,
        rest @ ..,
    ] = b
    else {
        return None;
    };
    let year = num(&[*y1, *y2, *y3, *y4])?;
    let month = num(&[*mo1, *mo2])?;
    let day = num(&[*d1, *d2])?;
    let hour = num(&[*h1, *h2])?;
    let minute = num(&[*mi1, *mi2])?;
    // A leap second is read as the second before it.
    let second = match num(&[*s1, *s2])? {
        60 => 59,
        s => s,
    };
    let mut nanos: i32 = 0;
    let rest = match rest.strip_prefix(b".") {
        Some(frac) => {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            for i in 0..9 {
                nanos = nanos * 10
                    + frac
                        .get(i)
                        .filter(|_| i < n)
                        .map_or(0, |&c| i32::from(c - b'0'));
            }
            &frac[n..]
        }
        None => rest,
    };
    let offset = match rest {
        [b'Z' | b'z'] => Offset::UTC,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = num(&[*h1, *h2])?;
            let m = num(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i32;
            Offset::from_seconds(if *sign == b'-' { -secs } else { secs }).ok()?
        }
        _ => return None,
    };
    let dt = DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        nanos,
    )
    .ok()?;
    Some(offset.to_timestamp(dt).ok()?.as_millisecond())
}

/// `Mmm dd hh:mm:ss[.frac]`: the time, if it names a real date, and the rest.
pub(super) fn bsd_timestamp(b: &[u8], now_ms: i64) -> Option<(Option<i64>, &[u8])> {
    let [m1, m2, m3, b' ', rest @ ..] = b else {
        return None;
    };
    let month = month([*m1, *m2, *m3])?;
    let (day, rest) = match rest {
        [b' ', d @ b'1'..=b'9', b' ', rest @ ..] | [d @ b'1'..=b'9', b' ', rest @ ..] => {
            (d - b'0', rest)
        }
        [d1 @ b'0'..=b'3', d2 @ b'0'..=b'9', b' ', rest @ ..] => {
            ((d1 - b'0') * 10 + d2 - b'0', rest)
        }
        _ => return None,
    };
    let [h1, h2, b':', n1, n2, b':', s1, s2, rest @ ..] = rest else {
        return None;
    };
    let hour = num(&[*h1, *h2])?;
    let minute = num(&[*n1, *n2])?;
    let second = num(&[*s1, *s2])?;
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let rest = match rest.strip_prefix(b".") {
        Some(frac) => {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            &frac[n..]
        }
        None => rest,
    };
    let time = guess_year_ms(
        month,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        now_ms,
    );
    Some((time, rest))
}

fn month(m: [u8; 3]) -> Option<i8> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let m = m.map(|c| c.to_ascii_lowercase());
    MONTHS
        .iter()
        .position(|name| **name == m)
        .map(|i| i as i8 + 1)
}

/// UTC milliseconds of a yearless timestamp: the latest of `now`'s year + 1,
/// its year, and year - 1 that is at most a day after `now`.
fn guess_year_ms(month: i8, day: i8, hour: i8, minute: i8, second: i8, now_ms: i64) -> Option<i64> {
    let now = Timestamp::from_millisecond(now_ms).ok()?;
    let year = Offset::UTC.to_datetime(now).year();
    let latest = now_ms.saturating_add(DAY_MS);
    let second = second.min(59);
    for y in [year + 1, year, year - 1] {
        let Ok(dt) = DateTime::new(y, month, day, hour, minute, second, 0) else {
            continue;
        };
        let Ok(ts) = Offset::UTC.to_timestamp(dt) else {
            continue;
        };
        if ts.as_millisecond() <= latest {
            return Some(ts.as_millisecond());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::parse::tests::{ms, p, rfc3164_parsed};
    use crate::parse::{Parsed, parse};

    #[test]
    fn rfc3164_year_is_guessed_from_now() {
        let new_year = ms("2027-01-01T00:00:30Z");
        assert_eq!(
            parse(b"<13>Dec 31 23:59:59 h a: x", new_year).time_ms,
            Some(ms("2026-12-31T23:59:59Z"))
        );
        // A sender a little ahead of the new year.
        let new_years_eve = ms("2026-12-31T23:59:00Z");
        assert_eq!(
            parse(b"<13>Jan  1 00:00:05 h a: x", new_years_eve).time_ms,
            Some(ms("2027-01-01T00:00:05Z"))
        );
        // Up to a day ahead stays in this year; more goes back a year.
        assert_eq!(
            p(b"<13>Nov 22 11:00:00 h a: x").time_ms,
            Some(ms("2026-11-22T11:00:00Z"))
        );
        assert_eq!(
            p(b"<13>Nov 22 13:00:00 h a: x").time_ms,
            Some(ms("2025-11-22T13:00:00Z"))
        );
        // Feb 29: the nearest leap year if it is next to now, else no time.
        let spring_2029 = ms("2029-03-01T00:00:00Z");
        assert_eq!(
            parse(b"<13>Feb 29 12:00:00 h a: x", spring_2029).time_ms,
            Some(ms("2028-02-29T12:00:00Z"))
        );
        assert_eq!(
            p(b"<13>Feb 29 12:00:00 h a: x"),
            rfc3164_parsed(Some("a"), None, 13)
        );
        assert_eq!(p(b"<13>Feb 30 12:00:00 h a: x").time_ms, None);
        // Month names in any case, a bare day, fractional seconds, a leap second.
        assert_eq!(
            p(b"<13>NOV 5 10:00:00 h a: x").time_ms,
            Some(ms("2026-11-05T10:00:00Z"))
        );
        assert_eq!(
            p(b"<13>nov 05 10:00:00.123 h a: x").time_ms,
            Some(ms("2026-11-05T10:00:00Z"))
        );
        assert_eq!(
            p(b"<13>Jun 30 23:59:60 h a: x").time_ms,
            Some(ms("2026-06-30T23:59:59Z"))
        );
        // Just a timestamp.
        assert_eq!(
            p(b"<13>Nov 21 10:00:00"),
            rfc3164_parsed(None, Some("2026-11-21T10:00:00Z"), 13)
        );
    }

    #[test]
    fn timestamps_that_are_not_timestamps() {
        for frame in [
            &b"<13>Nov 21 24:00:00 h a: x"[..],
            b"<13>Nov 32 10:00:00 h a: x",
            b"<13>Nov 00 10:00:00 h a: x",
            b"<13>Nov 21 10:60:00 h a: x",
            b"<13>Nov 21 10:00:61 h a: x",
            b"<13>Nov 21 10:00 h a: x",
            b"<13>Now 21 10:00:00 h a: x",
            b"<13>Nov  21 10:00:00 h a: x",
            b"<13>Nov 21 10:00:00. h a: x",
            b"<13>Nov 21 10:00:00:h a: x",
            b"<13>myapp: no timestamp",
            b"<13>2026-11-31T10:00:00Z h a: x",
            b"<13>2026-11-21 10:00:00Z h a: x",
            b"<13>1 2026-11-21T10:00:00 h a - - - no zone",
            b"<13>1 2026-11-21T10:00:00+0100 h a - - - bad zone",
            b"<13>1 2026-11-21T10:00:00+24:00 h a - - - bad zone",
            b"<13>1 2026-11-21T10:00:00.Z h a - - - empty fraction",
            b"<13>1 2026-02-29T10:00:00Z h a - - - not a leap year",
            b"<13>1 26-11-21T10:00:00Z h a - - - short year",
        ] {
            assert_eq!(
                p(frame),
                Parsed::UNKNOWN,
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
        // Valid edge cases.
        assert_eq!(
            p(b"<13>1 2026-11-21t10:00:00.1234567891234z h a - - -").time_ms,
            Some(ms("2026-11-21T10:00:00.123Z"))
        );
        assert_eq!(
            p(b"<13>1 2016-12-31T23:59:60Z h a - - -").time_ms,
            Some(ms("2016-12-31T23:59:59Z"))
        );
        assert_eq!(
            p(b"<13>1 0001-01-01T00:00:00+23:59 h a - - -").time_ms,
            Some(ms("0000-12-31T00:01:00Z"))
        );
    }

    proptest! {
        #[test]
        fn rfc3339_agrees_with_jiff(
            (y, mo, d) in (0i16..=9999, 1i8..=12, 1i8..=31),
            (h, mi, s) in (0i8..24, 0i8..60, 0i8..60),
            frac in proptest::option::of(proptest::collection::vec(b'0'..=b'9', 1..10)),
            offset in proptest::option::of((any::<bool>(), 0u32..24, 0u32..60)),
        ) {
            let mut text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            if let Some(frac) = &frac {
                text.push('.');
                text.push_str(std::str::from_utf8(frac).unwrap());
            }
            match offset {
                None => text.push('Z'),
                Some((neg, oh, om)) => text.push_str(&format!("{}{oh:02}:{om:02}", if neg { '-' } else { '+' })),
            }
            let jiff = text.parse::<Timestamp>().ok().map(|t| t.as_millisecond());
            prop_assert_eq!(rfc3339_ms(text.as_bytes()), jiff, "{}", text);
        }
    }
}
