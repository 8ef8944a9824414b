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
        matches!(self, StorageError::Io { source, .. } if source.raw_os_error() == Some(28) /* ENOSPC */ || source.kind() == io::ErrorKind::StorageFull)
    }

    /// True when a segment's bytes are damaged (not an I/O failure).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. } | StorageError::Malformed { .. }
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
