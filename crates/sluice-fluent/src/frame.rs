//! Finding where one top-level msgpack value ends, without allocating.
//!
//! A forward connection is a plain concatenation of msgpack values, so a
//! frame's length is only known once its last nested value is walked. The
//! walk keeps one counter of values still owed per open container (a fixed
//! array of [`MAX_DEPTH_CAP`] slots, no recursion, no heap), and refuses a
//! frame the moment a declared length or count makes it necessarily bigger
//! than `Limits::max_frame_bytes`: a str32 announcing 4 GiB is refused after
//! its 5 header bytes. Every owed value needs at least one byte, which is how
//! counts are bounded too.

use crate::msgpack::{Extent, extent};
use crate::{FluentError, Limits};

/// Deepest nesting any limit can allow; larger `Limits::max_depth` values
/// are treated as this.
pub const MAX_DEPTH_CAP: usize = 128;

/// A resumable [`frame_len`]: feed it the same growing buffer (the bytes of
/// the frame so far, always starting at the frame's first byte) after every
/// read, and it continues where it stopped instead of rescanning, so a
/// 16 MiB frame arriving in 64 KiB reads costs one walk, not 256.
///
/// After it returns `Some(n)` it is reset, ready for the next frame (which
/// starts at byte `n` of the old buffer: drain those bytes first). After an
/// error the connection's framing is lost; call [`reset`](Self::reset)
/// before reusing the scanner on another stream.
#[derive(Clone)]
pub struct FrameScanner {
    /// Offset of the next value header to read (or of the frame's end).
    pos: usize,
    /// Open containers.
    depth: usize,
    /// Values each open container still owes, the one in progress included.
    owed: [u64; MAX_DEPTH_CAP],
    /// Values owed and not yet started, over all open containers: each
    /// needs at least one more byte.
    owed_total: u64,
    /// The top-level value is fully walked; the frame ends at `pos`.
    done: bool,
}

impl Default for FrameScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FrameScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameScanner")
            .field("pos", &self.pos)
            .field("depth", &self.depth)
            .field("done", &self.done)
            .finish()
    }
}

impl FrameScanner {
    /// A scanner at the start of a frame.
    pub fn new() -> Self {
        FrameScanner {
            pos: 0,
            depth: 0,
            owed: [0; MAX_DEPTH_CAP],
            owed_total: 0,
            done: false,
        }
    }

    /// Forgets any partial frame.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.depth = 0;
        self.owed_total = 0;
        self.done = false;
    }

    /// Bytes of the current frame walked so far (a lower bound on its size).
    pub fn scanned(&self) -> usize {
        self.pos
    }

    /// `Some(len)` once `buf` holds one whole top-level value (the frame is
    /// `buf[..len]`), `None` if more bytes are needed, or an error as soon as
    /// the frame is known to break a limit or not to be msgpack.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, FluentError> {
        let max = limits.max_frame_bytes as u64;
        let max_depth = limits.max_depth.min(MAX_DEPTH_CAP);
        loop {
            if self.done {
                if buf.len() < self.pos {
                    return Ok(None);
                }
                let len = self.pos;
                self.reset();
                return Ok(Some(len));
            }
            let extent = match buf.get(self.pos..).map(extent) {
                None | Some(Ok(None)) => return Ok(None),
                Some(Ok(Some(extent))) => extent,
                Some(Err(byte)) => {
                    return Err(FluentError::InvalidByte {
                        byte,
                        offset: self.pos,
                    });
                }
            };
            // Where the value ends if it is a scalar, where its header
            // ends if it is a container.
            let (end, items, is_container) = match extent {
                Extent::Scalar(len) => (self.pos as u64 + len, 0, false),
                Extent::Container { header, items } => (self.pos as u64 + header, items, true),
            };
            // This value is one of the values its container still owes.
            let started = u64::from(self.depth > 0);
            let least = end + (self.owed_total - started) + items;
            if least > max {
                return Err(FluentError::FrameTooLarge {
                    size: least,
                    limit: limits.max_frame_bytes,
                });
            }
            // `end <= max`, which fits in usize.
            self.pos = end as usize;
            self.owed_total -= started;
            if is_container && items > 0 {
                if self.depth >= max_depth {
                    return Err(FluentError::TooDeep { limit: max_depth });
                }
                self.owed[self.depth] = items;
                self.owed_total += items;
                self.depth += 1;
                continue;
            }
            if is_container && self.depth >= max_depth {
                return Err(FluentError::TooDeep { limit: max_depth });
            }
            // One value finished: pay it to the innermost open container,
            // closing every container it completes.
            loop {
                if self.depth == 0 {
                    self.done = true;
                    break;
                }
                let slot = &mut self.owed[self.depth - 1];
                *slot -= 1;
                if *slot > 0 {
                    break;
                }
                self.depth -= 1;
            }
        }
    }
}

/// Length of the first top-level msgpack value in `buf`: `Some(len)` when it
/// is complete, `None` if more bytes are needed, an error as soon as a
/// declared length or count would push it past `limits.max_frame_bytes`, its
/// nesting passes `limits.max_depth`, or a byte is not msgpack.
///
/// Stateless: it rescans from the start on every call. A listener that
/// reads a big frame in many pieces should keep a [`FrameScanner`] instead.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, FluentError> {
    FrameScanner::new().scan(buf, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_frame: usize) -> Limits {
        Limits {
            max_frame_bytes: max_frame,
            ..Limits::default()
        }
    }

    #[test]
    fn scalars_and_containers() {
        let l = Limits::default();
        assert_eq!(frame_len(&[], &l), Ok(None));
        assert_eq!(frame_len(&[0xc0, 0xc0], &l), Ok(Some(1)));
        assert_eq!(frame_len(&[0x90], &l), Ok(Some(1)));
        assert_eq!(frame_len(&[0x80, 1], &l), Ok(Some(1)));
        assert_eq!(frame_len(&[0x92, 1, 0x81, 0xa1, b'k', 0x91], &l), Ok(None));
        assert_eq!(
            frame_len(&[0x92, 1, 0x81, 0xa1, b'k', 0x91, 0xc3, 9], &l),
            Ok(Some(7))
        );
        assert_eq!(frame_len(&[0xd7, 0, 1, 2, 3, 4, 5, 6, 7], &l), Ok(None));
        assert_eq!(
            frame_len(&[0xd7, 0, 1, 2, 3, 4, 5, 6, 7, 8], &l),
            Ok(Some(10))
        );
        assert_eq!(frame_len(&[0xc7, 2, 5, 1, 2], &l), Ok(Some(5)));
        assert_eq!(frame_len(&[0xdc, 0, 1, 0xc0], &l), Ok(Some(4)));
        assert_eq!(frame_len(&[0xdf, 0, 0, 0, 1, 0xc0], &l), Ok(None));
    }

    #[test]
    fn huge_declared_lengths_fail_on_the_header() {
        let l = Limits::default();
        let err = frame_len(&[0xdb, 0xff, 0xff, 0xff, 0xff], &l).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame of 4294967300 bytes exceeds the limit of 16777216 bytes (--fluent-max-frame); \
             ask the sender for smaller chunks or raise the limit"
        );
        // Inside an array, behind the tag, as bin32 and ext32.
        for buf in [
            &[0x92, 0xa1, b't', 0xc6, 0x7f, 0xff, 0xff, 0xff][..],
            &[0xc9, 0x10, 0, 0, 0, 0],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0x10, 0, 0, 0],
        ] {
            assert!(
                matches!(frame_len(buf, &l), Err(FluentError::FrameTooLarge { .. })),
                "{buf:x?}"
            );
        }
        // Owed values count: a 3-array of which the first is 8 bytes long.
        let buf = [0x93, 0xa7, b'a', b'b', b'c', b'd', b'e', b'f', b'g'];
        assert_eq!(
            frame_len(&buf, &limits(10)),
            Err(FluentError::FrameTooLarge {
                size: 11,
                limit: 10
            })
        );
        assert_eq!(frame_len(&buf, &limits(11)), Ok(None));
        // Open containers do not count twice: this 11-byte frame fits 11.
        let nested = [
            0x91, 0x91, 0x91, 0x92, 0xa5, b'h', b'e', b'l', b'l', b'o', 0xc0,
        ];
        assert_eq!(frame_len(&nested, &limits(11)), Ok(Some(11)));
        assert_eq!(frame_len(&nested[..5], &limits(11)), Ok(None));
        assert!(frame_len(&nested[..5], &limits(10)).is_err());
    }

    #[test]
    fn depth_is_limited() {
        let l = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        assert_eq!(frame_len(&[0x91, 0x91, 0x91, 0xc0], &l), Ok(Some(4)));
        assert_eq!(
            frame_len(&[0x91, 0x91, 0x91, 0x90], &l),
            Err(FluentError::TooDeep { limit: 3 })
        );
        assert_eq!(
            frame_len(&[0x91, 0x91, 0x91, 0x91], &l),
            Err(FluentError::TooDeep { limit: 3 })
        );
        let deep = vec![0x91u8; 1 << 20];
        assert_eq!(
            frame_len(&deep, &Limits::default()),
            Err(FluentError::TooDeep { limit: 32 })
        );
    }

    #[test]
    fn scanner_resumes_across_pieces() {
        let frame = [
            0x93, 0xa1, b't', 0xc4, 3, 1, 2, 3, 0x81, 0xa1, b'k', 0xa1, b'v',
        ];
        let mut buf = frame.to_vec();
        buf.extend_from_slice(&[0xc0]);
        let l = Limits::default();
        let mut s = FrameScanner::new();
        for end in 0..frame.len() {
            assert_eq!(s.scan(&buf[..end], &l), Ok(None), "prefix {end}");
        }
        assert_eq!(s.scan(&buf, &l), Ok(Some(frame.len())));
        assert_eq!(s.scan(&buf[frame.len()..], &l), Ok(Some(1)));
    }

    #[test]
    fn invalid_byte() {
        assert_eq!(
            frame_len(&[0x92, 0xc1], &Limits::default()),
            Err(FluentError::InvalidByte {
                byte: 0xc1,
                offset: 1
            })
        );
    }
}
