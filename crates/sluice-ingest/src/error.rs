//! The error of an ingest connection.

use sluice_fluent::FluentError;
use sluice_record::intake::ReadError;
use sluice_storage::StorageError;

use crate::LogError;

/// Why an ingest connection ended before its client closed it, or why a
/// batch could not be written. Logged with the peer when a connection ends.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A read from the socket failed, as when the client reset the
    /// connection; what arrived before it was still written.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The accepted socket could not be set up: its read timeout, or the
    /// clone of its handle that replies are written through.
    #[error("set up the connection: {0}")]
    Setup(#[source] std::io::Error),
    /// A batch connection's replier thread could not be spawned.
    #[error("start the reply thread: {0}")]
    ReplyThread(#[source] std::io::Error),
    /// A batch connection's replier thread has exited: a write to the
    /// client failed, or it stopped waiting for a store's commit at
    /// shutdown. Nothing more can be acknowledged, so reading stops.
    #[error("the reply thread stopped (client gone)")]
    RepliesClosed,
    /// A write to a fluent client failed.
    #[error("send {what} to the client: {source}")]
    Send {
        /// `"acks"`, `"HELO"`, `"PONG"`.
        what: &'static str,
        /// The write's error.
        #[source]
        source: std::io::Error,
    },
    /// A new active segment could not be created (a full disk among
    /// others: see [`is_disk_full`](Self::is_disk_full)).
    #[error("create segment: {0}")]
    CreateSegment(#[source] LogError),
    /// A batch could not be appended to the active segment (or fsynced
    /// with it). The segment is cut back to its last whole batch and
    /// sealed, if the cut succeeds; the batch's records are counted as
    /// dropped.
    #[error("write segment: {0}")]
    WriteSegment(#[source] StorageError),
    /// The active segment could not be fsynced for `fsync` acks: the batch
    /// port refuses the batches that waited (`ERR`), the fluent port sends
    /// no acks and closes the connection. In durable mode a failed fsync is
    /// a [`WriteSegment`](Self::WriteSegment).
    #[error("fsync segment: {0}")]
    SyncSegment(#[source] StorageError),
    /// A segment due by size, age or the end of its connection could not
    /// be sealed (fsynced and renamed to `.flushed`).
    #[error("seal segment: {0}")]
    SealSegment(#[source] LogError),
    /// A fluent frame did not decode or broke a limit; its events are
    /// discarded and the client, without an ack, sends it again.
    #[error("bad fluent frame: {0}")]
    BadFrame(#[from] FluentError),
    /// With a shared key, events arrived before a PING with the right
    /// digest.
    #[error("bad fluent frame: events before the shared-key handshake")]
    NoHandshake,
    /// A PING arrived with no handshake in progress (no shared key is set,
    /// or the handshake is already done).
    #[error("bad fluent frame: PING without a HELO")]
    UnexpectedPing,
    /// A PING's digest does not match the shared key; the client is sent a
    /// refusing PONG.
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
