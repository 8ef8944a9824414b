//! The ids of a block, after its first: each as a millisecond delta, a
//! *lane* and a counter delta, about 1 byte each at ordinary rates.
//!
//! A ULID is 48 bits of milliseconds and an 80-bit random part. An
//! [`IdGenerator`](sluice_record::IdGenerator) draws its random part once
//! and then counts up from it, one per id, across milliseconds; the batch
//! protocol's ids are a batch's random base plus the record's index. So the
//! ids of one connection, or one batch, share a running counter: a lane.
//! In id order, a block interleaves a few lanes (16 connections at one
//! line a millisecond each), and each lane's next random part is its last
//! plus a small number, usually 1. Plain deltas of whole ids cost 11–12
//! bytes there, because consecutive ids come from different lanes.
//!
//! The encoding keeps a table of lanes (the last random part seen on each,
//! at most [`MAX_LANES`]; the first id's opens lane 0). Record `i` (from
//! 1) is one LEB128 value `v`, sometimes followed by more:
//!
//! - bit 0 of `v`: the millisecond part grew; a LEB128 `Δms − 1` follows.
//! - `t = v >> 1`, with `L` the lanes in the table now: `lane = t % (L+1)`,
//!   `step = t / (L+1) + 1`.
//!   - `lane < L`: the random part is that lane's last plus `step` (and
//!     becomes its last);
//!   - `lane == L` (and `step` 1): a new lane; its random part follows as
//!     10 bytes, little-endian. Past [`MAX_LANES`] it replaces lane
//!     `n % MAX_LANES`, `n` counting the replacements so far.
//!
//! The writer picks, for each id, the lane whose last random part is below
//! the id's and closest to it, within [`MAX_STEP`]; else it opens a new
//! lane. Any strictly increasing sequence encodes and decodes exactly
//! (a property test checks it); only the size depends on the lanes.
//!
//! A block's meta holds these codes zstd-compressed ([`encode_packed`]):
//! LEB128 `coded_len`, LEB128 `packed_len`, then `packed_len` bytes of one
//! zstd frame of the `coded_len` bytes of codes (none when `coded_len` is
//! 0). The codes of one lane at full speed are nearly all the same byte,
//! and those of a few lanes a few bytes: compressed, an id costs a small
//! part of a byte (BENCHMARKS.md, "Design measurements").

use std::cell::RefCell;

use sluice_record::Ulid;

use super::{Bytes, put_varint};

/// Lanes in the table at most.
pub(crate) const MAX_LANES: usize = 64;
/// The largest counter step taken as the same lane.
pub(crate) const MAX_STEP: u128 = 1 << 32;
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1 << RANDOM_BITS) - 1;

/// The lane table both sides keep in step.
struct Lanes {
    last: Vec<u128>,
    replaced: usize,
}

impl Lanes {
    fn new(first: u128) -> Lanes {
        let mut last = Vec::with_capacity(8);
        last.push(first & RANDOM_MASK);
        Lanes { last, replaced: 0 }
    }

    fn open(&mut self, random: u128) {
        if self.last.len() < MAX_LANES {
            self.last.push(random);
        } else {
            let at = self.replaced % MAX_LANES;
            self.last[at] = random;
            self.replaced += 1;
        }
    }
}

/// The most bytes [`encode`] writes for one id: its token (a step of at
/// most [`MAX_STEP`] on one of at most 65 lanes, shifted for the flag:
/// under 2^40, 6 bytes of LEB128) and its millisecond delta (under 2^48, 7
/// bytes); or for a new lane a token of at most 129 (2 bytes), the delta
/// and the lane's 10 bytes. A reader refuses more codes than this a record.
const MAX_CODED_ID: usize = 19;
const _: () = assert!((MAX_STEP * (MAX_LANES as u128 + 1)) << 1 < 1 << 42);

/// Append `ids[1..]` (`ids` strictly increasing, at least one) to `out`
/// as a block's meta holds them: their codes ([`encode`]), compressed by
/// `compressor` (see the module docs).
pub(crate) fn encode_packed(
    ids: &[Ulid],
    compressor: &mut zstd::bulk::Compressor<'static>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut codes = Vec::new();
    encode(ids, &mut codes);
    put_varint(out, codes.len() as u128);
    if codes.is_empty() {
        put_varint(out, 0);
        return Ok(());
    }
    let packed = compressor.compress(&codes)?;
    put_varint(out, packed.len() as u128);
    out.extend_from_slice(&packed);
    Ok(())
}

/// What [`decode_packed`] decompresses with, per thread: a zstd context
/// and the codes.
struct Unpacking {
    decompressor: zstd::bulk::Decompressor<'static>,
    codes: Vec<u8>,
}

thread_local! {
    static UNPACKING: RefCell<Option<Unpacking>> = const { RefCell::new(None) };
}

/// Codes kept between calls at most: a block's are about a byte a record.
const KEPT_CODES: usize = 1 << 20;

/// Decode `count − 1` ids after `first`, as [`encode_packed`] wrote them,
/// from `r` into `out` (which gets `first` too).
pub(crate) fn decode_packed(
    r: &mut Bytes<'_>,
    first: Ulid,
    count: usize,
    out: &mut Vec<Ulid>,
) -> Result<(), &'static str> {
    let coded_len = usize::try_from(r.varint()?).map_err(|_| "ids' length overflows")?;
    let packed_len = usize::try_from(r.varint()?).map_err(|_| "ids' length overflows")?;
    if coded_len > count.saturating_sub(1).saturating_mul(MAX_CODED_ID) {
        return Err("ids' length out of range");
    }
    let packed = r.take(packed_len)?;
    if coded_len == 0 {
        return match packed_len {
            0 => decode(&mut Bytes { buf: &[], pos: 0 }, first, count, out),
            _ => Err("ids' length out of range"),
        };
    }
    UNPACKING.with(|cell| {
        let mut cell = cell.borrow_mut();
        let unpacking = match &mut *cell {
            Some(unpacking) => unpacking,
            empty => empty.insert(Unpacking {
                decompressor: zstd::bulk::Decompressor::new()
                    .map_err(|_| "no zstd context for ids")?,
                codes: Vec::new(),
            }),
        };
        let codes = &mut unpacking.codes;
        codes.clear();
        codes.reserve(coded_len);
        unpacking
            .decompressor
            .decompress_to_buffer(packed, codes)
            .map_err(|_| "ids do not decompress")?;
        if codes.len() != coded_len {
            return Err("ids do not decompress to their length");
        }
        let mut codes_read = Bytes { buf: codes, pos: 0 };
        let decoded = decode(&mut codes_read, first, count, out);
        let whole = codes_read.pos == codes.len();
        if codes.capacity() > KEPT_CODES {
            *codes = Vec::new();
        }
        decoded?;
        match whole {
            true => Ok(()),
            false => Err("trailing bytes in ids"),
        }
    })
}

/// Append the encoding of `ids[1..]` (`ids` strictly increasing, at least
/// one) to `out`.
pub(crate) fn encode(ids: &[Ulid], out: &mut Vec<u8>) {
    let Some(first) = ids.first() else { return };
    let mut lanes = Lanes::new(first.0);
    let mut prev_ms = first.0 >> RANDOM_BITS;
    // The lane used last: tried first, since runs of one lane are common.
    let mut hint = 0usize;
    for id in &ids[1..] {
        let ms = id.0 >> RANDOM_BITS;
        let random = id.0 & RANDOM_MASK;
        let grew = ms > prev_ms;
        let count = lanes.last.len() as u128;
        let near = |last: u128| random > last && random - last <= MAX_STEP;
        let lane = if near(lanes.last[hint]) && lanes.last[hint] + 1 == random {
            Some(hint)
        } else {
            lanes
                .last
                .iter()
                .enumerate()
                .filter(|&(_, &last)| near(last))
                .min_by_key(|&(_, &last)| random - last)
                .map(|(i, _)| i)
        };
        let token = match lane {
            Some(i) => (random - lanes.last[i] - 1) * (count + 1) + i as u128,
            None => count,
        };
        put_varint(out, token << 1 | u128::from(grew));
        if grew {
            put_varint(out, ms - prev_ms - 1);
        }
        match lane {
            Some(i) => {
                lanes.last[i] = random;
                hint = i;
            }
            None => {
                out.extend_from_slice(&random.to_le_bytes()[..10]);
                lanes.open(random);
                hint = lanes.last.iter().position(|&l| l == random).unwrap_or(0);
            }
        }
        prev_ms = ms;
    }
}

/// Decode `count − 1` ids after `first` from `r` into `out` (which gets
/// `first` too). Fails on ids that do not strictly increase or overflow.
pub(crate) fn decode(
    r: &mut Bytes<'_>,
    first: Ulid,
    count: usize,
    out: &mut Vec<Ulid>,
) -> Result<(), &'static str> {
    out.push(first);
    let mut lanes = Lanes::new(first.0);
    let mut prev = first.0;
    for _ in 1..count {
        let v = r.varint()?;
        let mut ms = prev >> RANDOM_BITS;
        if v & 1 == 1 {
            let delta = r.varint()?.checked_add(1).ok_or("ms delta overflows")?;
            ms = ms.checked_add(delta).ok_or("ms delta overflows")?;
            if ms >> 48 != 0 {
                return Err("id time overflows");
            }
        }
        let token = v >> 1;
        let choices = lanes.last.len() as u128 + 1;
        // Nearly every id steps its lane by 1, so its token is the lane: no
        // division (one of 128 bits is a call), else one of 64 bits where
        // the token fits.
        let (lane, step) = if token < choices {
            (token as usize, 1)
        } else if let Ok(token) = u64::try_from(token) {
            let choices = choices as u64;
            ((token % choices) as usize, (token / choices) as u128 + 1)
        } else {
            ((token % choices) as usize, token / choices + 1)
        };
        let random = if lane == lanes.last.len() {
            if step != 1 {
                return Err("a new lane with a step");
            }
            let bytes = r.take(10)?;
            let mut raw = [0u8; 16];
            raw[..10].copy_from_slice(bytes);
            let random = u128::from_le_bytes(raw);
            lanes.open(random);
            random
        } else {
            let random = lanes.last[lane]
                .checked_add(step)
                .filter(|&r| r <= RANDOM_MASK)
                .ok_or("id counter overflows")?;
            lanes.last[lane] = random;
            random
        };
        let id = ms << RANDOM_BITS | random;
        if id <= prev {
            return Err("ids do not increase");
        }
        out.push(Ulid(id));
        prev = id;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sluice_record::IdGenerator;

    use super::*;

    fn round_trip(ids: &[Ulid]) -> usize {
        let mut out = Vec::new();
        encode(ids, &mut out);
        let mut r = Bytes { buf: &out, pos: 0 };
        let mut back = Vec::new();
        decode(&mut r, ids[0], ids.len(), &mut back).unwrap();
        assert_eq!(back, ids);
        assert_eq!(r.pos, out.len(), "every byte read");
        out.len()
    }

    /// Bytes of `ids` as a block's meta holds them, compressed, after
    /// checking that they read back.
    fn packed_round_trip(ids: &[Ulid]) -> usize {
        let mut compressor = crate::block_segment::block_compressor(9).unwrap();
        let mut out = vec![0xEE];
        encode_packed(ids, &mut compressor, &mut out).unwrap();
        let mut r = Bytes { buf: &out, pos: 1 };
        let mut back = Vec::new();
        decode_packed(&mut r, ids[0], ids.len(), &mut back).unwrap();
        assert_eq!(back, ids);
        assert_eq!(r.pos, out.len(), "every byte read");
        out.len() - 1
    }

    #[test]
    fn compressed_ids_cost_a_fraction_of_their_codes() {
        for (connections_, per_ms, most) in [(16, 1, 0.25), (1, 200, 0.05)] {
            let ids = connections(connections_, per_ms, 2_000);
            let coded = round_trip(&ids) as f64 / (ids.len() - 1) as f64;
            let packed = packed_round_trip(&ids) as f64 / (ids.len() - 1) as f64;
            eprintln!(
                "{connections_} connections, {per_ms} ids/ms: codes {coded:.3} bytes an id, compressed {packed:.3}"
            );
            assert!(packed <= most, "{packed:.3} bytes an id");
        }
        // One id: nothing after it.
        assert_eq!(packed_round_trip(&connections(1, 1, 1)), 2);
    }

    #[test]
    fn damaged_compressed_ids_are_an_error_not_a_panic() {
        let ids = connections(4, 2, 30);
        let mut compressor = crate::block_segment::block_compressor(9).unwrap();
        let mut out = Vec::new();
        encode_packed(&ids, &mut compressor, &mut out).unwrap();
        for cut in 0..out.len() {
            let mut r = Bytes {
                buf: &out[..cut],
                pos: 0,
            };
            assert!(decode_packed(&mut r, ids[0], ids.len(), &mut Vec::new()).is_err());
        }
        for at in 0..out.len() {
            for flip in [0x01, 0x55, 0x80] {
                let mut bad = out.clone();
                bad[at] ^= flip;
                let mut r = Bytes { buf: &bad, pos: 0 };
                let mut back = Vec::new();
                if decode_packed(&mut r, ids[0], ids.len(), &mut back).is_ok() {
                    assert!(back.windows(2).all(|w| w[0] < w[1]));
                    assert_eq!(back.len(), ids.len());
                }
            }
        }
        // Lengths past what the ids could take are refused before any
        // memory is set aside for them.
        let mut huge = Vec::new();
        put_varint(&mut huge, (ids.len() * MAX_CODED_ID) as u128);
        put_varint(&mut huge, 1);
        huge.push(0);
        let mut r = Bytes { buf: &huge, pos: 0 };
        assert_eq!(
            decode_packed(&mut r, ids[0], ids.len(), &mut Vec::new()),
            Err("ids' length out of range")
        );
    }

    /// `connections` generators each making `per_ms` ids a millisecond for
    /// `ms` milliseconds, merged in id order as a block holds them.
    fn connections(connections: usize, per_ms: usize, ms: u64) -> Vec<Ulid> {
        let mut generators: Vec<IdGenerator> =
            (0..connections).map(|_| IdGenerator::new()).collect();
        let mut ids = Vec::new();
        for t in 0..ms {
            for g in &mut generators {
                for _ in 0..per_ms {
                    ids.push(g.next_at(1_800_000_000_000 + t));
                }
            }
        }
        ids.sort();
        ids
    }

    #[test]
    fn sixteen_connections_at_one_line_a_millisecond_cost_under_two_bytes_an_id() {
        let ids = connections(16, 1, 2_000);
        let bytes = round_trip(&ids);
        let per_id = bytes as f64 / (ids.len() - 1) as f64;
        eprintln!("16 connections, 1 id/ms each: {per_id:.3} bytes an id");
        assert!(per_id <= 2.0, "{per_id:.2} bytes an id");
    }

    #[test]
    fn one_connection_at_full_speed_costs_about_a_byte_an_id() {
        let ids = connections(1, 200, 50);
        let per_id = round_trip(&ids) as f64 / (ids.len() - 1) as f64;
        eprintln!("1 connection, 200 ids/ms: {per_id:.3} bytes an id");
        assert!(per_id <= 1.1, "{per_id:.2} bytes an id");
    }

    /// The encoding the blocks used before (plain LEB128 deltas of whole
    /// ids), for the comparison the test below prints.
    fn plain_deltas(ids: &[Ulid]) -> usize {
        let mut out = Vec::new();
        for pair in ids.windows(2) {
            crate::block_segment::put_varint(&mut out, pair[1].0 - pair[0].0);
        }
        out.len()
    }

    #[test]
    fn lanes_cost_a_tenth_of_plain_deltas_at_ordinary_rates() {
        // Before generators kept their counter running, each millisecond
        // drew a fresh random part: plain deltas between connections.
        let ids = connections(16, 1, 2_000);
        let lanes = round_trip(&ids) as f64 / (ids.len() - 1) as f64;
        let plain = plain_deltas(&ids) as f64 / (ids.len() - 1) as f64;
        eprintln!("16 connections, 1 id/ms: lanes {lanes:.2} bytes an id, plain deltas {plain:.2}");
        assert!(lanes * 5.0 < plain, "lanes {lanes:.2}, plain {plain:.2}");
    }

    #[test]
    fn more_lanes_than_the_table_holds_still_round_trip() {
        let ids = connections(MAX_LANES * 3, 1, 20);
        round_trip(&ids);
        packed_round_trip(&ids);
    }

    #[test]
    fn a_damaged_stream_is_an_error_not_a_panic() {
        let ids = connections(4, 2, 30);
        let mut out = Vec::new();
        encode(&ids, &mut out);
        for cut in 0..out.len() {
            let mut r = Bytes {
                buf: &out[..cut],
                pos: 0,
            };
            let mut back = Vec::new();
            assert!(decode(&mut r, ids[0], ids.len(), &mut back).is_err());
        }
        for at in 0..out.len() {
            let mut bad = out.clone();
            bad[at] ^= 0x55;
            let mut r = Bytes { buf: &bad, pos: 0 };
            let mut back = Vec::new();
            if decode(&mut r, ids[0], ids.len(), &mut back).is_ok() {
                assert!(back.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    proptest! {
        /// Any strictly increasing sequence round-trips, whatever its lanes.
        #[test]
        fn any_increasing_sequence_round_trips(
            first in any::<u128>(),
            steps in proptest::collection::vec(
                prop_oneof![
                    1u128..4,
                    1u128..(1 << 40),
                    (1u128 << 80)..(1u128 << 90),
                    1u128..u128::MAX >> 40,
                ],
                0..300,
            ),
        ) {
            let mut ids = vec![Ulid(first >> 8)];
            for step in steps {
                match ids.last().unwrap().0.checked_add(step) {
                    Some(next) => ids.push(Ulid(next)),
                    None => break,
                }
            }
            round_trip(&ids);
            packed_round_trip(&ids);
        }
    }
}
