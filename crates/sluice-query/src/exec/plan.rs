//! Which segments a query reads, and opening them: the store's listing
//! in the time range and the node's ingest segments, each opened (a
//! mapping or a descriptor held) before any is read, then ordered by
//! smallest id for the merge.

use std::path::{Path, PathBuf};

use sluice_record::Ulid;
use sluice_storage::{
    Fs, LiveSegment, RecordCursor, SegmentCache, SegmentMeta, StorageError,
    store_segment::{BatchCursor, ScanOptions, list_segments, open_cursor},
};

use super::{MAX_PLAN_SEGMENTS, Query, QueryError, Sources};

/// The most bytes of ingest segments whose ids do not increase (origin
/// times, client ids) one query sorts in memory; past it such a segment is
/// reported failed until a store has taken it (the store sorts it then).
pub const MAX_SORTED_INGEST_BYTES: u64 = 256 << 20;

/// The prefix of a segment name that comes from the ingest log.
pub const INGEST_PREFIX: &str = "ingest/";

/// The segments of `dir` that can hold records in the query's time range,
/// sorted by smallest id.
pub fn plan(fs: &dyn Fs, dir: &Path, query: &Query) -> Result<Vec<SegmentMeta>, QueryError> {
    plan_evicting(fs, dir, query, None)
}

/// The segments of `sources` the query would read: the store's in its time
/// range, and every ingest file (their ranges are not in their names)
/// but those whose id floor is above the range.
pub fn plan_sources(
    fs: &dyn Fs,
    sources: Sources<'_>,
    query: &Query,
) -> Result<Vec<SegmentMeta>, QueryError> {
    let mut segments = match sources.store {
        Some(dir) => plan(fs, dir, query)?,
        None => Vec::new(),
    };
    let (_, upper) = query.id_bounds();
    for live in sources.ingest {
        let Some((path, len)) = live
            .names
            .iter()
            .find_map(|p| Some((p, fs.open_read(p).and_then(|f| f.len()).ok()?)))
        else {
            continue;
        };
        if live.wholly_above(upper) {
            continue;
        }
        segments.push(SegmentMeta {
            name: ingest_name(path),
            min: Ulid::nil(),
            max: Ulid(u128::MAX),
            bytes: len,
        });
    }
    Ok(segments)
}

fn ingest_name(path: &Path) -> String {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    format!("{INGEST_PREFIX}{file}")
}

/// [`plan`], dropping from `cache` the segments that left the listing.
fn plan_evicting(
    fs: &dyn Fs,
    dir: &Path,
    query: &Query,
    cache: Option<&SegmentCache>,
) -> Result<Vec<SegmentMeta>, QueryError> {
    if query.from_ms > query.to_ms {
        return Err(QueryError::EmptyRange {
            from_ms: query.from_ms,
            to_ms: query.to_ms,
        });
    }
    let (segments, _) = list_segments(fs, dir)?;
    if let Some(cache) = cache {
        cache.retain_listed(&segments);
    }
    let (lower, upper) = query.id_bounds();
    Ok(segments
        .into_iter()
        .filter(|s| s.overlaps_ms(query.from_ms, query.to_ms))
        .filter(|s| query.ids.is_none() || (s.max >= lower && s.min <= upper))
        .collect())
}

/// How often a query plans again because a segment vanished between
/// listing and opening.
const MAX_PLANS: usize = 8;

pub(super) type OpenedCursor = Result<Box<dyn RecordCursor>, StorageError>;

/// Inputs after the one the merge opens that start reading ahead with it:
/// fresh data lies in many batch files of a few groups each, and a file
/// whose search starts only when the merge reaches it left the workers
/// idle at every boundary.
pub(super) const INPUTS_READ_AHEAD: usize = 1;

/// How many inputs after the one the merge opens read ahead with it for
/// `query`. None with a limit: such a query may stop before the merge
/// reaches the next input, and searches queued on the workers run to their
/// end even then, for nothing and ahead of other queries' work.
pub(super) fn inputs_read_ahead(query: &Query) -> usize {
    match query.limit {
        Some(_) => 0,
        None => INPUTS_READ_AHEAD,
    }
}

/// Plan, and open a cursor on every planned segment before reading any.
///
/// An open cursor keeps its file's bytes (a mapping, or an open
/// descriptor), so a compaction or retention that removes the file later
/// cannot fail the query. A segment that vanished between listing and
/// opening was replaced by compaction outputs, which are durable before
/// their inputs are removed, or purged: plan again and the listing shows
/// what is there now. The cursors hold no block until they are read.
pub(super) fn open_plan(
    fs: &dyn Fs,
    sources: Sources<'_>,
    query: &Query,
    options: &ScanOptions,
) -> Result<(Vec<SegmentMeta>, Vec<Option<OpenedCursor>>), QueryError> {
    // The ingest segments are opened before the store is listed: one that
    // a store commits in between (it is on the store, durable, before the
    // ingester removes it) is then read from the open file or found in the
    // listing, never missed by both.
    let opened_ingest: Vec<(&LiveSegment, &Path, Result<BatchCursor, StorageError>)> = sources
        .ingest
        .iter()
        .filter_map(|live| {
            let (path, opened) = open_first_of(fs, &live.names)?;
            Some((live, path, opened))
        })
        .collect();
    let (mut segments, mut cursors) = match sources.store {
        Some(dir) => open_store_plan(fs, dir, sources.skip, query, options)?,
        None => (Vec::new(), Vec::new()),
    };
    if opened_ingest.is_empty() {
        return Ok((segments, cursors));
    }
    let (_, upper) = query.id_bounds();
    let mut sort_budget = MAX_SORTED_INGEST_BYTES;
    for (live, path, opened) in opened_ingest {
        // Read after the file was opened: a bound of every id it shows.
        if live.wholly_above(upper) {
            continue;
        }
        let name = ingest_name(path);
        let mut failed = |e: StorageError| {
            segments.push(SegmentMeta {
                name: name.clone(),
                min: Ulid::nil(),
                max: Ulid::nil(),
                bytes: 0,
            });
            cursors.push(Some(Err(e)));
        };
        let cursor = match opened {
            Ok(cursor) => cursor,
            Err(e) => {
                failed(e);
                continue;
            }
        };
        // One pass over the ids: the true smallest (the merge opens inputs
        // by it) and whether they increase (the merge needs them to).
        let summary = match cursor.summarize_ids() {
            Ok(summary) => summary,
            Err(e) => {
                failed(e);
                continue;
            }
        };
        let Some(min) = summary.min else {
            // Nothing whole in it yet.
            continue;
        };
        if min > upper {
            continue;
        }
        let bytes = cursor.len();
        let opened: OpenedCursor = if summary.sorted {
            Ok(Box::new(options.matching(cursor)))
        } else if bytes > sort_budget {
            Err(StorageError::TooLargeToSort {
                path: path.to_path_buf(),
                bytes,
                limit: sort_budget,
            })
        } else {
            sort_budget -= bytes;
            cursor
                .into_sorted()
                .map(|c| Box::new(c) as Box<dyn RecordCursor>)
        };
        segments.push(SegmentMeta {
            name,
            min,
            max: Ulid(u128::MAX),
            bytes,
        });
        cursors.push(Some(opened));
    }
    if segments.len() > MAX_PLAN_SEGMENTS {
        return Err(QueryError::PlanTooLarge {
            segments: segments.len(),
            limit: MAX_PLAN_SEGMENTS,
        });
    }
    // The merge opens inputs in order of their smallest id.
    let mut order: Vec<usize> = (0..segments.len()).collect();
    order.sort_by_key(|&i| segments[i].min);
    let mut paired: Vec<_> = segments.into_iter().zip(cursors).map(Some).collect();
    let (segments, cursors) = order
        .into_iter()
        .map(|i| paired[i].take().expect("each input once"))
        .unzip();
    Ok((segments, cursors))
}

/// Input `i` of the merge, which opens them in order: this one reads
/// ahead first, then the `inputs_ahead` after it, so their searches queue
/// on the workers behind its own first batches.
pub(super) fn open_reading_ahead(
    cursors: &mut [Option<OpenedCursor>],
    i: usize,
    inputs_ahead: usize,
) -> OpenedCursor {
    for ahead in cursors[i..].iter_mut().take(1 + inputs_ahead) {
        if let Some(Ok(cursor)) = ahead {
            cursor.read_ahead();
        }
    }
    cursors[i]
        .take()
        .expect("the merge opens each segment once")
}

/// Open the first of `names` that exists, as a growing batch file.
fn open_first_of<'p>(
    fs: &dyn Fs,
    names: &'p [PathBuf],
) -> Option<(&'p Path, Result<BatchCursor, StorageError>)> {
    let mut last = None;
    for path in names {
        match BatchCursor::open_growing(fs, path) {
            Err(e) if e.is_not_found() => continue,
            opened => {
                last = Some((path.as_path(), opened));
                break;
            }
        }
    }
    last
}

/// [`open_plan`] for the store directory alone.
fn open_store_plan(
    fs: &dyn Fs,
    dir: &Path,
    skip: &[String],
    query: &Query,
    options: &ScanOptions,
) -> Result<(Vec<SegmentMeta>, Vec<Option<OpenedCursor>>), QueryError> {
    let mut attempt = 1;
    loop {
        let mut segments = plan_evicting(fs, dir, query, options.cache.as_deref())?;
        if !skip.is_empty() {
            segments.retain(|s| skip.binary_search(&s.name).is_err());
        }
        if segments.len() > MAX_PLAN_SEGMENTS {
            return Err(QueryError::PlanTooLarge {
                segments: segments.len(),
                limit: MAX_PLAN_SEGMENTS,
            });
        }
        let mut cursors = Vec::with_capacity(segments.len());
        let mut vanished = false;
        for segment in &segments {
            let opened = open_cursor(fs, &dir.join(&segment.name), options);
            if opened.as_ref().is_err_and(|e| e.is_not_found()) && attempt < MAX_PLANS {
                vanished = true;
                break;
            }
            cursors.push(Some(opened));
        }
        if !vanished {
            return Ok((segments, cursors));
        }
        attempt += 1;
    }
}
