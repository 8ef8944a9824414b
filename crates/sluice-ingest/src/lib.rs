//! Ingest: turn bytes from the network into records in segment files, and
//! lend flushed segments to stores.
//!
//! - [`listener`]: one accept loop for every port; one thread and one
//!   active segment per connection, served by the intake loop
//!   ([`sluice_record::intake`]) with the connection's protocol:
//!   - `stream`: fast and durable lines, and syslog;
//!   - [`fluent`]: the Fluentd forward protocol (acks, handshake, UDP
//!     heartbeats);
//!   - `batch`: the acknowledged batch protocol (port 7653).
//! - [`push`]: the HTTP push inputs' writer (Loki push, Elasticsearch
//!   `_bulk`): one thread and one active segment for every request, fed by
//!   a bounded queue, answering each request after its write.
//! - `sink`: a connection's active segment and the batch encoded for it.
//! - [`log`]: the ingest directory and its state machine
//!   (`active` → `flushed` → `pending` → removed on commit), with pending
//!   timeouts and startup recovery.
//! - [`tail`]: the live-tail ring of recent batches, read by `/stream`.
//! - `error`: [`IngestError`], why a connection ended with an error.
//! - `metrics`: every ingest metric, described by [`describe_metrics`].
//!
//! Architecture invariant: no acknowledgement comes before what it
//! promises: a batch's `OK` waits for its guarantee (`write`: in a segment
//! file, `fsync`: on disk, `replicated`: committed by a store; `none`
//! promises only that the batch parsed), and a fluent chunk's ack for its
//! write (or fsync). A segment leaves the ingester only by a store's
//! commit, never by a timeout.

mod batch;
mod error;
pub mod fluent;
pub mod listener;
pub mod log;
mod metrics;
pub mod push;
mod sink;
mod stream;
pub mod tail;

pub use error::IngestError;
pub use fluent::FluentConfig;
pub use listener::{IngestConfig, Listener, Mode};
pub use log::{Clock, IngestLog, LogError, ManualClock, SystemClock};
pub use metrics::describe as describe_metrics;
pub use push::{PushBatch, PushProtocol, PushWriter, Refused};
