use std::{io, path::PathBuf};

use sluice_record::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt segment {path} at byte {offset}: {source}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        #[source]
        source: CodecError,
    },
    #[error("corrupt segment {path} at byte {offset}: {reason}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    #[error(
        "block file {path} is format {found}, and this sluice reads only format {supported}: \
         read it with the sluice that wrote it (nothing of it was read)"
    )]
    UnsupportedVersion {
        path: PathBuf,
        /// The version in the file's header, as `major.minor`.
        found: String,
        /// The one version this build reads.
        supported: String,
    },
    #[error("segment name {name:?} is not <ulid>-<ulid>.seg")]
    BadName { name: String },
}

impl StorageError {
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

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
