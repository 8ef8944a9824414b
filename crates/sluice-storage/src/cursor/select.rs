//! How a batch file's records are selected for a query: by a literal, by
//! a text matcher over each body as a whole, or by a matcher's required
//! literal and then the matcher on each payload that holds it. Workers run
//! these over whole batch bodies, walking record headers only between
//! hits, and copy a sparse selection out ([`Selection`]).

use std::sync::Arc;

use memchr::memmem;
use sluice_record::{CodecError, record_bounds};

use crate::block_segment::TextMatcher;

/// What selects a batch's records.
#[derive(Clone)]
pub(super) enum Selector {
    Literal(Arc<memmem::Finder<'static>>),
    Text(Arc<dyn TextMatcher>),
    /// A text matcher with a [required
    /// literal](TextMatcher::required_literal): the
    /// literal is searched for, and the records that hold it are decided by
    /// the matcher on their payload.
    LiteralThenPayload(Arc<dyn TextMatcher>),
}

impl Selector {
    /// The starts of the records of `body` (`count` of them) it selects,
    /// into `out`, ascending. With the body's record `index` (see
    /// [`index_records`]), the walk to each hit starts at the last indexed
    /// record at or before it.
    pub(super) fn select(
        &self,
        body: &[u8],
        count: u32,
        index: Option<&[u32]>,
        out: &mut Vec<usize>,
    ) -> Result<(), CodecError> {
        out.clear();
        let walk = Walk {
            body,
            count,
            index,
            at: 0,
            left: count,
        };
        match self {
            Selector::Literal(finder) => select_by_literal(walk, finder, None, out),
            Selector::Text(matcher) => select_by_text(walk, &**matcher, out),
            Selector::LiteralThenPayload(matcher) => {
                let finder = matcher
                    .required_literal()
                    .expect("the selector is made only for a matcher with a required literal");
                select_by_literal(walk, finder, Some(&**matcher), out)
            }
        }
    }
}

/// Records between two entries of a batch's record index.
pub const RECORD_INDEX_STRIDE: usize = 16;

/// Where records 0, [`RECORD_INDEX_STRIDE`], 2 × that, … of a verified
/// batch body start (a body is at most 128 MiB, so an offset fits 32 bits).
/// A search of a body without matches walks none of its record headers,
/// but one with a match every hundred records walks nearly all of them,
/// one dependent load after another: a fifth of the workers' time for a
/// literal on 1% of fresh lines (BENCHMARKS.md, "Design measurements").
/// With the index, it walks at most this many to each hit.
pub(super) fn index_records(body: &[u8], count: u32) -> Result<Vec<u32>, CodecError> {
    let mut index = Vec::with_capacity(count as usize / RECORD_INDEX_STRIDE + 1);
    let mut at = 0;
    for i in 0..count as usize {
        if i % RECORD_INDEX_STRIDE == 0 {
            index.push(u32::try_from(at).expect("a batch body is below 4 GiB"));
        }
        at = record_bounds(body, at)?.1;
    }
    Ok(index)
}

/// A walk over a body's record headers, from record to record up to each
/// hit of a search, by way of the record index where there is one.
struct Walk<'a> {
    body: &'a [u8],
    count: u32,
    index: Option<&'a [u32]>,
    /// Where the next record to decide starts, and how many are left.
    at: usize,
    left: u32,
}

impl Walk<'_> {
    /// Move on to the last indexed record at or before `hit` when that is
    /// ahead: the records before it hold no hit (every occurrence before
    /// `hit` was decided already), and the record holding `hit` starts at
    /// or after it.
    fn jump_towards(&mut self, hit: usize) {
        let Some(index) = self.index else {
            return;
        };
        let k = index.partition_point(|&start| start as usize <= hit);
        if let Some(&start) = index.get(k.wrapping_sub(1))
            && start as usize > self.at
        {
            self.at = start as usize;
            self.left = self.count - ((k - 1) * RECORD_INDEX_STRIDE) as u32;
        }
    }

    /// The next record: where it starts, where its payload starts, and
    /// where it ends; `None` past the last one.
    fn next(&mut self) -> Result<Option<(usize, usize, usize)>, CodecError> {
        if self.left == 0 {
            return Ok(None);
        }
        let (payload_start, end) = record_bounds(self.body, self.at)?;
        let start = self.at;
        self.left -= 1;
        self.at = end;
        Ok(Some((start, payload_start, end)))
    }

    /// Decide the record at `start` again (the one [`next`](Self::next)
    /// returned last).
    fn back_to(&mut self, start: usize) {
        self.at = start;
        self.left += 1;
    }
}

/// The records of the walk's body whose payload holds `finder` (and,
/// with `verify`, that it matches on that payload alone). Occurrences are
/// found overlapping: a non-overlapping search could let an occurrence
/// that starts in a record header hide one wholly inside the payload after
/// it. Headers are walked only up to the last occurrence, reading just
/// their lengths.
fn select_by_literal(
    mut walk: Walk<'_>,
    finder: &memmem::Finder<'_>,
    verify: Option<&dyn TextMatcher>,
    out: &mut Vec<usize>,
) -> Result<(), CodecError> {
    let body = walk.body;
    let needle = finder.needle().len();
    let mut from = 0usize;
    while let Some(found) = finder.find(&body[from..]) {
        let hit = from + found;
        walk.jump_towards(hit);
        // Walk to the record whose payload could hold the hit.
        loop {
            let Some((start, payload_start, next)) = walk.next()? else {
                return Ok(());
            };
            if next < hit + needle {
                continue;
            }
            if hit >= payload_start {
                if verify.is_none_or(|m| m.is_match(&body[payload_start..next])) {
                    out.push(start);
                }
                from = next;
            } else {
                // The hit starts in this record's header: the next
                // occurrence may still lie in its payload.
                from = hit + 1;
                walk.back_to(start);
            }
            break;
        }
    }
    Ok(())
}

/// The records of the walk's body that `matcher` matches. A match inside
/// a payload selects its record; a match that starts in a record's header
/// or runs past its payload is checked again on the payload alone; either
/// way the search goes on after that payload. Without look-around, a
/// payload that matches alone has a match starting at or before its
/// match's position in the body, so every record is decided as a
/// per-record match would decide it.
fn select_by_text(
    mut walk: Walk<'_>,
    matcher: &dyn TextMatcher,
    out: &mut Vec<usize>,
) -> Result<(), CodecError> {
    let body = walk.body;
    let mut from = 0usize;
    'search: while let Some((start, end)) = matcher.find_at(body, from) {
        walk.jump_towards(start);
        loop {
            let Some((record_start, payload_start, next)) = walk.next()? else {
                break 'search;
            };
            if next < start {
                continue;
            }
            if (start >= payload_start && end <= next)
                || matcher.is_match(&body[payload_start..next])
            {
                out.push(record_start);
            }
            from = next;
            break;
        }
    }
    Ok(())
}

/// The records a worker selected of one batch: where each starts, in the
/// batch body or, when `gathered`, in that copy of them.
pub(super) struct Selection {
    pub(super) starts: Vec<usize>,
    pub(super) gathered: Option<Vec<u8>>,
}

/// A batch's selected records are copied out by the worker when at most
/// one in this many of its records is selected.
///
/// The worker has just searched the body, so a selected record is in its
/// caches; the reader comes to it only after the workers have searched
/// megabytes more, and would wait on memory for each record twice, to
/// decode it and to copy it into an answer frame. A copy made by the
/// worker is cheap, and the reader then reads the records one after
/// another. Where most records are selected, the reader's reads are
/// sequential anyway and a copy would only double the bytes moved.
const GATHER_ONE_IN: usize = 4;

impl Selection {
    /// The records of `body` (`count` of them) starting at `starts`,
    /// copied out if they are few enough (see [`GATHER_ONE_IN`]).
    pub(super) fn gather(
        body: &[u8],
        count: u32,
        mut starts: Vec<usize>,
    ) -> Result<Self, CodecError> {
        if starts.is_empty() || starts.len() * GATHER_ONE_IN > count as usize {
            return Ok(Selection {
                starts,
                gathered: None,
            });
        }
        let mut gathered = Vec::with_capacity(starts.len() * (body.len() / count as usize + 1));
        for start in &mut starts {
            let (_, end) = record_bounds(body, *start)?;
            let at = gathered.len();
            gathered.extend_from_slice(&body[*start..end]);
            *start = at;
        }
        Ok(Selection {
            starts,
            gathered: Some(gathered),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sluice_record::{BatchEncoder, Record, Ulid, batch::BATCH_HEADER_BYTES};

    use super::*;

    /// A batch body of `payloads`, each under a topic of 1 to 3 letters.
    fn body_of(payloads: &[String]) -> Vec<u8> {
        let mut encoder = BatchEncoder::new();
        encoder.begin();
        for (i, payload) in payloads.iter().enumerate() {
            encoder.push(Record {
                id: Ulid::from_parts(1_000 + i as u64, i as u128),
                flags: 0,
                topic: [&b"ab"[..], b"x", b"bab"][i % 3],
                payload: payload.as_bytes(),
            });
        }
        encoder.finish()[BATCH_HEADER_BYTES..].to_vec()
    }

    /// A text matcher of a regex, with its longest literal as required.
    struct Regex(regex::bytes::Regex, Option<memmem::Finder<'static>>);

    impl TextMatcher for Regex {
        fn find_at(&self, text: &[u8], start: usize) -> Option<(usize, usize)> {
            self.0.find_at(text, start).map(|m| (m.start(), m.end()))
        }
        fn is_match(&self, payload: &[u8]) -> bool {
            self.0.is_match(payload)
        }
        fn looks_around(&self) -> bool {
            false
        }
        fn required_literal(&self) -> Option<&memmem::Finder<'static>> {
            self.1.as_ref()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Walking from the record index selects exactly what walking every
        /// header from the body's start selects, for a literal (hits in
        /// headers and topics included), a regex searched over the body, and
        /// a regex decided on the payloads that hold its literal; and either
        /// selects what a per-record check selects.
        #[test]
        fn walking_from_the_index_selects_what_a_full_walk_selects(
            payloads in prop::collection::vec("[abx ]{0,40}", 1..200),
        ) {
            let body = body_of(&payloads);
            let count = payloads.len() as u32;
            let index = index_records(&body, count).unwrap();
            prop_assert_eq!(index.len(), payloads.len().div_ceil(RECORD_INDEX_STRIDE));
            let regex = |pattern: &str, literal: Option<&str>| -> Arc<dyn TextMatcher> {
                Arc::new(Regex(
                    regex::bytes::Regex::new(pattern).unwrap(),
                    literal.map(|l| memmem::Finder::new(l.as_bytes()).into_owned()),
                ))
            };
            let selectors = [
                (Selector::Literal(Arc::new(memmem::Finder::new("ab").into_owned())), "ab"),
                (Selector::Literal(Arc::new(memmem::Finder::new("bab").into_owned())), "bab"),
                (Selector::Text(regex("ab+x", None)), "ab+x"),
                (Selector::LiteralThenPayload(regex("x ?bab?$", Some("x"))), "x ?bab?$"),
            ];
            for (selector, pattern) in selectors {
                let want: Vec<usize> = {
                    let check = regex::bytes::Regex::new(pattern).unwrap();
                    let mut at = 0;
                    let mut starts = Vec::new();
                    for payload in &payloads {
                        let (_, next) = record_bounds(&body, at).unwrap();
                        if check.is_match(payload.as_bytes()) {
                            starts.push(at);
                        }
                        at = next;
                    }
                    starts
                };
                let (mut full, mut indexed) = (Vec::new(), Vec::new());
                selector.select(&body, count, None, &mut full).unwrap();
                selector.select(&body, count, Some(&index), &mut indexed).unwrap();
                prop_assert_eq!(&full, &want, "pattern {:?}, full walk", pattern);
                prop_assert_eq!(&indexed, &want, "pattern {:?}, from the index", pattern);
            }
        }
    }
}
