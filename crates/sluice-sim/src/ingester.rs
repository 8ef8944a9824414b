//! A simulated ingester: the real [`IngestLog`] on its own [`MemFs`],
//! written to by the world's writers and serving the lending API to
//! lanes as messages.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, mpsc},
    time::Duration,
};

use rand::Rng;
use sluice_ingest::{IngestLog, LogError, ManualClock, log::ActiveSegment};
use sluice_record::{BatchEncoder, Record, Ulid};
use sluice_storage::MemFs;
use sluice_store::lane::Event;

use crate::{
    check::Outcome,
    world::{Ev, Msg, World},
};

/// The ingest directory on each ingester's file system.
const DIR: &str = "/ingest";

/// A writer's open segment and the batches appended to it.
struct Active {
    segment: ActiveSegment,
}

pub(crate) struct IngesterNode {
    pub(crate) fs: MemFs,
    clock: Arc<ManualClock>,
    /// `None` while the node is down.
    pub(crate) log: Option<IngestLog>,
    writers: Vec<Option<Active>>,
    /// Per segment, the real `watch_commit` receiver and the batches in
    /// the segment that wait for it.
    watch: BTreeMap<Ulid, (mpsc::Receiver<()>, Vec<usize>)>,
}

impl IngesterNode {
    pub(crate) fn open(world: &World, i: usize) -> IngesterNode {
        let fs = MemFs::new();
        // The seed of a clock's ids is the ingester's number, so no two
        // ingesters make the same segment id.
        let clock = ManualClock::with_ids(i as u64);
        let mut node = IngesterNode {
            fs,
            clock,
            log: None,
            writers: (0..world.config.writers_per_ingester)
                .map(|_| None)
                .collect(),
            watch: BTreeMap::new(),
        };
        // A fresh MemFs has no faults, so the first open succeeds; if it
        // did not, the node would start down and the run would not drain.
        node.log = node.reopen(world).ok();
        node
    }

    fn reopen(&self, world: &World) -> Result<IngestLog, LogError> {
        let (log, _report) = IngestLog::open_with_clock(
            Arc::new(self.fs.clone()),
            Path::new(DIR),
            world.config.pending_timeout,
            self.clock.clone(),
        )?;
        log.set_replication_factor(world.config.rf);
        Ok(log)
    }

    /// Move the node's clock to the world's time.
    pub(crate) fn sync_clock(&self, now: Duration) {
        let elapsed = self.clock.elapsed();
        if now > elapsed {
            self.clock.advance(now - elapsed);
        }
    }

    /// Up, with nothing waiting for a store and no writer's segment open.
    pub(crate) fn drained(&self) -> bool {
        self.log.as_ref().is_some_and(|log| log.counts() == (0, 0))
            && self.writers.iter().all(Option::is_none)
    }
}

impl World {
    /// Writer `w` of ingester `i` appends its next batch: to its open
    /// segment, or a new one sealed soon after (a `replicated` batch
    /// seals its segment early).
    pub(crate) fn write_batch(&mut self, i: usize, w: usize) {
        let records = self.rng.random_range(1..=4u32);
        let ids: Vec<Ulid> = (0..records).map(|_| self.record_id()).collect();
        let payloads: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| format!("i{i} w{w} record {id}").into_bytes())
            .collect();
        let seal_after = self.ms(50..400);
        let node = &mut self.ingesters[i];
        let Some(log) = &node.log else {
            // The writer cannot connect; it sent nothing.
            return;
        };
        if node.writers[w].is_none() {
            match log.create_active() {
                Ok(segment) => {
                    let id = segment.id();
                    node.watch.insert(id, (log.watch_commit(id), Vec::new()));
                    node.writers[w] = Some(Active { segment });
                    self.after(
                        seal_after,
                        Ev::Seal {
                            ingester: i,
                            writer: w,
                            segment: id,
                        },
                    );
                }
                Err(err) => {
                    self.note(format!("i{i}: cannot create a segment: {err}"));
                    return;
                }
            }
        }
        let node = &mut self.ingesters[i];
        let (Some(log), Some(active)) = (&node.log, &mut node.writers[w]) else {
            return;
        };
        let mut encoder = BatchEncoder::new();
        encoder.begin();
        for (id, payload) in ids.iter().zip(&payloads) {
            encoder.push(Record {
                id: *id,
                flags: 0,
                topic: b"sim",
                payload,
            });
        }
        let good = active.segment.bytes();
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let segment = active.segment.id();
        let appended = active
            .segment
            .append(encoder.finish(), records, first, last);
        let outcome = match appended {
            Ok(()) => Outcome::InFlight,
            Err(_) => {
                // As a connection does: cut the failed write off, keep
                // what came before it.
                let _ = log.rewind(&active.segment, good);
                Outcome::Failed
            }
        };
        let batch = self.ledger.add_batch(i, &ids, payloads, outcome);
        if outcome == Outcome::InFlight
            && let Some((_, batches)) = self.ingesters[i].watch.get_mut(&segment)
        {
            batches.push(batch);
        }
    }

    /// Seal writer `w`'s segment, if it is still the one opened then.
    pub(crate) fn seal(&mut self, i: usize, w: usize, segment: Ulid) {
        let node = &mut self.ingesters[i];
        let Some(log) = &node.log else { return };
        if node.writers[w]
            .as_ref()
            .is_none_or(|a| a.segment.id() != segment)
        {
            return;
        }
        let Some(active) = node.writers[w].take() else {
            return;
        };
        if let Err(err) = log.seal(active.segment) {
            // The writer is told its batches failed; they may still reach
            // a store after recovery, which is allowed.
            if let Some((_, batches)) = self.ingesters[i].watch.remove(&segment) {
                for batch in batches {
                    self.ledger.settle(batch, Outcome::Failed);
                }
            }
            self.note(format!("i{i}: seal of {segment} failed: {err}"));
        }
    }

    pub(crate) fn ingester_receives(&mut self, i: usize, from: usize, msg: Msg) {
        let me = self.ingester_node(i);
        let Some(log) = &self.ingesters[i].log else {
            return;
        };
        match msg {
            Msg::Next { lane, life, token } => {
                let result = match log.next() {
                    Ok(Some(id)) => Ok(Some((id, log.pending_timeout()))),
                    Ok(None) => Ok(None),
                    Err(err) => Err(err.to_string()),
                };
                let event = Event::Next { token, result };
                self.send(me, from, Msg::Reply { lane, life, event });
            }
            Msg::Read {
                lane,
                life,
                token,
                id,
            } => {
                let result = read_pending(log, id);
                self.send(
                    me,
                    from,
                    Msg::ReadReply {
                        lane,
                        life,
                        token,
                        id,
                        result,
                    },
                );
            }
            Msg::Commit {
                lane,
                life,
                token,
                id,
                replicas,
            } => {
                let named = (!replicas.is_empty()).then(|| replicas.join(","));
                let result = if self.config.commit_rule {
                    log.commit_replicated(id, named.as_deref()).map(|_| ())
                } else {
                    log.commit(id)
                };
                let line = match &result {
                    Ok(()) => format!("i{i}: committed {id} on [{}]", replicas.join(",")),
                    Err(err) => format!("i{i}: commit of {id} refused: {err}"),
                };
                self.ledger.commits += u64::from(result.is_ok());
                if let Err(LogError::TooFewReplicas { .. }) = &result {
                    self.ledger.commits_refused += 1;
                }
                self.note(line);
                if result.is_ok() {
                    self.acked(i, id);
                }
                let event = Event::Commit {
                    token,
                    result: result.map_err(|e| e.to_string()),
                };
                self.send(me, from, Msg::Reply { lane, life, event });
            }
            Msg::Failed { id } => {
                let _ = log.failed(id);
            }
            Msg::ReadReply { .. } | Msg::Replicate { .. } | Msg::Reply { .. } => {}
        }
    }

    /// Segment `id` was committed: the batches whose writers wait on it
    /// are acked, if the real commit watcher fired.
    fn acked(&mut self, i: usize, id: Ulid) {
        let Some((rx, batches)) = self.ingesters[i].watch.remove(&id) else {
            return;
        };
        if rx.try_recv().is_ok() {
            for batch in batches {
                self.ledger.settle(batch, Outcome::Acked);
            }
        } else {
            self.ledger.errors.push(format!(
                "i{i}: segment {id} committed, but its watcher did not fire"
            ));
        }
    }

    /// Power loss: the log and the writers' open segments are gone, what
    /// was not synced is lost or torn, and batches waiting for an ack
    /// will never hear: unknown.
    pub(crate) fn crash_ingester(&mut self, i: usize) {
        let torn = self.rng.random();
        let node = &mut self.ingesters[i];
        node.log = None;
        node.writers.iter_mut().for_each(|w| *w = None);
        let watch = std::mem::take(&mut node.watch);
        node.fs.crash(Some(torn));
        for (_, (_, batches)) in watch {
            for batch in batches {
                self.ledger.settle(batch, Outcome::Unknown);
            }
        }
        let me = self.ingester_node(i);
        self.set_status(me, false, false);
    }

    /// Reopen the log (recovery cuts torn tails and returns lent
    /// segments); a failure (a full disk) is retried.
    pub(crate) fn restart_ingester(&mut self, i: usize) {
        if self.ingesters[i].log.is_some() {
            return;
        }
        match self.ingesters[i].reopen(self) {
            Ok(log) => {
                self.ingesters[i].log = Some(log);
                let me = self.ingester_node(i);
                self.set_status(me, true, false);
                self.note(format!("restart i{i}"));
            }
            Err(err) => {
                self.note(format!("i{i}: restart failed, retried: {err}"));
                let me = self.ingester_node(i);
                self.after(Duration::from_millis(500), Ev::Restart { node: me });
            }
        }
    }
}

/// A lent segment's bytes, as `GET /ingest/read` streams them.
fn read_pending(log: &IngestLog, id: Ulid) -> Result<Vec<u8>, String> {
    let path = log.pending_path(id).map_err(|e| e.to_string())?;
    let file = log
        .fs()
        .open_read(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let len = file.len().map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}
