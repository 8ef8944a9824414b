//! One module per subcommand.

pub mod cluster;
pub mod filter;
pub mod forward;
pub mod histogram;
pub mod node;
pub mod print;
pub mod progress;
pub mod query;
pub mod repair;
pub mod stream;
pub mod testsvc;
