//! The batch table of a sealed, mapped batch file: each batch's offset,
//! header and first id, read once for the file's life in the
//! [`SegmentCache`](crate::SegmentCache), and each batch's record index,
//! built by the first search of that batch.
//!
//! Finding the next batch means reading its header, and the header's place
//! is known only from the one before: a query over fresh data walked
//! thousands of headers, one dependent cache miss after another, on the
//! thread that hands batches to the workers (a twentieth of a fresh
//! query's CPU, BENCHMARKS.md "2026-12-04, late night"), and again for
//! every query. The table is read in order from memory instead. It holds
//! what the walk found and nothing more: headers that parse and frames
//! that fit in the mapping, up to the first that does not; their checksums
//! are verified by whoever reads their bodies, as before. A scan that
//! reaches the table's end goes on reading the file, and meets there what
//! the walk met.

use std::sync::OnceLock;

use sluice_record::{BatchHeader, batch::BATCH_HEADER_BYTES};

use super::batch_first_id;

/// One batch of a [`BatchTable`].
#[derive(Debug)]
pub(crate) struct BatchEntry {
    /// Where the batch's header starts in the file.
    pub offset: u64,
    pub header: BatchHeader,
    /// Its first record's id, read unverified (see
    /// [`SegmentScanner::skip_batches_below`](super::SegmentScanner)).
    pub first_id: Option<u128>,
    /// Where every [`RECORD_INDEX_STRIDE`](crate::cursor::RECORD_INDEX_STRIDE)-th
    /// record of the body starts, once a search built it.
    record_index: OnceLock<Box<[u32]>>,
}

impl BatchEntry {
    /// The batch as [`walk_headers`] found it.
    pub fn walked(&self) -> Walked {
        (self.offset as usize, self.header, self.first_id)
    }

    /// Where the body lies in the mapping.
    pub fn body(&self) -> std::ops::Range<usize> {
        let start = self.offset as usize + BATCH_HEADER_BYTES;
        start..start + self.header.body_len as usize
    }
}

/// A file gets a table only if its batches average at least this many
/// bytes (or it has at most [`ALWAYS_KEPT`] of them): an entry is about 80
/// bytes, so a table then costs at most half a percent of the file, where
/// an ingest segment adopted whole with a batch per client flush, each a
/// few lines, would cost a third of it. Such a file is read by walking its
/// headers, as before, and its batches, of a few records each, gain
/// nothing from a record index.
pub(crate) const MIN_MEAN_BATCH_BYTES: usize = 16 << 10;
/// Batches a file may have and still get a table, however small.
pub(crate) const ALWAYS_KEPT: usize = 64;

/// A batch as [`walk_headers`] finds it: where its header starts, the
/// header, and its first id (read unverified).
pub(crate) type Walked = (usize, BatchHeader, Option<u128>);

/// The batches of `mapped` from offset `at`, header by header, up to its
/// end or the first header that does not parse or whose frame runs past
/// the end. Nothing is verified.
pub(crate) fn walk_headers(mapped: &[u8], mut at: usize) -> impl Iterator<Item = Walked> + '_ {
    std::iter::from_fn(move || {
        let header = BatchHeader::parse(mapped.get(at..at + BATCH_HEADER_BYTES)?).ok()?;
        let body = mapped.get(at + BATCH_HEADER_BYTES..at + header.frame_len())?;
        let walked = (at, header, batch_first_id(&header, body));
        at += header.frame_len();
        Some(walked)
    })
}

/// The batches of a mapped batch file, in file order.
#[derive(Debug, Default)]
pub struct BatchTable {
    entries: Box<[BatchEntry]>,
}

impl BatchTable {
    /// Walk the headers of `mapped` from its start, up to its end or the
    /// first header that does not parse or whose frame runs past the end;
    /// `None` if the batches are too many for a table (see
    /// [`MIN_MEAN_BATCH_BYTES`]).
    pub(crate) fn walk(mapped: &[u8]) -> Option<BatchTable> {
        let most = ALWAYS_KEPT.max(mapped.len() / MIN_MEAN_BATCH_BYTES);
        let mut entries = Vec::new();
        for (at, header, first_id) in walk_headers(mapped, 0) {
            if entries.len() == most {
                return None;
            }
            entries.push(BatchEntry {
                offset: at as u64,
                header,
                first_id,
                record_index: OnceLock::new(),
            });
        }
        Some(BatchTable {
            entries: entries.into_boxed_slice(),
        })
    }

    /// The batches, in file order.
    pub(crate) fn entries(&self) -> &[BatchEntry] {
        &self.entries
    }

    /// The position of the batch whose header starts at `offset`, looked
    /// for at `hint` first (the one after the batch read last).
    pub(crate) fn position(&self, offset: u64, hint: usize) -> Option<usize> {
        if self.entries.get(hint).is_some_and(|e| e.offset == offset) {
            return Some(hint);
        }
        self.entries
            .binary_search_by_key(&offset, |e| e.offset)
            .ok()
    }

    /// The record index of batch `position`, if a search built it.
    pub(crate) fn record_index(&self, position: usize) -> Option<&[u32]> {
        self.entries[position].record_index.get().map(|i| &**i)
    }

    /// Keep `index` as batch `position`'s record index, unless another
    /// search kept one first (the same: the body is immutable).
    pub(crate) fn keep_record_index(&self, position: usize, index: Box<[u32]>) {
        let _ = self.entries[position].record_index.set(index);
    }

    /// Batches whose record index is built.
    #[cfg(test)]
    pub(crate) fn indexed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.record_index.get().is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use sluice_record::{BatchEncoder, Record, Ulid};

    use super::*;

    fn batch(first: u64, records: u64) -> Vec<u8> {
        let mut encoder = BatchEncoder::new();
        encoder.begin();
        for i in 0..records {
            encoder.push(Record {
                id: Ulid::from_parts(first + i, 0),
                flags: 0,
                topic: b"t",
                payload: b"a line",
            });
        }
        encoder.finish().to_vec()
    }

    #[test]
    fn the_walk_finds_every_batch_and_its_first_id() {
        let (a, b) = (batch(10, 3), batch(20, 2));
        let file = [a.clone(), b.clone()].concat();
        let table = BatchTable::walk(&file).unwrap();
        let entries = table.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].offset, entries[1].offset), (0, a.len() as u64));
        assert_eq!(entries[0].header.count, 3);
        assert_eq!(entries[1].body(), a.len() + BATCH_HEADER_BYTES..file.len());
        let first_ids: Vec<_> = entries.iter().map(|e| e.first_id).collect();
        assert_eq!(
            first_ids,
            [
                Some(Ulid::from_parts(10, 0).0),
                Some(Ulid::from_parts(20, 0).0)
            ]
        );
        assert_eq!(table.position(a.len() as u64, 0), Some(1));
        assert_eq!(table.position(a.len() as u64, 1), Some(1));
        assert_eq!(table.position(1, 0), None);
    }

    #[test]
    fn the_walk_stops_at_a_torn_frame_or_a_bad_header() {
        let (a, b) = (batch(10, 3), batch(20, 2));
        let torn = [a.clone(), b[..b.len() - 1].to_vec()].concat();
        assert_eq!(BatchTable::walk(&torn).unwrap().entries().len(), 1);
        let mut bad = [a.clone(), b.clone(), a.clone()].concat();
        bad[a.len()] ^= 0xff;
        assert_eq!(BatchTable::walk(&bad).unwrap().entries().len(), 1);
        assert!(BatchTable::walk(&[]).unwrap().entries().is_empty());
    }

    #[test]
    fn a_file_of_many_small_batches_gets_no_table() {
        let one = batch(10, 1);
        let few = one.repeat(ALWAYS_KEPT);
        assert_eq!(BatchTable::walk(&few).unwrap().entries().len(), ALWAYS_KEPT);
        assert!(BatchTable::walk(&one.repeat(ALWAYS_KEPT + 1)).is_none());
        // Large batches: as many as the file's size allows.
        let large = batch(10, MIN_MEAN_BATCH_BYTES as u64 / 20);
        assert!(large.len() >= MIN_MEAN_BATCH_BYTES);
        let file = large.repeat(ALWAYS_KEPT + 10);
        assert_eq!(
            BatchTable::walk(&file).unwrap().entries().len(),
            ALWAYS_KEPT + 10
        );
    }

    #[test]
    fn a_record_index_is_kept_once() {
        let file = batch(10, 3);
        let table = BatchTable::walk(&file).unwrap();
        assert_eq!(table.record_index(0), None);
        table.keep_record_index(0, vec![0].into());
        table.keep_record_index(0, vec![7].into());
        assert_eq!(table.record_index(0), Some(&[0u32][..]));
        assert_eq!(table.indexed(), 1);
    }
}
