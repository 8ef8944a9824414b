//! Label sets in a topic: how a record's topic carries a Loki stream's
//! labels, so `{app="api",env="prod"}` can be stored, pruned and selected
//! like any topic.
//!
//! The canonical text form (what [`Labels::to_topic`] writes and a record's
//! topic holds) is:
//! - a plain topic `t` (a valid topic not starting with `{`) means the one
//!   label `{topic="t"}`, so every topic written before label sets existed
//!   keeps its meaning, and a label set whose only label is `topic` is
//!   written as that plain topic;
//! - otherwise `{k1="v1",k2="v2"}`: keys sorted and unique, no spaces, each
//!   key a Prometheus label name (`[A-Za-z_][A-Za-z0-9_]*`), each value in
//!   double quotes with `\"` and `\\` escaped and every byte outside
//!   printable ASCII (space included) written as `\xHH`;
//! - at most [`MAX_TOPIC_BYTES`] bytes in all, like any topic: a label set
//!   whose form is longer is refused ([`LabelError::TooLong`]), never cut.
//!
//! [`Labels::parse_selector`] reads the looser form clients send (Loki's
//! push `labels` field, Prometheus style: any key order, spaces, Go string
//! escapes) into the same [`Labels`].

use crate::{MAX_TOPIC_BYTES, is_valid_topic};

/// The label a plain topic is the value of.
pub const TOPIC_LABEL: &str = "topic";

/// A label set: unique keys, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels {
    pairs: Vec<(String, String)>,
}

/// A label set could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The text is not a label set.
    #[error("bad label set at byte {offset} of {text:?}: {why}")]
    Syntax {
        /// The text, cut to 200 bytes.
        text: String,
        /// Where reading stopped.
        offset: usize,
        /// What was expected.
        why: &'static str,
    },
    /// A key is not a label name.
    #[error("bad label name {name:?}: use letters, digits and _, not starting with a digit")]
    BadName {
        /// The key.
        name: String,
    },
    /// A key appears twice.
    #[error("label {name:?} appears twice in one label set")]
    Duplicate {
        /// The key.
        name: String,
    },
    /// The canonical form is longer than a topic may be.
    #[error(
        "the label set {start}… is {len} bytes written out; a topic holds at most {max}: send fewer or shorter labels"
    )]
    TooLong {
        /// Its first 60 bytes.
        start: String,
        /// Its length.
        len: usize,
        /// [`MAX_TOPIC_BYTES`].
        max: usize,
    },
    /// A label set with no label.
    #[error("an empty label set names no stream: give at least one label")]
    Empty,
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Labels {
    /// A label set of `pairs` (any order); keys must be label names and
    /// unique.
    pub fn new(
        pairs: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Result<Labels, LabelError> {
        let mut pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        for (name, _) in &pairs {
            if !is_label_name(name) {
                return Err(LabelError::BadName { name: name.clone() });
            }
        }
        pairs.sort();
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LabelError::Duplicate {
                name: w[0].0.clone(),
            });
        }
        Ok(Labels { pairs })
    }

    /// The labels a record's topic holds: a canonical `{…}` form read back,
    /// or `{topic="t"}` for a plain topic (and for a `{…}` that does not
    /// parse, which is then a plain topic that happens to start with `{`).
    pub fn from_topic(topic: &[u8]) -> Labels {
        if topic.first() == Some(&b'{')
            && let Ok(text) = std::str::from_utf8(topic)
            && let Ok(labels) = Self::parse_canonical(text)
        {
            return labels;
        }
        Labels {
            pairs: vec![(
                TOPIC_LABEL.to_string(),
                String::from_utf8_lossy(topic).into_owned(),
            )],
        }
    }

    /// The canonical topic form (see the module docs).
    pub fn to_topic(&self) -> Result<String, LabelError> {
        if self.pairs.is_empty() {
            return Err(LabelError::Empty);
        }
        if let [(key, value)] = self.pairs.as_slice()
            && key == TOPIC_LABEL
            && !value.starts_with('{')
            && is_valid_topic(value.as_bytes())
        {
            return Ok(value.clone());
        }
        let mut out = String::with_capacity(64);
        out.push('{');
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            for &b in value.as_bytes() {
                match b {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    0x21..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
            out.push('"');
        }
        out.push('}');
        if out.len() > MAX_TOPIC_BYTES {
            return Err(LabelError::TooLong {
                start: out.chars().take(60).collect(),
                len: out.len(),
                max: MAX_TOPIC_BYTES,
            });
        }
        Ok(out)
    }

    /// The value of label `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.pairs[i].1.as_str())
    }

    /// The labels, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is no label.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Set `name` to `value`, replacing any value it had.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), LabelError> {
        if !is_label_name(name) {
            return Err(LabelError::BadName {
                name: name.to_string(),
            });
        }
        match self.pairs.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => self.pairs[i].1 = value.to_string(),
            Err(i) => self.pairs.insert(i, (name.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Read the canonical form strictly (no spaces, `\xHH` escapes only).
    fn parse_canonical(text: &str) -> Result<Labels, LabelError> {
        let labels = Parser::new(text, Dialect::Canonical).label_set()?;
        Ok(labels)
    }

    /// Read a label set as clients send it: `{job="x", host="y"}` with any
    /// key order, spaces around tokens, and Go string escapes (`\n`, `\t`,
    /// `\"`, `\\`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`, octal `\NNN`) or a
    /// backtick raw string as values.
    pub fn parse_selector(text: &str) -> Result<Labels, LabelError> {
        Parser::new(text, Dialect::Selector).label_set()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Canonical,
    Selector,
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    dialect: Dialect,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, dialect: Dialect) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            dialect,
        }
    }

    fn error(&self, why: &'static str) -> LabelError {
        LabelError::Syntax {
            text: self.text.chars().take(200).collect(),
            offset: self.pos,
            why,
        }
    }

    fn skip_space(&mut self) {
        if self.dialect == Dialect::Selector {
            while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn label_set(&mut self) -> Result<Labels, LabelError> {
        if !self.eat(b'{') {
            return Err(self.error("expected {"));
        }
        let mut pairs = Vec::new();
        if !self.eat(b'}') {
            loop {
                let name = self.name()?;
                if !self.eat(b'=') {
                    return Err(self.error("expected = after a label name"));
                }
                let value = self.value()?;
                pairs.push((name, value));
                if self.eat(b',') {
                    // A trailing comma is fine in a selector.
                    if self.dialect == Dialect::Selector && self.eat(b'}') {
                        break;
                    }
                    continue;
                }
                if self.eat(b'}') {
                    break;
                }
                return Err(self.error("expected , or } after a label value"));
            }
        }
        self.skip_space();
        if self.pos != self.bytes.len() {
            return Err(self.error("unexpected text after }"));
        }
        let labels = Labels::new(pairs)?;
        if self.dialect == Dialect::Canonical
            && labels.to_topic().ok().as_deref() != Some(self.text)
        {
            // Only the one canonical spelling of a label set reads as one,
            // so a topic and its labels map one to one.
            return Err(self.error("not the canonical form"));
        }
        Ok(labels)
    }

    fn name(&mut self) -> Result<String, LabelError> {
        self.skip_space();
        let start = self.pos;
        while self.pos < self.bytes.len()
            && (self.bytes[self.pos].is_ascii_alphanumeric() || self.bytes[self.pos] == b'_')
        {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        if !is_label_name(name) {
            return Err(LabelError::BadName {
                name: name.to_string(),
            });
        }
        Ok(name.to_string())
    }

    fn value(&mut self) -> Result<String, LabelError> {
        self.skip_space();
        match self.bytes.get(self.pos) {
            Some(b'"') => {
                self.pos += 1;
                self.quoted()
            }
            Some(b'`') if self.dialect == Dialect::Selector => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.bytes.len() && self.bytes[self.pos] != b'`' {
                    self.pos += 1;
                }
                if self.pos == self.bytes.len() {
                    return Err(self.error("unterminated ` string"));
                }
                let value = self.text[start..self.pos].to_string();
                self.pos += 1;
                Ok(value)
            }
            _ => Err(self.error("expected a quoted label value")),
        }
    }

    /// After the opening quote: the value, Go escapes decoded, as bytes
    /// that must form UTF-8.
    fn quoted(&mut self) -> Result<String, LabelError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error("unterminated \" string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                b'\n' => return Err(self.error("newline in a label value")),
                _ => {
                    if self.dialect == Dialect::Canonical && !(0x21..=0x7e).contains(&b) {
                        return Err(self.error("raw byte outside printable ASCII"));
                    }
                    out.push(b);
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.error("label value is not UTF-8"))
    }

    fn hex(&mut self, digits: usize) -> Result<u32, LabelError> {
        let end = self.pos + digits;
        let text = self
            .text
            .get(self.pos..end)
            .ok_or_else(|| self.error("short escape"))?;
        let value = u32::from_str_radix(text, 16).map_err(|_| self.error("bad hex escape"))?;
        self.pos = end;
        Ok(value)
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), LabelError> {
        let Some(&c) = self.bytes.get(self.pos) else {
            return Err(self.error("unterminated escape"));
        };
        self.pos += 1;
        let canonical = self.dialect == Dialect::Canonical;
        match c {
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let byte = self.hex(2)? as u8;
                out.push(byte);
            }
            _ if canonical => return Err(self.error("escape not used by the canonical form")),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'\'' => out.push(b'\''),
            b'u' | b'U' => {
                let code = self.hex(if c == b'u' { 4 } else { 8 })?;
                let ch = char::from_u32(code).ok_or_else(|| self.error("bad unicode escape"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            b'0'..=b'7' => {
                let text = self
                    .text
                    .get(self.pos - 1..self.pos + 2)
                    .ok_or_else(|| self.error("short octal escape"))?;
                let value =
                    u8::from_str_radix(text, 8).map_err(|_| self.error("bad octal escape"))?;
                self.pos += 2;
                out.push(value);
            }
            _ => return Err(self.error("unknown escape")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_plain_topic_is_the_topic_label() {
        let labels = Labels::from_topic(b"nginx");
        assert_eq!(labels.get("topic"), Some("nginx"));
        assert_eq!(labels.len(), 1);
        assert_eq!(labels.to_topic().unwrap(), "nginx");
        let only_topic = Labels::new([("topic", "api")]).unwrap();
        assert_eq!(only_topic.to_topic().unwrap(), "api");
    }

    #[test]
    fn label_sets_are_written_sorted_and_escaped() {
        let labels = Labels::new([("job", "my job"), ("app", "a\"b\\c"), ("env", "prod")]).unwrap();
        let topic = labels.to_topic().unwrap();
        assert_eq!(topic, r#"{app="a\"b\\c",env="prod",job="my\x20job"}"#);
        assert!(is_valid_topic(topic.as_bytes()));
        assert_eq!(Labels::from_topic(topic.as_bytes()), labels);
    }

    #[test]
    fn selectors_read_as_clients_send_them() {
        let labels =
            Labels::parse_selector(r#"{ job = "fluent-bit", host="h\u00e9\n" , app=`raw\x`, }"#)
                .unwrap();
        assert_eq!(labels.get("job"), Some("fluent-bit"));
        assert_eq!(labels.get("host"), Some("hé\n"));
        assert_eq!(labels.get("app"), Some("raw\\x"));
        assert!(Labels::parse_selector("{}").unwrap().is_empty());
        for bad in [
            "",
            "job=\"x\"",
            "{job=x}",
            "{job=\"x\"",
            "{1job=\"x\"}",
            "{job=\"x\",job=\"y\"}",
            "{job=\"x\"} tail",
            "{job=\"\\q\"}",
        ] {
            assert!(Labels::parse_selector(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_label_set_too_long_for_a_topic_is_refused() {
        let labels = Labels::new([("app", "x".repeat(300))]).unwrap();
        assert!(matches!(
            labels.to_topic(),
            Err(LabelError::TooLong { len, .. }) if len > MAX_TOPIC_BYTES
        ));
        assert_eq!(Labels::default().to_topic(), Err(LabelError::Empty));
    }

    #[test]
    fn a_topic_that_only_looks_like_labels_stays_a_plain_topic() {
        for topic in [&b"{not-labels}"[..], b"{app=\"x\" }", b"{b=\"1\",a=\"2\"}"] {
            let labels = Labels::from_topic(topic);
            assert_eq!(labels.get("topic").map(str::as_bytes), Some(topic));
        }
    }

    fn label_name() -> impl Strategy<Value = String> {
        "[A-Za-z_][A-Za-z0-9_]{0,8}"
    }

    proptest! {
        /// Any label set that fits reads back from its topic form, and the
        /// form is a valid topic; a selector written from it reads back too.
        #[test]
        fn the_canonical_form_round_trips(
            pairs in proptest::collection::btree_map(label_name(), "\\PC{0,12}", 1..5)
        ) {
            let labels = Labels::new(pairs.clone()).unwrap();
            if let Ok(topic) = labels.to_topic() {
                prop_assert!(is_valid_topic(topic.as_bytes()));
                prop_assert_eq!(Labels::from_topic(topic.as_bytes()), labels.clone());
            }
            let selector = format!(
                "{{{}}}",
                pairs
                    .iter()
                    .map(|(k, v)| format!("{k} = {v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // Rust's {:?} escapes (\u{..}) are not Go's; only check the
            // plain ones.
            if !selector.contains("\\u{") {
                prop_assert_eq!(Labels::parse_selector(&selector).unwrap(), labels);
            }
        }

        /// Nothing a client sends makes the parsers panic.
        #[test]
        fn any_text_parses_or_errs(text in "\\PC{0,64}") {
            let _ = Labels::parse_selector(&text);
            let _ = Labels::from_topic(text.as_bytes());
        }
    }
}
