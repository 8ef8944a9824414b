//! What a cursor asks of a block's filters: a literal every wanted record
//! holds, or literals one of which each holds.

use super::FrameEntry;
use crate::term_filter::{TermProbe, sliced};

/// The probes of a query's literals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probes {
    /// A literal every wanted record holds.
    pub(crate) all_of: Option<TermProbe>,
    /// Literals one of which every wanted record holds; empty when none.
    pub(crate) any_of: Vec<TermProbe>,
}

/// Scratch space for [`BlockSegment::wanted_frames`](super::BlockSegment::wanted_frames).
#[derive(Debug, Default)]
pub(crate) struct FrameScratch {
    pub(crate) frames: Vec<FrameEntry>,
    pub(crate) mask: Vec<u64>,
}

impl Probes {
    /// Whether there is anything to probe.
    pub(crate) fn is_empty(&self) -> bool {
        self.all_of.is_none() && self.any_of.is_empty()
    }

    /// `mask`: one bit per frame of a block of `frames`, set for each
    /// frame its sliced `filter` says may hold a wanted record. Returns the
    /// bytes of the filter read.
    pub(crate) fn narrow_frames(&self, filter: &[u8], frames: usize, mask: &mut Vec<u64>) -> u64 {
        sliced::all_frames(frames, mask);
        let mut read = 0;
        if let Some(probe) = &self.all_of {
            read += probe.narrow_frames(filter, frames, mask);
        }
        if self.any_of.is_empty() {
            return read;
        }
        let mut union = vec![0u64; mask.len()];
        let mut one = Vec::new();
        for probe in &self.any_of {
            sliced::all_frames(frames, &mut one);
            read += probe.narrow_frames(filter, frames, &mut one);
            for (u, o) in union.iter_mut().zip(&one) {
                *u |= o;
            }
        }
        for (m, u) in mask.iter_mut().zip(&union) {
            *m &= u;
        }
        read
    }
}
