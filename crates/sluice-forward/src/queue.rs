//! The forwarder's bounded batch queue, its full policy and its accounting.
//!
//! Batches wait here between the reader and the senders. The queue is
//! bounded in bytes; when it is full, [`OnFull`] decides: `block` stops
//! reading input (back-pressure to the producer), `drop-newest` discards the
//! batch being added, `drop-oldest` discards the oldest waiting batch.
//! A batch a sender has taken (in flight) is never dropped: if its
//! connection fails it goes back to the front of the queue.
//!
//! Accounting, in records, holds at every moment:
//! `read = acked + dropped + queued + in_flight`.

use std::{
    collections::VecDeque,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::Duration,
};

use metrics::{counter, gauge};

/// What to do when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    Block,
    DropOldest,
    DropNewest,
}

impl OnFull {
    pub fn parse(text: &str) -> Option<OnFull> {
        Some(match text {
            "block" => OnFull::Block,
            "drop-oldest" => OnFull::DropOldest,
            "drop-newest" => OnFull::DropNewest,
            _ => return None,
        })
    }
}

/// One encoded batch, sent as is (and sent again as is after a failure).
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    pub records: u64,
    pub wire: Vec<u8>,
}

/// Counters of one forwarder run, in records.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub read: u64,
    pub acked: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub resent: u64,
    pub dropped_queue_full: u64,
    pub dropped_rejected: u64,
    pub truncated: u64,
}

impl Counts {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_rejected
    }

    /// The accounting identity.
    pub fn balances(&self) -> bool {
        self.read == self.acked + self.dropped() + self.queued + self.in_flight
    }
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Arc<Batch>>,
    ready_bytes: usize,
    input_closed: bool,
    stopping: bool,
    counts: Counts,
}

#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    changed: Condvar,
    max_bytes: usize,
    on_full: OnFull,
}

impl Queue {
    pub fn new(max_bytes: usize, on_full: OnFull) -> Arc<Queue> {
        Arc::new(Queue {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_bytes: max_bytes.max(1),
            on_full,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count records read from the input (before they are batched).
    pub fn read(&self, records: u64, truncated: u64) {
        let mut state = self.lock();
        state.counts.read += records;
        state.counts.truncated += truncated;
        // Read but not yet in a batch: counted as queued until pushed.
        state.counts.queued += records;
        counter!("sluice_forward_records_read_total").increment(records);
    }

    /// Add a batch whose records were counted by [`read`](Self::read).
    pub fn push(&self, batch: Batch) {
        let mut state = self.lock();
        let size = batch.wire.len();
        while state.ready_bytes + size > self.max_bytes && !state.ready.is_empty() {
            match self.on_full {
                OnFull::Block => {
                    gauge!("sluice_forward_queue_blocked").set(1.0);
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                    gauge!("sluice_forward_queue_blocked").set(0.0);
                }
                OnFull::DropNewest => {
                    state.counts.queued -= batch.records;
                    state.counts.dropped_queue_full += batch.records;
                    counter!("sluice_forward_records_dropped_total", "reason" => "queue_full_newest").increment(batch.records);
                    return;
                }
                OnFull::DropOldest => {
                    let oldest = state.ready.pop_front().expect("not empty");
                    state.ready_bytes -= oldest.wire.len();
                    state.counts.queued -= oldest.records;
                    state.counts.dropped_queue_full += oldest.records;
                    counter!("sluice_forward_records_dropped_total", "reason" => "queue_full_oldest").increment(oldest.records);
                }
            }
        }
        state.ready_bytes += size;
        state.ready.push_back(Arc::new(batch));
        gauge!("sluice_forward_queue_bytes").set(state.ready_bytes as f64);
        self.changed.notify_all();
    }

    /// Take the next batch to send, waiting up to `wait`. Returns `None` on
    /// timeout or when stopping.
    pub fn take(&self, wait: Duration) -> Option<Arc<Batch>> {
        let mut state = self.lock();
        if state.ready.is_empty() && !state.stopping {
            state = self
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if state.stopping {
            return None;
        }
        let batch = state.ready.pop_front()?;
        state.ready_bytes -= batch.wire.len();
        state.counts.queued -= batch.records;
        state.counts.in_flight += batch.records;
        gauge!("sluice_forward_queue_bytes").set(state.ready_bytes as f64);
        self.changed.notify_all();
        Some(batch)
    }

    /// In-flight batches whose connection failed go back to the front, in
    /// their original order.
    pub fn give_back(&self, mut batches: Vec<Arc<Batch>>) {
        if batches.is_empty() {
            return;
        }
        batches.sort_by_key(|b| b.seq);
        let mut state = self.lock();
        for batch in batches.into_iter().rev() {
            state.ready_bytes += batch.wire.len();
            state.counts.in_flight -= batch.records;
            state.counts.queued += batch.records;
            state.counts.resent += batch.records;
            counter!("sluice_forward_records_resent_total").increment(batch.records);
            state.ready.push_front(batch);
        }
        self.changed.notify_all();
    }

    pub fn acked(&self, batch: &Batch) {
        let mut state = self.lock();
        state.counts.in_flight -= batch.records;
        state.counts.acked += batch.records;
        counter!("sluice_forward_records_acked_total").increment(batch.records);
        self.changed.notify_all();
    }

    /// The ingester refused the batch for good (it is malformed, or too
    /// large): counted as dropped, never silently.
    pub fn rejected(&self, batch: &Batch) {
        let mut state = self.lock();
        state.counts.in_flight -= batch.records;
        state.counts.dropped_rejected += batch.records;
        counter!("sluice_forward_records_dropped_total", "reason" => "rejected")
            .increment(batch.records);
        self.changed.notify_all();
    }

    pub fn close_input(&self) {
        self.lock().input_closed = true;
        self.changed.notify_all();
    }

    /// Wait until the input is closed and every batch is acked or dropped.
    pub fn wait_drained(&self) {
        let mut state = self.lock();
        while !(state.input_closed && state.counts.queued == 0 && state.counts.in_flight == 0) {
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wake every waiter and make `take` return `None` from now on.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64, records: u64, bytes: usize) -> Batch {
        Batch {
            seq,
            records,
            wire: vec![0; bytes],
        }
    }

    #[test]
    fn drop_policies_count_and_balance() {
        for (policy, kept) in [
            (OnFull::DropNewest, vec![1, 2]),
            (OnFull::DropOldest, vec![3, 4]),
        ] {
            let q = Queue::new(20, policy);
            for seq in 1..=4 {
                q.read(5, 0);
                q.push(batch(seq, 5, 10));
                assert!(q.counts().balances());
            }
            let taken: Vec<u64> = std::iter::from_fn(|| q.take(Duration::ZERO))
                .map(|b| b.seq)
                .collect();
            assert_eq!(taken, kept, "{policy:?}");
            let c = q.counts();
            assert_eq!((c.dropped_queue_full, c.in_flight), (10, 10));
            assert!(c.balances());
        }
    }

    #[test]
    fn in_flight_batches_are_never_dropped_and_go_back_in_order() {
        let q = Queue::new(25, OnFull::DropOldest);
        for seq in 1..=2 {
            q.read(1, 0);
            q.push(batch(seq, 1, 10));
        }
        let first = q.take(Duration::ZERO).unwrap();
        let second = q.take(Duration::ZERO).unwrap();
        q.give_back(vec![second, first]);
        let order: Vec<u64> = std::iter::from_fn(|| q.take(Duration::ZERO))
            .map(|b| b.seq)
            .collect();
        assert_eq!(order, [1, 2]);
        let c = q.counts();
        assert_eq!((c.dropped(), c.resent, c.in_flight), (0, 2, 2));
        assert!(c.balances());
    }

    #[test]
    fn block_waits_for_room() {
        let q = Queue::new(10, OnFull::Block);
        q.read(1, 0);
        q.push(batch(1, 1, 10));
        let q2 = q.clone();
        let pusher = std::thread::spawn(move || {
            q2.read(1, 0);
            q2.push(batch(2, 1, 10));
        });
        let first = q.take(Duration::from_secs(10)).unwrap();
        pusher.join().unwrap();
        q.acked(&first);
        assert_eq!(q.take(Duration::from_secs(10)).unwrap().seq, 2);
        assert_eq!(q.counts().dropped(), 0);
    }
}
