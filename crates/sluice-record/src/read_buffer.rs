//! The read buffer every decoder of a byte stream sits on.
//!
//! [`LineFramer`](crate::LineFramer), the syslog framer, the fluent framer
//! and the batch protocol's [`WireDecoder`](crate::wire::WireDecoder) all do
//! the same thing with their input: read into the free end of a buffer, hand
//! out the complete units at its front, and keep the incomplete rest for the
//! next read. [`ReadBuffer`] is that buffer, once:
//!
//! ```text
//! buf: [ consumed | held: data()           | spare()              ]
//!      0          start                    end                    buf.len()
//! ```
//!
//! Rules:
//! - [`spare`](ReadBuffer::spare) first moves the held bytes to the front
//!   (they are at most one incomplete unit, so the copy is small), then
//!   grows the buffer so that `read_chunk` bytes are free, and returns the
//!   free bytes;
//! - **`filled(n)`** says that the first `n` bytes of the slice the last
//!   `spare` returned now hold input; they join the held bytes. An `n` past
//!   that slice is a bug in the caller and panics;
//! - [`consume`](ReadBuffer::consume) (or [`take`](ReadBuffer::take)) drops
//!   bytes from the front once the codec has handed them out (or skipped
//!   them). Offsets a codec keeps into [`data`](ReadBuffer::data) (how far
//!   it scanned, where a unit ends) stay valid across reads: compaction
//!   moves the bytes, not their position in `data()`;
//! - **hard cap**: a codec promises to hold at most `max_held` bytes between
//!   reads (its longest incomplete unit). `spare` checks that promise and
//!   panics if it is broken, and [`reserve`](ReadBuffer::reserve) refuses to
//!   grow past it, so a buffer never allocates more than
//!   `max_held + read_chunk` bytes, whatever the peer sends;
//! - [`shrink`](ReadBuffer::shrink) gives back the memory a huge unit grew,
//!   once the buffer is empty.
//!
//! Nothing is allocated per read once the buffer has grown.

/// A growable buffer with a consumed prefix; see the module docs.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    /// Initialised memory; `buf[start..end]` is held, `buf[end..]` is spare.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    read_chunk: usize,
    max_held: usize,
}

/// A buffer empty and larger than this many read chunks is freed by
/// [`ReadBuffer::shrink`].
const SHRINK_AT_CHUNKS: usize = 4;

impl ReadBuffer {
    /// A buffer that offers `read_chunk` bytes per read (at least 1) to a
    /// codec that holds at most `max_held` bytes between reads.
    pub fn new(read_chunk: usize, max_held: usize) -> Self {
        ReadBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            read_chunk: read_chunk.max(1),
            max_held,
        }
    }

    /// Room to read into: at least `read_chunk` bytes, right after the held
    /// ones. Panics if the codec holds more than its `max_held`.
    pub fn spare(&mut self) -> &mut [u8] {
        assert!(
            self.len() <= self.max_held,
            "a decoder holds {} bytes, past its bound of {}",
            self.len(),
            self.max_held
        );
        self.compact();
        self.grow(self.end + self.read_chunk);
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into the slice the last [`spare`](Self::spare)
    /// returned. Panics if `n` is longer than that slice.
    pub fn filled(&mut self, n: usize) {
        let room = self.buf.len() - self.end;
        assert!(
            n <= room,
            "filled {n} bytes into {room} bytes of spare room"
        );
        self.end += n;
    }

    /// The held bytes: read, not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Number of held bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drop the first `n` held bytes. Panics if fewer are held.
    pub fn consume(&mut self, n: usize) {
        self.take(n);
    }

    /// Consume the first `n` held bytes and lend them: a unit handed out
    /// whole (a batch section) stays readable until the buffer is next
    /// changed. Panics if fewer are held.
    pub fn take(&mut self, n: usize) -> &[u8] {
        assert!(n <= self.len(), "consumed {n} of {} held bytes", self.len());
        let at = self.start;
        self.start += n;
        if self.start == self.end {
            // Empty: the next read starts at the front, with no copy.
            self.start = 0;
            self.end = 0;
        }
        &self.buf[at..at + n]
    }

    /// Drop every held byte.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Make room for a unit of `total` bytes whose length is known before
    /// it arrives (a batch section), and a read after it, so that reads
    /// fill it in place instead of growing the buffer as they come. Panics
    /// if `total` passes `max_held`.
    pub fn reserve(&mut self, total: usize) {
        assert!(
            total <= self.max_held,
            "reserved {total} bytes, past the bound of {}",
            self.max_held
        );
        if self.buf.len() - self.start < total + self.read_chunk {
            self.compact();
            self.grow(total + self.read_chunk);
        }
    }

    /// When empty, free a buffer that a huge unit grew past a few read
    /// chunks, so that one unit does not pin its memory for the life of a
    /// connection. Returns whether it did (the caller may then trim buffers
    /// of its own).
    pub fn shrink(&mut self) -> bool {
        if self.is_empty() && self.buf.len() > SHRINK_AT_CHUNKS * self.read_chunk {
            self.buf = Vec::new();
            return true;
        }
        false
    }

    /// Bytes of memory the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Make the buffer at least `want` bytes long. Its allocation at least
    /// doubles when it must grow (so a unit arriving in many reads is
    /// copied a few times, not once per read), but never passes
    /// `max_held + read_chunk`.
    fn grow(&mut self, want: usize) {
        if self.buf.len() >= want {
            return;
        }
        if self.buf.capacity() < want {
            let cap = self.max_held.saturating_add(self.read_chunk);
            let target = want.max(self.buf.capacity().saturating_mul(2).min(cap));
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.resize(want, 0);
    }

    /// Move the held bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fill(buf: &mut ReadBuffer, bytes: &[u8]) {
        let spare = buf.spare();
        spare[..bytes.len()].copy_from_slice(bytes);
        buf.filled(bytes.len());
    }

    #[test]
    fn held_bytes_survive_compaction_in_order() {
        let mut buf = ReadBuffer::new(4, 16);
        fill(&mut buf, b"abcd");
        buf.consume(3);
        assert_eq!(buf.data(), b"d");
        fill(&mut buf, b"efgh");
        assert_eq!(buf.data(), b"defgh");
        buf.consume(5);
        assert!(buf.is_empty());
        assert!(buf.spare().len() >= 4);
    }

    #[test]
    #[should_panic(expected = "spare room")]
    fn filling_past_the_spare_room_panics() {
        let mut buf = ReadBuffer::new(4, 16);
        let room = buf.spare().len();
        buf.filled(room + 1);
    }

    #[test]
    #[should_panic(expected = "past its bound")]
    fn holding_past_the_bound_panics_at_the_next_read() {
        let mut buf = ReadBuffer::new(8, 4);
        fill(&mut buf, b"12345");
        buf.spare();
    }

    #[test]
    fn reserve_makes_a_whole_unit_fit_without_growing_per_read() {
        let mut buf = ReadBuffer::new(8, 100);
        fill(&mut buf, b"xxhead");
        buf.consume(2);
        buf.reserve(100);
        assert_eq!(buf.data(), b"head");
        assert!(buf.capacity() >= 100);
        let capacity = buf.capacity();
        while buf.len() < 100 {
            let want = (100 - buf.len()).min(7);
            let spare = buf.spare();
            spare[..want].fill(b'y');
            buf.filled(want);
        }
        assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn shrink_frees_a_grown_buffer_once_empty() {
        let mut buf = ReadBuffer::new(2, 64);
        buf.reserve(64);
        fill(&mut buf, b"ab");
        assert!(!buf.shrink(), "not while bytes are held");
        buf.consume(2);
        assert!(buf.shrink());
        assert_eq!(buf.capacity(), 0);
        assert!(!buf.shrink());
        fill(&mut buf, b"cd");
        assert_eq!(buf.data(), b"cd");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Read(Vec<u8>),
        Consume(usize),
        Reserve(usize),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Read),
            (0usize..60).prop_map(Op::Consume),
            (0usize..200).prop_map(Op::Reserve),
            Just(Op::Shrink),
        ]
    }

    proptest! {
        /// Against a model (a plain vector of held bytes): the held bytes
        /// are always exactly what was read and not consumed, in order, and
        /// memory stays within `max_held + read_chunk`.
        #[test]
        fn matches_a_vector_and_stays_bounded(
            ops in proptest::collection::vec(op(), 0..100),
            read_chunk in 1usize..32,
        ) {
            let max_held = 200;
            let mut buf = ReadBuffer::new(read_chunk, max_held);
            let mut model: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    Op::Read(bytes) => {
                        if model.len() > max_held - read_chunk.max(40) {
                            // The codec's side of the bargain: it consumes
                            // before holding past its bound.
                            let drop = model.len();
                            buf.consume(drop);
                            model.clear();
                        }
                        let spare = buf.spare();
                        prop_assert!(spare.len() >= read_chunk);
                        let n = bytes.len().min(spare.len());
                        spare[..n].copy_from_slice(&bytes[..n]);
                        buf.filled(n);
                        model.extend_from_slice(&bytes[..n]);
                    }
                    Op::Consume(n) => {
                        let n = n.min(model.len());
                        buf.consume(n);
                        model.drain(..n);
                    }
                    Op::Reserve(total) => buf.reserve(total.min(max_held)),
                    Op::Shrink => {
                        let shrunk = buf.shrink();
                        prop_assert!(!shrunk || model.is_empty());
                    }
                }
                prop_assert_eq!(buf.data(), &model[..]);
                prop_assert_eq!(buf.len(), model.len());
                prop_assert!(buf.capacity() <= max_held + read_chunk);
            }
        }
    }
}
