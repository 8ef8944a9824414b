//! A client library for applications that talk to sluice directly.
//!
//! - [`Writer`] implements [`std::io::Write`]: each line written is a record.
//!   Lines are batched and sent over the batch protocol (port 7653); a
//!   batch is complete when the ingester acknowledges it at the chosen
//!   [`Guarantee`]. A batch that fails (refused, or its connection broke) is
//!   kept and handed back by [`Writer::take_failed`]; [`Writer::retry`]
//!   sends it again with the same ids, so a retry cannot duplicate records.
//! - [`Scanner`] iterates the records of a query in id order, page by page,
//!   and can resume from a cursor ([`Scanner::cursor`]) after a restart.

mod scanner;
mod writer;

pub use scanner::{Entry, ScanError, Scanner};
pub use sluice_record::wire::Guarantee;
pub use writer::{FailedBatch, SendError, Writer, WriterConfig};
