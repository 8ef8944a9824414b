//! Which records of a decoded block match: the text searched as a whole,
//! as grep searches, and each hit mapped to its line and record.

use std::sync::Arc;

use memchr::memmem;

use super::block::{Block, Line};

/// A test of a record's payload, run where its block is decoded (a query's
/// regex, say). Records it rejects are never returned.
pub type RecordFilter = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A pattern searched over a block's decoded text as a whole, as grep
/// does, rather than called once per record: the regex engine's
/// prefilters and its DFA then run across lines, and per-record calls go
/// only to lines where a match crossed a newline.
pub trait TextMatcher: Send + Sync {
    /// The first match in `text` at or after `start`, as absolute
    /// `(start, end)` offsets. `^` and `$` must match at line starts and
    /// ends (a multi-line regex).
    fn find_at(&self, text: &[u8], start: usize) -> Option<(usize, usize)>;
    /// Whether one payload, alone, matches.
    fn is_match(&self, payload: &[u8]) -> bool;
    /// Whether the pattern looks at the bytes around a match (`^`, `$`,
    /// `\b`, `\B`). Such a pattern is searched over a block's text, whose
    /// lines are separated by newlines, but not over a batch file's body,
    /// where a record's header bytes precede its payload.
    fn looks_around(&self) -> bool;
    /// A literal every match holds, if the matcher has one worth searching
    /// for. A batch file's body is searched for it, and each record whose
    /// payload holds it is decided by [`is_match`](Self::is_match) on that
    /// payload alone, as a per-record match decides it (so a matcher that
    /// looks around is searched this way too).
    fn required_literal(&self) -> Option<&memmem::Finder<'static>> {
        None
    }
}

pub(super) type Literal = Arc<memmem::Finder<'static>>;

/// How a block's records are selected.
#[derive(Clone)]
pub(super) struct Select {
    pub(super) literal: Option<Literal>,
    pub(super) text: Option<Arc<dyn TextMatcher>>,
    pub(super) filter: Option<RecordFilter>,
}

/// A selected record: its index in the block, and where its payload lies,
/// in the block's text and, when the selection gathers, in
/// [`Selection::gathered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub(super) record: u32,
    in_text: u32,
    in_gathered: u32,
    len: u32,
}

impl Hit {
    /// Record `record`, its payload `text[payload]` and, if copied,
    /// `gathered[in_gathered..]`.
    fn new(record: u32, payload: std::ops::Range<usize>, in_gathered: usize) -> Hit {
        Hit {
            record,
            in_text: payload.start as u32,
            in_gathered: in_gathered as u32,
            len: payload.len() as u32,
        }
    }
}

/// A block's selected payloads are copied out only while they are at most
/// this share of its text: for denser hits the reader reads the text in
/// much the same scattered way as their copies, and a copy only doubles
/// the bytes moved.
const GATHER_ONE_IN: usize = 4;

/// The records of a block a search selected.
///
/// A record found by a search (a literal or a text matcher) has its
/// payload copied out as it is found, while the search has its bytes in
/// the cache, as long as the copies stay a small share of the block's
/// text ([`GATHER_ONE_IN`]). Records go out in id order, which in a sorted
/// block is not the text's order, so reading each payload from the text
/// later was a cache miss per record, on the reader's thread: for a word
/// on 1% of lines, a fifth of the reader's time (BENCHMARKS.md,
/// "2026-12-04, afternoon"). The copies lie in the order found, a few KiB
/// for such a word, which the reader's jumps through stay within.
#[derive(Debug, Default)]
pub(super) struct Selection {
    /// In text order as found, then in record (id) order.
    pub(super) hits: Vec<Hit>,
    /// The payloads of `hits`, one after another in the order found, when
    /// `is_gathered`.
    gathered: Vec<u8>,
    is_gathered: bool,
    /// Whether this block's selection began (and `is_gathered` was
    /// decided for it).
    began: bool,
}

impl Selection {
    pub(super) fn clear(&mut self) {
        self.hits.clear();
        self.gathered.clear();
        self.is_gathered = false;
        self.began = false;
    }

    /// Begin selecting `block`'s records, copying the payloads found out
    /// if `gather`; later calls for the same block change nothing.
    fn begin(&mut self, gather: bool) {
        if !self.began {
            (self.began, self.is_gathered) = (true, gather);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.hits.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// Select `record`, whose payload is `text[payload]`, copying it out
    /// while the copies stay under a [`GATHER_ONE_IN`] share of `text`.
    #[inline]
    fn push_found(&mut self, record: u32, text: &[u8], payload: std::ops::Range<usize>) {
        let len = payload.len();
        if self.is_gathered && (self.gathered.len() + len) * GATHER_ONE_IN > text.len() {
            // Dense: the reader reads the text instead.
            self.is_gathered = false;
            self.gathered.clear();
        }
        let in_gathered = self.gathered.len();
        if self.is_gathered {
            self.gathered.extend_from_slice(&text[payload.clone()]);
        }
        self.hits.push(Hit::new(record, payload, in_gathered));
    }

    /// Where the payloads of [`hits`](Self::hits) lie: the copies, or the
    /// block's text.
    #[inline]
    pub(super) fn text<'a>(&'a self, block: &'a Block) -> &'a [u8] {
        match self.is_gathered {
            true => &self.gathered,
            false => &block.text,
        }
    }

    /// Where `hit`'s payload lies in [`text`](Self::text).
    #[inline]
    pub(super) fn payload(&self, hit: &Hit) -> std::ops::Range<u32> {
        let at = match self.is_gathered {
            true => hit.in_gathered,
            false => hit.in_text,
        };
        at..at + hit.len
    }

    /// `hit`'s payload, a record of `block`.
    #[inline]
    fn payload_bytes<'a>(&'a self, block: &'a Block, hit: &Hit) -> &'a [u8] {
        let payload = self.payload(hit);
        &self.text(block)[payload.start as usize..payload.end as usize]
    }
}

/// Select, by the text matcher over the whole text if there is one, else
/// by the literal, the records among `lines` (in text order, within the
/// bytes `text` of the block's text) that match.
pub(super) fn select_records(
    block: &Block,
    text: std::ops::Range<usize>,
    lines: Lines<'_>,
    select: &Select,
    selected: &mut Selection,
) {
    match (&select.text, &select.literal) {
        (Some(matcher), _) => select_by_text(block, text, lines, &**matcher, selected),
        (None, Some(finder)) => select_by_literal(block, text, lines, finder, selected),
        (None, None) => {
            // Every line: the reader reads the text in order.
            selected.begin(false);
            selected.hits.extend((0..lines.len()).map(|i| {
                let payload = lines.start(i, text.start)..lines.end(i);
                Hit::new(lines.lines[i].record, payload, 0)
            }))
        }
    }
}

/// Put `selected` in id order and apply the record filter.
pub(super) fn finish_selection(
    block: &Block,
    selected: &mut Selection,
    filter: Option<RecordFilter>,
) {
    // A sorted block's lines are in sort-key order; records go out in id
    // order.
    selected.hits.sort_unstable_by_key(|hit| hit.record);
    if let Some(filter) = filter {
        // Taken out while kept, so that the payloads are read through the
        // selection (the Vec moves, its buffer does not).
        let mut hits = std::mem::take(&mut selected.hits);
        hits.retain(|hit| filter(selected.payload_bytes(block, hit)));
        selected.hits = hits;
    }
}

/// Some of a block's loaded lines, consecutive in its text: where each
/// ends, and its record.
#[derive(Clone, Copy)]
pub(super) struct Lines<'b> {
    lines: &'b [Line],
}

impl<'b> Lines<'b> {
    pub(super) fn all(block: &'b Block) -> Lines<'b> {
        Lines {
            lines: &block.lines,
        }
    }

    pub(super) fn of(block: &'b Block, range: std::ops::Range<usize>) -> Lines<'b> {
        Lines {
            lines: &block.lines[range],
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    /// Line `i`'s record, if there is a line `i`.
    fn record(&self, i: usize) -> Option<u32> {
        self.lines.get(i).map(|line| line.record)
    }

    /// Where line `i` ends (at its newline).
    fn end(&self, i: usize) -> usize {
        self.lines[i].end as usize
    }

    /// Where line `i` starts: after the line before's newline, or at the
    /// span's start.
    fn start(&self, i: usize, span_start: usize) -> usize {
        match i {
            0 => span_start,
            _ => self.end(i - 1) + 1,
        }
    }

    /// The first line from index `from` whose newline is at or after byte
    /// `at`, or `len()`. The ends lie in text order, and the next hit is
    /// usually near (a word on 1% of lines skips about a hundred lines), so
    /// up to `LINEAR_SCAN` ends are read in order, which the prefetcher
    /// follows: galloping at once probed ends far apart, each probe a cache
    /// miss, a fifth of a spread word's search. Past them it gallops, so a
    /// rare hit does not read every end before it.
    fn first_ending_at_or_after(&self, from: usize, at: usize) -> usize {
        const CHUNK: usize = 16;
        const LINEAR_SCAN: usize = 64 * CHUNK;
        let ends_before = |lines: &[Line]| lines.partition_point(|line| (line.end as usize) < at);
        let near = &self.lines[from.min(self.len())..(from + LINEAR_SCAN).min(self.len())];
        let mut chunks = near.chunks_exact(CHUNK);
        let mut low = from;
        for chunk in &mut chunks {
            // Counted without a branch per end, so the loop vectorises.
            let before = chunk.iter().filter(|line| (line.end as usize) < at).count();
            if before < CHUNK {
                return low + before;
            }
            low += CHUNK;
        }
        if near.len() < LINEAR_SCAN {
            // The scan reached the last line.
            return low + ends_before(chunks.remainder());
        }
        let mut step = 1;
        while low + step <= self.len() && (self.lines[low + step - 1].end as usize) < at {
            low += step;
            step *= 2;
        }
        low + ends_before(&self.lines[low..(low + step).min(self.len())])
    }
}

/// Select the records of `lines` (some of `block`'s loaded lines, in text
/// order, which lie in the bytes `span` of its text) that hold `finder`,
/// copying their payloads out as they are found.
fn select_by_literal(
    block: &Block,
    span: std::ops::Range<usize>,
    lines: Lines<'_>,
    finder: &memmem::Finder<'static>,
    selected: &mut Selection,
) {
    selected.begin(true);
    // Payloads are separated by "\n", which a literal may hold: find
    // overlapping occurrences and keep records with one wholly inside their
    // payload.
    let needle = finder.needle().len();
    let text = &block.text[..span.end];
    let mut from = span.start;
    let mut line = 0;
    while line < lines.len() {
        let Some(at) = finder.find(&text[from..]) else {
            break;
        };
        let hit = from + at;
        line = lines.first_ending_at_or_after(line, hit + needle);
        let Some(record) = lines.record(line) else {
            break;
        };
        // Both ends from the lines, in text order: no random access by
        // record.
        let (line_start, line_end) = (lines.start(line, span.start), lines.end(line));
        if line_start <= hit {
            selected.push_found(record, &block.text, line_start..line_end);
            // The next line starts after this one's newline.
            from = line_end + 1;
            line += 1;
        } else {
            from = hit + 1;
        }
    }
}

/// Select the records of `block`'s loaded lines that `matcher` matches,
/// found by searching the text as a whole, copying their payloads out as
/// they are found. A match inside one line selects
/// it; a match that starts in a line and crosses its newline (a class such
/// as `[^x]` can match one) is checked again on that line alone. Either
/// way the search goes on at the next line, so every line is decided
/// exactly as a per-line match would decide it.
///
/// `lines` are some of the block's loaded lines, in text order, which lie
/// in the bytes `span` of its text; the text before the span is context
/// for `^` and `\b`.
fn select_by_text(
    block: &Block,
    span: std::ops::Range<usize>,
    lines: Lines<'_>,
    matcher: &dyn TextMatcher,
    selected: &mut Selection,
) {
    selected.begin(true);
    let text = &block.text[..span.end];
    let mut from = span.start;
    let mut line = 0;
    while line < lines.len() && from <= text.len() {
        let Some((start, end)) = matcher.find_at(text, from) else {
            break;
        };
        // The line the match starts in: the first whose newline is at or
        // after the start (an empty match at a line's end is in that line).
        line = lines.first_ending_at_or_after(line, start);
        let Some(record) = lines.record(line) else {
            break;
        };
        let (line_start, line_end) = (lines.start(line, span.start), lines.end(line));
        if end <= line_end || matcher.is_match(&text[line_start..line_end]) {
            selected.push_found(record, &block.text, line_start..line_end);
        }
        from = line_end + 1;
        line += 1;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Lines of the given lengths (each without its newline), one after
    /// another.
    fn lines_of(lengths: &[u32]) -> Vec<Line> {
        let mut end = 0;
        let mut lines = Vec::with_capacity(lengths.len());
        for (record, &len) in lengths.iter().enumerate() {
            end += len;
            lines.push(Line {
                end,
                record: record as u32,
            });
            end += 1;
        }
        lines
    }

    proptest! {
        /// The scan then gallop finds the line a search over every end
        /// finds, whether the hit is near, past the linear scan, or past
        /// the last line.
        #[test]
        fn the_line_of_a_hit_is_the_first_ending_at_or_after_it(
            lengths in prop::collection::vec(0u32..200, 0..3000),
            from_share in 0.0f64..=1.0,
            ahead in 0usize..3100,
            back in 0u32..3,
        ) {
            let lines = lines_of(&lengths);
            let from = (lines.len() as f64 * from_share) as usize;
            // Near the end of a line `ahead` lines on, or past the text.
            let at = match lines.get(from + ahead) {
                Some(line) => line.end.saturating_sub(back) as usize,
                None => lines.last().map_or(0, |line| line.end as usize) + back as usize,
            };
            let want = from + lines[from..].partition_point(|line| (line.end as usize) < at);
            let got = Lines { lines: &lines }.first_ending_at_or_after(from, at);
            prop_assert_eq!(got, want);
        }
    }

    /// Payloads are copied out while they are a quarter of the text at
    /// most, then read from the text; either way each hit's payload is its
    /// line.
    #[test]
    fn hits_are_gathered_until_they_are_dense_and_read_right_either_way() {
        let mut block = Block::default();
        let lines: Vec<String> = (0..40).map(|i| format!("line {i:02}")).collect();
        block.text = lines
            .iter()
            .flat_map(|l| [l.as_bytes(), b"\n"].concat())
            .collect();
        let line_len = lines[0].len() + 1;
        let mut selected = Selection::default();
        selected.begin(true);
        let mut gathered_while = 0;
        for (i, line) in lines.iter().enumerate() {
            let start = i * line_len;
            selected.push_found(i as u32, &block.text, start..start + line.len());
            if selected.is_gathered {
                gathered_while = i + 1;
            }
            for (hit, line) in selected.hits.iter().zip(&lines) {
                assert_eq!(selected.payload_bytes(&block, hit), line.as_bytes());
            }
        }
        // 40 lines of 8 bytes and a newline: copies of 40 payloads are 320
        // bytes, a quarter of the 360 of text is 90, so 11 fit.
        assert_eq!(gathered_while, 11);
        assert!(!selected.is_gathered && selected.gathered.is_empty());
        // Begun again for the same block, the decision stands.
        selected.begin(true);
        assert!(!selected.is_gathered);
    }

    #[test]
    fn a_hit_far_past_the_linear_scan_is_found_by_galloping() {
        let lines = lines_of(&vec![9; 100_000]);
        let found = Lines { lines: &lines };
        // Line i ends at 10 i + 9.
        assert_eq!(found.first_ending_at_or_after(0, 10 * 77_777 + 3), 77_777);
        assert_eq!(found.first_ending_at_or_after(5, 10 * 1_024 + 9), 1_024);
        // Just past the lines read in order, and just before.
        assert_eq!(found.first_ending_at_or_after(0, 10 * 1_024 + 9), 1_024);
        assert_eq!(found.first_ending_at_or_after(0, 10 * 1_023 + 9), 1_023);
        assert_eq!(found.first_ending_at_or_after(0, 10 * 1_025), 1_025);
        assert_eq!(found.first_ending_at_or_after(0, 10 * 100_000), 100_000);
        assert_eq!(found.first_ending_at_or_after(100_000, 0), 100_000);
    }
}
