//! [`MemoryCursor`]: records sorted in memory, read through the same
//! [`RecordCursor`] as the files (an ingest segment whose ids do not
//! increase is sorted into one for a query).

use sluice_record::Record;

use super::RecordCursor;
use crate::StorageError;

/// [`RecordCursor`] over records held in memory, in id order.
pub struct MemoryCursor {
    records: Vec<sluice_record::OwnedRecord>,
    next: usize,
    bytes: u64,
}

impl MemoryCursor {
    /// A cursor over `records`, which must be sorted by id; `bytes` is
    /// what reading them cost, as [`RecordCursor::bytes_read`] reports.
    pub fn new(records: Vec<sluice_record::OwnedRecord>, bytes: u64) -> MemoryCursor {
        debug_assert!(records.is_sorted_by_key(|r| r.id));
        MemoryCursor {
            records,
            next: 0,
            bytes,
        }
    }

    /// Bytes the records take in memory, about.
    pub fn memory_bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|r| (r.topic.len() + r.payload.len() + 64) as u64)
            .sum()
    }
}

impl RecordCursor for MemoryCursor {
    fn advance(&mut self) -> Result<bool, StorageError> {
        if self.next < self.records.len() {
            self.next += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn record(&self) -> Record<'_> {
        self.records[self.next - 1].as_record()
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}
