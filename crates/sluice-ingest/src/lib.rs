//! Ingest: turn bytes from the network into records in segment files, and
//! lend flushed segments to stores.
//!
//! - [`log`]: the ingest directory and its state machine
//!   (`active` → `flushed` → `pending` → removed on commit), with pending
//!   timeouts and startup recovery.
//! - [`listener`]: the fast, durable and batch listeners; one thread and one
//!   active segment per connection.
//! - [`batch`]: the acknowledged batch protocol connection (port 7653).
//!
//! Architecture invariant: a record is acknowledged to nobody before it is
//! in a segment file; a segment leaves the ingester only by a store's
//! commit, never by a timeout.

pub mod batch;
pub mod fluent;
pub mod listener;
pub mod log;
mod metrics;
mod sink;
pub mod syslog;

pub use fluent::FluentConfig;
pub use listener::{IngestConfig, Listener, Mode};
pub use log::{Clock, IngestLog, LogError, ManualClock, SystemClock};
