//! Sans-IO line framing with a line limit.
//!
//! [`LineFramer`] sits on a [`ReadBuffer`]: the caller reads from its source
//! into [`LineFramer::spare`], reports how much arrived with
//! [`LineFramer::filled`], and drains complete lines with
//! [`LineFramer::drain`]. Lines are found with `memchr`; nothing is allocated
//! per line and a line is never copied until the caller encodes it.
//!
//! Rules:
//! - a line ends at `\n`; one trailing `\r` is dropped (CRLF input);
//! - any other byte (NUL, invalid UTF-8, control characters) is kept;
//! - a line longer than `max_line` is emitted as its first `max_line` bytes
//!   with `truncated = true`, and the rest of it, up to the next `\n`, is
//!   skipped. The framer therefore never holds more than `max_line + 1`
//!   bytes between reads (its buffer's bound), and an endless line cannot
//!   wedge a connection;
//! - at end of input an unterminated final line is emitted as a line.

use memchr::memchr_iter;

use crate::ReadBuffer;

/// One line handed out by [`LineFramer::drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramedLine<'a> {
    /// The line without its `\n` and one trailing `\r`, at most `max_line`
    /// bytes.
    pub bytes: &'a [u8],
    /// The line was longer than `max_line`; `bytes` is its start.
    pub truncated: bool,
    /// Offset in the input stream just past what this line consumed (its
    /// `\n` included). A reader that restarts at `end` neither repeats nor
    /// skips a line, except after a line cut before its end was seen: the
    /// rest of that line then comes back as a line of its own.
    pub end: u64,
}

/// Splits a byte stream into lines of at most `max_line` bytes; see the
/// module docs for the rules.
#[derive(Debug)]
pub struct LineFramer {
    max_line: usize,
    buf: ReadBuffer,
    /// The first `scanned` held bytes are known to hold no `\n`.
    scanned: usize,
    /// Skipping the tail of a line that was already emitted truncated.
    discarding: bool,
    /// Stream offset of the first held byte.
    base: u64,
}

impl LineFramer {
    /// `max_line` is the longest payload kept; `read_chunk` is how much room
    /// [`spare`](Self::spare) offers per read.
    pub fn new(max_line: usize, read_chunk: usize) -> Self {
        let max_line = max_line.max(1);
        LineFramer {
            max_line,
            // A trailing '\r' may be half of a CRLF: one byte of slack.
            buf: ReadBuffer::new(read_chunk, max_line + 1),
            scanned: 0,
            discarding: false,
            base: 0,
        }
    }

    /// Number the input from `offset` (a reader that resumes mid-file).
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.base = offset;
        self
    }

    /// The longest line handed out, in bytes (at least 1).
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Room to read into (see [`ReadBuffer::spare`]).
    pub fn spare(&mut self) -> &mut [u8] {
        self.buf.spare()
    }

    /// `n` bytes were read into [`spare`](Self::spare) (see
    /// [`ReadBuffer::filled`]).
    pub fn filled(&mut self, n: usize) {
        self.buf.filled(n);
    }

    /// Bytes held that do not yet form a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Hand every complete line to `emit`, in order. Returns the number of
    /// lines that were truncated.
    pub fn drain(&mut self, mut emit: impl FnMut(FramedLine<'_>)) -> u64 {
        let mut truncated = 0;
        let mut start = 0;
        let data = self.buf.data();
        for nl in memchr_iter(b'\n', &data[self.scanned..]) {
            let end = self.scanned + nl;
            if self.discarding {
                self.discarding = false;
            } else {
                let line = strip_cr(&data[start..end]);
                let cut = line.len() > self.max_line;
                truncated += u64::from(cut);
                emit(FramedLine {
                    bytes: &line[..line.len().min(self.max_line)],
                    truncated: cut,
                    end: self.base + end as u64 + 1,
                });
            }
            start = end + 1;
        }
        // What is left has no newline. Cut it now if it already exceeds the
        // limit (allowing one byte for the '\r' of a CRLF).
        let rest = data.len() - start;
        if !self.discarding && rest > self.max_line + 1 {
            truncated += 1;
            emit(FramedLine {
                bytes: &data[start..start + self.max_line],
                truncated: true,
                end: self.base + data.len() as u64,
            });
            self.discarding = true;
        }
        if self.discarding {
            self.skip(data.len());
        } else {
            self.skip(start);
            self.scanned = rest;
        }
        truncated
    }

    /// End of input: emit the unterminated final line, if any. Returns the
    /// number of lines truncated (0 or 1).
    pub fn finish(&mut self, mut emit: impl FnMut(FramedLine<'_>)) -> u64 {
        let mut truncated = 0;
        let data = self.buf.data();
        if !self.discarding && !data.is_empty() {
            let line = strip_cr(data);
            let cut = line.len() > self.max_line;
            truncated = u64::from(cut);
            emit(FramedLine {
                bytes: &line[..line.len().min(self.max_line)],
                truncated: cut,
                end: self.base + data.len() as u64,
            });
        }
        self.skip(self.buf.len());
        self.discarding = false;
        truncated
    }

    /// Drop the first `n` held bytes, which hold no `\n` still to find.
    fn skip(&mut self, n: usize) {
        self.buf.consume(n);
        self.base += n as u64;
        self.scanned = 0;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `input` in pieces of the given sizes and collect the lines.
    fn frame(input: &[u8], max_line: usize, pieces: &[usize]) -> Vec<(Vec<u8>, bool)> {
        let mut framer = LineFramer::new(max_line, 7);
        let mut out = Vec::new();
        let mut offset = 0;
        let mut piece = pieces.iter().cycle();
        while offset < input.len() {
            let spare = framer.spare();
            let n = (*piece.next().unwrap())
                .clamp(1, spare.len())
                .min(input.len() - offset);
            spare[..n].copy_from_slice(&input[offset..offset + n]);
            framer.filled(n);
            offset += n;
            framer.drain(|l| out.push((l.bytes.to_vec(), l.truncated)));
        }
        framer.finish(|l| out.push((l.bytes.to_vec(), l.truncated)));
        out
    }

    /// The reference: split on '\n', drop one '\r', cut at the limit.
    fn model(input: &[u8], max_line: usize) -> Vec<(Vec<u8>, bool)> {
        if input.is_empty() {
            return vec![];
        }
        let body = input.strip_suffix(b"\n").unwrap_or(input);
        body.split(|&b| b == b'\n')
            .map(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                if l.len() > max_line {
                    (l[..max_line].to_vec(), true)
                } else {
                    (l.to_vec(), false)
                }
            })
            .collect()
    }

    #[test]
    fn crlf_binary_and_nul_are_kept_as_bytes() {
        let input = b"a\r\n\x00\xff\xfe\n\n last";
        assert_eq!(
            frame(input, 100, &[3]),
            vec![
                (b"a".to_vec(), false),
                (b"\x00\xff\xfe".to_vec(), false),
                (b"".to_vec(), false),
                (b" last".to_vec(), false)
            ]
        );
    }

    #[test]
    fn an_endless_line_is_cut_and_the_next_line_survives() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nok\n");
        let lines = frame(&input, 16, &[100]);
        assert_eq!(lines, vec![(vec![b'x'; 16], true), (b"ok".to_vec(), false)]);
    }

    #[test]
    fn buffer_stays_bounded_by_the_limit() {
        let mut framer = LineFramer::new(64, 32);
        for _ in 0..1000 {
            let spare = framer.spare();
            spare.fill(b'y');
            let n = spare.len();
            framer.filled(n);
            framer.drain(|_| {});
            assert!(framer.pending() <= 64 + 1);
        }
    }

    proptest! {
        /// Resuming at any line's `end` yields exactly the lines after it.
        #[test]
        fn line_ends_are_resume_points(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r')], 0..200),
            pieces in proptest::collection::vec(1usize..50, 1..5),
        ) {
            let mut framer = LineFramer::new(1000, 7);
            let mut ends = Vec::new();
            let mut offset = 0;
            let mut piece = pieces.iter().cycle();
            while offset < input.len() {
                let spare = framer.spare();
                let n = (*piece.next().unwrap()).clamp(1, spare.len()).min(input.len() - offset);
                spare[..n].copy_from_slice(&input[offset..offset + n]);
                framer.filled(n);
                offset += n;
                framer.drain(|l| ends.push(l.end));
            }
            framer.finish(|l| ends.push(l.end));
            let all = model(&input, 1000);
            for (i, end) in ends.iter().enumerate() {
                prop_assert_eq!(model(&input[*end as usize..], 1000), all[i + 1..].to_vec());
            }
            if let Some(last) = ends.last() {
                prop_assert_eq!(*last as usize, input.len());
            }
        }

        #[test]
        fn framing_matches_the_model(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(0u8), any::<u8>(), Just(b'a')], 0..400),
            max_line in 1usize..40,
            pieces in proptest::collection::vec(1usize..50, 1..5),
        ) {
            prop_assert_eq!(frame(&input, max_line, &pieces), model(&input, max_line));
        }
    }
}
