//! Segment files: an append-only sequence of checksummed batches.
//!
//! Byte layout: the batches of [`sluice_record::batch`], back to back, with
//! nothing before, between or after them. An ingest segment holds one batch
//! per read buffer of one connection, in the order it was read.
//!
//! Write rule: a batch is appended with one `write` call. In durable mode the
//! writer calls `sync_data` before the connection reads more.
//!
//! Recovery rule ([`recover_segment`]): scan from the start, verifying every
//! batch. At the first batch that is short or fails its checksum, everything
//! from there on is a torn (or corrupt) tail: it is copied to
//! `<quarantine>/<name>.<offset>.torn` for inspection, then the file is cut
//! back to the end of the last good batch and the cut is made durable. Every
//! record in a batch before the cut is kept. A crash during recovery is
//! harmless: recovery is idempotent.

use std::path::{Path, PathBuf};

use sluice_record::{BatchHeader, Ulid, batch::BATCH_HEADER_BYTES};

pub(crate) mod table;

use table::BatchEntry;
pub use table::BatchTable;

use crate::{
    StorageError,
    fs::{Fs, ReadFile, WriteFile},
};

/// Appends batches to a new segment file.
pub struct SegmentWriter {
    file: Box<dyn WriteFile>,
    path: PathBuf,
    bytes: u64,
    records: u64,
    first_id: Option<Ulid>,
    last_id: Option<Ulid>,
}

impl SegmentWriter {
    /// Create `path`, which must not exist.
    pub fn create(fs: &dyn Fs, path: &Path) -> Result<SegmentWriter, StorageError> {
        let file = fs
            .create_new(path)
            .map_err(StorageError::io("create segment", path))?;
        Ok(SegmentWriter {
            file,
            path: path.to_path_buf(),
            bytes: 0,
            records: 0,
            first_id: None,
            last_id: None,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes appended so far, synced or not.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records appended so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The smallest and largest id appended; `None` before the first batch.
    pub fn id_range(&self) -> Option<(Ulid, Ulid)> {
        Some((self.first_id?, self.last_id?))
    }

    /// Append one finished batch of `count` records whose ids span
    /// `first..=last`.
    pub fn append(
        &mut self,
        batch: &[u8],
        count: u32,
        first: Ulid,
        last: Ulid,
    ) -> Result<(), StorageError> {
        debug_assert!(BatchHeader::parse(batch).is_ok_and(|h| h.count == count));
        self.file
            .write_all(batch)
            .map_err(StorageError::io("write segment", &self.path))?;
        self.bytes += batch.len() as u64;
        self.records += count as u64;
        self.first_id = Some(self.first_id.map_or(first, |f| f.min(first)));
        self.last_id = Some(self.last_id.map_or(last, |l| l.max(last)));
        Ok(())
    }

    /// Make every appended batch durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(StorageError::io("fsync segment", &self.path))
    }
}

/// The id of a batch's first record, from the first 16 bytes of its body
/// (as trusted as the body: verified or not): `None` for a batch of no
/// records or a body too short to hold one.
pub(crate) fn batch_first_id(header: &BatchHeader, body: &[u8]) -> Option<u128> {
    let id = body.get(..16).filter(|_| header.count > 0)?;
    Some(u128::from_be_bytes(id.try_into().expect("16 bytes")))
}

/// Of `walked` batches (from the scan's offset on), the last one found
/// whose first id is below `lower`, before the first that is not or has
/// none: its offset, and the records before it.
fn last_below(walked: impl Iterator<Item = table::Walked>, lower: u128) -> Option<(usize, u64)> {
    let mut records = 0u64;
    let mut last = None;
    for (at, header, first_id) in walked {
        if first_id.is_none_or(|first_id| first_id >= lower) {
            break;
        }
        last = Some((at, records));
        records += u64::from(header.count);
    }
    last
}

/// What [`SegmentScanner::summarize_ids`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSummary {
    /// The smallest id; `None` when no whole batch holds a record.
    pub min: Option<Ulid>,
    /// Whether every id is larger than the one before it.
    pub sorted: bool,
    /// Records in whole batches.
    pub records: u64,
}

/// A batch as [`SegmentScanner::next_frame`] finds it: its header, where
/// its body lies in the mapping, and its place in the file's
/// [`BatchTable`] if it was found there.
pub(crate) struct FrameAt {
    pub header: BatchHeader,
    pub body: std::ops::Range<usize>,
    pub position: Option<usize>,
}

/// Reads a segment file batch by batch, verifying each checksum.
pub struct SegmentScanner {
    file: Box<dyn ReadFile>,
    path: PathBuf,
    offset: u64,
    len: u64,
    body: Vec<u8>,
    /// A sealed file, mapped: bodies are lent from the mapping instead of
    /// copied into `body` (see [`SegmentScanner::open_mapped`]).
    mapped: Option<std::sync::Arc<crate::Mapped>>,
    /// Where the current body lies in `mapped`.
    body_at: std::ops::Range<usize>,
    /// The mapped file's batches, walked once (see [`BatchTable`]), and
    /// where the next one is looked for first.
    table: Option<std::sync::Arc<BatchTable>>,
    table_next: usize,
}

impl SegmentScanner {
    /// Open the segment file at `path` and note its length: bytes appended
    /// later are not read.
    pub fn open(fs: &dyn Fs, path: &Path) -> Result<SegmentScanner, StorageError> {
        let file = fs
            .open_read(path)
            .map_err(StorageError::io("open segment", path))?;
        let len = file.len().map_err(StorageError::io("stat segment", path))?;
        Ok(SegmentScanner {
            file,
            path: path.to_path_buf(),
            offset: 0,
            len,
            body: Vec::new(),
            mapped: None,
            body_at: 0..0,
            table: None,
            table_next: 0,
        })
    }

    /// [`SegmentScanner::open`] for a sealed file (one that is never
    /// appended to or truncated again, only removed): it is mapped, and
    /// each batch body is searched where the page cache holds it, with no
    /// read into a buffer. A search of fresh data is then a scan of memory,
    /// as grep's of a file.
    pub fn open_mapped(fs: &dyn Fs, path: &Path) -> Result<SegmentScanner, StorageError> {
        let file = fs
            .open_read(path)
            .map_err(StorageError::io("open segment", path))?;
        let mapped = fs
            .map(path)
            .map_err(StorageError::io("map segment", path))?;
        Ok(Self::over_mapping(file, path, std::sync::Arc::new(mapped)))
    }

    /// A scanner of the sealed file `file` at `path`, over `mapped`, its
    /// mapping made before (a query's [`crate::SegmentCache`] keeps one
    /// for each batch file, so a query does not fault its pages in again).
    /// The mapping is the file as it was then; the scan reads no further.
    pub fn over_mapping(
        file: Box<dyn ReadFile>,
        path: &Path,
        mapped: std::sync::Arc<crate::Mapped>,
    ) -> SegmentScanner {
        SegmentScanner {
            file,
            path: path.to_path_buf(),
            offset: 0,
            len: mapped.len() as u64,
            body: Vec::new(),
            mapped: Some(mapped),
            body_at: 0..0,
            table: None,
            table_next: 0,
        }
    }

    /// Find the batches in `table`, the walk of this scanner's mapping,
    /// rather than by reading their headers.
    pub(crate) fn with_table(mut self, table: std::sync::Arc<BatchTable>) -> Self {
        self.table = self.mapped.is_some().then_some(table);
        self
    }

    /// The table, if any, and the position in it of the batch at `offset`.
    fn table_entry(&self, offset: u64) -> Option<(&BatchTable, usize)> {
        let table = self.table.as_deref()?;
        Some((table, table.position(offset, self.table_next)?))
    }

    /// The first id of `frame` (from [`next_frame`](Self::next_frame)):
    /// from the table where it was found there, else read from its body.
    pub(crate) fn frame_first_id(&self, frame: &FrameAt) -> Option<u128> {
        if let (Some(table), Some(position)) = (&self.table, frame.position) {
            return table.entries()[position].first_id;
        }
        batch_first_id(
            &frame.header,
            self.mapped.as_ref()?.get(frame.body.clone())?,
        )
    }

    /// The mapping of a file opened with [`SegmentScanner::open_mapped`].
    pub(crate) fn mapping(&self) -> Option<&std::sync::Arc<crate::Mapped>> {
        self.mapped.as_ref()
    }

    /// For a mapped file: the next batch's header and where its body lies
    /// in the mapping, *not verified* (the caller verifies it, on a worker);
    /// `None` at the end. A header that does not parse, or a batch that
    /// runs past the end, is an error here.
    pub(crate) fn next_frame(&mut self) -> Result<Option<FrameAt>, StorageError> {
        let Some(mapped) = &self.mapped else {
            return Err(StorageError::Io {
                op: "scan unmapped",
                path: self.path.clone(),
                source: std::io::Error::other("next_frame needs a mapped file"),
            });
        };
        if self.offset >= self.len {
            return Ok(None);
        }
        if let Some((table, position)) = self.table_entry(self.offset) {
            // Walked when the table was made: the header parsed and the
            // frame fits in the mapping.
            let entry = &table.entries()[position];
            let (header, body) = (entry.header, entry.body());
            self.offset += header.frame_len() as u64;
            self.table_next = position + 1;
            return Ok(Some(FrameAt {
                header,
                body,
                position: Some(position),
            }));
        }
        let at = self.offset as usize;
        let corrupt = |source| StorageError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            source,
        };
        let have = mapped.len() - at;
        let header_bytes = mapped.get(at..at + BATCH_HEADER_BYTES).ok_or_else(|| {
            corrupt(sluice_record::CodecError::Truncated {
                needed: BATCH_HEADER_BYTES,
                have,
            })
        })?;
        let header = BatchHeader::parse(header_bytes).map_err(corrupt)?;
        if header.frame_len() > have {
            return Err(corrupt(sluice_record::CodecError::Truncated {
                needed: header.frame_len(),
                have,
            }));
        }
        let body = at + BATCH_HEADER_BYTES..at + BATCH_HEADER_BYTES + header.body_len as usize;
        self.offset += header.frame_len() as u64;
        Ok(Some(FrameAt {
            header,
            body,
            position: None,
        }))
    }

    /// For a mapped file whose ids never decrease, at its start: move the
    /// scan to the last batch whose first id is below `lower`, past the
    /// batches before it, which hold only ids below that one. The ids are
    /// read unverified, and that is safe: the batch moved to is the next
    /// one read, so if its first id was damaged (and so the move too far),
    /// its checksum fails and the scan reports it, as it would have. A
    /// header that does not parse ends the walk where it is. Returns the
    /// records and bytes passed over.
    pub(crate) fn skip_batches_below(&mut self, lower: u128) -> (u64, u64) {
        let Some(mapped) = &self.mapped else {
            return (0, 0);
        };
        let start = self.offset as usize;
        // The table ends where the walk of the headers would: at a header
        // that does not parse or a frame cut short.
        let last_below = match self.table_entry(self.offset) {
            Some((table, position)) => last_below(
                table.entries()[position..].iter().map(BatchEntry::walked),
                lower,
            ),
            None => last_below(table::walk_headers(mapped, start), lower),
        };
        match last_below {
            Some((at, records)) if at > start => {
                self.offset = at as u64;
                (records, (at - start) as u64)
            }
            _ => (0, 0),
        }
    }

    /// Make `body` (from [`SegmentScanner::next_frame`], verified) the
    /// body [`SegmentScanner::body`] lends.
    pub(crate) fn set_body(&mut self, body: std::ops::Range<usize>) {
        self.body_at = body;
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Offset of the next batch: after an error, the end of the intact prefix.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file was empty when it was opened.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body of the batch last returned by [`next_batch`](Self::next_batch).
    pub fn body(&self) -> &[u8] {
        match &self.mapped {
            Some(mapped) => &mapped[self.body_at.clone()],
            None => &self.body,
        }
    }

    /// The smallest id, whether the ids increase, and the record count of
    /// the whole batches in the file as opened, read without moving the
    /// scan. A batch cut short by the end of the file ends the summary (a
    /// file being written); any other damage is an error.
    pub fn summarize_ids(&self) -> Result<IdSummary, StorageError> {
        let mut summary = IdSummary {
            min: None,
            sorted: true,
            records: 0,
        };
        let mut last: Option<Ulid> = None;
        let mut offset = 0u64;
        let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
        let mut body = Vec::new();
        let corrupt = |offset, source| StorageError::Corrupt {
            path: self.path.clone(),
            offset,
            source,
        };
        while offset + BATCH_HEADER_BYTES as u64 <= self.len {
            self.file
                .read_exact_at(&mut header_bytes, offset)
                .map_err(StorageError::io("read segment", &self.path))?;
            let header = BatchHeader::parse(&header_bytes).map_err(|e| corrupt(offset, e))?;
            if offset + header.frame_len() as u64 > self.len {
                break;
            }
            body.resize(header.body_len as usize, 0);
            self.file
                .read_exact_at(&mut body, offset + BATCH_HEADER_BYTES as u64)
                .map_err(StorageError::io("read segment", &self.path))?;
            header.verify(&body).map_err(|e| corrupt(offset, e))?;
            for record in sluice_record::RecordIter::new(&body, header.count) {
                let id = record.map_err(|e| corrupt(offset, e))?.id;
                if last.is_some_and(|l| id <= l) {
                    summary.sorted = false;
                }
                last = Some(id);
                summary.min = Some(summary.min.map_or(id, |m: Ulid| m.min(id)));
                summary.records += 1;
            }
            offset += header.frame_len() as u64;
        }
        Ok(summary)
    }

    /// The id of the file's first record, read without moving the scan:
    /// `None` when the first batch is not whole yet (a file being
    /// written) or holds no record.
    pub fn first_id(&self) -> Result<Option<Ulid>, StorageError> {
        let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
        if self.len < BATCH_HEADER_BYTES as u64 {
            return Ok(None);
        }
        self.file
            .read_exact_at(&mut header_bytes, 0)
            .map_err(StorageError::io("read segment", &self.path))?;
        let corrupt = |source| StorageError::Corrupt {
            path: self.path.clone(),
            offset: 0,
            source,
        };
        let header = BatchHeader::parse(&header_bytes).map_err(corrupt)?;
        if header.frame_len() as u64 > self.len || header.count == 0 {
            return Ok(None);
        }
        let mut body = vec![0u8; header.body_len as usize];
        self.file
            .read_exact_at(&mut body, BATCH_HEADER_BYTES as u64)
            .map_err(StorageError::io("read segment", &self.path))?;
        header.verify(&body).map_err(corrupt)?;
        let (record, _) = sluice_record::decode_record(&body, 0).map_err(corrupt)?;
        Ok(Some(record.id))
    }

    /// The next batch's header and verified body; `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<(BatchHeader, &[u8])>, StorageError> {
        if self.offset >= self.len {
            return Ok(None);
        }
        let corrupt = |offset, source| StorageError::Corrupt {
            path: self.path.clone(),
            offset,
            source,
        };
        let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
        let have = (self.len - self.offset) as usize;
        if have < BATCH_HEADER_BYTES {
            return Err(corrupt(
                self.offset,
                sluice_record::CodecError::Truncated {
                    needed: BATCH_HEADER_BYTES,
                    have,
                },
            ));
        }
        let at = self.offset as usize;
        match &self.mapped {
            Some(mapped) => header_bytes.copy_from_slice(&mapped[at..at + BATCH_HEADER_BYTES]),
            None => self
                .file
                .read_exact_at(&mut header_bytes, self.offset)
                .map_err(StorageError::io("read segment", &self.path))?,
        }
        let header = BatchHeader::parse(&header_bytes).map_err(|e| corrupt(self.offset, e))?;
        if header.frame_len() > have {
            return Err(corrupt(
                self.offset,
                sluice_record::CodecError::Truncated {
                    needed: header.frame_len(),
                    have,
                },
            ));
        }
        if let Some(mapped) = &self.mapped {
            let body = at + BATCH_HEADER_BYTES..at + BATCH_HEADER_BYTES + header.body_len as usize;
            header
                .verify(&mapped[body.clone()])
                .map_err(|e| corrupt(self.offset, e))?;
            self.body_at = body;
            self.offset += header.frame_len() as u64;
            return Ok(Some((header, &mapped[self.body_at.clone()])));
        }
        self.body.resize(header.body_len as usize, 0);
        self.file
            .read_exact_at(&mut self.body, self.offset + BATCH_HEADER_BYTES as u64)
            .map_err(StorageError::io("read segment", &self.path))?;
        header
            .verify(&self.body)
            .map_err(|e| corrupt(self.offset, e))?;
        self.offset += header.frame_len() as u64;
        Ok(Some((header, &self.body)))
    }
}

/// What [`recover_segment`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes kept: the end of the last intact batch.
    pub valid_bytes: u64,
    /// Bytes cut off (and quarantined).
    pub torn_bytes: u64,
    /// Records in the batches kept.
    pub records: u64,
    /// The smallest id kept; `None` when no record is.
    pub first_id: Option<Ulid>,
    /// The largest id kept; `None` when no record is.
    pub last_id: Option<Ulid>,
    /// Why the tail was cut, when it was.
    pub reason: Option<String>,
}

/// Verify a segment and cut off a torn or corrupt tail (see the module docs).
pub fn recover_segment(
    fs: &dyn Fs,
    path: &Path,
    quarantine_dir: &Path,
) -> Result<Recovery, StorageError> {
    let mut scanner = SegmentScanner::open(fs, path)?;
    let mut recovery = Recovery::default();
    loop {
        match scanner.next_batch() {
            Ok(Some((header, body))) => {
                recovery.records += header.count as u64;
                let mut records = sluice_record::RecordIter::new(body, header.count);
                if let Some(Ok(first)) = records.next() {
                    recovery.first_id =
                        Some(recovery.first_id.map_or(first.id, |f| f.min(first.id)));
                    let last = records.filter_map(Result::ok).last().unwrap_or(first);
                    recovery.last_id = Some(recovery.last_id.map_or(last.id, |l| l.max(last.id)));
                }
            }
            Ok(None) => break,
            Err(StorageError::Corrupt { offset, source, .. }) => {
                recovery.reason = Some(source.to_string());
                recovery.torn_bytes = scanner.len() - offset;
                break;
            }
            Err(other) => return Err(other),
        }
    }
    recovery.valid_bytes = scanner.offset();
    if recovery.torn_bytes > 0 {
        quarantine_tail(
            fs,
            path,
            &*scanner.file,
            recovery.valid_bytes,
            quarantine_dir,
        )?;
        fs.truncate(path, recovery.valid_bytes)
            .map_err(StorageError::io("truncate torn segment", path))?;
    }
    Ok(recovery)
}

fn quarantine_tail(
    fs: &dyn Fs,
    path: &Path,
    file: &dyn ReadFile,
    from: u64,
    quarantine_dir: &Path,
) -> Result<(), StorageError> {
    let len = file.len().map_err(StorageError::io("stat segment", path))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    fs.create_dir_all(quarantine_dir)
        .map_err(StorageError::io("create quarantine dir", quarantine_dir))?;
    let target = quarantine_dir.join(format!("{name}.{from}.torn"));
    if fs.exists(&target) {
        // A crash during an earlier recovery already kept this tail.
        return Ok(());
    }
    let tmp = quarantine_dir.join(format!("{name}.{from}.torn.tmp"));
    let _ = fs.remove_file(&tmp);
    let mut out = fs
        .create_new(&tmp)
        .map_err(StorageError::io("create quarantine file", &tmp))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = from;
    while offset < len {
        let n = file
            .read_at(&mut buf, offset)
            .map_err(StorageError::io("read segment", path))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(StorageError::io("write quarantine file", &tmp))?;
        offset += n as u64;
    }
    out.sync_data()
        .map_err(StorageError::io("fsync quarantine file", &tmp))?;
    fs.rename(&tmp, &target)
        .map_err(StorageError::io("rename quarantine file", &target))?;
    fs.sync_dir(quarantine_dir)
        .map_err(StorageError::io("fsync quarantine dir", quarantine_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemFs;
    use proptest::prelude::*;
    use sluice_record::{BatchEncoder, Record};

    fn write_batches(fs: &MemFs, path: &Path, batches: &[u32], sync_every: bool) -> Vec<Ulid> {
        let mut writer = SegmentWriter::create(fs, path).unwrap();
        let mut enc = BatchEncoder::new();
        let mut ids = Vec::new();
        let mut next = 1u128 << 90;
        for &n in batches {
            enc.begin();
            let first = Ulid(next);
            for _ in 0..n {
                let id = Ulid(next);
                next += 1;
                ids.push(id);
                enc.push(Record {
                    id,
                    flags: 0,
                    topic: b"t",
                    payload: b"payload",
                });
            }
            writer
                .append(enc.finish(), n, first, Ulid(next - 1))
                .unwrap();
            if sync_every {
                writer.sync().unwrap();
            }
        }
        ids
    }

    fn read_ids(fs: &MemFs, path: &Path) -> Vec<Ulid> {
        let mut scanner = SegmentScanner::open(fs, path).unwrap();
        let mut ids = Vec::new();
        while let Some((h, body)) = scanner.next_batch().unwrap() {
            for r in sluice_record::RecordIter::new(body, h.count) {
                ids.push(r.unwrap().id);
            }
        }
        ids
    }

    proptest! {
        /// Crash with a torn unsynced tail at any point: recovery keeps every
        /// synced batch, never a partial one, and a second recovery is a no-op.
        #[test]
        fn recovery_keeps_every_synced_batch(batches in proptest::collection::vec(1u32..20, 1..8), synced in 0usize..8, seed in any::<u64>()) {
            let fs = MemFs::new();
            let dir = Path::new("/ingest");
            fs.create_dir_all(dir).unwrap();
            let path = dir.join("a.active");
            let synced = synced.min(batches.len());
            let ids = write_batches(&fs, &path, &batches[..synced], true);
            let mut writer = SegmentWriter { file: fs.open_append(&path).unwrap(), path: path.clone(), bytes: 0, records: 0, first_id: None, last_id: None };
            let mut enc = BatchEncoder::new();
            for &n in &batches[synced..] {
                enc.begin();
                for i in 0..n { enc.push(Record { id: Ulid((2u128 << 90) + i as u128), flags: 0, topic: b"t", payload: b"unsynced" }); }
                writer.append(enc.finish(), n, Ulid(2 << 90), Ulid((2u128 << 90) + n as u128)).unwrap();
            }
            fs.crash(Some(seed));
            let recovery = recover_segment(&fs, &path, &dir.join("quarantine")).unwrap();
            let got = read_ids(&fs, &path);
            prop_assert!(got.len() >= ids.len());
            prop_assert_eq!(&got[..ids.len()], &ids[..]);
            prop_assert_eq!(recovery.records as usize, got.len());
            let again = recover_segment(&fs, &path, &dir.join("quarantine")).unwrap();
            prop_assert_eq!(again.torn_bytes, 0);
            prop_assert_eq!(again.records, recovery.records);
        }
    }

    #[test]
    fn a_garbage_tail_is_cut_and_quarantined() {
        let fs = MemFs::new();
        let dir = Path::new("/ingest");
        fs.create_dir_all(dir).unwrap();
        let path = dir.join("a.active");
        let ids = write_batches(&fs, &path, &[3, 4], true);
        let mut bytes = fs.read_all(&path).unwrap();
        let good = bytes.len();
        bytes.extend_from_slice(b"SLB1\xff\xff garbage");
        fs.write_all_synced(&path, &bytes);
        let recovery = recover_segment(&fs, &path, &dir.join("q")).unwrap();
        assert_eq!(recovery.valid_bytes as usize, good);
        assert_eq!(recovery.torn_bytes, 14);
        assert_eq!(recovery.records, 7);
        assert_eq!(read_ids(&fs, &path), ids);
        let quarantined = fs
            .read_all(&dir.join("q").join(format!("a.active.{good}.torn")))
            .unwrap();
        assert_eq!(quarantined, b"SLB1\xff\xff garbage");
    }
}
