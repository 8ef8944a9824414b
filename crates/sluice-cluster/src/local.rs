//! The state every [`Membership`](crate::Membership) shares: this node's
//! own keys (the source of truth for them), what is known of the other
//! nodes, and the current [`ClusterView`], rebuilt under one lock whenever
//! either changes. [`Solo`] and [`Manual`] are it alone;
//! [`Gossip`](crate::Gossip) feeds it from chitchat.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
    time::Duration,
};

use tokio::sync::mpsc::UnboundedSender;

use crate::{
    ClusterView, ForgetError, NodeEntry, PROTOCOL_VERSION, build_view, keys, metrics,
    view::add_forgotten,
};

/// Lock, ignoring poisoning: every update replaces whole values, so a
/// panic elsewhere cannot leave them half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This node's keys, with `v` set to [`PROTOCOL_VERSION`] unless given.
pub(crate) fn initial_keys(keys: Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = keys.into_iter().collect();
    map.entry(keys::VERSION.to_string())
        .or_insert_with(|| PROTOCOL_VERSION.to_string());
    map
}

pub(crate) struct Core {
    pub(crate) cluster_id: String,
    pub(crate) self_id: String,
    pub(crate) self_generation: u64,
    pub(crate) self_gossip: Option<SocketAddr>,
    /// This node's keys: what it last set, even before gossip has it.
    pub(crate) self_keys: BTreeMap<String, String>,
    /// Every other node generation (older generations of this node included).
    pub(crate) others: Vec<NodeEntry>,
    /// Where key changes go to be gossiped, in order.
    pub(crate) publish: Option<UnboundedSender<(String, String)>>,
}

impl Core {
    fn build(&self) -> ClusterView {
        let mut entries = Vec::with_capacity(self.others.len() + 1);
        entries.extend(self.others.iter().cloned());
        entries.push(NodeEntry {
            id: self.self_id.clone(),
            generation: self.self_generation,
            gossip: self.self_gossip,
            keys: self.self_keys.clone(),
            live: true,
            heartbeat_age: Some(Duration::ZERO),
        });
        build_view(&self.cluster_id, &self.self_id, &entries)
    }
}

pub(crate) struct Shared {
    core: Mutex<Core>,
    view: RwLock<Arc<ClusterView>>,
}

impl Shared {
    pub(crate) fn new(core: Core) -> Shared {
        let view = Arc::new(core.build());
        metrics::cluster_nodes(&view);
        Shared {
            core: Mutex::new(core),
            view: RwLock::new(view),
        }
    }

    pub(crate) fn view(&self) -> Arc<ClusterView> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rebuild and swap in the view; called with the core locked, so views
    /// are swapped in the order of the changes.
    fn store(&self, core: &Core) {
        let view = Arc::new(core.build());
        metrics::cluster_nodes(&view);
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = view;
    }

    pub(crate) fn set_self(&self, key: &str, value: &str) {
        let mut core = lock(&self.core);
        Self::set_key(&mut core, key, value);
        self.store(&core);
    }

    fn set_key(core: &mut Core, key: &str, value: &str) {
        if core.self_keys.get(key).is_some_and(|v| v == value) {
            return;
        }
        core.self_keys.insert(key.to_string(), value.to_string());
        if let Some(publish) = &core.publish {
            // Fails only once gossip is shut down: nothing to tell then.
            let _ = publish.send((key.to_string(), value.to_string()));
        }
    }

    pub(crate) fn forget(&self, node: &str) -> Result<(), ForgetError> {
        let mut core = lock(&self.core);
        if node == core.self_id {
            return Err(ForgetError::IsSelf { node: node.into() });
        }
        let view = self.view();
        let info = view
            .get(node)
            .ok_or_else(|| ForgetError::Unknown { node: node.into() })?;
        if info.live {
            return Err(ForgetError::Live { node: node.into() });
        }
        let list = add_forgotten(
            core.self_keys.get(keys::FORGOTTEN).map(String::as_str),
            node,
            info.generation,
        );
        Self::set_key(&mut core, keys::FORGOTTEN, &list);
        self.store(&core);
        Ok(())
    }

    /// What is now known of the other nodes; an entry for this node's
    /// current generation is dropped (its own keys are the truth).
    pub(crate) fn replace_others(&self, mut others: Vec<NodeEntry>) {
        let mut core = lock(&self.core);
        others.retain(|e| !(e.id == core.self_id && e.generation == core.self_generation));
        core.others = others;
        self.store(&core);
    }
}

/// `impl Membership` for a type whose `shared` field (a [`Shared`]) does
/// the work: every implementation keeps its view and this node's keys the
/// same way, and differs only in where the other nodes come from.
macro_rules! membership_through_shared {
    ($type:ty) => {
        impl $crate::Membership for $type {
            fn view(&self) -> std::sync::Arc<$crate::ClusterView> {
                self.shared.view()
            }

            fn set_self(&self, key: &str, value: &str) {
                self.shared.set_self(key, value)
            }

            fn forget(&self, node_id: &str) -> Result<(), $crate::ForgetError> {
                self.shared.forget(node_id)
            }
        }
    };
}
pub(crate) use membership_through_shared;

/// Membership of a node that does not gossip (`sluice ingeststore` with
/// neither `--peer` nor `--gossip`): the view is this node alone, live once
/// its `roles` and `api` keys are set (give them in `keys`), with no
/// gossip address. `forget` knows no other node.
pub struct Solo {
    shared: Shared,
}

impl Solo {
    /// This node, with its initial keys (`v` is added if absent).
    pub fn new(
        cluster_id: &str,
        node_id: &str,
        generation: u64,
        keys: Vec<(String, String)>,
    ) -> Solo {
        Solo {
            shared: local_shared(cluster_id, node_id, generation, keys, Vec::new()),
        }
    }
}

membership_through_shared!(Solo);

/// Membership whose other nodes the caller sets ([`Manual::set_others`]):
/// a stand-in for [`Gossip`](crate::Gossip) in tests of code that reads
/// views. This node and `forget` behave as in the real thing (the same
/// rules, through [`build_view`]).
pub struct Manual {
    shared: Shared,
}

impl Manual {
    /// This node, with its initial keys (`v` is added if absent), and the
    /// other node generations known.
    pub fn new(
        cluster_id: &str,
        node_id: &str,
        generation: u64,
        keys: Vec<(String, String)>,
        others: Vec<NodeEntry>,
    ) -> Manual {
        Manual {
            shared: local_shared(cluster_id, node_id, generation, keys, others),
        }
    }

    /// Replace what is known of the other nodes (as a gossip round would).
    pub fn set_others(&self, others: Vec<NodeEntry>) {
        self.shared.replace_others(others)
    }
}

membership_through_shared!(Manual);

fn local_shared(
    cluster_id: &str,
    node_id: &str,
    generation: u64,
    keys: Vec<(String, String)>,
    mut others: Vec<NodeEntry>,
) -> Shared {
    others.retain(|e| !(e.id == node_id && e.generation == generation));
    Shared::new(Core {
        cluster_id: cluster_id.to_string(),
        self_id: node_id.to_string(),
        self_generation: generation,
        self_gossip: None,
        self_keys: initial_keys(keys),
        others,
        publish: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Health, Membership};

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn other(id: &str, generation: u64, live: bool) -> NodeEntry {
        NodeEntry {
            id: id.into(),
            generation,
            gossip: None,
            keys: kv(&[("roles", "store"), ("api", "h:1")])
                .into_iter()
                .collect(),
            live,
            heartbeat_age: Some(Duration::from_secs(3)),
        }
    }

    #[test]
    fn solo_is_self_alone_live_once_roles_and_api_are_set() {
        let solo = Solo::new("sluice", "S", 1, kv(&[("roles", "ingest,store")]));
        let view = solo.view();
        assert_eq!(
            (view.cluster_id.as_str(), view.self_id.as_str()),
            ("sluice", "S")
        );
        assert_eq!(view.nodes.len(), 1);
        assert!(!view.is_live("S"), "no api key yet");
        solo.set_self("api", "127.0.0.1:7650");
        solo.set_self("health", "ready");
        let view = solo.view();
        let me = view.self_node().unwrap();
        assert!(me.live && me.is_self && me.is_ingester() && me.is_store());
        assert_eq!(me.health, Some(Health::Ready));
        assert_eq!(me.gossip, None);
        assert_eq!(me.heartbeat_age, Some(Duration::ZERO));
        assert_eq!(
            solo.forget("S"),
            Err(ForgetError::IsSelf { node: "S".into() })
        );
        assert_eq!(
            solo.forget("X"),
            Err(ForgetError::Unknown { node: "X".into() })
        );
    }

    #[test]
    fn forget_refuses_live_and_unknown_nodes_and_hides_dead_ones() {
        let m = Manual::new(
            "c",
            "S",
            10,
            kv(&[("roles", "store"), ("api", "h:0")]),
            vec![
                other("A", 1, true),
                other("B", 1, false),
                other("B", 2, false),
            ],
        );
        let live = m.forget("A").unwrap_err();
        assert_eq!(live, ForgetError::Live { node: "A".into() });
        assert!(live.to_string().contains("A"));
        assert_eq!(
            m.forget("Z"),
            Err(ForgetError::Unknown { node: "Z".into() })
        );

        m.forget("B").unwrap();
        assert!(m.view().get("B").is_none());
        assert_eq!(
            m.forget("B"),
            Err(ForgetError::Unknown { node: "B".into() })
        );
        // The tombstone is this node's `forgotten` key; `v` was added.
        let core = lock(&m.shared.core);
        assert_eq!(core.self_keys.get("forgotten").unwrap(), "B:2");
        assert_eq!(core.self_keys.get("v").unwrap(), "1");
        drop(core);

        // B comes back with a newer generation: shown again.
        m.set_others(vec![other("A", 1, true), other("B", 3, true)]);
        assert!(m.view().is_live("B"));
    }

    #[test]
    fn an_entry_for_this_generation_does_not_override_its_own_keys() {
        let m = Manual::new("c", "S", 5, kv(&[("health", "ready")]), vec![]);
        let mut stale = other("S", 5, true);
        stale.keys.insert("health".into(), "starting".into());
        m.set_others(vec![stale, other("S", 4, false)]);
        let view = m.view();
        assert_eq!(view.nodes.len(), 1);
        let me = view.self_node().unwrap();
        assert_eq!((me.generation, me.health), (5, Some(Health::Ready)));
    }
}
