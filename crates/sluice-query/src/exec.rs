//! Planning and executing a query over a store directory.

use std::{ops::ControlFlow, path::Path, sync::Arc, time::Instant};

use sluice_record::{Record, Ulid};
use sluice_storage::{
    Fs, LiveSegment, SegmentCache, SegmentMeta, Selected, StorageError, WorkerPool,
    block_segment::{Cancel, RecordFilter},
    store_segment::ScanOptions,
    term_filter::AnyOfProbe,
};

use sluice_storage::merge::{Merge, Verdict};

use crate::matcher::Matcher;

/// Why a query could not run. A segment that fails while it is read does
/// not fail the query: it is reported in [`QueryStats`].
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The store directory could not be listed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `from_ms` is after `to_ms`.
    #[error("the time range is empty: from {from_ms} is after to {to_ms}")]
    EmptyRange {
        /// The query's start, Unix ms.
        from_ms: u64,
        /// The query's end, Unix ms.
        to_ms: u64,
    },
    /// The time range holds more segments than a query opens at once.
    #[error(
        "the time range holds {segments} store segments, more than a query opens at once \
         ({limit}): narrow it with from and to"
    )]
    PlanTooLarge {
        /// Segments in the time range.
        segments: usize,
        /// [`MAX_PLAN_SEGMENTS`].
        limit: usize,
    },
    /// A newest-first query without a limit, or with one too large.
    #[error(
        "a newest-first query needs a limit of 1 to {max} records, not {}: pass limit=N",
        .limit.map_or("none".to_string(), |l| l.to_string())
    )]
    BackwardLimit {
        /// The limit asked for.
        limit: Option<u64>,
        /// [`crate::newest::MAX_BACKWARD_LIMIT`].
        max: u64,
    },
}

impl QueryError {
    /// Whether the query itself is at fault (its range), not the store.
    pub fn is_the_query(&self) -> bool {
        matches!(
            self,
            QueryError::EmptyRange { .. }
                | QueryError::PlanTooLarge { .. }
                | QueryError::BackwardLimit { .. }
        )
    }
}

/// The most segments one query opens: every segment of a plan is opened
/// (a mapping, or for a batch file a descriptor) before any is read. At
/// compaction's 256 MiB of records a segment, that is 2.5 TiB of records
/// in one query.
pub const MAX_PLAN_SEGMENTS: usize = 10_000;

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Start of the time range, inclusive, Unix milliseconds.
    pub from_ms: u64,
    /// End of the time range, inclusive, Unix milliseconds.
    pub to_ms: u64,
    /// What a record's payload must match.
    pub matcher: Matcher,
    /// Only records of this topic (compared byte for byte); `None`: every
    /// topic.
    pub topic: Option<Vec<u8>>,
    /// Only records of one of these topics (sorted, unique), as well:
    /// what a LogQL selector chose; `None`: every topic.
    pub topics: Option<Arc<[Vec<u8>]>>,
    /// Stop after this many records; `None`: no limit.
    pub limit: Option<u64>,
    /// Resume cursor: only records with ids strictly greater.
    pub after: Option<Ulid>,
    /// Oldest first (the default) or newest first; a newest-first query
    /// needs a `limit` (see [`crate::newest`]).
    pub direction: Direction,
    /// Only records in this id range (inclusive), within the time range:
    /// the window a newest-first query reads; `None`: the whole range.
    pub ids: Option<(Ulid, Ulid)>,
}

/// The order in which a query returns its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Direction {
    /// Ascending ids, oldest first.
    #[default]
    Forward,
    /// Descending ids, newest first: the newest `limit` matches.
    Backward,
}

impl Direction {
    /// Whether records come newest first.
    pub fn is_backward(self) -> bool {
        self == Direction::Backward
    }
}

impl Query {
    /// Every record in `[from_ms, to_ms]` that `matcher` accepts: any
    /// topic, no limit, no resume cursor.
    pub fn between(from_ms: u64, to_ms: u64, matcher: Matcher) -> Query {
        Query {
            from_ms,
            to_ms,
            matcher,
            topic: None,
            topics: None,
            limit: None,
            after: None,
            direction: Direction::Forward,
            ids: None,
        }
    }

    /// Whether a record of `topic` is one the query reads (`topic` and
    /// `topics` both allow it).
    #[inline]
    pub fn topic_ok(&self, topic: &[u8]) -> bool {
        self.topic.as_deref().is_none_or(|t| t == topic)
            && self
                .topics
                .as_ref()
                .is_none_or(|set| set.binary_search_by(|t| t.as_slice().cmp(topic)).is_ok())
    }

    /// The id range the query covers: its time range, narrowed by `after`
    /// and `ids`. Ids sort by time, so a time range is an id range.
    pub fn id_bounds(&self) -> (Ulid, Ulid) {
        let mut lower = Ulid::from_parts(self.from_ms, 0);
        if let Some(after) = self.after {
            lower = lower.max(Ulid(after.0.saturating_add(1)));
        }
        let mut upper = Ulid::from_parts(self.to_ms, u128::MAX);
        if let Some((min, max)) = self.ids {
            lower = lower.max(min);
            upper = upper.min(max);
        }
        (lower, upper)
    }
}

/// What a query runs with besides itself: where blocks are decoded, the
/// cache of opened block files, and the flag that stops it.
#[derive(Clone)]
pub struct Scan {
    /// The node's worker pool.
    pub workers: Arc<WorkerPool>,
    /// A long-lived store passes its own, so queries share mappings and
    /// verified filters; `None` opens each file afresh.
    pub cache: Option<Arc<SegmentCache>>,
    /// Raised when the query's client went away: every cursor stops at its
    /// next block or batch, and the query returns what it found so far.
    pub cancel: Option<Cancel>,
}

impl Scan {
    /// Decode on `workers`, with no cache and no cancel flag.
    pub fn new(workers: Arc<WorkerPool>) -> Scan {
        Scan {
            workers,
            cache: None,
            cancel: None,
        }
    }
}

/// The plan and counts of one query, as `/query?stats=true` reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryStats {
    /// Segments planned: those whose id range overlaps the time range.
    pub segments: u64,
    /// Their size on disk in bytes.
    pub bytes: u64,
    /// Planned segments the merge reached and read (a query that stops
    /// early reads fewer).
    pub segments_read: u64,
    /// Bytes of segments read: a block file counts the filters, metas and
    /// frames it read, not the blocks it pruned.
    pub bytes_read: u64,
    /// Records the merge read, plus those the cursors' prefilters (the
    /// literal, the term filters, a regex run where blocks are decoded)
    /// passed over; blocks outside the time range are not counted.
    pub records_scanned: u64,
    /// Records sent to the sink.
    pub records_matched: u64,
    /// Matching records dropped because another segment held the same id
    /// (a segment consumed twice, or a compaction cut short).
    pub duplicates_removed: u64,
    /// Segments that could not be read, with the reason.
    pub failed_segments: Vec<String>,
    /// Segments in which corruption was met (their readable records were
    /// still returned), by name.
    pub corrupt_segments: Vec<String>,
    /// Corrupt blocks passed over.
    pub corrupt_blocks: u64,
    /// Wall time of the query, planning included, in milliseconds.
    pub elapsed_ms: u64,
}

/// Where matching records go. Returning `false` stops the query (the
/// client went away, or a limit was reached).
pub trait RecordSink {
    /// Take one matching record, in id order (descending in a
    /// [`Direction::Backward`] query); `false` stops the query.
    fn record(&mut self, record: &Record<'_>) -> bool;

    /// Every record with an id up to and including `done` was given to
    /// [`record`](Self::record) already or does not match: told now and
    /// then as the scan moves on, even when nothing matches, so a server
    /// can say how far it got. In a [`Direction::Backward`] query it means
    /// the opposite side: every record with an id at or *above* `done`.
    /// The default ignores it.
    fn progress(&mut self, done: Ulid) {
        let _ = done;
    }
}

impl<F: FnMut(&Record<'_>) -> bool> RecordSink for F {
    fn record(&mut self, record: &Record<'_>) -> bool {
        self(record)
    }
}

/// Where a query reads on one node: its store directory, the segment files
/// its ingest log still holds, or both.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// The store directory, on a node with the store role.
    pub store: Option<&'a Path>,
    /// Ingest segments not yet committed to a store (flushed, lent, or
    /// still being written), on a node with the ingest role: for each, the
    /// names it may have, tried in order (see [`LiveSegment`]), and the id
    /// floor its writer keeps, if any. A segment gone under every name (a
    /// store committed it) is passed over, and so is one whose floor is
    /// above the query's range, without reading it.
    pub ingest: &'a [LiveSegment],
    /// Store segments (by name, sorted) to pass over: a count reads them
    /// from their block index instead (see [`crate::count`]).
    pub skip: &'a [String],
}

/// Run `query` over the store segments in `dir`, sending matches in id
/// order to `sink`. The query stops early, with the counts so far, when the
/// sink returns `false`, the limit is reached, or `scan.cancel` is raised.
pub fn execute(
    fs: &dyn Fs,
    dir: &Path,
    query: &Query,
    scan: &Scan,
    sink: &mut dyn RecordSink,
) -> Result<QueryStats, QueryError> {
    Ok(prepare(fs, dir, query, scan)?.run(sink))
}

/// A query whose plan is made and whose segments are open: what can fail
/// before any record is read has not. (A newest-first query has its first
/// window planned and opened; see [`crate::newest`].)
pub struct Prepared<'q> {
    inner: Planned<'q>,
    /// Holds compaction's jobs back from the cores until the query is
    /// run (or dropped): see `sluice_storage::workers`.
    _scanning: sluice_storage::workers::ForegroundScan,
}

enum Planned<'q> {
    Forward(Box<Forward<'q>>),
    Backward(Box<crate::newest::Backward<'q>>),
}

/// A forward query (or one window of a backward one), planned and opened.
pub(crate) struct Forward<'q> {
    query: std::borrow::Cow<'q, Query>,
    pub(crate) segments: Vec<SegmentMeta>,
    cursors: Vec<Option<OpenedCursor>>,
    started: Instant,
}

/// Plan `query` over the store segments in `dir` and open them (see
/// [`execute`]); [`Prepared::run`] reads them. A server calls this before
/// it answers, so that a query it cannot run gets an error, not a
/// truncated stream.
pub fn prepare<'q>(
    fs: &'q dyn Fs,
    dir: &'q Path,
    query: &'q Query,
    scan: &Scan,
) -> Result<Prepared<'q>, QueryError> {
    let sources = Sources {
        store: Some(dir),
        ingest: &[],
        ..Sources::default()
    };
    prepare_sources(fs, sources, query, scan)
}

/// [`prepare`] over a node's [`Sources`]: its store, its ingest segments,
/// or both, merged into one id-ordered stream.
pub fn prepare_sources<'q>(
    fs: &'q dyn Fs,
    sources: Sources<'q>,
    query: &'q Query,
    scan: &Scan,
) -> Result<Prepared<'q>, QueryError> {
    let scanning = scan.workers.foreground_scan();
    let inner = match query.direction {
        Direction::Forward => Planned::Forward(Box::new(prepare_forward(
            fs,
            sources,
            std::borrow::Cow::Borrowed(query),
            scan,
        )?)),
        Direction::Backward => Planned::Backward(Box::new(crate::newest::Backward::prepare(
            fs, sources, query, scan,
        )?)),
    };
    Ok(Prepared {
        inner,
        _scanning: scanning,
    })
}

/// Plan and open `query` as a forward scan.
pub(crate) fn prepare_forward<'q>(
    fs: &dyn Fs,
    sources: Sources<'_>,
    query: std::borrow::Cow<'q, Query>,
    scan: &Scan,
) -> Result<Forward<'q>, QueryError> {
    let started = Instant::now();
    // A regex runs where blocks are decoded, on every core, over each
    // block's text as a whole (its own prefilters find the required
    // literal), and over each batch body of fresh data (on the payloads
    // holding its required literal, or over the body when it has none and
    // does not look around); a plain literal is found there already. A
    // chain of line filters holds negations and several parts, which only
    // the whole matcher decides: it runs per record where blocks are
    // decoded. (The merge's filter below tests the matcher again on the
    // records of cursors that did not select them by it, see
    // `selected_by_the_matcher`: it covers what a cursor returned
    // unfiltered.)
    let filter: Option<RecordFilter> = match &query.matcher {
        Matcher::Chain(_) => {
            let matcher = query.matcher.clone();
            Some(Arc::new(move |payload: &[u8]| matcher.is_match(payload)))
        }
        Matcher::All | Matcher::Literal(_) | Matcher::Regex { .. } => None,
    };
    let options = ScanOptions {
        workers: scan.workers.clone(),
        cancel: scan.cancel.clone(),
        literal: query.matcher.required_literal().cloned(),
        time_ms: Some((query.from_ms, query.to_ms)),
        ids: query.ids,
        skip_corrupt_blocks: true,
        filter,
        any_of: query
            .matcher
            .required_any_of()
            .map(|literals| Arc::new(AnyOfProbe::new(literals))),
        cache: scan.cache.clone(),
        text: query.matcher.text_matcher(),
    };
    let (segments, cursors) = open_plan(fs, sources, &query, &options)?;
    Ok(Forward {
        query,
        segments,
        cursors,
        started,
    })
}

/// What a cursor opened with `matcher`'s [`ScanOptions`] selected its
/// records by when they need no test against `matcher` again: a literal's
/// own literal, or a regex's text matcher (the one `text` holds); a chain
/// (negations, several parts) is decided only by the whole matcher.
fn selected_by_the_matcher(matcher: &Matcher) -> Option<Selected> {
    match matcher {
        Matcher::Literal(_) => Some(Selected::Literal),
        Matcher::Regex { .. } => Some(Selected::Text),
        Matcher::All | Matcher::Chain(_) => None,
    }
}

impl Prepared<'_> {
    /// Read the segments, sending matches in id order (descending for a
    /// backward query) to `sink`; see [`execute`].
    pub fn run(self, sink: &mut dyn RecordSink) -> QueryStats {
        match self.inner {
            Planned::Forward(forward) => forward.run(sink),
            Planned::Backward(backward) => backward.run(sink),
        }
    }
}

impl Forward<'_> {
    /// Read the segments, sending matches in id order to `sink`.
    pub(crate) fn run(self, sink: &mut dyn RecordSink) -> QueryStats {
        let Forward {
            query,
            segments,
            mut cursors,
            started,
        } = self;
        let mut stats = QueryStats {
            segments: segments.len() as u64,
            bytes: segments.iter().map(|s| s.bytes).sum(),
            ..QueryStats::default()
        };
        let mins: Vec<Ulid> = segments.iter().map(|s| s.min).collect();
        let inputs_ahead = inputs_read_ahead(&query);
        let mut open = |i: usize| open_reading_ahead(&mut cursors, i, inputs_ahead);
        let (lower, upper) = query.id_bounds();
        // `test_matcher` false: for the cursors that selected their records
        // by the query's own literal or text matcher (a regex, `-i`),
        // whose records match already.
        let verdict = |r: &Record<'_>, test_matcher: bool| {
            if r.id < lower {
                Verdict::Skip
            } else if r.id > upper {
                Verdict::Stop
            } else if !query.topic_ok(r.topic)
                || (test_matcher && !query.matcher.is_match(r.payload))
            {
                Verdict::Skip
            } else {
                Verdict::Keep
            }
        };
        let filter = |r: &Record<'_>| verdict(r, true);
        let matches_already = |r: &Record<'_>| verdict(r, false);
        let mut merge = Merge::new(&mins, &mut open, &filter);
        if let Some(by) = selected_by_the_matcher(&query.matcher) {
            merge = merge.with_filter_for_cursors_selected_by(by, &matches_already);
        }
        let limit = query.limit.unwrap_or(u64::MAX);
        let mut emitted = 0u64;
        let sink = std::cell::RefCell::new(sink);
        merge.run_with_progress(
            |record| {
                emitted += 1;
                if !sink.borrow_mut().record(record) || emitted >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
            |done| sink.borrow_mut().progress(done),
        );
        let merged = merge.stats;
        if let Some((idx, id, last)) = merged.first_out_of_order {
            // Never expected: the plan's smallest ids and each input's
            // order are what the merge's dedupe relies on. Say which input
            // broke them, and the plan, so the cause can be found.
            let plan: Vec<String> = segments
                .iter()
                .map(|s| format!("{} (min {})", s.name, s.min))
                .collect();
            tracing::error!(
                segment = %segments[idx].name,
                declared_min = %segments[idx].min,
                id = %id,
                after = %last,
                records = merged.out_of_order,
                plan = ?plan,
                "query merge: records came out of id order (an input's smallest id was wrong or its ids do not increase); duplicate ids among them were not removed"
            );
        }
        for (idx, err) in &merged.failed {
            tracing::error!(segment = %segments[*idx].name, error = %err, "segment could not be read; the query skipped it");
        }
        stats.segments_read = merged.segments_opened;
        stats.bytes_read = merged.bytes_read;
        stats.records_scanned = merged.records_scanned;
        stats.records_matched = emitted;
        stats.duplicates_removed = merged.duplicates_removed;
        stats.corrupt_blocks = merged.corrupt_blocks;
        stats.corrupt_segments = merged
            .corrupt
            .iter()
            .map(|(idx, _)| segments[*idx].name.clone())
            .collect();
        stats.corrupt_segments.dedup();
        stats.failed_segments = merged
            .failed
            .into_iter()
            .map(|(idx, err)| format!("{}: {err}", segments[idx].name))
            .collect();
        stats.elapsed_ms = started.elapsed().as_millis() as u64;
        stats
    }
}

mod plan;

pub use plan::{INGEST_PREFIX, MAX_SORTED_INGEST_BYTES, plan, plan_sources};
use plan::{OpenedCursor, inputs_read_ahead, open_plan, open_reading_ahead};

#[cfg(test)]
mod literal_set_tests;
#[cfg(test)]
mod tests;
