//! A fluent connection's input, cut into whole frames.
//!
//! Both ends that read the forward protocol from a socket (the ingester's
//! listener and the forwarder's agent) read into a
//! [`ReadBuffer`](sluice_record::ReadBuffer), hand out every complete frame
//! in order, keep the incomplete rest for the next read, and give back the
//! memory a huge frame took once it is gone. [`FluentFramer`] is that, sans
//! I/O, with the [`FrameScanner`] that finds where frames end (so a frame
//! arriving in many reads is walked once) and the [`Scratch`] that decoding
//! reuses. It never holds more than one frame (at most
//! `Limits::max_frame_bytes`, enforced by the scanner) between reads.

use sluice_record::ReadBuffer;

use crate::{FluentError, FrameScanner, Limits, Scratch};

/// Scratch buffers larger than this are freed when the read buffer is.
const SCRATCH_KEEP_BYTES: usize = 1 << 20;

/// The framer of one fluent connection; see the module docs.
#[derive(Debug)]
pub struct FluentFramer {
    buf: ReadBuffer,
    scanner: FrameScanner,
    scratch: Scratch,
    /// The cleaned tag of the frame being mapped ([`Frame::records`]).
    topic: Vec<u8>,
    limits: Limits,
    max_line: usize,
}

/// One complete frame, lent by [`FluentFramer::drain`] with what decoding
/// it needs; [`Frame::records`] decodes it into records.
#[derive(Debug)]
pub struct Frame<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) limits: &'a Limits,
    pub(crate) max_line: usize,
    pub(crate) scratch: &'a mut Scratch,
    pub(crate) topic: &'a mut Vec<u8>,
}

impl<'a> Frame<'a> {
    /// The frame's bytes, as sent.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl FluentFramer {
    /// A framer for frames within `limits`, whose events' JSON is cut at
    /// `max_line` bytes ([`Frame::records`]), reading `read_chunk` bytes at
    /// a time.
    pub fn new(limits: Limits, max_line: usize, read_chunk: usize) -> Self {
        FluentFramer {
            buf: ReadBuffer::new(read_chunk, limits.max_frame_bytes),
            scanner: FrameScanner::new(),
            scratch: Scratch::new(),
            topic: Vec::new(),
            limits,
            max_line: max_line.max(1),
        }
    }

    /// Room for the next read (see [`ReadBuffer::spare`]). Once a huge
    /// frame is gone, its memory (and the scratch it grew) is given back
    /// first.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.shrink() {
            self.scratch.trim(SCRATCH_KEEP_BYTES);
        }
        self.buf.spare()
    }

    /// `n` bytes were read into [`spare`](Self::spare) (see
    /// [`ReadBuffer::filled`]).
    pub fn filled(&mut self, n: usize) {
        self.buf.filled(n);
    }

    /// Bytes of an incomplete frame held (at the end of a stream: a partial
    /// frame to discard).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Hand each complete frame to `handle`, in order, and drop the frames
    /// handed out. Stops at the first bad frame (the bytes are not a frame
    /// within the limits: the stream's framing is lost, close the
    /// connection) or failed handler; the frames before it were handled.
    pub fn drain<E: From<FluentError>>(
        &mut self,
        mut handle: impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let data = self.buf.data();
            let Some(len) = self.scanner.scan(data, &self.limits)? else {
                return Ok(());
            };
            let handled = handle(Frame {
                bytes: &data[..len],
                limits: &self.limits,
                max_line: self.max_line,
                scratch: &mut self.scratch,
                topic: &mut self.topic,
            });
            self.buf.consume(len);
            handled?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Stop {
        Bad(FluentError),
        Handler,
    }

    impl From<FluentError> for Stop {
        fn from(err: FluentError) -> Self {
            Stop::Bad(err)
        }
    }

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        // Three frames: nil, [1, 2], "abc"; fed one byte at a time.
        let stream = [0xc0, 0x92, 0x01, 0x02, 0xa3, b'a', b'b', b'c'];
        let mut frames = FluentFramer::new(Limits::default(), 100, 1);
        let mut got: Vec<Vec<u8>> = Vec::new();
        for byte in stream {
            frames.spare()[0] = byte;
            frames.filled(1);
            frames
                .drain::<Stop>(|f| {
                    got.push(f.bytes().to_vec());
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
        let mut frames = FluentFramer::new(Limits::default(), 100, 16);
        frames.spare()[..3].copy_from_slice(&[0x01, 0x02, 0x03]);
        frames.filled(3);
        let mut seen = 0;
        let out = frames.drain(|f| {
            seen += 1;
            if f.bytes() == [0x02] {
                Err(Stop::Handler)
            } else {
                Ok(())
            }
        });
        assert!(matches!(out, Err(Stop::Handler)));
        assert_eq!((seen, frames.pending()), (2, 1));
    }

    #[test]
    fn a_huge_frame_is_refused_from_its_header() {
        let mut frames = FluentFramer::new(Limits::default(), 100, 16);
        // str32 declaring 4 GiB.
        frames.spare()[..5].copy_from_slice(&[0xdb, 0xff, 0xff, 0xff, 0xff]);
        frames.filled(5);
        let out = frames.drain::<Stop>(|_| Ok(()));
        assert!(matches!(
            out,
            Err(Stop::Bad(FluentError::FrameTooLarge { .. }))
        ));
    }

    #[test]
    fn a_huge_frame_gives_its_memory_back_once_handled() {
        let mut frames = FluentFramer::new(Limits::default(), 100, 16);
        // bin32 of 1000 bytes: grows the buffer past four reads.
        let mut frame = vec![0xc6, 0, 0, 0x03, 0xe8];
        frame.resize(5 + 1000, b'x');
        let mut fed = 0;
        let mut got = 0;
        while fed < frame.len() {
            let spare = frames.spare();
            let n = spare.len().min(frame.len() - fed);
            spare[..n].copy_from_slice(&frame[fed..fed + n]);
            frames.filled(n);
            fed += n;
            frames
                .drain::<Stop>(|f| {
                    got += f.bytes().len();
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(got, frame.len());
        assert!(frames.buf.capacity() > 1000);
        frames.spare();
        assert!(frames.buf.capacity() <= 16);
    }
}
