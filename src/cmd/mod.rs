//! One module per subcommand.

pub mod cluster;
pub mod forward;
pub mod node;
pub mod print;
pub mod query;
pub mod stream;
pub mod testsvc;
