//! The simulated network: which directed links are cut, which are slow,
//! and how long a message takes. Faults are counted per link, so two
//! overlapping partitions of one pair heal one at a time.

use std::{collections::BTreeMap, time::Duration};

use rand::Rng;

/// The base delay of every message: 1 to 20 ms.
const BASE_DELAY_MS: std::ops::RangeInclusive<u64> = 1..=20;

#[derive(Debug, Default)]
pub(crate) struct Net {
    /// Cut links, `(from, to)`, with how many faults cut each.
    cut: BTreeMap<(usize, usize), u32>,
    /// Slow links, with the extra delays the faults on each add.
    slow: BTreeMap<(usize, usize), Vec<Duration>>,
    /// The chance that a message is lost, in millionths.
    pub(crate) loss_ppm: u32,
}

impl Net {
    /// When a message sent now from `from` to `to` arrives, as a delay;
    /// `None`: it is lost.
    pub(crate) fn delay(&self, rng: &mut impl Rng, from: usize, to: usize) -> Option<Duration> {
        if self.cut.contains_key(&(from, to)) {
            return None;
        }
        if self.loss_ppm > 0 && rng.random_range(0..1_000_000) < self.loss_ppm {
            return None;
        }
        let extra = self
            .slow
            .get(&(from, to))
            .and_then(|d| d.iter().max().copied())
            .unwrap_or_default();
        Some(Duration::from_millis(rng.random_range(BASE_DELAY_MS)) + extra)
    }

    pub(crate) fn cut(&mut self, from: usize, to: usize) {
        *self.cut.entry((from, to)).or_default() += 1;
    }

    pub(crate) fn mend(&mut self, from: usize, to: usize) {
        if let Some(n) = self.cut.get_mut(&(from, to)) {
            *n -= 1;
            if *n == 0 {
                self.cut.remove(&(from, to));
            }
        }
    }

    pub(crate) fn slow(&mut self, from: usize, to: usize, extra: Duration) {
        self.slow.entry((from, to)).or_default().push(extra);
    }

    pub(crate) fn unslow(&mut self, from: usize, to: usize, extra: Duration) {
        if let Some(delays) = self.slow.get_mut(&(from, to)) {
            if let Some(at) = delays.iter().position(|d| *d == extra) {
                delays.remove(at);
            }
            if delays.is_empty() {
                self.slow.remove(&(from, to));
            }
        }
    }

    /// Every link whole and fast, no loss.
    pub(crate) fn heal(&mut self) {
        self.cut.clear();
        self.slow.clear();
        self.loss_ppm = 0;
    }
}
