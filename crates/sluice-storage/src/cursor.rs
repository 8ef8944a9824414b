//! The record cursors over files the store and the ingest log hold:
//! [`RecordCursor`], the one reader abstraction; [`BatchCursor`] over
//! batch files and ingest segments (growing ones too); [`MemoryCursor`]
//! over records sorted in memory. Block files have theirs in
//! [`crate::block_segment`].

use std::{path::Path, sync::Arc};

use memchr::memmem;
use sluice_record::{Record, Ulid, decode_record};

use crate::{StorageError, block_segment::Cancel, fs::Fs, segment::SegmentScanner};

/// [`RecordCursor`] over records held in memory, in id order.
pub struct MemoryCursor {
    records: Vec<sluice_record::OwnedRecord>,
    next: usize,
    bytes: u64,
}

impl MemoryCursor {
    /// A cursor over `records`, which must be sorted by id; `bytes` is
    /// what reading them cost, as [`RecordCursor::bytes_read`] reports.
    pub fn new(records: Vec<sluice_record::OwnedRecord>, bytes: u64) -> MemoryCursor {
        debug_assert!(records.is_sorted_by_key(|r| r.id));
        MemoryCursor {
            records,
            next: 0,
            bytes,
        }
    }

    /// Bytes the records take in memory, about.
    pub fn memory_bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|r| (r.topic.len() + r.payload.len() + 64) as u64)
            .sum()
    }
}

impl RecordCursor for MemoryCursor {
    fn advance(&mut self) -> Result<bool, StorageError> {
        if self.next < self.records.len() {
            self.next += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn record(&self) -> Record<'_> {
        self.records[self.next - 1].as_record()
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

/// Whether `err` is a batch cut short by the end of the file.
fn is_cut_short(err: &StorageError) -> bool {
    matches!(
        err,
        StorageError::Corrupt {
            source: sluice_record::CodecError::Truncated { .. },
            ..
        }
    )
}

/// A forward cursor over the records of one segment, in id order.
///
/// This is the reader abstraction of the store: query execution and
/// compaction see segments only through it.
pub trait RecordCursor: Send {
    /// Move to the next record. Returns `false` at the end.
    fn advance(&mut self) -> Result<bool, StorageError>;
    /// The current record; only valid after `advance` returned `true`.
    fn record(&self) -> Record<'_>;
    /// Bytes of the segment read so far.
    fn bytes_read(&self) -> u64;
    /// Records passed over by a prefilter without being returned.
    fn records_skipped(&self) -> u64 {
        0
    }
    /// Blocks passed over because they failed their checks (see
    /// [`ScanOptions::skip_corrupt_blocks`](crate::store_segment::ScanOptions::skip_corrupt_blocks)).
    fn corrupt_blocks(&self) -> u64 {
        0
    }
    /// What the first corrupt block passed over was, if any.
    fn first_corruption(&self) -> Option<&str> {
        None
    }
}

/// [`RecordCursor`] over a batch file (or any segment file with
/// sorted records, such as a sorted ingest segment).
///
/// With a literal prefilter ([`BatchCursor::with_literal`]) each
/// batch body is searched once with memchr's memmem, and only records whose
/// payload holds an occurrence are returned; a batch without one is skipped
/// whole. The records passed over are counted in
/// [`records_skipped`](RecordCursor::records_skipped).
pub struct BatchCursor {
    scanner: SegmentScanner,
    /// Offset of the next record in the scanner's body.
    next: usize,
    remaining_in_batch: u32,
    /// The current record, decoded once in `advance`.
    current: CurrentRecord,
    literal: Option<Arc<memmem::Finder<'static>>>,
    /// Start offsets of the literal in the current body, ascending.
    hits: Vec<usize>,
    next_hit: usize,
    /// A pattern searched over each batch body as a whole; then `selected`
    /// holds the payload offsets of the records it matches.
    text: Option<Arc<dyn crate::block_segment::TextMatcher>>,
    selected: Vec<usize>,
    skipped: u64,
    cancel: Option<Cancel>,
    /// A file still being appended to: a short batch at its end is where
    /// the writer is, not corruption (see [`BatchCursor::open_growing`]).
    growing: bool,
}

#[derive(Default, Clone, Copy)]
struct CurrentRecord {
    id: Ulid,
    flags: u8,
    topic: (usize, usize),
    payload: (usize, usize),
}

impl BatchCursor {
    /// A cursor over every record of the batch file at `path`.
    pub fn open(fs: &dyn Fs, path: &Path) -> Result<Self, StorageError> {
        Ok(BatchCursor {
            scanner: SegmentScanner::open(fs, path)?,
            next: 0,
            remaining_in_batch: 0,
            current: CurrentRecord::default(),
            literal: None,
            hits: Vec::new(),
            next_hit: 0,
            text: None,
            selected: Vec::new(),
            skipped: 0,
            cancel: None,
            growing: false,
        })
    }

    /// A cursor over the whole batches of a segment file that a connection
    /// may still be appending to (an active ingest segment): it reads the
    /// length the file had when opened and ends at the first batch cut
    /// short there, which is a write in progress rather than a torn tail.
    pub fn open_growing(fs: &dyn Fs, path: &Path) -> Result<Self, StorageError> {
        let mut cursor = Self::open(fs, path)?;
        cursor.growing = true;
        Ok(cursor)
    }

    /// The smallest id, whether the ids increase, and the record count, of
    /// the whole batches (see [`SegmentScanner::summarize_ids`]).
    pub fn summarize_ids(&self) -> Result<crate::IdSummary, StorageError> {
        self.scanner.summarize_ids()
    }

    /// Every record of the whole batches, sorted by id: for a file whose
    /// ids do not increase (origin times, client ids). Memory is the
    /// file's records; the caller bounds it.
    pub fn into_sorted(mut self) -> Result<MemoryCursor, StorageError> {
        // Read every record, not only those with the literal.
        self.literal = None;
        self.text = None;
        let mut records = Vec::new();
        while self.advance()? {
            records.push(self.record().to_owned_record());
        }
        records.sort_by_key(|r| r.id);
        Ok(MemoryCursor::new(records, self.scanner.offset()))
    }

    /// The id of the file's first record, without moving the cursor:
    /// `None` when no whole batch is there yet or it holds no record.
    pub fn first_id(&self) -> Result<Option<Ulid>, StorageError> {
        self.scanner.first_id()
    }

    /// The file's length when it was opened: what the cursor reads.
    pub fn len(&self) -> u64 {
        self.scanner.len()
    }

    /// Whether the file was empty when it was opened.
    pub fn is_empty(&self) -> bool {
        self.scanner.is_empty()
    }

    /// Return only records whose payload contains `literal`.
    pub fn with_literal(mut self, literal: Arc<memmem::Finder<'static>>) -> Self {
        self.literal = Some(literal);
        self
    }

    /// Return only records whose payload `matcher` matches, found by
    /// searching each batch body as a whole; it replaces the literal. A
    /// matcher that [looks around](crate::block_segment::TextMatcher::looks_around)
    /// is not taken: the cursor then returns every record, for the caller
    /// to check.
    pub fn with_text_matcher(
        mut self,
        matcher: Arc<dyn crate::block_segment::TextMatcher>,
    ) -> Self {
        if !matcher.looks_around() {
            self.literal = None;
            self.text = Some(matcher);
        }
        self
    }

    /// Stop, as if at the end, once `cancel` is raised.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// The payload offsets of the records of the current body (`count` of
    /// them) that the text matcher matches. A match inside a payload
    /// selects its record; a match that starts in a record's header or
    /// runs past its payload is checked again on the payload alone; either
    /// way the search goes on after that payload. Without look-around, a
    /// payload that matches alone has a match starting at or before its
    /// match's position in the body, so every record is decided as a
    /// per-record match would decide it.
    fn select_by_text(&mut self, count: u32) -> Result<(), StorageError> {
        let Some(text) = self.text.clone() else {
            return Ok(());
        };
        self.selected.clear();
        let body = self.scanner.body();
        let mut from = 0;
        let mut at = 0;
        let mut left = count;
        'search: while let Some((start, end)) = text.find_at(body, from) {
            loop {
                if left == 0 {
                    break 'search;
                }
                let (record, next) = decode_record(body, at).map_err(|e| self.corrupt(e))?;
                left -= 1;
                at = next;
                let payload_start = next - record.payload.len();
                if next < start {
                    continue;
                }
                if (start >= payload_start && end <= next) || text.is_match(record.payload) {
                    self.selected.push(payload_start);
                }
                from = next;
                break;
            }
        }
        Ok(())
    }

    fn corrupt(&self, source: sluice_record::CodecError) -> StorageError {
        StorageError::Corrupt {
            path: self.scanner.path().to_path_buf(),
            offset: self.scanner.offset(),
            source,
        }
    }

    /// Load the next batch; with a literal, skip batches that lack it.
    fn next_batch(&mut self) -> Result<bool, StorageError> {
        loop {
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            {
                return Ok(false);
            }
            let next = match self.scanner.next_batch() {
                Err(e) if self.growing && is_cut_short(&e) => return Ok(false),
                other => other?,
            };
            let Some((header, body)) = next else {
                return Ok(false);
            };
            self.remaining_in_batch = header.count;
            self.next = 0;
            if self.text.is_some() {
                self.next_hit = 0;
                self.select_by_text(header.count)?;
                if !self.selected.is_empty() {
                    return Ok(true);
                }
                self.skipped += header.count as u64;
                self.remaining_in_batch = 0;
                continue;
            }
            let Some(literal) = &self.literal else {
                return Ok(true);
            };
            self.hits.clear();
            self.next_hit = 0;
            // Overlapping occurrences: a non-overlapping search could let
            // an occurrence that starts in a record header hide one that
            // lies wholly inside the payload after it.
            let mut from = 0;
            while let Some(at) = literal.find(&body[from..]) {
                self.hits.push(from + at);
                from += at + 1;
            }
            if !self.hits.is_empty() {
                return Ok(true);
            }
            self.skipped += header.count as u64;
            self.remaining_in_batch = 0;
        }
    }
}

impl RecordCursor for BatchCursor {
    fn advance(&mut self) -> Result<bool, StorageError> {
        loop {
            while self.remaining_in_batch == 0 {
                if !self.next_batch()? {
                    return Ok(false);
                }
            }
            let body = self.scanner.body();
            let (record, next) = decode_record(body, self.next).map_err(|e| self.corrupt(e))?;
            let payload_start = next - record.payload.len();
            let topic_start = payload_start - record.topic.len();
            self.current = CurrentRecord {
                id: record.id,
                flags: record.flags,
                topic: (topic_start, payload_start),
                payload: (payload_start, next),
            };
            self.next = next;
            self.remaining_in_batch -= 1;
            if self.text.is_some() {
                match self.selected.get(self.next_hit) {
                    Some(&selected) if selected == payload_start => {
                        self.next_hit += 1;
                        return Ok(true);
                    }
                    Some(_) => self.skipped += 1,
                    None => {
                        self.skipped += 1 + self.remaining_in_batch as u64;
                        self.remaining_in_batch = 0;
                    }
                }
                continue;
            }
            let Some(literal) = &self.literal else {
                return Ok(true);
            };
            // Drop hits that start before this payload, then keep the record
            // if the next hit lies wholly inside it.
            let needle = literal.needle().len();
            while self
                .hits
                .get(self.next_hit)
                .is_some_and(|&h| h < payload_start)
            {
                self.next_hit += 1;
            }
            match self.hits.get(self.next_hit) {
                Some(&hit) if hit + needle <= next => return Ok(true),
                Some(_) => self.skipped += 1,
                None => {
                    // No hit left in this batch: skip the rest of it.
                    self.skipped += 1 + self.remaining_in_batch as u64;
                    self.remaining_in_batch = 0;
                }
            }
        }
    }

    fn record(&self) -> Record<'_> {
        let body = self.scanner.body();
        let c = &self.current;
        Record {
            id: c.id,
            flags: c.flags,
            topic: &body[c.topic.0..c.topic.1],
            payload: &body[c.payload.0..c.payload.1],
        }
    }

    fn bytes_read(&self) -> u64 {
        self.scanner.offset()
    }

    fn records_skipped(&self) -> u64 {
        self.skipped
    }
}
