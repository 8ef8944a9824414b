//! A connection's read buffer, cut into whole frames.
//!
//! Both ends that read the forward protocol from a socket (the ingester's
//! listener and the forwarder's agent) do the same thing: read into the
//! free end of a buffer, hand out every complete frame in order, keep the
//! incomplete rest at the front for the next read, and give back the memory
//! a huge frame took once it is gone. [`FrameBuffer`] is that, sans I/O.
//! The buffer never holds more than one frame (at most
//! `Limits::max_frame_bytes`, enforced by the scanner) plus one read.

use crate::{FluentError, FrameScanner, Limits};

/// Why [`FrameBuffer::drain`] stopped early.
#[derive(Debug)]
pub enum DrainError<E> {
    /// The bytes are not a frame within the limits; the stream's framing is
    /// lost, so close the connection.
    Bad(FluentError),
    /// The frame handler failed.
    Frame(E),
}

#[derive(Debug, Default)]
pub struct FrameBuffer {
    /// `buf[..len]` holds bytes not yet handed out.
    buf: Vec<u8>,
    len: usize,
    scanner: FrameScanner,
    read_chunk: usize,
}

impl FrameBuffer {
    /// A buffer that reads `read_chunk` bytes at a time.
    pub fn new(read_chunk: usize) -> Self {
        FrameBuffer {
            buf: Vec::new(),
            len: 0,
            scanner: FrameScanner::new(),
            read_chunk: read_chunk.max(1),
        }
    }

    /// Room for the next read: at least `read_chunk` bytes.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() < self.len + self.read_chunk {
            self.buf.resize(self.len + self.read_chunk, 0);
        }
        &mut self.buf[self.len..]
    }

    /// `n` bytes were read into [`spare`](Self::spare).
    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Bytes of an incomplete frame held (at the end of a stream: a partial
    /// frame to discard).
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Call `frame` with each complete frame in order, and drop the frames
    /// handed out. Stops at the first bad frame or failed handler; the
    /// frames before it were handled.
    pub fn drain<E>(
        &mut self,
        limits: &Limits,
        mut frame: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), DrainError<E>> {
        let mut start = 0;
        let result = loop {
            let len = match self.scanner.scan(&self.buf[start..self.len], limits) {
                Ok(Some(n)) => n,
                Ok(None) => break Ok(()),
                Err(err) => break Err(DrainError::Bad(err)),
            };
            let range = start..start + len;
            start += len;
            if let Err(e) = frame(&self.buf[range]) {
                break Err(DrainError::Frame(e));
            }
        };
        if start > 0 {
            self.buf.copy_within(start..self.len, 0);
            self.len -= start;
        }
        result
    }

    /// When empty, free a buffer that a huge frame grew past a few reads, so
    /// it does not pin that memory for the connection's life. Returns whether
    /// it did (a caller may then trim its other scratch buffers).
    pub fn shrink(&mut self) -> bool {
        if self.len == 0 && self.buf.len() > 4 * self.read_chunk {
            self.buf = Vec::new();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        // Three frames: nil, [1, 2], "abc"; fed one byte at a time.
        let stream = [0xc0, 0x92, 0x01, 0x02, 0xa3, b'a', b'b', b'c'];
        let mut frames = FrameBuffer::new(1);
        let mut got: Vec<Vec<u8>> = Vec::new();
        for byte in stream {
            frames.spare()[0] = byte;
            frames.filled(1);
            frames
                .drain::<()>(&Limits::default(), |f| {
                    got.push(f.to_vec());
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(
            got,
            [vec![0xc0], vec![0x92, 1, 2], vec![0xa3, b'a', b'b', b'c']]
        );
        assert_eq!(frames.pending(), 0);
    }

    #[test]
    fn a_failed_handler_keeps_the_frames_after_it() {
        let mut frames = FrameBuffer::new(16);
        frames.spare()[..3].copy_from_slice(&[0x01, 0x02, 0x03]);
        frames.filled(3);
        let mut seen = 0;
        let out = frames.drain(&Limits::default(), |f| {
            seen += 1;
            if f == [0x02] { Err("stop") } else { Ok(()) }
        });
        assert!(matches!(out, Err(DrainError::Frame("stop"))));
        assert_eq!((seen, frames.pending()), (2, 1));
    }

    #[test]
    fn a_huge_frame_is_refused_from_its_header() {
        let mut frames = FrameBuffer::new(16);
        // str32 declaring 4 GiB.
        frames.spare()[..5].copy_from_slice(&[0xdb, 0xff, 0xff, 0xff, 0xff]);
        frames.filled(5);
        let out = frames.drain::<()>(&Limits::default(), |_| Ok(()));
        assert!(matches!(out, Err(DrainError::Bad(_))));
    }
}
