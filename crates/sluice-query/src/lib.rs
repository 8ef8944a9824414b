//! Query execution: which segments to read, how to match, and how to merge.
//!
//! - [`time`]: parse `--from`/`--to` values (durations ago, RFC 3339, Unix
//!   milliseconds, `now`).
//! - [`matcher`]: literal (memchr's memmem), case-insensitive and regex
//!   matching over payload bytes.
//! - [`exec`]: plan (segments overlapping the range), scan, merge (with
//!   [`sluice_storage::merge`]), and emit matching records to a
//!   [`RecordSink`], with [`QueryStats`].
//! - [`newest`]: newest first ([`Direction::Backward`]): the range read
//!   in windows of ids from its newest end, cut by the block index.
//! - [`count`]: matches counted per time bucket ([`count::Histogram`]) or
//!   per topic ([`count::TopicCounts`]), from the block index where no
//!   text is matched.
//! - [`frames`]: the framed node-to-node query response (`format=frames`):
//!   [`FrameWriter`] on the answering node, [`FrameDecoder`] on the
//!   coordinator.
//! - [`logql`]: the LogQL subset of the Loki read API: parser, printer,
//!   selectors over topics' label sets, metric evaluation.
//! - [`gather`]: [`NodeMerge`], the sans-IO merge of the nodes' streams by
//!   ULID with copies dropped, and [`verdict`], the `complete` rule.
//!
//! Architecture invariant: query reads segments only through
//! [`sluice_storage::RecordCursor`], so a new segment format needs no change
//! here. Memory is bounded by the number of overlapping segments times what
//! each cursor holds (one batch, or a block and the blocks it decodes
//! ahead), never by the size of the result.

pub mod count;
pub mod exec;
pub mod frames;
pub mod gather;
pub mod logql;
pub mod matcher;
pub mod newest;
pub mod time;

pub use exec::{
    Direction, Prepared, Query, QueryError, QueryStats, RecordSink, Scan, Sources, execute, plan,
    plan_sources, prepare, prepare_sources,
};
pub use frames::{
    Frame, FrameDecoder, FrameError, FrameWriter, RecordsFrame, encode_error, encode_progress,
    encode_stats,
};
pub use gather::{GatherError, NodeMerge, QueriedNode, Role, verdict};
pub use matcher::{Matcher, MatcherError};
pub use time::{TimeError, parse_time_ms};
