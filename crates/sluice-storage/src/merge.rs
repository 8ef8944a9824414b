//! A k-way merge of sorted cursors by ULID, with lazy opening and dedupe.
//!
//! Inputs are segments sorted by their smallest id. A segment is opened only
//! when the merge frontier reaches its smallest id, so the number of open
//! cursors is the overlap depth of the segments, not their count. Each cursor
//! is advanced past records the filter rejects before it enters the heap, so
//! only matching records are compared. Equal ids from different segments
//! (a segment consumed twice) come out once.

use std::{cmp::Reverse, collections::BinaryHeap, ops::ControlFlow};

use crate::{RecordCursor, Selected, StorageError};
use sluice_record::{Record, Ulid};

/// A filter for the cursors whose records were selected by the query's
/// own matcher (see [`Merge::with_filter_for_cursors_selected_by`]).
type SelectedFilter<'a> = (Selected, &'a dyn Fn(&Record<'_>) -> Verdict);

/// What the filter says about a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Emit the record.
    Keep,
    /// Pass over the record and go on with the cursor's next.
    Skip,
    /// This and every later record of the cursor are past the range.
    Stop,
}

/// Counters of one merge.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeStats {
    /// Records read from the cursors, whether the filter kept them or not,
    /// plus those the cursors' own prefilters passed over.
    pub records_scanned: u64,
    /// Records handed to the sink, duplicates excluded.
    pub records_emitted: u64,
    /// Kept records dropped because the record before had the same id.
    pub duplicates_removed: u64,
    /// Bytes of the segments read, as the cursors count them.
    pub bytes_read: u64,
    /// Inputs whose cursor was opened (a merge that stops early opens
    /// fewer than it was given).
    pub segments_opened: u64,
    /// Segments that failed while being read, with the error.
    pub failed: Vec<(usize, String)>,
    /// Segments where corruption was met, with the first: those that failed
    /// on it and those whose cursor passed over corrupt blocks.
    pub corrupt: Vec<(usize, String)>,
    /// Corrupt blocks passed over, in all segments.
    pub corrupt_blocks: u64,
    /// Records that came out with an id below the one emitted before
    /// them: an input whose ids do not increase, or whose smallest id was
    /// declared too high (so it was opened late). Such records are still
    /// emitted, but a duplicate among them is not recognised as one. A
    /// correct plan never has any; this is what tells a wrong one.
    pub out_of_order: u64,
    /// The first of those: the input, its record's id, and the id emitted
    /// before it.
    pub first_out_of_order: Option<(usize, Ulid, Ulid)>,
}

impl MergeStats {
    fn fail(&mut self, idx: usize, err: StorageError) {
        if err.is_corrupt() {
            self.corrupt.push((idx, err.to_string()));
        }
        self.failed.push((idx, err.to_string()));
    }
}

/// A k-way merge of the cursors of segments sorted by smallest id (see the
/// module docs): [`Merge::new`], then [`Merge::run`] or
/// [`Merge::run_fallible`].
pub struct Merge<'a> {
    /// Smallest id of each input, sorted ascending.
    mins: &'a [Ulid],
    next_to_open: usize,
    open: &'a mut dyn FnMut(usize) -> Result<Box<dyn RecordCursor>, StorageError>,
    filter: &'a dyn Fn(&Record<'_>) -> Verdict,
    /// The filter for cursors whose records [were
    /// selected](RecordCursor::selected_by) by what the query is.
    selected_filter: Option<SelectedFilter<'a>>,
    cursors: Vec<Option<Box<dyn RecordCursor>>>,
    heap: BinaryHeap<Reverse<(Ulid, usize)>>,
    last_emitted: Option<Ulid>,
    /// A cursor passed over records since progress was last reported.
    progress_due: bool,
    /// What the merge did so far; complete once [`Merge::run`] returned.
    pub stats: MergeStats,
}

/// Report progress at least this often, in records emitted, when no
/// cursor skips anything.
const PROGRESS_EVERY_RECORDS: u64 = 256;

impl<'a> Merge<'a> {
    /// A merge of inputs whose smallest ids are `mins` (ascending). `open`
    /// opens input `i` when the merge reaches `mins[i]`; an input that fails
    /// to open or to read is recorded in [`MergeStats::failed`] and left
    /// out. `filter` decides each record's [`Verdict`].
    pub fn new(
        mins: &'a [Ulid],
        open: &'a mut dyn FnMut(usize) -> Result<Box<dyn RecordCursor>, StorageError>,
        filter: &'a dyn Fn(&Record<'_>) -> Verdict,
    ) -> Self {
        debug_assert!(mins.is_sorted());
        Merge {
            mins,
            next_to_open: 0,
            open,
            filter,
            selected_filter: None,
            cursors: (0..mins.len()).map(|_| None).collect(),
            heap: BinaryHeap::new(),
            last_emitted: None,
            progress_due: false,
            stats: MergeStats::default(),
        }
    }

    /// Decide the records of cursors whose records were
    /// [selected](RecordCursor::selected_by) `by` the query's own literal
    /// or text matcher by `filter` instead: the main filter less its test
    /// of that matcher, which such a cursor's records pass already (the
    /// search, done once where the block was decoded or the batch
    /// searched, need not be done again per record here).
    pub fn with_filter_for_cursors_selected_by(
        mut self,
        by: Selected,
        filter: &'a dyn Fn(&Record<'_>) -> Verdict,
    ) -> Self {
        self.selected_filter = Some((by, filter));
        self
    }

    /// Every record with an id below this one has been emitted or passed
    /// over (the smallest id on the heap or of an input not yet opened);
    /// `None` once every input is done.
    pub fn frontier(&self) -> Option<Ulid> {
        let on_heap = self.heap.peek().map(|Reverse((id, _))| *id);
        let unopened = self.mins.get(self.next_to_open).copied();
        match (on_heap, unopened) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advance cursor `idx` to its next kept record and put it on the heap,
    /// or close it.
    fn advance(&mut self, idx: usize) {
        let Some(cursor) = self.cursors[idx].as_mut() else {
            return;
        };
        let mut scanned = 0;
        let skipped_before = cursor.records_skipped();
        let filter = match self.selected_filter {
            Some((by, filter)) if cursor.selected_by() == by => filter,
            _ => self.filter,
        };
        let outcome = loop {
            match cursor.advance() {
                Ok(true) => {
                    scanned += 1;
                    let record = cursor.record();
                    match filter(&record) {
                        Verdict::Keep => break Ok(Some(record.id)),
                        Verdict::Skip => continue,
                        Verdict::Stop => break Ok(None),
                    }
                }
                Ok(false) => break Ok(None),
                Err(err) => break Err(err),
            }
        };
        self.stats.records_scanned += scanned;
        if scanned > 1 || cursor.records_skipped() != skipped_before {
            self.progress_due = true;
        }
        match outcome {
            Ok(Some(id)) => self.heap.push(Reverse((id, idx))),
            Ok(None) => self.close(idx),
            Err(err) => {
                self.close(idx);
                self.stats.fail(idx, err);
            }
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(cursor) = self.cursors[idx].take() {
            self.stats.bytes_read += cursor.bytes_read();
            self.stats.records_scanned += cursor.records_skipped();
            let corrupt_blocks = cursor.corrupt_blocks();
            if corrupt_blocks > 0 {
                self.stats.corrupt_blocks += corrupt_blocks;
                let first = cursor.first_corruption().unwrap_or("corrupt block");
                self.stats.corrupt.push((idx, first.to_string()));
            }
        }
    }

    /// Open every input whose smallest id is at or below the frontier.
    fn open_reached(&mut self) {
        while self.next_to_open < self.mins.len() {
            let frontier = self.heap.peek().map(|Reverse((id, _))| *id);
            if frontier.is_some_and(|f| self.mins[self.next_to_open] > f) {
                return;
            }
            let idx = self.next_to_open;
            self.next_to_open += 1;
            match (self.open)(idx) {
                Ok(cursor) => {
                    self.stats.segments_opened += 1;
                    self.cursors[idx] = Some(cursor);
                    self.advance(idx);
                }
                Err(err) => self.stats.fail(idx, err),
            }
        }
    }

    /// Emit kept records in id order until the inputs end or `emit` breaks.
    pub fn run(&mut self, emit: impl FnMut(&Record<'_>) -> ControlFlow<()>) {
        self.run_with_progress(emit, |_| {});
    }

    /// [`Merge::run`], telling `progress` now and then how far the merge
    /// has got: every record with an id up to and including the one given
    /// was emitted (or passed over) already. It is told after cursors
    /// passed over records (a scan that finds nothing still moves on) and
    /// every few hundred records emitted; it never goes back.
    pub fn run_with_progress(
        &mut self,
        mut emit: impl FnMut(&Record<'_>) -> ControlFlow<()>,
        mut progress: impl FnMut(Ulid),
    ) {
        let mut reported: Option<Ulid> = None;
        loop {
            self.open_reached();
            if self.progress_due
                || self.stats.records_emitted % PROGRESS_EVERY_RECORDS == PROGRESS_EVERY_RECORDS - 1
            {
                self.progress_due = false;
                if let Some(below) = self.frontier()
                    && below.0 > 0
                {
                    let done = Ulid(below.0 - 1);
                    if reported.is_none_or(|r| done > r) {
                        reported = Some(done);
                        progress(done);
                    }
                }
            }
            let Some(Reverse((id, idx))) = self.heap.pop() else {
                break;
            };
            if let Some(last) = self.last_emitted
                && id < last
            {
                self.stats.out_of_order += 1;
                self.stats.first_out_of_order.get_or_insert((idx, id, last));
            }
            if self.last_emitted == Some(id) {
                self.stats.duplicates_removed += 1;
            } else {
                self.last_emitted = Some(id);
                self.stats.records_emitted += 1;
                let cursor = self.cursors[idx]
                    .as_ref()
                    .expect("a cursor on the heap is open");
                if emit(&cursor.record()).is_break() {
                    break;
                }
            }
            self.advance(idx);
        }
        for idx in 0..self.cursors.len() {
            self.close(idx);
        }
    }

    /// [`Merge::run`] into a sink that can fail, such as a segment writer:
    /// stops at the first failure and returns it.
    pub fn run_fallible<E>(
        &mut self,
        mut push: impl FnMut(&Record<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut failure = None;
        self.run(|record| match push(record) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => {
                failure = Some(err);
                ControlFlow::Break(())
            }
        });
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_record::OwnedRecord;

    /// A cursor over an in-memory sorted vector.
    pub(crate) struct VecCursor {
        records: Vec<OwnedRecord>,
        pos: Option<usize>,
    }

    impl RecordCursor for VecCursor {
        fn advance(&mut self) -> Result<bool, StorageError> {
            let next = self.pos.map_or(0, |p| p + 1);
            self.pos = Some(next);
            Ok(next < self.records.len())
        }
        fn record(&self) -> Record<'_> {
            self.records[self.pos.unwrap()].as_record()
        }
        fn bytes_read(&self) -> u64 {
            0
        }
    }

    fn rec(id: u128) -> OwnedRecord {
        OwnedRecord {
            id: Ulid(id),
            flags: 0,
            topic: b"t".to_vec(),
            payload: (id % 7).to_string().into_bytes(),
        }
    }

    /// A [`VecCursor`] that says what selected its records.
    struct SelectedBy(VecCursor, Selected);

    impl RecordCursor for SelectedBy {
        fn advance(&mut self) -> Result<bool, StorageError> {
            self.0.advance()
        }
        fn record(&self) -> Record<'_> {
            self.0.record()
        }
        fn bytes_read(&self) -> u64 {
            0
        }
        fn selected_by(&self) -> Selected {
            self.1
        }
    }

    #[test]
    fn cursors_selected_by_the_query_get_the_selected_filter() {
        let segments = [
            vec![rec(1), rec(4), rec(7)],
            vec![rec(2), rec(5), rec(8)],
            vec![rec(3), rec(6), rec(9)],
        ];
        let mins = [Ulid(1), Ulid(2), Ulid(3)];
        // Input 1 was selected by the query's text matcher, input 2 by a
        // literal (not what this query is), input 0 by nothing.
        let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
            let cursor = VecCursor {
                records: segments[i].clone(),
                pos: None,
            };
            Ok(match i {
                1 => Box::new(SelectedBy(cursor, Selected::Text)),
                2 => Box::new(SelectedBy(cursor, Selected::Literal)),
                _ => Box::new(cursor),
            })
        };
        let below_5 = |r: &Record<'_>| match r.id < Ulid(5) {
            true => Verdict::Keep,
            false => Verdict::Skip,
        };
        let keep_all = |_: &Record<'_>| Verdict::Keep;
        let mut merge = Merge::new(&mins, &mut open, &below_5)
            .with_filter_for_cursors_selected_by(Selected::Text, &keep_all);
        let mut ids = Vec::new();
        merge.run(|record| {
            ids.push(record.id.0);
            ControlFlow::Continue(())
        });
        assert_eq!(ids, [1, 2, 3, 4, 5, 8]);
    }

    #[test]
    fn a_failing_sink_stops_the_merge_with_its_error() {
        let segments = [vec![rec(1), rec(3), rec(5)], vec![rec(2), rec(4)]];
        let mins = [Ulid(1), Ulid(2)];
        let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
            Ok(Box::new(VecCursor {
                records: segments[i].clone(),
                pos: None,
            }))
        };
        let keep_all = |_: &Record<'_>| Verdict::Keep;
        let mut merge = Merge::new(&mins, &mut open, &keep_all);
        let mut pushed = Vec::new();
        let result = merge.run_fallible(|record| {
            if record.id == Ulid(3) {
                return Err("disk full");
            }
            pushed.push(record.id.0);
            Ok(())
        });
        assert_eq!(result, Err("disk full"));
        assert_eq!(pushed, [1, 2]);
        // A sink that never fails takes every record.
        let mut merge = Merge::new(&mins, &mut open, &keep_all);
        let mut all = Vec::new();
        let result: Result<(), ()> = merge.run_fallible(|record| {
            all.push(record.id.0);
            Ok(())
        });
        assert_eq!(result, Ok(()));
        assert_eq!(all, [1, 2, 3, 4, 5]);
    }

    /// The same records in two inputs are emitted once when the inputs'
    /// smallest ids are right; when one is declared too high (the merge
    /// opens that input after the other ran past its records) they are
    /// emitted twice, and the stats say which input came out of order.
    #[test]
    fn an_input_opened_late_is_counted_out_of_order() {
        let segments = [vec![rec(1), rec(2), rec(3)], vec![rec(1), rec(2), rec(3)]];
        let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
            Ok(Box::new(VecCursor {
                records: segments[i].clone(),
                pos: None,
            }))
        };
        let keep_all = |_: &Record<'_>| Verdict::Keep;
        let run = |mins: &[Ulid], open: &mut dyn FnMut(usize) -> _| {
            let mut merge = Merge::new(mins, open, &keep_all);
            let mut got = Vec::new();
            merge.run(|r| {
                got.push(r.id.0);
                ControlFlow::Continue(())
            });
            (got, merge.stats)
        };
        let (got, stats) = run(&[Ulid(1), Ulid(1)], &mut open);
        assert_eq!(got, [1, 2, 3]);
        assert_eq!((stats.duplicates_removed, stats.out_of_order), (3, 0));
        assert_eq!(stats.first_out_of_order, None);
        // Input 1 declared to start at 4: opened once input 0 is done.
        let (got, stats) = run(&[Ulid(1), Ulid(4)], &mut open);
        assert_eq!(got, [1, 2, 3, 1, 2, 3]);
        assert_eq!((stats.duplicates_removed, stats.out_of_order), (0, 1));
        assert_eq!(stats.first_out_of_order, Some((1, Ulid(1), Ulid(3))));
        // An input whose ids go back is counted the same way.
        let unsorted = [vec![rec(1), rec(3), rec(2)]];
        let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
            Ok(Box::new(VecCursor {
                records: unsorted[i].clone(),
                pos: None,
            }))
        };
        let (got, stats) = run(&[Ulid(1)], &mut open);
        assert_eq!(got, [1, 3, 2]);
        assert_eq!(stats.first_out_of_order, Some((0, Ulid(2), Ulid(3))));
    }

    /// The non-empty inputs as segments sorted by their smallest id, and
    /// those ids.
    fn sorted_segments(
        inputs: &[std::collections::BTreeSet<u128>],
    ) -> (Vec<Vec<OwnedRecord>>, Vec<Ulid>) {
        let mut segments: Vec<Vec<OwnedRecord>> = inputs
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().map(|&i| rec(i)).collect())
            .collect();
        segments.sort_by_key(|s| s[0].id);
        let mins = segments.iter().map(|s| s[0].id).collect();
        (segments, mins)
    }

    /// A filter keeping the records whose id is a multiple of `keep_mod`.
    fn keep_multiples_of(keep_mod: u128) -> impl Fn(&Record<'_>) -> Verdict {
        move |r| {
            if r.id.0.is_multiple_of(keep_mod) {
                Verdict::Keep
            } else {
                Verdict::Skip
            }
        }
    }

    proptest! {
        /// Merging any overlapping sorted inputs equals sorting their union,
        /// dropping duplicate ids and applying the filter.
        #[test]
        fn merge_equals_sorted_deduped_union(
            inputs in proptest::collection::vec(proptest::collection::btree_set(0u128..200, 0..40), 0..8),
            keep_mod in 1u128..4,
        ) {
            let (segments, mins) = sorted_segments(&inputs);
            let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
                Ok(Box::new(VecCursor { records: segments[i].clone(), pos: None }))
            };
            let filter = keep_multiples_of(keep_mod);
            let mut merge = Merge::new(&mins, &mut open, &filter);
            let mut got = Vec::new();
            merge.run(|r| { got.push(r.id.0); ControlFlow::Continue(()) });
            let want: std::collections::BTreeSet<u128> = inputs.iter().flatten().copied().filter(|i| i.is_multiple_of(keep_mod)).collect();
            prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        }

        /// Progress never claims a record not emitted yet, never goes back,
        /// and moves while the filter passes over records.
        #[test]
        fn progress_never_runs_ahead_of_the_records(
            inputs in proptest::collection::vec(proptest::collection::btree_set(1u128..2000, 1..300), 1..6),
            keep_mod in 1u128..50,
        ) {
            let (segments, mins) = sorted_segments(&inputs);
            let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
                Ok(Box::new(VecCursor { records: segments[i].clone(), pos: None }))
            };
            let filter = keep_multiples_of(keep_mod);
            let mut merge = Merge::new(&mins, &mut open, &filter);
            #[derive(Debug, Clone, Copy, PartialEq)]
            enum Event { Record(u128), Progress(u128) }
            let events = std::cell::RefCell::new(Vec::new());
            merge.run_with_progress(
                |r| { events.borrow_mut().push(Event::Record(r.id.0)); ControlFlow::Continue(()) },
                |done| events.borrow_mut().push(Event::Progress(done.0)),
            );
            let events = events.into_inner();
            let records: Vec<u128> = events.iter().filter_map(|e| match e { Event::Record(id) => Some(*id), _ => None }).collect();
            let mut last_progress = 0;
            for (at, event) in events.iter().enumerate() {
                if let Event::Progress(done) = *event {
                    prop_assert!(done > last_progress, "progress went back: {events:?}");
                    last_progress = done;
                    let sent: Vec<u128> = events[..at].iter().filter_map(|e| match e { Event::Record(id) => Some(*id), _ => None }).collect();
                    // Every record at or below the mark came out before it.
                    prop_assert!(records.iter().filter(|&&id| id <= done).all(|id| sent.contains(id)), "{events:?}");
                }
            }
            // A record passed over before one that comes out: progress is
            // told (a scan that finds little still moves on).
            if let Some(&largest) = records.last()
                && inputs.iter().flatten().any(|i| *i < largest && !i.is_multiple_of(keep_mod))
            {
                prop_assert!(last_progress > 0, "{events:?}");
            }
        }
    }
}
