//! The store: durable, queryable segments.
//!
//! - [`Store`]: the store directory (segments named by ULID range) and its
//!   startup recovery.
//! - [`consumer`]: the pull loop that gathers flushed segments from
//!   ingesters over HTTP (`next` / `read` / `commit` / `failed`, OK Log's
//!   protocol), stores them as batch files (adopted as they are, or merged
//!   by id into one when their id ranges overlap), makes them durable, and
//!   only then commits.
//! - [`lane`]: the lane's rules (lease, gate, ingester pick, replica
//!   fanout) and the whole lane as a sans-IO state machine, which the
//!   consumer and replication call and the simulation (`sluice-sim`)
//!   drives.
//! - [`maintain`]: the background thread that applies [`retention`] and
//!   runs [`compact`]ion, which rewrites fresh batch files, overlapping
//!   segments and small neighbours as non-overlapping block files, and
//!   quarantines corrupt ones.
//! - [`placement`]: weighted rendezvous hashing, which ranks the stores
//!   that may hold a batch's replicas.
//! - [`replica`]: the receiving side of replication, which writes a batch
//!   file another store sends (`PUT /store/replicate`), verified and
//!   durable before it is acknowledged.
//! - [`manifest`]: the append-only record of the batches this store holds
//!   and who else held them, which stores exchange.
//! - [`repair`]: copies a batch again when one of its holders has been dead
//!   longer than `--repair-after`, and copies id ranges for `sluice repair`.
//!
//! Architecture invariant: a segment is committed to its ingester only after
//! the store segment holding its records is fsynced under its final name.
//! Any failure before that returns the segments (`failed`, or the pending
//! timeout), so records are delivered at least once; duplicates are removed
//! by id at query time.

pub mod compact;
pub mod consumer;
pub mod lane;
pub mod maintain;
pub mod manifest;
mod metrics;
pub mod placement;
pub mod repair;
pub mod replica;
pub mod replicate;
pub mod retention;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use sluice_storage::{Fs, SegmentCache, SegmentMeta, StorageError, WorkerPool, store_segment};

pub use compact::CompactionConfig;
pub use consumer::{Consumer, ConsumerConfig, Ingester, IngesterSource, LocalIngester};
pub use maintain::{Maintainer, MaintenanceConfig};
pub use metrics::describe as describe_metrics;
pub use replicate::{ReplicaSource, Replication};
pub use retention::RetentionConfig;

/// The store directory.
#[derive(Debug, Clone)]
pub struct Store {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    /// Segments a query found corrupt, for the maintainer to salvage and
    /// quarantine.
    suspects: Arc<Mutex<BTreeSet<String>>>,
    /// Opened block files, shared by queries; evicted on every listing.
    segment_cache: Arc<SegmentCache>,
    /// The node's worker pool: queries, compaction and the consumer
    /// decode and build blocks on it.
    workers: Arc<WorkerPool>,
    /// `--max-disk` in bytes, `u64::MAX` for none: shared by every clone,
    /// set by [`Maintainer::new`] (or [`Store::set_max_disk`]).
    max_disk: Arc<AtomicU64>,
    /// The batches this store holds (see [`manifest`]).
    manifest: Arc<manifest::Manifest>,
    /// This node's id, once the binary knows it; replicas and manifest
    /// entries name it.
    node_id: Arc<std::sync::OnceLock<String>>,
}

impl Store {
    /// Open (creating if needed) the store directory and run recovery:
    /// unfinished writes in `tmp/` are removed; files that are not segments
    /// are reported and left alone. Blocks are decoded and built on
    /// `workers`.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        workers: Arc<WorkerPool>,
    ) -> Result<Store, StorageError> {
        fs.create_dir_all(dir)
            .map_err(StorageError::io("create store dir", dir))?;
        let removed = store_segment::clean_tmp(&*fs, dir)?;
        if removed > 0 {
            tracing::info!(removed, dir = %dir.display(), "removed unfinished store writes from an earlier run");
        }
        let (segments, strangers) = store_segment::list_segments(&*fs, dir)?;
        for name in strangers {
            tracing::warn!(file = %name, dir = %dir.display(), "ignoring a file that is not a store segment; it is left alone");
        }
        tracing::info!(segments = segments.len(), dir = %dir.display(), "store opened");
        let manifest = manifest::Manifest::open(fs.clone(), dir).map_err(|err| match err {
            manifest::ManifestError::Io(err) => err,
            other => StorageError::io("open manifest", dir)(std::io::Error::other(other)),
        })?;
        Ok(Store {
            fs,
            dir: dir.to_path_buf(),
            suspects: Arc::default(),
            segment_cache: Arc::default(),
            workers,
            max_disk: Arc::new(AtomicU64::new(u64::MAX)),
            manifest: Arc::new(manifest),
            node_id: Arc::default(),
        })
    }

    /// Keep up to `bytes` of decoded blocks between queries (0: none); see
    /// [`sluice_storage::BlockCache`]. Call before the first query.
    pub fn with_block_cache(mut self, bytes: u64) -> Store {
        self.segment_cache = Arc::new(SegmentCache::with_block_cache(bytes));
        self
    }

    /// The store's batch manifest.
    pub fn manifest(&self) -> &Arc<manifest::Manifest> {
        &self.manifest
    }

    /// Name this store's node (once; later calls are ignored). Manifest
    /// entries and replicas name it.
    pub fn set_node_id(&self, id: &str) {
        let _ = self.node_id.set(id.to_string());
    }

    /// This store's node id, or `""` before [`Store::set_node_id`].
    pub fn node_id(&self) -> &str {
        self.node_id.get().map_or("", String::as_str)
    }

    /// Record in the manifest that this store now holds `batch` (a segment
    /// named `<min>-<max>.seg`), known to be held by `replicas` too. A
    /// failure is logged and counted, not returned: the batch itself is
    /// durable, and `sluice repair` finds records by walking the stores.
    pub fn note_batch(&self, batch: &SegmentMeta, replicas: &[String]) {
        let mut holders: Vec<String> = Vec::with_capacity(replicas.len() + 1);
        for id in std::iter::once(self.node_id()).chain(replicas.iter().map(String::as_str)) {
            if !id.is_empty() && !holders.iter().any(|h| h == id) {
                holders.push(id.to_string());
            }
        }
        let entry = manifest::Entry {
            batch: batch.name.clone(),
            min: batch.min.to_string(),
            max: batch.max.to_string(),
            replicas: holders,
            segment: batch.name.clone(),
        };
        if let Err(err) = self.manifest.append(&entry) {
            metrics::manifest_error("append");
            tracing::warn!(batch = %batch.name, error = %err, "could not record a batch in the manifest; `sluice repair` still finds its records");
        }
    }

    /// The filesystem the store's files live on.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// The store directory, which holds the segments, `tmp/` and
    /// `quarantine/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's worker pool.
    pub fn workers(&self) -> &Arc<WorkerPool> {
        &self.workers
    }

    /// The cache that queries open block files through.
    pub fn segment_cache(&self) -> &Arc<SegmentCache> {
        &self.segment_cache
    }

    /// Note segments (by name) in which a query met corruption; the next
    /// maintenance pass rewrites what can be read and quarantines them.
    pub fn report_corrupt<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut suspects = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            suspects.insert(name.to_string());
        }
    }

    /// Set the store's disk limit (`--max-disk`, see
    /// [`RetentionConfig::max_disk`]) for every clone of this store;
    /// `None` is no limit. [`Maintainer::new`] sets it from its retention
    /// config. Retention purges down to it; [`replica`] refuses replicas
    /// while the store is over it.
    pub fn set_max_disk(&self, limit: Option<u64>) {
        self.max_disk
            .store(limit.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The store's disk limit in bytes, if any (see [`Store::set_max_disk`]).
    pub fn max_disk(&self) -> Option<u64> {
        match self.max_disk.load(Ordering::Relaxed) {
            u64::MAX => None,
            limit => Some(limit),
        }
    }

    /// The bytes the store's segments hold on disk, as retention counts
    /// them: not `tmp/`, not `quarantine/`.
    pub fn disk_bytes(&self) -> Result<u64, StorageError> {
        let segments = store_segment::list_segments(&*self.fs, &self.dir)?.0;
        Ok(segments.iter().map(|s| s.bytes).sum())
    }

    /// When the store's segments hold more than its disk limit:
    /// `Some((held, limit))` in bytes; `None` when under it or unlimited.
    pub fn over_max_disk(&self) -> Result<Option<(u64, u64)>, StorageError> {
        let Some(limit) = self.max_disk() else {
            return Ok(None);
        };
        let held = self.disk_bytes()?;
        Ok((held > limit).then_some((held, limit)))
    }

    pub(crate) fn take_suspects(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.suspects.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Every segment, sorted by smallest id. Cached segments no longer
    /// listed are evicted, so their files' space is released.
    pub fn segments(&self) -> Result<Vec<SegmentMeta>, StorageError> {
        let segments = store_segment::list_segments(&*self.fs, &self.dir)?.0;
        self.segment_cache.retain_listed(&segments);
        Ok(segments)
    }
}
