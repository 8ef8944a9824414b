//! The forwarder's bounded batch queue, its spool, its full policy and its
//! accounting.
//!
//! Batches wait here between the reader and the senders. The queue is
//! bounded in bytes of memory. Without a spool, when memory is full,
//! [`OnFull`] decides: `block` stops reading input (back-pressure to the
//! producer), `drop-newest` discards the batch being added, `drop-oldest`
//! discards the oldest waiting batch.
//!
//! With a spool ([`crate::spool`]) every batch is written to disk first.
//! While memory has room the batch is also kept in memory; past that only
//! its place on disk is queued ("spooled"), and a sender reads it back when
//! its turn comes ("replayed"), in the original order. [`OnFull`] then
//! applies when the spool itself is full.
//!
//! A batch a sender has taken (in flight) is never dropped: if its
//! connection fails it goes back to the front of the queue.
//!
//! Accounting, in records, holds at every moment:
//! `read = acked + dropped + queued + spooled + in_flight`.
//!
//! A producer that owes its own client an acknowledgement (the agent's
//! fluent listener) pushes with [`Queue::push_notify`] and hears once when
//! the batch is safe: written to the spool ([`Safe::Spooled`], durable after
//! [`Queue::sync_spool`]), acknowledged by an ingester, or dropped.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, mpsc},
    time::{Duration, Instant},
};

use crate::metrics;

use crate::{
    checkpoint::{self, Progress},
    spool::{SourceKey, SourcePos, Spool, SpoolRef},
};

/// What to do when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room: the producer stops reading its input (back-pressure).
    Block,
    /// Drop the oldest waiting batch (with a spool, the oldest on disk) to
    /// make room, until the new one fits.
    DropOldest,
    /// Drop the batch being added.
    DropNewest,
}

impl OnFull {
    /// Parse a value of `--on-full`: `block`, `drop-oldest` or
    /// `drop-newest`.
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
    /// The batch's number: increasing, and after a restart with a spool
    /// higher than any batch in it. Acks name the batch by it (its `seq`,
    /// or its fluent `chunk` id).
    pub seq: u64,
    /// Records in the batch.
    pub records: u64,
    /// The bytes sent: a batch-protocol command with its section, or a
    /// Fluentd Forward-mode frame.
    pub wire: Vec<u8>,
    /// The file and offset its lines came from (`--file`).
    pub source: Option<SourcePos>,
    /// Its place in the spool, when it was written there.
    pub spooled: Option<SpoolRef>,
}

impl Batch {
    /// A batch from no file, not yet spooled.
    pub fn new(seq: u64, records: u64, wire: Vec<u8>) -> Batch {
        Batch {
            seq,
            records,
            wire,
            source: None,
            spooled: None,
        }
    }
}

/// When a batch pushed with [`Queue::push_notify`] stopped being the
/// queue's alone to lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safe {
    /// Appended to the spool as its `n`th frame of this run: durable once
    /// [`Queue::sync_spool`]`(n)` returns.
    Spooled(u64),
    /// An ingester acknowledged it.
    Acked,
    /// Dropped by the full policy or rejected by the ingester.
    Dropped,
}

/// Counters of one forwarder run, in records.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Read from the input, and (with a spool) found in it at start.
    pub read: u64,
    /// Acknowledged by an ingester.
    pub acked: u64,
    /// Waiting in memory.
    pub queued: u64,
    /// Waiting on disk only (memory was full or the destination down).
    pub spooled: u64,
    /// Sent on a connection and not yet acknowledged.
    pub in_flight: u64,
    /// Handed to a connection to be sent (re-sends included).
    pub sent: u64,
    /// Read back from the spool to be sent.
    pub replayed: u64,
    /// Of `read`: found in the spool at start, left there by an earlier run.
    pub recovered: u64,
    /// Given back to the queue by a connection that failed before their
    /// ack, to be sent again (each time).
    pub resent: u64,
    /// Dropped by `--on-full drop-*` when memory was full.
    pub dropped_queue_full: u64,
    /// Dropped by `--on-full drop-*` when the spool was full.
    pub dropped_spool_full: u64,
    /// Refused by an ingester for good (malformed or too large).
    pub dropped_rejected: u64,
    /// Waiting in the spool, and unreadable when their turn came (a
    /// checksum mismatch or a failed read).
    pub dropped_spool_corrupt: u64,
    /// Of `read`: lines cut at the line limit, and sent cut.
    pub truncated: u64,
    /// At the end of a run stopped early: records left in the spool for the
    /// next run.
    pub left_in_spool: u64,
}

impl Counts {
    /// Dropped for any reason: the sum of the `dropped_*` counts.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_spool_full
            + self.dropped_rejected
            + self.dropped_spool_corrupt
    }

    /// The accounting identity.
    pub fn balances(&self) -> bool {
        self.read == self.acked + self.dropped() + self.queued + self.spooled + self.in_flight
    }
}

/// A batch waiting to be sent: in memory, or only on disk.
#[derive(Debug)]
struct Entry {
    seq: u64,
    records: u64,
    source: Option<SourcePos>,
    /// Bytes it holds in memory (0 when only on disk).
    memory_bytes: usize,
    batch: Option<Arc<Batch>>,
    disk: Option<SpoolRef>,
}

impl Entry {
    fn in_memory(batch: Arc<Batch>) -> Entry {
        Entry {
            seq: batch.seq,
            records: batch.records,
            source: batch.source,
            memory_bytes: batch.wire.len(),
            disk: batch.spooled,
            batch: Some(batch),
        }
    }
}

/// Why records were dropped: the `reason` label and the count they go to.
#[derive(Debug, Clone, Copy)]
enum DropReason {
    QueueFullNewest,
    QueueFullOldest,
    SpoolFullNewest,
    SpoolFullOldest,
    SpoolCorrupt,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::QueueFullNewest => "queue_full_newest",
            DropReason::QueueFullOldest => "queue_full_oldest",
            DropReason::SpoolFullNewest => "spool_full_newest",
            DropReason::SpoolFullOldest => "spool_full_oldest",
            DropReason::SpoolCorrupt => "spool_corrupt",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Entry>,
    ready_bytes: usize,
    input_closed: bool,
    /// When the input was told to stop (see [`Queue::stop_input`]).
    input_stopped: Option<Instant>,
    stopping: bool,
    counts: Counts,
    spool: Option<Spool>,
    progress: Progress,
    /// Spool frames known durable (see [`Spool::appended`]).
    synced_appends: u64,
    /// The checkpoint last written, to skip rewriting an unchanged one.
    checkpoint_written: Option<Vec<checkpoint::FileCheckpoint>>,
    /// Who waits to hear that a batch (by seq) is safe.
    notices: HashMap<u64, mpsc::Sender<Safe>>,
}

impl State {
    /// Stopping: a push goes past the bound at once instead of blocking
    /// (a stop must not wait on a destination that does not drain).
    fn holds_no_input(&self) -> bool {
        self.stopping || self.input_stopped.is_some()
    }

    /// Tell whoever waits on batch `seq` (at most once).
    fn notify(&mut self, seq: u64, safe: Safe) {
        if !self.notices.is_empty()
            && let Some(notice) = self.notices.remove(&seq)
        {
            // The waiter may have gone (its client hung up): nothing to do.
            let _ = notice.send(safe);
        }
    }

    /// A batch is acknowledged, dropped or (for the checkpoint) spooled.
    fn settle(&mut self, seq: u64, source: Option<SourcePos>, disk: Option<SpoolRef>) {
        if let (Some(spool), Some(at)) = (self.spool.as_mut(), disk) {
            spool.resolve(at);
            metrics::spool_bytes(spool.live_bytes());
        }
        if let Some(pos) = source {
            self.progress.safe(seq, pos);
        }
    }

    /// Count `records` as dropped (they were already taken off `queued` or
    /// `spooled`) and settle their batch.
    fn dropped(
        &mut self,
        records: u64,
        reason: DropReason,
        seq: u64,
        source: Option<SourcePos>,
        disk: Option<SpoolRef>,
    ) {
        let count = match reason {
            DropReason::QueueFullNewest | DropReason::QueueFullOldest => {
                &mut self.counts.dropped_queue_full
            }
            DropReason::SpoolFullNewest | DropReason::SpoolFullOldest => {
                &mut self.counts.dropped_spool_full
            }
            DropReason::SpoolCorrupt => &mut self.counts.dropped_spool_corrupt,
        };
        *count += records;
        metrics::records_dropped(reason.label(), records);
        self.notify(seq, Safe::Dropped);
        self.settle(seq, source, disk);
    }

    /// Drop a waiting batch.
    fn drop_entry(&mut self, entry: Entry, reason: DropReason) {
        self.ready_bytes -= entry.memory_bytes;
        if entry.batch.is_some() {
            self.counts.queued -= entry.records;
        } else {
            self.counts.spooled -= entry.records;
        }
        self.dropped(entry.records, reason, entry.seq, entry.source, entry.disk);
    }

    /// Drop the batch being added (its records are counted as queued).
    fn drop_new(&mut self, batch: &Batch, reason: DropReason) {
        self.counts.queued -= batch.records;
        self.dropped(batch.records, reason, batch.seq, batch.source, None);
    }
}

/// The queue between the batchers and the senders (see the module docs),
/// shared as an `Arc`: it holds the batches, the spool, the counts and
/// each followed file's progress, under one lock.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    changed: Condvar,
    max_bytes: usize,
    on_full: OnFull,
}

impl Queue {
    /// A queue of at most `max_bytes` of batches in memory (at least 1),
    /// without a spool.
    pub fn new(max_bytes: usize, on_full: OnFull) -> Arc<Queue> {
        Arc::new(Queue {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_bytes: max_bytes.max(1),
            on_full,
        })
    }

    /// A queue that writes every batch ahead to `spool`. The batches the
    /// spool already holds (from an earlier run) are queued first, on disk.
    /// Returns the queue and the highest batch seq found.
    pub fn with_spool(
        max_bytes: usize,
        on_full: OnFull,
        spool: Spool,
        recovered: Vec<crate::spool::Recovered>,
    ) -> (Arc<Queue>, u64) {
        let queue = Queue::new(max_bytes, on_full);
        let mut max_seq = 0;
        {
            let mut state = queue.lock();
            for r in recovered {
                max_seq = max_seq.max(r.seq);
                state.counts.read += r.records;
                state.counts.recovered += r.records;
                state.counts.spooled += r.records;
                state.ready.push_back(Entry {
                    seq: r.seq,
                    records: r.records,
                    source: None,
                    memory_bytes: 0,
                    batch: None,
                    disk: Some(r.at),
                });
            }
            metrics::spool_bytes(spool.live_bytes());
            state.spool = Some(spool);
        }
        (queue, max_seq)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(state, crate::defaults::STOP_CHECK)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// `--on-full block`: wait for room, showing that the input is held.
    fn block<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        metrics::queue_blocked(true);
        let state = self.wait(state);
        metrics::queue_blocked(false);
        state
    }

    /// Count records read from the input (before they are batched).
    pub fn read(&self, records: u64, truncated: u64) {
        let mut state = self.lock();
        state.counts.read += records;
        state.counts.truncated += truncated;
        // Read but not yet in a batch: counted as queued until pushed.
        state.counts.queued += records;
        metrics::records_read(records);
    }

    /// A follower started reading `key` at `offset`.
    pub fn open_source(&self, key: SourceKey, path: &Path, offset: u64) {
        self.lock().progress.open(key, path, offset);
    }

    /// A follower finished `key`.
    pub fn close_source(&self, key: SourceKey) {
        self.lock().progress.close(key);
    }

    /// [`push`](Self::push), and send one [`Safe`] on `notice` when the
    /// batch is spooled, acknowledged or dropped.
    pub fn push_notify(&self, batch: Batch, notice: mpsc::Sender<Safe>) {
        self.lock().notices.insert(batch.seq, notice);
        self.push(batch);
    }

    /// Make the spool durable through its `appended`th frame (see
    /// [`Safe::Spooled`]). Syncs outside the lock; concurrent callers share
    /// one sync where they can.
    pub fn sync_spool(&self, appended: u64) -> std::io::Result<()> {
        let (writer, now_appended) = {
            let state = self.lock();
            if state.synced_appends >= appended {
                return Ok(());
            }
            let Some(spool) = state.spool.as_ref() else {
                return Ok(());
            };
            (spool.writer()?, spool.appended())
        };
        if let Some(file) = writer {
            file.sync_data()?;
        }
        let mut state = self.lock();
        state.synced_appends = state.synced_appends.max(now_appended);
        Ok(())
    }

    /// Add a batch whose records were counted by [`read`](Self::read).
    pub fn push(&self, mut batch: Batch) {
        let mut state = self.lock();
        if let Some(pos) = batch.source {
            state.progress.made(batch.seq, pos);
        }
        let size = batch.wire.len();
        if state.spool.is_some() {
            // Room in the spool, or the policy.
            loop {
                let spool = state.spool.as_ref().expect("spool");
                if spool.has_room(size) {
                    break;
                }
                let waiting = state.ready.iter().any(|e| e.disk.is_some());
                let in_flight = state.counts.in_flight > 0;
                if !waiting && !in_flight {
                    break; // one batch larger than the spool: let it through
                }
                match self.on_full {
                    OnFull::Block => {
                        if state.holds_no_input() {
                            break;
                        }
                        state = self.block(state);
                    }
                    OnFull::DropNewest => {
                        state.drop_new(&batch, DropReason::SpoolFullNewest);
                        return;
                    }
                    OnFull::DropOldest => {
                        let Some(i) = state.ready.iter().position(|e| e.disk.is_some()) else {
                            state = self.wait(state);
                            continue;
                        };
                        let oldest = state.ready.remove(i).expect("index is in range");
                        state.drop_entry(oldest, DropReason::SpoolFullOldest);
                    }
                }
            }
            let spool = state.spool.as_mut().expect("spool");
            match spool.append(batch.seq, batch.records, batch.source, &batch.wire) {
                Ok(at) => {
                    batch.spooled = Some(at);
                    let appended = spool.appended();
                    metrics::spool_bytes(spool.live_bytes());
                    state.notify(batch.seq, Safe::Spooled(appended));
                    // On disk is safe for the checkpoint.
                    if let Some(pos) = batch.source {
                        state.progress.safe(batch.seq, pos);
                    }
                    if state.ready_bytes + size > self.max_bytes {
                        // Memory is full: queue only its place on disk.
                        state.counts.queued -= batch.records;
                        state.counts.spooled += batch.records;
                        metrics::records_spooled(batch.records);
                        state.ready.push_back(Entry {
                            seq: batch.seq,
                            records: batch.records,
                            source: batch.source,
                            memory_bytes: 0,
                            batch: None,
                            disk: Some(at),
                        });
                        self.changed.notify_all();
                        return;
                    }
                }
                Err(err) => {
                    metrics::spool_error();
                    tracing::error!(error = %err, "cannot write to the spool; this batch is held in memory only");
                }
            }
        }
        if batch.spooled.is_none() {
            while state.ready_bytes + size > self.max_bytes && !state.ready.is_empty() {
                match self.on_full {
                    OnFull::Block => {
                        if state.holds_no_input() {
                            break;
                        }
                        state = self.block(state);
                    }
                    OnFull::DropNewest => {
                        state.drop_new(&batch, DropReason::QueueFullNewest);
                        return;
                    }
                    OnFull::DropOldest => {
                        let Some(i) = state.ready.iter().position(|e| e.batch.is_some()) else {
                            break;
                        };
                        let oldest = state.ready.remove(i).expect("index is in range");
                        state.drop_entry(oldest, DropReason::QueueFullOldest);
                    }
                }
            }
        }
        state.ready_bytes += size;
        state.ready.push_back(Entry::in_memory(Arc::new(batch)));
        metrics::queue_bytes(state.ready_bytes);
        self.changed.notify_all();
    }

    /// Take the next batch to send, waiting up to `wait`. Returns `None` on
    /// timeout or when stopping. A batch held only on disk is read back.
    pub fn take(&self, wait: Duration) -> Option<Arc<Batch>> {
        let mut state = self.lock();
        if state.ready.is_empty() && !state.stopping {
            state = self
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        loop {
            if state.stopping {
                return None;
            }
            let entry = state.ready.pop_front()?;
            state.ready_bytes -= entry.memory_bytes;
            let batch = match entry.batch {
                Some(batch) => {
                    state.counts.queued -= entry.records;
                    batch
                }
                None => {
                    let at = entry.disk.expect("an entry is in memory or on disk");
                    let read = state.spool.as_ref().expect("spool").read(at);
                    match read {
                        Ok(wire) => {
                            state.counts.spooled -= entry.records;
                            state.counts.replayed += entry.records;
                            metrics::records_replayed(entry.records);
                            Arc::new(Batch {
                                seq: entry.seq,
                                records: entry.records,
                                wire,
                                source: entry.source,
                                spooled: Some(at),
                            })
                        }
                        Err(err) => {
                            tracing::error!(error = %err, seq = entry.seq, records = entry.records, "cannot read a batch back from the spool; its records are dropped and counted");
                            state.drop_entry(entry, DropReason::SpoolCorrupt);
                            continue;
                        }
                    }
                }
            };
            state.counts.in_flight += batch.records;
            state.counts.sent += batch.records;
            metrics::records_sent(batch.records);
            metrics::queue_bytes(state.ready_bytes);
            self.changed.notify_all();
            return Some(batch);
        }
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
            metrics::records_resent(batch.records);
            state.ready.push_front(Entry::in_memory(batch));
        }
        self.changed.notify_all();
    }

    /// An ingester acknowledged `batch`, taken by [`take`](Self::take):
    /// its spool frame is resolved and its lines are safe for the
    /// checkpoint.
    pub fn acked(&self, batch: &Batch) {
        let mut state = self.lock();
        state.counts.in_flight -= batch.records;
        state.counts.acked += batch.records;
        metrics::records_acked(batch.records);
        state.notify(batch.seq, Safe::Acked);
        state.settle(batch.seq, batch.source, batch.spooled);
        self.changed.notify_all();
    }

    /// The ingester refused the batch for good (it is malformed, or too
    /// large): counted as dropped, never silently.
    pub fn rejected(&self, batch: &Batch) {
        let mut state = self.lock();
        state.counts.in_flight -= batch.records;
        state.counts.dropped_rejected += batch.records;
        metrics::records_dropped("rejected", batch.records);
        state.notify(batch.seq, Safe::Dropped);
        state.settle(batch.seq, batch.source, batch.spooled);
        self.changed.notify_all();
    }

    /// The input is told to stop (a stop signal). From now on a producer
    /// waiting for room (`--on-full block`) adds its batch past the bound
    /// and returns: its records are counted like any other, and a stop never
    /// waits on a destination that does not drain. The first call's time is
    /// when the drain began ([`input_stopped_at`](Self::input_stopped_at)).
    pub fn stop_input(&self) {
        let mut state = self.lock();
        if state.input_stopped.is_none() {
            state.input_stopped = Some(Instant::now());
        }
        drop(state);
        self.changed.notify_all();
    }

    /// When [`stop_input`](Self::stop_input) was first called.
    pub fn input_stopped_at(&self) -> Option<Instant> {
        self.lock().input_stopped
    }

    /// The input ended: nothing more will be pushed, so the queue can
    /// drain ([`wait_drained`](Self::wait_drained)).
    pub fn close_input(&self) {
        self.lock().input_closed = true;
        self.changed.notify_all();
    }

    /// Wait until the input is closed and every batch is acked or dropped,
    /// or until `timeout`. Returns whether everything drained.
    pub fn wait_drained(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut state = self.lock();
        loop {
            let c = &state.counts;
            if state.input_closed && c.queued == 0 && c.in_flight == 0 && c.spooled == 0 {
                return true;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return false;
            }
            state = self.wait(state);
        }
    }

    /// Wake every waiter and make `take` return `None` from now on.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// The counts now; they balance at every moment.
    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// Records that wait in the spool (on disk, whether or not also in
    /// memory or in flight): what a restart will send.
    pub fn left_in_spool(&self) -> u64 {
        let state = self.lock();
        if state.spool.is_none() {
            return 0;
        }
        state
            .ready
            .iter()
            .filter(|e| e.disk.is_some())
            .map(|e| e.records)
            .sum()
    }

    /// Make the spool durable, write the checkpoint, then delete the spool
    /// files that are fully resolved (in that order, so a restart never
    /// re-reads lines a deleted file held).
    ///
    /// Called ten times a second, it does no I/O when nothing changed, and
    /// it syncs outside the lock, so senders are not held up by a slow disk.
    pub fn checkpoint(&self, path: Option<&PathBuf>) -> std::io::Result<()> {
        let (files, resolved, unsynced) = {
            let mut state = self.lock();
            let synced = state.synced_appends;
            let (resolved, unsynced) = match state.spool.as_mut() {
                Some(spool) => {
                    let unsynced = match spool.appended() {
                        appended if appended > synced => Some((spool.writer()?, appended)),
                        _ => None,
                    };
                    if spool.is_empty() {
                        // Idle: let the current file go too.
                        spool.seal();
                    }
                    (spool.resolved_files(), unsynced)
                }
                None => (Vec::new(), None),
            };
            let files = state.progress.snapshot();
            let changed = state.checkpoint_written.as_ref() != Some(&files);
            (changed.then_some(files), resolved, unsynced)
        };
        // The snapshot was taken after the frames being synced were
        // appended, so the checkpoint never names a line the spool lacks.
        if let Some((writer, appended)) = unsynced {
            if let Some(file) = writer {
                file.sync_data()?;
            }
            self.lock().synced_appends = appended;
        }
        if let (Some(path), Some(files)) = (path, files) {
            checkpoint::store(path, &files)?;
            self.lock().checkpoint_written = Some(files);
        }
        if !resolved.is_empty()
            && let Some(spool) = self.lock().spool.as_mut()
        {
            spool.remove(&resolved);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
