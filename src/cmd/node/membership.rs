//! Joining the cluster: the node's id, gossip (or a cluster of one), the
//! keys it publishes, and the ingesters a store consumes from.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use sluice_cluster::{Gossip, GossipConfig, Health, Membership, Roles, Solo, keys};
use sluice_store::{Ingester, IngesterSource};

use super::args::NodeArgs;

/// The gossip port when `--gossip` is not given.
pub const DEFAULT_GOSSIP_PORT: u16 = 7659;

/// This node in the cluster.
pub struct Members {
    /// The view and this node's keys.
    pub membership: Arc<dyn Membership>,
    /// The bound gossip port; `None` for a cluster of one.
    pub gossip_port: Option<u16>,
    /// This node's id (kept in `<data>/node-id`).
    pub node_id: String,
    gossip: Option<Arc<Gossip>>,
}

impl Members {
    /// Stop gossiping (the others see this node dead from then on).
    pub async fn leave(self) {
        if let Some(gossip) = self.gossip
            && let Err(e) = gossip.shutdown().await
        {
            tracing::warn!(error = %e, "gossip did not stop cleanly");
        }
    }
}

/// Join the cluster through `--peer` seeds, or stand alone: `ingeststore`
/// with neither `--peer` nor `--gossip` is a cluster of one and opens no
/// gossip port.
pub async fn join(
    node: &NodeArgs,
    roles: Roles,
    api: SocketAddr,
    ingest_ports: Option<String>,
    both_roles: bool,
    rf: u32,
) -> anyhow::Result<Members> {
    let node_id = sluice_cluster::load_or_create_node_id(&node.data)?;
    let generation = sluice_cluster::next_generation(&node.data)?;
    let mut initial = vec![
        (
            keys::VERSION.to_string(),
            sluice_cluster::PROTOCOL_VERSION.to_string(),
        ),
        (keys::ROLES.to_string(), roles.to_string()),
        (keys::API.to_string(), api.to_string()),
        (keys::HEALTH.to_string(), Health::Starting.to_string()),
        (keys::RF.to_string(), rf.to_string()),
        (keys::BACKLOG.to_string(), "0".to_string()),
    ];
    if let Some(ports) = ingest_ports {
        initial.push((keys::INGEST.to_string(), ports));
    }
    let alone = both_roles && node.peers.is_empty() && node.gossip.is_none();
    if alone {
        let solo = Solo::new(&node.cluster_id, &node_id.to_string(), generation, initial);
        return Ok(Members {
            membership: Arc::new(solo),
            gossip_port: None,
            node_id: node_id.to_string(),
            gossip: None,
        });
    }
    let listen = node
        .gossip
        .clone()
        .unwrap_or(super::listen::Listen::Port(DEFAULT_GOSSIP_PORT))
        .resolve(node.bind)
        .expect("--gossip cannot be turned off");
    let gossip = Gossip::start(GossipConfig {
        node_id: node_id.to_string(),
        generation,
        cluster_id: node.cluster_id.clone(),
        listen,
        advertise: node.advertise_gossip,
        seeds: node.peers.clone(),
        interval: node.gossip_interval.into(),
        keys: initial,
    })
    .await
    .with_context(|| format!("join the cluster through gossip on {listen} (--gossip)"))?;
    let gossip = Arc::new(gossip);
    let port = gossip.local_addr().port();
    tracing::info!(node = %node_id, generation, gossip = %gossip.local_addr(), seeds = ?node.peers, cluster = %node.cluster_id, "gossip started");
    Ok(Members {
        membership: gossip.clone(),
        gossip_port: Some(port),
        node_id: node_id.to_string(),
        gossip: Some(gossip),
    })
}

/// The backlog bucket of an ingester holding `flushed` segments: 0 for
/// none, else 1 + floor(log4(flushed)), at most 9. Coarse on purpose: it
/// changes rarely, so it costs gossip almost nothing.
pub fn backlog_bucket(flushed: usize) -> u8 {
    log4_bucket(flushed as u64)
}

/// 0 for 0, else 1 + floor(log4(n)), at most 9: the coarse scale of every
/// bucketed key.
fn log4_bucket(n: u64) -> u8 {
    if n == 0 {
        return 0;
    }
    let log4 = (u64::BITS - 1 - n.leading_zeros()) / 2;
    (1 + log4).min(9) as u8
}

/// The free-disk bucket of the file system holding `dir`: 0 below 1 GiB
/// free, else 1 + floor(log4(free GiB)), at most 9 (1: 1-4 GiB, 2: 4-16
/// GiB, ... 5: 256 GiB-1 TiB). `None` when the file system cannot say.
pub fn disk_bucket(dir: &std::path::Path) -> Option<u8> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    Some(free_bucket(free))
}

fn free_bucket(free_bytes: u64) -> u8 {
    log4_bucket(free_bytes >> 30)
}

/// The other stores of the view a replica can go to: live, `ready`, with
/// an API address; weighted by their free-disk bucket.
pub struct ViewStores {
    /// The cluster view.
    pub membership: Arc<dyn Membership>,
    /// This node's id.
    pub self_id: String,
}

impl sluice_store::ReplicaSource for ViewStores {
    fn self_id(&self) -> String {
        self.self_id.clone()
    }

    fn targets(&self) -> Vec<sluice_store::placement::Candidate> {
        let view = self.membership.view();
        view.nodes
            .iter()
            .filter(|n| n.id != self.self_id && n.live && n.roles.is_some_and(|r| r.store))
            .filter(|n| n.health == Some(Health::Ready))
            .filter_map(|n| {
                Some(sluice_store::placement::Candidate {
                    id: n.id.clone(),
                    api: n.api.as_ref()?.to_string(),
                    weight: u64::from(n.disk.unwrap_or(0)) + 1,
                })
            })
            .collect()
    }

    fn stores(&self) -> Vec<sluice_store::replicate::StoreState> {
        let view = self.membership.view();
        let mut stores: Vec<_> = view
            .nodes
            .iter()
            .filter(|n| n.roles.is_some_and(|r| r.store))
            .map(|n| {
                let me = n.id == self.self_id;
                sluice_store::replicate::StoreState {
                    candidate: sluice_store::placement::Candidate {
                        id: n.id.clone(),
                        api: n.api.as_ref().map(ToString::to_string).unwrap_or_default(),
                        weight: u64::from(n.disk.unwrap_or(0)) + 1,
                    },
                    live: n.live || me,
                    accepts: !me && n.live && n.health == Some(Health::Ready) && n.api.is_some(),
                }
            })
            .collect();
        if !stores.iter().any(|s| s.candidate.id == self.self_id) {
            stores.push(sluice_store::replicate::StoreState {
                candidate: sluice_store::placement::Candidate {
                    id: self.self_id.clone(),
                    api: String::new(),
                    weight: 1,
                },
                live: true,
                accepts: false,
            });
        }
        stores
    }
}

/// Log, once per change, the nodes of the view whose replication factor
/// differs from this node's.
pub fn check_rf(view: &sluice_cluster::ClusterView, rf: u32, last: &mut Vec<String>) {
    let mut differ: Vec<String> = view
        .nodes
        .iter()
        .filter(|n| n.live && n.rf.is_some_and(|other| other != rf))
        .map(|n| format!("{} (rf {})", n.id, n.rf.unwrap_or(0)))
        .collect();
    differ.sort();
    if differ != *last {
        if !differ.is_empty() {
            tracing::warn!(rf, nodes = ?differ, "nodes of this cluster run with another --replication-factor; give every node the same one");
        }
        *last = differ;
    }
}

/// The live ingesters of the view, for the consumer: those ready,
/// draining (a draining one still hands out what it holds) or readonly
/// (an ingeststore whose store part is full still lends).
pub struct ViewIngesters(pub Arc<dyn Membership>);

impl IngesterSource for ViewIngesters {
    fn ingesters(&self) -> Vec<Ingester> {
        let view = self.0.view();
        view.nodes
            .iter()
            .filter(|n| n.live && n.roles.is_some_and(|r| r.ingest))
            .filter(|n| {
                matches!(
                    n.health,
                    Some(Health::Ready | Health::Draining | Health::Readonly)
                )
            })
            .filter_map(|n| {
                Some(Ingester {
                    base: format!("http://{}", n.api.as_ref()?),
                    weight: u32::from(n.backlog.unwrap_or(0)) + 1,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_buckets_grow_by_fours() {
        let buckets: Vec<u8> = [0, 1, 3, 4, 15, 16, 1 << 30]
            .into_iter()
            .map(backlog_bucket)
            .collect();
        assert_eq!(buckets, [0, 1, 1, 2, 2, 3, 9]);
    }

    #[test]
    fn disk_buckets_grow_by_fours_from_one_gib() {
        let gib = 1u64 << 30;
        let buckets: Vec<u8> = [0, gib - 1, gib, 3 * gib, 4 * gib, 300 * gib, u64::MAX]
            .into_iter()
            .map(free_bucket)
            .collect();
        assert_eq!(buckets, [0, 0, 1, 1, 2, 5, 9]);
        assert!(disk_bucket(std::path::Path::new(".")).is_some());
    }
}
