//! Whole frames through the public API (`frame_len`, `FrameScanner`,
//! `decode_frame`, `FluentFramer`), with the helpers they share:
//!
//! - `frames`: byte for byte as real senders write them (Fluent Bit,
//!   Fluentd, Docker), and what their records become;
//! - `limits`: refused frames, their error messages, the limits, memory;
//! - `properties`: property tests on random values, encodings and bytes;
//! - `records`: events as records, the mapping the ingester and agent share.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value as Json;

use crate::*;

mod frames;
mod limits;
mod properties;
mod records;

/// A msgpack writer choosing encodings explicitly.
#[derive(Default, Clone)]
struct W(Vec<u8>);

impl W {
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// fixstr (short strings).
    fn s(self, s: &str) -> Self {
        assert!(s.len() < 32);
        self.raw(&[0xa0 | s.len() as u8]).raw(s.as_bytes())
    }
    fn str8(self, b: &[u8]) -> Self {
        self.raw(&[0xd9, b.len() as u8]).raw(b)
    }
    fn str32(self, b: &[u8]) -> Self {
        self.raw(&[0xdb])
            .raw(&(b.len() as u32).to_be_bytes())
            .raw(b)
    }
    fn bin8(self, b: &[u8]) -> Self {
        self.raw(&[0xc4, b.len() as u8]).raw(b)
    }
    fn bin32(self, b: &[u8]) -> Self {
        self.raw(&[0xc6])
            .raw(&(b.len() as u32).to_be_bytes())
            .raw(b)
    }
    fn arr(self, n: u8) -> Self {
        self.raw(&[0x90 | n])
    }
    fn map(self, n: u8) -> Self {
        self.raw(&[0x80 | n])
    }
    fn map32(self, n: u32) -> Self {
        self.raw(&[0xdf]).raw(&n.to_be_bytes())
    }
    fn arr32(self, n: u32) -> Self {
        self.raw(&[0xdd]).raw(&n.to_be_bytes())
    }
    /// EventTime as fixext8.
    fn et(self, secs: u32, nanos: u32) -> Self {
        self.raw(&[0xd7, 0])
            .raw(&secs.to_be_bytes())
            .raw(&nanos.to_be_bytes())
    }
    /// EventTime as ext8 of length 8.
    fn et8(self, secs: u32, nanos: u32) -> Self {
        self.raw(&[0xc7, 8, 0])
            .raw(&secs.to_be_bytes())
            .raw(&nanos.to_be_bytes())
    }
    fn u32(self, v: u32) -> Self {
        self.raw(&[0xce]).raw(&v.to_be_bytes())
    }
    fn f64(self, v: f64) -> Self {
        self.raw(&[0xcb]).raw(&v.to_bits().to_be_bytes())
    }
    fn nil(self) -> Self {
        self.raw(&[0xc0])
    }
}

#[derive(Debug, PartialEq)]
struct Got {
    tag: String,
    time_ns: Option<i64>,
    record: Json,
    raw: String,
}

/// Decodes a frame after checking that `frame_len` finds exactly it and
/// that every proper prefix asks for more bytes.
fn decode_with(frame: &[u8], limits: &Limits) -> Result<(FrameInfo, Vec<Got>), FluentError> {
    let mut with_next = frame.to_vec();
    with_next.push(0xc0);
    assert_eq!(frame_len(&with_next, limits), Ok(Some(frame.len())));
    for end in 0..frame.len() {
        assert_eq!(
            frame_len(&frame[..end], limits),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
    let mut got = Vec::new();
    let info = decode_frame(frame, limits, &mut Scratch::new(), |e| {
        let raw = std::str::from_utf8(e.payload)
            .expect("payload is UTF-8")
            .to_owned();
        assert!(!raw.contains('\n'));
        let record: Json = serde_json::from_str(&raw).expect("payload is JSON");
        assert!(record.is_object());
        got.push(Got {
            tag: e.tag.to_owned(),
            time_ns: e.time_ns,
            record,
            raw,
        });
    })?;
    assert_eq!(info.events, got.len() as u64);
    Ok((info, got))
}

fn decode(frame: &[u8]) -> (FrameInfo, Vec<Got>) {
    decode_with(frame, &Limits::default()).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

const T: u32 = 1_700_000_000;
const T_NS: i64 = 1_700_000_000_000_000_000;
