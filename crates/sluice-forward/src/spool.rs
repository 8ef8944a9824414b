//! The forwarder's disk spool: batches written ahead to disk so that they
//! survive a full memory queue, a destination that is down, and a restart.
//!
//! With `--spool DIR`, every batch is appended here before it enters the
//! queue. While there is room in memory the queue also keeps the batch in
//! memory; when memory is full it keeps only the [`SpoolRef`], and a sender
//! reads the batch back ("replay") when its turn comes. Replay is therefore
//! paced by the acks of the destination and stays in the original order.
//!
//! # Layout
//! `DIR/spool-<seq of its first batch, 20 digits>.sp`, each a sequence of
//! frames, written once and never modified:
//!
//! ```text
//! magic    "SPF1"   4 bytes
//! length   u32 LE   bytes of `wire`
//! records  u32 LE   records in the batch
//! seq      u64 LE   the batch's sequence number
//! dev      u64 LE   source file of the lines (0 for stdin)
//! ino      u64 LE   "
//! end      u64 LE   offset in that file just past the batch's last line
//! crc      u32 LE   CRC32 of the 44 bytes before it and of `wire`
//! wire     the batch exactly as it is sent (the batch protocol)
//! ```
//!
//! # Limits
//! The spool holds at most `max_bytes` of unresolved frames (frames whose
//! batch is neither acknowledged nor dropped); past that the forwarder's
//! `--on-full` policy applies. Files are cut at `max_bytes / 8` (between
//! 1 MiB and 64 MiB), so the directory exceeds `max_bytes` by at most one
//! file of resolved frames awaiting deletion.
//!
//! # Recovery
//! - On open, every file is read frame by frame and its CRCs verified. A
//!   torn tail (a crash mid-append) or a corrupt frame is skipped: the
//!   reader searches forward for the next magic, and the bytes skipped are
//!   counted and logged. Files are never appended to after a restart.
//! - The directory is synced as each file is created, so a file whose
//!   frames were synced cannot vanish in a crash.
//! - A file is deleted only when every frame in it is resolved and a
//!   checkpoint that covers its source offsets has been written, so a
//!   restart never re-reads a file's lines that the spool forgot.
//! - A batch that was acknowledged but whose file was not yet deleted is
//!   sent again after a restart. It carries the same ULIDs, so the store's
//!   dedupe hides the copy.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

const MAGIC: &[u8; 4] = b"SPF1";
const HEADER_BYTES: usize = 48;

/// A followed file, by device and inode, so that it is the same file after
/// a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// The device holding the file (`st_dev`).
    pub dev: u64,
    /// The file's inode number (`st_ino`).
    pub ino: u64,
}

/// Where the lines of a batch came from: a file and the offset just past
/// its last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePos {
    /// The file.
    pub key: SourceKey,
    /// Bytes from the file's start to just past the batch's last line:
    /// the checkpoint's offset once the batch is safe.
    pub end: u64,
}

/// A frame's place in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRef {
    file: u64,
    offset: u64,
    len: u32,
}

impl SpoolRef {
    fn frame_bytes(&self) -> u64 {
        HEADER_BYTES as u64 + self.len as u64
    }
}

/// A batch found in the spool at open.
#[derive(Debug)]
pub struct Recovered {
    /// The batch's [`seq`](crate::queue::Batch::seq).
    pub seq: u64,
    /// Records in the batch.
    pub records: u64,
    /// The file its lines came from, and the offset past the last one.
    pub source: Option<SourcePos>,
    /// Where its frame is, to read the batch back.
    pub at: SpoolRef,
}

#[derive(Debug)]
struct SpoolFile {
    path: PathBuf,
    handle: File,
    /// Frames not yet acknowledged or dropped.
    unresolved: u64,
}

/// The spool directory of one forwarder: frames appended to the newest
/// file, read back by their [`SpoolRef`], files deleted once all their
/// frames are resolved (see the module docs).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    file_bytes: u64,
    files: BTreeMap<u64, SpoolFile>,
    /// The file being appended to and its length.
    writer: Option<(u64, u64)>,
    /// Bytes of unresolved frames.
    live_bytes: u64,
    /// Frames appended since open (to tell whether a sync is due).
    appended: u64,
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Spool files read.
    pub files: u64,
    /// Intact frames found: batches a run before did not resolve.
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Bytes skipped as torn or corrupt.
    pub skipped_bytes: u64,
}

/// A spool is cut into about this many files, so that acked ones can be
/// deleted while the rest wait.
const FILES_PER_SPOOL: u64 = 8;
/// The smallest spool file: 1 MiB.
const MIN_FILE_BYTES: u64 = 1 << 20;
/// The largest spool file: 64 MiB.
const MAX_FILE_BYTES: u64 = 64 << 20;

impl Spool {
    /// Open (or create) the spool in `dir` and return every batch it holds,
    /// in file order.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, Vec<Recovered>, RecoveryStats)> {
        fs::create_dir_all(dir)?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            file_bytes: (max_bytes / FILES_PER_SPOOL).clamp(MIN_FILE_BYTES, MAX_FILE_BYTES),
            files: BTreeMap::new(),
            writer: None,
            live_bytes: 0,
            appended: 0,
        };
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // Anything else in the directory (a checkpoint, a stray file)
            // is left alone.
            if let Some(id) = name
                .strip_prefix("spool-")
                .and_then(|rest| rest.strip_suffix(".sp"))
                .and_then(|digits| digits.parse::<u64>().ok())
            {
                names.push((id, path));
            }
        }
        names.sort();
        let mut recovered = Vec::new();
        let mut stats = RecoveryStats::default();
        for (id, path) in names {
            let bytes = fs::read(&path)?;
            let handle = File::open(&path)?;
            let (frames, skipped) = scan(&bytes, id);
            if skipped > 0 {
                tracing::warn!(file = %path.display(), skipped_bytes = skipped, "spool file had a torn or corrupt part; it was skipped");
            }
            stats.files += 1;
            stats.skipped_bytes += skipped;
            stats.batches += frames.len() as u64;
            stats.records += frames.iter().map(|f| f.records).sum::<u64>();
            spool.live_bytes += frames.iter().map(|f| f.at.frame_bytes()).sum::<u64>();
            spool.files.insert(
                id,
                SpoolFile {
                    path,
                    handle,
                    unresolved: frames.len() as u64,
                },
            );
            recovered.extend(frames);
        }
        Ok((spool, recovered, stats))
    }

    /// Bytes of unresolved frames the spool holds at most (at least 1).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes of frames whose batch is not yet resolved.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Whether a batch of `wire_len` bytes fits under the limit.
    pub fn has_room(&self, wire_len: usize) -> bool {
        self.live_bytes + (HEADER_BYTES + wire_len) as u64 <= self.max_bytes
    }

    /// Append one batch. On error the current file is abandoned (its torn
    /// tail is skipped by recovery) and the next append starts a new one,
    /// syncing the abandoned one first.
    pub fn append(
        &mut self,
        seq: u64,
        records: u64,
        source: Option<SourcePos>,
        wire: &[u8],
    ) -> io::Result<SpoolRef> {
        let len = u32::try_from(wire.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "batch too large"))?;
        let (id, offset) = match self.writer {
            Some((id, len)) if len < self.file_bytes => (id, len),
            previous => {
                // A file is synced once as it is left; the current one by
                // `unsynced_writer`.
                if let Some((old, _)) = previous {
                    self.files[&old].handle.sync_data()?;
                }
                let path = self.dir.join(format!("spool-{seq:020}.sp"));
                let handle = OpenOptions::new()
                    .create_new(true)
                    .read(true)
                    .append(true)
                    .open(&path)?;
                // The checkpoint moves past lines once their batch is
                // spooled and synced; `sync_data` makes the file's bytes
                // durable but not its name in the directory, so a crash
                // could otherwise lose the whole file and those lines.
                File::open(&self.dir)?.sync_all()?;
                self.files.insert(
                    seq,
                    SpoolFile {
                        path,
                        handle,
                        unresolved: 0,
                    },
                );
                self.writer = Some((seq, 0));
                (seq, 0)
            }
        };
        let header = encode_header(len, records as u32, seq, source, wire);
        let file = self.files.get_mut(&id).expect("writer file is open");
        let written = (&file.handle)
            .write_all(&header)
            .and_then(|()| (&file.handle).write_all(wire));
        if let Err(err) = written {
            // Leave the file as full rather than forget it: the frames
            // before this one may not be synced yet, so it stays the file
            // `writer` hands out until the next append syncs it as it
            // moves on to a new file.
            self.writer = Some((id, u64::MAX));
            return Err(err);
        }
        file.unresolved += 1;
        self.appended += 1;
        let at = SpoolRef {
            file: id,
            offset,
            len,
        };
        self.writer = Some((id, offset + at.frame_bytes()));
        self.live_bytes += at.frame_bytes();
        Ok(at)
    }

    /// Read a batch back, verifying its checksum.
    pub fn read(&self, at: SpoolRef) -> io::Result<Vec<u8>> {
        let file = self
            .files
            .get(&at.file)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "spool file already removed"))?;
        let mut frame = vec![0u8; at.frame_bytes() as usize];
        file.handle.read_exact_at(&mut frame, at.offset)?;
        match decode_frame(&frame, at.file, at.offset) {
            Some(_) => Ok(frame.split_off(HEADER_BYTES)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "spool frame at {}:{} failed its checksum",
                    file.path.display(),
                    at.offset
                ),
            )),
        }
    }

    /// The batch at `at` was acknowledged or dropped.
    pub fn resolve(&mut self, at: SpoolRef) {
        if let Some(file) = self.files.get_mut(&at.file) {
            file.unresolved = file.unresolved.saturating_sub(1);
            self.live_bytes = self.live_bytes.saturating_sub(at.frame_bytes());
        }
    }

    /// Frames appended since open; with [`writer`](Self::writer), lets a
    /// caller sync outside its locks and know what the sync covered.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// A handle on the file being appended to (or abandoned after a failed
    /// append), for `sync_data`. Earlier files were synced when they were
    /// left.
    pub fn writer(&self) -> io::Result<Option<File>> {
        self.writer
            .map(|(id, _)| self.files[&id].handle.try_clone())
            .transpose()
    }

    /// Files whose frames are all resolved and that are no longer appended
    /// to. Delete them with [`remove`](Self::remove) once a checkpoint
    /// covering them is durable.
    pub fn resolved_files(&self) -> Vec<u64> {
        let writing = self.writer.map(|(id, _)| id);
        self.files
            .iter()
            .filter(|(id, f)| f.unresolved == 0 && Some(**id) != writing)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stop appending to the current file, so that it can be removed once
    /// resolved (at a clean shutdown, or when the spool has gone idle).
    pub fn seal(&mut self) {
        self.writer = None;
    }

    /// Delete the files `ids` (from [`resolved_files`](Self::resolved_files))
    /// whose frames are all resolved. A file that cannot be deleted is
    /// logged and kept, to be tried again.
    pub fn remove(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(file) = self.files.get(id)
                && file.unresolved == 0
            {
                if let Err(err) = fs::remove_file(&file.path) {
                    tracing::warn!(file = %file.path.display(), error = %err, "cannot remove a resolved spool file");
                    continue;
                }
                self.files.remove(id);
            }
        }
    }

    /// Whether any batch is still waiting in the spool.
    pub fn is_empty(&self) -> bool {
        self.files.values().all(|f| f.unresolved == 0)
    }
}

fn encode_header(
    len: u32,
    records: u32,
    seq: u64,
    source: Option<SourcePos>,
    wire: &[u8],
) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&records.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    let (dev, ino, end) = source.map_or((0, 0, 0), |s| (s.key.dev, s.key.ino, s.end));
    h[20..28].copy_from_slice(&dev.to_le_bytes());
    h[28..36].copy_from_slice(&ino.to_le_bytes());
    h[36..44].copy_from_slice(&end.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..44]);
    crc.update(wire);
    h[44..48].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// Decode the frame at the start of `bytes`, if it is whole and intact.
fn decode_frame(bytes: &[u8], file: u64, offset: u64) -> Option<Recovered> {
    if bytes.len() < HEADER_BYTES || &bytes[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let len = u32_at(4);
    let end = HEADER_BYTES.checked_add(len as usize)?;
    let wire = bytes.get(HEADER_BYTES..end)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..44]);
    crc.update(wire);
    if crc.finalize() != u32_at(44) {
        return None;
    }
    let (dev, ino) = (u64_at(20), u64_at(28));
    Some(Recovered {
        seq: u64_at(12),
        records: u32_at(8) as u64,
        source: (dev != 0 || ino != 0).then_some(SourcePos {
            key: SourceKey { dev, ino },
            end: u64_at(36),
        }),
        at: SpoolRef { file, offset, len },
    })
}

/// Every intact frame of a file, and the number of bytes skipped.
fn scan(bytes: &[u8], file: u64) -> (Vec<Recovered>, u64) {
    let mut frames = Vec::new();
    let mut skipped = 0u64;
    let mut pos = 0usize;
    while pos < bytes.len() {
        match decode_frame(&bytes[pos..], file, pos as u64) {
            Some(frame) => {
                pos += frame.at.frame_bytes() as usize;
                frames.push(frame);
            }
            None => {
                let next = memchr::memmem::find(&bytes[pos + 1..], MAGIC)
                    .map_or(bytes.len(), |i| pos + 1 + i);
                skipped += (next - pos) as u64;
                pos = next;
            }
        }
    }
    (frames, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(end: u64) -> Option<SourcePos> {
        Some(SourcePos {
            key: SourceKey { dev: 1, ino: 2 },
            end,
        })
    }

    #[test]
    fn batches_survive_a_reopen_and_resolved_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, recovered, _) = Spool::open(dir.path(), 64 << 20).unwrap();
        assert!(recovered.is_empty());
        let a = spool.append(1, 3, pos(10), b"first").unwrap();
        let b = spool.append(2, 1, None, b"second").unwrap();
        assert_eq!(spool.read(a).unwrap(), b"first");
        assert_eq!(spool.read(b).unwrap(), b"second");
        drop(spool);

        let (mut spool, recovered, stats) = Spool::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(
            (stats.batches, stats.records, stats.skipped_bytes),
            (2, 4, 0)
        );
        assert_eq!(recovered[0].source, pos(10));
        assert_eq!(recovered[1].source, None);
        assert_eq!(spool.read(recovered[1].at).unwrap(), b"second");
        // A new run appends to a new file.
        let c = spool.append(3, 1, None, b"third").unwrap();
        assert_ne!(c.file, recovered[0].at.file);
        spool.resolve(recovered[0].at);
        assert!(spool.resolved_files().is_empty());
        spool.resolve(recovered[1].at);
        let done = spool.resolved_files();
        assert_eq!(done, [recovered[0].at.file]);
        spool.remove(&done);
        assert!(!spool.is_empty());
        spool.resolve(c);
        assert!(spool.is_empty());
        assert_eq!(spool.live_bytes(), 0);
    }

    #[test]
    fn a_failed_append_leaves_the_frames_before_it_to_be_synced() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _, _) = Spool::open(dir.path(), 64 << 20).unwrap();
        let first = spool.append(1, 1, None, b"first").unwrap();
        let path = spool.files[&first.file].path.clone();
        // The next write fails (as on a full disk): a read-only handle.
        let writable = std::mem::replace(
            &mut spool.files.get_mut(&first.file).unwrap().handle,
            File::open(&path).unwrap(),
        );
        assert!(spool.append(2, 1, None, b"second").is_err());
        // The first frame is not synced yet: a sync must still reach its file.
        let to_sync = spool.writer().unwrap().expect("the file to sync");
        assert_eq!(
            to_sync.metadata().unwrap().ino(),
            fs::metadata(&path).unwrap().ino()
        );
        // The next append syncs it and moves on to a new file.
        spool.files.get_mut(&first.file).unwrap().handle = writable;
        let third = spool.append(3, 1, None, b"third").unwrap();
        assert_ne!(third.file, first.file);
        assert_eq!(spool.read(first).unwrap(), b"first");
        assert_eq!(spool.read(third).unwrap(), b"third");
    }

    #[test]
    fn a_torn_tail_and_a_flipped_bit_lose_only_their_frames() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _, _) = Spool::open(dir.path(), 64 << 20).unwrap();
        for seq in 1..=4 {
            spool.append(seq, 1, None, &[seq as u8; 100]).unwrap();
        }
        drop(spool);
        let path = dir.path().join(format!("spool-{:020}.sp", 1));
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_BYTES + 148 + 10] ^= 1; // the second frame's body
        bytes.truncate(bytes.len() - 30); // the fourth frame is torn
        fs::write(&path, &bytes).unwrap();
        let (_, recovered, stats) = Spool::open(dir.path(), 64 << 20).unwrap();
        let seqs: Vec<u64> = recovered.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert!(stats.skipped_bytes > 0);
    }

    proptest! {
        /// Whatever the bytes, scanning never panics and every frame it
        /// returns is one that was written.
        #[test]
        fn scan_survives_any_damage(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        ) {
            let mut bytes = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                bytes.extend_from_slice(&encode_header(body.len() as u32, 1, i as u64, None, body));
                bytes.extend_from_slice(body);
            }
            let len = cut.index(bytes.len() + 1);
            bytes.truncate(len);
            for flip in &flips {
                if !bytes.is_empty() {
                    let i = flip.index(bytes.len());
                    bytes[i] ^= 0x40;
                }
            }
            let (frames, _) = scan(&bytes, 0);
            for frame in frames {
                let start = frame.at.offset as usize + HEADER_BYTES;
                let body = &bytes[start..start + frame.at.len as usize];
                prop_assert_eq!(body, &bodies[frame.seq as usize][..]);
            }
        }
    }
}
