//! The batch manifest: an append-only record of the batches this store
//! holds, `batch → (min, max, replicas, segment)`, which stores exchange so
//! that each knows who else holds its batches (see `repair.rs`).
//!
//! A batch is a store segment as the consumer lane first wrote it (or as a
//! repair copied it), named by its id range; its replicas carry the same
//! name. Compaction later folds batches into block files, so the `segment`
//! an entry names is where the batch was written, not necessarily where its
//! records are now; repair reads records by id range, never by file.
//!
//! File: `<store>/manifest/entries`. A 16-byte header (the magic
//! `SLMANIF1`, then the epoch as u64 LE: a random number drawn when the
//! file was created or rewritten), then entries, each `len: u32 LE`,
//! `crc32(payload): u32 LE`, `payload` (JSON). Every append is fsynced
//! before it returns.
//!
//! Recovery rule: at open, entries are read until the first that is torn
//! or fails its checksum; the file is cut there (the lost tail is counted
//! and logged). A header that is torn or wrong starts a new, empty file
//! with a new epoch: the manifest is an index of what the store holds, and
//! `sluice repair` walks the records themselves, so nothing acknowledged
//! depends on it.
//!
//! Readers page through entries by byte offset ([`Manifest::read_since`]).
//! A rewrite ([`Manifest::retain`], which drops entries of batches the store
//! no longer holds) draws a new epoch, so a peer whose cursor names the old
//! epoch starts again from the beginning.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use sluice_storage::{Fs, StorageError, WriteFile};

use crate::metrics;

const MAGIC: &[u8; 8] = b"SLMANIF1";
const HEADER_LEN: u64 = 16;
/// An entry's payload is a few hundred bytes; anything past this is
/// corruption, not an entry.
const MAX_ENTRY_BYTES: u32 = 64 << 10;
/// The manifest's directory under the store directory.
pub const MANIFEST_DIR: &str = "manifest";
const FILE: &str = "entries";

/// One batch this store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The batch's name: its store segment's file name, `<min>-<max>.seg`.
    pub batch: String,
    /// Its smallest record id.
    pub min: String,
    /// Its largest record id.
    pub max: String,
    /// The node ids known to hold it when the entry was written, this
    /// store included.
    pub replicas: Vec<String>,
    /// The file it was written as on this store.
    pub segment: String,
}

/// A page of entries, as [`Manifest::read_since`] returns them and
/// `GET /store/manifest` sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The manifest's epoch; a cursor from another epoch means nothing.
    pub epoch: u64,
    /// The cursor to ask from next.
    pub next: u64,
    /// The entries from the cursor on, in the order they were written.
    pub entries: Vec<Entry>,
}

/// The manifest file of one store.
#[derive(Debug)]
pub struct Manifest {
    fs: std::sync::Arc<dyn Fs>,
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    epoch: u64,
    file: Box<dyn WriteFile>,
    /// Bytes of whole entries (and the header).
    len: u64,
    entries: u64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("epoch", &self.epoch)
            .field("len", &self.len)
            .field("entries", &self.entries)
            .finish()
    }
}

/// A manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] StorageError),
    /// An entry could not be encoded.
    #[error("encode manifest entry for batch {batch}: {source}")]
    Encode {
        /// The batch.
        batch: String,
        /// Why.
        source: serde_json::Error,
    },
}

impl Manifest {
    /// Open `<store_dir>/manifest/entries`, creating it if missing, and
    /// apply the recovery rule (see the module docs).
    pub fn open(fs: std::sync::Arc<dyn Fs>, store_dir: &Path) -> Result<Manifest, ManifestError> {
        let dir = store_dir.join(MANIFEST_DIR);
        fs.create_dir_all(&dir)
            .map_err(StorageError::io("create manifest dir", &dir))?;
        let path = dir.join(FILE);
        let inner = match scan(&*fs, &path)? {
            Some(scanned) => {
                if scanned.torn_bytes > 0 {
                    tracing::warn!(
                        path = %path.display(),
                        cut_bytes = scanned.torn_bytes,
                        kept_entries = scanned.entries,
                        "the manifest ends in a torn or corrupt entry; cut it off there"
                    );
                    metrics::manifest_recovered("torn_tail");
                    fs.truncate(&path, scanned.good_len)
                        .map_err(StorageError::io("cut manifest", &path))?;
                }
                let file = fs
                    .open_append(&path)
                    .map_err(StorageError::io("open manifest", &path))?;
                Inner {
                    epoch: scanned.epoch,
                    file,
                    len: scanned.good_len,
                    entries: scanned.entries,
                }
            }
            None => {
                if fs.exists(&path) {
                    tracing::warn!(path = %path.display(), "the manifest's header is torn or not a manifest's; starting a new one");
                    metrics::manifest_recovered("bad_header");
                }
                create(&*fs, &path, &dir)?
            }
        };
        metrics::manifest_entries(inner.entries);
        Ok(Manifest {
            fs,
            path,
            inner: Mutex::new(inner),
        })
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Entries in the file.
    pub fn count(&self) -> u64 {
        self.lock().entries
    }

    /// Append `entry` and make it durable.
    pub fn append(&self, entry: &Entry) -> Result<(), ManifestError> {
        let payload = serde_json::to_vec(entry).map_err(|source| ManifestError::Encode {
            batch: entry.batch.clone(),
            source,
        })?;
        let mut framed = Vec::with_capacity(payload.len() + 8);
        framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        framed.extend_from_slice(&payload);
        let mut inner = self.lock();
        let written = inner
            .file
            .write_all(&framed)
            .and_then(|()| inner.file.sync_data());
        if let Err(err) = written {
            // A partial append would leave a torn entry in the middle of
            // the file; cut back to the last whole one.
            let _ = self.fs.truncate(&self.path, inner.len);
            if let Ok(file) = self.fs.open_append(&self.path) {
                inner.file = file;
            }
            return Err(StorageError::io("append to manifest", &self.path)(err).into());
        }
        inner.len += framed.len() as u64;
        inner.entries += 1;
        metrics::manifest_entries(inner.entries);
        Ok(())
    }

    /// Entries from byte offset `cursor` (0: from the start) of epoch
    /// `epoch`, up to about `max_bytes` of them. A cursor of another epoch,
    /// or past the end, starts from the beginning.
    pub fn read_since(
        &self,
        epoch: u64,
        cursor: u64,
        max_bytes: u64,
    ) -> Result<Page, ManifestError> {
        let (current, len) = {
            let inner = self.lock();
            (inner.epoch, inner.len)
        };
        let mut offset = if epoch == current && cursor >= HEADER_LEN && cursor <= len {
            cursor
        } else {
            HEADER_LEN
        };
        let file = self
            .fs
            .open_read(&self.path)
            .map_err(StorageError::io("open manifest", &self.path))?;
        let mut entries = Vec::new();
        let mut read = 0u64;
        while offset < len && read < max_bytes {
            let Some((entry, size)) = read_entry(&*file, offset, len) else {
                break;
            };
            offset += size;
            read += size;
            if let Some(entry) = entry {
                entries.push(entry);
            }
        }
        Ok(Page {
            epoch: current,
            next: offset,
            entries,
        })
    }

    /// Every entry, in the order written.
    pub fn entries(&self) -> Result<Vec<Entry>, ManifestError> {
        let mut all = Vec::new();
        let (mut epoch, mut cursor) = (self.epoch(), 0);
        loop {
            let page = self.read_since(epoch, cursor, 1 << 20)?;
            if page.entries.is_empty() {
                return Ok(all);
            }
            (epoch, cursor) = (page.epoch, page.next);
            all.extend(page.entries);
        }
    }

    /// Rewrite the manifest with only the entries `keep` accepts, under a
    /// new epoch (tmp file, fsync, rename). Returns the entries dropped.
    pub fn retain(&self, keep: impl Fn(&Entry) -> bool) -> Result<u64, ManifestError> {
        let mut inner = self.lock();
        let all = {
            let file = self
                .fs
                .open_read(&self.path)
                .map_err(StorageError::io("open manifest", &self.path))?;
            let mut all = Vec::new();
            let mut offset = HEADER_LEN;
            while let Some((entry, size)) = read_entry(&*file, offset, inner.len) {
                offset += size;
                all.extend(entry);
            }
            all
        };
        let kept: Vec<&Entry> = all.iter().filter(|e| keep(e)).collect();
        let dropped = all.len() as u64 - kept.len() as u64;
        if dropped == 0 {
            return Ok(0);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!("{FILE}.tmp"));
        let _ = self.fs.remove_file(&tmp);
        let epoch = new_epoch(inner.epoch);
        let mut bytes = header(epoch).to_vec();
        for entry in &kept {
            let payload = serde_json::to_vec(entry).map_err(|source| ManifestError::Encode {
                batch: entry.batch.clone(),
                source,
            })?;
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        let mut file = self
            .fs
            .create_new(&tmp)
            .map_err(StorageError::io("create manifest rewrite", &tmp))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(StorageError::io("write manifest rewrite", &tmp))?;
        drop(file);
        self.fs
            .rename(&tmp, &self.path)
            .map_err(StorageError::io("rename manifest rewrite", &self.path))?;
        self.fs
            .sync_dir(dir)
            .map_err(StorageError::io("fsync manifest dir", dir))?;
        inner.file = self
            .fs
            .open_append(&self.path)
            .map_err(StorageError::io("open manifest", &self.path))?;
        inner.epoch = epoch;
        inner.len = bytes.len() as u64;
        inner.entries = kept.len() as u64;
        metrics::manifest_entries(inner.entries);
        Ok(dropped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn header(epoch: u64) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&epoch.to_le_bytes());
    header
}

/// A random epoch, never 0 and never `old`.
fn new_epoch(old: u64) -> u64 {
    loop {
        let epoch = rand::random::<u64>();
        if epoch != 0 && epoch != old {
            return epoch;
        }
    }
}

fn create(fs: &dyn Fs, path: &Path, dir: &Path) -> Result<Inner, ManifestError> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let _ = fs.remove_file(&tmp);
    let epoch = new_epoch(0);
    let mut file = fs
        .create_new(&tmp)
        .map_err(StorageError::io("create manifest", &tmp))?;
    file.write_all(&header(epoch))
        .and_then(|()| file.sync_data())
        .map_err(StorageError::io("write manifest header", &tmp))?;
    drop(file);
    fs.rename(&tmp, path)
        .map_err(StorageError::io("place manifest", path))?;
    fs.sync_dir(dir)
        .map_err(StorageError::io("fsync manifest dir", dir))?;
    let file = fs
        .open_append(path)
        .map_err(StorageError::io("open manifest", path))?;
    Ok(Inner {
        epoch,
        file,
        len: HEADER_LEN,
        entries: 0,
    })
}

struct Scanned {
    epoch: u64,
    good_len: u64,
    entries: u64,
    torn_bytes: u64,
}

/// Read the file's header and entries: `None` when there is no usable
/// header.
fn scan(fs: &dyn Fs, path: &Path) -> Result<Option<Scanned>, ManifestError> {
    if !fs.exists(path) {
        return Ok(None);
    }
    let file = fs
        .open_read(path)
        .map_err(StorageError::io("open manifest", path))?;
    let len = file
        .len()
        .map_err(StorageError::io("stat manifest", path))?;
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN || file.read_exact_at(&mut head, 0).is_err() || &head[..8] != MAGIC {
        return Ok(None);
    }
    let epoch = u64::from_le_bytes(head[8..].try_into().expect("8 bytes"));
    let mut offset = HEADER_LEN;
    let mut entries = 0;
    while let Some((entry, size)) = read_entry(&*file, offset, len) {
        if entry.is_none() {
            break;
        }
        offset += size;
        entries += 1;
    }
    Ok(Some(Scanned {
        epoch,
        good_len: offset,
        entries,
        torn_bytes: len - offset,
    }))
}

/// The entry at `offset` and its framed size; `None` at the end or at a
/// torn frame; `Some((None, _))` for a frame whose checksum or JSON fails.
fn read_entry(
    file: &dyn sluice_storage::ReadFile,
    offset: u64,
    len: u64,
) -> Option<(Option<Entry>, u64)> {
    if offset + 8 > len {
        return None;
    }
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, offset).ok()?;
    let size = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if size > MAX_ENTRY_BYTES || offset + 8 + u64::from(size) > len {
        return None;
    }
    let mut payload = vec![0u8; size as usize];
    file.read_exact_at(&mut payload, offset + 8).ok()?;
    let framed = 8 + u64::from(size);
    if crc32fast::hash(&payload) != crc {
        return Some((None, framed));
    }
    Some((serde_json::from_slice(&payload).ok(), framed))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use sluice_storage::MemFs;

    use super::*;

    fn entry(n: u32) -> Entry {
        Entry {
            batch: format!("batch-{n}.seg"),
            min: format!("min{n}"),
            max: format!("max{n}"),
            replicas: vec!["a".into(), format!("node-{n}")],
            segment: format!("batch-{n}.seg"),
        }
    }

    fn open(fs: &Arc<MemFs>) -> Manifest {
        Manifest::open(fs.clone(), Path::new("/store")).unwrap()
    }

    #[test]
    fn appended_entries_survive_a_crash_and_a_reopen() {
        let fs = Arc::new(MemFs::new());
        let manifest = open(&fs);
        for n in 0..5 {
            manifest.append(&entry(n)).unwrap();
        }
        let epoch = manifest.epoch();
        drop(manifest);
        fs.crash(None);
        let manifest = open(&fs);
        assert_eq!(manifest.epoch(), epoch);
        assert_eq!(
            manifest.entries().unwrap(),
            (0..5).map(entry).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_go_on_after_it() {
        let fs = Arc::new(MemFs::new());
        let manifest = open(&fs);
        manifest.append(&entry(0)).unwrap();
        manifest.append(&entry(1)).unwrap();
        drop(manifest);
        let path = Path::new("/store/manifest/entries");
        let bytes = fs.read_all(path).unwrap();
        // Cut the second entry in half.
        let torn = bytes.len() - 10;
        fs.write_all_synced(path, &bytes[..torn]);
        let manifest = open(&fs);
        assert_eq!(manifest.entries().unwrap(), vec![entry(0)]);
        manifest.append(&entry(2)).unwrap();
        drop(manifest);
        assert_eq!(open(&fs).entries().unwrap(), vec![entry(0), entry(2)]);
    }

    #[test]
    fn a_flipped_byte_ends_the_manifest_at_the_entry_before() {
        let fs = Arc::new(MemFs::new());
        let manifest = open(&fs);
        for n in 0..3 {
            manifest.append(&entry(n)).unwrap();
        }
        drop(manifest);
        let path = Path::new("/store/manifest/entries");
        let mut bytes = fs.read_all(path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs.write_all_synced(path, &bytes);
        assert_eq!(open(&fs).entries().unwrap(), vec![entry(0), entry(1)]);
    }

    #[test]
    fn a_bad_header_starts_a_new_manifest() {
        let fs = Arc::new(MemFs::new());
        fs.create_dir_all(Path::new("/store/manifest")).unwrap();
        fs.write_all_synced(
            Path::new("/store/manifest/entries"),
            b"not a manifest at all",
        );
        let manifest = open(&fs);
        assert_eq!(manifest.count(), 0);
        manifest.append(&entry(7)).unwrap();
        assert_eq!(open(&fs).entries().unwrap(), vec![entry(7)]);
    }

    #[test]
    fn pages_follow_the_cursor_and_a_rewrite_restarts_them() {
        let fs = Arc::new(MemFs::new());
        let manifest = open(&fs);
        for n in 0..10 {
            manifest.append(&entry(n)).unwrap();
        }
        let first = manifest.read_since(0, 0, 1).unwrap();
        assert_eq!(first.entries, vec![entry(0)]);
        let rest = manifest
            .read_since(first.epoch, first.next, u64::MAX)
            .unwrap();
        assert_eq!(rest.entries, (1..10).map(entry).collect::<Vec<_>>());
        let none = manifest
            .read_since(rest.epoch, rest.next, u64::MAX)
            .unwrap();
        assert!(none.entries.is_empty());

        let dropped = manifest.retain(|e| e.batch != "batch-3.seg").unwrap();
        assert_eq!(dropped, 1);
        assert_ne!(manifest.epoch(), first.epoch);
        // The old cursor names the old epoch: the reader starts over.
        let again = manifest
            .read_since(rest.epoch, rest.next, u64::MAX)
            .unwrap();
        assert_eq!(again.entries.len(), 9);
        manifest.append(&entry(10)).unwrap();
        drop(manifest);
        let reopened = open(&fs);
        assert_eq!(reopened.count(), 10);
        assert!(!reopened.entries().unwrap().contains(&entry(3)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever a crash keeps of the file, the manifest reopens with a
        /// prefix of what was appended, and takes new entries after it.
        #[test]
        fn any_cut_reopens_to_a_prefix(count in 1u32..8, cut in 0usize..2000) {
            let fs = Arc::new(MemFs::new());
            let manifest = open(&fs);
            for n in 0..count {
                manifest.append(&entry(n)).unwrap();
            }
            drop(manifest);
            let path = Path::new("/store/manifest/entries");
            let bytes = fs.read_all(path).unwrap();
            let keep = cut.min(bytes.len());
            fs.write_all_synced(path, &bytes[..keep]);
            let manifest = open(&fs);
            let got = manifest.entries().unwrap();
            let want: Vec<Entry> = (0..count).map(entry).collect();
            prop_assert!(want.starts_with(&got));
            manifest.append(&entry(99)).unwrap();
            drop(manifest);
            let after = open(&fs).entries().unwrap();
            prop_assert_eq!(after.last(), Some(&entry(99)));
            prop_assert_eq!(after.len(), got.len() + 1);
        }
    }
}
