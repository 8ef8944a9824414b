use std::{io, path::PathBuf};

use sluice_record::CodecError;

/// Why a storage operation failed. Every variant names the file it
/// concerns.
///
/// [`StorageError::is_corrupt`] tells damaged segments (and those of a
/// format this build does not read) from I/O failures: compaction
/// quarantines the first, and gives up and tries again later after the
/// second.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A filesystem call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, such as `"fsync segment"`.
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's (or [`crate::MemFs`]'s) error.
        #[source]
        source: io::Error,
    },
    /// A batch of a batch file (or ingest segment) is cut short, malformed,
    /// or fails its checksum.
    #[error("corrupt segment {path} at byte {offset}: {source}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where reading failed: the start of the bad batch (the end of
        /// the intact prefix), or the end of a verified batch whose records
        /// do not decode.
        offset: u64,
        /// What the batch codec found wrong.
        #[source]
        source: CodecError,
    },
    /// A block file's header, footer or block fails its checks.
    #[error("corrupt segment {path} at byte {offset}: {reason}")]
    Malformed {
        /// The segment file.
        path: PathBuf,
        /// The offset of the part that failed: the header (0), a block's
        /// meta frame, the footer, or the file's end.
        offset: u64,
        /// What was wrong, such as `"block meta checksum mismatch"`.
        reason: &'static str,
    },
    /// A block file of a format version this build does not read.
    #[error(
        "block file {path} is format {found}, and this sluice reads only format {supported}: \
         read it with the sluice that wrote it (nothing of it was read)"
    )]
    UnsupportedVersion {
        /// The block file.
        path: PathBuf,
        /// The version in the file's header, as `major.minor`.
        found: String,
        /// The one version this build reads.
        supported: String,
    },
    /// A file name in the store directory is not a segment's.
    #[error("segment name {name:?} is not <ulid>-<ulid>.seg")]
    BadName {
        /// The name as listed.
        name: String,
    },
    /// An ingest segment whose ids do not increase would have to be sorted
    /// in memory for a query, past the query's budget for that.
    #[error(
        "ingest segment {path} holds ids out of order and is {bytes} bytes, more than \
         this query may sort in memory ({limit} bytes left); its records are queryable \
         once a store has taken it"
    )]
    TooLargeToSort {
        /// The ingest segment.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// What the query's budget had left.
        limit: u64,
    },
}

impl StorageError {
    /// A mapper from an [`io::Error`] to [`StorageError::Io`] for `op` on
    /// `path`: `.map_err(StorageError::io("fsync segment", path))`.
    pub fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }

    /// True when the underlying cause is a full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) || source.kind() == io::ErrorKind::StorageFull)
    }

    /// True when a segment's bytes cannot be read as a segment (not an I/O
    /// failure): damaged, or of a block format version this build does not
    /// read.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. }
                | StorageError::Malformed { .. }
                | StorageError::UnsupportedVersion { .. }
        )
    }

    /// True when a file was not there (removed meanwhile, say, by
    /// compaction or retention).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
