//! Counting matches without returning them: per time bucket
//! ([`Histogram`], `/histogram`) and per topic ([`TopicCounts`],
//! `/topics`).
//!
//! [`count`] gives every matching record's id and topic to a [`Tally`].
//! With an empty query (no text to match; a topic filter is fine), the
//! store's block files that overlap no other planned segment are counted
//! from their block index alone, with no zstd work: a block wholly inside
//! the range may be taken whole from its footer's `count` (a histogram
//! does so when it lies inside one bucket), otherwise its meta gives every
//! record's id (first id and LEB128 deltas) and topic. Everything else
//! (batch files, block files that overlap another segment and may share
//! records with it, ingest segments, and any query with text) runs through
//! the ordinary scan and merge, so copies are dropped there.
//!
//! Counts are exact within one node, but a record committed from an
//! ingester to a store while the count runs may be counted in both (the
//! ingest segment is counted first, so none is missed), as may a record
//! on two nodes of a cluster: counts cannot be deduplicated by id without
//! sending the ids. The index pass and the scan list the store
//! separately: when the scan's listing holds a segment the index pass did
//! not (a compaction wrote it, perhaps from an indexed file), the count
//! starts again before anything is counted.

use std::collections::BTreeMap;

use sluice_record::{Record, Ulid};
use sluice_storage::{Fs, block_segment::BlockMeta, store_segment::open_block_index};

use crate::{
    Matcher,
    exec::{Query, QueryError, RecordSink, Scan, Sources, plan, prepare_forward},
};

/// What a count adds records to.
pub trait Tally {
    /// A whole block of `count` matching records with ids in `[min, max]`,
    /// any topic: add it and return `true`, or return `false` to be given
    /// its records one by one. The default asks for the records.
    fn block(&mut self, min: Ulid, max: Ulid, count: u64) -> bool {
        let _ = (min, max, count);
        false
    }

    /// One matching record.
    fn record(&mut self, id: Ulid, topic: &[u8]);
}

/// What a count read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CountStats {
    /// Store segments counted from their block index.
    pub indexed_segments: u64,
    /// Their blocks taken whole from the footer.
    pub blocks_from_footer: u64,
    /// Their blocks counted from their meta.
    pub blocks_from_meta: u64,
    /// Bytes of block metas read, plus what the scan read.
    pub bytes_read: u64,
    /// Segments or blocks that could not be read, with the reason.
    pub failed_segments: Vec<String>,
    /// Segments where corruption was met.
    pub corrupt_segments: Vec<String>,
}

/// Count the records of `query` (its range, text, topic; not its limit,
/// cursor or direction) on `sources` into `tally`; see the module docs.
pub fn count(
    fs: &dyn Fs,
    sources: Sources<'_>,
    query: &Query,
    scan: &Scan,
    tally: &mut dyn Tally,
) -> Result<CountStats, QueryError> {
    let mut query = query.clone();
    (query.limit, query.after, query.ids) = (None, None, None);
    query.direction = crate::Direction::Forward;
    let mut attempt = 1;
    let (indexed, forward) = loop {
        let (listed, indexed) = match sources.store {
            Some(dir) if matches!(query.matcher, Matcher::All) => {
                indexed_segments(fs, dir, &query, scan)?
            }
            _ => (Vec::new(), Vec::new()),
        };
        let skip: Vec<String> = {
            let mut names: Vec<String> = indexed.iter().map(|(name, _)| name.clone()).collect();
            names.sort();
            names
        };
        let rest = Sources {
            skip: &skip,
            ..sources
        };
        let forward = prepare_forward(fs, rest, std::borrow::Cow::Borrowed(&query), scan)?;
        // A store segment the index pass did not list was written since
        // (by compaction, perhaps from an indexed one): count again from
        // a listing that holds it. The indexed files stay mapped, and the
        // scan's cursors open, so nothing can change under the count now.
        let fresh = forward.segments.iter().any(|s| {
            !s.name.starts_with(crate::exec::INGEST_PREFIX)
                && listed.binary_search(&s.name).is_err()
        });
        if fresh && !indexed.is_empty() && attempt < MAX_ATTEMPTS {
            attempt += 1;
            continue;
        }
        break (indexed, forward);
    };
    let mut stats = CountStats::default();
    let (lower, upper) = query.id_bounds();
    let mut meta = BlockMeta::default();
    for (name, index) in &indexed {
        stats.indexed_segments += 1;
        for (b, block) in index.blocks().iter().enumerate() {
            if block.max < lower || block.min > upper {
                continue;
            }
            if scan
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            {
                return Ok(stats);
            }
            let inside = block.min >= lower && block.max <= upper;
            if inside
                && query.topic.is_none()
                && query.topics.is_none()
                && tally.block(block.min, block.max, u64::from(block.count))
            {
                stats.blocks_from_footer += 1;
                continue;
            }
            match index.read_meta(b, &mut meta) {
                Ok(read) => {
                    stats.bytes_read += read;
                    stats.blocks_from_meta += 1;
                }
                Err(e) => {
                    stats.failed_segments.push(e.to_string());
                    if !stats.corrupt_segments.contains(name) {
                        stats.corrupt_segments.push(name.clone());
                    }
                    continue;
                }
            }
            for (r, &id) in meta.ids().iter().enumerate() {
                if id < lower || id > upper {
                    continue;
                }
                let topic = meta.topic(r);
                if query.topic_ok(topic) {
                    tally.record(id, topic);
                }
            }
        }
    }
    let scanned = forward.run(&mut Counting(tally));
    stats.bytes_read += scanned.bytes_read;
    stats.failed_segments.extend(scanned.failed_segments);
    stats.corrupt_segments.extend(scanned.corrupt_segments);
    Ok(stats)
}

/// How often a count lists the store again because compaction wrote a
/// segment between its index pass and its scan.
const MAX_ATTEMPTS: usize = 8;

/// An indexed block file: its name and its index, mapped.
type Indexed = (
    String,
    std::sync::Arc<sluice_storage::block_segment::BlockSegment>,
);

/// The store segments of `query`'s range (their names, sorted), and those
/// of them that are block files overlapping no other, with their index.
fn indexed_segments(
    fs: &dyn Fs,
    dir: &std::path::Path,
    query: &Query,
    scan: &Scan,
) -> Result<(Vec<String>, Vec<Indexed>), QueryError> {
    // Sorted by smallest id: a segment overlaps another if one before it
    // reaches its min, or the next starts by its max.
    let planned = plan(fs, dir, query)?;
    let mut indexed = Vec::new();
    let mut reach: Option<Ulid> = None;
    for (i, segment) in planned.iter().enumerate() {
        let before = reach.is_some_and(|r| r >= segment.min);
        let after = planned.get(i + 1).is_some_and(|n| n.min <= segment.max);
        reach = reach.max(Some(segment.max));
        if before || after {
            continue;
        }
        // A batch file, or one the scan will report.
        if let Ok(Some(index)) =
            open_block_index(fs, &dir.join(&segment.name), scan.cache.as_deref())
        {
            indexed.push((segment.name.clone(), index));
        }
    }
    let mut listed: Vec<String> = planned.into_iter().map(|s| s.name).collect();
    listed.sort();
    Ok((listed, indexed))
}

/// A [`RecordSink`] that gives each record's id and topic to a tally.
struct Counting<'t>(&'t mut dyn Tally);

impl RecordSink for Counting<'_> {
    fn record(&mut self, record: &Record<'_>) -> bool {
        self.0.record(record.id, record.topic);
        true
    }
}

/// Matching records per time bucket: bucket `k` covers
/// `[from_ms + k * step_ms, from_ms + (k + 1) * step_ms)`, the last one
/// ending at `to_ms` (inclusive, as the query's range is); `step_ms` is
/// `ceil((to_ms - from_ms) / buckets)`, at least 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Start of the range, Unix ms.
    pub from_ms: u64,
    /// End of the range, inclusive, Unix ms.
    pub to_ms: u64,
    /// Width of a bucket, ms.
    pub step_ms: u64,
    /// Records per bucket.
    pub counts: Vec<u64>,
}

/// Buckets of a histogram unless asked otherwise.
pub const DEFAULT_BUCKETS: u32 = 60;
/// The most buckets a histogram has.
pub const MAX_BUCKETS: u32 = 1_000;

impl Histogram {
    /// Empty buckets over `[from_ms, to_ms]`: `buckets` of them (at least
    /// 1), or fewer when the range is shorter than `buckets` ms (as many
    /// as it takes to reach `to_ms`).
    pub fn new(from_ms: u64, to_ms: u64, buckets: u32) -> Histogram {
        let to_ms = to_ms.max(from_ms);
        let span = to_ms - from_ms;
        let wanted = u64::from(buckets.max(1));
        let step_ms = span.div_ceil(wanted).max(1);
        let n = (span / step_ms + 1).min(wanted);
        Histogram {
            from_ms,
            to_ms,
            step_ms,
            counts: vec![0; n as usize],
        }
    }

    /// `buckets` empty buckets (at least 1) of `step_ms` (at least 1)
    /// each, the first starting at `from_ms`: a fixed grid, as LogQL's
    /// range aggregations lay theirs (see `logql::eval`), where `new`
    /// derives the step from the range.
    pub fn grid(from_ms: u64, step_ms: u64, buckets: usize) -> Histogram {
        let step_ms = step_ms.max(1);
        let n = buckets.max(1);
        Histogram {
            from_ms,
            to_ms: from_ms.saturating_add((n as u64).saturating_mul(step_ms) - 1),
            step_ms,
            counts: vec![0; n],
        }
    }

    /// Add `amount` to the bucket of a record at `ms`, if it lies in the
    /// range: the one bucketing rule `/histogram` and LogQL's
    /// `count_over_time` (amount 1) and `bytes_over_time` (the line's
    /// bytes) share.
    #[inline]
    pub fn add(&mut self, ms: u64, amount: u64) {
        if let Some(k) = self.bucket_of(ms) {
            self.counts[k] += amount;
        }
    }

    /// The bucket of a record at `ms`, if it lies in the range.
    pub fn bucket_of(&self, ms: u64) -> Option<usize> {
        if ms < self.from_ms || ms > self.to_ms {
            return None;
        }
        let k = ((ms - self.from_ms) / self.step_ms) as usize;
        Some(k.min(self.counts.len() - 1))
    }

    /// Where bucket `k` starts, Unix ms.
    pub fn start_ms(&self, k: usize) -> u64 {
        self.from_ms + k as u64 * self.step_ms
    }

    /// Records in every bucket.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Tally for Histogram {
    fn block(&mut self, min: Ulid, max: Ulid, count: u64) -> bool {
        match (
            self.bucket_of(min.timestamp_ms()),
            self.bucket_of(max.timestamp_ms()),
        ) {
            (Some(a), Some(b)) if a == b => {
                self.counts[a] += count;
                true
            }
            _ => false,
        }
    }

    fn record(&mut self, id: Ulid, _topic: &[u8]) {
        self.add(id.timestamp_ms(), 1);
    }
}

/// The most distinct topics a count keeps; records of any further topic
/// are counted in [`TopicCounts::other`].
pub const MAX_TOPICS: usize = 10_000;

/// Matching records per topic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopicCounts {
    /// Records per topic, by topic.
    pub topics: BTreeMap<Vec<u8>, u64>,
    /// Records of topics past [`MAX_TOPICS`].
    pub other: u64,
}

impl Tally for TopicCounts {
    fn record(&mut self, _id: Ulid, topic: &[u8]) {
        if let Some(n) = self.topics.get_mut(topic) {
            *n += 1;
        } else if self.topics.len() < MAX_TOPICS {
            self.topics.insert(topic.to_vec(), 1);
        } else {
            self.other += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::{MemFs, StoreSegmentWriter, WorkerPool, block_segment::BlockLayout};
    use std::path::Path;

    #[test]
    fn buckets_cover_the_range_and_the_last_ends_at_to() {
        let h = Histogram::new(1_000, 1_600, 60);
        assert_eq!((h.step_ms, h.counts.len()), (10, 60));
        assert_eq!(h.bucket_of(999), None);
        assert_eq!(h.bucket_of(1_000), Some(0));
        assert_eq!(h.bucket_of(1_009), Some(0));
        assert_eq!(h.bucket_of(1_010), Some(1));
        // `to` is inclusive: it belongs to the last bucket.
        assert_eq!(h.bucket_of(1_600), Some(59));
        assert_eq!(h.bucket_of(1_601), None);
        // Not a multiple: ceil, and the last bucket is shorter.
        let h = Histogram::new(0, 100, 3);
        assert_eq!((h.step_ms, h.counts.len()), (34, 3));
        assert_eq!(h.start_ms(2), 68);
        assert_eq!(h.bucket_of(100), Some(2));
        // A range shorter than the buckets: steps of 1 ms, as many as it
        // takes.
        let h = Histogram::new(0, 9, 60);
        assert_eq!((h.step_ms, h.counts.len()), (1, 10));
        assert_eq!(h.bucket_of(9), Some(9));
        let h = Histogram::new(5, 5, 0);
        assert_eq!((h.step_ms, h.counts.len()), (1, 1));
    }

    proptest::proptest! {
        /// Every time in the range falls in the bucket the contract says:
        /// `start_ms(k) <= ms < start_ms(k) + step_ms`, or the last bucket,
        /// which ends at `to`; no bucket starts past `to`; there are at
        /// most as many as asked.
        #[test]
        fn every_time_falls_in_its_bucket(
            from in 0u64..1_000_000,
            span in 0u64..100_000,
            buckets in 1u32..1_200,
            at in 0.0f64..=1.0,
        ) {
            let to = from + span;
            let h = Histogram::new(from, to, buckets);
            proptest::prop_assert!(h.step_ms >= 1);
            proptest::prop_assert_eq!(h.step_ms, span.div_ceil(u64::from(buckets)).max(1));
            proptest::prop_assert!(h.counts.len() as u64 <= u64::from(buckets));
            proptest::prop_assert!(h.start_ms(h.counts.len() - 1) <= to);
            let ms = from + (span as f64 * at) as u64;
            let k = h.bucket_of(ms).unwrap();
            proptest::prop_assert!(h.start_ms(k) <= ms);
            proptest::prop_assert!(ms < h.start_ms(k) + h.step_ms || k == h.counts.len() - 1);
            proptest::prop_assert_eq!(h.bucket_of(to + 1), None);
        }
    }

    /// Counts from the block index equal counts from a scan, whether the
    /// blocks lie in one bucket or across several, with a topic filter,
    /// and beside an overlapping batch file holding copies.
    #[test]
    fn index_counts_equal_scan_counts() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
        let payload = "y".repeat(2_000);
        let mut ids = Vec::new();
        // A block file of records 0..3000 ms (several blocks), another
        // 10_000.. overlapped by a batch file holding some of the same ids.
        for (base, n) in [(0u64, 3_000u64), (10_000, 500)] {
            let mut w =
                StoreSegmentWriter::blocks(&fs, dir, BlockLayout::InOrder, WorkerPool::inline())
                    .unwrap();
            for i in 0..n {
                let id = Ulid::from_parts(base + i, 7);
                let topic: &[u8] = if i % 3 == 0 { b"a" } else { b"b" };
                w.push(Record {
                    id,
                    flags: 0,
                    topic,
                    payload: payload.as_bytes(),
                })
                .unwrap();
                ids.push((id, topic));
            }
            w.finish().unwrap();
        }
        let mut w = StoreSegmentWriter::batches(&fs, dir).unwrap();
        for i in 400..600u64 {
            let id = Ulid::from_parts(10_000 + i, 7);
            let topic: &[u8] = if i % 3 == 0 { b"a" } else { b"b" };
            w.push(Record {
                id,
                flags: 0,
                topic,
                payload: b"z",
            })
            .unwrap();
            if i >= 500 {
                ids.push((id, topic));
            }
        }
        w.finish().unwrap();
        let scan = Scan::new(WorkerPool::inline());
        let sources = Sources {
            store: Some(dir),
            ..Sources::default()
        };
        for (from, to, buckets, topic) in [
            (0u64, 20_000u64, 1u32, None),
            (0, 20_000, 60, None),
            (100, 10_450, 7, None),
            (0, 20_000, 13, Some(b"a".to_vec())),
        ] {
            let mut query = Query::between(from, to, Matcher::All);
            query.topic = topic.clone();
            let mut h = Histogram::new(from, to, buckets);
            let stats = count(&fs, sources, &query, &scan, &mut h).unwrap();
            assert_eq!(stats.indexed_segments, 1, "{stats:?}");
            let mut want = Histogram::new(from, to, buckets);
            for (id, t) in &ids {
                if topic.as_deref().is_none_or(|w| w == *t) {
                    want.record(*id, t);
                }
            }
            assert_eq!(h, want, "{from}..{to} in {buckets}, topic {topic:?}");
            // One bucket: every block from its footer, nothing read.
            if buckets == 1 {
                assert!(
                    stats.blocks_from_footer > 1 && stats.blocks_from_meta == 0,
                    "{stats:?}"
                );
            }
        }
        let mut topics = TopicCounts::default();
        count(
            &fs,
            sources,
            &Query::between(0, 20_000, Matcher::All),
            &scan,
            &mut topics,
        )
        .unwrap();
        let a = ids.iter().filter(|(_, t)| *t == b"a").count() as u64;
        assert_eq!(topics.topics.get(&b"a"[..]), Some(&a));
        assert_eq!(topics.topics.get(&b"b"[..]), Some(&(ids.len() as u64 - a)));
        // Ingest segments are scanned beside the index.
        let ingest = Path::new("/ingest");
        sluice_storage::Fs::create_dir_all(&fs, ingest).unwrap();
        crate::newest::tests::ingest_file(
            &fs,
            &ingest.join("1.active"),
            &[(5, "x"), (15_000, "y")],
        );
        let names = [sluice_storage::LiveSegment::named(vec![
            ingest.join("1.active"),
        ])];
        let with_ingest = Sources {
            store: Some(dir),
            ingest: &names,
            ..Sources::default()
        };
        let mut h = Histogram::new(0, 20_000, 2);
        let stats = count(
            &fs,
            with_ingest,
            &Query::between(0, 20_000, Matcher::All),
            &scan,
            &mut h,
        )
        .unwrap();
        assert_eq!(stats.indexed_segments, 1);
        let early = ids
            .iter()
            .filter(|(id, _)| id.timestamp_ms() < 10_000)
            .count() as u64;
        assert_eq!(h.counts, [early + 1, ids.len() as u64 - early + 1]);
        // With text, everything is scanned.
        let mut h = Histogram::new(0, 20_000, 4);
        let query = Query::between(0, 20_000, Matcher::new("z", false, false).unwrap());
        let stats = count(&fs, sources, &query, &scan, &mut h).unwrap();
        assert_eq!(stats.indexed_segments, 0);
        assert_eq!(h.total(), 200);
    }
}
