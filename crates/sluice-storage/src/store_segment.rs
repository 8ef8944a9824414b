//! Store segments (format v1): immutable files named by their ULID range.
//!
//! Name: `<min ulid>-<max ulid>.seg`, or `<min>-<max>.<n>.seg` when a
//! segment with the same range already exists (a re-consumed ingest segment
//! yields the same range; both copies are kept and query dedupes them).
//!
//! Byte layout: the segment-file batches of [`crate::segment`], with records
//! sorted by id and no id repeated, in batches of about
//! [`TARGET_BATCH_BYTES`].
//!
//! Write rule: write to `tmp/<random>.tmp`, fsync, rename to the final name,
//! fsync the directory. A segment under its final name is therefore whole.
//! Recovery rule: files in `tmp/` are unfinished writes whose inputs were
//! never committed upstream, so they are removed at startup. Files in the
//! segment directory whose names do not parse are reported and left alone:
//! nothing is deleted because its name looks odd.
//!
//! Reads go through [`RecordCursor`], the one reader abstraction the query
//! engine uses; a later format implements the same trait.

use std::path::{Path, PathBuf};

use sluice_record::{BatchEncoder, Record, Ulid, decode_record};

use crate::{
    StorageError,
    fs::Fs,
    segment::{SegmentScanner, SegmentWriter},
};

/// Batches in a store segment hold about this many bytes: 1 MiB.
pub const TARGET_BATCH_BYTES: usize = 1 << 20;
pub const SEGMENT_SUFFIX: &str = ".seg";
pub const TMP_DIR: &str = "tmp";

/// A store segment's identity and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub name: String,
    pub min: Ulid,
    pub max: Ulid,
    pub bytes: u64,
}

impl SegmentMeta {
    /// Parse `<min>-<max>.seg` or `<min>-<max>.<n>.seg`.
    pub fn parse(name: &str, bytes: u64) -> Result<SegmentMeta, StorageError> {
        let bad = || StorageError::BadName {
            name: name.to_string(),
        };
        let stem = name.strip_suffix(SEGMENT_SUFFIX).ok_or_else(bad)?;
        let range = match stem.split_once('.') {
            Some((range, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => range,
            Some(_) => return Err(bad()),
            None => stem,
        };
        let (min, max) = range.split_once('-').ok_or_else(bad)?;
        let min = Ulid::from_string(min).map_err(|_| bad())?;
        let max = Ulid::from_string(max).map_err(|_| bad())?;
        if min > max {
            return Err(bad());
        }
        Ok(SegmentMeta {
            name: name.to_string(),
            min,
            max,
            bytes,
        })
    }

    /// Whether any record of this segment can have a time in `[from_ms, to_ms]`.
    pub fn overlaps_ms(&self, from_ms: u64, to_ms: u64) -> bool {
        self.min.timestamp_ms() <= to_ms && self.max.timestamp_ms() >= from_ms
    }
}

/// Every store segment in `dir`, sorted by `min`, and the names that were
/// not segments (reported by the caller, never deleted).
pub fn list_segments(
    fs: &dyn Fs,
    dir: &Path,
) -> Result<(Vec<SegmentMeta>, Vec<String>), StorageError> {
    let mut segments = Vec::new();
    let mut strangers = Vec::new();
    for entry in fs
        .read_dir(dir)
        .map_err(StorageError::io("list store dir", dir))?
    {
        if entry.is_dir {
            continue;
        }
        match SegmentMeta::parse(&entry.name, entry.len) {
            Ok(meta) => segments.push(meta),
            Err(_) => strangers.push(entry.name),
        }
    }
    segments.sort_by(|a, b| (a.min, a.max, &a.name).cmp(&(b.min, b.max, &b.name)));
    Ok((segments, strangers))
}

/// Remove unfinished writes from `dir/tmp` (see the module's recovery rule).
pub fn clean_tmp(fs: &dyn Fs, dir: &Path) -> Result<usize, StorageError> {
    let tmp = dir.join(TMP_DIR);
    fs.create_dir_all(&tmp)
        .map_err(StorageError::io("create tmp dir", &tmp))?;
    let mut removed = 0;
    for entry in fs
        .read_dir(&tmp)
        .map_err(StorageError::io("list tmp dir", &tmp))?
    {
        if !entry.is_dir && entry.name.ends_with(".tmp") {
            let path = tmp.join(&entry.name);
            fs.remove_file(&path)
                .map_err(StorageError::io("remove unfinished segment", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes one store segment from records pushed in increasing id order.
pub struct StoreSegmentWriter<'fs> {
    fs: &'fs dyn Fs,
    dir: PathBuf,
    writer: SegmentWriter,
    encoder: BatchEncoder,
    batch_first: Option<Ulid>,
    last: Option<Ulid>,
    first: Option<Ulid>,
    duplicates: u64,
}

impl<'fs> StoreSegmentWriter<'fs> {
    pub fn create(fs: &'fs dyn Fs, dir: &Path) -> Result<Self, StorageError> {
        let tmp_dir = dir.join(TMP_DIR);
        fs.create_dir_all(&tmp_dir)
            .map_err(StorageError::io("create tmp dir", &tmp_dir))?;
        let tmp = tmp_dir.join(format!("{}.tmp", Ulid::new()));
        let writer = SegmentWriter::create(fs, &tmp)?;
        Ok(StoreSegmentWriter {
            fs,
            dir: dir.to_path_buf(),
            writer,
            encoder: BatchEncoder::new(),
            batch_first: None,
            last: None,
            first: None,
            duplicates: 0,
        })
    }

    /// Records pushed so far, without duplicates.
    pub fn records(&self) -> u64 {
        self.writer.records() + self.encoder.count() as u64
    }

    /// Bytes written or buffered so far.
    pub fn bytes(&self) -> u64 {
        self.writer.bytes() + self.encoder.len() as u64
    }

    /// Records skipped because their id equalled the previous one.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Append a record. Ids must not decrease; an id equal to the previous
    /// one is a duplicate and is skipped.
    pub fn push(&mut self, record: Record<'_>) -> Result<(), StorageError> {
        if let Some(last) = self.last {
            assert!(
                record.id >= last,
                "store segment records must be pushed in id order"
            );
            if record.id == last {
                self.duplicates += 1;
                return Ok(());
            }
        }
        if self.encoder.is_empty() {
            self.encoder.begin();
            self.batch_first = Some(record.id);
        }
        self.encoder.push(record);
        self.first.get_or_insert(record.id);
        self.last = Some(record.id);
        if self.encoder.len() >= TARGET_BATCH_BYTES {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), StorageError> {
        if self.encoder.is_empty() {
            return Ok(());
        }
        let count = self.encoder.count();
        let first = self.batch_first.take().expect("a batch has a first id");
        let last = self.last.expect("a batch has a last id");
        let bytes = self.encoder.finish();
        self.writer.append(bytes, count, first, last)?;
        self.encoder.begin();
        Ok(())
    }

    /// Make the segment durable under its final name. Returns `None` (and
    /// removes the temp file) when no record was pushed.
    pub fn finish(mut self) -> Result<Option<SegmentMeta>, StorageError> {
        self.flush_batch()?;
        let tmp = self.writer.path().to_path_buf();
        let (Some(min), Some(max)) = (self.first, self.last) else {
            self.fs
                .remove_file(&tmp)
                .map_err(StorageError::io("remove empty segment", &tmp))?;
            return Ok(None);
        };
        self.writer.sync()?;
        let bytes = self.writer.bytes();
        let mut name = format!("{min}-{max}{SEGMENT_SUFFIX}");
        let mut n = 1;
        while self.fs.exists(&self.dir.join(&name)) {
            name = format!("{min}-{max}.{n}{SEGMENT_SUFFIX}");
            n += 1;
        }
        let target = self.dir.join(&name);
        self.fs
            .rename(&tmp, &target)
            .map_err(StorageError::io("rename segment", &target))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(StorageError::io("fsync store dir", &self.dir))?;
        Ok(Some(SegmentMeta {
            name,
            min,
            max,
            bytes,
        }))
    }

    /// Give up: remove the temp file.
    pub fn abort(self) {
        let _ = self.fs.remove_file(self.writer.path());
    }
}

/// A forward cursor over the records of one segment, in id order.
///
/// This is the reader abstraction of the store: query execution and
/// compaction see segments only through it.
pub trait RecordCursor: Send {
    /// Move to the next record. Returns `false` at the end.
    fn advance(&mut self) -> Result<bool, StorageError>;
    /// The current record; only valid after `advance` returned `true`.
    fn record(&self) -> Record<'_>;
    /// Bytes of the segment read so far.
    fn bytes_read(&self) -> u64;
}

/// [`RecordCursor`] over a v1 store segment (or any segment file).
pub struct StoreSegmentCursor {
    scanner: SegmentScanner,
    /// Offset of the current record in the scanner's body.
    current: usize,
    /// Offset of the next record in the scanner's body.
    next: usize,
    remaining_in_batch: u32,
}

impl StoreSegmentCursor {
    pub fn open(fs: &dyn Fs, path: &Path) -> Result<Self, StorageError> {
        Ok(StoreSegmentCursor {
            scanner: SegmentScanner::open(fs, path)?,
            current: 0,
            next: 0,
            remaining_in_batch: 0,
        })
    }

    fn corrupt(&self, source: sluice_record::CodecError) -> StorageError {
        StorageError::Corrupt {
            path: self.scanner.path().to_path_buf(),
            offset: self.scanner.offset(),
            source,
        }
    }
}

impl RecordCursor for StoreSegmentCursor {
    fn advance(&mut self) -> Result<bool, StorageError> {
        while self.remaining_in_batch == 0 {
            match self.scanner.next_batch()? {
                None => return Ok(false),
                Some((header, _)) => {
                    self.remaining_in_batch = header.count;
                    self.next = 0;
                }
            }
        }
        let (_, next) =
            decode_record(self.scanner.body(), self.next).map_err(|e| self.corrupt(e))?;
        self.current = self.next;
        self.next = next;
        self.remaining_in_batch -= 1;
        Ok(true)
    }

    fn record(&self) -> Record<'_> {
        // The record at `current` decoded once already in `advance`.
        decode_record(self.scanner.body(), self.current)
            .expect("current record was decoded by advance")
            .0
    }

    fn bytes_read(&self) -> u64 {
        self.scanner.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemFs;

    #[test]
    fn names_parse_strictly() {
        let a = Ulid::from_parts(1, 1);
        let b = Ulid::from_parts(2, 1);
        assert!(SegmentMeta::parse(&format!("{a}-{b}.seg"), 0).is_ok());
        assert!(SegmentMeta::parse(&format!("{a}-{b}.3.seg"), 0).is_ok());
        assert!(SegmentMeta::parse(&format!("{b}-{a}.seg"), 0).is_err());
        assert!(SegmentMeta::parse(&format!("{a}-{b}.x.seg"), 0).is_err());
        assert!(SegmentMeta::parse("notes.txt", 0).is_err());
    }

    #[test]
    fn written_segments_read_back_in_order_without_duplicates() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let mut w = StoreSegmentWriter::create(&fs, dir).unwrap();
        let payload = vec![b'p'; 5000];
        for i in 0..1000u128 {
            let r = Record {
                id: Ulid(i / 2 + 7),
                flags: 0,
                topic: b"t",
                payload: &payload,
            };
            w.push(r).unwrap();
        }
        assert_eq!(w.duplicates(), 500);
        let meta = w.finish().unwrap().unwrap();
        assert_eq!((meta.min, meta.max), (Ulid(7), Ulid(506)));
        let (segments, strangers) = list_segments(&fs, dir).unwrap();
        assert_eq!(segments, vec![meta.clone()]);
        assert!(strangers.is_empty());
        let mut cursor = StoreSegmentCursor::open(&fs, &dir.join(&meta.name)).unwrap();
        let mut ids = Vec::new();
        while cursor.advance().unwrap() {
            ids.push(cursor.record().id.0);
        }
        assert_eq!(ids, (7..507).collect::<Vec<_>>());
        assert_eq!(cursor.bytes_read(), meta.bytes);
    }
}
