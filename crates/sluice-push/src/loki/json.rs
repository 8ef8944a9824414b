//! Loki's JSON push body, read by serde visitors that count entries,
//! labels and metadata pairs as they reach them, so a limit refuses a body
//! before the vector it guards grows past it.
//!
//! ```json
//! {"streams":[{"stream":{"job":"x"},"values":[["<ns as a string>","line"],
//!                                             ["<ns>","line",{"trace_id":"…"}]]}]}
//! ```
//! The timestamp must be a string (Loki answers 400 to a number); the
//! optional third element is a flat object of strings (structured
//! metadata). Unknown keys are ignored; `stream` may come after `values`.

use std::{borrow::Cow, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{Limits, PushError};

/// A stream as read: its labels and entries, borrowing from the body where
/// no escape had to be undone.
#[derive(Debug, Default)]
pub(crate) struct JsonStream<'de> {
    pub labels: Vec<(Cow<'de, str>, Cow<'de, str>)>,
    pub entries: Vec<JsonEntry<'de>>,
}

/// One entry as read.
#[derive(Debug)]
pub(crate) struct JsonEntry<'de> {
    pub ts: Cow<'de, str>,
    pub line: Cow<'de, str>,
    /// Structured metadata pairs (dropped, counted).
    pub metadata: usize,
}

/// What is left of the request's limits as the visitors go.
struct Budget {
    limits: Limits,
    entries: usize,
    pairs: usize,
    /// A limit error, kept so that it reaches the caller as itself rather
    /// than as serde's text.
    over: Option<PushError>,
}

impl Budget {
    fn take_entry<E: de::Error>(&mut self) -> Result<(), E> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.fail(PushError::TooManyEntries {
                limit: self.limits.max_entries,
            }));
        }
        Ok(())
    }

    fn take_pair<E: de::Error>(&mut self) -> Result<(), E> {
        self.pairs += 1;
        if self.pairs > self.limits.max_metadata_pairs() {
            return Err(self.fail(PushError::TooManyMetadata {
                limit: self.limits.max_metadata_pairs(),
            }));
        }
        Ok(())
    }

    fn fail<E: de::Error>(&mut self, err: PushError) -> E {
        let text = err.to_string();
        self.over = Some(err);
        E::custom(text)
    }
}

/// Read the body's streams within `limits`.
pub(crate) fn parse<'de>(
    body: &'de [u8],
    limits: &Limits,
) -> Result<Vec<JsonStream<'de>>, PushError> {
    let mut budget = Budget {
        limits: *limits,
        entries: 0,
        pairs: 0,
        over: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = Request(&mut budget)
        .deserialize(&mut de)
        .and_then(|streams| {
            de.end()?;
            Ok(streams)
        });
    match read {
        Ok(streams) => Ok(streams),
        Err(err) => Err(budget.over.take().unwrap_or(PushError::BadJson {
            why: err.to_string(),
        })),
    }
}

/// A string, borrowed when it can be.
struct Str;

impl<'de> DeserializeSeed<'de> for Str {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Str {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// `{"streams": [...]}`.
struct Request<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Request<'_> {
    type Value = Vec<JsonStream<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Request<'_> {
    type Value = Vec<JsonStream<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with \"streams\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut streams = None;
        while let Some(key) = map.next_key_seed(Str)? {
            if key == "streams" {
                streams = Some(map.next_value_seed(Streams(&mut *self.0))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        streams.ok_or_else(|| de::Error::missing_field("streams"))
    }
}

struct Streams<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Streams<'_> {
    type Value = Vec<JsonStream<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Streams<'_> {
    type Value = Vec<JsonStream<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of streams")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut streams = Vec::new();
        while let Some(stream) = seq.next_element_seed(Stream(&mut *self.0))? {
            streams.push(stream);
            // A stream costs a slot like an entry, so `[{},{},…]` is
            // bounded too.
            if streams.len() > self.0.limits.max_entries {
                let limit = self.0.limits.max_entries;
                return Err(self.0.fail(PushError::TooManyEntries { limit }));
            }
        }
        Ok(streams)
    }
}

struct Stream<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Stream<'_> {
    type Value = JsonStream<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Stream<'_> {
    type Value = JsonStream<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stream object with \"stream\" and \"values\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut stream = JsonStream::default();
        let mut seen_labels = false;
        while let Some(key) = map.next_key_seed(Str)? {
            match key.as_ref() {
                "stream" => {
                    stream.labels = map.next_value_seed(LabelMap(&mut *self.0))?;
                    seen_labels = true;
                }
                "values" => stream.entries = map.next_value_seed(Entries(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_labels {
            return Err(de::Error::missing_field("stream"));
        }
        Ok(stream)
    }
}

/// `{"k": "v", ...}`, at most `max_labels` pairs.
struct LabelMap<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for LabelMap<'_> {
    type Value = Vec<(Cow<'de, str>, Cow<'de, str>)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LabelMap<'_> {
    type Value = Vec<(Cow<'de, str>, Cow<'de, str>)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of string labels")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(key) = map.next_key_seed(Str)? {
            let value = map.next_value_seed(Str)?;
            pairs.push((key, value));
            if pairs.len() > self.0.limits.max_labels {
                let stream = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(",");
                return Err(self.0.fail(PushError::TooManyLabels {
                    stream: crate::error::cut(&format!("{{{stream}…}}"), 200),
                    count: pairs.len(),
                    limit: self.0.limits.max_labels,
                }));
            }
        }
        Ok(pairs)
    }
}

struct Entries<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = Vec<JsonEntry<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = Vec<JsonEntry<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of [timestamp, line] entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element_seed(Entry(&mut *self.0))? {
            self.0.take_entry::<A::Error>()?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

struct Entry<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = JsonEntry<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = JsonEntry<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry [\"<ns>\", \"line\"] or [\"<ns>\", \"line\", {metadata}]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ts = seq
            .next_element_seed(Str)?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let line = seq
            .next_element_seed(Str)?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let metadata = seq.next_element_seed(Metadata(&mut *self.0))?.unwrap_or(0);
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok(JsonEntry { ts, line, metadata })
    }
}

/// A flat object of structured metadata: counted, not kept.
struct Metadata<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Metadata<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Metadata<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of structured metadata")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = 0;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<IgnoredAny>()?;
            self.0.take_pair::<A::Error>()?;
            pairs += 1;
        }
        Ok(pairs)
    }
}
