//! The ingest log: segment files in one directory and their life cycle.
//!
//! ```text
//! <ulid>.active   being written by one connection
//! <ulid>.flushed  sealed (fsynced), waiting for a store
//! <ulid>.pending  lent to a store by `next`; back to .flushed on `failed`
//!                 or when the pending timeout passes; removed on `commit`
//! quarantine/     torn tails cut off during recovery
//! ```
//!
//! The `<ulid>` names the segment (it is made when the file is created), so
//! names sort by age and `next` lends the oldest segment first.
//!
//! Time (segment ages, pending deadlines) is read from a [`Clock`]: the
//! system's monotonic clock, or a [`ManualClock`] that a test moves.
//!
//! Recovery at startup: every `.active` file is verified and its torn tail
//! cut (see [`sluice_storage::recover_segment`]); it then becomes `.flushed`,
//! or is removed if it holds no record. Every `.pending` file becomes
//! `.flushed` again: its store never committed it. Other names are reported
//! and left alone.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, mpsc},
    time::{Duration, Instant},
};

use sluice_record::Ulid;
use sluice_storage::{Fs, IdFloor, LiveSegment, SegmentWriter, StorageError, recover_segment};
use tokio::sync::Notify;

use crate::metrics;

/// The default time a lent segment may stay uncommitted before it is lent
/// again (`--pending-timeout`).
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(60);

const ACTIVE: &str = "active";
const FLUSHED: &str = "flushed";
const PENDING: &str = "pending";
const QUARANTINE_DIR: &str = "quarantine";

/// Why an operation of the ingest log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation in the ingest directory failed; the error names
    /// the operation and the path.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A segment id given to the lending API ([`parse_id`]) is not a ULID.
    #[error("segment id {0:?} is not a ULID")]
    BadId(String),
    /// The segment is not lent out now: it was committed, given back by
    /// [`failed`](IngestLog::failed) or its pending timeout, or never lent.
    #[error("segment {0} is not pending (it was committed, failed, or timed out)")]
    NotPending(Ulid),
    /// A commit named fewer distinct stores than the log's replication
    /// factor ([`IngestLog::commit_replicated`]); the segment stays lent.
    #[error(
        "commit of segment {id} names {named} distinct store(s); this ingester's \
         --replication-factor is {rf}: replicate to {rf} stores first (the segment stays lent)"
    )]
    TooFewReplicas {
        /// The segment the commit was for.
        id: Ulid,
        /// Distinct stores the commit named.
        named: usize,
        /// The log's replication factor.
        rf: usize,
    },
}

/// Where the ingest log reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time; never earlier than a time read before.
    fn now(&self) -> Instant;

    /// A new segment id. The default is [`Ulid::new`] (wall clock and
    /// random bits); a simulation makes them reproducible
    /// ([`ManualClock::with_ids`]), because lending takes the oldest id
    /// first and so the ids decide the order of events.
    fn new_id(&self) -> Ulid {
        Ulid::new()
    }
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: tests step pending timeouts and
/// segment ages with it instead of sleeping.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
    /// `Some((seed, made))`: segment ids come from the clock's time, the
    /// seed and a counter instead of [`Ulid::new`].
    ids: Option<Mutex<(u64, u64)>>,
}

/// The wall-clock time, in Unix milliseconds, that a [`ManualClock`] made
/// by [`ManualClock::with_ids`] starts at (2024-01-01), so its ids look
/// like ids of today's records.
const MANUAL_EPOCH_MS: u64 = 1_704_067_200_000;

impl ManualClock {
    /// A clock that reads the moment it was made until it is advanced; in
    /// an `Arc`, so the test keeps it while the log reads it.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
            ids: None,
        })
    }

    /// A manual clock whose segment ids ([`Clock::new_id`]) are
    /// reproducible: their time part is the clock's (from 2024-01-01),
    /// their random part `seed` and a counter, so ids increase in the
    /// order they are made and two clocks with different seeds never
    /// make the same id.
    pub fn with_ids(seed: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
            ids: Some(Mutex::new((seed, 0))),
        })
    }

    /// Time the clock was advanced by in all.
    pub fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn new_id(&self) -> Ulid {
        let Some(ids) = &self.ids else {
            return Ulid::new();
        };
        let mut ids = ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.1 += 1;
        let ms = MANUAL_EPOCH_MS + self.elapsed().as_millis() as u64;
        // The random part is 80 bits: 16 of the seed over 64 of the
        // counter, so ids sort by time, then by the order they were made.
        Ulid::from_parts(ms, (u128::from(ids.0 & 0xffff) << 64) | u128::from(ids.1))
    }
}

#[derive(Debug, Default)]
struct State {
    flushed: BTreeSet<Ulid>,
    pending: HashMap<Ulid, Instant>,
    /// The id floor of each segment this process wrote, until it is
    /// committed, removed or abandoned (segments recovered at startup have
    /// none).
    floors: HashMap<Ulid, Arc<IdFloor>>,
}

/// The ingest directory. Shared by every connection and the lending API.
#[derive(Debug)]
pub struct IngestLog {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    pending_timeout: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    flushed_notify: Notify,
    /// Waiters for the commit of a segment (`replicated` acks).
    commit_watchers: Mutex<HashMap<Ulid, Vec<mpsc::Sender<()>>>>,
    /// Recent batches for live-tail readers.
    tail: Arc<crate::tail::TailRing>,
    /// Distinct stores a commit must name (`--replication-factor`).
    replication_factor: std::sync::atomic::AtomicU32,
}

/// A segment being written by one connection.
pub struct ActiveSegment {
    id: Ulid,
    writer: SegmentWriter,
    floor: Arc<IdFloor>,
    created: Instant,
    clock: Arc<dyn Clock>,
}

impl ActiveSegment {
    /// The segment's id, made when its file was created: the file is
    /// `<id>.active` until sealed, and a store commits it by this id.
    pub fn id(&self) -> Ulid {
        self.id
    }

    /// Bytes of the whole batches appended so far, synced or not: where a
    /// failed write is cut back to ([`IngestLog::rewind`]).
    pub fn bytes(&self) -> u64 {
        self.writer.bytes()
    }

    /// Time since the segment was created, by the log's [`Clock`];
    /// compared with `--flush-age` to seal it.
    pub fn age(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.created)
    }

    /// Append a whole batch whose ids run from `first` to `last` (its
    /// smallest and largest). The segment's [`IdFloor`] is lowered first,
    /// so a query never sees a record below the floor it reads.
    pub fn append(
        &mut self,
        batch: &[u8],
        count: u32,
        first: Ulid,
        last: Ulid,
    ) -> Result<(), StorageError> {
        self.floor.lower(first);
        self.writer.append(batch, count, first, last)
    }

    /// Make every appended batch durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.writer.sync()
    }
}

/// What startup recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartupReport {
    /// `.active` files found (left by a crash or a kill), each verified
    /// and cut at its torn tail.
    pub recovered_active: usize,
    /// Of those, the files that had a torn tail; each tail was moved to
    /// `quarantine/`.
    pub torn_tails: usize,
    /// Bytes of those torn tails, in all.
    pub torn_bytes: u64,
    /// `.active` files removed because no whole record was left in them.
    pub empty_removed: usize,
    /// `.pending` files made `.flushed` again: their store never
    /// committed them.
    pub pending_returned: usize,
    /// Segments waiting for a store after recovery (recovered ones
    /// included).
    pub flushed: usize,
    /// Names of files in the directory that are not ingest segments; they
    /// are logged and left alone.
    pub strangers: Vec<String>,
}

impl IngestLog {
    /// Open (creating if needed) the ingest directory and run recovery.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        pending_timeout: Duration,
    ) -> Result<(IngestLog, StartupReport), LogError> {
        Self::open_with_clock(fs, dir, pending_timeout, Arc::new(SystemClock))
    }

    /// [`IngestLog::open`], reading the time from `clock`.
    pub fn open_with_clock(
        fs: Arc<dyn Fs>,
        dir: &Path,
        pending_timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<(IngestLog, StartupReport), LogError> {
        fs.create_dir_all(dir)
            .map_err(StorageError::io("create ingest dir", dir))?;
        let log = IngestLog {
            fs,
            dir: dir.to_path_buf(),
            pending_timeout,
            clock,
            state: Mutex::new(State::default()),
            flushed_notify: Notify::new(),
            commit_watchers: Mutex::new(HashMap::new()),
            tail: Arc::new(crate::tail::TailRing::default()),
            replication_factor: std::sync::atomic::AtomicU32::new(1),
        };
        let report = log.recover()?;
        Ok((log, report))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: Ulid, state: &str) -> PathBuf {
        self.dir.join(format!("{id}.{state}"))
    }

    fn recover(&self) -> Result<StartupReport, LogError> {
        let mut report = StartupReport::default();
        let entries = self
            .fs
            .read_dir(&self.dir)
            .map_err(StorageError::io("list ingest dir", &self.dir))?;
        let mut flushed = BTreeSet::new();
        for entry in entries {
            if entry.is_dir {
                continue;
            }
            let parsed = entry
                .name
                .split_once('.')
                .and_then(|(id, state)| Some((Ulid::from_string(id).ok()?, state)));
            match parsed {
                Some((id, ACTIVE)) => {
                    let path = self.path(id, ACTIVE);
                    let recovery =
                        recover_segment(&*self.fs, &path, &self.dir.join(QUARANTINE_DIR))?;
                    report.recovered_active += 1;
                    if recovery.torn_bytes > 0 {
                        report.torn_tails += 1;
                        report.torn_bytes += recovery.torn_bytes;
                        metrics::torn_tail(recovery.torn_bytes);
                        tracing::warn!(
                            segment = %path.display(),
                            kept_bytes = recovery.valid_bytes,
                            kept_records = recovery.records,
                            torn_bytes = recovery.torn_bytes,
                            reason = recovery.reason.as_deref().unwrap_or(""),
                            "cut a torn tail off an ingest segment; the tail is kept under quarantine/"
                        );
                    }
                    if recovery.records == 0 {
                        self.fs
                            .remove_file(&path)
                            .map_err(StorageError::io("remove empty segment", &path))?;
                        report.empty_removed += 1;
                    } else {
                        let to = self.path(id, FLUSHED);
                        self.fs
                            .rename(&path, &to)
                            .map_err(StorageError::io("flush recovered segment", &to))?;
                        flushed.insert(id);
                    }
                }
                Some((id, PENDING)) => {
                    let to = self.path(id, FLUSHED);
                    self.fs
                        .rename(&self.path(id, PENDING), &to)
                        .map_err(StorageError::io("return pending segment", &to))?;
                    report.pending_returned += 1;
                    flushed.insert(id);
                }
                Some((id, FLUSHED)) => {
                    flushed.insert(id);
                }
                _ => report.strangers.push(entry.name),
            }
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(StorageError::io("fsync ingest dir", &self.dir))?;
        for name in &report.strangers {
            tracing::warn!(file = %name, dir = %self.dir.display(), "ignoring a file that is not an ingest segment; it is left alone");
        }
        report.flushed = flushed.len();
        let mut state = self.state();
        state.flushed = flushed;
        metrics::segments_waiting(state.flushed.len(), 0);
        Ok(report)
    }

    /// Start a new active segment.
    pub fn create_active(&self) -> Result<ActiveSegment, LogError> {
        let id = self.clock.new_id();
        let writer = SegmentWriter::create(&*self.fs, &self.path(id, ACTIVE))?;
        let floor = Arc::new(IdFloor::new());
        self.state().floors.insert(id, floor.clone());
        Ok(ActiveSegment {
            id,
            writer,
            floor,
            created: self.clock.now(),
            clock: self.clock.clone(),
        })
    }

    /// Make an active segment durable and lend-able. An empty one is removed.
    pub fn seal(&self, mut segment: ActiveSegment) -> Result<(), LogError> {
        let from = self.path(segment.id, ACTIVE);
        if segment.writer.records() == 0 {
            self.state().floors.remove(&segment.id);
            drop(segment);
            self.fs
                .remove_file(&from)
                .map_err(StorageError::io("remove empty segment", &from))?;
            return Ok(());
        }
        if let Err(err) = segment.writer.sync() {
            self.abandon(segment);
            return Err(err.into());
        }
        let bytes = segment.writer.bytes();
        let id = segment.id;
        let to = self.path(id, FLUSHED);
        if let Err(err) = self.fs.rename(&from, &to) {
            // The `.active` file stays; the next start recovers it.
            self.abandon(segment);
            return Err(StorageError::io("flush segment", &to)(err).into());
        }
        drop(segment.writer);
        // The file is `.flushed` now, whatever the directory's fsync says:
        // it is lent and queried from here on, or no store and no query
        // would see it until the next start.
        let synced = self.fs.sync_dir(&self.dir);
        metrics::segment_flushed(bytes);
        let mut state = self.state();
        state.flushed.insert(id);
        metrics::segments_waiting(state.flushed.len(), state.pending.len());
        drop(state);
        self.flushed_notify.notify_waiters();
        synced.map_err(StorageError::io("fsync ingest dir", &self.dir))?;
        Ok(())
    }

    /// Give up on an active segment this log will not seal (a write, a
    /// sync or the seal's rename failed): forget its id floor. Its file
    /// is left as it is, for the next start's recovery.
    pub fn abandon(&self, segment: ActiveSegment) {
        self.state().floors.remove(&segment.id);
    }

    /// Cut a segment back to `good_bytes` after a failed write, so that what
    /// was written before the failure can still be sealed.
    pub fn rewind(&self, segment: &ActiveSegment, good_bytes: u64) -> Result<(), LogError> {
        let path = self.path(segment.id, ACTIVE);
        self.fs
            .truncate(&path, good_bytes)
            .map_err(StorageError::io("truncate failed write", &path))?;
        Ok(())
    }

    /// Lend the oldest flushed segment, or `None` if there is none.
    pub fn next(&self) -> Result<Option<Ulid>, LogError> {
        self.reap_expired();
        let mut state = self.state();
        let Some(id) = state.flushed.pop_first() else {
            return Ok(None);
        };
        if let Err(err) = self
            .fs
            .rename(&self.path(id, FLUSHED), &self.path(id, PENDING))
        {
            state.flushed.insert(id);
            return Err(StorageError::io("lend segment", self.path(id, PENDING))(err).into());
        }
        state
            .pending
            .insert(id, self.clock.now() + self.pending_timeout);
        metrics::segments_waiting(state.flushed.len(), state.pending.len());
        metrics::lend("lent");
        Ok(Some(id))
    }

    /// Wait until a segment may be flushed, or `timeout` passes.
    pub async fn wait_flushed(&self, timeout: Duration) {
        let notified = self.flushed_notify.notified();
        if !self.state().flushed.is_empty() {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }

    /// Path of a pending segment, for reading.
    pub fn pending_path(&self, id: Ulid) -> Result<PathBuf, LogError> {
        if !self.state().pending.contains_key(&id) {
            return Err(LogError::NotPending(id));
        }
        Ok(self.path(id, PENDING))
    }

    /// The store has the segment durably: remove it.
    pub fn commit(&self, id: Ulid) -> Result<(), LogError> {
        let mut state = self.state();
        if state.pending.remove(&id).is_none() {
            metrics::lend("commit_not_pending");
            return Err(LogError::NotPending(id));
        }
        let path = self.path(id, PENDING);
        if let Err(err) = self.fs.remove_file(&path) {
            state
                .pending
                .insert(id, self.clock.now() + self.pending_timeout);
            return Err(StorageError::io("remove committed segment", &path)(err).into());
        }
        state.floors.remove(&id);
        metrics::segments_waiting(state.flushed.len(), state.pending.len());
        metrics::lend("committed");
        drop(state);
        let watchers = self
            .commit_watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        for watcher in watchers.into_iter().flatten() {
            let _ = watcher.send(());
        }
        Ok(())
    }

    /// The commit rule, then the commit: a store commits segment `id`
    /// naming the stores that hold its records (`replicas`, node ids
    /// comma-separated; `None`: the committing store alone). A commit that
    /// names fewer distinct stores than
    /// [`replication_factor`](Self::replication_factor) is refused with
    /// [`LogError::TooFewReplicas`] and the segment stays lent: what a
    /// `replicated` ack promises is decided here, so one misconfigured
    /// store cannot weaken it. Returns the distinct stores named.
    pub fn commit_replicated(&self, id: Ulid, replicas: Option<&str>) -> Result<usize, LogError> {
        let named = distinct_replicas(replicas);
        let rf = self.replication_factor() as usize;
        if named < rf {
            return Err(LogError::TooFewReplicas { id, named, rf });
        }
        self.commit(id)?;
        Ok(named)
    }

    /// A receiver that gets a message when a store commits segment `id`.
    /// Register before the segment is sealed, so the commit cannot be missed.
    pub fn watch_commit(&self, id: Ulid) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        self.commit_watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .push(tx);
        rx
    }

    /// The store could not take the segment: make it available again.
    pub fn failed(&self, id: Ulid) -> Result<(), LogError> {
        let mut state = self.state();
        if state.pending.remove(&id).is_none() {
            return Err(LogError::NotPending(id));
        }
        self.return_to_flushed(&mut state, id)?;
        metrics::lend("failed");
        drop(state);
        self.flushed_notify.notify_waiters();
        Ok(())
    }

    fn return_to_flushed(&self, state: &mut State, id: Ulid) -> Result<(), LogError> {
        let to = self.path(id, FLUSHED);
        self.fs
            .rename(&self.path(id, PENDING), &to)
            .map_err(StorageError::io("return pending segment", &to))?;
        state.flushed.insert(id);
        metrics::segments_waiting(state.flushed.len(), state.pending.len());
        Ok(())
    }

    /// Return every pending segment whose timeout passed.
    pub fn reap_expired(&self) {
        let now = self.clock.now();
        let mut state = self.state();
        let expired: Vec<Ulid> = state
            .pending
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            state.pending.remove(&id);
            match self.return_to_flushed(&mut state, id) {
                Ok(()) => {
                    metrics::lend("timed_out");
                    tracing::warn!(segment = %id, "pending segment timed out; it will be lent again");
                }
                Err(err) => {
                    tracing::error!(segment = %id, error = %err, "could not return a timed-out segment")
                }
            }
        }
    }

    /// Every segment a query can read here, oldest first: those being
    /// written, waiting for a store, or lent out. For each, the paths it
    /// may have by the time the query opens it, tried in order (a segment
    /// is renamed as it is sealed, lent and given back), and the
    /// segment's id floor where this process wrote it.
    pub fn query_segments(&self) -> Result<Vec<LiveSegment>, LogError> {
        let entries = self
            .fs
            .read_dir(&self.dir)
            .map_err(StorageError::io("list ingest dir", &self.dir))?;
        let mut active: BTreeSet<Ulid> = BTreeSet::new();
        for entry in entries {
            if let Some(id) = entry
                .name
                .strip_suffix(".active")
                .and_then(|id| Ulid::from_string(id).ok())
            {
                active.insert(id);
            }
        }
        let (flushed, pending, floors) = {
            let state = self.state();
            (
                state.flushed.clone(),
                state.pending.keys().copied().collect::<Vec<_>>(),
                state.floors.clone(),
            )
        };
        let mut segments: Vec<(Ulid, Vec<PathBuf>)> = Vec::new();
        for id in active {
            let names = [ACTIVE, FLUSHED, PENDING];
            segments.push((id, names.iter().map(|s| self.path(id, s)).collect()));
        }
        for id in flushed {
            segments.push((id, vec![self.path(id, FLUSHED), self.path(id, PENDING)]));
        }
        for id in pending {
            segments.push((id, vec![self.path(id, PENDING), self.path(id, FLUSHED)]));
        }
        segments.sort_by_key(|(id, _)| *id);
        segments.dedup_by_key(|(id, _)| *id);
        Ok(segments
            .into_iter()
            .map(|(id, names)| LiveSegment {
                names,
                floor: floors.get(&id).cloned(),
            })
            .collect())
    }

    /// Set how many distinct stores a commit must name.
    pub fn set_replication_factor(&self, rf: u32) {
        self.replication_factor
            .store(rf.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// How many distinct stores a commit must name (`--replication-factor`).
    pub fn replication_factor(&self) -> u32 {
        self.replication_factor
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The live-tail ring every connection publishes its batches to.
    pub fn tail(&self) -> &Arc<crate::tail::TailRing> {
        &self.tail
    }

    /// How long a lent segment may stay uncommitted before it is lent
    /// again: the lease a store gets with each segment.
    pub fn pending_timeout(&self) -> Duration {
        self.pending_timeout
    }

    /// Segments waiting for a store, and segments lent out.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.flushed.len(), state.pending.len())
    }

    /// The filesystem the log's files are on; the lending API reads
    /// pending segments through it, at [`pending_path`](Self::pending_path).
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }
}

/// Distinct stores a commit names, comma-separated (blank entries are
/// ignored); at least 1, the committing store, also when `None`.
pub fn distinct_replicas(replicas: Option<&str>) -> usize {
    let Some(list) = replicas else { return 1 };
    let mut ids: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len().max(1)
}

/// Parse a segment id from the lending API.
pub fn parse_id(text: &str) -> Result<Ulid, LogError> {
    Ulid::from_string(text).map_err(|_| LogError::BadId(text.to_string()))
}

#[cfg(test)]
mod tests;
