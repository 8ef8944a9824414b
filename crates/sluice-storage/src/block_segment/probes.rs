//! What a cursor asks of a block's filters: a literal every wanted record
//! holds, and literals one of which each holds.

use std::sync::Arc;

use super::FrameEntry;
use crate::term_filter::{AnyOfProbe, TermProbe, sliced};

/// The probes of a query's literals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probes {
    /// A literal every wanted record holds.
    pub(crate) all_of: Option<TermProbe>,
    /// Literals one of which every wanted record holds, built once per
    /// query and shared by its cursors.
    pub(crate) any_of: Option<Arc<AnyOfProbe>>,
}

/// Scratch space for [`BlockSegment::wanted_frames`](super::BlockSegment::wanted_frames),
/// kept by a cursor from block to block.
#[derive(Debug, Default)]
pub(crate) struct FrameScratch {
    pub(crate) frames: Vec<FrameEntry>,
    pub(crate) mask: Vec<u64>,
    /// For [`AnyOfProbe`]: frames claimed by a literal so far, and those
    /// one literal is asked about.
    claimed: Vec<u64>,
    one: Vec<u64>,
}

impl Probes {
    /// Whether there is anything to probe.
    pub(crate) fn is_empty(&self) -> bool {
        self.all_of.is_none() && self.any_of.is_none()
    }

    /// `scratch.mask`: one bit per frame of a block of `frames`, set for
    /// each frame its sliced filter's `rows` say may hold a wanted record
    /// (every frame when the filter's sizes did not match: `rows` is
    /// `None`). Returns the bytes of the filter read, all `filter_len` of
    /// them in that case.
    pub(crate) fn narrow_frames(
        &self,
        rows: Option<sliced::Rows<'_>>,
        filter_len: usize,
        frames: usize,
        scratch: &mut FrameScratch,
    ) -> u64 {
        let FrameScratch {
            mask, claimed, one, ..
        } = scratch;
        sliced::all_frames(frames, mask);
        let Some(rows) = rows else {
            return filter_len as u64;
        };
        let mut read = 0;
        if let Some(probe) = &self.all_of {
            read += probe.narrow_rows(&rows, mask);
        }
        if let Some(probe) = &self.any_of
            && !sliced::none_left(mask)
        {
            read += probe.narrow_rows(&rows, mask, claimed, one);
        }
        rows.bytes_read(read)
    }
}
