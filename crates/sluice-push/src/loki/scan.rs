//! A walk over a push request's protobuf wire format that counts streams,
//! entries and metadata pairs without allocating, so that the limits hold
//! before prost builds a vector for each. Only the structure the counts
//! need is followed; prost checks the rest when it decodes.

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

/// Each field of the message in `buf`: `(field number, its bytes)` for
/// length-delimited fields, `(field number, empty)` for the others.
fn fields(
    buf: &[u8],
    mut each: impl FnMut(u64, &[u8]) -> Result<(), PushError>,
) -> Result<(), PushError> {
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err(bad("field number 0"));
        }
        let skip = match wire {
            0 => {
                varint(buf, &mut pos)?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = varint(buf, &mut pos)?;
                let len = usize::try_from(len).map_err(|_| bad("length overflows"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|&end| end <= buf.len())
                    .ok_or_else(|| bad(format!("field {field} runs past the end")))?;
                each(field, &buf[pos..end])?;
                len
            }
            other => return Err(bad(format!("unsupported wire type {other}"))),
        };
        if wire != 0 && wire != 2 {
            each(field, &[])?;
        }
        pos = pos
            .checked_add(skip)
            .filter(|&p| p <= buf.len())
            .ok_or_else(|| bad(format!("field {field} runs past the end")))?;
    }
    Ok(())
}

/// Refuse a request with more entries or metadata pairs than `limits`
/// allow, or whose framing is broken where the counts need it.
pub fn check(buf: &[u8], limits: &Limits) -> Result<(), PushError> {
    let (mut entries, mut pairs, mut streams) = (0usize, 0usize, 0usize);
    fields(buf, |field, stream| {
        if field != 1 {
            return Ok(());
        }
        streams += 1;
        if streams > limits.max_entries {
            return Err(PushError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        fields(stream, |field, entry| {
            if field != 2 {
                return Ok(());
            }
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
