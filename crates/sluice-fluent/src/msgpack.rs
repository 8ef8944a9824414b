//! A minimal, zero-copy msgpack reader and the few writers the crate needs.
//!
//! Every encoding of a type is accepted (a map16 holding one pair, an int64
//! holding 5, a str32 holding "gzip"): only the value matters. Nothing here
//! allocates.

use crate::FluentError;

/// One msgpack value header; str, bin and ext bodies are borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Nil,
    Bool(bool),
    /// Any unsigned encoding (positive fixint, uint8..uint64).
    Uint(u64),
    /// Any signed encoding (negative fixint, int8..int64), even if >= 0.
    Int(i64),
    F32(f32),
    F64(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    /// An array header: that many values follow.
    Array(u32),
    /// A map header: twice that many values follow.
    Map(u32),
    Ext(i8, &'a [u8]),
}

impl Value<'_> {
    /// The type's name, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Uint(_) | Value::Int(_) => "int",
            Value::F32(_) | Value::F64(_) => "float",
            Value::Str(_) => "str",
            Value::Bin(_) => "bin",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Ext(..) => "ext",
        }
    }

    /// The bytes of a str or a bin.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(b) | Value::Bin(b) => Some(b),
            _ => None,
        }
    }
}

/// How the bytes after a type byte are laid out.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// The whole value is `n` bytes after the type byte.
    Fixed(usize),
    /// A big-endian length of `n` bytes, then that many body bytes.
    Blob(usize),
    /// An ext: a length of `n` bytes (0 = fixext), then the type byte, then the body.
    Ext(usize, usize),
    /// A container whose count is in the type byte (`items` values follow).
    FixContainer(u64),
    /// A container with a big-endian count of `n` bytes; `pairs` doubles it.
    Container(usize, bool),
    /// 0xc1, never used.
    Invalid,
}

/// The layout announced by a type byte.
pub(crate) fn shape(b: u8) -> Shape {
    match b {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Shape::Fixed(0),
        0x80..=0x8f => Shape::FixContainer(u64::from(b & 0x0f) * 2),
        0x90..=0x9f => Shape::FixContainer(u64::from(b & 0x0f)),
        0xa0..=0xbf => Shape::Fixed(usize::from(b & 0x1f)),
        0xc1 => Shape::Invalid,
        0xc4 | 0xd9 => Shape::Blob(1),
        0xc5 | 0xda => Shape::Blob(2),
        0xc6 | 0xdb => Shape::Blob(4),
        0xc7 => Shape::Ext(1, 0),
        0xc8 => Shape::Ext(2, 0),
        0xc9 => Shape::Ext(4, 0),
        0xca => Shape::Fixed(4),
        0xcb => Shape::Fixed(8),
        0xcc | 0xd0 => Shape::Fixed(1),
        0xcd | 0xd1 => Shape::Fixed(2),
        0xce | 0xd2 => Shape::Fixed(4),
        0xcf | 0xd3 => Shape::Fixed(8),
        0xd4 => Shape::Ext(0, 1),
        0xd5 => Shape::Ext(0, 2),
        0xd6 => Shape::Ext(0, 4),
        0xd7 => Shape::Ext(0, 8),
        0xd8 => Shape::Ext(0, 16),
        0xdc => Shape::Container(2, false),
        0xdd => Shape::Container(4, false),
        0xde => Shape::Container(2, true),
        0xdf => Shape::Container(4, true),
    }
}

/// A big-endian unsigned integer of `bytes.len()` (at most 8) bytes.
#[inline]
pub(crate) fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// A cursor over a buffer holding msgpack values.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Names the buffer in truncation errors.
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Goes back to an earlier position (one returned by [`pos`](Self::pos)).
    pub(crate) fn rewind(&mut self, pos: usize) {
        debug_assert!(pos <= self.pos);
        self.pos = pos;
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, offset: usize) -> FluentError {
        FluentError::Truncated {
            offset,
            what: self.what,
        }
    }

    /// `n` bytes at `at`, or a truncation error naming `start`.
    #[inline]
    fn take(&self, at: usize, n: usize, start: usize) -> Result<&'a [u8], FluentError> {
        match at.checked_add(n) {
            Some(end) if end <= self.buf.len() => Ok(&self.buf[at..end]),
            _ => Err(self.truncated(start)),
        }
    }

    /// The type byte of the next value, without consuming it.
    #[inline]
    pub(crate) fn peek(&self) -> Result<u8, FluentError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.truncated(self.pos))
    }

    /// Reads the next value header (containers: only the count).
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Value<'a>, FluentError> {
        let start = self.pos;
        let b = self.peek()?;
        let at = start + 1;
        let value = match b {
            0x00..=0x7f => {
                self.pos = at;
                return Ok(Value::Uint(u64::from(b)));
            }
            0xa0..=0xbf => {
                let body = self.take(at, usize::from(b & 0x1f), start)?;
                self.pos = at + body.len();
                return Ok(Value::Str(body));
            }
            0x80..=0x8f => (Value::Map(u32::from(b & 0x0f)), 0),
            0x90..=0x9f => (Value::Array(u32::from(b & 0x0f)), 0),
            0xe0..=0xff => (Value::Int(i64::from(b as i8)), 0),
            0xc0 => (Value::Nil, 0),
            0xc2 => (Value::Bool(false), 0),
            0xc3 => (Value::Bool(true), 0),
            0xc1 => {
                return Err(FluentError::InvalidByte {
                    byte: b,
                    offset: start,
                });
            }
            0xc4..=0xc6 | 0xd9..=0xdb => {
                let n = if b <= 0xc6 {
                    1 << (b - 0xc4)
                } else {
                    1 << (b - 0xd9)
                };
                let len = be(self.take(at, n, start)?) as usize;
                let body = self.take(at + n, len, start)?;
                self.pos = at + n + len;
                return Ok(if b <= 0xc6 {
                    Value::Bin(body)
                } else {
                    Value::Str(body)
                });
            }
            0xc7..=0xc9 => {
                let n = 1 << (b - 0xc7);
                let len = be(self.take(at, n, start)?) as usize;
                let typ = self.take(at + n, 1, start)?[0] as i8;
                let body = self.take(at + n + 1, len, start)?;
                self.pos = at + n + 1 + len;
                return Ok(Value::Ext(typ, body));
            }
            0xd4..=0xd8 => {
                let len = 1 << (b - 0xd4);
                let typ = self.take(at, 1, start)?[0] as i8;
                let body = self.take(at + 1, len, start)?;
                self.pos = at + 1 + len;
                return Ok(Value::Ext(typ, body));
            }
            0xca => {
                let v = be(self.take(at, 4, start)?) as u32;
                (Value::F32(f32::from_bits(v)), 4)
            }
            0xcb => (Value::F64(f64::from_bits(be(self.take(at, 8, start)?))), 8),
            0xcc..=0xcf => {
                let n = 1 << (b - 0xcc);
                (Value::Uint(be(self.take(at, n, start)?)), n)
            }
            0xd0..=0xd3 => {
                let n = 1usize << (b - 0xd0);
                let raw = be(self.take(at, n, start)?);
                // Sign-extend from n bytes.
                let shift = 64 - 8 * n as u32;
                (Value::Int(((raw << shift) as i64) >> shift), n)
            }
            0xdc | 0xde => {
                let n = u32::from(be(self.take(at, 2, start)?) as u16);
                (
                    if b == 0xdc {
                        Value::Array(n)
                    } else {
                        Value::Map(n)
                    },
                    2,
                )
            }
            0xdd | 0xdf => {
                let n = be(self.take(at, 4, start)?) as u32;
                (
                    if b == 0xdd {
                        Value::Array(n)
                    } else {
                        Value::Map(n)
                    },
                    4,
                )
            }
        };
        self.pos = at + value.1;
        Ok(value.0)
    }

    /// Skips one whole value, checking nesting against `max_depth`, given
    /// that the value sits at `depth` (a container there is at `depth`).
    pub(crate) fn skip(&mut self, depth: usize, max_depth: usize) -> Result<(), FluentError> {
        let items = match self.next()? {
            Value::Array(n) => u64::from(n),
            Value::Map(n) => u64::from(n) * 2,
            _ => return Ok(()),
        };
        if depth > max_depth {
            return Err(FluentError::TooDeep { limit: max_depth });
        }
        for _ in 0..items {
            self.skip(depth + 1, max_depth)?;
        }
        Ok(())
    }
}

/// Writes a str header for `len` bytes (smallest encoding).
pub(crate) fn write_str_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, len as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// Writes a str (the bytes as given; callers pass UTF-8).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    write_str_header(out, s.len());
    out.extend_from_slice(s);
}

/// Writes a bin (smallest encoding).
pub(crate) fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    match b.len() {
        0..=0xff => out.extend_from_slice(&[0xc4, b.len() as u8]),
        0x100..=0xffff => {
            out.push(0xc5);
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        }
        n => {
            out.push(0xc6);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(b);
}

/// Writes an unsigned integer (smallest encoding).
pub(crate) fn write_uint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x7f => out.push(v as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Writes an EventTime: fixext8 of type 0, big-endian seconds then nanoseconds.
pub(crate) fn write_event_time(out: &mut Vec<u8>, secs: u32, nanos: u32) {
    out.extend_from_slice(&[0xd7, 0x00]);
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&nanos.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(buf: &[u8]) -> Vec<Value<'_>> {
        let mut r = Reader::new(buf, "the frame");
        let mut out = Vec::new();
        while r.remaining() > 0 {
            out.push(r.next().unwrap());
        }
        out
    }

    #[test]
    fn every_int_encoding_reads_back() {
        let buf = [
            0x05, 0xcc, 0xff, 0xcd, 0x01, 0x00, 0xce, 0, 1, 0, 0, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0,
            0xff, 0xd0, 0x80, 0xd1, 0xff, 0xfe, 0xd2, 0, 0, 0, 5, 0xd3, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xfd,
        ];
        assert_eq!(
            read_all(&buf),
            vec![
                Value::Uint(5),
                Value::Uint(255),
                Value::Uint(256),
                Value::Uint(65536),
                Value::Uint(1 << 32),
                Value::Int(-1),
                Value::Int(-128),
                Value::Int(-2),
                Value::Int(5),
                Value::Int(-3),
            ]
        );
    }

    #[test]
    fn strings_bins_exts_and_containers() {
        let buf = [
            0xa2, b'h', b'i', 0xd9, 1, b'x', 0xda, 0, 1, b'y', 0xdb, 0, 0, 0, 1, b'z', 0xc4, 1, 9,
            0xd7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0xc7, 1, 3, 7, 0xde, 0, 1, 0xdd, 0, 0, 0, 2, 0xc0,
            0xc3,
        ];
        assert_eq!(
            read_all(&buf),
            vec![
                Value::Str(b"hi"),
                Value::Str(b"x"),
                Value::Str(b"y"),
                Value::Str(b"z"),
                Value::Bin(&[9]),
                Value::Ext(0, &[1, 2, 3, 4, 5, 6, 7, 8]),
                Value::Ext(3, &[7]),
                Value::Map(1),
                Value::Array(2),
                Value::Nil,
                Value::Bool(true),
            ]
        );
    }

    #[test]
    fn truncation_and_invalid_bytes_are_errors() {
        for buf in [
            &[0xdb, 0xff, 0xff, 0xff, 0xff][..],
            &[0xa3, b'a'],
            &[0xcf, 0, 0],
            &[0xd7, 0],
        ] {
            let err = Reader::new(buf, "the frame").next().unwrap_err();
            assert!(
                matches!(err, FluentError::Truncated { offset: 0, .. }),
                "{err}"
            );
        }
        let err = Reader::new(&[0xc1], "the frame").next().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid msgpack type byte 0xc1 at offset 0"
        );
    }

    #[test]
    fn writers_match_rmp() {
        for len in [0usize, 31, 32, 255, 256, 65535, 65536] {
            let s = vec![b'a'; len];
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            let mut theirs = Vec::new();
            rmp::encode::write_str(&mut theirs, std::str::from_utf8(&s).unwrap()).unwrap();
            assert_eq!(ours, theirs, "str {len}");
            let mut ours = Vec::new();
            write_bin(&mut ours, &s);
            let mut theirs = Vec::new();
            rmp::encode::write_bin(&mut theirs, &s).unwrap();
            assert_eq!(ours, theirs, "bin {len}");
        }
        for v in [
            0u64,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            write_uint(&mut ours, v);
            let mut theirs = Vec::new();
            rmp::encode::write_uint(&mut theirs, v).unwrap();
            assert_eq!(ours, theirs, "uint {v}");
        }
    }
}
