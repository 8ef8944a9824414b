//! The live-tail ring: the batches an ingester wrote most recently, kept
//! in memory for readers of `/stream`.
//!
//! A connection's sink publishes each batch right after its segment write
//! succeeds ([`TailRing::publish`]). While nobody reads, publishing is one
//! atomic load and nothing is copied or kept. With readers, the batch's
//! bytes are copied once into the ring, shared by every reader, and the
//! oldest batches are dropped when the ring holds more than its capacity.
//!
//! Ingest never waits for a reader. A reader that falls behind the oldest
//! batch still in the ring learns how many records it missed
//! ([`TailItem::Lagged`]) and goes on from the oldest batch kept; the
//! drop is counted (`sluice_tail_lagged_records_total`).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use sluice_record::{
    Record,
    batch::{BATCH_HEADER_BYTES, RecordIter},
};
use tokio::sync::Notify;

/// The ring's default capacity: 64 MiB of batches.
pub const DEFAULT_TAIL_BYTES: u64 = 64 << 20;

/// One batch in the ring, as written to the segment (header and body).
#[derive(Debug, Clone)]
pub struct TailBatch {
    bytes: Bytes,
    count: u32,
}

impl TailBatch {
    /// Records in the batch.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The batch's records, in the order they were written.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        // The ring's batches were encoded by this process and written
        // whole: they are not verified again.
        RecordIter::new(&self.bytes[BATCH_HEADER_BYTES..], self.count).map_while(Result::ok)
    }
}

/// What a reader gets next.
#[derive(Debug, Clone)]
pub enum TailItem {
    /// The next batch.
    Batch(TailBatch),
    /// The reader fell behind: this many records were dropped before the
    /// next batch it gets.
    Lagged(u64),
}

#[derive(Debug, Default)]
struct Ring {
    /// Kept batches, oldest first, each with the number of records
    /// published before it (since the process started).
    batches: VecDeque<(u64, TailBatch)>,
    bytes: u64,
    /// Records published so far: the position of the next batch.
    published: u64,
    /// Buffers of dropped batches no reader held, handed back to the
    /// sinks to encode their next batches into: a reader that stays
    /// behind costs neither a copy nor an allocation per batch.
    spare: Vec<Vec<u8>>,
}

/// Buffers kept for reuse, at most.
const SPARE_BUFFERS: usize = 16;

/// The ring of recent batches. Shared by every connection of an ingester
/// (publishers) and every `/ingest/tail` request (readers).
#[derive(Debug)]
pub struct TailRing {
    capacity: AtomicU64,
    readers: AtomicUsize,
    ring: Mutex<Ring>,
    published: Notify,
}

impl Default for TailRing {
    fn default() -> Self {
        TailRing::new(DEFAULT_TAIL_BYTES)
    }
}

impl TailRing {
    /// A ring holding at most `capacity` bytes of batches (the newest batch
    /// is kept even when it alone is larger).
    pub fn new(capacity: u64) -> TailRing {
        TailRing {
            capacity: AtomicU64::new(capacity),
            readers: AtomicUsize::new(0),
            ring: Mutex::new(Ring::default()),
            published: Notify::new(),
        }
    }

    /// Change the capacity (`--tail-buffer`); applies from the next batch.
    pub fn set_capacity(&self, capacity: u64) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Readers subscribed now.
    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    /// Whether anyone reads: a sink offers its batches only then.
    pub fn is_read(&self) -> bool {
        self.readers.load(Ordering::Relaxed) > 0
    }

    /// Offer a written batch (`bytes`: header and body, `count` records).
    /// Copies it only while someone reads; never blocks on a reader.
    pub fn publish(&self, bytes: &[u8], count: u32) {
        if !self.is_read() || count == 0 {
            return;
        }
        let mut buffer = self.spare();
        buffer.extend_from_slice(bytes);
        self.publish_owned(buffer, count);
    }

    /// A buffer to encode a batch into: a dropped batch's, or a new one.
    pub fn spare(&self) -> Vec<u8> {
        let mut buffer = self.ring().spare.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Offer a written batch that the caller gives away (see
    /// [`sluice_record::BatchEncoder::take_finished`]): no copy.
    pub fn publish_owned(&self, bytes: Vec<u8>, count: u32) {
        if count == 0 || !self.is_read() {
            return;
        }
        let batch = TailBatch {
            bytes: Bytes::from(bytes),
            count,
        };
        let capacity = self.capacity.load(Ordering::Relaxed);
        let held = {
            let mut ring = self.ring();
            let position = ring.published;
            ring.published += u64::from(count);
            ring.bytes += batch.bytes.len() as u64;
            ring.batches.push_back((position, batch));
            while ring.bytes > capacity && ring.batches.len() > 1 {
                let (_, old) = ring.batches.pop_front().expect("more than one batch");
                ring.bytes -= old.bytes.len() as u64;
                if ring.spare.len() < SPARE_BUFFERS
                    && let Ok(buffer) = old.bytes.try_into_mut()
                {
                    ring.spare.push(Vec::from(buffer));
                }
            }
            ring.bytes
        };
        crate::metrics::tail_ring_bytes(held);
        self.published.notify_waiters();
    }

    /// Subscribe from now on: the reader gets every batch published after
    /// this call, in order.
    pub fn subscribe(self: &Arc<Self>) -> TailReader {
        let next = {
            let ring = self.ring();
            self.readers.fetch_add(1, Ordering::Relaxed);
            ring.published
        };
        crate::metrics::tail_readers(self.readers());
        TailReader {
            ring: Arc::clone(self),
            next,
        }
    }
}

/// One subscriber. Dropping it unsubscribes; the last one to go empties
/// the ring.
#[derive(Debug)]
pub struct TailReader {
    ring: Arc<TailRing>,
    /// The position (in records published) of the next batch to read.
    next: u64,
}

impl TailReader {
    /// The next item, if one is there now.
    pub fn try_next(&mut self) -> Option<TailItem> {
        let ring = self.ring.ring();
        let (first, _) = ring.batches.front()?;
        if *first > self.next {
            let missed = first - self.next;
            self.next = *first;
            drop(ring);
            crate::metrics::tail_lagged(missed);
            return Some(TailItem::Lagged(missed));
        }
        // Batches are in position order: find the one at `next`.
        let at = ring
            .batches
            .partition_point(|(position, _)| *position < self.next);
        let (position, batch) = ring.batches.get(at)?;
        debug_assert_eq!(*position, self.next);
        self.next = position + u64::from(batch.count);
        Some(TailItem::Batch(batch.clone()))
    }

    /// The next item, waiting for one to be published.
    pub async fn next(&mut self) -> TailItem {
        let ring = Arc::clone(&self.ring);
        loop {
            let published = ring.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            if let Some(item) = self.try_next() {
                return item;
            }
            published.await;
        }
    }
}

impl Drop for TailReader {
    fn drop(&mut self) {
        let mut ring = self.ring.ring();
        if self.ring.readers.fetch_sub(1, Ordering::Relaxed) == 1 {
            ring.batches.clear();
            ring.spare.clear();
            ring.bytes = 0;
            drop(ring);
            crate::metrics::tail_ring_bytes(0);
        }
        crate::metrics::tail_readers(self.ring.readers());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::{BatchEncoder, Ulid};

    fn batch(first: u128, n: u32, payload: &[u8]) -> Vec<u8> {
        let mut encoder = BatchEncoder::new();
        encoder.begin();
        for i in 0..n {
            encoder.push(Record {
                id: Ulid(first + u128::from(i)),
                flags: 0,
                topic: b"t",
                payload,
            });
        }
        encoder.finish().to_vec()
    }

    fn ids(item: &TailItem) -> Vec<u128> {
        match item {
            TailItem::Batch(b) => b.records().map(|r| r.id.0).collect(),
            TailItem::Lagged(_) => panic!("lagged, expected a batch"),
        }
    }

    #[test]
    fn nothing_is_kept_while_nobody_reads() {
        let ring = Arc::new(TailRing::new(1 << 20));
        ring.publish(&batch(1, 3, b"x"), 3);
        assert_eq!(ring.ring().batches.len(), 0);
        let mut reader = ring.subscribe();
        assert!(reader.try_next().is_none(), "only batches after subscribe");
        ring.publish(&batch(4, 2, b"y"), 2);
        assert_eq!(ids(&reader.try_next().unwrap()), vec![4, 5]);
        assert!(reader.try_next().is_none());
        drop(reader);
        assert_eq!(ring.ring().batches.len(), 0, "the last reader empties it");
        assert_eq!(ring.readers(), 0);
    }

    #[test]
    fn every_reader_sees_every_batch_in_order() {
        let ring = Arc::new(TailRing::new(1 << 20));
        let mut a = ring.subscribe();
        ring.publish(&batch(1, 2, b"x"), 2);
        let mut b = ring.subscribe();
        ring.publish(&batch(3, 1, b"x"), 1);
        assert_eq!(ids(&a.try_next().unwrap()), vec![1, 2]);
        assert_eq!(ids(&a.try_next().unwrap()), vec![3]);
        assert_eq!(ids(&b.try_next().unwrap()), vec![3]);
        assert!(a.try_next().is_none() && b.try_next().is_none());
    }

    #[test]
    fn a_slow_reader_is_told_how_many_records_it_missed() {
        let one = batch(0, 10, &[b'p'; 100]).len() as u64;
        // Room for three batches.
        let ring = Arc::new(TailRing::new(3 * one));
        let mut slow = ring.subscribe();
        let mut fast = ring.subscribe();
        for i in 0..5u128 {
            ring.publish(&batch(i * 10, 10, &[b'p'; 100]), 10);
            assert_eq!(ids(&fast.try_next().unwrap()).len(), 10);
        }
        assert_eq!(ring.ring().batches.len(), 3);
        match slow.try_next().unwrap() {
            TailItem::Lagged(n) => assert_eq!(n, 20),
            other => panic!("expected lagged, got {other:?}"),
        }
        assert_eq!(ids(&slow.try_next().unwrap())[0], 20);
        assert_eq!(ids(&slow.try_next().unwrap())[0], 30);
        assert_eq!(ids(&slow.try_next().unwrap())[0], 40);
        assert!(slow.try_next().is_none());
    }

    #[test]
    fn batches_handed_over_come_back_as_spare_buffers_once_dropped() {
        let one = batch(0, 10, &[b'p'; 100]);
        let ring = Arc::new(TailRing::new(2 * one.len() as u64));
        let mut reader = ring.subscribe();
        let mut encoder = BatchEncoder::new();
        for i in 0..4u128 {
            encoder.begin();
            for j in 0..10 {
                encoder.push(Record {
                    id: Ulid(i * 10 + j),
                    flags: 0,
                    topic: b"t",
                    payload: &[b'p'; 100],
                });
            }
            let spare = ring.spare();
            let handed = encoder.take_finished(spare);
            assert_eq!(handed, batch(i * 10, 10, &[b'p'; 100]), "the whole batch");
            ring.publish_owned(handed, 10);
        }
        // Two kept. The first dropped one was taken back to encode the
        // last batch into; the second waits as a spare.
        assert_eq!(ring.ring().batches.len(), 2);
        assert_eq!(ring.ring().spare.len(), 1);
        assert!(ring.ring().spare[0].capacity() >= one.len());
        match reader.try_next().unwrap() {
            TailItem::Lagged(n) => assert_eq!(n, 20),
            other => panic!("expected lagged, got {other:?}"),
        }
        assert_eq!(ids(&reader.try_next().unwrap())[0], 20);
        assert_eq!(
            ids(&reader.try_next().unwrap()),
            (30..40).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn next_waits_for_a_publish() {
        let ring = Arc::new(TailRing::new(1 << 20));
        let mut reader = ring.subscribe();
        let publisher = Arc::clone(&ring);
        let handle = tokio::spawn(async move { reader.next().await });
        tokio::task::yield_now().await;
        publisher.publish(&batch(7, 1, b"z"), 1);
        let item = handle.await.unwrap();
        assert_eq!(ids(&item), vec![7]);
    }
}
