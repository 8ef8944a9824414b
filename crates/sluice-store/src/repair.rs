//! Repair: a batch whose holders include a store dead for longer than
//! `--repair-after` is copied again, so every batch gets back to RF live
//! copies without an operator (CLUSTER.md, "Repair").
//!
//! Each pass of [`Repairer::pass`]:
//! 1. reads the view ([`ReplicaSource::stores`](crate::ReplicaSource::stores)) and notes since when each
//!    store has been seen dead (this store's own clock: after a restart it
//!    waits `--repair-after` again, so restarts never trigger copies);
//! 2. pulls the manifest entries every live store wrote since its cursor
//!    (`GET /store/manifest`), so it knows which batches each peer holds;
//! 3. drops from its own manifest the batches no local segment overlaps any
//!    more (retention purged them);
//! 4. [`plan`]s: for each batch it holds, the holders are the stores its
//!    entries name plus the peers whose manifests list it. With fewer than
//!    RF of them live and one dead for longer than `--repair-after`, the
//!    batch is copied by its lowest-ranked live holder (first in rendezvous
//!    order of the batch name among the live holders) to the next stores
//!    in rendezvous order that do not hold it. No coordination: two stores
//!    with different views at worst make an extra copy, which queries and
//!    compaction drop by id.
//! 5. copies: the records of the batch's id range are read from whatever
//!    local segments hold them now (compaction may have merged the batch
//!    into a block file) into a scratch batch file under `tmp/repair/`,
//!    which is sent like any replica (`PUT /store/replicate`) and removed.
//!
//! [`Repairer::copy_range`] is the same copy for an explicit id range and
//! targets: `sluice repair` walks the stores' records and asks a holder to
//! copy what has fewer than RF copies (`POST /store/repair/copy`).

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_record::Ulid;
use sluice_storage::{
    RecordCursor, SegmentMeta, StorageError, StoreSegmentWriter,
    merge::{Merge, Verdict},
    store_segment::{self, ScanOptions, TMP_DIR},
};

use crate::{
    Store,
    manifest::{Entry, Page},
    metrics,
    placement::{self, Candidate},
    replicate::{Replication, StoreState, Targets},
};

/// The default `--repair-after`: long enough that a restart or an upgrade
/// never triggers copies.
pub const REPAIR_AFTER: Duration = Duration::from_secs(3600);
/// Where copies are written before they are sent, under `tmp/`.
const SCRATCH_DIR: &str = "repair";
/// Bytes of manifest entries asked for per request.
const PAGE_BYTES: u64 = 1 << 20;
/// Pages pulled from one peer per pass, so one pass stays bounded.
const MAX_PAGES_PER_PASS: usize = 256;
/// Copies made per pass; the rest wait for the next pass.
const MAX_COPIES_PER_PASS: usize = 64;

/// A batch this store holds and the stores known to hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The batch name (`<min>-<max>.seg`).
    pub batch: String,
    /// Its smallest id.
    pub min: Ulid,
    /// Its largest id.
    pub max: Ulid,
    /// Every store known to hold it, this one included.
    pub holders: BTreeSet<String>,
}

/// A copy [`plan`] decided this store makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCopy {
    /// The batch.
    pub batch: String,
    /// Its smallest id.
    pub min: Ulid,
    /// Its largest id.
    pub max: Ulid,
    /// Its live holders, this store first.
    pub live_holders: Vec<String>,
    /// The stores to copy it to, in rendezvous order, more than needed so
    /// that a failure falls back to the next.
    pub ranked: Vec<Candidate>,
    /// How many of `ranked` must take it.
    pub want: usize,
}

/// What [`plan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Batches with fewer than RF live holders.
    pub under_replicated: usize,
    /// Of those, the ones still waiting for `--repair-after` (every missing
    /// holder died recently).
    pub waiting: usize,
    /// Of those, the ones another live holder copies.
    pub someone_else: usize,
    /// The copies this store makes.
    pub copies: Vec<PlannedCopy>,
}

/// Decide which batches this store (`me`) copies again, and where: the rule
/// of the module docs. `dead_long(id)` says whether store `id` has been
/// dead (or unknown to the view) for longer than `--repair-after`.
pub fn plan<'a>(
    me: &str,
    rf: usize,
    holdings: impl IntoIterator<Item = &'a Holding>,
    stores: &[StoreState],
    dead_long: &dyn Fn(&str) -> bool,
) -> Plan {
    let live: Vec<&StoreState> = stores.iter().filter(|s| s.live).collect();
    let mut live_candidates: Vec<Candidate> = live.iter().map(|s| s.candidate.clone()).collect();
    if !live_candidates.iter().any(|c| c.id == me) {
        // This store is live whatever its view says of it.
        live_candidates.push(Candidate {
            id: me.to_string(),
            api: String::new(),
            weight: 1,
        });
    }
    let is_live = |id: &str| id == me || live.iter().any(|s| s.candidate.id == id);
    let mut plan = Plan::default();
    for holding in holdings {
        let live_holders: BTreeSet<&str> = holding
            .holders
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(me))
            .filter(|id| is_live(id))
            .collect();
        if live_holders.len() >= rf {
            continue;
        }
        plan.under_replicated += 1;
        let gone_long = holding
            .holders
            .iter()
            .filter(|id| !is_live(id))
            .any(|id| dead_long(id));
        if !gone_long {
            plan.waiting += 1;
            continue;
        }
        let ranked = placement::rank(&holding.batch, &live_candidates);
        let actor = ranked
            .iter()
            .find(|c| live_holders.contains(c.id.as_str()))
            .map_or(me, |c| c.id.as_str());
        if actor != me {
            plan.someone_else += 1;
            continue;
        }
        let targets: Vec<Candidate> = ranked
            .iter()
            .filter(|c| !holding.holders.contains(&c.id) && c.id != me)
            .filter(|c| live.iter().any(|s| s.candidate.id == c.id && s.accepts))
            .map(|c| (*c).clone())
            .collect();
        let mut holders: Vec<String> = vec![me.to_string()];
        holders.extend(
            live_holders
                .iter()
                .filter(|id| **id != me)
                .map(|id| id.to_string()),
        );
        plan.copies.push(PlannedCopy {
            batch: holding.batch.clone(),
            min: holding.min,
            max: holding.max,
            live_holders: holders,
            want: rf - live_holders.len(),
            ranked: targets,
        });
    }
    plan
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Reading the local records or writing the scratch copy failed.
    #[error("read records {min}..={max} for a repair copy: {source}")]
    Read {
        /// The range's smallest id.
        min: Ulid,
        /// The range's largest id.
        max: Ulid,
        /// Why.
        source: StorageError,
    },
    /// This store holds no record of the range (retention purged it).
    #[error("this store holds no record in {min}..={max}; nothing to copy")]
    Nothing {
        /// The range's smallest id.
        min: Ulid,
        /// The range's largest id.
        max: Ulid,
    },
    /// Too few targets took the copy.
    #[error(transparent)]
    Replicate(#[from] crate::replicate::ReplicateError),
    /// A named target is not a live, ready store of this store's view.
    #[error("store {id} is not a live, ready store in this node's view; pick another target")]
    UnknownTarget {
        /// The target's node id.
        id: String,
    },
    /// The blocking task failed.
    #[error("repair copy task failed: {0}")]
    Task(String),
}

/// A copy made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    /// The name the copy was sent as (`<first>-<last>.seg` of the records
    /// found).
    pub name: String,
    /// Records copied.
    pub records: u64,
    /// Bytes of the copy.
    pub bytes: u64,
    /// The stores that took it.
    pub targets: Vec<String>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Batches this store holds with fewer than RF live holders.
    pub under_replicated: usize,
    /// Copies made.
    pub copied: usize,
    /// Copies that failed (tried again next pass).
    pub failed: usize,
    /// Peers whose manifests could not be read.
    pub peers_failed: usize,
}

/// A peer's manifest as read so far.
#[derive(Debug, Default)]
struct PeerManifest {
    epoch: u64,
    next: u64,
    /// Batch name → the holders its entries name.
    batches: HashMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
struct State {
    peers: HashMap<String, PeerManifest>,
    /// When this store first saw each store not live.
    dead_since: HashMap<String, Instant>,
}

/// Runs repair passes for one store.
pub struct Repairer {
    store: Store,
    replication: Replication,
    client: reqwest::Client,
    repair_after: Duration,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Repairer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repairer")
            .field("rf", &self.replication.rf)
            .field("repair_after", &self.repair_after)
            .finish()
    }
}

impl Repairer {
    /// A repairer of `store`, which replicates as `replication` does and
    /// copies a batch again once a holder has been dead for `repair_after`.
    /// Scratch copies left by an earlier run are removed.
    pub fn new(
        store: Store,
        replication: Replication,
        client: reqwest::Client,
        repair_after: Duration,
    ) -> Repairer {
        let scratch = scratch_dir(&store);
        if let Ok(entries) = store.fs().read_dir(&scratch) {
            for entry in entries.iter().filter(|e| !e.is_dir) {
                let _ = store.fs().remove_file(&scratch.join(&entry.name));
            }
        }
        Repairer {
            store,
            replication,
            client,
            repair_after,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// How often [`Repairer::run`] makes a pass: a quarter of
    /// `--repair-after`, between 1 s and 1 min.
    pub fn interval(&self) -> Duration {
        (self.repair_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Make a pass every [`Repairer::interval`] until `shutdown` is raised.
    pub async fn run(self: Arc<Self>, shutdown: Arc<std::sync::atomic::AtomicBool>) {
        let interval = self.interval();
        while !shutdown.load(std::sync::atomic::Ordering::Relaxed) {
            let report = self.pass().await;
            if report.copied > 0 || report.failed > 0 {
                tracing::info!(
                    under_replicated = report.under_replicated,
                    copied = report.copied,
                    failed = report.failed,
                    "repair pass"
                );
            }
            let deadline = Instant::now() + interval;
            while Instant::now() < deadline && !shutdown.load(std::sync::atomic::Ordering::Relaxed)
            {
                tokio::time::sleep(Duration::from_millis(200).min(interval)).await;
            }
        }
    }

    /// One pass (see the module docs).
    pub async fn pass(&self) -> PassReport {
        let mut report = PassReport::default();
        let me = self.store.node_id().to_string();
        let stores = self.replication.source.stores();
        let now = Instant::now();
        let mut state = self.state.lock().await;
        for store in &stores {
            if store.live {
                state.dead_since.remove(&store.candidate.id);
            } else {
                state
                    .dead_since
                    .entry(store.candidate.id.clone())
                    .or_insert(now);
            }
        }
        for store in stores
            .iter()
            .filter(|s| s.live && s.candidate.id != me && !s.candidate.api.is_empty())
        {
            let peer = state.peers.entry(store.candidate.id.clone()).or_default();
            if let Err(err) = self.pull(&store.candidate.api, peer).await {
                report.peers_failed += 1;
                metrics::manifest_error("exchange");
                tracing::debug!(peer = %store.candidate.id, error = %err, "could not read a peer's manifest; trying again next pass");
            }
        }
        let holdings = match self.holdings(&state).await {
            Ok(holdings) => holdings,
            Err(err) => {
                metrics::manifest_error("prune");
                tracing::warn!(error = %err, "could not read this store's manifest for repair");
                return report;
            }
        };
        // A holder this store never saw in the view (forgotten, or from
        // before this store started) starts its clock now.
        for holding in &holdings {
            for id in &holding.holders {
                if *id != me && !stores.iter().any(|s| s.candidate.id == *id) {
                    state.dead_since.entry(id.clone()).or_insert(now);
                }
            }
        }
        let dead_long = |id: &str| {
            state
                .dead_since
                .get(id)
                .is_some_and(|since| now.duration_since(*since) >= self.repair_after)
        };
        let rf = self.replication.rf as usize;
        let plan = plan(&me, rf, &holdings, &stores, &dead_long);
        drop(state);
        report.under_replicated = plan.under_replicated;
        metrics::under_replicated(plan.under_replicated);
        for copy in plan.copies.iter().take(MAX_COPIES_PER_PASS) {
            let ranked: Vec<&Candidate> = copy.ranked.iter().collect();
            match self
                .copy(copy.min, copy.max, &ranked, copy.want, &copy.live_holders)
                .await
            {
                Ok(copied) => {
                    report.copied += 1;
                    metrics::repair_copied("holder_dead", copied.records);
                    let mut holders = copy.live_holders.clone();
                    holders.extend(copied.targets.iter().cloned());
                    if let Ok(meta) = SegmentMeta::parse(&copy.batch, 0) {
                        self.store.note_batch(&meta, &holders);
                    }
                    tracing::info!(batch = %copy.batch, records = copied.records, targets = ?copied.targets, "copied a batch again: a holder has been dead longer than --repair-after");
                }
                Err(err) => {
                    report.failed += 1;
                    metrics::repair_failed(match err {
                        RepairError::Replicate(_) => "replicate",
                        _ => "read",
                    });
                    tracing::warn!(batch = %copy.batch, error = %err, "repair copy failed; trying again next pass");
                }
            }
        }
        report
    }

    /// Copy this store's records in `min..=max` to the stores `to` (node
    /// ids, each live and ready in this store's view), all of which must
    /// take it: `sluice repair`'s request.
    pub async fn copy_range(
        &self,
        min: Ulid,
        max: Ulid,
        to: &[String],
    ) -> Result<Copied, RepairError> {
        let targets = self.replication.source.targets();
        let mut chosen = Vec::with_capacity(to.len());
        for id in to {
            let candidate = targets
                .iter()
                .find(|c| c.id == *id)
                .ok_or_else(|| RepairError::UnknownTarget { id: id.clone() })?;
            chosen.push(candidate);
        }
        let copied = self.copy(min, max, &chosen, chosen.len(), &[]).await?;
        metrics::repair_copied("walk", copied.records);
        Ok(copied)
    }

    /// Read `min..=max` into a scratch batch file and send it to `want` of
    /// `ranked`.
    async fn copy(
        &self,
        min: Ulid,
        max: Ulid,
        ranked: &[&Candidate],
        want: usize,
        holders: &[String],
    ) -> Result<Copied, RepairError> {
        let store = self.store.clone();
        let extracted = tokio::task::spawn_blocking(move || extract(&store, min, max))
            .await
            .map_err(|e| RepairError::Task(e.to_string()))??;
        let Some((meta, records)) = extracted else {
            return Err(RepairError::Nothing { min, max });
        };
        let scratch = scratch_dir(&self.store);
        let targets = Targets {
            ranked,
            want,
            holders,
        };
        let sent = self
            .replication
            .send_ranked(&self.client, self.store.fs(), &scratch, &meta.name, targets)
            .await;
        let _ = self.store.fs().remove_file(&scratch.join(&meta.name));
        Ok(Copied {
            name: meta.name,
            records,
            bytes: meta.bytes,
            targets: sent?,
        })
    }

    /// Pull a peer's manifest entries since its cursor.
    async fn pull(&self, api: &str, peer: &mut PeerManifest) -> Result<(), String> {
        for _ in 0..MAX_PAGES_PER_PASS {
            let url = format!("http://{api}/store/manifest");
            let response = self
                .client
                .get(&url)
                .query(&[
                    ("epoch", peer.epoch.to_string()),
                    ("since", peer.next.to_string()),
                    ("max_bytes", PAGE_BYTES.to_string()),
                ])
                .timeout(self.replication.timeout)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("{url} answered {}", response.status()));
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| format!("{url}: reading the answer failed: {e}"))?;
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| format!("{url}: the answer is not a manifest page: {e}"))?;
            if page.epoch != peer.epoch {
                // The peer rewrote its manifest (or this is the first
                // read): what it listed before no longer counts.
                peer.batches.clear();
                peer.epoch = page.epoch;
            }
            peer.next = page.next;
            if page.entries.is_empty() {
                return Ok(());
            }
            for entry in page.entries {
                let holders = peer.batches.entry(entry.batch).or_default();
                for id in entry.replicas {
                    if !holders.contains(&id) {
                        holders.push(id);
                    }
                }
            }
        }
        Ok(())
    }

    /// The batches this store holds, with every holder known: its own
    /// entries' replicas and the peers that list them. Entries of batches
    /// that no local segment overlaps any more are dropped from the
    /// manifest first.
    async fn holdings(&self, state: &State) -> Result<Vec<Holding>, String> {
        let store = self.store.clone();
        let entries = tokio::task::spawn_blocking(move || own_entries(&store))
            .await
            .map_err(|e| e.to_string())??;
        let me = self.store.node_id();
        let mut by_batch: HashMap<String, Holding> = HashMap::new();
        for entry in entries {
            let (Ok(min), Ok(max)) = (Ulid::from_string(&entry.min), Ulid::from_string(&entry.max))
            else {
                continue;
            };
            let holding = by_batch
                .entry(entry.batch.clone())
                .or_insert_with(|| Holding {
                    batch: entry.batch.clone(),
                    min,
                    max,
                    holders: BTreeSet::from([me.to_string()]),
                });
            holding.holders.extend(entry.replicas);
        }
        for (peer_id, peer) in &state.peers {
            for (batch, holding) in by_batch.iter_mut() {
                if let Some(claimed) = peer.batches.get(batch) {
                    holding.holders.insert(peer_id.clone());
                    holding.holders.extend(claimed.iter().cloned());
                }
            }
        }
        let mut holdings: Vec<Holding> = by_batch.into_values().collect();
        holdings.sort_by(|a, b| a.batch.cmp(&b.batch));
        Ok(holdings)
    }
}

/// This store's manifest entries, after dropping those whose id range no
/// local segment overlaps (retention purged the batch).
fn own_entries(store: &Store) -> Result<Vec<Entry>, String> {
    let segments = store.segments().map_err(|e| e.to_string())?;
    let held = |entry: &Entry| {
        let (Ok(min), Ok(max)) = (Ulid::from_string(&entry.min), Ulid::from_string(&entry.max))
        else {
            return false;
        };
        // Segments are sorted by min: only those starting at or before the
        // entry's max can overlap it.
        let upto = segments.partition_point(|s| s.min <= max);
        segments[..upto].iter().any(|s| s.max >= min)
    };
    let manifest = store.manifest();
    let dropped = manifest.retain(held).map_err(|e| e.to_string())?;
    if dropped > 0 {
        tracing::debug!(
            dropped,
            "dropped manifest entries of batches retention purged"
        );
    }
    manifest.entries().map_err(|e| e.to_string())
}

fn scratch_dir(store: &Store) -> PathBuf {
    store.dir().join(TMP_DIR).join(SCRATCH_DIR)
}

/// Write this store's records in `min..=max`, from every segment that
/// overlaps the range, into one batch file in the scratch directory.
/// `None` when it holds none.
fn extract(store: &Store, min: Ulid, max: Ulid) -> Result<Option<(SegmentMeta, u64)>, RepairError> {
    let read = |source| RepairError::Read { min, max, source };
    let fs = store.fs();
    let segments: Vec<SegmentMeta> = store
        .segments()
        .map_err(read)?
        .into_iter()
        .filter(|s| s.min <= max && s.max >= min)
        .collect();
    if segments.is_empty() {
        return Ok(None);
    }
    let mins: Vec<Ulid> = segments.iter().map(|s| s.min).collect();
    let mut options = ScanOptions::new(store.workers().clone());
    options.ids = Some((min, max));
    let dir = store.dir().to_path_buf();
    let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
        store_segment::open_cursor(&**fs, &dir.join(&segments[i].name), &options)
    };
    let in_range = |record: &sluice_record::Record<'_>| {
        if record.id < min {
            Verdict::Skip
        } else if record.id > max {
            Verdict::Stop
        } else {
            Verdict::Keep
        }
    };
    let scratch = scratch_dir(store);
    let mut writer = StoreSegmentWriter::batches(&**fs, &scratch).map_err(read)?;
    let mut merge = Merge::new(&mins, &mut open, &in_range);
    let written = merge.run_fallible(|record| writer.push(*record));
    let failed = merge.stats.failed.first().cloned();
    if let Err(err) = written {
        writer.abort();
        return Err(read(err));
    }
    if let Some((idx, why)) = failed {
        writer.abort();
        return Err(read(StorageError::io(
            "read segment",
            &dir.join(&segments[idx].name),
        )(std::io::Error::other(why))));
    }
    let records = writer.records();
    let placed = writer.finish().map_err(read)?;
    Ok(placed.map(|meta| (meta, records)))
}

/// Serve `GET /store/manifest?epoch=E&since=N&max_bytes=B`.
pub fn manifest_page(
    store: &Store,
    epoch: u64,
    since: u64,
    max_bytes: u64,
) -> Result<Page, crate::manifest::ManifestError> {
    store
        .manifest()
        .read_since(epoch, since, max_bytes.clamp(1, 8 * PAGE_BYTES))
}

#[cfg(test)]
mod tests;
