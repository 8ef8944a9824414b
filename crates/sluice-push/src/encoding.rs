//! The request's `Content-Encoding`, undone within a bound.
//!
//! Loki's rules (`pkg/util/http.go`): none, `snappy` (a marker only: a
//! protobuf body is a snappy block anyway, and Vector sets it), `gzip` and
//! `deflate` (zlib-wrapped, as HTTP means it) are read; anything else is
//! refused. Inflating stops one byte past the limit, so a small bomb
//! allocates at most the limit.

use std::{borrow::Cow, io::Read};

use crate::PushError;

/// A `Content-Encoding` sluice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// No header, `identity`, or `snappy` (a marker; see the module docs).
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `deflate`: a zlib stream (RFC 9110); a raw deflate stream is
    /// accepted too, as browsers do.
    Deflate,
}

impl ContentEncoding {
    /// The encoding a header value names (case-insensitive; `None` is no
    /// header).
    pub fn parse(header: Option<&str>) -> Result<ContentEncoding, PushError> {
        let Some(value) = header else {
            return Ok(ContentEncoding::Identity);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" | "snappy" => Ok(ContentEncoding::Identity),
            "gzip" | "x-gzip" => Ok(ContentEncoding::Gzip),
            "deflate" => Ok(ContentEncoding::Deflate),
            _ => Err(PushError::UnsupportedEncoding {
                encoding: crate::error::cut(value, 100),
            }),
        }
    }
}

/// `body` with `encoding` undone, at most `limit` bytes.
pub fn decode(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, PushError> {
    match encoding {
        ContentEncoding::Identity => {
            if body.len() > limit {
                return Err(PushError::DecompressedTooLarge { limit });
            }
            Ok(Cow::Borrowed(body))
        }
        ContentEncoding::Gzip => {
            inflate(flate2::read::MultiGzDecoder::new(body), "gzip", limit).map(Cow::Owned)
        }
        ContentEncoding::Deflate => {
            // zlib has a 2-byte header whose 16-bit value is a multiple of
            // 31 with method 8; anything else is taken as raw deflate.
            let zlib = body.len() >= 2
                && body[0] & 0x0f == 8
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib {
                inflate(flate2::read::ZlibDecoder::new(body), "deflate", limit).map(Cow::Owned)
            } else {
                inflate(flate2::read::DeflateDecoder::new(body), "deflate", limit).map(Cow::Owned)
            }
        }
    }
}

/// Read `reader` to its end, refusing it once past `limit` bytes. The
/// buffer grows with what is read, never beyond `limit + 1`.
fn inflate(reader: impl Read, encoding: &'static str, limit: usize) -> Result<Vec<u8>, PushError> {
    let mut out = Vec::new();
    let mut bounded = reader.take(limit as u64 + 1);
    bounded
        .read_to_end(&mut out)
        .map_err(|err| PushError::BadCompression {
            encoding,
            why: err.to_string(),
        })?;
    if out.len() > limit {
        return Err(PushError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// A snappy *block* (not the framed format) uncompressed, after its
/// declared length is checked against `limit`, before any allocation.
pub fn snappy_block(body: &[u8], limit: usize) -> Result<Vec<u8>, PushError> {
    let len = snap::raw::decompress_len(body).map_err(|err| PushError::BadCompression {
        encoding: "snappy",
        why: err.to_string(),
    })?;
    if len > limit {
        return Err(PushError::DecompressedTooLarge { limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|err| PushError::BadCompression {
            encoding: "snappy",
            why: err.to_string(),
        })
}

/// Run `f` on a snappy block uncompressed into this thread's reused
/// buffer, after its declared length is checked against `limit`: no
/// allocation, and no zeroing or page faults for a fresh buffer, per
/// request. A buffer grown past [`KEEP_BUFFER_BYTES`] is freed after use.
pub fn with_snappy_block<T>(
    body: &[u8],
    limit: usize,
    f: impl FnOnce(&[u8]) -> Result<T, PushError>,
) -> Result<T, PushError> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let bad = |err: snap::Error| PushError::BadCompression {
        encoding: "snappy",
        why: err.to_string(),
    };
    let len = snap::raw::decompress_len(body).map_err(bad)?;
    if len > limit {
        return Err(PushError::DecompressedTooLarge { limit });
    }
    BUFFER.with(|cell| {
        // A nested call (none today) would find the buffer taken: it gets
        // one of its own.
        let mut taken = cell.try_borrow_mut().ok();
        let mut own = Vec::new();
        let buffer = taken.as_deref_mut().unwrap_or(&mut own);
        if buffer.len() < len {
            buffer.resize(len, 0);
        }
        let out = snap::raw::Decoder::new()
            .decompress(body, &mut buffer[..len])
            .map_err(bad)
            .and_then(|n| f(&buffer[..n]));
        if buffer.capacity() > KEEP_BUFFER_BYTES {
            *buffer = Vec::new();
        }
        out
    })
}

/// The largest snappy buffer a thread keeps between requests.
pub const KEEP_BUFFER_BYTES: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn encodings_are_read_case_insensitively_and_others_refused() {
        assert_eq!(ContentEncoding::parse(None), Ok(ContentEncoding::Identity));
        assert_eq!(
            ContentEncoding::parse(Some("snappy")),
            Ok(ContentEncoding::Identity)
        );
        assert_eq!(
            ContentEncoding::parse(Some("GZIP")),
            Ok(ContentEncoding::Gzip)
        );
        let err = ContentEncoding::parse(Some("br")).unwrap_err();
        assert!(err.to_string().contains("\"br\""), "{err}");
    }

    #[test]
    fn gzip_and_deflate_inflate_and_a_bomb_stops_at_the_limit() {
        let data = vec![b'a'; 10_000];
        let body = gzip(&data);
        assert_eq!(
            decode(ContentEncoding::Gzip, &body, 10_000).unwrap(),
            &data[..]
        );
        assert_eq!(
            decode(ContentEncoding::Gzip, &body, 9_999),
            Err(PushError::DecompressedTooLarge { limit: 9_999 })
        );
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        assert_eq!(
            decode(ContentEncoding::Deflate, &zlib, 10_000).unwrap(),
            &data[..]
        );
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(
            decode(ContentEncoding::Deflate, &raw, 10_000).unwrap(),
            &data[..]
        );
        assert!(matches!(
            decode(ContentEncoding::Gzip, b"not gzip", 100),
            Err(PushError::BadCompression { .. })
        ));
    }

    #[test]
    fn a_snappy_block_declaring_too_much_is_refused_before_allocating() {
        let data = vec![b'x'; 5000];
        let block = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(snappy_block(&block, 5000).unwrap(), data);
        assert_eq!(
            snappy_block(&block, 4999),
            Err(PushError::DecompressedTooLarge { limit: 4999 })
        );
        // A header declaring 4 GiB, and nothing after it.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(snappy_block(&bomb, 1 << 20).is_err());
    }
}
