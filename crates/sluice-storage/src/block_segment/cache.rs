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
//! - **Keyed by content, not by file.** A block's key is its id range,
//!   record count, meta and data lengths, and its meta's checksum, which
//!   covers the frame table and so every frame's checksum. Ids are unique,
//!   so two blocks with the same key hold the same records laid out the
//!   same way: a block that compaction copies whole into a new file (small
//!   neighbours merged) is still found, and a file rewritten under the same
//!   name with other blocks never is. A key is looked up only once its
//!   file's meta checksum was verified.
//! - **Whole blocks, or records alone.** A block is kept only when every
//!   frame was read (a partial block could not answer a query that wants
//!   other frames). A query that wants some frames of a kept block searches
//!   only theirs. Of a block read in part, its records ([`Records`]: every
//!   id, topic and flags, decoded from its meta) are kept instead, so the
//!   next query for a rare literal, which reads one frame of each block,
//!   decompresses that frame and decodes no ids; a block kept whole later
//!   replaces them.
//! - **Bounded in bytes.** Entries are charged for their heap
//!   ([`Block::heap_bytes`]); an insert evicts with the CLOCK policy (a
//!   hit marks an entry; the hand clears marks and evicts the first
//!   unmarked one) until the block fits. A block larger than the whole
//!   capacity is not kept. Blocks that compaction rewrote (sorted) are
//!   never hit again, so they are the first to go.
//! - **Memory is reused.** A block evicted from the cache that no query
//!   still holds becomes a spare, up to
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

use super::{Block, block::Records};

/// What identifies a block's content (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    pub min: u128,
    pub max: u128,
    pub count: u32,
    pub meta_len: u32,
    pub data_len: u32,
    pub meta_crc: u32,
}

type Key = BlockKey;

/// Dropped blocks whose buffers are kept for reuse, at most.
pub const SPARES: usize = 8;

struct Slot {
    kept: Kept,
    bytes: u64,
    referenced: bool,
}

/// What a slot keeps.
enum Kept {
    Block(Arc<Block>),
    Records(Arc<Records>),
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
    record_hits: AtomicU64,
    record_misses: AtomicU64,
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
    /// Lookups of a block's records (for a block read in part) that found
    /// them, kept alone or in a kept block.
    pub record_hits: u64,
    /// Lookups of a block's records that did not.
    pub record_misses: u64,
    /// Records kept alone now (their blocks not kept).
    pub records_alone: u64,
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
            record_hits: AtomicU64::new(0),
            record_misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block of key `key`, if it is kept.
    pub(crate) fn get(&self, key: &BlockKey) -> Option<Arc<Block>> {
        let found = match self.lock().slots.get_mut(key) {
            Some(Slot {
                kept: Kept::Block(block),
                referenced,
                ..
            }) => {
                *referenced = true;
                Some(block.clone())
            }
            _ => None,
        };
        let counter = match found {
            Some(_) => &self.hits,
            None => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The records of the block of key `key`, kept alone or in the kept
    /// block, if either is.
    pub(crate) fn get_records(&self, key: &BlockKey) -> Option<Arc<Records>> {
        let found = self.lock().slots.get_mut(key).map(|slot| {
            slot.referenced = true;
            match &slot.kept {
                Kept::Block(block) => block.records.clone(),
                Kept::Records(records) => records.clone(),
            }
        });
        let counter = match found {
            Some(_) => &self.record_hits,
            None => &self.record_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keep `records`, those of the block of key `key` (read in part),
    /// unless something of that block is kept already.
    pub(crate) fn insert_records(&self, key: BlockKey, records: Arc<Records>) {
        let bytes = records.heap_bytes();
        self.put(key, Kept::Records(records), bytes);
    }

    /// Keep `decoded`, the block of key `key`, evicting others as needed
    /// (its records kept alone among them); a block already kept, or
    /// larger than the capacity, is not.
    pub(crate) fn insert(&self, key: BlockKey, decoded: Arc<Block>) {
        let bytes = decoded.heap_bytes();
        self.put(key, Kept::Block(decoded), bytes);
    }

    fn put(&self, key: BlockKey, kept: Kept, bytes: u64) {
        if bytes > self.capacity {
            return;
        }
        let mut evicted = 0;
        let mut state = self.lock();
        match (state.slots.get(&key), &kept) {
            (None, _) => {}
            // A whole block replaces its records kept alone.
            (
                Some(Slot {
                    kept: Kept::Records(_),
                    ..
                }),
                Kept::Block(_),
            ) => {
                let gone = state.slots.remove(&key).expect("just found");
                state.used -= gone.bytes;
                state.ring.retain(|k| *k != key);
            }
            (Some(_), _) => return,
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
            if let Kept::Block(block) = gone.kept {
                state.spare(block);
            }
            evicted += 1;
        }
        state.used += bytes;
        state.ring.push_back(key);
        state.slots.insert(
            key,
            Slot {
                kept,
                bytes,
                referenced: false,
            },
        );
        drop(state);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// A dropped block to decode the next kept block into, if one is
    /// spare.
    pub(crate) fn take_spare(&self) -> Option<Block> {
        self.lock().spares.pop()
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> BlockCacheStats {
        let (used, blocks, records_alone) = {
            let state = self.lock();
            let alone = state
                .slots
                .values()
                .filter(|slot| matches!(slot.kept, Kept::Records(_)))
                .count() as u64;
            (state.used, state.slots.len() as u64 - alone, alone)
        };
        BlockCacheStats {
            capacity: self.capacity,
            used,
            blocks,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            record_hits: self.record_hits.load(Ordering::Relaxed),
            record_misses: self.record_misses.load(Ordering::Relaxed),
            records_alone,
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

    /// The key of a block whose records have ids from `min`, and meta
    /// checksum `crc`.
    fn key(min: u128, crc: u32) -> BlockKey {
        BlockKey {
            min,
            max: min + 9,
            count: 10,
            meta_len: 100,
            data_len: 1000,
            meta_crc: crc,
        }
    }

    #[test]
    fn a_hit_returns_the_kept_block_and_a_miss_nothing() {
        let cache = BlockCache::new(1 << 20);
        let block = block_of(1000);
        cache.insert(key(7, 1), block.clone());
        assert!(Arc::ptr_eq(&cache.get(&key(7, 1)).expect("kept"), &block));
        assert!(cache.get(&key(8, 1)).is_none(), "other ids");
        assert!(
            cache.get(&key(7, 2)).is_none(),
            "another meta, the same ids"
        );
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.blocks), (1, 2, 1));
    }

    #[test]
    fn the_bound_holds_and_a_referenced_block_outlives_an_unreferenced_one() {
        let one = block_of(1000).heap_bytes();
        let cache = BlockCache::new(3 * one);
        for i in 0..3 {
            cache.insert(key(i * 10, 0), block_of(1000));
        }
        assert!(cache.get(&key(0, 0)).is_some());
        // Block 0 was hit, so the hand passes it and evicts block 10.
        cache.insert(key(30, 0), block_of(1000));
        let stats = cache.stats();
        assert!(stats.used <= stats.capacity, "{stats:?}");
        assert_eq!((stats.blocks, stats.evictions), (3, 1));
        assert!(cache.get(&key(0, 0)).is_some());
        assert!(cache.get(&key(10, 0)).is_none());
        assert!(cache.get(&key(30, 0)).is_some());
    }

    #[test]
    fn evicted_blocks_no_query_holds_become_spares() {
        let one = block_of(1000).heap_bytes();
        let cache = BlockCache::new(one);
        cache.insert(key(0, 0), block_of(1000));
        let held = cache.get(&key(0, 0)).expect("kept");
        // Evicts block 0, which a query holds: no spare.
        cache.insert(key(10, 0), block_of(1000));
        assert!(cache.take_spare().is_none(), "a query still holds it");
        drop(held);
        // Evicts block 10, which no query holds: a spare.
        cache.insert(key(20, 0), block_of(1000));
        let spare = cache.take_spare().expect("no query held it");
        assert!(spare.text.capacity() >= 1000);
        assert_eq!(cache.stats().blocks, 1);
        assert!(cache.take_spare().is_none());
    }

    #[test]
    fn records_kept_alone_are_found_and_give_way_to_their_whole_block() {
        let cache = BlockCache::new(1 << 20);
        let records = Arc::new(Records::default());
        cache.insert_records(key(7, 1), records.clone());
        assert!(cache.get(&key(7, 1)).is_none(), "no whole block kept");
        let found = cache.get_records(&key(7, 1)).expect("kept alone");
        assert!(Arc::ptr_eq(&found, &records));
        assert!(cache.get_records(&key(7, 2)).is_none(), "another meta");
        let stats = cache.stats();
        assert_eq!((stats.records_alone, stats.blocks), (1, 0));
        assert_eq!((stats.record_hits, stats.record_misses), (1, 1));
        // The whole block replaces them, and answers for its records.
        let block = block_of(1000);
        cache.insert(key(7, 1), block.clone());
        let stats = cache.stats();
        assert_eq!((stats.records_alone, stats.blocks), (0, 1));
        assert_eq!(stats.used, block.heap_bytes());
        let found = cache.get_records(&key(7, 1)).expect("in the block");
        assert!(Arc::ptr_eq(&found, &block.records));
        // Records never replace a whole block.
        cache.insert_records(key(7, 1), Arc::new(Records::default()));
        assert!(Arc::ptr_eq(&cache.get(&key(7, 1)).unwrap(), &block));
    }

    #[test]
    fn a_block_larger_than_the_capacity_is_not_kept() {
        let cache = BlockCache::new(100);
        cache.insert(key(0, 0), block_of(1000));
        assert_eq!(cache.stats().blocks, 0);
        let zero = BlockCache::new(0);
        zero.insert(key(0, 0), block_of(1));
        assert_eq!(zero.stats().blocks, 0);
    }
}
