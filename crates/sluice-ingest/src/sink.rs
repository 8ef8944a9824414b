//! A connection's active segment: append batches, seal by size or age.
//!
//! Shared by the line and batch connections, so that both follow one rule:
//! a failed write is cut back to the last whole batch and what came before
//! it is still sealed and lent to the store.

use std::sync::Arc;

use sluice_record::{BatchEncoder, Ulid};

use crate::{
    listener::IngestConfig,
    log::{ActiveSegment, IngestLog},
    metrics,
};

/// Why an append failed.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    pub disk_full: bool,
    pub message: String,
}

pub(crate) struct SegmentSink {
    log: Arc<IngestLog>,
    config: IngestConfig,
    segment: Option<ActiveSegment>,
}

impl SegmentSink {
    pub fn new(log: Arc<IngestLog>, config: IngestConfig) -> SegmentSink {
        SegmentSink {
            log,
            config,
            segment: None,
        }
    }

    /// Append the encoder's finished batch of `count` records spanning
    /// `first..=last`; with `sync`, make it durable before returning.
    /// Returns the id of the segment that holds it.
    pub fn append(
        &mut self,
        encoder: &mut BatchEncoder,
        first: Ulid,
        last: Ulid,
        sync: bool,
    ) -> Result<Ulid, WriteFailure> {
        let count = encoder.count();
        if self.segment.is_none() {
            match self.log.create_active() {
                Ok(seg) => self.segment = Some(seg),
                Err(err) => {
                    let disk_full = matches!(&err, crate::LogError::Storage(e) if e.is_disk_full());
                    metrics::write_error(if disk_full { "disk_full" } else { "io" });
                    return Err(WriteFailure {
                        disk_full,
                        message: format!("create segment: {err}"),
                    });
                }
            }
        }
        let segment = self.segment.as_mut().expect("segment was just created");
        let good = segment.bytes();
        let written = segment
            .writer()
            .append(encoder.finish(), count, first, last)
            .and_then(|_| {
                if sync {
                    segment.writer().sync()
                } else {
                    Ok(())
                }
            });
        match written {
            Ok(()) => Ok(segment.id()),
            Err(err) => {
                let disk_full = err.is_disk_full();
                metrics::write_error(if disk_full { "disk_full" } else { "io" });
                // Keep what was written before this batch: cut the partial
                // write and seal the rest.
                let segment = self.segment.take().expect("segment exists");
                if self.log.rewind(&segment, good).is_ok() {
                    let _ = self.log.seal(segment);
                }
                Err(WriteFailure {
                    disk_full,
                    message: format!("write segment: {err}"),
                })
            }
        }
    }

    /// Make the active segment's appended batches durable.
    pub fn sync(&mut self) -> Result<(), WriteFailure> {
        let Some(segment) = self.segment.as_mut() else {
            return Ok(());
        };
        segment.writer().sync().map_err(|err| {
            metrics::write_error("fsync");
            WriteFailure {
                disk_full: err.is_disk_full(),
                message: format!("fsync segment: {err}"),
            }
        })
    }

    /// Seal the active segment if it is due (size or age), or if `force`.
    pub fn maybe_seal(&mut self, force: bool) -> Result<(), String> {
        let due = self.segment.as_ref().is_some_and(|s| {
            force
                || s.bytes() >= self.config.segment_target_bytes
                || s.age() >= self.config.flush_age
        });
        if due {
            let segment = self.segment.take().expect("checked above");
            self.log.seal(segment).map_err(|e| {
                metrics::write_error("seal");
                format!("seal segment: {e}")
            })?;
        }
        Ok(())
    }
}
