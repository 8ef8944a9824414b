//! Newest first: a [`Direction::Backward`] query returns the newest
//! `limit` matches in descending id order, reading only as much as it
//! needs.
//!
//! The range is read in *windows* of ids from its newest end. A window is
//! an ordinary forward scan of the id range `[cut, hi]` (the segments and
//! blocks outside it are pruned, by their names and by the block index),
//! whose matches go to a ring that keeps the last `remaining`; they leave
//! newest first, then the next window ends just below `cut`. Windows do
//! not overlap, so the concatenation of their reversed outputs is in
//! descending order; the query stops once `limit` matches are out or the
//! range's start is reached.
//!
//! Where to cut: the store's block index says where records lie. Walking
//! store segments from the newest, each block file's footer gives every
//! block's smallest id and count, and a batch file counts as about one
//! record per [`BATCH_FILE_BYTES_PER_RECORD`] of its size from its
//! smallest id; the cut is the start of the newest chunk at which
//! `want` records lie above it. `want` is what is still missing at first,
//! and grows by [`GROWTH`] at every window, so a selective query needs
//! `O(log)` windows, and the newest `limit` lines of a week cost about
//! what they cost over the last minute: the blocks holding them, plus at
//! most the blocks of the last window's overshoot. Ingest segments have no
//! index: every window reads them (filtered by id), which is cheap as they
//! are small and recent. Nor do batch files: one that overlaps a window is
//! read from its start up to the window's end (the consumer writes them,
//! and compaction soon turns them into block files).
//!
//! Memory: the forward scan's, plus the ring of at most
//! [`MAX_BACKWARD_LIMIT`] records, whose buffers are reused across
//! windows.
//!
//! In a backward query, a progress mark means "every record with an id at
//! or above this one was sent": a node says so after each window.

use std::{borrow::Cow, collections::VecDeque, time::Instant};

use sluice_record::{OwnedRecord, Record, Ulid};
use sluice_storage::{Fs, store_segment::list_segments, store_segment::open_block_index};

use crate::exec::{
    Direction, Forward, Query, QueryError, QueryStats, RecordSink, Scan, Sources, prepare_forward,
};

/// The largest `limit` of a newest-first query: its matches are held in
/// memory until their window is read.
pub const MAX_BACKWARD_LIMIT: u64 = 100_000;

/// How much the records wanted from a window grow at each window.
pub const GROWTH: u64 = 4;

/// A batch file (no index) is taken to hold one record per this many
/// bytes when windows are cut.
pub const BATCH_FILE_BYTES_PER_RECORD: u64 = 128;

/// A newest-first query, its first window planned and opened.
pub(crate) struct Backward<'q> {
    fs: &'q dyn Fs,
    sources: Sources<'q>,
    query: &'q Query,
    scan: Scan,
    limit: u64,
    /// The first window, and its cut.
    first: Option<(Forward<'static>, Ulid)>,
    /// The query's lowest id.
    lower: Ulid,
    /// The next window's highest id.
    hi: Ulid,
    /// Records the next window should hold, by the index.
    want: u64,
    started: Instant,
}

impl<'q> Backward<'q> {
    /// Check the limit and plan and open the first window.
    pub(crate) fn prepare(
        fs: &'q dyn Fs,
        sources: Sources<'q>,
        query: &'q Query,
        scan: &Scan,
    ) -> Result<Self, QueryError> {
        let started = Instant::now();
        let limit = match query.limit {
            Some(limit) if (1..=MAX_BACKWARD_LIMIT).contains(&limit) => limit,
            other => {
                return Err(QueryError::BackwardLimit {
                    limit: other,
                    max: MAX_BACKWARD_LIMIT,
                });
            }
        };
        if query.from_ms > query.to_ms {
            return Err(QueryError::EmptyRange {
                from_ms: query.from_ms,
                to_ms: query.to_ms,
            });
        }
        let (lower, hi) = query.id_bounds();
        let mut backward = Backward {
            fs,
            sources,
            query,
            scan: scan.clone(),
            limit,
            first: None,
            lower,
            hi,
            want: limit,
            started,
        };
        if lower <= hi {
            backward.first = Some(backward.window()?);
        }
        Ok(backward)
    }

    /// Plan and open the window that ends at `hi`.
    fn window(&self) -> Result<(Forward<'static>, Ulid), QueryError> {
        let cut = self.cut()?;
        let mut window = self.query.clone();
        window.direction = Direction::Forward;
        window.limit = None;
        window.ids = Some((cut, self.hi));
        let forward = prepare_forward(self.fs, self.sources, Cow::Owned(window), &self.scan)?;
        Ok((forward, cut))
    }

    /// Where the window that ends at `hi` starts: see the module docs.
    fn cut(&self) -> Result<Ulid, QueryError> {
        let Some(dir) = self.sources.store else {
            return Ok(self.lower);
        };
        let (lower, hi) = (self.lower, self.hi);
        let (mut segments, _) = list_segments(self.fs, dir)?;
        segments.retain(|s| s.max >= lower && s.min <= hi);
        segments.sort_by_key(|s| std::cmp::Reverse(s.max));
        let mut chunks = Vec::new();
        for segment in &segments {
            // A segment wholly below a cut with enough above it changes
            // nothing.
            if let Some(cut) = enough(&mut chunks, self.want)
                && segment.max < cut
            {
                return Ok(cut);
            }
            let path = dir.join(&segment.name);
            match open_block_index(self.fs, &path, self.scan.cache.as_deref()) {
                Ok(Some(index)) => chunks.extend(
                    index
                        .blocks()
                        .iter()
                        .filter(|b| b.max >= lower && b.min <= hi)
                        .map(|b| (b.min.max(lower), u64::from(b.count))),
                ),
                Ok(None) => chunks.push((
                    segment.min.max(lower),
                    (segment.bytes / BATCH_FILE_BYTES_PER_RECORD).max(1),
                )),
                // The window's scan meets it again and reports it.
                Err(_) => chunks.push((segment.min.max(lower), 1)),
            }
        }
        Ok(enough(&mut chunks, self.want).unwrap_or(lower))
    }

    /// Read windows from the newest until `limit` matches went to `sink`,
    /// newest first, or the range is read.
    pub(crate) fn run(mut self: Box<Self>, sink: &mut dyn RecordSink) -> QueryStats {
        let mut stats = QueryStats::default();
        let mut ring = Ring::default();
        let mut remaining = self.limit;
        let mut next = self.first.take();
        while let Some((window, cut)) = next.take() {
            ring.reset(remaining);
            add(&mut stats, window.run(&mut ring));
            let mut stopped = false;
            for record in ring.records.iter().rev() {
                remaining -= 1;
                if !sink.record(&record.as_record()) {
                    stopped = true;
                    break;
                }
            }
            let cancelled = self
                .scan
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed));
            if stopped || cancelled || remaining == 0 || cut <= self.lower {
                break;
            }
            // Every record at or above the cut was sent.
            sink.progress(cut);
            self.hi = Ulid(cut.0 - 1);
            self.want = remaining.max(self.want.saturating_mul(GROWTH));
            next = match self.window() {
                Ok(window) => Some(window),
                Err(e) => {
                    stats
                        .failed_segments
                        .push(format!("the ids below {cut}: {e}"));
                    None
                }
            };
        }
        stats.records_matched = self.limit - remaining;
        stats.elapsed_ms = self.started.elapsed().as_millis() as u64;
        stats
    }
}

/// The start of the newest chunk (start id, records) at which `want`
/// records lie at or above it, if any.
fn enough(chunks: &mut [(Ulid, u64)], want: u64) -> Option<Ulid> {
    chunks.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
    let mut total = 0u64;
    for &(start, records) in chunks.iter() {
        total = total.saturating_add(records);
        if total >= want {
            return Some(start);
        }
    }
    None
}

/// Add one window's counts to the query's.
fn add(total: &mut QueryStats, window: QueryStats) {
    total.segments += window.segments;
    total.bytes += window.bytes;
    total.segments_read += window.segments_read;
    total.bytes_read += window.bytes_read;
    total.records_scanned += window.records_scanned;
    total.duplicates_removed += window.duplicates_removed;
    total.failed_segments.extend(window.failed_segments);
    for name in window.corrupt_segments {
        if !total.corrupt_segments.contains(&name) {
            total.corrupt_segments.push(name);
        }
    }
    total.corrupt_blocks += window.corrupt_blocks;
}

/// The last `cap` records a window's scan gave, in id order; buffers are
/// reused, so a query allocates for at most `limit` records.
#[derive(Default)]
struct Ring {
    records: VecDeque<OwnedRecord>,
    spare: Vec<OwnedRecord>,
    cap: usize,
}

impl Ring {
    fn reset(&mut self, cap: u64) {
        self.spare.extend(self.records.drain(..));
        self.cap = usize::try_from(cap).unwrap_or(usize::MAX);
    }
}

impl RecordSink for Ring {
    fn record(&mut self, record: &Record<'_>) -> bool {
        if self.cap == 0 {
            return false;
        }
        let slot = if self.records.len() == self.cap {
            self.records.pop_front()
        } else {
            self.spare.pop()
        };
        let owned = match slot {
            Some(mut owned) => {
                owned.id = record.id;
                owned.flags = record.flags;
                owned.topic.clear();
                owned.topic.extend_from_slice(record.topic);
                owned.payload.clear();
                owned.payload.extend_from_slice(record.payload);
                owned
            }
            None => record.to_owned_record(),
        };
        self.records.push_back(owned);
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Matcher, exec::execute};
    use proptest::prelude::*;
    use sluice_storage::{
        MemFs, StoreSegmentWriter, WorkerPool, block_segment::BlockLayout,
        store_segment::SegmentKind,
    };
    use std::path::Path;

    /// One store segment of the records `(ms, n)`, payload `p<ms>.<n>`
    /// and `match` on every third.
    fn segment(fs: &MemFs, dir: &Path, kind: SegmentKind, ids: &[(u64, u128)]) {
        let mut w = match kind {
            SegmentKind::Batches => StoreSegmentWriter::batches(fs, dir).unwrap(),
            SegmentKind::Blocks => {
                StoreSegmentWriter::blocks(fs, dir, BlockLayout::InOrder, WorkerPool::inline())
                    .unwrap()
            }
        };
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        for (ms, n) in ids {
            let payload = format!("p{ms}.{n}{}", if ms % 3 == 0 { " match" } else { "" });
            w.push(Record {
                id: Ulid::from_parts(ms, n),
                flags: 0,
                topic: b"t",
                payload: payload.as_bytes(),
            })
            .unwrap();
        }
        w.finish().unwrap();
    }

    fn run(fs: &MemFs, dir: &Path, query: &Query) -> (Vec<Ulid>, QueryStats) {
        let scan = Scan::new(WorkerPool::inline());
        let mut got = Vec::new();
        let stats = execute(fs, dir, query, &scan, &mut |r: &Record<'_>| {
            got.push(r.id);
            true
        })
        .unwrap();
        (got, stats)
    }

    fn backward(mut query: Query, limit: u64) -> Query {
        query.direction = Direction::Backward;
        query.limit = Some(limit);
        query
    }

    proptest! {
        /// Newest first equals the last `limit` of the forward result,
        /// reversed, over overlapping batch and block files with copies.
        #[test]
        fn backward_is_the_reversed_tail_of_forward(
            segments in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec((1_000u64..1_200, 0u128..3), 0..60)),
                0..6,
            ),
            limit in 1u64..80,
            literal in any::<bool>(),
            from in 900u64..1_100,
            after in proptest::option::of(1_000u64..1_150),
        ) {
            let fs = MemFs::new();
            let dir = Path::new("/store");
            sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
            for (blocks, ids) in &segments {
                if ids.is_empty() {
                    continue;
                }
                let kind = if *blocks { SegmentKind::Blocks } else { SegmentKind::Batches };
                segment(&fs, dir, kind, ids);
            }
            let matcher = Matcher::new(if literal { "match" } else { "" }, false, false).unwrap();
            let mut query = Query::between(from, 1_150, matcher);
            query.after = after.map(|ms| Ulid::from_parts(ms, 1));
            let (forward, _) = run(&fs, dir, &query);
            let (got, stats) = run(&fs, dir, &backward(query, limit));
            let want: Vec<Ulid> = forward.iter().rev().take(limit as usize).copied().collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(stats.records_matched, want.len() as u64);
        }
    }

    /// The newest records of many blocks are read from the last blocks
    /// alone: bytes read are bounded by the blocks that hold them, not
    /// by the range.
    #[test]
    fn the_newest_records_are_read_from_the_newest_blocks() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
        // Ten block files of 2,000 records (3 KB payloads: several
        // blocks each).
        let payload = "x".repeat(3_000);
        for file in 0..10u64 {
            let mut w =
                StoreSegmentWriter::blocks(&fs, dir, BlockLayout::InOrder, WorkerPool::inline())
                    .unwrap();
            for i in 0..2_000u64 {
                w.push(Record {
                    id: Ulid::from_parts(1_000 + file * 10_000 + i, 0),
                    flags: 0,
                    topic: b"t",
                    payload: payload.as_bytes(),
                })
                .unwrap();
            }
            w.finish().unwrap();
        }
        let all = Query::between(0, 1_000_000, Matcher::All);
        let (_, whole) = run(&fs, dir, &all);
        let (got, newest) = run(&fs, dir, &backward(all.clone(), 10));
        assert_eq!(got.len(), 10);
        assert_eq!(got[0], Ulid::from_parts(1_000 + 9 * 10_000 + 1_999, 0));
        assert!(got.is_sorted_by(|a, b| a > b));
        // One in-order block holds about 1 MiB of text.
        assert!(
            newest.bytes_read <= 2 << 20,
            "read {} bytes of {} for the newest 10",
            newest.bytes_read,
            whole.bytes_read
        );
        assert!(newest.bytes_read * 20 < whole.bytes_read);
    }

    /// An ingest segment of `ids` (ms, payload) in the order given, one
    /// batch per record.
    pub(crate) fn ingest_file(fs: &MemFs, path: &Path, ids: &[(u64, &str)]) {
        let mut writer = sluice_storage::SegmentWriter::create(fs, path).unwrap();
        let mut encoder = sluice_record::BatchEncoder::new();
        for (ms, payload) in ids {
            let id = Ulid::from_parts(*ms, 1);
            encoder.begin();
            encoder.push(Record {
                id,
                flags: 0,
                topic: b"i",
                payload: payload.as_bytes(),
            });
            writer.append(encoder.finish(), 1, id, id).unwrap();
        }
    }

    /// Ingest segments, in order or not, are read in every window with the
    /// store's segments.
    #[test]
    fn ingest_segments_count_newest_first() {
        let fs = MemFs::new();
        let (store, ingest) = (Path::new("/store"), Path::new("/ingest"));
        sluice_storage::Fs::create_dir_all(&fs, store).unwrap();
        sluice_storage::Fs::create_dir_all(&fs, ingest).unwrap();
        let ids: Vec<(u64, u128)> = (0..300).map(|i| (1_000 + i * 3, 0)).collect();
        segment(&fs, store, SegmentKind::Blocks, &ids);
        ingest_file(&fs, &ingest.join("1.active"), &[(1_500, "a"), (1_950, "b")]);
        ingest_file(
            &fs,
            &ingest.join("2.flushed"),
            &[(1_902, "c"), (1_001, "d")],
        );
        let names = [
            sluice_storage::LiveSegment::named(vec![ingest.join("1.active")]),
            sluice_storage::LiveSegment::named(vec![ingest.join("2.flushed")]),
        ];
        let sources = Sources {
            store: Some(store),
            ingest: &names,
            ..Sources::default()
        };
        let scan = Scan::new(WorkerPool::inline());
        let all = Query::between(0, 10_000, Matcher::All);
        let mut forward = Vec::new();
        crate::exec::prepare_sources(&fs, sources, &all, &scan)
            .unwrap()
            .run(&mut |r: &Record<'_>| {
                forward.push(r.id);
                true
            });
        assert_eq!(forward.len(), 304);
        for limit in [1, 5, 40, 304, 400] {
            let query = backward(all.clone(), limit);
            let mut got = Vec::new();
            crate::exec::prepare_sources(&fs, sources, &query, &scan)
                .unwrap()
                .run(&mut |r: &Record<'_>| {
                    got.push(r.id);
                    true
                });
            let want: Vec<Ulid> = forward.iter().rev().take(limit as usize).copied().collect();
            assert_eq!(got, want, "limit {limit}");
        }
    }

    #[test]
    fn a_backward_query_needs_a_limit() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
        let scan = Scan::new(WorkerPool::inline());
        let mut query = Query::between(0, 10, Matcher::All);
        query.direction = Direction::Backward;
        let err = execute(&fs, dir, &query, &scan, &mut |_: &Record<'_>| true).unwrap_err();
        assert!(err.is_the_query());
        assert_eq!(
            err.to_string(),
            format!(
                "a newest-first query needs a limit of 1 to {MAX_BACKWARD_LIMIT} records, not none: pass limit=N"
            )
        );
    }

    #[test]
    fn enough_finds_the_newest_cut() {
        let mut chunks = [(Ulid(10), 5), (Ulid(30), 2), (Ulid(20), 4)];
        assert_eq!(enough(&mut chunks, 2), Some(Ulid(30)));
        assert_eq!(enough(&mut chunks, 3), Some(Ulid(20)));
        assert_eq!(enough(&mut chunks, 11), Some(Ulid(10)));
        assert_eq!(enough(&mut chunks, 12), None);
    }
}
