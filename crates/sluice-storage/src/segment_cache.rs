//! Opened block files, and mapped batch files, shared between queries.
//!
//! A block file is immutable, so a query need not map it again, nor verify
//! again the block metas whose term filters it probes: without the cache a
//! selective query spends most of its time on checksums of filters it
//! already checked (a tenth of the file) and on page faults of a fresh
//! mapping. A sealed batch file is immutable too, and a query reads all of
//! it: mapped anew, a third of the node's CPU for a literal went to
//! faulting its pages in and unmapping them, where grep's search of the
//! same text is only the search; and once one query verified every batch
//! checksum of the file, the next need not (another third).
//!
//! # Rules
//!
//! - An entry is used only while the file at its path is the one it
//!   mapped: its length and last 12 bytes (the footer checksum, its length
//!   and tag) are read from the file on every lookup (one small read) and
//!   compared with the mapping's. A file replaced under the same name
//!   (compaction may rewrite a segment as one of the same ULID range) is
//!   opened again.
//! - A mapping keeps a removed file's blocks on disk, so the store evicts
//!   entries whose names left its listing ([`SegmentCache::retain`]) after
//!   every listing: each query's plan and each maintenance pass.
//! - **Verified once.** A block's meta is verified by the first query
//!   that reads it; a batch file's batches by the first query that reads
//!   the whole file without finding corruption
//!   ([`SharedBatchFile::verified`]). The bytes are the same for the entry's
//!   life: the file is immutable, and an entry is dropped when its file is
//!   replaced or removed. Frames of block data are verified by every query
//!   that decompresses them.
//! - Entries hold only the mapping and the verified footer (a batch
//!   file's: the mapping, whether it was verified, and its batch table,
//!   about 80 bytes per batch, at most half a percent of the file, with a
//!   record index per batch searched, 4 bytes per 16 records); memory is
//!   the footer index per segment, and the page cache owns the bytes. A
//!   batch file is compacted within minutes, and its entry goes with it.
//! - Decoded blocks are kept apart, in a [`BlockCache`] bounded in bytes
//!   ([`SegmentCache::with_block_cache`]), keyed by their content, so a
//!   block copied whole into another file is found there too.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use crate::{
    Mapped, StorageError,
    block_segment::{BlockCache, BlockSegment},
    fs::{Fs, ReadFile},
    segment::BatchTable,
};

/// Bytes at the end of a block file that identify it with its length: the
/// footer's checksum, the footer frame's length and the tag.
const TAIL: usize = 12;

/// Opened block files by path. Cheap to share: clone the `Arc`.
#[derive(Debug, Default)]
pub struct SegmentCache {
    entries: Mutex<HashMap<PathBuf, Arc<BlockSegment>>>,
    /// Sealed batch files, mapped.
    batch_files: Mutex<HashMap<PathBuf, SharedBatchFile>>,
    blocks: Option<Arc<BlockCache>>,
}

/// A sealed batch file as the store's queries share it.
#[derive(Debug, Clone)]
pub struct SharedBatchFile {
    /// Its mapping.
    pub mapped: Arc<Mapped>,
    /// Raised by the first query that verified every batch's checksum, so
    /// that later ones do not verify them again (see the module's rules).
    pub verified: Arc<AtomicBool>,
    /// Its batches, walked once when it was mapped, each with its record
    /// index once a search built it (every
    /// [`RECORD_INDEX_STRIDE`](crate::cursor::RECORD_INDEX_STRIDE)-th
    /// record's start, so that later searches walk a few record headers
    /// to each hit rather than every header of the body).
    /// `None` for a file of many small batches (averaging under 16 KiB),
    /// read by walking its headers.
    pub batches: Option<Arc<BatchTable>>,
}

/// What identifies the file a segment was opened from.
fn fingerprint_of(bytes: &[u8]) -> Option<(u64, [u8; TAIL])> {
    let tail = bytes.get(bytes.len().checked_sub(TAIL)?..)?;
    Some((bytes.len() as u64, tail.try_into().expect("TAIL bytes")))
}

impl SegmentCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache whose cursors also keep up to `bytes` of decoded
    /// blocks between queries (0: none).
    pub fn with_block_cache(bytes: u64) -> Self {
        SegmentCache {
            entries: Mutex::default(),
            batch_files: Mutex::default(),
            blocks: (bytes > 0).then(|| Arc::new(BlockCache::new(bytes))),
        }
    }

    /// The decoded blocks kept, if any are.
    pub fn block_cache(&self) -> Option<&Arc<BlockCache>> {
        self.blocks.as_ref()
    }

    /// The block file at `path`, whose open file is `file` (the caller
    /// opened it to read the format): the cached one if `file` is still the
    /// one it mapped, else the file mapped (and its footer verified) now.
    pub fn open(
        &self,
        fs: &dyn Fs,
        path: &Path,
        file: &dyn ReadFile,
    ) -> Result<Arc<BlockSegment>, StorageError> {
        let cached = self.lock().get(path).cloned();
        if let Some(segment) = cached
            && is_same_file(file, segment.bytes())
        {
            return Ok(segment);
        }
        let segment = Arc::new(BlockSegment::open(fs, path)?);
        self.lock().insert(path.to_path_buf(), segment.clone());
        Ok(segment)
    }

    /// The sealed batch file at `path`, whose open file is `file`: the
    /// one kept if `file` is still the file it mapped (the same length and
    /// last bytes), else the file mapped now, its batch headers walked
    /// (not verified).
    pub fn map_batches(
        &self,
        fs: &dyn Fs,
        path: &Path,
        file: &dyn ReadFile,
    ) -> Result<SharedBatchFile, StorageError> {
        let cached = lock(&self.batch_files).get(path).cloned();
        if let Some(shared) = cached
            && is_same_file(file, &shared.mapped)
        {
            return Ok(shared);
        }
        let mapped = fs
            .map(path)
            .map_err(StorageError::io("map segment", path))?;
        let shared = SharedBatchFile {
            batches: BatchTable::walk(&mapped).map(Arc::new),
            mapped: Arc::new(mapped),
            verified: Arc::default(),
        };
        lock(&self.batch_files).insert(path.to_path_buf(), shared.clone());
        Ok(shared)
    }

    /// Drop the entries whose file name `keep` rejects, releasing their
    /// mappings (and so the disk space of removed files).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut kept = |path: &PathBuf| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(&mut keep)
        };
        self.lock().retain(|path, _| kept(path));
        lock(&self.batch_files).retain(|path, _| kept(path));
    }

    /// Drop the entries of files not in `segments` (a fresh listing of
    /// their directory).
    pub fn retain_listed(&self, segments: &[crate::SegmentMeta]) {
        let listed: std::collections::HashSet<&str> =
            segments.iter().map(|s| s.name.as_str()).collect();
        self.retain(|name| listed.contains(name));
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no segment is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<BlockSegment>>> {
        lock(&self.entries)
    }
}

fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every operation
    // on it is a single insert, lookup or retain.
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `file` is the file whose mapping is `mapped`: the same length
/// and last [`TAIL`] bytes (one small read).
fn is_same_file(file: &dyn ReadFile, mapped: &[u8]) -> bool {
    let Ok(len) = file.len() else {
        return false;
    };
    let mut tail = [0u8; TAIL];
    len >= TAIL as u64
        && file.read_exact_at(&mut tail, len - TAIL as u64).is_ok()
        && fingerprint_of(mapped) == Some((len, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemFs, RecordCursor, block_segment::BlockCursor, block_segment::BlockWriter};
    use sluice_record::{Record, Ulid};

    fn write(fs: &MemFs, path: &Path, payloads: &[&str]) {
        write_from(fs, path, payloads, 1_000);
    }

    /// Payloads at milliseconds `first_ms`, `first_ms + 1`, ...
    fn write_from(fs: &MemFs, path: &Path, payloads: &[&str], first_ms: u64) {
        let mut writer =
            BlockWriter::new(fs.create_new(path).unwrap(), crate::workers::test_pool()).unwrap();
        for (i, p) in payloads.iter().enumerate() {
            let record = Record {
                id: Ulid::from_parts(first_ms + i as u64, 0),
                flags: 0,
                topic: b"t",
                payload: p.as_bytes(),
            };
            writer.push(record).unwrap();
        }
        writer.finish().unwrap();
    }

    /// As a query opens a segment: the file first, then the cache.
    fn open(
        cache: &SegmentCache,
        fs: &MemFs,
        path: &Path,
    ) -> Result<Arc<BlockSegment>, StorageError> {
        let file = fs
            .open_read(path)
            .map_err(StorageError::io("open segment", path))?;
        cache.open(fs, path, &*file)
    }

    fn payloads(segment: Arc<BlockSegment>) -> Vec<String> {
        payloads_of(BlockCursor::shared(segment, crate::workers::test_pool()))
    }

    fn payloads_of(mut cursor: BlockCursor) -> Vec<String> {
        let mut out = Vec::new();
        while cursor.advance().unwrap() {
            out.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn a_file_is_opened_once_and_again_when_replaced() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/a.seg");
        write(&fs, path, &["one", "two"]);
        let cache = SegmentCache::new();
        let first = open(&cache, &fs, path).unwrap();
        let again = open(&cache, &fs, path).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second open maps nothing");
        assert_eq!(payloads(again), ["one", "two"]);

        // Replaced under the same name, as compaction may do.
        write(&fs, Path::new("/d/b.tmp"), &["three"]);
        fs.rename(Path::new("/d/b.tmp"), path).unwrap();
        let replaced = open(&cache, &fs, path).unwrap();
        assert!(!Arc::ptr_eq(&first, &replaced));
        assert_eq!(payloads(replaced.clone()), ["three"]);
        // The old mapping still serves a query that holds it.
        assert_eq!(payloads(first), ["one", "two"]);

        // Replaced by a file of the same length: told apart by its tail
        // (the footer's checksum covers the blocks' ids).
        let length = |p: &str| fs.read_all(Path::new(p)).unwrap().len();
        write_from(&fs, Path::new("/d/c.tmp"), &["three"], 5_000);
        assert_eq!(length("/d/c.tmp"), length("/d/a.seg"), "same length");
        fs.rename(Path::new("/d/c.tmp"), path).unwrap();
        let same_length = open(&cache, &fs, path).unwrap();
        assert!(!Arc::ptr_eq(&replaced, &same_length));
        assert_eq!(same_length.blocks()[0].min.timestamp_ms(), 5_000);
    }

    fn payloads_kept(cache: &SegmentCache, segment: Arc<BlockSegment>) -> Vec<String> {
        let blocks = cache.block_cache().expect("a block cache").clone();
        payloads_of(
            BlockCursor::shared(segment, crate::workers::test_pool()).with_block_cache(blocks),
        )
    }

    /// Kept blocks are found by content: the same blocks in another file
    /// are hits, and a file replaced under its name by other blocks is
    /// never answered from the old ones.
    #[test]
    fn kept_blocks_follow_content_not_names() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let cache = SegmentCache::with_block_cache(1 << 30);
        let stats = || cache.block_cache().unwrap().stats();
        let path = Path::new("/d/a.seg");
        write(&fs, path, &["one", "two"]);
        assert_eq!(
            payloads_kept(&cache, open(&cache, &fs, path).unwrap()),
            ["one", "two"]
        );
        assert_eq!((stats().hits, stats().blocks), (0, 1));
        // A second read: its meta now verified, the block is found.
        assert_eq!(
            payloads_kept(&cache, open(&cache, &fs, path).unwrap()),
            ["one", "two"]
        );
        assert_eq!(stats().hits, 1);

        // The same records written to another file: the same block.
        write(&fs, Path::new("/d/copy.seg"), &["one", "two"]);
        let copy = open(&cache, &fs, Path::new("/d/copy.seg")).unwrap();
        assert_eq!(payloads_kept(&cache, copy.clone()), ["one", "two"]);
        assert_eq!(payloads_kept(&cache, copy), ["one", "two"]);
        assert_eq!(stats().hits, 2, "the copy's block was kept already");

        // Replaced under the same name by another block of the same ids
        // (as a sort rewrites one: here, other bytes).
        write(&fs, Path::new("/d/b.tmp"), &["uno!", "dos!"]);
        fs.rename(Path::new("/d/b.tmp"), path).unwrap();
        for _ in 0..2 {
            let replaced = open(&cache, &fs, path).unwrap();
            assert_eq!(payloads_kept(&cache, replaced), ["uno!", "dos!"]);
        }
        assert_eq!(stats().hits, 3, "the second read of the new block");
    }

    #[test]
    fn removed_files_are_evicted_and_missing_files_are_errors() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/a.seg");
        write(&fs, path, &["one"]);
        let cache = SegmentCache::new();
        open(&cache, &fs, path).unwrap();
        fs.remove_file(path).unwrap();
        let err = open(&cache, &fs, path).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(cache.len(), 1);
        cache.retain_listed(&[]);
        assert!(cache.is_empty());
    }
}
