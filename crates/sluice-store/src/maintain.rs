//! The store's background maintenance: retention, then compaction, on one
//! thread of its own, so it never holds up the consumer or a query.
//!
//! One pass lists the segments, purges what retention selects, plans
//! compaction groups ([`crate::compact::plan`]) and compacts them one after
//! another, writing blocks in id order; a pass with no group sorts the
//! blocks of one segment instead ([`crate::compact::plan_upgrade`]). A pass
//! that compacted something is followed at once by another (its outputs
//! may now merge with small neighbours); otherwise the thread waits
//! [`MaintenanceConfig::interval`]. A failed pass (a full disk, say)
//! is logged and counted, changes nothing (see the rules of
//! [`crate::compact`]), and is tried again after the interval.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sluice_storage::{
    SegmentMeta, StorageError,
    block_segment::BlockLayout,
    store_segment::{self, SegmentKind, SegmentSizes},
};

use crate::{
    Store,
    compact::{self, Candidate, Compacted, CompactionConfig},
    metrics,
    retention::{self, Purged, RetentionConfig},
};

/// What the maintenance thread does and how often.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// Sizes that steer compaction.
    pub compaction: CompactionConfig,
    /// What retention keeps.
    pub retention: RetentionConfig,
    /// Whether to compact at all (retention runs either way).
    pub compact: bool,
    /// Pause between passes that found nothing to do.
    pub interval: Duration,
}

/// The default pause between passes that found nothing to do
/// (`--maintenance-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a pause looks at the shutdown flag.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(50);

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            compaction: CompactionConfig::default(),
            retention: RetentionConfig::default(),
            compact: true,
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Segments retention removed.
    pub purged: Vec<Purged>,
    /// Compactions run, in order.
    pub compactions: Vec<Compacted>,
}

/// The store's maintenance: retention, then compaction, one pass after
/// another on the thread that calls [`Maintainer::run`].
pub struct Maintainer {
    store: Store,
    config: MaintenanceConfig,
    /// Format, record bytes and unsorted blocks of segments seen, by name
    /// (a name is never reused for other bytes), so a pass reads no file
    /// just to plan.
    sizes: HashMap<String, SegmentSizes>,
}

impl Maintainer {
    /// A maintainer of `store`; nothing runs until [`Maintainer::run`] or
    /// [`Maintainer::pass`]. It sets the store's disk limit
    /// ([`Store::set_max_disk`]) from the retention config, so replicas are
    /// refused while the store is over it.
    pub fn new(store: Store, config: MaintenanceConfig) -> Maintainer {
        store.set_max_disk(config.retention.max_disk);
        Maintainer {
            store,
            config,
            sizes: HashMap::new(),
        }
    }

    /// Run passes until `shutdown` is set; the compaction under way finishes.
    pub fn run(mut self, shutdown: Arc<AtomicBool>) {
        while !shutdown.load(Ordering::Relaxed) {
            let busy = match self.pass(now_ms(), &shutdown) {
                Ok(pass) => !pass.compactions.is_empty(),
                Err(err) => {
                    if err.is_disk_full() {
                        tracing::warn!(error = %err, "store maintenance stopped: the disk is full; nothing was changed, and it is tried again");
                    } else {
                        tracing::warn!(error = %err, "store maintenance failed; nothing was changed, and it is tried again");
                    }
                    false
                }
            };
            if !busy {
                let until = Instant::now() + self.config.interval;
                while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
                    std::thread::sleep(SHUTDOWN_CHECK.min(self.config.interval));
                }
            }
        }
    }

    /// One pass of retention, then compaction, at time `now_ms`.
    pub fn pass(&mut self, now_ms: u64, shutdown: &AtomicBool) -> Result<Pass, StorageError> {
        let fs = self.store.fs().clone();
        let dir = self.store.dir().to_path_buf();
        let mut segments = self.store.segments()?;
        let mut pass = Pass::default();
        if !self.config.retention.is_unlimited() {
            pass.purged = retention::apply(&*fs, &dir, &segments, now_ms, &self.config.retention)
                .inspect_err(|_| metrics::maintenance_error("retention"))?;
            for purged in &pass.purged {
                metrics::purged(purged.reason.as_str(), purged.segment.bytes);
                tracing::info!(
                    segment = %purged.segment.name,
                    bytes = purged.segment.bytes,
                    reason = purged.reason.as_str(),
                    "retention purged a segment"
                );
            }
            segments.retain(|s| !pass.purged.iter().any(|p| p.segment.name == s.name));
        }
        metrics::store_size(segments.len(), segments.iter().map(|s| s.bytes).sum());
        if !self.config.compact {
            return Ok(pass);
        }

        self.sizes
            .retain(|name, _| segments.iter().any(|s| &s.name == name));
        let mut suspects: BTreeSet<String> = self.store.take_suspects();
        let mut candidates = Vec::with_capacity(segments.len());
        for meta in segments {
            let sizes = match self.sizes.get(&meta.name) {
                Some(sizes) => *sizes,
                None => match store_segment::segment_sizes(&*fs, &dir.join(&meta.name), meta.bytes)
                {
                    Ok(sizes) => *self.sizes.entry(meta.name.clone()).or_insert(sizes),
                    // A damaged footer: compaction quarantines it.
                    Err(err) if err.is_corrupt() => {
                        tracing::error!(segment = %meta.name, error = %err, "corrupt store segment found while planning compaction");
                        suspects.insert(meta.name.clone());
                        SegmentSizes {
                            kind: SegmentKind::Blocks,
                            record_bytes: 0,
                            unsorted_blocks: 0,
                        }
                    }
                    // Gone meanwhile, or unreadable: plan without it.
                    Err(_) => continue,
                },
            };
            candidates.push(Candidate {
                meta,
                kind: sizes.kind,
                record_bytes: sizes.record_bytes,
                unsorted_blocks: sizes.unsorted_blocks,
            });
        }
        metrics::unsorted_blocks(candidates.iter().map(|c| c.unsorted_blocks).sum());
        // Merges first, writing blocks in id order (the fast layout, so
        // compaction keeps up with ingest); when there is none, sort the
        // blocks of one segment.
        let mut work: Vec<(Vec<SegmentMeta>, BlockLayout)> =
            compact::plan(&candidates, &suspects, &self.config.compaction)
                .into_iter()
                .map(|group| (group, BlockLayout::InOrder))
                .collect();
        if work.is_empty()
            && let Some(segment) = compact::plan_upgrade(&candidates, &suspects)
        {
            work.push((vec![segment], BlockLayout::Sorted));
        }
        for (group, layout) in work {
            if shutdown.load(Ordering::Relaxed) {
                break;
            }
            let started = Instant::now();
            let done = compact::compact(
                &*fs,
                &dir,
                &group,
                &self.config.compaction,
                &suspects,
                compact::Output {
                    layout,
                    keep: self.store.segment_cache().block_cache().cloned(),
                },
                // On the background threads, behind queries: compaction
                // can wait.
                &self.store.workers().background(),
            )
            .inspect_err(|_| metrics::maintenance_error("compaction"))?;
            metrics::compacted(&done, started.elapsed());
            for (name, why) in &done.quarantined {
                tracing::error!(segment = %name, corruption = %why, "corrupt segment moved to quarantine/; its readable records were kept");
            }
            tracing::info!(
                inputs = done.inputs,
                input_bytes = done.input_bytes,
                outputs = done.outputs.len(),
                output_bytes = done.output_bytes(),
                records = done.records,
                duplicates_removed = done.duplicates_removed,
                copied_blocks = done.copied_blocks,
                layout = ?done.layout,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "compacted segments"
            );
            pass.compactions.push(done);
        }
        Ok(pass)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
