//! The crate's msgpack layer, a thin one over `rmp`: a zero-copy reader of
//! value headers, the extent of a value from its header alone (for the frame
//! scanner), and the few writers the crate needs.
//!
//! rmp classifies every type byte ([`Marker::from_u8`]) and reads every
//! header (lengths, counts, numbers, ext types) through its slice reader
//! [`Bytes`]. What is left here is what rmp does not do: borrowing a str,
//! bin or ext body from the buffer once rmp has read its length, knowing how
//! big a value is before all of its bytes have arrived, and turning rmp's
//! errors into the crate's (a header or body running past the buffer is
//! [`FluentError::Truncated`]).
//!
//! [`Bytes`] rather than `&[u8]` through `std::io::Read`: the same reads
//! without a `std::io::Error` in every result; the decoder was faster so
//! when this was chosen (BENCHMARKS.md, "Design measurements").
//!
//! Every encoding of a type is accepted (a map16 holding one pair, an int64
//! holding 5, a str32 holding "gzip"): only the value matters. Nothing here
//! allocates.

use rmp::Marker;
use rmp::decode::{self, Bytes};
use rmp::encode;

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

/// Takes the first `len` bytes of `rd` (a body whose header rmp just
/// read), borrowed; `None` if they run past its end.
#[inline]
fn body<'a>(rd: &mut Bytes<'a>, len: u32) -> Option<&'a [u8]> {
    let (body, rest) = rd.remaining_slice().split_at_checked(len as usize)?;
    *rd = Bytes::new(rest);
    Some(body)
}

/// The value whose header, longer than its marker, starts `rd`: read by
/// rmp, marker included, and the body borrowed. `None` if it runs past the
/// end of `rd` (rmp's only failure here: the marker is already matched).
#[inline]
fn header<'a>(marker: Marker, rd: &mut Bytes<'a>) -> Option<Value<'a>> {
    Some(match marker {
        Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => {
            Value::Uint(decode::read_int(rd).ok()?)
        }
        Marker::I8 | Marker::I16 | Marker::I32 | Marker::I64 => {
            Value::Int(decode::read_int(rd).ok()?)
        }
        Marker::F32 => Value::F32(decode::read_f32(rd).ok()?),
        Marker::F64 => Value::F64(decode::read_f64(rd).ok()?),
        Marker::Str8 | Marker::Str16 | Marker::Str32 => {
            let len = decode::read_str_len(rd).ok()?;
            Value::Str(body(rd, len)?)
        }
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
            let len = decode::read_bin_len(rd).ok()?;
            Value::Bin(body(rd, len)?)
        }
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => {
            let meta = decode::read_ext_meta(rd).ok()?;
            Value::Ext(meta.typeid, body(rd, meta.size)?)
        }
        Marker::Array16 | Marker::Array32 => Value::Array(decode::read_array_len(rd).ok()?),
        Marker::Map16 | Marker::Map32 => Value::Map(decode::read_map_len(rd).ok()?),
        // One-byte headers (and 0xc1): see `Reader::next`.
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::Null
        | Marker::True
        | Marker::False
        | Marker::FixMap(_)
        | Marker::FixArray(_)
        | Marker::FixStr(_)
        | Marker::Reserved => return None,
    })
}

/// A cursor over a buffer holding msgpack values.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    /// What is left to read: a suffix of `buf`.
    rest: &'a [u8],
    /// Names the buffer in truncation errors.
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader {
            buf,
            rest: buf,
            what,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.buf.len() - self.rest.len()
    }

    /// Goes back to an earlier position (one returned by [`pos`](Self::pos)).
    pub(crate) fn rewind(&mut self, pos: usize) {
        debug_assert!(pos <= self.pos());
        self.rest = &self.buf[pos..];
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Reads the next value header (containers: only the count).
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Value<'a>, FluentError> {
        let truncated = || FluentError::Truncated {
            offset: self.pos(),
            what: self.what,
        };
        let Some((&byte, after)) = self.rest.split_first() else {
            return Err(truncated());
        };
        let mut rd = Bytes::new(after);
        let value = match Marker::from_u8(byte) {
            // Values the marker holds.
            Marker::FixPos(v) => Value::Uint(u64::from(v)),
            Marker::FixNeg(v) => Value::Int(i64::from(v)),
            Marker::Null => Value::Nil,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixMap(n) => Value::Map(u32::from(n)),
            Marker::FixArray(n) => Value::Array(u32::from(n)),
            Marker::FixStr(len) => Value::Str(body(&mut rd, u32::from(len)).ok_or_else(truncated)?),
            Marker::Reserved => {
                return Err(FluentError::InvalidByte {
                    byte,
                    offset: self.pos(),
                });
            }
            // The rest: rmp reads the header, marker included.
            marker => {
                rd = Bytes::new(self.rest);
                header(marker, &mut rd).ok_or_else(truncated)?
            }
        };
        self.rest = rd.remaining_slice();
        Ok(value)
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

/// How far a value reaches, as its header tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extent {
    /// Anything but an array or a map: the whole value is this many bytes,
    /// its header included.
    Scalar(u64),
    /// An array or a map: a header of `header` bytes, then `items` values
    /// (twice the count for a map).
    Container { header: u64, items: u64 },
}

/// The extent of the value that starts `buf`, from its header alone: the
/// body need not be there yet (a str32 announcing 4 GiB is measured from its
/// 5 header bytes), nor the bytes of a number. `Ok(None)` while the header
/// is incomplete; `Err(byte)` for a byte no value starts with (0xc1).
pub(crate) fn extent(buf: &[u8]) -> Result<Option<Extent>, u8> {
    let Some(&byte) = buf.first() else {
        return Ok(None);
    };
    let mut rd = Bytes::new(buf);
    // Bytes rmp consumed: the header.
    let used = |rd: Bytes<'_>| (buf.len() - rd.remaining_slice().len()) as u64;
    Ok(Some(match Marker::from_u8(byte) {
        Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
            Extent::Scalar(1)
        }
        // Fixed-size numbers are measured before their bytes arrive, which
        // rmp cannot do: it reads them whole.
        Marker::U8 | Marker::I8 => Extent::Scalar(2),
        Marker::U16 | Marker::I16 => Extent::Scalar(3),
        Marker::U32 | Marker::I32 | Marker::F32 => Extent::Scalar(5),
        Marker::U64 | Marker::I64 | Marker::F64 => Extent::Scalar(9),
        Marker::FixStr(len) => Extent::Scalar(1 + u64::from(len)),
        Marker::Str8 | Marker::Str16 | Marker::Str32 => match decode::read_str_len(&mut rd) {
            Ok(len) => Extent::Scalar(used(rd) + u64::from(len)),
            Err(_) => return Ok(None),
        },
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => match decode::read_bin_len(&mut rd) {
            Ok(len) => Extent::Scalar(used(rd) + u64::from(len)),
            Err(_) => return Ok(None),
        },
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => match ext_extent(buf) {
            Some(len) => Extent::Scalar(len),
            None => return Ok(None),
        },
        Marker::FixArray(n) => Extent::Container {
            header: 1,
            items: u64::from(n),
        },
        Marker::FixMap(n) => Extent::Container {
            header: 1,
            items: u64::from(n) * 2,
        },
        Marker::Array16 | Marker::Array32 => match decode::read_array_len(&mut rd) {
            Ok(n) => Extent::Container {
                header: used(rd),
                items: u64::from(n),
            },
            Err(_) => return Ok(None),
        },
        Marker::Map16 | Marker::Map32 => match decode::read_map_len(&mut rd) {
            Ok(n) => Extent::Container {
                header: used(rd),
                items: u64::from(n) * 2,
            },
            Err(_) => return Ok(None),
        },
        Marker::Reserved => return Err(byte),
    }))
}

/// The extent of the ext that starts `buf`. rmp reads an ext's length
/// together with the type byte that follows it; the type does not change
/// the extent, so rmp is given a stand-in for it: a declared length is
/// judged as soon as it has arrived, as for a str or a bin.
fn ext_extent(buf: &[u8]) -> Option<u64> {
    // The longest header is ext32: a marker, 4 length bytes, the type.
    let mut head = [0u8; 6];
    let have = buf.len().min(5);
    head[..have].copy_from_slice(&buf[..have]);
    // One stand-in byte. While the length is incomplete, rmp reads the
    // stand-in as part of it and then runs out of bytes: `None`.
    let mut rd = Bytes::new(&head[..=have]);
    let meta = decode::read_ext_meta(&mut rd).ok()?;
    Some((have + 1 - rd.remaining_slice().len()) as u64 + u64::from(meta.size))
}

// Writers. rmp writes to a `Vec` through `std::io::Write`, which cannot
// fail (the `Vec` grows or the process aborts).
const GROWS: &str = "writing to a Vec cannot fail";

/// Writes a str (the bytes as given: callers pass UTF-8, except for an ack,
/// which echoes whatever chunk bytes the sender sent).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    encode::write_str_len(out, s.len() as u32).expect(GROWS);
    out.extend_from_slice(s);
}

/// Writes a bin.
pub(crate) fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    encode::write_bin(out, b).expect(GROWS);
}

/// Writes an unsigned integer.
pub(crate) fn write_uint(out: &mut Vec<u8>, v: u64) {
    encode::write_uint(out, v).expect(GROWS);
}

pub(crate) fn write_bool(out: &mut Vec<u8>, v: bool) {
    encode::write_bool(out, v).expect(GROWS);
}

/// Writes an array header for `n` values.
pub(crate) fn write_array_len(out: &mut Vec<u8>, n: u32) {
    encode::write_array_len(out, n).expect(GROWS);
}

/// Writes a map header for `n` pairs.
pub(crate) fn write_map_len(out: &mut Vec<u8>, n: u32) {
    encode::write_map_len(out, n).expect(GROWS);
}

/// Writes an array32 header whose count is not known yet, and returns
/// where the count goes (for [`patch_array32`]). rmp would choose the
/// smallest header for the count it is given; this one must keep its size.
pub(crate) fn reserve_array32(out: &mut Vec<u8>) -> usize {
    out.push(Marker::Array32.to_u8());
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

/// Sets the count of the array32 header reserved at `at`.
pub(crate) fn patch_array32(out: &mut [u8], at: usize, count: u32) {
    out[at..at + 4].copy_from_slice(&count.to_be_bytes());
}

/// Writes an EventTime: fixext8 of type 0, big-endian seconds then nanoseconds.
pub(crate) fn write_event_time(out: &mut Vec<u8>, secs: u32, nanos: u32) {
    encode::write_ext_meta(out, 8, 0).expect(GROWS);
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
            &[][..],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xa3, b'a'],
            &[0xcf, 0, 0],
            &[0xd7, 0],
            &[0xc7, 2],
            &[0xdd, 0, 0],
        ] {
            let err = Reader::new(buf, "the frame").next().unwrap_err();
            assert!(
                matches!(err, FluentError::Truncated { offset: 0, .. }),
                "{err}"
            );
        }
        let mut r = Reader::new(&[0x91, 0xd9, 5, b'a'], "the packed entries");
        assert_eq!(r.next(), Ok(Value::Array(1)));
        assert_eq!(
            r.next().unwrap_err().to_string(),
            "msgpack value truncated at offset 1 of the packed entries"
        );
        assert_eq!(r.pos(), 1, "a failed read consumes nothing");
        let err = Reader::new(&[0xc1], "the frame").next().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid msgpack type byte 0xc1 at offset 0"
        );
    }

    #[test]
    fn extents_come_from_headers_alone() {
        let scalar = |buf: &[u8]| {
            extent(buf).unwrap().map(|e| match e {
                Extent::Scalar(n) => n,
                Extent::Container { .. } => panic!("{buf:x?} is not a scalar"),
            })
        };
        assert_eq!(extent(&[]), Ok(None));
        assert_eq!(scalar(&[0x05]), Some(1));
        assert_eq!(scalar(&[0xcf]), Some(9));
        assert_eq!(scalar(&[0xca]), Some(5));
        assert_eq!(scalar(&[0xa3]), Some(4));
        assert_eq!(scalar(&[0xdb, 0xff, 0xff]), None);
        assert_eq!(
            scalar(&[0xdb, 0xff, 0xff, 0xff, 0xff]),
            Some(5 + 0xffff_ffff)
        );
        assert_eq!(scalar(&[0xc5, 1, 0]), Some(3 + 256));
        // Exts: the length is judged before the type byte arrives.
        assert_eq!(scalar(&[0xd7]), Some(10));
        assert_eq!(scalar(&[0xd8, 0]), Some(18));
        assert_eq!(scalar(&[0xc7]), None);
        assert_eq!(scalar(&[0xc7, 3]), Some(6));
        assert_eq!(scalar(&[0xc9, 0x10, 0, 0]), None);
        assert_eq!(scalar(&[0xc9, 0x10, 0, 0, 0]), Some(6 + 0x1000_0000));
        assert_eq!(scalar(&[0xc9, 0x10, 0, 0, 0, 9, 1]), Some(6 + 0x1000_0000));
        assert_eq!(
            extent(&[0x93]),
            Ok(Some(Extent::Container {
                header: 1,
                items: 3
            }))
        );
        assert_eq!(
            extent(&[0x82]),
            Ok(Some(Extent::Container {
                header: 1,
                items: 4
            }))
        );
        assert_eq!(extent(&[0xdd, 0, 0, 1]), Ok(None));
        assert_eq!(
            extent(&[0xdd, 0, 0, 1, 0]),
            Ok(Some(Extent::Container {
                header: 5,
                items: 256
            }))
        );
        assert_eq!(
            extent(&[0xde, 0, 2]),
            Ok(Some(Extent::Container {
                header: 3,
                items: 4
            }))
        );
        assert_eq!(extent(&[0xc1]), Err(0xc1));
    }

    #[test]
    fn writers() {
        for len in [0usize, 31, 32, 255, 256, 65535, 65536] {
            let s = vec![b'a'; len];
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            let mut theirs = Vec::new();
            rmp::encode::write_str(&mut theirs, std::str::from_utf8(&s).unwrap()).unwrap();
            assert_eq!(ours, theirs, "str {len}");
        }
        // Not UTF-8: written as given.
        let mut out = Vec::new();
        write_str(&mut out, b"\xff\x00");
        assert_eq!(out, [0xa2, 0xff, 0x00]);

        let mut out = Vec::new();
        let at = reserve_array32(&mut out);
        write_event_time(&mut out, 0x0102_0304, 9);
        patch_array32(&mut out, at, 1);
        assert_eq!(
            out,
            [0xdd, 0, 0, 0, 1, 0xd7, 0, 1, 2, 3, 4, 0, 0, 0, 9],
            "an array32 holding an EventTime"
        );
        assert_eq!(
            read_all(&out),
            [Value::Array(1), Value::Ext(0, &[1, 2, 3, 4, 0, 0, 0, 9])]
        );
    }
}
