//! Request parameters of the Loki read API, read as Loki reads them
//! (grafana/loki `pkg/loghttp/params.go`): GET query strings and POST
//! forms alike, repeated keys kept (`match[]`), times in seconds, ns or
//! RFC 3339, directions in any case.

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use sluice_query::logql::parse_duration_ms;

use crate::error;

/// Every `key=value` of a request, in order: the query string's, then a
/// form body's.
#[derive(Debug, Default, Clone)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Read the query string and, for a form POST, the body.
    pub(crate) fn read(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Form, Response> {
        let bad = |e: serde_urlencoded::de::Error| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the parameters are not a valid form: {e}"),
            )
        };
        let mut pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).map_err(bad)?;
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form && !body.is_empty() {
            let more: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(bad)?;
            pairs.extend(more);
        }
        Ok(Form { pairs })
    }

    /// The first value of `key`, if given and not empty.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `key` as a Loki time, in ns.
    pub(crate) fn time_ns(&self, key: &str) -> Result<Option<u128>, Response> {
        match self.get(key) {
            None => Ok(None),
            Some(text) => parse_time_ns(text)
                .map(Some)
                .map_err(|message| error(StatusCode::BAD_REQUEST, format!("{key}: {message}"))),
        }
    }

    /// `start` and `end` in ns: `end` defaults to now, `start` to `end`
    /// less `since` (default `default_since_ms`).
    pub(crate) fn range_ns(&self, default_since_ms: u64) -> Result<(u128, u128), Response> {
        let end = self.time_ns("end")?.unwrap_or_else(now_ns);
        let since_ms = match self.get("since") {
            None => default_since_ms,
            Some(text) => parse_duration_ms(text)
                .map_err(|m| error(StatusCode::BAD_REQUEST, format!("since: {m}")))?,
        };
        let start = match self.time_ns("start")? {
            Some(start) => start,
            None => end.saturating_sub(u128::from(since_ms) * 1_000_000),
        };
        if end < start {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "end timestamp must not be before or equal to start time",
            ));
        }
        Ok((start, end))
    }

    /// `limit` (default 100), at most `max`.
    pub(crate) fn limit(&self, max: u64) -> Result<u64, Response> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.parse::<u64>() {
                Ok(0) => Err(error(
                    StatusCode::BAD_REQUEST,
                    "limit must be a positive value",
                )),
                Ok(n) if n <= max => Ok(n),
                Ok(n) => Err(error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "limit {n} is over the most sluice returns at once ({max}); page with a smaller limit"
                    ),
                )),
                Err(_) => Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("limit {text:?} is not a whole number"),
                )),
            },
        }
    }

    /// `direction`: backward (the default) or forward, any case.
    pub(crate) fn backward(&self) -> Result<bool, Response> {
        match self
            .get("direction")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("backward") => Ok(true),
            Some("forward") => Ok(false),
            Some(other) => Err(error(
                StatusCode::BAD_REQUEST,
                format!("invalid direction {other:?}: use forward or backward"),
            )),
        }
    }

    /// `step` in ms: float seconds or a Prometheus duration; by default
    /// `max(floor((end − start) / 250 s), 1 s)`, as Loki's.
    pub(crate) fn step_ms(&self, start_ns: u128, end_ns: u128) -> Result<u64, Response> {
        let Some(text) = self.get("step") else {
            let seconds = ((end_ns - start_ns) / 1_000_000_000 / 250).max(1);
            return Ok(u64::try_from(seconds * 1_000).unwrap_or(u64::MAX));
        };
        let ms = match text.parse::<f64>() {
            Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                (seconds * 1000.0).round() as u64
            }
            _ => parse_duration_ms(text)
                .map_err(|m| error(StatusCode::BAD_REQUEST, format!("step: {m}")))?,
        };
        if ms == 0 {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        Ok(ms)
    }
}

/// The `limit` when none is given.
pub(crate) const DEFAULT_LIMIT: u64 = 100;

/// Now, Unix ns.
pub(crate) fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A Loki time: an integer of at most 10 digits is seconds, a longer one
/// ns; a decimal is float seconds; otherwise RFC 3339 (with ns).
pub(crate) fn parse_time_ns(text: &str) -> Result<u128, String> {
    let bad = || {
        format!(
            "cannot parse {text:?} to a valid timestamp: use Unix seconds, Unix ns, float seconds or RFC 3339"
        )
    };
    if text.contains('.') && !text.contains(['T', 't', '-', ':']) {
        let seconds: f64 = text.parse().map_err(|_| bad())?;
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(bad());
        }
        // Loki keeps ms precision here.
        return Ok((seconds * 1000.0).round() as u128 * 1_000_000);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let n: u128 = text.parse().map_err(|_| bad())?;
        if n > u128::from(i64::MAX as u64) {
            return Err(bad());
        }
        return Ok(if text.len() <= 10 {
            n * 1_000_000_000
        } else {
            n
        });
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|_| bad())?;
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .map_err(|_| bad())
}

/// The inclusive ms range of records whose ns times lie in
/// `[start_ns, end_ns)`: a record's ns are its ms × 10⁶. `None` when no
/// whole ms lies in it.
pub(crate) fn ms_range(start_ns: u128, end_ns: u128) -> Option<(u64, u64)> {
    let from = start_ns.div_ceil(1_000_000);
    let to = end_ns.div_ceil(1_000_000).checked_sub(1)?;
    if to < from {
        return None;
    }
    Some((
        u64::try_from(from).unwrap_or(u64::MAX),
        u64::try_from(to).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_loki_reads_them() {
        assert_eq!(parse_time_ns("4000000000"), Ok(4_000_000_000_000_000_000));
        assert_eq!(
            parse_time_ns("1733011200123000000"),
            Ok(1_733_011_200_123_000_000)
        );
        assert_eq!(parse_time_ns("1733011200.5"), Ok(1_733_011_200_500_000_000));
        assert_eq!(
            parse_time_ns("2024-12-01T00:00:00.000000001Z"),
            Ok(1_733_011_200_000_000_001)
        );
        assert!(parse_time_ns("yesterday").is_err());
        assert!(parse_time_ns("").is_err());
        // [start, end) in ns is an inclusive ms range.
        assert_eq!(ms_range(1_000_000, 3_000_000), Some((1, 2)));
        assert_eq!(ms_range(1_000_001, 3_000_001), Some((2, 3)));
        // logcli's next page ends at the last ts + 1 ns: that ms is in.
        assert_eq!(ms_range(0, 5_000_001), Some((0, 5)));
        assert_eq!(ms_range(5_000_000, 5_000_000), None);
    }

    #[test]
    fn directions_steps_and_limits() {
        let form = |q: &str| Form::read(Some(q), &HeaderMap::new(), b"").unwrap();
        assert!(form("direction=BACKWARD").backward().unwrap());
        assert!(!form("direction=Forward").backward().unwrap());
        assert!(form("direction=up").backward().is_err());
        assert_eq!(form("").limit(5000).unwrap(), DEFAULT_LIMIT);
        assert!(form("limit=0").limit(5000).is_err());
        assert!(form("limit=5001").limit(5000).is_err());
        let s = 1_000_000_000u128;
        assert_eq!(form("step=15000ms").step_ms(0, s).unwrap(), 15_000);
        assert_eq!(form("step=1.5").step_ms(0, s).unwrap(), 1_500);
        assert_eq!(form("step=1m").step_ms(0, s).unwrap(), 60_000);
        assert_eq!(form("").step_ms(0, 3_600 * s).unwrap(), 14_000);
        assert_eq!(form("").step_ms(0, 60 * s).unwrap(), 1_000);
        assert!(form("step=0").step_ms(0, s).is_err());
        let f = form("match=%7Ba%3D%22b%22%7D&match%5B%5D=%7Bc%3D%22d%22%7D");
        assert_eq!(f.all("match"), ["{a=\"b\"}"]);
        assert_eq!(f.all("match[]"), ["{c=\"d\"}"]);
    }
}
