//! What a view says about nodes: [`Roles`], [`Health`], [`NodeInfo`] and
//! the [`ClusterView`] snapshot, with their text and JSON forms.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, ser::SerializeSeq};

use crate::ParseError;

/// The roles a node runs: `ingest`, `store`, or both (`ingeststore`).
///
/// Text form (the `roles` key, flags): `ingest`, `store` or `ingest,store`.
/// JSON form: a list, `["ingest","store"]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Roles {
    /// Runs the input listeners, the ingest log and the lending API.
    pub ingest: bool,
    /// Runs the consumer lanes, the replicate endpoint and maintenance.
    pub store: bool,
}

impl Roles {
    /// `ingest` alone.
    pub const INGEST: Roles = Roles {
        ingest: true,
        store: false,
    };
    /// `store` alone.
    pub const STORE: Roles = Roles {
        ingest: false,
        store: true,
    };
    /// Both (`sluice ingeststore`).
    pub const BOTH: Roles = Roles {
        ingest: true,
        store: true,
    };

    /// The role names, in their canonical order (`ingest` before `store`).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::with_capacity(2);
        if self.ingest {
            names.push("ingest");
        }
        if self.store {
            names.push("store");
        }
        names
    }

    /// The roles named in a gossiped `roles` value, ignoring names this
    /// version does not know (a newer node may run a newer role) and
    /// malformed parts, unlike [`FromStr`], which is strict.
    pub fn parse_lenient(text: &str) -> Roles {
        let mut roles = Roles::default();
        for name in text.split(',').map(str::trim) {
            match name {
                "ingest" => roles.ingest = true,
                "store" => roles.store = true,
                _ => {}
            }
        }
        roles
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl FromStr for Roles {
    type Err = ParseError;

    /// Strict: a comma list of `ingest` and `store`, each at most once, at
    /// least one.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "roles",
            text: text.to_string(),
            expected: "ingest, store or ingest,store",
        };
        let mut roles = Roles::default();
        for name in text.split(',').map(str::trim) {
            let slot = match name {
                "ingest" => &mut roles.ingest,
                "store" => &mut roles.store,
                _ => return Err(err()),
            };
            if *slot {
                return Err(err());
            }
            *slot = true;
        }
        Ok(roles)
    }
}

impl Serialize for Roles {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = self.names();
        let mut seq = serializer.serialize_seq(Some(names.len()))?;
        for name in names {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        Ok(Roles::parse_lenient(&names.join(",")))
    }
}

/// What a node says about its own state (the `health` key).
///
/// Text form: `starting`, `ready`, `draining`, `readonly`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Recovering after a start; not yet taking work.
    Starting,
    /// Taking work.
    Ready,
    /// Shutting down (SIGTERM): finishing what is in flight, taking nothing new.
    Draining,
    /// A store whose disk is over its limit: still queried, takes no new copies.
    Readonly,
}

impl Health {
    /// Every health, in the order of the lifecycle.
    pub const ALL: [Health; 4] = [
        Health::Starting,
        Health::Ready,
        Health::Draining,
        Health::Readonly,
    ];

    /// The text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Ready => "ready",
            Health::Draining => "draining",
            Health::Readonly => "readonly",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Health {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Health::ALL
            .into_iter()
            .find(|h| h.as_str() == text.trim())
            .ok_or_else(|| ParseError {
                what: "health",
                text: text.to_string(),
                expected: "starting, ready, draining or readonly",
            })
    }
}

impl Serialize for Health {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One node of a [`ClusterView`]: its newest generation and what it
/// published. Serialized as one element of `nodes` in `GET /cluster`:
/// `{"id","generation","roles":["ingest","store"],"api","gossip","ingest",
/// "health","rf","backlog","disk","live","heartbeat_age_ms"}` (absent keys
/// are `null`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node id (a ULID, from `<data>/node-id`).
    pub id: String,
    /// The generation (Unix ms at its start); the view shows only the
    /// newest generation of each node id.
    pub generation: u64,
    /// The `roles` key (unknown role names ignored); `None` if absent.
    pub roles: Option<Roles>,
    /// The `api` key: the advertised `HOST:PORT` of its HTTP API.
    pub api: Option<String>,
    /// The address it gossips on; `None` when it does not gossip
    /// ([`Solo`](crate::Solo)).
    pub gossip: Option<SocketAddr>,
    /// The `ingest` key, e.g. `fast=7651,durable=7652,batch=7653` (see
    /// [`NodeInfo::ingest_port`]).
    pub ingest: Option<String>,
    /// The `health` key; `None` if absent or unknown.
    pub health: Option<Health>,
    /// The `rf` key (its replication factor).
    pub rf: Option<u32>,
    /// The `backlog` key: bucket 0..=9, 0 none, else
    /// 1 + floor(log4(flushed segments)).
    pub backlog: Option<u8>,
    /// The `disk` key: a bucketed free-disk figure.
    pub disk: Option<u8>,
    /// Live: gossip says live *and* its `roles` and `api` keys are present.
    pub live: bool,
    /// How long since its heartbeat last advanced (zero for this node);
    /// JSON `heartbeat_age_ms`.
    #[serde(rename = "heartbeat_age_ms", with = "opt_millis")]
    pub heartbeat_age: Option<Duration>,
    /// This node (the one whose view this is). Not in the JSON, whose
    /// top-level `self` names it.
    #[serde(skip)]
    pub is_self: bool,
}

impl NodeInfo {
    /// Has the ingest role.
    pub fn is_ingester(&self) -> bool {
        self.roles.is_some_and(|r| r.ingest)
    }

    /// Has the store role.
    pub fn is_store(&self) -> bool {
        self.roles.is_some_and(|r| r.store)
    }

    /// Live and `ready`: a replication target (for a store), a lender (for
    /// an ingester).
    pub fn is_ready(&self) -> bool {
        self.live && self.health == Some(Health::Ready)
    }

    /// The port named `name` (`fast`, `durable`, `batch`, ...) in the
    /// `ingest` key.
    pub fn ingest_port(&self, name: &str) -> Option<u16> {
        self.ingest
            .as_deref()?
            .split(',')
            .filter_map(|part| part.trim().split_once('='))
            .find(|(n, _)| n.trim() == name)
            .and_then(|(_, port)| port.trim().parse().ok())
    }
}

/// `Option<Duration>` as an optional number of milliseconds.
mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// A snapshot of the cluster as one node sees it: one entry per node id
/// (its newest generation), live and dead, sorted by id. Cheap to share
/// (`Arc`), never changed in place: membership swaps in a new one.
///
/// JSON form (`GET /cluster`): `{"cluster_id":..,"self":ID,"nodes":[..]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ViewJson")]
pub struct ClusterView {
    /// The cluster id (`--cluster-id`); nodes of another cluster are ignored.
    pub cluster_id: String,
    /// The id of the node whose view this is.
    #[serde(rename = "self")]
    pub self_id: String,
    /// Every node, sorted by id.
    pub nodes: Vec<NodeInfo>,
}

/// The JSON form, from which [`ClusterView`] sets `is_self` again.
#[derive(Deserialize)]
struct ViewJson {
    cluster_id: String,
    #[serde(rename = "self")]
    self_id: String,
    nodes: Vec<NodeInfo>,
}

impl From<ViewJson> for ClusterView {
    fn from(json: ViewJson) -> Self {
        let mut nodes = json.nodes;
        for node in &mut nodes {
            node.is_self = node.id == json.self_id;
        }
        ClusterView {
            cluster_id: json.cluster_id,
            self_id: json.self_id,
            nodes,
        }
    }
}

impl ClusterView {
    /// The node with this id.
    pub fn get(&self, id: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node with this id is in the view and live.
    pub fn is_live(&self, id: &str) -> bool {
        self.get(id).is_some_and(|n| n.live)
    }

    /// This node.
    pub fn self_node(&self) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.is_self)
    }

    /// Every live node.
    pub fn live(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.nodes.iter().filter(|n| n.live)
    }

    /// Every node with the ingest role, live and dead.
    pub fn ingesters(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.nodes.iter().filter(|n| n.is_ingester())
    }

    /// Every live node with the ingest role.
    pub fn live_ingesters(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.ingesters().filter(|n| n.live)
    }

    /// Every node with the store role, live and dead.
    pub fn stores(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.nodes.iter().filter(|n| n.is_store())
    }

    /// Every live node with the store role.
    pub fn live_stores(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.stores().filter(|n| n.live)
    }

    /// Every store that is live and `ready`: the replication targets.
    pub fn ready_stores(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.stores().filter(|n| n.is_ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_text_round_trips() {
        for (text, roles) in [
            ("ingest", Roles::INGEST),
            ("store", Roles::STORE),
            ("ingest,store", Roles::BOTH),
        ] {
            assert_eq!(text.parse::<Roles>().unwrap(), roles);
            assert_eq!(roles.to_string(), text);
        }
        assert_eq!("store, ingest".parse::<Roles>().unwrap(), Roles::BOTH);
        assert_eq!(Roles::BOTH.names(), ["ingest", "store"]);
    }

    #[test]
    fn bad_roles_are_refused_with_the_text() {
        for text in ["", "query", "ingest,ingest", "ingest,", "ingest;store"] {
            let err = text.parse::<Roles>().unwrap_err();
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn gossiped_roles_ignore_unknown_names() {
        assert_eq!(Roles::parse_lenient("ingest,query"), Roles::INGEST);
        assert_eq!(Roles::parse_lenient("query"), Roles::default());
    }

    #[test]
    fn health_text_round_trips() {
        for health in Health::ALL {
            assert_eq!(health.to_string().parse::<Health>().unwrap(), health);
        }
        assert_eq!("ready".parse::<Health>().unwrap(), Health::Ready);
        assert_eq!("readonly".parse::<Health>().unwrap(), Health::Readonly);
        let err = "Ready!".parse::<Health>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad health \"Ready!\": expected starting, ready, draining or readonly"
        );
    }

    fn sample() -> ClusterView {
        ClusterView {
            cluster_id: "sluice".into(),
            self_id: "A".into(),
            nodes: vec![
                NodeInfo {
                    id: "A".into(),
                    generation: 7,
                    roles: Some(Roles::BOTH),
                    api: Some("10.0.0.1:7650".into()),
                    gossip: Some("10.0.0.1:7659".parse().unwrap()),
                    ingest: Some("fast=7651,durable=7652,batch=7653".into()),
                    health: Some(Health::Ready),
                    rf: Some(2),
                    backlog: Some(1),
                    disk: Some(3),
                    live: true,
                    heartbeat_age: Some(Duration::ZERO),
                    is_self: true,
                },
                NodeInfo {
                    id: "B".into(),
                    generation: 9,
                    roles: Some(Roles::STORE),
                    api: None,
                    gossip: None,
                    ingest: None,
                    health: None,
                    rf: None,
                    backlog: None,
                    disk: None,
                    live: false,
                    heartbeat_age: Some(Duration::from_millis(1500)),
                    is_self: false,
                },
            ],
        }
    }

    #[test]
    fn view_json_has_the_cluster_endpoint_shape_and_round_trips() {
        let view = sample();
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cluster_id": "sluice",
                "self": "A",
                "nodes": [
                    {"id": "A", "generation": 7, "roles": ["ingest", "store"],
                     "api": "10.0.0.1:7650", "gossip": "10.0.0.1:7659",
                     "ingest": "fast=7651,durable=7652,batch=7653", "health": "ready",
                     "rf": 2, "backlog": 1, "disk": 3, "live": true, "heartbeat_age_ms": 0},
                    {"id": "B", "generation": 9, "roles": ["store"], "api": null,
                     "gossip": null, "ingest": null, "health": null, "rf": null,
                     "backlog": null, "disk": null, "live": false, "heartbeat_age_ms": 1500},
                ]
            })
        );
        let back: ClusterView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
    }

    #[test]
    fn view_helpers_select_by_role_and_liveness() {
        let view = sample();
        let ids = |it: &mut dyn Iterator<Item = &NodeInfo>| -> Vec<String> {
            it.map(|n| n.id.clone()).collect()
        };
        assert_eq!(ids(&mut view.ingesters()), ["A"]);
        assert_eq!(ids(&mut view.live_ingesters()), ["A"]);
        assert_eq!(ids(&mut view.stores()), ["A", "B"]);
        assert_eq!(ids(&mut view.live_stores()), ["A"]);
        assert_eq!(ids(&mut view.ready_stores()), ["A"]);
        assert!(view.is_live("A") && !view.is_live("B") && !view.is_live("C"));
        assert_eq!(view.self_node().unwrap().id, "A");
        assert_eq!(view.get("B").unwrap().generation, 9);
        let a = view.get("A").unwrap();
        assert_eq!(a.ingest_port("durable"), Some(7652));
        assert_eq!(a.ingest_port("fluent"), None);
    }
}
