//! The error of an ingest connection.

use sluice_fluent::FluentError;
use sluice_record::intake::ReadError;
use sluice_storage::StorageError;

use crate::LogError;

/// Why an ingest connection ended before its client closed it, or why a
/// batch could not be written. Logged with the peer when a connection ends.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("set up the connection: {0}")]
    Setup(#[source] std::io::Error),
    #[error("start the reply thread: {0}")]
    ReplyThread(#[source] std::io::Error),
    #[error("the reply thread stopped (client gone)")]
    RepliesClosed,
    #[error("send {what} to the client: {source}")]
    Send {
        /// `"acks"`, `"HELO"`, `"PONG"`.
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("create segment: {0}")]
    CreateSegment(#[source] LogError),
    #[error("write segment: {0}")]
    WriteSegment(#[source] StorageError),
    #[error("fsync segment: {0}")]
    SyncSegment(#[source] StorageError),
    #[error("seal segment: {0}")]
    SealSegment(#[source] LogError),
    #[error("bad fluent frame: {0}")]
    BadFrame(#[from] FluentError),
    #[error("bad fluent frame: events before the shared-key handshake")]
    NoHandshake,
    #[error("bad fluent frame: PING without a HELO")]
    UnexpectedPing,
    #[error("bad fluent frame: shared key mismatch")]
    AuthFailed,
}

impl IngestError {
    /// The disk is full: the client should retry later.
    pub fn is_disk_full(&self) -> bool {
        match self {
            IngestError::CreateSegment(LogError::Storage(err))
            | IngestError::SealSegment(LogError::Storage(err))
            | IngestError::WriteSegment(err)
            | IngestError::SyncSegment(err) => err.is_disk_full(),
            _ => false,
        }
    }

    /// The label under which a fluent connection closed for what its
    /// client sent is counted, if it was closed for that.
    pub(crate) fn fluent_refusal(&self) -> Option<&'static str> {
        Some(match self {
            IngestError::BadFrame(_) => "bad_frame",
            IngestError::NoHandshake => "no_handshake",
            IngestError::UnexpectedPing => "unexpected_ping",
            IngestError::AuthFailed => "auth_failed",
            _ => return None,
        })
    }
}
