//! [`StoreSegmentWriter`]: one store segment, a batch file or a block
//! file, written under `tmp/` and placed under its final name once whole.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use sluice_record::{BatchEncoder, Record, Ulid};

use super::{SegmentKind, SegmentMeta, TARGET_BATCH_BYTES, TMP_DIR, place};
use crate::{
    StorageError,
    block_segment::{BlockLayout, BlockWriter},
    fs::Fs,
    segment::SegmentWriter,
    workers::WorkerPool,
};

/// Writes one store segment from records pushed in increasing id order.
pub struct StoreSegmentWriter<'fs> {
    fs: &'fs dyn Fs,
    dir: PathBuf,
    tmp: PathBuf,
    writer: KindWriter,
    last: Option<Ulid>,
    first: Option<Ulid>,
    duplicates: u64,
}

enum KindWriter {
    Batches {
        writer: SegmentWriter,
        encoder: BatchEncoder,
        batch_first: Option<Ulid>,
    },
    Blocks(BlockWriter),
}

impl<'fs> StoreSegmentWriter<'fs> {
    /// A writer of a batch file, as the consumer writes.
    pub fn batches(fs: &'fs dyn Fs, dir: &Path) -> Result<Self, StorageError> {
        let tmp = Self::tmp_path(fs, dir)?;
        let writer = KindWriter::Batches {
            writer: SegmentWriter::create(fs, &tmp)?,
            encoder: BatchEncoder::new(),
            batch_first: None,
        };
        Ok(Self::with_writer(fs, dir, tmp, writer))
    }

    /// A writer of a block file of `layout`, as compaction writes, whose
    /// blocks are built on `workers`.
    pub fn blocks(
        fs: &'fs dyn Fs,
        dir: &Path,
        layout: BlockLayout,
        workers: Arc<WorkerPool>,
    ) -> Result<Self, StorageError> {
        let tmp = Self::tmp_path(fs, dir)?;
        let file = fs
            .create_new(&tmp)
            .map_err(StorageError::io("create segment", &tmp))?;
        let writer = KindWriter::Blocks(
            BlockWriter::new(file, workers)
                .map_err(StorageError::io("write segment", &tmp))?
                .with_layout(layout),
        );
        Ok(Self::with_writer(fs, dir, tmp, writer))
    }

    /// Keep each block this writer builds in `cache`, decoded (see
    /// [`BlockWriter::keeping_blocks_in`]); a batch file writer has none.
    pub fn keeping_blocks_in(mut self, cache: Arc<crate::BlockCache>) -> Self {
        self.writer = match self.writer {
            KindWriter::Blocks(writer) => KindWriter::Blocks(writer.keeping_blocks_in(cache)),
            batches => batches,
        };
        self
    }

    /// A writer of `kind`; block files are [`BlockLayout::Sorted`].
    pub fn create(
        fs: &'fs dyn Fs,
        dir: &Path,
        kind: SegmentKind,
        workers: Arc<WorkerPool>,
    ) -> Result<Self, StorageError> {
        match kind {
            SegmentKind::Batches => Self::batches(fs, dir),
            SegmentKind::Blocks => Self::blocks(fs, dir, BlockLayout::Sorted, workers),
        }
    }

    /// A new temp path in `dir/tmp`, which is created if missing.
    fn tmp_path(fs: &dyn Fs, dir: &Path) -> Result<PathBuf, StorageError> {
        let tmp_dir = dir.join(TMP_DIR);
        fs.create_dir_all(&tmp_dir)
            .map_err(StorageError::io("create tmp dir", &tmp_dir))?;
        Ok(tmp_dir.join(format!("{}.tmp", Ulid::new())))
    }

    fn with_writer(fs: &'fs dyn Fs, dir: &Path, tmp: PathBuf, writer: KindWriter) -> Self {
        StoreSegmentWriter {
            fs,
            dir: dir.to_path_buf(),
            tmp,
            writer,
            last: None,
            first: None,
            duplicates: 0,
        }
    }

    /// Records pushed so far, without duplicates.
    pub fn records(&self) -> u64 {
        match &self.writer {
            KindWriter::Batches {
                writer, encoder, ..
            } => writer.records() + encoder.count() as u64,
            KindWriter::Blocks(writer) => writer.records(),
        }
    }

    /// Bytes written so far, plus what is buffered (in a block file's open
    /// block, uncompressed).
    pub fn bytes(&self) -> u64 {
        match &self.writer {
            KindWriter::Batches {
                writer, encoder, ..
            } => writer.bytes() + encoder.len() as u64,
            KindWriter::Blocks(writer) => writer.bytes(),
        }
    }

    /// Bytes of the records pushed, uncompressed: a batch file's size, or a
    /// block file's text (payloads and newlines). Compaction cuts outputs
    /// by this.
    pub fn record_bytes(&self) -> u64 {
        match &self.writer {
            KindWriter::Batches { .. } => self.bytes(),
            KindWriter::Blocks(writer) => writer.text_bytes(),
        }
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
        match &mut self.writer {
            KindWriter::Batches {
                writer,
                encoder,
                batch_first,
            } => {
                if encoder.is_empty() {
                    encoder.begin();
                    *batch_first = Some(record.id);
                }
                encoder.push(record);
                if encoder.len() >= TARGET_BATCH_BYTES {
                    let first = batch_first.take().expect("a batch has a first id");
                    let count = encoder.count();
                    writer.append(encoder.finish(), count, first, record.id)?;
                    encoder.begin();
                }
            }
            KindWriter::Blocks(writer) => writer
                .push(record)
                .map_err(StorageError::io("write segment", &self.tmp))?,
        }
        self.first.get_or_insert(record.id);
        self.last = Some(record.id);
        Ok(())
    }

    /// Append a block copied whole from a block file
    /// ([`crate::block_segment::BlockSegment::raw_block`]); this writer must
    /// write a block file and every id pushed so far be below the block's.
    pub fn push_raw_block(
        &mut self,
        raw: &crate::block_segment::RawBlock<'_>,
    ) -> Result<(), StorageError> {
        assert!(
            self.last.is_none_or(|last| last < raw.entry.min),
            "store segment blocks must be pushed in id order"
        );
        let KindWriter::Blocks(writer) = &mut self.writer else {
            panic!("raw blocks go to block file writers only");
        };
        writer
            .append_raw(raw)
            .map_err(StorageError::io("write segment", &self.tmp))?;
        self.first.get_or_insert(raw.entry.min);
        self.last = Some(raw.entry.max);
        Ok(())
    }

    /// Make the segment durable under its final name. Returns `None` (and
    /// removes the temp file) when no record was pushed.
    pub fn finish(self) -> Result<Option<SegmentMeta>, StorageError> {
        let tmp = self.tmp;
        let (Some(min), Some(max)) = (self.first, self.last) else {
            drop(self.writer);
            self.fs
                .remove_file(&tmp)
                .map_err(StorageError::io("remove empty segment", &tmp))?;
            return Ok(None);
        };
        let bytes = match self.writer {
            KindWriter::Batches {
                mut writer,
                mut encoder,
                batch_first,
            } => {
                if let Some(first) = batch_first {
                    let count = encoder.count();
                    writer.append(encoder.finish(), count, first, max)?;
                }
                writer.sync()?;
                writer.bytes()
            }
            KindWriter::Blocks(writer) => {
                let (mut file, bytes) = writer
                    .finish()
                    .map_err(StorageError::io("write segment", &tmp))?;
                file.sync_data()
                    .map_err(StorageError::io("fsync segment", &tmp))?;
                bytes
            }
        };
        let meta = place(self.fs, &self.dir, &tmp, min, max, bytes)?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(StorageError::io("fsync store dir", &self.dir))?;
        Ok(Some(meta))
    }

    /// Give up: remove the temp file.
    pub fn abort(self) {
        drop(self.writer);
        let _ = self.fs.remove_file(&self.tmp);
    }
}
