//! Telemetry of cluster membership, declared in one place: [`describe`]
//! gives every metric its help text and unit; the functions below add to
//! them (per gossip datagram, per view refresh).

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::{ClusterView, Health};

/// Register the help text and unit of every membership metric; the binary
/// calls it once, after installing the recorder.
pub fn describe() {
    describe_counter!(
        "sluice_gossip_bytes_total",
        Unit::Bytes,
        "Bytes of gossip (chitchat) datagrams, by direction: in (received and decoded) or out (sent)."
    );
    describe_counter!(
        "sluice_gossip_messages_total",
        Unit::Count,
        "Gossip (chitchat) datagrams, by direction: in (received and decoded) or out (sent)."
    );
    describe_gauge!(
        "sluice_cluster_nodes",
        Unit::Count,
        "Nodes in this node's cluster view, by role (ingest, store; a node with both counts in each), state (live, dead) and health (starting, ready, draining, readonly, unknown)."
    );
}

/// A gossip datagram of `bytes` was sent.
pub(crate) fn gossip_sent(bytes: usize) {
    counter!("sluice_gossip_bytes_total", "direction" => "out").increment(bytes as u64);
    counter!("sluice_gossip_messages_total", "direction" => "out").increment(1);
}

/// A gossip datagram of `bytes` was received and decoded.
pub(crate) fn gossip_received(bytes: usize) {
    counter!("sluice_gossip_bytes_total", "direction" => "in").increment(bytes as u64);
    counter!("sluice_gossip_messages_total", "direction" => "in").increment(1);
}

/// Set the node counts from a new view; every combination is set, zeros
/// included, so a count that falls to zero does not linger.
pub(crate) fn cluster_nodes(view: &ClusterView) {
    const HEALTHS: [Option<Health>; 5] = [
        Some(Health::Starting),
        Some(Health::Ready),
        Some(Health::Draining),
        Some(Health::Readonly),
        None,
    ];
    for role in ["ingest", "store"] {
        for live in [true, false] {
            for health in HEALTHS {
                let count = view
                    .nodes
                    .iter()
                    .filter(|n| {
                        let has_role = if role == "ingest" {
                            n.is_ingester()
                        } else {
                            n.is_store()
                        };
                        has_role && n.live == live && n.health == health
                    })
                    .count();
                gauge!(
                    "sluice_cluster_nodes",
                    "role" => role,
                    "state" => if live { "live" } else { "dead" },
                    "health" => health.map_or("unknown", |h| h.as_str()),
                )
                .set(count as f64);
            }
        }
    }
}
