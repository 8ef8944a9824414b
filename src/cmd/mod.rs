//! One module per subcommand.

pub mod cluster;
pub mod forward;
pub mod histogram;
pub mod node;
pub mod progress;
pub mod query;
pub mod testsvc;
