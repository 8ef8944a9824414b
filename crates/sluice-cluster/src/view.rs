//! The pure part of membership: from what gossip knows (every node
//! generation with its keys and a failure-detector verdict) to a
//! [`ClusterView`], by the rules of [`build_view`].

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::Duration,
};

use crate::{ClusterView, Health, NodeInfo, Roles};

/// The node keys (at most 8 small values each node publishes, changed at
/// most about once a second), plus [`FORGOTTEN`](keys::FORGOTTEN).
pub mod keys {
    /// Protocol version, [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub const VERSION: &str = "v";
    /// `ingest`, `store` or `ingest,store` ([`Roles`](crate::Roles)).
    pub const ROLES: &str = "roles";
    /// The advertised `HOST:PORT` of the HTTP API.
    pub const API: &str = "api";
    /// The ingest ports, e.g. `fast=7651,durable=7652,batch=7653`.
    pub const INGEST: &str = "ingest";
    /// `starting`, `ready`, `draining` or `readonly` ([`Health`](crate::Health)).
    pub const HEALTH: &str = "health";
    /// The replication factor, e.g. `1`.
    pub const RF: &str = "rf";
    /// Ingest backlog bucket 0..=9: 0 none, else 1 + floor(log4(flushed segments)).
    pub const BACKLOG: &str = "backlog";
    /// A bucketed free-disk figure.
    pub const DISK: &str = "disk";
    /// Normally absent: a comma list of `nodeid:generation` an operator forgot
    /// on this node; it hides that generation and older ones of that node
    /// in every view.
    pub const FORGOTTEN: &str = "forgotten";
}

/// How many `nodeid:generation` entries a node keeps in its `forgotten`
/// key (the most recent ones).
pub const MAX_FORGOTTEN: usize = 32;

/// One generation of one node as membership knows it: the input of
/// [`build_view`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node id.
    pub id: String,
    /// The generation (Unix ms at its start).
    pub generation: u64,
    /// The address it gossips on, if it gossips.
    pub gossip: Option<SocketAddr>,
    /// The keys it published (the last ones seen, for a node gossip no
    /// longer holds).
    pub keys: BTreeMap<String, String>,
    /// The failure detector says live.
    pub live: bool,
    /// Time since its heartbeat last advanced, if known.
    pub heartbeat_age: Option<Duration>,
}

/// The view of `entries`, by these rules:
/// - Generations collapse per node id: the highest generation is shown, an
///   older one never is (even when it is the one still live).
/// - Live = `entry.live` (the failure detector) and the `roles` and `api`
///   keys present.
/// - Dead nodes stay, reported dead.
/// - A `forgotten` key of any entry hides each `id:generation` it lists and
///   the older generations of that id; a newer generation shows again.
///   This node (`self_id`) is never hidden from its own view.
///
/// Nodes are sorted by id. Equal `(id, generation)` pairs (which a
/// monotonic generation rules out) resolve to the live one, then to the
/// highest gossip address, so the result does not depend on input order.
pub fn build_view(cluster_id: &str, self_id: &str, entries: &[NodeEntry]) -> ClusterView {
    let hidden = tombstones(entries);
    let mut newest: BTreeMap<&str, &NodeEntry> = BTreeMap::new();
    for entry in entries {
        let slot = newest.entry(entry.id.as_str()).or_insert(entry);
        if rank(entry) > rank(slot) {
            *slot = entry;
        }
    }
    let nodes = newest
        .into_values()
        .filter(|e| e.id == self_id || hidden.get(e.id.as_str()).is_none_or(|&g| e.generation > g))
        .map(|e| node_info(e, e.id == self_id))
        .collect();
    ClusterView {
        cluster_id: cluster_id.to_string(),
        self_id: self_id.to_string(),
        nodes,
    }
}

/// The order in which entries of one node id win.
fn rank(e: &NodeEntry) -> (u64, bool, Option<SocketAddr>) {
    (e.generation, e.live, e.gossip)
}

/// For each node id named in a `forgotten` key of any entry, the highest
/// generation forgotten.
pub(crate) fn tombstones(entries: &[NodeEntry]) -> HashMap<&str, u64> {
    let mut hidden: HashMap<&str, u64> = HashMap::new();
    for entry in entries {
        if let Some(list) = entry.keys.get(keys::FORGOTTEN) {
            for (id, generation) in parse_forgotten(list) {
                let slot = hidden.entry(id).or_insert(generation);
                *slot = (*slot).max(generation);
            }
        }
    }
    hidden
}

/// The `id:generation` pairs of a `forgotten` value; malformed parts are
/// skipped (a newer node may write more).
pub(crate) fn parse_forgotten(list: &str) -> impl Iterator<Item = (&str, u64)> {
    list.split(',').filter_map(|part| {
        let (id, generation) = part.trim().rsplit_once(':')?;
        Some((id, generation.parse().ok()?)).filter(|(id, _)| !id.is_empty())
    })
}

/// The `forgotten` value after forgetting `id` at `generation`: the older
/// entry for the same id replaced, the newest [`MAX_FORGOTTEN`] kept.
pub(crate) fn add_forgotten(list: Option<&str>, id: &str, generation: u64) -> String {
    let mut pairs: Vec<(&str, u64)> = list
        .map(|l| parse_forgotten(l).filter(|(i, _)| *i != id).collect())
        .unwrap_or_default();
    pairs.push((id, generation));
    let skip = pairs.len().saturating_sub(MAX_FORGOTTEN);
    pairs[skip..]
        .iter()
        .map(|(id, generation)| format!("{id}:{generation}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn node_info(e: &NodeEntry, is_self: bool) -> NodeInfo {
    let key = |k: &str| e.keys.get(k).map(String::as_str);
    fn number<T: std::str::FromStr>(v: Option<&str>) -> Option<T> {
        v.and_then(|v| v.trim().parse().ok())
    }
    NodeInfo {
        id: e.id.clone(),
        generation: e.generation,
        roles: key(keys::ROLES).map(Roles::parse_lenient),
        api: key(keys::API).map(str::to_string),
        gossip: e.gossip,
        ingest: key(keys::INGEST).map(str::to_string),
        health: key(keys::HEALTH).and_then(|v| v.parse::<Health>().ok()),
        rf: number(key(keys::RF)),
        backlog: number(key(keys::BACKLOG)),
        disk: number(key(keys::DISK)),
        live: e.live && e.keys.contains_key(keys::ROLES) && e.keys.contains_key(keys::API),
        heartbeat_age: e.heartbeat_age,
        is_self,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    fn entry(id: &str, generation: u64, live: bool, kv: &[(&str, &str)]) -> NodeEntry {
        NodeEntry {
            id: id.into(),
            generation,
            gossip: Some(([127, 0, 0, 1], 7659).into()),
            keys: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            live,
            heartbeat_age: None,
        }
    }

    const FULL: &[(&str, &str)] = &[("roles", "store"), ("api", "h:1")];

    #[test]
    fn the_newest_generation_wins_even_when_an_older_one_is_live() {
        let view = build_view(
            "c",
            "S",
            &[
                entry("A", 1, true, FULL),
                entry("A", 2, false, FULL),
                entry("S", 5, true, FULL),
            ],
        );
        let a = view.get("A").unwrap();
        assert_eq!((a.generation, a.live), (2, false));
        assert_eq!(view.nodes.len(), 2);
        assert!(view.get("S").unwrap().is_self && !a.is_self);
    }

    #[test]
    fn live_needs_roles_and_api() {
        let view = build_view(
            "c",
            "S",
            &[
                entry("A", 1, true, &[("roles", "store")]),
                entry("B", 1, true, &[("api", "h:1")]),
                entry("C", 1, true, FULL),
                entry("D", 1, false, FULL),
            ],
        );
        let live: Vec<_> = view.live().map(|n| n.id.as_str()).collect();
        assert_eq!(live, ["C"]);
        assert_eq!(view.nodes.len(), 4, "dead nodes stay");
    }

    #[test]
    fn forgotten_hides_that_generation_and_older_until_a_newer_one() {
        let forgot = [
            ("roles", "store"),
            ("api", "h:1"),
            ("forgotten", "A:2,junk,B:x"),
        ];
        let mut entries = vec![
            entry("S", 9, true, &forgot),
            entry("A", 1, false, FULL),
            entry("A", 2, false, FULL),
            entry("B", 1, false, FULL),
        ];
        let view = build_view("c", "S", &entries);
        assert!(view.get("A").is_none());
        assert!(view.get("B").is_some(), "a malformed entry hides nothing");
        entries.push(entry("A", 3, true, FULL));
        let view = build_view("c", "S", &entries);
        assert_eq!(view.get("A").unwrap().generation, 3);
        assert!(view.is_live("A"));
    }

    #[test]
    fn a_node_is_never_hidden_from_its_own_view() {
        let entries = [
            entry("S", 4, true, FULL),
            entry(
                "T",
                1,
                true,
                &[("roles", "store"), ("api", "h"), ("forgotten", "S:4")],
            ),
        ];
        assert!(build_view("c", "S", &entries).get("S").is_some());
        assert!(build_view("c", "T", &entries).get("S").is_none());
    }

    #[test]
    fn keys_are_parsed_and_unparseable_values_are_none() {
        let kv = [
            ("roles", "ingest,store"),
            ("api", "h:1"),
            ("health", "ready"),
            ("rf", "2"),
            ("backlog", "x"),
            ("disk", "7"),
        ];
        let view = build_view("c", "S", &[entry("S", 1, true, &kv)]);
        let s = view.self_node().unwrap();
        assert_eq!(s.roles, Some(Roles::BOTH));
        assert_eq!(s.health, Some(Health::Ready));
        assert_eq!((s.rf, s.backlog, s.disk), (Some(2), None, Some(7)));
    }

    #[test]
    fn the_forgotten_list_replaces_an_id_and_is_bounded() {
        assert_eq!(add_forgotten(None, "A", 1), "A:1");
        assert_eq!(add_forgotten(Some("A:1,B:2"), "A", 5), "B:2,A:5");
        let mut list = String::new();
        for i in 0..100u64 {
            list = add_forgotten(Some(&list), &format!("N{i}"), i);
        }
        let pairs: Vec<_> = parse_forgotten(&list).collect();
        assert_eq!(pairs.len(), MAX_FORGOTTEN);
        assert_eq!(pairs.first(), Some(&("N68", 68)));
        assert_eq!(pairs.last(), Some(&("N99", 99)));
    }

    /// Random entries: ids from a small set so generations collide, unique
    /// `(id, generation)` pairs, random keys, some `forgotten` lists.
    fn entries_strategy() -> impl Strategy<Value = Vec<NodeEntry>> {
        let one = (
            0..5u8,
            0..6u64,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec((0..5u8, 0..6u64), 0..3),
        );
        proptest::collection::vec(one, 0..25).prop_map(|raw| {
            let mut unique = BTreeMap::new();
            for (id, generation, live, roles, api, forgotten) in raw {
                let mut keys = BTreeMap::new();
                if roles {
                    keys.insert("roles".to_string(), "ingest".to_string());
                }
                if api {
                    keys.insert("api".to_string(), "h:1".to_string());
                }
                if !forgotten.is_empty() {
                    let list: Vec<String> =
                        forgotten.iter().map(|(i, g)| format!("n{i}:{g}")).collect();
                    keys.insert("forgotten".to_string(), list.join(","));
                }
                let e = NodeEntry {
                    id: format!("n{id}"),
                    generation,
                    gossip: None,
                    keys,
                    live,
                    heartbeat_age: None,
                };
                unique.insert((e.id.clone(), generation), e);
            }
            unique.into_values().collect()
        })
    }

    proptest! {
        #[test]
        fn view_rules_hold(entries in entries_strategy(), self_n in 0..6u8, seed in any::<u64>()) {
            let self_id = format!("n{self_n}");
            let view = build_view("c", &self_id, &entries);

            // Input order does not matter.
            let mut shuffled = entries.clone();
            let len = shuffled.len();
            if len > 1 {
                for i in 0..len {
                    shuffled.swap(i, (seed as usize).wrapping_add(i * 7919) % len);
                }
            }
            prop_assert_eq!(&build_view("c", &self_id, &shuffled), &view);

            // The model: newest generation per id, the highest forgotten
            // generation per id.
            let mut newest: HashMap<&str, &NodeEntry> = HashMap::new();
            for e in &entries {
                let slot = newest.entry(e.id.as_str()).or_insert(e);
                if e.generation > slot.generation {
                    *slot = e;
                }
            }
            let mut forgotten: HashMap<String, u64> = HashMap::new();
            for e in &entries {
                if let Some(list) = e.keys.get("forgotten") {
                    for part in list.split(',') {
                        let (id, g) = part.split_once(':').unwrap();
                        let g: u64 = g.parse().unwrap();
                        let slot = forgotten.entry(id.to_string()).or_insert(g);
                        *slot = (*slot).max(g);
                    }
                }
            }

            // One entry per node id, sorted.
            let ids: Vec<&str> = view.nodes.iter().map(|n| n.id.as_str()).collect();
            let unique: BTreeSet<&str> = ids.iter().copied().collect();
            prop_assert_eq!(ids.clone(), unique.into_iter().collect::<Vec<_>>());

            for (id, e) in &newest {
                let hidden = *id != self_id
                    && forgotten.get(*id).is_some_and(|&g| e.generation <= g);
                match view.get(id) {
                    None => prop_assert!(hidden, "{} missing", id),
                    Some(n) => {
                        prop_assert!(!hidden, "{} shown though forgotten", id);
                        prop_assert_eq!(n.generation, e.generation);
                        let live = e.live
                            && e.keys.contains_key("roles")
                            && e.keys.contains_key("api");
                        prop_assert_eq!(n.live, live);
                        prop_assert_eq!(n.is_self, *id == self_id);
                    }
                }
            }
            prop_assert!(view.nodes.iter().all(|n| newest.contains_key(n.id.as_str())));
        }
    }
}
