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

    /// How far the merge got: every record with an id up to this one (at
    /// or above it, newest first) was popped or will never come, so a
    /// coordinator can pass it on as its own progress mark. `None` while
    /// nothing is decided, or once every node is done.
    pub fn decided(&self) -> Option<Ulid> {
        let mut bound: Option<Ulid> = None;
        for n in &self.nodes {
            let through = match n.head {
                // Its buffered record is not popped yet.
                Some(head) => Ulid(head.0.checked_sub(1)?),
                None if n.closed => continue,
                None => n.sent_through?,
            };
            bound = Some(bound.map_or(through, |b| b.min(through)));
        }
        bound.map(|key| self.key(key))
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
mod tests;
