//! The reorder window of `/stream`, sans IO: records from several
//! ingesters go in as they arrive and come out in id order, each id once.
//!
//! A record leaves the window when every connected source has shown a
//! mark at or past its id (a later record, or a heartbeat carrying the
//! source's clock), or when it has waited the whole window, whichever is
//! first. With one ingester that is at once; with several, at most the
//! window. A record that arrives after a larger id already left (a slow
//! source, a skewed clock) still comes out, out of order: a live tail
//! never hides a record to keep its order.
//!
//! Ids already shown are remembered ([`Seen`]), so the copy a forwarder
//! re-sends to another ingester after a failover is not shown twice.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use sluice_record::{OwnedRecord, Ulid};

/// Ids remembered as shown, at most.
pub(crate) const SEEN_CAPACITY: usize = 1 << 20;
/// Ids remembered as shown for at least this long (by their time).
pub(crate) const SEEN_SPAN: Duration = Duration::from_secs(600);
/// Bytes of records the window holds at most; past it the oldest leave
/// early.
pub(crate) const WINDOW_BYTES: usize = 32 << 20;

/// The ids shown lately: bounded by count and by age.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    ids: HashSet<Ulid>,
    order: VecDeque<Ulid>,
    newest_ms: u64,
}

impl Seen {
    /// Whether `id` was shown.
    pub(crate) fn contains(&self, id: Ulid) -> bool {
        self.ids.contains(&id)
    }

    /// Remember `id` as shown; false if it already was.
    pub(crate) fn insert(&mut self, id: Ulid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        self.newest_ms = self.newest_ms.max(id.timestamp_ms());
        let oldest_kept = self.newest_ms.saturating_sub(SEEN_SPAN.as_millis() as u64);
        while let Some(&front) = self.order.front() {
            if self.order.len() > SEEN_CAPACITY || front.timestamp_ms() < oldest_kept {
                self.order.pop_front();
                self.ids.remove(&front);
            } else {
                break;
            }
        }
        true
    }

    /// Ids remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Records waiting to be shown, in id order.
#[derive(Debug)]
pub(crate) struct ReorderWindow {
    window: Duration,
    waiting: BTreeMap<Ulid, (Instant, OwnedRecord)>,
    bytes: usize,
    /// Per connected source, the largest id or mark it has shown.
    marks: HashMap<String, Ulid>,
    seen: Seen,
    /// Copies dropped (already shown or already waiting).
    pub(crate) duplicates: u64,
}

impl ReorderWindow {
    pub(crate) fn new(window: Duration) -> ReorderWindow {
        ReorderWindow {
            window,
            waiting: BTreeMap::new(),
            bytes: 0,
            marks: HashMap::new(),
            seen: Seen::default(),
            duplicates: 0,
        }
    }

    /// A source is connected: records wait for its marks from now on.
    pub(crate) fn connect(&mut self, source: &str) {
        self.marks.entry(source.to_string()).or_insert(Ulid(0));
    }

    /// A source went away: records no longer wait for it.
    pub(crate) fn disconnect(&mut self, source: &str) {
        self.marks.remove(source);
    }

    /// The source has shown everything it has up to `mark`.
    pub(crate) fn mark(&mut self, source: &str, mark: Ulid) {
        let slot = self.marks.entry(source.to_string()).or_insert(Ulid(0));
        *slot = (*slot).max(mark);
    }

    /// A record arrived from `source` at `now`.
    pub(crate) fn push(&mut self, source: &str, record: OwnedRecord, now: Instant) {
        self.mark(source, record.id);
        if self.seen.contains(record.id) || self.waiting.contains_key(&record.id) {
            self.duplicates += 1;
            return;
        }
        self.bytes += record.topic.len() + record.payload.len() + 64;
        self.waiting.insert(record.id, (now, record));
    }

    /// Remember ids shown by another path (the history before the tail).
    pub(crate) fn shown(&mut self, id: Ulid) {
        self.seen.insert(id);
    }

    /// Whether `id` was shown.
    #[cfg(test)]
    pub(crate) fn was_shown(&self, id: Ulid) -> bool {
        self.seen.contains(id)
    }

    /// Whether the window holds more than [`WINDOW_BYTES`]: a reader
    /// that cannot release (the history is still being shown) stops
    /// taking records, and the ingesters' rings take the lag.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes > WINDOW_BYTES
    }

    /// Hand every record that may leave at `now` to `show`, in id order.
    pub(crate) fn release(&mut self, now: Instant, mut show: impl FnMut(&OwnedRecord)) {
        let low_mark = self
            .marks
            .values()
            .copied()
            .min()
            .unwrap_or(Ulid(u128::MAX));
        while let Some(entry) = self.waiting.first_entry() {
            let id = *entry.key();
            let (arrived, _) = entry.get();
            let due = id <= low_mark
                || now.saturating_duration_since(*arrived) >= self.window
                || self.bytes > WINDOW_BYTES;
            if !due {
                break;
            }
            let (_, record) = entry.remove();
            self.bytes -= record.topic.len() + record.payload.len() + 64;
            if self.seen.insert(id) {
                show(&record);
            } else {
                self.duplicates += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(id: u128) -> OwnedRecord {
        OwnedRecord {
            id: Ulid(id),
            flags: 0,
            topic: b"t".to_vec(),
            payload: format!("p{id}").into_bytes(),
        }
    }

    fn drain(w: &mut ReorderWindow, now: Instant) -> Vec<u128> {
        let mut out = Vec::new();
        w.release(now, |r| out.push(r.id.0));
        out
    }

    #[test]
    fn one_source_releases_at_once() {
        let now = Instant::now();
        let mut w = ReorderWindow::new(Duration::from_millis(250));
        w.connect("a");
        w.push("a", rec(5), now);
        w.push("a", rec(6), now);
        assert_eq!(drain(&mut w, now), vec![5, 6]);
    }

    #[test]
    fn a_quiet_source_holds_records_until_its_mark_or_the_window() {
        let now = Instant::now();
        let mut w = ReorderWindow::new(Duration::from_millis(250));
        w.connect("a");
        w.connect("b");
        w.push("a", rec(10), now);
        w.push("a", rec(12), now);
        assert_eq!(drain(&mut w, now), Vec::<u128>::new(), "b said nothing yet");
        w.push("b", rec(11), now);
        assert_eq!(drain(&mut w, now), vec![10, 11], "12 waits for b's mark");
        w.mark("b", Ulid(20));
        assert_eq!(drain(&mut w, now), vec![12]);
        w.push("a", rec(30), now);
        assert_eq!(drain(&mut w, now), Vec::<u128>::new());
        let later = now + Duration::from_millis(250);
        assert_eq!(drain(&mut w, later), vec![30], "the window ran out");
    }

    #[test]
    fn a_disconnected_source_is_not_waited_for() {
        let now = Instant::now();
        let mut w = ReorderWindow::new(Duration::from_secs(10));
        w.connect("a");
        w.connect("b");
        w.push("a", rec(1), now);
        assert!(drain(&mut w, now).is_empty());
        w.disconnect("b");
        assert_eq!(drain(&mut w, now), vec![1]);
    }

    #[test]
    fn copies_from_a_failover_show_once() {
        let now = Instant::now();
        let mut w = ReorderWindow::new(Duration::from_millis(250));
        w.connect("a");
        w.connect("b");
        w.push("a", rec(1), now);
        w.push("b", rec(1), now);
        w.mark("b", Ulid(1));
        assert_eq!(drain(&mut w, now), vec![1]);
        // Again, later, after it was shown.
        w.push("b", rec(1), now);
        assert_eq!(drain(&mut w, now), Vec::<u128>::new());
        assert_eq!(w.duplicates, 2);
        // An id shown by the history is not shown by the tail.
        w.shown(Ulid(2));
        w.push("a", rec(2), now);
        assert!(drain(&mut w, now).is_empty());
        assert!(w.was_shown(Ulid(2)));
    }

    #[test]
    fn seen_forgets_by_count_and_age() {
        let mut seen = Seen::default();
        let old = Ulid::from_parts(1_000_000, 1);
        assert!(seen.insert(old));
        assert!(!seen.insert(old));
        let newer = Ulid::from_parts(1_000_000 + SEEN_SPAN.as_millis() as u64 + 1, 1);
        assert!(seen.insert(newer));
        assert!(!seen.contains(old), "older than the span: forgotten");
        assert_eq!(seen.len(), 1);
    }

    proptest! {
        /// Whatever the arrival order, marks and timing: every distinct id
        /// comes out exactly once, and with all sources marked past them,
        /// in id order.
        #[test]
        fn every_id_leaves_once(
            arrivals in proptest::collection::vec((0u8..3, 0u128..64, any::<bool>()), 0..200),
        ) {
            let now = Instant::now();
            let mut w = ReorderWindow::new(Duration::from_secs(60));
            let sources = ["a", "b", "c"];
            for s in sources {
                w.connect(s);
            }
            let mut out = Vec::new();
            for (source, id, release) in &arrivals {
                w.push(sources[*source as usize], rec(*id), now);
                if *release {
                    w.release(now, |r| out.push(r.id.0));
                }
            }
            for s in sources {
                w.mark(s, Ulid(u128::MAX));
            }
            let before_final = out.len();
            w.release(now, |r| out.push(r.id.0));
            let tail = &out[before_final..];
            prop_assert!(tail.windows(2).all(|p| p[0] < p[1]));
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), out.len(), "no id twice");
            let mut want: Vec<u128> = arrivals.iter().map(|a| a.1).collect();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(sorted, want);
        }
    }
}
