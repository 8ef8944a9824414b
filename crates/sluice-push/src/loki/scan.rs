//! A walk over a push request's protobuf wire format, without allocating:
//! [`check`] counts streams, entries and metadata pairs so that the limits
//! hold before any work, and [`fields`] is what the decoder
//! (`super::decode_protobuf`) reads the messages with.

use crate::{Limits, PushError};

fn bad(why: impl Into<String>) -> PushError {
    PushError::BadProtobuf { why: why.into() }
}

/// A varint at `*pos`, moving past it.
fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, PushError> {
    let mut value = 0u64;
    for shift in 0..10 {
        let Some(&byte) = buf.get(*pos) else {
            return Err(bad("truncated varint"));
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint longer than 10 bytes"))
}

/// A field's value as the wire holds it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire types 1 and 5 (fixed 64 and 32 bits), not read.
    Fixed,
    /// Wire type 2.
    Bytes(&'a [u8]),
}

/// The largest field number protobuf allows.
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Each field of the message in `buf`, in wire order: `(field number, its
/// value)`. Refuses what prost refuses: field number 0 or past 2^29 - 1,
/// a key past 32 bits, groups and unknown wire types, and any length that
/// runs past the end.
pub fn fields<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(u64, Value<'a>) -> Result<(), PushError>,
) -> Result<(), PushError> {
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        if key > u64::from(u32::MAX) {
            return Err(bad(format!("invalid key {key}")));
        }
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 || field > MAX_FIELD {
            return Err(bad(format!("invalid field number {field}")));
        }
        let value = match wire {
            0 => Value::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                pos = pos
                    .checked_add(width)
                    .filter(|&p| p <= buf.len())
                    .ok_or_else(|| bad(format!("field {field} runs past the end")))?;
                Value::Fixed
            }
            2 => {
                let len = varint(buf, &mut pos)?;
                let len = usize::try_from(len).map_err(|_| bad("length overflows"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|&end| end <= buf.len())
                    .ok_or_else(|| bad(format!("field {field} runs past the end")))?;
                let bytes = &buf[pos..end];
                pos = end;
                Value::Bytes(bytes)
            }
            other => return Err(bad(format!("unsupported wire type {other}"))),
        };
        each(field, value)?;
    }
    Ok(())
}

/// The bytes of a length-delimited field, or an error naming `what`.
pub fn bytes<'a>(value: Value<'a>, what: &str) -> Result<&'a [u8], PushError> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        _ => Err(bad(format!("invalid wire type for {what}"))),
    }
}

/// The value of a varint field, or an error naming `what`.
pub fn number(value: Value<'_>, what: &str) -> Result<u64, PushError> {
    match value {
        Value::Varint(n) => Ok(n),
        _ => Err(bad(format!("invalid wire type for {what}"))),
    }
}

/// Refuse a request with more entries or metadata pairs than `limits`
/// allow, or whose framing is broken where the counts need it.
pub fn check(buf: &[u8], limits: &Limits) -> Result<(), PushError> {
    let (mut entries, mut pairs, mut streams) = (0usize, 0usize, 0usize);
    fields(buf, |field, stream| {
        let (1, Value::Bytes(stream)) = (field, stream) else {
            return Ok(());
        };
        streams += 1;
        if streams > limits.max_entries {
            return Err(PushError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        fields(stream, |field, entry| {
            let (2, Value::Bytes(entry)) = (field, entry) else {
                return Ok(());
            };
            entries += 1;
            if entries > limits.max_entries {
                return Err(PushError::TooManyEntries {
                    limit: limits.max_entries,
                });
            }
            fields(entry, |field, _| {
                if field == 3 || field == 4 {
                    pairs += 1;
                    if pairs > limits.max_metadata_pairs() {
                        return Err(PushError::TooManyMetadata {
                            limit: limits.max_metadata_pairs(),
                        });
                    }
                }
                Ok(())
            })
        })
    })
}
