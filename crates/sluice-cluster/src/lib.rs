//! Cluster membership for sluice: who is in the cluster, in which roles,
//! at which addresses, in which health, live or dead.
//!
//! # Pieces
//!
//! - Identity on disk: [`load_or_create_node_id`] (a ULID in
//!   `<data>/node-id`, created once) and [`next_generation`] (Unix ms at
//!   start, kept increasing across restarts in `<data>/generation`).
//! - The node keys each node publishes ([`keys`]): `v`, `roles`, `api`,
//!   `ingest`, `health`, `rf`, `backlog`, `disk`, plus `forgotten`.
//!   Values are short strings changed at most about once a second; nothing
//!   per segment or per batch belongs here.
//! - [`ClusterView`]: an immutable snapshot, one [`NodeInfo`] per node id,
//!   shared as `Arc<ClusterView>` and swapped when membership changes. Its
//!   JSON form is the body of `GET /cluster`. [`build_view`] is the pure
//!   rule set that makes it (generations collapse, liveness, dead nodes
//!   kept, `forgotten` tombstones).
//! - [`Membership`]: the trait the rest of sluice uses. Implementations:
//!   [`Gossip`] (chitchat, protocol V1), [`Solo`] (a cluster of one without
//!   gossip: `sluice ingeststore` with neither `--peer` nor `--gossip`) and
//!   [`Manual`] (other nodes set by the caller, for tests).
//! - Metrics: [`describe_metrics`] registers `sluice_gossip_bytes_total`,
//!   `sluice_gossip_messages_total` (label `direction` = `in`|`out`) and
//!   the gauge `sluice_cluster_nodes` (labels `role` = `ingest`|`store`,
//!   `state` = `live`|`dead`, `health` = a [`Health`] or `unknown`), set at
//!   each view change.
//!
//! # Rules of the view
//!
//! - One entry per node id: its highest generation. An older generation is
//!   never shown, even when it is still the live one.
//! - Live = the failure detector says live *and* the `roles` and `api` keys
//!   are present. This node is live in its own view once it set them.
//! - Dead nodes stay (reported dead, with their last keys and heartbeat
//!   age), even after chitchat drops them, until they come back with a new
//!   generation or an operator forgets them.
//! - [`Membership::forget`] refuses unknown ([`ForgetError::Unknown`]),
//!   live ([`ForgetError::Live`]) and self ([`ForgetError::IsSelf`]) nodes;
//!   otherwise it adds `id:generation` to this node's `forgotten` key (the
//!   newest [`MAX_FORGOTTEN`] kept), which hides that generation and older
//!   ones in every view that receives it. A newer generation shows again.
//!   A node forgotten while it is in fact running stays hidden from the
//!   others until it restarts.
//!
//! # Wiring
//!
//! ```no_run
//! # async fn run(data: &std::path::Path) -> Result<(), sluice_cluster::ClusterError> {
//! use std::{sync::Arc, time::Duration};
//! use sluice_cluster::{Gossip, GossipConfig, Membership, keys};
//!
//! let node_id = sluice_cluster::load_or_create_node_id(data)?;
//! let generation = sluice_cluster::next_generation(data)?;
//! let gossip = Arc::new(
//!     Gossip::start(GossipConfig {
//!         node_id: node_id.to_string(),
//!         generation,
//!         cluster_id: "sluice".into(),
//!         listen: "127.0.0.1:7659".parse().unwrap(),
//!         advertise: None,
//!         seeds: vec!["10.0.0.2:7659".into()],
//!         interval: Duration::from_secs(1),
//!         keys: vec![
//!             (keys::ROLES.into(), "ingest,store".into()),
//!             (keys::API.into(), "127.0.0.1:7650".into()),
//!             (keys::HEALTH.into(), "starting".into()),
//!         ],
//!     })
//!     .await?,
//! );
//! let membership: Arc<dyn Membership> = gossip.clone();
//! membership.set_self(keys::HEALTH, "ready");
//! let view = membership.view(); // from any thread, cheap
//! for store in view.ready_stores() { let _ = &store.api; }
//! // On SIGTERM: publish draining, wait two intervals, ... then:
//! membership.set_self(keys::HEALTH, "draining");
//! gossip.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! [`Gossip::start`] and [`Gossip::shutdown`] need a tokio runtime with
//! timers and I/O (`net`, `time`, `sync`; the workspace's tokio features
//! suffice, current-thread or multi-thread); the [`Membership`] methods
//! are synchronous, never block on the network, and may be called from
//! any thread, inside or outside the runtime.

mod error;
mod gossip;
mod identity;
mod local;
mod metrics;
mod node;
mod view;

use std::sync::Arc;

pub use error::{ClusterError, ForgetError, ParseError};
pub use gossip::{
    DEAD_NODE_GRACE_PERIOD, DEFAULT_GOSSIP_INTERVAL, Gossip, GossipConfig, PHI_THRESHOLD,
    failure_detector_config,
};
pub use identity::{GENERATION_FILE, NODE_ID_FILE, load_or_create_node_id, next_generation};
pub use local::{Manual, Solo};
pub use metrics::describe as describe_metrics;
pub use node::{ClusterView, Health, NodeInfo, Roles};
pub use view::{MAX_FORGOTTEN, NodeEntry, build_view, keys};

/// The value of the `v` key this version publishes.
pub const PROTOCOL_VERSION: &str = "1";

/// Cluster membership as the rest of sluice sees it: a view to read, this
/// node's keys to set, dead nodes to forget.
pub trait Membership: Send + Sync {
    /// The current view: cheap (an `Arc` clone), never blocks for long.
    fn view(&self) -> Arc<ClusterView>;

    /// Set one of this node's keys ([`keys`]). This node's own view has it
    /// at once; peers get it with the next gossip rounds. Setting the
    /// value a key already has does nothing.
    fn set_self(&self, key: &str, value: &str);

    /// Forget a dead node: hide its current generation (and older ones)
    /// from every view, cluster-wide, by publishing it in this node's
    /// `forgotten` key. Gone from this node's view at once.
    fn forget(&self, node_id: &str) -> Result<(), ForgetError>;
}
