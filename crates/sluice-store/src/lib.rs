//! The store: durable, queryable segments.
//!
//! - [`Store`]: the store directory (segments named by ULID range) and its
//!   startup recovery.
//! - [`consumer`]: the pull loop that gathers flushed segments from
//!   ingesters over HTTP (`next` / `read` / `commit` / `failed`, OK Log's
//!   protocol), merges them by id into one store segment, makes it durable,
//!   and only then commits.
//!
//! Architecture invariant: a segment is committed to its ingester only after
//! the store segment holding its records is fsynced under its final name.
//! Any failure before that returns the segments (`failed`, or the pending
//! timeout), so records are delivered at least once; duplicates are removed
//! by id at query time.

pub mod consumer;
mod metrics;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use sluice_storage::{Fs, SegmentMeta, StorageError, store_segment};

pub use consumer::{Consumer, ConsumerConfig};

/// The store directory.
#[derive(Debug, Clone)]
pub struct Store {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store directory and run recovery:
    /// unfinished writes in `tmp/` are removed; files that are not segments
    /// are reported and left alone.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path) -> Result<Store, StorageError> {
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
        Ok(Store {
            fs,
            dir: dir.to_path_buf(),
        })
    }

    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every segment, sorted by smallest id.
    pub fn segments(&self) -> Result<Vec<SegmentMeta>, StorageError> {
        Ok(store_segment::list_segments(&*self.fs, &self.dir)?.0)
    }
}
