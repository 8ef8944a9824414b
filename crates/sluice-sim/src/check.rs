//! The history of a run (every batch written and what its writer was
//! told) and the checker that runs after healing.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
    path::Path,
    time::Duration,
};

use sluice_record::{RecordIter, Ulid};
use sluice_storage::{Fs, SegmentScanner, store_segment};

use crate::{store::DIR, world::World};

/// History lines kept for a failure message.
const RECENT_LINES: usize = 40;
/// Nemesis lines kept for a failure message.
const FAULT_LINES: usize = 200;
/// Offending records listed in a failure message.
const LISTED: usize = 10;

/// What a writer was told about one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing yet: its segment was not committed.
    InFlight,
    /// Acked: a store committed its segment naming at least RF stores
    /// (the ingester's commit watcher fired).
    Acked,
    /// The write failed (a full disk, say); the records may still show up.
    Failed,
    /// Its ingester crashed before the ack: it may or may not be stored.
    Unknown,
}

#[derive(Debug)]
pub(crate) struct Batch {
    ids: Vec<Ulid>,
    outcome: Outcome,
}

/// Every batch written, every record's payload, and the run's history.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    batches: Vec<Batch>,
    written: BTreeMap<Ulid, Vec<u8>>,
    recent: VecDeque<String>,
    faults: Vec<String>,
    pub(crate) errors: Vec<String>,
    pub(crate) commits: u64,
    pub(crate) commits_refused: u64,
}

impl Ledger {
    /// Record a batch sent by a writer; returns its number.
    pub(crate) fn add_batch(
        &mut self,
        _ingester: usize,
        ids: &[Ulid],
        payloads: Vec<Vec<u8>>,
        outcome: Outcome,
    ) -> usize {
        for (id, payload) in ids.iter().zip(payloads) {
            self.written.insert(*id, payload);
        }
        self.batches.push(Batch {
            ids: ids.to_vec(),
            outcome,
        });
        self.batches.len() - 1
    }

    /// The writer of batch `batch` is told `outcome`; only a batch still
    /// in flight can be told anything.
    pub(crate) fn settle(&mut self, batch: usize, outcome: Outcome) {
        if let Some(b) = self.batches.get_mut(batch)
            && b.outcome == Outcome::InFlight
        {
            b.outcome = outcome;
        }
    }

    pub(crate) fn note(&mut self, line: String) {
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    pub(crate) fn fault(&mut self, line: String) {
        if self.faults.len() < FAULT_LINES {
            self.faults.push(line);
        }
    }
}

/// What a run did and what the checker found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed that replays the run.
    pub seed: u64,
    /// Batches acked, failed, unknown and still in flight at the end.
    pub acked: usize,
    /// Batches whose write failed.
    pub failed: usize,
    /// Batches whose ingester crashed before an ack.
    pub unknown: usize,
    /// Batches never answered (their segment was never committed).
    pub in_flight: usize,
    /// Records in acked batches.
    pub acked_records: usize,
    /// Acked records on fewer than RF stores (but at least one), with
    /// their copies.
    pub under_replicated: Vec<(Ulid, usize)>,
    /// Acked records on no store.
    pub lost: Vec<Ulid>,
    /// Records on a store that no writer wrote, or whose payload differs.
    pub phantom: Vec<String>,
    /// Things the simulation itself found wrong (a commit whose watcher
    /// did not fire, a run that did not end).
    pub errors: Vec<String>,
    /// After healing, every ingester drained within the limit.
    pub drained: bool,
    /// Commits taken by ingesters.
    pub commits: u64,
    /// Commits refused for naming too few stores.
    pub commits_refused: u64,
    /// What the checker found about the under-replicated records: a
    /// store that holds a segment of the same name without the record
    /// (its replica was answered "already held").
    pub explained: Vec<String>,
    /// Faults the nemesis caused.
    pub faults: usize,
    /// Simulated time at the end.
    pub end: Duration,
    /// A hash of every event in order: two runs of a seed agree on it.
    pub trace: u64,
    history: Vec<String>,
    fault_log: Vec<String>,
}

impl Report {
    /// The promises of an ack: every acked record is on at least RF
    /// stores, none is lost, and no store holds a record never written.
    pub fn safety(&self) -> Result<(), String> {
        if self.under_replicated.is_empty()
            && self.lost.is_empty()
            && self.phantom.is_empty()
            && self.errors.is_empty()
        {
            return Ok(());
        }
        Err(self.failure("broken invariant"))
    }

    /// [`Report::safety`], and after healing every ingester drained.
    pub fn check(&self) -> Result<(), String> {
        self.safety()?;
        if !self.drained {
            return Err(self.failure("the ingesters did not drain after healing"));
        }
        Ok(())
    }

    /// The summary, the offending records, the nemesis's faults and the
    /// last events: what a failure prints, and a replay too.
    pub fn details(&self) -> String {
        self.failure("run")
    }

    fn failure(&self, what: &str) -> String {
        let mut out = format!(
            "{what}; replay with SLUICE_SIM_SEED={seed}\n{self}\n",
            seed = self.seed
        );
        let list = |items: Vec<String>| {
            let more = items.len().saturating_sub(LISTED);
            let mut text: Vec<String> = items.into_iter().take(LISTED).collect();
            if more > 0 {
                text.push(format!("… and {more} more"));
            }
            text.join(", ")
        };
        if !self.under_replicated.is_empty() {
            let items = self
                .under_replicated
                .iter()
                .map(|(id, n)| format!("{id} on {n}"))
                .collect();
            out += &format!("under-replicated: {}\n", list(items));
        }
        if !self.explained.is_empty() {
            out += &format!("why: {}\n", list(self.explained.clone()));
        }
        if !self.lost.is_empty() {
            let items = self.lost.iter().map(|id| id.to_string()).collect();
            out += &format!("lost: {}\n", list(items));
        }
        if !self.phantom.is_empty() {
            out += &format!("never written: {}\n", list(self.phantom.clone()));
        }
        if !self.errors.is_empty() {
            out += &format!("simulation errors: {}\n", list(self.errors.clone()));
        }
        out += "nemesis:\n";
        for line in &self.fault_log {
            out += &format!("  {line}\n");
        }
        out += "last events:\n";
        for line in &self.history {
            out += &format!("  {line}\n");
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: batches acked {}, failed {}, unknown {}, in flight {}; acked records {}, \
             lost {}, under-replicated {}, never written {}; commits {} (refused {}), faults {}, \
             drained {}, {:.1}s simulated",
            self.seed,
            self.acked,
            self.failed,
            self.unknown,
            self.in_flight,
            self.acked_records,
            self.lost.len(),
            self.under_replicated.len(),
            self.phantom.len(),
            self.commits,
            self.commits_refused,
            self.faults,
            self.drained,
            self.end.as_secs_f64(),
        )
    }
}

/// Read every store's durable segments and hold the history against
/// them.
pub(crate) fn check(world: &World, drained: bool, trace: u64) -> Report {
    let ledger = &world.ledger;
    let mut errors = ledger.errors.clone();
    let mut copies: BTreeMap<Ulid, BTreeSet<usize>> = BTreeMap::new();
    // Where each record is, by store segment name, and each store's names:
    // to explain an under-replicated record.
    let mut held_in: BTreeMap<Ulid, Vec<(usize, String)>> = BTreeMap::new();
    let mut names: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut phantom = Vec::new();
    for (s, node) in world.stores.iter().enumerate() {
        let fs: &dyn Fs = &node.fs;
        let segments = match store_segment::list_segments(fs, Path::new(DIR)) {
            Ok((segments, _)) => segments,
            Err(err) => {
                errors.push(format!("s{s}: cannot list segments: {err}"));
                continue;
            }
        };
        for segment in segments {
            let path = Path::new(DIR).join(&segment.name);
            names.insert((s, segment.name.clone()));
            if let Err(err) = scan(fs, &path, |id, payload| {
                held_in
                    .entry(id)
                    .or_default()
                    .push((s, segment.name.clone()));
                match ledger.written.get(&id) {
                    Some(want) if want.as_slice() == payload => {}
                    Some(_) => phantom.push(format!("{id} on s{s} with another payload")),
                    None => phantom.push(format!("{id} on s{s}")),
                }
                copies.entry(id).or_default().insert(s);
            }) {
                errors.push(format!("s{s}: segment {} unreadable: {err}", segment.name));
            }
        }
    }
    let rf = world.config.rf as usize;
    let mut report = Report {
        seed: world.seed,
        acked: 0,
        failed: 0,
        unknown: 0,
        in_flight: 0,
        acked_records: 0,
        under_replicated: Vec::new(),
        lost: Vec::new(),
        phantom,
        errors,
        explained: Vec::new(),
        drained,
        commits: ledger.commits,
        commits_refused: ledger.commits_refused,
        faults: ledger.faults.len(),
        end: world.now,
        trace,
        history: ledger.recent.iter().cloned().collect(),
        fault_log: ledger.faults.clone(),
    };
    for batch in &ledger.batches {
        match batch.outcome {
            Outcome::Acked => report.acked += 1,
            Outcome::Failed => report.failed += 1,
            Outcome::Unknown => report.unknown += 1,
            Outcome::InFlight => report.in_flight += 1,
        }
        if batch.outcome != Outcome::Acked {
            continue;
        }
        for id in &batch.ids {
            report.acked_records += 1;
            let held = copies.get(id).map_or(0, BTreeSet::len);
            if held == 0 {
                report.lost.push(*id);
            } else if held < rf {
                report.under_replicated.push((*id, held));
                explain(*id, &held_in, &names, &mut report.explained);
            }
        }
    }
    report
}

/// Note each store that holds a segment named like one holding `id`, but
/// not `id`: a name collision, which the replica receiver answers as
/// "already held".
fn explain(
    id: Ulid,
    held_in: &BTreeMap<Ulid, Vec<(usize, String)>>,
    names: &BTreeSet<(usize, String)>,
    out: &mut Vec<String>,
) {
    let Some(places) = held_in.get(&id) else {
        return;
    };
    for (s, name) in places {
        for (t, other) in names {
            let holds = places.iter().any(|(u, _)| u == t);
            if other == name && t != s && !holds {
                out.push(format!(
                    "{id}: s{s} holds it in {name}; s{t} holds a segment of that name without it"
                ));
            }
        }
    }
}

/// Every record of a batch file, in order.
fn scan(
    fs: &dyn Fs,
    path: &Path,
    mut each: impl FnMut(Ulid, &[u8]),
) -> Result<(), sluice_storage::StorageError> {
    let mut scanner = SegmentScanner::open(fs, path)?;
    while let Some((header, body)) = scanner.next_batch()? {
        for record in RecordIter::new(body, header.count) {
            let record = record.map_err(|source| sluice_storage::StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                source,
            })?;
            each(record.id, record.payload);
        }
    }
    Ok(())
}
