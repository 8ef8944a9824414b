//! ULID generation that is cheap on the hot path and monotonic per connection.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use ulid::Ulid;

/// How far in the future a record's time may be before it is clamped: 1 minute.
pub const MAX_FUTURE_MS: u64 = 60_000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Clamp an origin time so that a wrong clock cannot put records far in the
/// future (where every "last 5 minutes" query would miss them).
pub fn clamp_time_ms(origin_ms: u64, now_ms: u64) -> u64 {
    origin_ms.min(now_ms + MAX_FUTURE_MS)
}

/// Hands out strictly increasing ULIDs.
///
/// The 80-bit random part is drawn once, then incremented for every id,
/// across milliseconds too: the cost per id is an add, ids from one
/// generator sort in the order they were made even when the clock stalls
/// or steps back, and a generator's ids form one running counter, which
/// block files code in about a byte an id and compress to a small part of
/// one (`block_segment/ids.rs`).
/// Uniqueness across generators rests on the random start: two generators
/// collide only if their counters overlap within one millisecond.
#[derive(Debug)]
pub struct IdGenerator {
    last: u128,
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1u128 << RANDOM_BITS) - 1;

impl IdGenerator {
    /// A generator that has handed out no id yet.
    pub fn new() -> Self {
        IdGenerator { last: 0 }
    }

    /// The next id at time `ms` (or later, if an earlier id already used a
    /// later time).
    pub fn next_at(&mut self, ms: u64) -> Ulid {
        let last_ms = (self.last >> RANDOM_BITS) as u64;
        let next = if self.last == 0 {
            // The random start, with the top bit clear, so that counting up
            // from it never overflows into the time (2^79 ids).
            let mut rng = rand::rng();
            let random = ((rng.next_u64() as u128) << 16 | rng.next_u32() as u128 >> 16)
                & (RANDOM_MASK >> 1);
            ((ms as u128) << RANDOM_BITS) | random
        } else if ms > last_ms {
            // A new millisecond: the counter runs on.
            let random = (self.last + 1) & RANDOM_MASK;
            ((ms as u128) << RANDOM_BITS) | random
        } else {
            self.last + 1
        };
        self.last = next;
        Ulid(next)
    }

    /// An id for a record that carries its own origin time `ms` (a Fluentd
    /// event time, a syslog timestamp, a batch record's time). In time order
    /// this is [`next_at`](Self::next_at); a record older than the last id
    /// keeps its own time, with a fresh random part, instead of taking the
    /// last id's time. Such ids are unique but not increasing; segments are
    /// sorted before they are sealed.
    pub fn at_origin(&mut self, ms: u64) -> Ulid {
        let last_ms = (self.last >> RANDOM_BITS) as u64;
        if self.last != 0 && ms < last_ms {
            let mut rng = rand::rng();
            let random =
                ((rng.next_u64() as u128) << 16 | rng.next_u32() as u128 >> 16) & RANDOM_MASK;
            return Ulid(((ms as u128) << RANDOM_BITS) | random);
        }
        self.next_at(ms)
    }

    /// Mark every id up to `id` as handed out: a batch that used `base`,
    /// `base + 1`, … `id` reserves them this way, so the next id is above.
    pub fn skip_to(&mut self, id: Ulid) {
        self.last = self.last.max(id.0);
    }

    /// The last id handed out, if any.
    pub fn last(&self) -> Option<Ulid> {
        (self.last != 0).then_some(Ulid(self.last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_millisecond_and_across_a_clock_step_back() {
        let mut generator = IdGenerator::new();
        let a = generator.next_at(1_000);
        let b = generator.next_at(1_000);
        let c = generator.next_at(999);
        let d = generator.next_at(1_001);
        assert!(a < b && b < c && c < d);
        assert_eq!(a.timestamp_ms(), 1_000);
        assert_eq!(d.timestamp_ms(), 1_001);
        // One running counter, across milliseconds.
        let random = |id: Ulid| id.0 & RANDOM_MASK;
        assert_eq!(random(d), random(c) + 1);
        assert_eq!(random(b), random(a) + 1);
    }

    #[test]
    fn origin_times_are_kept_even_out_of_order() {
        let mut generator = IdGenerator::new();
        let a = generator.at_origin(2_000);
        let b = generator.at_origin(1_000);
        let c = generator.at_origin(2_000);
        assert_eq!([a, b, c].map(|id| id.timestamp_ms()), [2_000, 1_000, 2_000]);
        assert!(a < c, "in-order ids still increase");
    }

    #[test]
    fn future_times_are_clamped() {
        assert_eq!(clamp_time_ms(10, 5), 10);
        assert_eq!(clamp_time_ms(u64::MAX / 2, 5), 5 + MAX_FUTURE_MS);
    }
}
