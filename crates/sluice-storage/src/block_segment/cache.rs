//! Decoded blocks kept in memory between queries.
//!
//! A query that cannot prune (a word on 1% of lines, spread evenly)
//! decompresses every frame it reads, and zstd is then most of its time.
//! grep, warm, reads text the page cache holds; this cache is the same
//! trade for sluice: a block decoded whole by one query is kept, as
//! decoded, for the next, which searches its text without decompressing.
//!
//! # Rules
//!
//! - **Keyed by the opened segment, not its name.** The key is the
//!   [`BlockSegment`](super::BlockSegment)'s `uid`, drawn once per opened
//!   file, and the block's index. A file rewritten under the same name is
//!   opened afresh ([`crate::SegmentCache`] compares its footer), so it has
//!   a new uid and can never be served the old file's text.
//! - **Only whole blocks.** A block is kept only when every frame was read
//!   (a partial block could not answer a query that wants other frames).
//!   A query that wants some frames of a kept block searches only theirs.
//! - **Bounded in bytes.** Entries are charged for their heap
//!   ([`Block::heap_bytes`]); an insert evicts with the CLOCK policy (a
//!   hit marks an entry; the hand clears marks and evicts the first
//!   unmarked one) until the block fits. A block larger than the whole
//!   capacity is not kept. Entries of segments that compaction removed are
//!   never hit again, so they are the first to go.
//! - **Memory is reused.** A block dropped from the cache (evicted, or of
//!   a removed file) that no query still holds becomes a spare, up to
//!   [`SPARES`]: the next block kept is decoded into its buffers, so a
//!   cache that turns over does not fault in fresh pages for every block.
//! - **Verified once.** A kept block was verified (meta and frame
//!   checksums) when it was decoded; its memory is not checked again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::Block;

/// Which block: the segment's uid and the block's index in it.
type Key = (u64, u32);

/// Dropped blocks whose buffers are kept for reuse, at most.
pub const SPARES: usize = 8;

struct Slot {
    block: Arc<Block>,
    bytes: u64,
    referenced: bool,
}

#[derive(Default)]
struct State {
    slots: HashMap<Key, Slot>,
    /// The CLOCK ring: every key in `slots`, once, the hand at the front.
    ring: VecDeque<Key>,
    used: u64,
    /// Dropped blocks, for their buffers.
    spares: Vec<Block>,
}

impl State {
    /// Keep `dropped`'s buffers for reuse if no query holds it and there
    /// is room.
    fn spare(&mut self, dropped: Arc<Block>) {
        if self.spares.len() < SPARES
            && let Ok(block) = Arc::try_unwrap(dropped)
        {
            self.spares.push(block);
        }
    }
}

/// Decoded blocks shared by every query of a node, bounded in bytes.
pub struct BlockCache {
    capacity: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
}

/// A snapshot of a [`BlockCache`]'s use, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCacheStats {
    /// The bound, in bytes.
    pub capacity: u64,
    /// Bytes held now.
    pub used: u64,
    /// Blocks held now.
    pub blocks: u64,
    /// Lookups that found their block.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Blocks kept.
    pub inserts: u64,
    /// Blocks evicted to make room.
    pub evictions: u64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl BlockCache {
    /// A cache that holds at most `capacity` bytes of decoded blocks.
    pub fn new(capacity: u64) -> BlockCache {
        BlockCache {
            capacity,
            state: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block `block` of the segment `segment`, if it is kept.
    pub(crate) fn get(&self, segment: u64, block: u32) -> Option<Arc<Block>> {
        let found = self.lock().slots.get_mut(&(segment, block)).map(|slot| {
            slot.referenced = true;
            slot.block.clone()
        });
        let counter = match found {
            Some(_) => &self.hits,
            None => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keep `decoded`, block `block` of segment `segment`, evicting others
    /// as needed; a block already kept, or larger than the capacity, is
    /// not.
    pub(crate) fn insert(&self, segment: u64, block: u32, decoded: Arc<Block>) {
        let bytes = decoded.heap_bytes();
        if bytes > self.capacity {
            return;
        }
        let mut evicted = 0;
        let mut state = self.lock();
        if state.slots.contains_key(&(segment, block)) {
            return;
        }
        while state.used + bytes > self.capacity {
            let Some(key) = state.ring.pop_front() else {
                break;
            };
            let slot = state
                .slots
                .get_mut(&key)
                .expect("every ring key has a slot");
            if slot.referenced {
                slot.referenced = false;
                state.ring.push_back(key);
                continue;
            }
            let gone = state.slots.remove(&key).expect("checked above");
            state.used -= gone.bytes;
            state.spare(gone.block);
            evicted += 1;
        }
        state.used += bytes;
        state.ring.push_back((segment, block));
        state.slots.insert(
            (segment, block),
            Slot {
                block: decoded,
                bytes,
                referenced: false,
            },
        );
        drop(state);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Drop every kept block of the segments `uids` (files no longer
    /// listed: they will not be asked for again).
    pub(crate) fn forget_segments(&self, uids: &[u64]) {
        if uids.is_empty() {
            return;
        }
        let mut state = self.lock();
        let mut dropped = Vec::new();
        let State {
            slots, ring, used, ..
        } = &mut *state;
        ring.retain(|key| {
            if !uids.contains(&key.0) {
                return true;
            }
            if let Some(gone) = slots.remove(key) {
                *used -= gone.bytes;
                dropped.push(gone.block);
            }
            false
        });
        for block in dropped {
            state.spare(block);
        }
    }

    /// A dropped block to decode the next kept block into, if one is
    /// spare.
    pub(crate) fn take_spare(&self) -> Option<Block> {
        self.lock().spares.pop()
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> BlockCacheStats {
        let (used, blocks) = {
            let state = self.lock();
            (state.used, state.slots.len() as u64)
        };
        BlockCacheStats {
            capacity: self.capacity,
            used,
            blocks,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_of(bytes: usize) -> Arc<Block> {
        let mut block = Block::default();
        block.text = vec![b'x'; bytes];
        Arc::new(block)
    }

    #[test]
    fn a_hit_returns_the_kept_block_and_a_miss_nothing() {
        let cache = BlockCache::new(1 << 20);
        let block = block_of(1000);
        cache.insert(7, 0, block.clone());
        assert!(Arc::ptr_eq(&cache.get(7, 0).expect("kept"), &block));
        assert!(cache.get(7, 1).is_none());
        assert!(cache.get(8, 0).is_none(), "another segment's block 0");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.blocks), (1, 2, 1));
    }

    #[test]
    fn the_bound_holds_and_a_referenced_block_outlives_an_unreferenced_one() {
        let one = block_of(1000).heap_bytes();
        let cache = BlockCache::new(3 * one);
        for i in 0..3 {
            cache.insert(1, i, block_of(1000));
        }
        assert!(cache.get(1, 0).is_some());
        // Block 0 was hit, so the hand passes it and evicts block 1.
        cache.insert(1, 3, block_of(1000));
        let stats = cache.stats();
        assert!(stats.used <= stats.capacity, "{stats:?}");
        assert_eq!((stats.blocks, stats.evictions), (3, 1));
        assert!(cache.get(1, 0).is_some());
        assert!(cache.get(1, 1).is_none());
        assert!(cache.get(1, 3).is_some());
    }

    #[test]
    fn dropped_blocks_no_query_holds_become_spares() {
        let one = block_of(1000).heap_bytes();
        let cache = BlockCache::new(2 * one);
        cache.insert(1, 0, block_of(1000));
        let held = cache.get(1, 0).expect("kept");
        cache.insert(2, 0, block_of(1000));
        cache.forget_segments(&[1]);
        assert!(cache.take_spare().is_none(), "a query still holds it");
        drop(held);
        cache.forget_segments(&[2]);
        let spare = cache.take_spare().expect("no query held it");
        assert!(spare.text.capacity() >= 1000);
        assert_eq!(cache.stats().used, 0);
        assert!(cache.take_spare().is_none());
    }

    #[test]
    fn a_block_larger_than_the_capacity_is_not_kept() {
        let cache = BlockCache::new(100);
        cache.insert(1, 0, block_of(1000));
        assert_eq!(cache.stats().blocks, 0);
        let zero = BlockCache::new(0);
        zero.insert(1, 0, block_of(1));
        assert_eq!(zero.stats().blocks, 0);
    }
}
