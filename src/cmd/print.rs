//! How `sluice query` and `sluice stream` print a record.

use std::io::Write;

/// The record line style the flags ask for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// One JSON object per record: id, time, topic, payload (and truncated).
    pub json: bool,
    /// Prefix the payload with the record's ULID.
    pub ulid: bool,
    /// Prefix the payload with the record's time (RFC 3339).
    pub time: bool,
}

/// Print one record; `line` is a reused buffer.
pub fn record(
    out: &mut impl Write,
    line: &mut Vec<u8>,
    record: &sluice_record::Record<'_>,
    style: Style,
) -> std::io::Result<()> {
    if style.json {
        line.clear();
        let mut object = serde_json::json!({
            "id": record.id.to_string(),
            "time": sluice_query::time::format_ms(record.time_ms()),
            "topic": String::from_utf8_lossy(record.topic),
            "payload": String::from_utf8_lossy(record.payload),
        });
        if record.is_truncated() {
            object["truncated"] = serde_json::Value::Bool(true);
        }
        serde_json::to_writer(&mut *line, &object)?;
        line.push(b'\n');
        return out.write_all(line);
    }
    if style.ulid {
        let mut id = [0u8; 26];
        out.write_all(record.id.array_to_str(&mut id).as_bytes())?;
        out.write_all(b" ")?;
    } else if style.time {
        let time =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.id.timestamp_ms());
        write!(out, "{} ", humantime::format_rfc3339_millis(time))?;
    }
    out.write_all(record.payload)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::{Record, Ulid};

    #[test]
    fn styles() {
        let r = Record {
            id: Ulid::from_parts(1_795_240_800_000, 7),
            flags: 0,
            topic: b"app",
            payload: b"hello",
        };
        let print = |style| {
            let mut out = Vec::new();
            record(&mut out, &mut Vec::new(), &r, style).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(print(Style::default()), "hello\n");
        assert_eq!(
            print(Style {
                ulid: true,
                ..Style::default()
            }),
            format!("{} hello\n", r.id)
        );
        assert_eq!(
            print(Style {
                time: true,
                ..Style::default()
            }),
            "2026-11-21T06:00:00.000Z hello\n"
        );
        let json: serde_json::Value = serde_json::from_str(&print(Style {
            json: true,
            ..Style::default()
        }))
        .unwrap();
        assert_eq!(json["topic"], "app");
        assert_eq!(json["payload"], "hello");
    }
}
