//! One module per subcommand.

pub mod forward;
pub mod ingeststore;
pub mod query;
pub mod testsvc;
