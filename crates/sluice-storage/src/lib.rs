//! Segment storage for sluice.
//!
//! - [`fs`]: the filesystem trait every storage path goes through, with a
//!   real implementation and an in-memory one that can crash and fail.
//! - [`segment`]: the segment file format (a sequence of checksummed
//!   batches), its writer, its scanner and torn-tail recovery.
//! - [`live`]: ingest segment files no store has taken yet, as a query
//!   reads them, with the [`IdFloor`] their writer keeps.
//! - [`merge`]: the k-way merge of sorted cursors by ULID, with dedupe,
//!   shared by queries, the store's consumer and compaction.
//! - [`store_segment`]: immutable store segments named by their ULID range,
//!   batch files or block files, written atomically, and read through the
//!   [`RecordCursor`] abstraction.
//! - [`block_segment`]: block files (zstd blocks with checksums, time
//!   ranges and [`term_filter`]s, read by mmap), which compaction writes.
//! - [`segment_cache`]: opened block files shared by queries, so each file
//!   is mapped once and each block meta verified once.
//! - [`workers`]: the process's pool of worker threads, which decode and
//!   build blocks for every cursor and writer.
//!
//! Architecture invariant: storage knows nothing about tokio, HTTP or query
//! syntax. Everything here is synchronous and takes an `&dyn Fs`; block
//! work runs on the [`WorkerPool`] a caller passes in.

pub mod block_segment;
pub mod cursor;
mod error;
pub mod fs;
pub mod live;
pub mod memfs;
pub mod merge;
pub mod segment;
pub mod segment_cache;
pub mod store_segment;
pub mod term_filter;
pub mod workers;

pub use block_segment::{BlockCache, BlockCacheStats};
pub use error::StorageError;
pub use fs::{DirEntry, Fs, Mapped, ReadFile, RealFs, WriteFile};
pub use live::{IdFloor, LiveSegment};
pub use memfs::MemFs;
pub use segment::{IdSummary, Recovery, SegmentScanner, SegmentWriter, recover_segment};
pub use segment_cache::SegmentCache;
pub use store_segment::{
    BatchCursor, MemoryCursor, RecordCursor, SegmentMeta, Selected, StoreSegmentWriter,
};
pub use workers::WorkerPool;
