//! The errors of this crate: [`ClusterError`] for starting and stopping
//! membership, [`ForgetError`] for `forget`, [`ParseError`] for the text
//! forms of roles and health.

use std::{io, net::SocketAddr, path::PathBuf, time::Duration};

/// What can fail while a node finds its identity or joins the gossip.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A state file (`node-id`, `generation`) exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A state file, its temporary file or its directory cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `node-id` does not hold a ULID.
    #[error("the node id file {} holds {value:?}, not a ULID", path.display())]
    BadNodeId {
        /// The file.
        path: PathBuf,
        /// What it holds (lossy UTF-8, trimmed).
        value: String,
    },
    /// `generation` does not hold a number.
    #[error("the generation file {} holds {value:?}, not a number", path.display())]
    BadGeneration {
        /// The file.
        path: PathBuf,
        /// What it holds (lossy UTF-8, trimmed).
        value: String,
    },
    /// The gossip UDP socket cannot be bound.
    #[error("cannot bind the gossip socket to {addr} (--gossip): {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why (the operating system's error).
        reason: String,
    },
    /// A seed is not `HOST:PORT`.
    #[error("bad --peer {seed:?}: expected HOST:PORT (an IP or a DNS name, and a port)")]
    BadSeed {
        /// The seed as given.
        seed: String,
    },
    /// The gossip address peers would be told is unspecified (`0.0.0.0`,
    /// `::`), so they could not reach this node.
    #[error(
        "gossip would advertise {addr}, which peers cannot reach: give --advertise-gossip HOST:PORT"
    )]
    UnspecifiedAdvertise {
        /// The address that would have been advertised.
        addr: SocketAddr,
    },
    /// The gossip interval is zero.
    #[error("bad --gossip-interval {interval:?}: it must be more than zero")]
    BadInterval {
        /// The interval given.
        interval: Duration,
    },
    /// chitchat refused to start.
    #[error("cannot start gossip: {reason}")]
    Start {
        /// chitchat's error.
        reason: String,
    },
    /// The gossip server had failed when it was shut down.
    #[error("gossip stopped with an error: {reason}")]
    Stopped {
        /// chitchat's error.
        reason: String,
    },
}

/// Why [`Membership::forget`](crate::Membership::forget) refused a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForgetError {
    /// The view has no node with this id (never seen, or already forgotten).
    #[error("unknown node {node}")]
    Unknown {
        /// The node id asked for.
        node: String,
    },
    /// The node is live: only a dead node can be forgotten.
    #[error("node {node} is live: only a dead node can be forgotten")]
    Live {
        /// The node id asked for.
        node: String,
    },
    /// The node is this node, which cannot forget itself.
    #[error("node {node} is this node: a node cannot forget itself")]
    IsSelf {
        /// The node id asked for.
        node: String,
    },
}

/// A text form of [`Roles`](crate::Roles) or [`Health`](crate::Health) that
/// does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad {what} {text:?}: expected {expected}")]
pub struct ParseError {
    pub(crate) what: &'static str,
    pub(crate) text: String,
    pub(crate) expected: &'static str,
}
