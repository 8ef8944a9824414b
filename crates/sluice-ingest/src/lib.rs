//! Ingest: turn bytes from the network into records in segment files, and
//! lend flushed segments to stores.
//!
//! - [`log`]: the ingest directory and its state machine
//!   (`active` → `flushed` → `pending` → removed on commit), with pending
//!   timeouts and startup recovery.
//! - [`listener`]: one accept loop for every port; one thread and one
//!   active segment per connection, served by the intake loop
//!   ([`sluice_record::intake`]) with the connection's protocol:
//!   - `stream`: fast and durable lines, and syslog;
//!   - [`fluent`]: the Fluentd forward protocol (acks, handshake, UDP
//!     heartbeats);
//!   - `batch`: the acknowledged batch protocol (port 7653).
//! - `sink`: a connection's active segment and the batch encoded for it.
//! - [`IngestError`]: why a connection ended with an error.
//!
//! Architecture invariant: a record is acknowledged to nobody before it is
//! in a segment file; a segment leaves the ingester only by a store's
//! commit, never by a timeout.

mod batch;
mod error;
pub mod fluent;
pub mod listener;
pub mod log;
mod metrics;
mod sink;
mod stream;

pub use error::IngestError;
pub use fluent::FluentConfig;
pub use listener::{IngestConfig, Listener, Mode};
pub use log::{Clock, IngestLog, LogError, ManualClock, SystemClock};
pub use metrics::describe as describe_metrics;
