//! Elasticsearch `_bulk` made records, and the bulk response.
//!
//! The request is NDJSON: an action line, `{"create":{"_index":"x"}}` or
//! `{"index":{…}}` (`_type`, `_id`, `pipeline` and the like are ignored),
//! then the document on the next line. `delete` (no document) and `update`
//! (a document that is skipped) get a failed item each; any other action
//! refuses the whole request, as Elasticsearch does. Blank lines are
//! skipped.
//!
//! The mapping to records:
//! - **topic**: the action's `_index`, else the index of the URL
//!   (`/<index>/_bulk`); an item with neither, or with a name that cannot
//!   be a topic, fails with status 400.
//! - **payload**: the first of [`BulkConfig::message_fields`] the document
//!   has at its top level (its text if a string, its JSON otherwise), else
//!   the whole document line as sent; cut at the line limit and flagged.
//! - **time**: the first of [`BulkConfig::time_fields`] the document has:
//!   an RFC 3339 time, a date and time without offset (UTC), a date, or a
//!   number of epoch milliseconds (Elasticsearch's default
//!   `strict_date_optional_time||epoch_millis`), clamped a minute ahead;
//!   the arrival time when missing or unreadable.
//!
//! The response ([`write_response`]) is compact JSON with one item per
//! action, in order, each keyed by its action: Fluent Bit scans a long
//! response for the exact bytes `"errors":false,"items":[`, and Beats read
//! each item's `status`.

use std::borrow::Cow;

use serde::Deserialize;
use sluice_record::{Ulid, Unstamped, clamp_time_ms, is_valid_topic};

use crate::{
    Limits, PushError, PushStats, clean_line,
    encoding::{self, ContentEncoding},
    error::cut,
};

/// The message fields tried by default: Filebeat's and Vector's `message`,
/// then Fluent Bit's usual `log`, then `msg`.
pub const DEFAULT_MESSAGE_FIELDS: &[&str] = &["message", "log", "msg"];
/// The time fields tried by default: Filebeat's and Fluent Bit's
/// `@timestamp`, then Vector's `timestamp`.
pub const DEFAULT_TIME_FIELDS: &[&str] = &["@timestamp", "timestamp"];
/// The version `GET /` reports: Beats parse it, and refuse a server older
/// than themselves unless told otherwise.
pub const REPORTED_VERSION: &str = "8.17.0";
/// The exact bytes a successful response starts with, after `{"took":N,`.
pub const OK_PREFIX: &str = "\"errors\":false,\"items\":[";

/// Which document fields become the line and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkConfig {
    /// Top-level fields tried in order for the line.
    pub message_fields: Vec<String>,
    /// Top-level fields tried in order for the time.
    pub time_fields: Vec<String>,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            message_fields: DEFAULT_MESSAGE_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            time_fields: DEFAULT_TIME_FIELDS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `create`.
    Create,
    /// `index`.
    Index,
    /// `update`: not supported, its item fails.
    Update,
    /// `delete`: not supported, its item fails.
    Delete,
}

impl Action {
    /// The action's name, which keys its response item.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Index => "index",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One action's outcome, for the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    /// The action.
    pub action: Action,
    /// The index (topic) it named, if any.
    pub index: String,
    /// The record's id, or why the item failed.
    pub outcome: Result<Ulid, ItemError>,
}

/// Why one item failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// Its HTTP status (400: Beats drop it, and do not retry).
    pub status: u16,
    /// Elasticsearch's error type.
    pub kind: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl ItemError {
    fn new(kind: &'static str, reason: String) -> ItemError {
        ItemError {
            status: 400,
            kind,
            reason,
        }
    }
}

#[derive(Deserialize)]
struct ActionMeta {
    #[serde(rename = "_index")]
    index: Option<String>,
}

/// Decode a `_bulk` body and hand each document to `emit` as a record;
/// `emit` returns the id it gave it. `path_index` is the index the URL
/// names. On error, discard what `emit` got.
#[allow(clippy::too_many_arguments)]
pub fn decode(
    encoding: ContentEncoding,
    body: &[u8],
    path_index: Option<&str>,
    config: &BulkConfig,
    limits: &Limits,
    now_ms: u64,
    emit: &mut dyn FnMut(Unstamped<'_>) -> Ulid,
) -> Result<(Vec<BulkItem>, PushStats), PushError> {
    if body.len() > limits.max_body_bytes {
        return Err(PushError::BodyTooLarge {
            len: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let body = encoding::decode(encoding, body, limits.max_decompressed_bytes)?;
    // Every action takes at least one line: count them before any item
    // is allocated.
    let lines = memchr::memchr_iter(b'\n', &body).count() + 1;
    if lines > limits.max_entries.saturating_mul(2).saturating_add(1) {
        return Err(PushError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    let mut items = Vec::new();
    let mut stats = PushStats::default();
    let mut scratch = Vec::new();
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
    while let Some((number, line)) = lines.next() {
        let (action, index) = parse_action(number, line)?;
        if items.len() >= limits.max_entries {
            return Err(PushError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let index = index
            .or_else(|| path_index.map(str::to_string))
            .unwrap_or_default();
        let source = match action {
            Action::Delete => None,
            _ => Some(lines.next().ok_or_else(|| PushError::BadBulk {
                line: number,
                why: format!("the {} action has no document line after it", action.name()),
            })?),
        };
        let outcome = match (action, source) {
            (Action::Create | Action::Index, Some((_, doc))) => document(
                &index,
                doc,
                config,
                limits,
                now_ms,
                &mut scratch,
                &mut stats,
                emit,
            ),
            _ => Err(ItemError::new(
                "illegal_argument_exception",
                format!(
                    "sluice takes only create and index actions, not {}",
                    action.name()
                ),
            )),
        };
        items.push(BulkItem {
            action,
            index,
            outcome,
        });
    }
    Ok((items, stats))
}

/// An action line: its action and `_index`.
fn parse_action(number: usize, line: &[u8]) -> Result<(Action, Option<String>), PushError> {
    let bad = |why: String| PushError::BadBulk { line: number, why };
    let map: std::collections::BTreeMap<Cow<'_, str>, serde::de::IgnoredAny> =
        serde_json::from_slice(line)
            .map_err(|err| bad(format!("malformed action/metadata line: {err}")))?;
    let mut keys = map.keys();
    let (Some(name), None) = (keys.next(), keys.next()) else {
        return Err(bad(format!(
            "an action line holds one action, not {}",
            map.len()
        )));
    };
    let action = match name.as_ref() {
        "create" => Action::Create,
        "index" => Action::Index,
        "update" => Action::Update,
        "delete" => Action::Delete,
        other => return Err(bad(format!("unknown action {:?}", cut(other, 40)))),
    };
    // Read again for the index (a few bytes, owned).
    #[derive(Deserialize)]
    struct Line {
        #[serde(alias = "create", alias = "index", alias = "update", alias = "delete")]
        meta: ActionMeta,
    }
    let meta: Line = serde_json::from_slice(line)
        .map_err(|err| bad(format!("malformed action/metadata line: {err}")))?;
    let index = meta.meta.index;
    Ok((action, index))
}

/// One document made a record.
#[allow(clippy::too_many_arguments)]
fn document(
    index: &str,
    doc: &[u8],
    config: &BulkConfig,
    limits: &Limits,
    now_ms: u64,
    scratch: &mut Vec<u8>,
    stats: &mut PushStats,
    emit: &mut dyn FnMut(Unstamped<'_>) -> Ulid,
) -> Result<Ulid, ItemError> {
    if index.is_empty() {
        return Err(ItemError::new(
            "action_request_validation_exception",
            "index is missing: name it in the action's _index or the URL".into(),
        ));
    }
    if !is_valid_topic(index.as_bytes()) || index.starts_with('{') {
        return Err(ItemError::new(
            "invalid_index_name_exception",
            format!(
                "index {:?} cannot be a topic: use 1 to 255 printable ASCII bytes, no spaces, not starting with {{",
                cut(index, 60)
            ),
        ));
    }
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(doc).map_err(|err| {
            ItemError::new(
                "document_parsing_exception",
                format!("the document is not a JSON object: {err}"),
            )
        })?;
    let message = config
        .message_fields
        .iter()
        .find_map(|name| fields.get(name).filter(|v| !v.is_null()));
    let time = config
        .time_fields
        .iter()
        .find_map(|name| fields.get(name))
        .and_then(parse_time)
        .map_or(now_ms, |ms| clamp_time_ms(ms, now_ms));
    let text;
    let line: &[u8] = match message {
        Some(serde_json::Value::String(s)) => s.as_bytes(),
        Some(other) => {
            text = other.to_string();
            text.as_bytes()
        }
        None => doc.trim_ascii(),
    };
    let (payload, flags, multiline) = clean_line(line, limits.max_line_bytes, scratch);
    stats.records += 1;
    stats.payload_bytes += payload.len() as u64;
    stats.truncated += u64::from(flags & sluice_record::FLAG_TRUNCATED != 0);
    stats.multiline += u64::from(multiline);
    Ok(emit(Unstamped {
        topic: index.as_bytes(),
        time_ms: time,
        flags,
        payload,
    }))
}

/// A document's time field in milliseconds since 1970, if it reads as one.
pub fn parse_time(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse().ok();
            }
            if let Ok(ts) = s.parse::<jiff::Timestamp>() {
                return u64::try_from(ts.as_millisecond()).ok();
            }
            let civil = s
                .parse::<jiff::civil::DateTime>()
                .or_else(|_| {
                    s.parse::<jiff::civil::Date>()
                        .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
                })
                .ok()?;
            let ts = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
            u64::try_from(ts.as_millisecond()).ok()
        }
        _ => None,
    }
}

/// The bulk response, compact: `{"took":N,"errors":false,"items":[…]}`.
pub fn write_response(took_ms: u64, items: &[BulkItem], out: &mut Vec<u8>) {
    use std::io::Write;
    let errors = items.iter().any(|item| item.outcome.is_err());
    let _ = write!(out, "{{\"took\":{took_ms},\"errors\":{errors},\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let index = serde_json::to_string(&item.index).unwrap_or_else(|_| "\"\"".into());
        let name = item.action.name();
        let _ = match &item.outcome {
            Ok(id) => write!(
                out,
                "{{\"{name}\":{{\"_index\":{index},\"_id\":\"{id}\",\"_version\":1,\"result\":\"created\",\"status\":201}}}}"
            ),
            Err(err) => {
                let reason = serde_json::to_string(&err.reason).unwrap_or_else(|_| "\"\"".into());
                write!(
                    out,
                    "{{\"{name}\":{{\"_index\":{index},\"status\":{},\"error\":{{\"type\":\"{}\",\"reason\":{reason}}}}}}}",
                    err.status, err.kind
                )
            }
        };
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests;
