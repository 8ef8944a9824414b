//! A connection's active segment and the batch being encoded for it.
//!
//! Every protocol writes through one [`SegmentSink`], so all follow one
//! rule: records are encoded into one reused batch ([`begin`], [`push`]),
//! appended with one write ([`write`], plus one fsync when asked), and a
//! failed write is cut back to the last whole batch; what came before it
//! is still sealed and lent to the store. The segment is sealed by size or
//! age ([`maybe_seal`]) and when the connection ends.
//!
//! [`begin`]: SegmentSink::begin
//! [`push`]: SegmentSink::push
//! [`write`]: SegmentSink::write
//! [`maybe_seal`]: SegmentSink::maybe_seal

use std::{sync::Arc, time::Duration};

use sluice_record::{BatchEncoder, Record, Ulid};

use crate::{
    error::IngestError,
    listener::IngestConfig,
    log::{ActiveSegment, IngestLog},
    metrics,
};

pub(crate) struct SegmentSink {
    log: Arc<IngestLog>,
    segment_target_bytes: u64,
    flush_age: Duration,
    segment: Option<ActiveSegment>,
    encoder: BatchEncoder,
    /// The id range of the batch being encoded.
    first: Ulid,
    last: Ulid,
    /// A batch in the active segment waits for `replicated`: seal it after
    /// [`REPLICATED_SEAL_AGE`] rather than the flush age.
    awaited: bool,
}

/// How old an active segment holding a batch that waits for `replicated`
/// may get before it is sealed, so that stores take it (and the ack comes)
/// well under a second after the write at low rates.
pub const REPLICATED_SEAL_AGE: Duration = Duration::from_millis(200);

impl SegmentSink {
    pub fn new(log: Arc<IngestLog>, config: &IngestConfig) -> SegmentSink {
        SegmentSink {
            log,
            segment_target_bytes: config.segment_target_bytes,
            flush_age: config.flush_age,
            segment: None,
            encoder: BatchEncoder::new(),
            first: Ulid(u128::MAX),
            last: Ulid(0),
            awaited: false,
        }
    }

    /// A batch just written waits for `replicated`: seal its segment soon.
    pub fn seal_soon(&mut self) {
        self.awaited = true;
    }

    /// Start a batch, forgetting the records of one not written.
    pub fn begin(&mut self) {
        self.encoder.begin();
        self.first = Ulid(u128::MAX);
        self.last = Ulid(0);
    }

    /// Add a record to the batch.
    pub fn push(&mut self, record: Record<'_>) {
        self.first = self.first.min(record.id);
        self.last = self.last.max(record.id);
        self.encoder.push(record);
    }

    /// Whether it has no active segment (none yet, or just sealed).
    pub fn is_idle(&self) -> bool {
        self.segment.is_none()
    }

    /// Records in the batch.
    pub fn count(&self) -> u32 {
        self.encoder.count()
    }

    /// The lowest and highest id in the batch.
    pub fn range(&self) -> (Ulid, Ulid) {
        (self.first, self.last)
    }

    /// Append the batch, if it holds records, to the active segment (made
    /// durable first with `sync`), and return the id of the segment that
    /// holds it. On failure its records are counted as dropped, and the
    /// segment is cut back to its last whole batch and sealed.
    pub fn write(&mut self, sync: bool) -> Result<Option<Ulid>, IngestError> {
        let count = self.encoder.count();
        if count == 0 {
            return Ok(None);
        }
        let written = self.append(sync);
        if written.is_err() {
            metrics::records_dropped("write_error", u64::from(count));
        }
        written.map(Some)
    }

    fn append(&mut self, sync: bool) -> Result<Ulid, IngestError> {
        if self.segment.is_none() {
            let segment = self.log.create_active().map_err(|err| {
                let err = IngestError::CreateSegment(err);
                metrics::write_error(if err.is_disk_full() {
                    "disk_full"
                } else {
                    "io"
                });
                err
            })?;
            self.segment = Some(segment);
        }
        let segment = self.segment.as_mut().expect("segment was just created");
        let good = segment.bytes();
        let count = self.encoder.count();
        let batch = self.encoder.finish();
        let written = segment
            .append(batch, count, self.first, self.last)
            .and_then(|_| if sync { segment.sync() } else { Ok(()) });
        match written {
            Ok(()) => {
                // In the segment file (and on disk when asked): readers of
                // the live tail may see it now. The ring takes the
                // encoder's buffer and gives it a spare one: no copy.
                let tail = self.log.tail();
                if tail.is_read() {
                    let batch = self.encoder.take_finished(tail.spare());
                    tail.publish_owned(batch, count);
                }
                Ok(segment.id())
            }
            Err(err) => {
                metrics::write_error(if err.is_disk_full() {
                    "disk_full"
                } else {
                    "io"
                });
                // Keep what was written before this batch: cut the partial
                // write and seal the rest.
                let segment = self.segment.take().expect("segment exists");
                if self.log.rewind(&segment, good).is_ok() {
                    let _ = self.log.seal(segment);
                } else {
                    self.log.abandon(segment);
                }
                Err(IngestError::WriteSegment(err))
            }
        }
    }

    /// Make the active segment's appended batches durable.
    pub fn sync(&mut self) -> Result<(), IngestError> {
        let Some(segment) = self.segment.as_mut() else {
            return Ok(());
        };
        segment.sync().map_err(|err| {
            metrics::write_error("fsync");
            IngestError::SyncSegment(err)
        })
    }

    /// Whether it has an active segment to seal: due by size or age, or
    /// any with `force`.
    pub fn is_due(&self, force: bool) -> bool {
        let max_age = if self.awaited {
            self.flush_age.min(REPLICATED_SEAL_AGE)
        } else {
            self.flush_age
        };
        self.segment
            .as_ref()
            .is_some_and(|s| force || s.bytes() >= self.segment_target_bytes || s.age() >= max_age)
    }

    /// Seal the active segment if it is due (size or age), or if `force`.
    pub fn maybe_seal(&mut self, force: bool) -> Result<(), IngestError> {
        if self.is_due(force) {
            self.awaited = false;
            let segment = self.segment.take().expect("checked above");
            self.log.seal(segment).map_err(|err| {
                metrics::write_error("seal");
                IngestError::SealSegment(err)
            })?;
        }
        Ok(())
    }
}
