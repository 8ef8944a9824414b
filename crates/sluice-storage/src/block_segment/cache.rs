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
//! - **Whole blocks, or the part a query read.** A block decoded whole
//!   answers any query; a query that wants some of its frames searches
//!   only theirs. A block read in part is kept too, with the frames it
//!   read and every record's id, topic and flags ([`Records`], decoded
//!   from its meta): it answers a query that wants no other frames (the
//!   same rare literal again) without decompressing, and gives any other
//!   query of the block its records, so that it decompresses only its
//!   frames and decodes no ids. The part a later query reads replaces it,
//!   and the whole block, once read, replaces any part.
//! - **Kept as written, too.** Compaction, given the cache, keeps each
//!   block it builds ([`super::BlockWriter::keeping_blocks_in`]), decoded
//!   from the text it compressed rather than from the file, so that data
//!   just compacted is searched as it was in its batch files: under
//!   sustained ingest, a query of the last minutes otherwise decompressed
//!   every block compaction had written since the last query (a two-second
//!   stall after each compaction, at 150 MB/s). No checksum is computed
//!   again for it (the writer computed them from the same bytes); the copy
//!   on disk is verified when a query decodes it after this one is
//!   evicted. The blocks of a merge that copies blocks
//!   whole keep their key, and so their entry.
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
//!   checksums) when it was decoded (a block kept as written: see above);
//!   its memory is not checked again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{Block, BlockEntry, block::Records};

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

impl BlockKey {
    /// The key of block `entry`, whose meta (its checksum last) is `meta`.
    pub(crate) fn new(entry: &BlockEntry, meta: &[u8]) -> BlockKey {
        let crc = meta.len().checked_sub(4).map_or(0, |at| {
            u32::from_le_bytes(meta[at..].try_into().expect("4 bytes"))
        });
        BlockKey {
            min: entry.min.0,
            max: entry.max.0,
            count: entry.count,
            meta_len: entry.meta_len,
            data_len: entry.data_len,
            meta_crc: crc,
        }
    }
}

/// Dropped blocks whose buffers are kept for reuse, at most.
pub const SPARES: usize = 8;

struct Slot {
    /// The block, whole or in part ([`Block::whole`]).
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
    record_hits: AtomicU64,
    record_misses: AtomicU64,
    inserts: AtomicU64,
    written: AtomicU64,
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
    /// them, in a block kept whole or in part.
    pub record_hits: u64,
    /// Lookups of a block's records that did not.
    pub record_misses: u64,
    /// Of the blocks held now, those held in part.
    pub parts: u64,
    /// Blocks kept.
    pub inserts: u64,
    /// Of the blocks kept, those kept as compaction wrote them
    /// ([`super::BlockWriter::keeping_blocks_in`]).
    pub written: u64,
    /// Blocks evicted to make room.
    pub evictions: u64,
}

/// Count a lookup that found what it looked for, or one that did not.
fn count(found: bool, hits: &AtomicU64, misses: &AtomicU64) {
    let counter = if found { hits } else { misses };
    counter.fetch_add(1, Ordering::Relaxed);
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
            written: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block of key `key`, if it is kept with the frames `wanted`
    /// (indices, ascending; `None`: every frame).
    pub(crate) fn get(&self, key: &BlockKey, wanted: Option<&[u32]>) -> Option<Arc<Block>> {
        let found = match self.lock().slots.get_mut(key) {
            Some(Slot {
                block, referenced, ..
            }) if block.holds(wanted) => {
                *referenced = true;
                Some(block.clone())
            }
            _ => None,
        };
        count(found.is_some(), &self.hits, &self.misses);
        found
    }

    /// The records of the block of key `key`, if it is kept, whole or in
    /// part.
    pub(crate) fn get_records(&self, key: &BlockKey) -> Option<Arc<Records>> {
        let found = self.lock().slots.get_mut(key).map(|slot| {
            slot.referenced = true;
            slot.block.records.clone()
        });
        count(found.is_some(), &self.record_hits, &self.record_misses);
        found
    }

    /// Keep `decoded`, the block of key `key` (whole or in part),
    /// evicting others as needed. It replaces a part of the same block
    /// kept before, not a whole block; a block larger than the capacity
    /// is not kept. Returns whether it was kept.
    pub(crate) fn insert(&self, key: BlockKey, decoded: Arc<Block>) -> bool {
        let bytes = decoded.heap_bytes();
        if bytes > self.capacity {
            return false;
        }
        let mut evicted = 0;
        let mut state = self.lock();
        match state.slots.get(&key) {
            None => {}
            Some(slot) if slot.block.whole => return false,
            Some(_) => {
                let gone = state.slots.remove(&key).expect("just found");
                state.used -= gone.bytes;
                state.ring.retain(|k| *k != key);
                state.spare(gone.block);
            }
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
        state.ring.push_back(key);
        state.slots.insert(
            key,
            Slot {
                block: decoded,
                bytes,
                referenced: false,
            },
        );
        drop(state);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        true
    }

    /// Keep `built`, the block of key `key` as compaction just wrote it
    /// (whole), as [`BlockCache::insert`] keeps a decoded one.
    pub(crate) fn insert_written(&self, key: BlockKey, built: Arc<Block>) {
        debug_assert!(built.whole);
        if self.insert(key, built) {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A dropped block to decode the next kept block into, if one is
    /// spare.
    pub(crate) fn take_spare(&self) -> Option<Block> {
        self.lock().spares.pop()
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> BlockCacheStats {
        let (used, blocks, parts) = {
            let state = self.lock();
            let parts = state
                .slots
                .values()
                .filter(|slot| !slot.block.whole)
                .count() as u64;
            (state.used, state.slots.len() as u64, parts)
        };
        BlockCacheStats {
            capacity: self.capacity,
            used,
            blocks,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            record_hits: self.record_hits.load(Ordering::Relaxed),
            record_misses: self.record_misses.load(Ordering::Relaxed),
            parts,
            inserts: self.inserts.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
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
        block.whole = true;
        Arc::new(block)
    }

    /// A block read in part: the frames `held`.
    fn part_of(bytes: usize, held: &[u32]) -> Arc<Block> {
        let mut block = Block::default();
        block.text = vec![b'x'; bytes];
        block.held = held.to_vec();
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
        assert!(Arc::ptr_eq(
            &cache.get(&key(7, 1), None).expect("kept"),
            &block
        ));
        assert!(cache.get(&key(8, 1), None).is_none(), "other ids");
        assert!(
            cache.get(&key(7, 2), None).is_none(),
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
        assert!(cache.get(&key(0, 0), None).is_some());
        // Block 0 was hit, so the hand passes it and evicts block 10.
        cache.insert(key(30, 0), block_of(1000));
        let stats = cache.stats();
        assert!(stats.used <= stats.capacity, "{stats:?}");
        assert_eq!((stats.blocks, stats.evictions), (3, 1));
        assert!(cache.get(&key(0, 0), None).is_some());
        assert!(cache.get(&key(10, 0), None).is_none());
        assert!(cache.get(&key(30, 0), None).is_some());
    }

    #[test]
    fn evicted_blocks_no_query_holds_become_spares() {
        let one = block_of(1000).heap_bytes();
        let cache = BlockCache::new(one);
        cache.insert(key(0, 0), block_of(1000));
        let held = cache.get(&key(0, 0), None).expect("kept");
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
    fn a_part_answers_for_its_frames_and_gives_way_to_the_next_part_and_the_whole() {
        let cache = BlockCache::new(1 << 20);
        let part = part_of(1000, &[2, 5]);
        cache.insert(key(7, 1), part.clone());
        for wanted in [&[2][..], &[5], &[2, 5]] {
            let found = cache.get(&key(7, 1), Some(wanted)).expect("frames held");
            assert!(Arc::ptr_eq(&found, &part));
        }
        for wanted in [Some(&[3][..]), Some(&[2, 3]), Some(&[5, 6]), None] {
            assert!(cache.get(&key(7, 1), wanted).is_none(), "{wanted:?}");
        }
        let found = cache.get_records(&key(7, 1)).expect("the part's records");
        assert!(Arc::ptr_eq(&found, &part.records));
        assert!(cache.get_records(&key(7, 2)).is_none(), "another meta");
        let stats = cache.stats();
        assert_eq!((stats.parts, stats.blocks), (1, 1));
        assert_eq!((stats.hits, stats.misses), (3, 4));
        assert_eq!((stats.record_hits, stats.record_misses), (1, 1));
        // The part the next query read replaces it.
        let next = part_of(2000, &[3]);
        cache.insert(key(7, 1), next.clone());
        assert!(cache.get(&key(7, 1), Some(&[2])).is_none());
        assert!(Arc::ptr_eq(
            &cache.get(&key(7, 1), Some(&[3])).unwrap(),
            &next
        ));
        assert_eq!(cache.stats().used, next.heap_bytes());
        // The whole block replaces the part, and answers for any frames.
        let block = block_of(1000);
        cache.insert(key(7, 1), block.clone());
        let stats = cache.stats();
        assert_eq!((stats.parts, stats.blocks), (0, 1));
        assert_eq!(stats.used, block.heap_bytes());
        assert!(Arc::ptr_eq(
            &cache.get(&key(7, 1), Some(&[2])).unwrap(),
            &block
        ));
        // A part never replaces a whole block.
        cache.insert(key(7, 1), part_of(10, &[2]));
        assert!(Arc::ptr_eq(&cache.get(&key(7, 1), None).unwrap(), &block));
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
