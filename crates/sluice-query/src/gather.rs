//! Merging the answers of several nodes, without IO.
//!
//! A coordinator asks n nodes for the same query; each streams its
//! matching records in strictly increasing id order (see
//! [`crate::frames`]). [`NodeMerge`] turns the n streams into one, in id
//! order, dropping the copies of a record that several nodes hold (copies
//! share their ULID). The driver feeds it what arrives and pops what is
//! ready; it never waits on anything itself.
//!
//! A record is ready when no node can still send a smaller one: every
//! node that has not finished (or failed) either has a record buffered,
//! which is no smaller since the merge pops the smallest, or has declared
//! with a progress mark (or its last record) that it sent everything up to
//! an id at least as large.
//!
//! Memory is bounded by design, provided the driver reads a node only when
//! [`NodeMerge::needs`] lists it: a node is listed only while nothing of it
//! is buffered, so each node holds at most the one records frame it was
//! read for, and the merge at most n + 1 frames (the extra one is the frame
//! the record last popped lives in). With a node's frames at most
//! [`MAX_FRAME_PAYLOAD`](crate::frames::MAX_FRAME_PAYLOAD), and typically
//! [`DEFAULT_FRAME_TARGET`](crate::frames::DEFAULT_FRAME_TARGET), that
//! does not grow with the result. A node that is not read is held back by
//! the transport (TCP), which is what makes this safe.
//!
//! A newest-first query ([`NodeMerge::backward`]) merges the same way in
//! descending id order: each node sends its ids strictly decreasing, a
//! progress mark says it sent every record with an id at or *above* it,
//! and the merge pops the largest id first. Internally ids are compared
//! through a key that reverses them, so one set of rules
//! serves both directions.
//!
//! [`verdict`] is the consistency rule a coordinator reports as
//! `complete`.

use std::collections::VecDeque;

use sluice_record::{Record, Ulid};

use crate::frames::RecordsFrame;

/// Why the merge refused input from a node. The input is not taken; the
/// driver should [`fail`](NodeMerge::fail) the node (reason `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatherError {
    /// The node already finished or failed.
    #[error("node {node} already finished or failed: nothing more is taken from it")]
    Closed {
        /// The node's index.
        node: usize,
    },
    /// A record is not after the node's previous record or progress mark
    /// (in the merge's order: below it, in a newest-first merge).
    #[error(
        "node {node} sent record {id} after {after}: a node's ids must strictly increase \
         (decrease, newest first)"
    )]
    OutOfOrder {
        /// The node's index.
        node: usize,
        /// The record out of order.
        id: Ulid,
        /// The node's previous record or progress mark.
        after: Ulid,
    },
}

#[derive(Debug, Default)]
struct Node {
    /// Records received and not yet popped; the front frame is read from
    /// `cursor`. Never holds an exhausted or empty frame.
    frames: VecDeque<RecordsFrame>,
    /// Payload offset of the next record in the front frame.
    cursor: usize,
    /// The [key](NodeMerge::key) of the id at `cursor`: `Some` exactly
    /// when a record is buffered.
    head: Option<Ulid>,
    /// The node sent every record with a key up to this one (its last
    /// record, or a later progress mark).
    sent_through: Option<Ulid>,
    /// Finished or failed.
    closed: bool,
}

impl Node {
    fn has_sent(&self, id: Ulid) -> bool {
        self.sent_through.is_some_and(|s| s >= id)
    }
}

/// The k-way merge of n node streams by id, with copies dropped; see the
/// module docs.
///
/// Driving it: after any input, [`pop`](Self::pop) until it returns
/// `None`; then, unless [`is_done`](Self::is_done), read the next frame of
/// a node that [`needs`](Self::needs) lists (any of them, or whichever
/// answers first), and feed it: records to
/// [`push_records`](Self::push_records), a progress mark to
/// [`progress`](Self::progress), stats to [`finish`](Self::finish), an
/// error frame, a broken stream or a timeout to [`fail`](Self::fail).
/// Node indices are `0..n`; a larger one panics.
#[derive(Debug)]
pub struct NodeMerge {
    nodes: Vec<Node>,
    /// The frame the last popped record was in, once its node moved past
    /// it: it lives until the next pop, as long as the record lent out.
    retired: Option<RecordsFrame>,
    /// The id of the last record popped.
    last: Option<Ulid>,
    emitted: u64,
    duplicates: u64,
    /// Newest first: ids descend.
    backward: bool,
}

impl NodeMerge {
    /// A merge of `nodes` streams, none of which has sent anything.
    pub fn new(nodes: usize) -> NodeMerge {
        NodeMerge {
            nodes: (0..nodes).map(|_| Node::default()).collect(),
            retired: None,
            last: None,
            emitted: 0,
            duplicates: 0,
            backward: false,
        }
    }

    /// A merge of `nodes` streams whose ids descend (a newest-first query):
    /// see the module docs.
    pub fn backward(nodes: usize) -> NodeMerge {
        NodeMerge {
            backward: true,
            ..NodeMerge::new(nodes)
        }
    }

    /// A merge in `direction`.
    pub fn with_direction(nodes: usize, direction: crate::Direction) -> NodeMerge {
        match direction {
            crate::Direction::Forward => NodeMerge::new(nodes),
            crate::Direction::Backward => NodeMerge::backward(nodes),
        }
    }

    /// What ids are compared by: the id, or its reverse newest first. It
    /// is its own inverse.
    fn key(&self, id: Ulid) -> Ulid {
        match self.backward {
            false => id,
            true => Ulid(!id.0),
        }
    }

    /// Number of nodes merged.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Take a records frame from `node`. Its ids must strictly increase
    /// and follow the node's previous record and progress mark; otherwise
    /// nothing of it is taken. An empty frame changes nothing.
    pub fn push_records(&mut self, node: usize, records: RecordsFrame) -> Result<(), GatherError> {
        if self.nodes[node].closed {
            return Err(GatherError::Closed { node });
        }
        let (Some(first), Some(last)) = (records.first_id(), records.last_id()) else {
            return Ok(());
        };
        let (first, last) = (self.key(first), self.key(last));
        if let Some(after) = self.nodes[node].sent_through
            && first <= after
        {
            return Err(GatherError::OutOfOrder {
                node,
                id: self.key(first),
                after: self.key(after),
            });
        }
        if self.backward || !records.is_strictly_increasing() {
            let mut ids = records.iter().map(|r| self.key(r.id));
            let mut after = ids.next().unwrap_or(first);
            for id in ids {
                if id <= after {
                    return Err(GatherError::OutOfOrder {
                        node,
                        id: self.key(id),
                        after: self.key(after),
                    });
                }
                after = id;
            }
        }
        let n = &mut self.nodes[node];
        n.sent_through = Some(last);
        if n.head.is_none() {
            n.head = Some(first);
            n.cursor = 0;
        }
        n.frames.push_back(records);
        Ok(())
    }

    /// `node` sent every record with an id up to `id` (at or above it,
    /// newest first). A mark behind one already known changes nothing.
    pub fn progress(&mut self, node: usize, id: Ulid) -> Result<(), GatherError> {
        let key = self.key(id);
        let n = &mut self.nodes[node];
        if n.closed {
            return Err(GatherError::Closed { node });
        }
        n.sent_through = n.sent_through.max(Some(key));
        Ok(())
    }

    /// `node`'s stream ended well (its stats arrived): it sends nothing
    /// more, and its buffered records are still merged.
    pub fn finish(&mut self, node: usize) {
        self.nodes[node].closed = true;
    }

    /// `node` failed: the records already taken from it stay valid and are
    /// merged; nothing more is taken from it, and the merge no longer
    /// waits for it.
    pub fn fail(&mut self, node: usize) {
        self.nodes[node].closed = true;
    }

    /// Whether `node` finished or failed.
    pub fn is_closed(&self, node: usize) -> bool {
        self.nodes[node].closed
    }

    /// Records frames buffered for `node` (at most 1 while the driver reads
    /// only nodes that [`needs`](Self::needs) lists).
    pub fn buffered_frames(&self, node: usize) -> usize {
        self.nodes[node].frames.len()
    }

    /// The next record in id order (descending, newest first), once no
    /// node can send one before it;
    /// `None` while the merge waits for input (see
    /// [`needs`](Self::needs)) or when it is done. A record whose id equals
    /// the last one popped is dropped and counted instead.
    pub fn pop(&mut self) -> Option<Record<'_>> {
        loop {
            let (node, id) = self.min_head()?;
            if self.last == Some(id) {
                self.advance(node);
                self.duplicates += 1;
                continue;
            }
            if !self.is_safe(id) {
                return None;
            }
            let at = self.nodes[node].cursor;
            let retired = self.advance(node);
            self.last = Some(id);
            self.emitted += 1;
            let frame = if retired {
                self.retired.as_ref()
            } else {
                self.nodes[node].frames.front()
            }?;
            return frame.record_at(at).map(|(record, _)| record);
        }
    }

    /// The unfinished nodes the merge waits on: those with nothing
    /// buffered that may still send a record smaller than the smallest one
    /// buffered (any record, when none is). Empty when [`pop`](Self::pop)
    /// has a record to give or the merge [`is_done`](Self::is_done);
    /// whenever `pop` returns `None` and the merge is not done, it lists
    /// at least one node.
    pub fn needs(&self) -> impl Iterator<Item = usize> + '_ {
        let min = self.min_head().map(|(_, id)| id);
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| {
                !n.closed && n.head.is_none() && min.is_none_or(|m| !n.has_sent(m))
            })
            .map(|(i, _)| i)
    }

    /// Whether every node finished or failed and every record was popped.
    pub fn is_done(&self) -> bool {
        self.nodes.iter().all(|n| n.closed && n.head.is_none())
    }

    /// Records popped.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Records dropped because their id equals that of the record popped
    /// before them (a copy from another node).
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates
    }

    /// The node holding the smallest buffered id (the first such node on
    /// a tie), and that id. A linear scan: clusters have a handful of
    /// nodes, and it beats a heap's bookkeeping there.
    fn min_head(&self) -> Option<(usize, Ulid)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.head?)))
            .min_by_key(|&(_, id)| id)
    }

    /// Whether no node can still send a record below `id`, the smallest
    /// buffered id: a node with a record buffered cannot (it is at least
    /// `id`, and the node's next ones are larger).
    fn is_safe(&self, id: Ulid) -> bool {
        self.nodes
            .iter()
            .all(|n| n.closed || n.head.is_some() || n.has_sent(id))
    }

    /// Move `node` past its head record. Returns whether that emptied its
    /// front frame, which then becomes `retired`.
    fn advance(&mut self, node: usize) -> bool {
        let n = &mut self.nodes[node];
        let Some(front) = n.frames.front() else {
            n.head = None;
            return false;
        };
        // A checked frame always decodes; were it not to, its rest is
        // dropped.
        let next = front
            .record_at(n.cursor)
            .map_or(front.payload().len(), |(_, next)| next);
        let backward = self.backward;
        let key = |id: Ulid| if backward { Ulid(!id.0) } else { id };
        match front.id_at(next) {
            Some(id) => {
                n.cursor = next;
                n.head = Some(key(id));
                false
            }
            None => {
                self.retired = n.frames.pop_front();
                n.cursor = 0;
                n.head = n.frames.front().and_then(RecordsFrame::first_id).map(key);
                true
            }
        }
    }
}

/// A node's roles, as gossip lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `ingest`: holds segments not yet committed to stores.
    Ingest,
    /// `store`: holds committed segments (each on RF stores).
    Store,
    /// `ingest,store`: both; counts as both.
    Both,
}

impl Role {
    /// Whether the node ingests.
    pub fn is_ingest(self) -> bool {
        matches!(self, Role::Ingest | Role::Both)
    }

    /// Whether the node stores.
    pub fn is_store(self) -> bool {
        matches!(self, Role::Store | Role::Both)
    }

    /// `ingest`, `store` or `ingest,store`, as the gossip key `roles` and
    /// the stats' `nodes_failed[].role` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Store => "store",
            Role::Both => "ingest,store",
        }
    }
}

/// A node a query asked, and whether it failed to answer (whatever the
/// reason: dead, unreachable, timeout, truncated, error, not ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueriedNode {
    /// Its roles.
    pub role: Role,
    /// Whether it failed.
    pub failed: bool,
}

/// Whether a query's answer is `complete`: fewer than
/// `replication_factor` stores failed (so every committed segment still
/// had a copy on a store that answered) and no ingester failed (its
/// uncommitted segments are on it alone). A node with both roles counts
/// as a store and as an ingester. A factor of 0 is taken as 1.
pub fn verdict(nodes: impl IntoIterator<Item = QueriedNode>, replication_factor: u32) -> bool {
    let mut stores_failed = 0u64;
    for node in nodes.into_iter().filter(|n| n.failed) {
        if node.role.is_ingest() {
            return false;
        }
        stores_failed += u64::from(node.role.is_store());
    }
    stores_failed < u64::from(replication_factor.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn frame(ids: &[u128]) -> RecordsFrame {
        let payloads: Vec<String> = ids.iter().map(|id| format!("r{id}")).collect();
        RecordsFrame::from_records(ids.iter().zip(&payloads).map(|(&id, p)| Record {
            id: Ulid(id),
            flags: 0,
            topic: b"t",
            payload: p.as_bytes(),
        }))
        .unwrap()
    }

    fn drain(m: &mut NodeMerge) -> Vec<u128> {
        let mut out = Vec::new();
        while let Some(r) = m.pop() {
            assert_eq!(r.payload, format!("r{}", r.id.0).as_bytes());
            out.push(r.id.0);
        }
        out
    }

    fn needs(m: &NodeMerge) -> Vec<usize> {
        m.needs().collect()
    }

    #[test]
    fn records_wait_for_every_open_node_then_merge_in_order() {
        let mut m = NodeMerge::new(3);
        assert_eq!(needs(&m), [0, 1, 2]);
        m.push_records(0, frame(&[1, 4, 7])).unwrap();
        assert_eq!(drain(&mut m), [] as [u128; 0]);
        assert_eq!(needs(&m), [1, 2]);
        m.push_records(1, frame(&[2, 4, 8])).unwrap();
        // Node 2 has said nothing: it may still send 0.
        assert_eq!(drain(&mut m), [] as [u128; 0]);
        assert_eq!(needs(&m), [2]);
        m.progress(2, Ulid(3)).unwrap();
        assert_eq!(drain(&mut m), [1, 2]);
        assert_eq!(needs(&m), [2], "node 2 may still send 4");
        m.push_records(2, frame(&[4, 5])).unwrap();
        // 4 three times: once out, twice dropped.
        assert_eq!(drain(&mut m), [4, 5]);
        assert_eq!(needs(&m), [2], "node 0's 7 waits for node 2");
        m.finish(2);
        assert_eq!(drain(&mut m), [7]);
        assert_eq!(
            needs(&m),
            [0],
            "node 1's 8 waits for node 0, which sent up to 7"
        );
        m.finish(0);
        assert_eq!(drain(&mut m), [8]);
        assert_eq!(needs(&m), [1]);
        assert!(!m.is_done());
        m.finish(1);
        assert!(m.is_done());
        assert_eq!(needs(&m), [] as [usize; 0]);
        assert_eq!((m.emitted(), m.duplicates_dropped()), (6, 2));
    }

    #[test]
    fn a_failed_node_keeps_what_it_sent_and_is_no_longer_waited_for() {
        let mut m = NodeMerge::new(2);
        m.push_records(0, frame(&[1, 3, 5])).unwrap();
        m.push_records(1, frame(&[2, 6])).unwrap();
        assert_eq!(drain(&mut m), [1, 2, 3, 5]);
        assert_eq!(needs(&m), [0]);
        m.fail(0);
        assert_eq!(
            m.push_records(0, frame(&[7])),
            Err(GatherError::Closed { node: 0 })
        );
        assert_eq!(
            m.progress(0, Ulid(9)).unwrap_err().to_string(),
            "node 0 already finished or failed: nothing more is taken from it"
        );
        assert_eq!(drain(&mut m), [6]);
        assert_eq!(needs(&m), [1]);
        m.fail(1);
        assert!(m.is_done());
        assert_eq!(drain(&mut m), [] as [u128; 0]);
        // Failing a node with records buffered keeps them too.
        let mut m = NodeMerge::new(2);
        m.push_records(0, frame(&[1, 2])).unwrap();
        m.fail(0);
        assert!(!m.is_done());
        assert_eq!(needs(&m), [1]);
        m.fail(1);
        assert_eq!(drain(&mut m), [1, 2]);
        assert!(m.is_done());
    }

    #[test]
    fn out_of_order_input_is_refused_whole() {
        let mut m = NodeMerge::new(1);
        m.push_records(0, frame(&[3, 5])).unwrap();
        assert_eq!(
            m.push_records(0, frame(&[5, 6])).unwrap_err().to_string(),
            format!(
                "node 0 sent record {} after {}: a node's ids must strictly increase \
                 (decrease, newest first)",
                Ulid(5),
                Ulid(5)
            )
        );
        m.progress(0, Ulid(10)).unwrap();
        m.progress(0, Ulid(8)).unwrap(); // a stale mark changes nothing
        assert!(matches!(
            m.push_records(0, frame(&[9])),
            Err(GatherError::OutOfOrder { .. })
        ));
        assert_eq!(
            m.push_records(0, frame(&[11, 13, 12])),
            Err(GatherError::OutOfOrder {
                node: 0,
                id: Ulid(12),
                after: Ulid(13)
            })
        );
        m.push_records(0, frame(&[])).unwrap();
        m.finish(0);
        assert_eq!(drain(&mut m), [3, 5]);
        assert!(m.is_done());
    }

    #[test]
    fn a_popped_record_outlives_its_frame_until_the_next_pop() {
        let mut m = NodeMerge::new(1);
        m.push_records(0, frame(&[1])).unwrap();
        m.push_records(0, frame(&[2])).unwrap();
        m.finish(0);
        let r = m.pop().unwrap().to_owned_record();
        assert_eq!((r.id, &r.payload[..]), (Ulid(1), &b"r1"[..]));
        assert_eq!(m.buffered_frames(0), 1);
        assert_eq!(m.pop().unwrap().payload, b"r2");
        assert!(m.pop().is_none() && m.is_done());
    }

    #[test]
    fn the_verdict_counts_stores_against_the_factor_and_any_ingester() {
        let node = |role, failed| QueriedNode { role, failed };
        use Role::*;
        let ok = [node(Ingest, false), node(Store, false), node(Both, false)];
        assert!(verdict(ok, 1));
        assert!(verdict([node(Store, true), node(Store, false)], 2));
        assert!(!verdict([node(Store, true), node(Store, true)], 2));
        assert!(!verdict([node(Store, true)], 1));
        assert!(!verdict([node(Ingest, true), node(Store, false)], 3));
        // Both roles: an ingester failed.
        assert!(!verdict([node(Both, true), node(Store, false)], 3));
        assert!(!verdict([node(Store, true)], 0), "a factor of 0 is 1");
        assert!(verdict([], 1));
        assert_eq!(Both.as_str(), "ingest,store");
    }

    /// What a node does next, in its script.
    #[derive(Debug, Clone)]
    enum Event {
        Records(Vec<u128>),
        Progress(u128),
        Finish,
        Fail,
    }

    /// One node's stream: sorted distinct ids cut into frames, honest
    /// progress marks between them, then finish, or fail part way.
    fn arb_script() -> impl Strategy<Value = Vec<Event>> {
        (
            proptest::collection::btree_set(0u128..48, 0..16),
            proptest::collection::vec(0usize..4, 1..8),
            proptest::collection::vec(proptest::option::of(any::<u8>()), 1..8),
            proptest::option::of(any::<proptest::sample::Index>()),
        )
            .prop_map(|(ids, sizes, marks, fail_at)| {
                let ids: Vec<u128> = ids.into_iter().collect();
                let mut events = Vec::new();
                let mut at = 0;
                let mut i = 0;
                while at < ids.len() || i == 0 {
                    // Empty frames on the first pass through the sizes
                    // only, so that the ids run out.
                    let n = match sizes[i % sizes.len()] {
                        0 if i >= sizes.len() => 1,
                        n => n,
                    }
                    .min(ids.len() - at);
                    events.push(Event::Records(ids[at..at + n].to_vec()));
                    at += n;
                    if let Some(seed) = marks[i % marks.len()] {
                        // Honest: below the next id not sent, or anything
                        // once all are sent.
                        let bound = ids.get(at).copied().unwrap_or(256);
                        if bound > 0 {
                            events.push(Event::Progress(seed as u128 % bound));
                        }
                    }
                    i += 1;
                }
                match fail_at {
                    Some(cut) => {
                        events.truncate(cut.index(events.len() + 1));
                        events.push(Event::Fail);
                    }
                    None => events.push(Event::Finish),
                }
                events
            })
    }

    fn apply(m: &mut NodeMerge, node: usize, event: &Event) {
        match event {
            Event::Records(ids) => m.push_records(node, frame(ids)).unwrap(),
            Event::Progress(id) => m.progress(node, Ulid(*id)).unwrap(),
            Event::Finish => m.finish(node),
            Event::Fail => m.fail(node),
        }
    }

    /// Feed the scripts, choosing the next node with `pick` from the nodes
    /// that still have events (and, if `by_needs`, from those the merge
    /// needs); check every popped record is safe, and return the output.
    fn run(scripts: &[Vec<Event>], picks: &[usize], by_needs: bool) -> Vec<u128> {
        run_in(scripts, picks, by_needs, false)
    }

    /// [`run`], newest first when `backward` (the scripts' ids descend).
    fn run_in(
        scripts: &[Vec<Event>],
        picks: &[usize],
        by_needs: bool,
        backward: bool,
    ) -> Vec<u128> {
        let before = |a: u128, b: u128| if backward { a > b } else { a < b };
        let mut m = if backward {
            NodeMerge::backward(scripts.len())
        } else {
            NodeMerge::new(scripts.len())
        };
        let mut next = vec![0usize; scripts.len()];
        let mut out: Vec<u128> = Vec::new();
        let mut picks = picks.iter().cycle();
        loop {
            while let Some(r) = m.pop() {
                let id = r.id.0;
                assert!(
                    out.last().is_none_or(|&l| before(l, id)),
                    "{id} after {out:?}"
                );
                // Safe: no node will still deliver a record at or below it.
                for (node, script) in scripts.iter().enumerate() {
                    for event in &script[next[node]..] {
                        if let Event::Records(ids) = event {
                            assert!(
                                ids.iter().all(|&later| before(id, later)),
                                "{id} popped while node {node} will still send {ids:?}"
                            );
                        }
                    }
                }
                out.push(id);
            }
            if m.is_done() {
                assert_eq!(needs(&m), [] as [usize; 0]);
                break;
            }
            let needed = needs(&m);
            assert!(
                !needed.is_empty(),
                "pop is None, not done, and nothing needed"
            );
            for &node in &needed {
                assert_eq!(m.buffered_frames(node), 0);
                assert!(next[node] < scripts[node].len(), "node {node} is closed");
            }
            let choices: Vec<usize> = if by_needs {
                needed
            } else {
                (0..scripts.len())
                    .filter(|&n| next[n] < scripts[n].len())
                    .collect()
            };
            let node = choices[picks.next().unwrap() % choices.len()];
            apply(&mut m, node, &scripts[node][next[node]]);
            next[node] += 1;
            if by_needs {
                // Read only when needed: at most the one frame read.
                for node in 0..scripts.len() {
                    assert!(m.buffered_frames(node) <= 1);
                }
            }
        }
        // Done means every node finished or failed: each script was
        // played to its end.
        let unplayed: usize = scripts
            .iter()
            .enumerate()
            .map(|(n, s)| s.len() - next[n])
            .sum();
        assert_eq!(unplayed, 0);
        assert_eq!(m.emitted(), out.len() as u64);
        out
    }

    fn want(scripts: &[Vec<Event>]) -> Vec<u128> {
        let all: BTreeSet<u128> = scripts
            .iter()
            .flatten()
            .flat_map(|e| match e {
                Event::Records(ids) => ids.clone(),
                _ => Vec::new(),
            })
            .collect();
        all.into_iter().collect()
    }

    /// The scripts with every id `x` made `MIRROR - x`: ids descend, and a
    /// progress mark covers the ids above it.
    const MIRROR: u128 = 1_000;

    fn mirror(scripts: &[Vec<Event>]) -> Vec<Vec<Event>> {
        scripts
            .iter()
            .map(|script| {
                script
                    .iter()
                    .map(|e| match e {
                        Event::Records(ids) => {
                            Event::Records(ids.iter().map(|id| MIRROR - id).collect())
                        }
                        Event::Progress(id) => Event::Progress(MIRROR - id),
                        other => other.clone(),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn newest_first_merges_in_descending_order_and_progress_covers_ids_above() {
        let mut m = NodeMerge::backward(2);
        m.push_records(0, frame(&[9, 5, 2])).unwrap();
        assert_eq!(drain(&mut m), [] as [u128; 0]);
        // Node 1 sent every id at or above 6: 9 is safe, 5 is not.
        m.progress(1, Ulid(6)).unwrap();
        assert_eq!(drain(&mut m), [9]);
        m.push_records(1, frame(&[5, 4])).unwrap();
        assert_eq!(drain(&mut m), [5, 4]);
        assert!(matches!(
            m.push_records(1, frame(&[4, 3])),
            Err(GatherError::OutOfOrder { .. })
        ));
        m.finish(1);
        assert_eq!(drain(&mut m), [2]);
        m.finish(0);
        assert!(m.is_done());
        assert_eq!(m.duplicates_dropped(), 1);
    }

    proptest! {
        #[test]
        fn newest_first_any_interleaving_gives_the_reversed_union_without_copies(
            scripts in proptest::collection::vec(arb_script(), 1..5),
            picks in proptest::collection::vec(any::<usize>(), 1..40),
            by_needs in any::<bool>(),
        ) {
            let got = run_in(&mirror(&scripts), &picks, by_needs, true);
            let want: Vec<u128> = want(&scripts).into_iter().map(|id| MIRROR - id).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn any_interleaving_gives_the_sorted_union_without_copies(
            scripts in proptest::collection::vec(arb_script(), 1..5),
            picks in proptest::collection::vec(any::<usize>(), 1..40),
        ) {
            let got = run(&scripts, &picks, false);
            prop_assert_eq!(got, want(&scripts));
        }

        #[test]
        fn reading_only_what_it_needs_gives_the_same_with_one_frame_a_node(
            scripts in proptest::collection::vec(arb_script(), 1..5),
            picks in proptest::collection::vec(any::<usize>(), 1..40),
        ) {
            let got = run(&scripts, &picks, true);
            prop_assert_eq!(got, want(&scripts));
        }
    }
}
