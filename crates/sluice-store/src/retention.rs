//! Retention: remove the oldest segments by age and by total size.
//!
//! - By age (`--retain`): a segment whose newest record is older than
//!   `now - retain` is removed. A segment that straddles the limit is kept
//!   whole until its newest record passes it, so a query may still see a
//!   little older data; it never loses newer data.
//! - By size (`--max-disk`): while the store's segments hold more than the
//!   limit, the segment with the oldest newest record is removed. Only store
//!   segments count: not `tmp/`, not `quarantine/`, not the ingest side.
//!
//! Every removal is reported (a log line with the segment, its bytes and the
//! reason, and counters by reason). Removing a file is one atomic step, so a
//! crash part-way leaves some segments purged and the rest whole; the next
//! pass purges them. Queries running meanwhile hold their segments open and
//! finish (see `sluice_query::exec`).

use std::{path::Path, time::Duration};

use sluice_storage::{Fs, SegmentMeta, StorageError};

/// What retention keeps; `None` is no limit.
#[derive(Debug, Clone, Default)]
pub struct RetentionConfig {
    /// Remove segments whose newest record is older than this
    /// (`--retain`).
    pub retain: Option<Duration>,
    /// Remove the oldest segments while the store's segments together hold
    /// more than this many bytes on disk (`--max-disk`).
    pub max_disk: Option<u64>,
}

impl RetentionConfig {
    /// Whether retention keeps everything: neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.retain.is_none() && self.max_disk.is_none()
    }
}

/// Why a segment was purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeReason {
    /// Its newest record passed [`RetentionConfig::retain`].
    Age,
    /// The store passed [`RetentionConfig::max_disk`].
    Disk,
}

impl PurgeReason {
    /// The reason as logged and as the `reason` label of the purge
    /// counters: `"age"` or `"disk"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PurgeReason::Age => "age",
            PurgeReason::Disk => "disk",
        }
    }
}

/// One purged segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    /// The segment removed.
    pub segment: SegmentMeta,
    /// Which limit removed it.
    pub reason: PurgeReason,
}

/// The segments retention removes, oldest first, without removing them.
pub fn select(segments: &[SegmentMeta], now_ms: u64, config: &RetentionConfig) -> Vec<Purged> {
    let mut by_age: Vec<&SegmentMeta> = segments.iter().collect();
    by_age.sort_by_key(|s| (s.max, s.min));
    let oldest_kept_ms = config
        .retain
        .map(|retain| now_ms.saturating_sub(retain.as_millis() as u64));
    let mut purged = Vec::new();
    let mut kept_bytes: u64 = segments.iter().map(|s| s.bytes).sum();
    for segment in by_age {
        let reason = if oldest_kept_ms.is_some_and(|limit| segment.max.timestamp_ms() < limit) {
            PurgeReason::Age
        } else if config.max_disk.is_some_and(|limit| kept_bytes > limit) {
            PurgeReason::Disk
        } else {
            break;
        };
        kept_bytes -= segment.bytes;
        purged.push(Purged {
            segment: segment.clone(),
            reason,
        });
    }
    purged
}

/// Remove what [`select`] chose and make it durable. Returns what was
/// removed (a segment that vanished meanwhile is not in it).
pub fn apply(
    fs: &dyn Fs,
    dir: &Path,
    segments: &[SegmentMeta],
    now_ms: u64,
    config: &RetentionConfig,
) -> Result<Vec<Purged>, StorageError> {
    let mut removed = Vec::new();
    for purge in select(segments, now_ms, config) {
        let path = dir.join(&purge.segment.name);
        match fs.remove_file(&path) {
            Ok(()) => removed.push(purge),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(StorageError::io("purge segment", &path)(err)),
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(dir)
            .map_err(StorageError::io("fsync store dir", dir))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::Ulid;

    fn seg(min_ms: u64, max_ms: u64, bytes: u64) -> SegmentMeta {
        let (min, max) = (Ulid::from_parts(min_ms, 0), Ulid::from_parts(max_ms, 0));
        SegmentMeta {
            name: format!("{min}-{max}.seg"),
            min,
            max,
            bytes,
        }
    }

    #[test]
    fn age_purges_segments_wholly_older_than_the_limit() {
        let segments = [seg(0, 100, 10), seg(50, 900, 10), seg(1000, 2000, 10)];
        let config = RetentionConfig {
            retain: Some(Duration::from_millis(1500)),
            max_disk: None,
        };
        let purged = select(&segments, 2000, &config);
        assert_eq!(purged.len(), 1, "{purged:?}");
        assert_eq!(purged[0].segment, segments[0]);
        assert_eq!(purged[0].reason, PurgeReason::Age);
    }

    #[test]
    fn disk_purges_oldest_until_under_the_limit() {
        let segments = [seg(2000, 3000, 40), seg(0, 1000, 50), seg(1000, 2000, 30)];
        let config = RetentionConfig {
            retain: None,
            max_disk: Some(60),
        };
        let purged: Vec<_> = select(&segments, 0, &config)
            .into_iter()
            .map(|p| (p.segment.max.timestamp_ms(), p.reason))
            .collect();
        assert_eq!(
            purged,
            [(1000, PurgeReason::Disk), (2000, PurgeReason::Disk)]
        );
        let config = RetentionConfig {
            retain: None,
            max_disk: Some(120),
        };
        assert!(select(&segments, 0, &config).is_empty());
    }

    #[test]
    fn apply_removes_files_and_reports_them() {
        let fs = sluice_storage::MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let segments = [seg(0, 100, 3), seg(200, 300, 3)];
        for s in &segments {
            let mut f = fs.create_new(&dir.join(&s.name)).unwrap();
            f.write_all(b"abc").unwrap();
        }
        let config = RetentionConfig {
            retain: Some(Duration::from_millis(150)),
            max_disk: None,
        };
        let purged = apply(&fs, dir, &segments, 300, &config).unwrap();
        assert_eq!(purged.len(), 1);
        assert!(!fs.exists(&dir.join(&segments[0].name)));
        assert!(fs.exists(&dir.join(&segments[1].name)));
    }
}
