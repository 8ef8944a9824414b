//! Sans-IO syslog framing over TCP (RFC 6587), detected per frame.
//!
//! [`SyslogFramer`] has the shape of `sluice_record::LineFramer` and sits on
//! the same [`ReadBuffer`]: the caller reads into [`SyslogFramer::spare`],
//! reports how much arrived with [`SyslogFramer::filled`], and takes complete
//! frames with [`SyslogFramer::drain`] and, at end of input,
//! [`SyslogFramer::finish`] (or, as records, with
//! [`drain_records`](SyslogFramer::drain_records) and
//! [`finish_records`](SyslogFramer::finish_records): see [`crate::record`]).
//! Frames borrow the buffer; nothing is allocated or copied per frame.
//!
//! Rules, decided afresh at the start of every frame, so one stream may mix
//! both framings:
//! - **Octet counting** (RFC 6587 §3.4.1, `MSG-LEN SP SYSLOG-MSG`): the frame
//!   starts with a count, a non-zero digit followed by at most
//!   [`MAX_COUNT_DIGITS`]` - 1` more digits, and one space. The frame is
//!   exactly that many bytes after the space and may contain any byte,
//!   newlines included. One trailing `\n` inside the counted bytes is trimmed,
//!   and a `\r` just before it (rsyslog's `RSYSLOG_SyslogProtocol23Format`
//!   ends its template with a newline and counts it).
//! - **Non-transparent framing** (RFC 6587 §3.4.2): anything else, including
//!   a count of `0`, a count with a leading zero, or more than
//!   [`MAX_COUNT_DIGITS`] digits, is a line ending at `\n`; one trailing `\r`
//!   is dropped. A count that is not a count never wedges the stream: the
//!   worst case is one line.
//! - Frames that are empty after trimming (blank lines, `\r\n`, a counted
//!   `1 \n`) are skipped and not counted.
//! - Limit: no frame handed out is longer than `max_frame` bytes
//!   ([`DEFAULT_MAX_FRAME`] by default). A longer frame is handed out as its
//!   first `max_frame` bytes with `truncated = true`, and the rest of it is
//!   skipped as it arrives, without being buffered: up to the next `\n` for a
//!   line, exactly the declared count for a counted frame (so a huge declared
//!   count swallows that many bytes, as the sender asked). The framer never
//!   holds more than `max(max_frame + 1, MAX_COUNT_DIGITS)` bytes between
//!   reads (its buffer's bound).
//! - End of input ([`SyslogFramer::finish`]): an unterminated line is handed
//!   out; a counted frame that has not fully arrived is discarded and counted
//!   in [`FrameCounts::incomplete`] (a partial counted frame is a cut
//!   connection, not a message); the tail of a frame already handed out
//!   truncated is dropped silently.

use memchr::memchr;
use sluice_record::ReadBuffer;

/// Default longest frame handed out: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// Most digits an octet count may have. Ten digits already exceed any sane
/// frame; a longer digit run is taken as the start of a line.
pub const MAX_COUNT_DIGITS: usize = 10;

/// How a frame was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `MSG-LEN SP SYSLOG-MSG`.
    OctetCounting,
    /// Terminated by `\n` (or by the end of input).
    NonTransparent,
}

/// One frame handed out by [`SyslogFramer::drain`] or
/// [`SyslogFramer::finish`]: the syslog message without its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message without its framing (the count, the `\n` that ends it
    /// and a `\r` before that), at most `max_frame` bytes. A counted frame
    /// may hold inner newlines.
    pub bytes: &'a [u8],
    /// The frame was longer than the limit; `bytes` is its first `max_frame`
    /// bytes.
    pub truncated: bool,
    /// How the sender delimited it.
    pub framing: Framing,
}

/// What one call to [`SyslogFramer::drain`] or [`SyslogFramer::finish`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames handed out, truncated ones included.
    pub frames: u64,
    /// Frames handed out truncated at the limit.
    pub truncated: u64,
    /// Counted frames cut short by the end of input and discarded.
    pub incomplete: u64,
}

impl std::ops::AddAssign for FrameCounts {
    fn add_assign(&mut self, other: FrameCounts) {
        self.frames += other.frames;
        self.truncated += other.truncated;
        self.incomplete += other.incomplete;
    }
}

/// Where the framer stands; offsets are relative to the first byte held
/// (not yet consumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary, deciding the framing.
    Start,
    /// In a line; the first `scanned` bytes hold no `\n`.
    Line { scanned: usize },
    /// Skipping the rest of a line already handed out truncated.
    DiscardLine,
    /// Waiting for a counted frame of `len <= max_frame + 2` bytes.
    Counted { len: usize },
    /// Waiting for the first `max_frame` bytes of a counted frame of
    /// `len > max_frame + 2` bytes.
    CountedLong { len: u64 },
    /// Skipping the rest of a counted frame already handed out truncated.
    Skip { remaining: u64 },
}

/// Splits one connection's byte stream into syslog frames of at most
/// `max_frame` bytes; see the module docs for the rules.
#[derive(Debug)]
pub struct SyslogFramer {
    max_frame: usize,
    buf: ReadBuffer,
    state: State,
    /// Scratch for a frame made one line ([`crate::record`]).
    pub(crate) line: Vec<u8>,
}

impl SyslogFramer {
    /// `max_frame` is the longest frame handed out (at least 1);
    /// `read_chunk` is how much room [`spare`](Self::spare) offers per read.
    pub fn new(max_frame: usize, read_chunk: usize) -> Self {
        let max_frame = max_frame.max(1);
        SyslogFramer {
            max_frame,
            buf: ReadBuffer::new(read_chunk, (max_frame + 1).max(MAX_COUNT_DIGITS)),
            state: State::Start,
            line: Vec::new(),
        }
    }

    /// The longest frame handed out, in bytes (at least 1).
    pub fn max_frame(&self) -> usize {
        self.max_frame
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

    /// Bytes held that do not yet form a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Hand every complete frame to `emit`, in order.
    pub fn drain(&mut self, mut emit: impl FnMut(Frame<'_>)) -> FrameCounts {
        self.drain_lending(|frame, _| emit(frame))
    }

    /// End of input: hand out what [`drain`](Self::drain) would, then the
    /// unterminated final line, if any. A counted frame cut short is
    /// discarded and counted in [`FrameCounts::incomplete`]. The framer is
    /// then empty and ready for a new stream.
    pub fn finish(&mut self, mut emit: impl FnMut(Frame<'_>)) -> FrameCounts {
        self.finish_lending(|frame, _| emit(frame))
    }

    /// [`drain`](Self::drain), lending `emit` the framer's scratch line.
    pub(crate) fn drain_lending(
        &mut self,
        mut emit: impl FnMut(Frame<'_>, &mut Vec<u8>),
    ) -> FrameCounts {
        let line = &mut self.line;
        let mut emit = |frame: Frame<'_>| emit(frame, line);
        let mut counts = FrameCounts::default();
        let max = self.max_frame;
        let buf = self.buf.data();
        let mut pos = 0;
        let mut state = self.state;
        loop {
            let avail = &buf[pos..];
            match state {
                State::Start => {
                    if avail.is_empty() {
                        break;
                    }
                    match detect(avail) {
                        Detect::NeedMore => break,
                        Detect::Line => state = State::Line { scanned: 0 },
                        Detect::Counted { header, len } => {
                            pos += header;
                            state = if len <= max as u64 + 2 {
                                State::Counted { len: len as usize }
                            } else {
                                State::CountedLong { len }
                            };
                        }
                    }
                }
                State::Line { scanned } => match memchr(b'\n', &avail[scanned..]) {
                    Some(i) => {
                        let end = scanned + i;
                        emit_line(&avail[..end], max, &mut emit, &mut counts);
                        pos += end + 1;
                        state = State::Start;
                    }
                    None => {
                        // A trailing '\r' may be half of a CRLF: one byte of
                        // slack before deciding the line is too long.
                        if avail.len() > max + 1 {
                            emit_truncated(&avail[..max], Framing::NonTransparent, &mut emit);
                            counts.frames += 1;
                            counts.truncated += 1;
                            pos = buf.len();
                            state = State::DiscardLine;
                        } else {
                            state = State::Line {
                                scanned: avail.len(),
                            };
                        }
                        break;
                    }
                },
                State::DiscardLine => match memchr(b'\n', avail) {
                    Some(i) => {
                        pos += i + 1;
                        state = State::Start;
                    }
                    None => {
                        pos = buf.len();
                        break;
                    }
                },
                State::Counted { len } => {
                    if avail.len() < len {
                        break;
                    }
                    emit_counted(&avail[..len], max, &mut emit, &mut counts);
                    pos += len;
                    state = State::Start;
                }
                State::CountedLong { len } => {
                    if avail.len() < max {
                        break;
                    }
                    emit_truncated(&avail[..max], Framing::OctetCounting, &mut emit);
                    counts.frames += 1;
                    counts.truncated += 1;
                    let take = len.min(avail.len() as u64);
                    pos += take as usize;
                    state = if take == len {
                        State::Start
                    } else {
                        State::Skip {
                            remaining: len - take,
                        }
                    };
                }
                State::Skip { remaining } => {
                    let take = remaining.min(avail.len() as u64);
                    pos += take as usize;
                    if take == remaining {
                        state = State::Start;
                    } else {
                        state = State::Skip {
                            remaining: remaining - take,
                        };
                        break;
                    }
                }
            }
        }
        self.state = state;
        self.buf.consume(pos);
        counts
    }

    /// [`finish`](Self::finish), lending `emit` the framer's scratch line.
    pub(crate) fn finish_lending(
        &mut self,
        mut emit: impl FnMut(Frame<'_>, &mut Vec<u8>),
    ) -> FrameCounts {
        let mut counts = self.drain_lending(&mut emit);
        let line = &mut self.line;
        let mut emit = |frame: Frame<'_>| emit(frame, line);
        let rest = self.buf.data();
        match self.state {
            // After a drain, `Start` holds only an undecided run of digits.
            State::Start | State::Line { .. } => {
                emit_line(rest, self.max_frame, &mut emit, &mut counts);
            }
            State::Counted { .. } | State::CountedLong { .. } => counts.incomplete += 1,
            State::DiscardLine | State::Skip { .. } => {}
        }
        self.buf.clear();
        self.state = State::Start;
        counts
    }
}

enum Detect {
    /// Only digits so far: could still become a count.
    NeedMore,
    /// Not a count: the frame is a line.
    Line,
    /// `header` bytes of `digits SP`, then a frame of `len` bytes.
    Counted { header: usize, len: u64 },
}

/// Decide the framing of the frame starting at `b[0]` (`b` non-empty).
fn detect(b: &[u8]) -> Detect {
    if !(b'1'..=b'9').contains(&b[0]) {
        return Detect::Line;
    }
    let mut len: u64 = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' if i < MAX_COUNT_DIGITS => len = len * 10 + u64::from(c - b'0'),
            b' ' => return Detect::Counted { header: i + 1, len },
            _ => return Detect::Line,
        }
    }
    Detect::NeedMore
}

fn emit_truncated(bytes: &[u8], framing: Framing, emit: &mut impl FnMut(Frame<'_>)) {
    emit(Frame {
        bytes,
        truncated: true,
        framing,
    });
}

/// Emit a line (without its `\n`): drop one `\r`, skip it if empty, cut it at
/// the limit.
fn emit_line(line: &[u8], max: usize, emit: &mut impl FnMut(Frame<'_>), counts: &mut FrameCounts) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    emit_frame(line, max, Framing::NonTransparent, emit, counts);
}

/// Emit the counted bytes of a frame: trim one trailing `\n` (and a `\r`
/// before it), skip it if empty, cut it at the limit.
fn emit_counted(
    frame: &[u8],
    max: usize,
    emit: &mut impl FnMut(Frame<'_>),
    counts: &mut FrameCounts,
) {
    let frame = match frame.strip_suffix(b"\n") {
        Some(f) => f.strip_suffix(b"\r").unwrap_or(f),
        None => frame,
    };
    emit_frame(frame, max, Framing::OctetCounting, emit, counts);
}

fn emit_frame(
    bytes: &[u8],
    max: usize,
    framing: Framing,
    emit: &mut impl FnMut(Frame<'_>),
    counts: &mut FrameCounts,
) {
    if bytes.is_empty() {
        return;
    }
    counts.frames += 1;
    if bytes.len() > max {
        counts.truncated += 1;
        emit_truncated(&bytes[..max], framing, emit);
    } else {
        emit(Frame {
            bytes,
            truncated: false,
            framing,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Out = Vec<(Vec<u8>, bool, Framing)>;

    /// Feed `input` in pieces of the given sizes; collect the frames and the
    /// summed counts.
    fn frame_with(
        input: &[u8],
        max_frame: usize,
        read_chunk: usize,
        pieces: &[usize],
    ) -> (Out, FrameCounts) {
        let mut framer = SyslogFramer::new(max_frame, read_chunk);
        let mut out = Vec::new();
        let mut counts = FrameCounts::default();
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
            counts += framer.drain(|f| out.push((f.bytes.to_vec(), f.truncated, f.framing)));
            assert!(framer.pending() <= (max_frame + 1).max(MAX_COUNT_DIGITS));
        }
        counts += framer.finish(|f| out.push((f.bytes.to_vec(), f.truncated, f.framing)));
        assert_eq!(framer.pending(), 0);
        assert_eq!(counts.frames, out.len() as u64);
        assert_eq!(
            counts.truncated,
            out.iter().filter(|(_, t, _)| *t).count() as u64
        );
        (out, counts)
    }

    fn frame(input: &[u8], max_frame: usize, pieces: &[usize]) -> Out {
        frame_with(input, max_frame, 64, pieces).0
    }

    fn counted(msg: &[u8]) -> Vec<u8> {
        let mut out = format!("{} ", msg.len()).into_bytes();
        out.extend_from_slice(msg);
        out
    }

    fn ok(bytes: &[u8], framing: Framing) -> (Vec<u8>, bool, Framing) {
        (bytes.to_vec(), false, framing)
    }

    use Framing::{NonTransparent as Lf, OctetCounting as Oc};

    #[test]
    fn octet_counted_frames_may_hold_newlines_and_spaces() {
        let input = b"11 hello\nworld5 a b c";
        assert_eq!(
            frame(input, 100, &[100]),
            vec![ok(b"hello\nworld", Oc), ok(b"a b c", Oc)]
        );
    }

    #[test]
    fn a_trailing_newline_inside_the_count_is_trimmed() {
        // rsyslog's RSYSLOG_SyslogProtocol23Format ends with "\n" and counts it.
        let msg = b"<13>1 2026-11-21T10:00:00.123456+00:00 host app 123 - - msg\n";
        let mut input = format!("{} ", msg.len()).into_bytes();
        input.extend_from_slice(msg);
        input.extend_from_slice(b"6 a\r\nb\r\n\r\n");
        assert_eq!(
            frame(&input, 1000, &[1000]),
            vec![ok(&msg[..msg.len() - 1], Oc), ok(b"a\r\nb", Oc)]
        );
    }

    #[test]
    fn a_count_that_excludes_the_newline_still_frames() {
        // Some senders count the message but then send a newline too; the
        // newline becomes an empty line, which is skipped.
        assert_eq!(
            frame(b"5 hello\n5 world\n", 100, &[3]),
            vec![ok(b"hello", Oc), ok(b"world", Oc)]
        );
    }

    #[test]
    fn lines_drop_cr_and_skip_empty_lines() {
        assert_eq!(
            frame(b"a\r\n\n\r\n b \n<13>x\nlast\r", 100, &[2]),
            vec![
                ok(b"a", Lf),
                ok(b" b ", Lf),
                ok(b"<13>x", Lf),
                ok(b"last", Lf)
            ]
        );
    }

    #[test]
    fn things_that_look_like_counts_but_are_not_are_lines() {
        let input = b"0 zero\n00 zz\n012 lead\n12345678901 eleven\n12x y\n123\n2026-11-21 date\n9";
        assert_eq!(
            frame(input, 100, &[1]),
            vec![
                ok(b"0 zero", Lf),
                ok(b"00 zz", Lf),
                ok(b"012 lead", Lf),
                ok(b"12345678901 eleven", Lf),
                ok(b"12x y", Lf),
                ok(b"123", Lf),
                ok(b"2026-11-21 date", Lf),
                ok(b"9", Lf),
            ]
        );
    }

    #[test]
    fn ten_digit_counts_are_counts() {
        let (out, counts) = frame_with(b"1000000000 abc", 8, 16, &[5]);
        assert!(out.is_empty());
        assert_eq!(counts.incomplete, 1);
    }

    #[test]
    fn mixed_framing_on_one_stream() {
        let mut input = b"<13>Nov 21 10:00:00 host app[1]: lf\n".to_vec();
        input.extend(counted(
            b"<13>1 2026-11-21T10:00:00.123456+00:00 host app 123 - - counted",
        ));
        input.extend_from_slice(b"<13>Nov 21 10:00:01 host app[1]: lf again\r\n");
        input.extend(counted(b"abc"));
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(
                frame(&input, 1000, &[chunk]),
                vec![
                    ok(b"<13>Nov 21 10:00:00 host app[1]: lf", Lf),
                    ok(
                        b"<13>1 2026-11-21T10:00:00.123456+00:00 host app 123 - - counted",
                        Oc
                    ),
                    ok(b"<13>Nov 21 10:00:01 host app[1]: lf again", Lf),
                    ok(b"abc", Oc),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_huge_declared_count_is_cut_and_skipped_without_buffering() {
        let mut input = b"100 ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b"2 ok");
        let (out, counts) = frame_with(&input, 10, 7, &[3, 50]);
        assert_eq!(out, vec![(vec![b'x'; 10], true, Oc), ok(b"ok", Oc)]);
        assert_eq!(
            counts,
            FrameCounts {
                frames: 2,
                truncated: 1,
                incomplete: 0
            }
        );

        // 9,999,999,999 declared bytes: the buffer stays small while they
        // stream past, and the truncated frame comes out once.
        let mut framer = SyslogFramer::new(64, 4096);
        let spare = framer.spare();
        spare[..11].copy_from_slice(b"9999999999 ");
        framer.filled(11);
        let mut got = 0;
        for _ in 0..1000 {
            let spare = framer.spare();
            spare.fill(b'y');
            let n = spare.len();
            framer.filled(n);
            framer.drain(|f| {
                assert!(f.truncated);
                assert_eq!(f.bytes.len(), 64);
                got += 1;
            });
            assert_eq!(framer.pending(), 0);
        }
        assert_eq!(got, 1);
        let counts = framer.finish(|_| panic!("nothing more"));
        assert_eq!(counts, FrameCounts::default());
    }

    #[test]
    fn counted_frames_near_the_limit_are_trimmed_before_cutting() {
        // 12 counted bytes, limit 10: "0123456789\r\n" fits once trimmed.
        let out = frame(b"12 0123456789\r\n11 0123456789x", 10, &[4]);
        assert_eq!(
            out,
            vec![ok(b"0123456789", Oc), (b"0123456789".to_vec(), true, Oc)]
        );
    }

    #[test]
    fn an_endless_line_is_cut_and_the_next_frame_survives() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\n2 ok");
        assert_eq!(
            frame(&input, 16, &[100]),
            vec![(vec![b'x'; 16], true, Lf), ok(b"ok", Oc)]
        );
    }

    #[test]
    fn end_of_input_rules() {
        // A partial counted frame is discarded and counted.
        let (out, counts) = frame_with(b"2 a\n10 abc", 100, 64, &[100]);
        assert_eq!(out, vec![ok(b"a", Oc)]);
        assert_eq!(counts.incomplete, 1);
        // A count with its space but no bytes is incomplete too.
        let (out, counts) = frame_with(b"10 ", 100, 64, &[100]);
        assert!(out.is_empty());
        assert_eq!(counts.incomplete, 1);
        // Digits alone at the end are a line.
        let (out, counts) = frame_with(b"a\n42", 100, 64, &[1]);
        assert_eq!(out, vec![ok(b"a", Lf), ok(b"42", Lf)]);
        assert_eq!(counts.incomplete, 0);
        // The tail of a frame already handed out truncated is not incomplete.
        let (out, counts) = frame_with(b"20 0123456789", 4, 64, &[100]);
        assert_eq!(out, vec![(b"0123".to_vec(), true, Oc)]);
        assert_eq!(counts.incomplete, 0);
        // An unterminated, over-long line.
        let (out, _) = frame_with(b"abcdef", 4, 64, &[1]);
        assert_eq!(out, vec![(b"abcd".to_vec(), true, Lf)]);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let mut input = b"<13>Nov 21 10:00:00 host app[1]: one\n".to_vec();
        input.extend(counted(b"<13>1 - - - - - -\n"));
        input.extend_from_slice(b"\r\n");
        input.extend(counted(b"<165>1 - h app - - - a\nb\nc\n"));
        input.extend(counted(b"abcde"));
        input.extend_from_slice(b"<13>Nov 21 10:00:00 host app[1]: two");
        let input = &input[..];
        let expected = frame(input, 1000, &[input.len()]);
        assert_eq!(expected.len(), 5);
        for split in 0..=input.len() {
            let mut framer = SyslogFramer::new(1000, 1);
            let mut out = Vec::new();
            for part in [&input[..split], &input[split..]] {
                // Feed a whole part between drains, one byte of room at a time.
                for &b in part {
                    let spare = framer.spare();
                    spare[0] = b;
                    framer.filled(1);
                }
                framer.drain(|f| out.push((f.bytes.to_vec(), f.truncated, f.framing)));
            }
            framer.finish(|f| out.push((f.bytes.to_vec(), f.truncated, f.framing)));
            assert_eq!(out, expected, "split at {split}");
        }
        // And one byte per drain.
        assert_eq!(frame(input, 1000, &[1]), expected);
    }

    /// A counted-frame header at the start of a line would change its framing.
    fn looks_counted(b: &[u8]) -> bool {
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        (1..=MAX_COUNT_DIGITS).contains(&digits) && b[0] != b'0' && b.get(digits) == Some(&b' ')
    }

    /// Encode `frames` with the chosen framings and return the stream and the
    /// frames that must come out of it.
    fn encode(
        frames: &[(Vec<u8>, bool, bool)],
        max: usize,
        unterminated_last: bool,
    ) -> (Vec<u8>, Out) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (i, (msg, counted, blank_after)) in frames.iter().enumerate() {
            let lf_ok = !msg.contains(&b'\n') && !looks_counted(msg);
            let (body, framing) = if *counted || !lf_ok {
                wire.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                wire.extend_from_slice(msg);
                let body = match msg.strip_suffix(b"\n") {
                    Some(m) => m.strip_suffix(b"\r").unwrap_or(m),
                    None => msg,
                };
                (body, Oc)
            } else {
                wire.extend_from_slice(msg);
                if !(unterminated_last && i + 1 == frames.len()) {
                    wire.push(b'\n');
                }
                (msg.strip_suffix(b"\r").unwrap_or(msg), Lf)
            };
            // Blank lines after an unterminated last line would terminate it.
            if *blank_after && !(unterminated_last && i + 1 == frames.len()) {
                wire.extend_from_slice(b"\r\n\n");
            }
            if body.is_empty() {
                continue;
            }
            if body.len() > max {
                expected.push((body[..max].to_vec(), true, framing));
            } else {
                expected.push((body.to_vec(), false, framing));
            }
        }
        (wire, expected)
    }

    fn message() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b'\n'),
                Just(b'\r'),
                Just(b' '),
                Just(b'<'),
                b'0'..=b'9',
                any::<u8>(),
                Just(b'a'),
            ],
            1..60,
        )
    }

    proptest! {
        #[test]
        fn random_frames_with_random_framing_and_chunks_come_out_exactly(
            frames in proptest::collection::vec((message(), any::<bool>(), proptest::bool::weighted(0.1)), 0..20),
            max in 1usize..80,
            read_chunk in 1usize..40,
            pieces in proptest::collection::vec(1usize..50, 1..5),
            unterminated_last in any::<bool>(),
        ) {
            let (wire, expected) = encode(&frames, max, unterminated_last);
            let (out, counts) = frame_with(&wire, max, read_chunk, &pieces);
            prop_assert_eq!(out, expected);
            prop_assert_eq!(counts.incomplete, 0);
        }

        #[test]
        fn random_bytes_never_panic_and_respect_the_limit(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b' '), b'0'..=b'9', any::<u8>()], 0..400),
            max in 1usize..40,
            read_chunk in 1usize..40,
            pieces in proptest::collection::vec(1usize..50, 1..5),
        ) {
            let (out, _) = frame_with(&input, max, read_chunk, &pieces);
            for (bytes, _, framing) in out {
                prop_assert!(!bytes.is_empty() && bytes.len() <= max);
                if framing == Lf {
                    prop_assert!(!bytes.contains(&b'\n'));
                }
            }
        }
    }
}
