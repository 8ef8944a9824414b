//! The history of a Jepsen-style run and its checker (the run itself is in
//! `jepsen.rs`).
//!
//! Every record a writer sends is a self-checking line:
//!
//! ```text
//! jepsen w<writer> b<batch> r<record> <filler> sum=<16 hex digits>
//! ```
//!
//! where `sum` is the FNV-1a 64 hash of everything before ` sum=`. The
//! writer, batch and record numbers make it unique; the filler (random
//! letters of random length) makes a shifted or cut line unlikely to hash
//! right. A line that does not parse or hash is `corrupt`; a line that
//! parses but that no writer sent (or not with this text) is `unsent`.

use std::collections::{BTreeMap, HashMap};

use ulid::Ulid;

/// A writer's batch: `(writer, batch)`, unique in a run.
pub type BatchKey = (u32, u64);
/// A record: `(writer, batch, record index)`.
pub type RecordKey = (u32, u64, u32);

/// The seeded generator of the run (SplitMix64): the nemesis and every
/// writer draw from one of these, so a seed replays the same choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// FNV-1a, 64 bits: the payload checksum (no dependency, and any change of
/// a byte changes it).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The payload of record `key`, with a filler of 1 to 48 letters from
/// `rng`.
pub fn payload(key: RecordKey, rng: &mut Rng) -> String {
    let (writer, batch, record) = key;
    let filler: String = (0..1 + rng.below(48))
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect();
    let text = format!("jepsen w{writer} b{batch} r{record} {filler}");
    let sum = fnv1a(text.as_bytes());
    format!("{text} sum={sum:016x}")
}

/// The key of a payload whose checksum holds; `None` if it does not parse
/// or hash (corrupt).
pub fn parse_payload(line: &str) -> Option<RecordKey> {
    let (text, sum) = line.rsplit_once(" sum=")?;
    if sum.len() != 16 || u64::from_str_radix(sum, 16).ok()? != fnv1a(text.as_bytes()) {
        return None;
    }
    let mut fields = text.strip_prefix("jepsen ")?.split(' ');
    let mut number = |prefix: char| fields.next()?.strip_prefix(prefix)?.parse::<u64>().ok();
    let writer = u32::try_from(number('w')?).ok()?;
    let batch = number('b')?;
    let record = u32::try_from(number('r')?).ok()?;
    Some((writer, batch, record))
}

/// What a writer learned about a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `OK` at `replicated`, with the first and last ids the ingester gave.
    Acked {
        /// The smallest id of the batch.
        first: Ulid,
        /// The largest id of the batch.
        last: Ulid,
    },
    /// An `ERR` reply: the ingester refused it.
    Failed(String),
    /// The connection broke or the ack did not come in time: it may or may
    /// not have been written.
    Unknown(String),
}

/// One batch sent: its payloads (in record order), where it went, and
/// what came back.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The ingester it was sent to (`role@ip`).
    pub ingester: String,
    /// Its records' payloads, record `i` at index `i`.
    pub payloads: Vec<String>,
    /// The reply, or what went wrong.
    pub outcome: Outcome,
}

impl Sent {
    /// Where it went and what came back, for a failure message.
    pub fn describe(&self) -> String {
        match &self.outcome {
            Outcome::Acked { first, last } => {
                format!("acked by {} with ids {first}..={last}", self.ingester)
            }
            Outcome::Failed(why) => format!("failed on {}: {why}", self.ingester),
            Outcome::Unknown(why) => format!("unknown on {}: {why}", self.ingester),
        }
    }
}

/// Every batch of the run.
pub type History = BTreeMap<BatchKey, Sent>;

/// What the checker counts. The first six must be zero.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Acked records absent from the strict query.
    pub lost: Vec<String>,
    /// Records the strict query returned more than once.
    pub duplicated: Vec<String>,
    /// Acked records held by fewer than RF stores (each queried alone).
    pub under_replicated: Vec<String>,
    /// Lines that do not parse or hash, or an acked record whose id is
    /// outside its batch's acked range.
    pub corrupt: Vec<String>,
    /// Intact lines no writer sent.
    pub unsent: Vec<String>,
    /// Neighbours of the strict query whose ids do not increase.
    pub out_of_order: Vec<String>,
    /// Batches not acked of which some records, not all, showed (allowed:
    /// nothing promised them; counted to see it happen).
    pub partial_unacked: usize,
    /// Records of failed or unknown batches that showed (allowed).
    pub unacked_seen: usize,
    /// Records acked.
    pub acked_records: usize,
}

impl Verdict {
    /// Whether every count that must be zero is.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.under_replicated.is_empty()
            && self.corrupt.is_empty()
            && self.unsent.is_empty()
            && self.out_of_order.is_empty()
    }

    /// Up to 5 samples of every non-empty failing count, one per line.
    pub fn samples(&self) -> String {
        let mut out = String::new();
        for (name, list) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("under_replicated", &self.under_replicated),
            ("corrupt", &self.corrupt),
            ("unsent", &self.unsent),
            ("out_of_order", &self.out_of_order),
        ] {
            for sample in list.iter().take(5) {
                out.push_str(&format!("  {name}: {sample}\n"));
            }
        }
        out
    }
}

/// The batch and record a line of a query stands for, if it is one the
/// history holds with exactly this text; counts it as corrupt or unsent
/// otherwise (with `whence` in the sample).
fn classify<'h>(
    history: &'h History,
    line: &str,
    whence: &str,
    verdict: &mut Verdict,
) -> Option<(RecordKey, &'h Sent)> {
    let Some(key @ (writer, batch, record)) = parse_payload(line) else {
        verdict.corrupt.push(format!("{whence}: {line:?}"));
        return None;
    };
    match history.get(&(writer, batch)) {
        Some(sent)
            if sent
                .payloads
                .get(record as usize)
                .is_some_and(|p| p == line) =>
        {
            Some((key, sent))
        }
        _ => {
            verdict.unsent.push(format!("{whence}: {line:?}"));
            None
        }
    }
}

/// Check the strict query's records (`(id, payload)` in the order
/// printed) and each store's own records (`(store, payloads)`) against the
/// history, with `rf` copies required of every acked record.
pub fn check(
    history: &History,
    strict: &[(Ulid, String)],
    stores: &[(String, Vec<String>)],
    rf: usize,
) -> Verdict {
    let mut verdict = Verdict::default();
    let acked = |sent: &Sent| matches!(sent.outcome, Outcome::Acked { .. });
    verdict.acked_records = history
        .values()
        .filter(|s| acked(s))
        .map(|s| s.payloads.len())
        .sum();

    // The strict query: order, then each record once, intact and sent.
    for pair in strict.windows(2) {
        if pair[1].0 <= pair[0].0 {
            verdict.out_of_order.push(format!(
                "{} {:?} after {} {:?}",
                pair[1].0, pair[1].1, pair[0].0, pair[0].1
            ));
        }
    }
    let mut seen: HashMap<RecordKey, usize> = HashMap::new();
    for (id, line) in strict {
        let Some((key, sent)) = classify(
            history,
            line,
            &format!("strict query, id {id}"),
            &mut verdict,
        ) else {
            continue;
        };
        let count = seen.entry(key).or_default();
        *count += 1;
        if *count == 2 {
            verdict.duplicated.push(format!("{id} {line:?}"));
        }
        if let Outcome::Acked { first, last } = sent.outcome
            && !(first <= *id && *id <= last)
        {
            verdict.corrupt.push(format!(
                "id {id} of {line:?} is outside its batch's acked range {first}..={last}"
            ));
        }
    }
    for (&(writer, batch), sent) in history {
        let shown = (0..sent.payloads.len() as u32)
            .filter(|&r| seen.contains_key(&(writer, batch, r)))
            .count();
        if acked(sent) {
            for (r, line) in sent.payloads.iter().enumerate() {
                if !seen.contains_key(&(writer, batch, r as u32)) {
                    verdict.lost.push(format!("{line:?} ({})", sent.describe()));
                }
            }
        } else {
            verdict.unacked_seen += shown;
            if shown > 0 && shown < sent.payloads.len() {
                verdict.partial_unacked += 1;
            }
        }
    }

    // Each store alone: copies of every acked record.
    let mut copies: HashMap<RecordKey, usize> = HashMap::new();
    for (store, lines) in stores {
        let mut held: Vec<RecordKey> = lines
            .iter()
            .filter_map(|line| classify(history, line, &format!("store {store}"), &mut verdict))
            .map(|(key, _)| key)
            .collect();
        held.sort_unstable();
        held.dedup();
        for key in held {
            *copies.entry(key).or_default() += 1;
        }
    }
    for (&(writer, batch), sent) in history.iter().filter(|(_, s)| acked(s)) {
        for (r, line) in sent.payloads.iter().enumerate() {
            let n = copies.get(&(writer, batch, r as u32)).copied().unwrap_or(0);
            if n < rf {
                verdict
                    .under_replicated
                    .push(format!("{line:?} on {n} of {} stores", stores.len()));
            }
        }
    }
    verdict
}

#[test]
fn the_checker_finds_lost_duplicated_corrupt_unsent_and_misordered_records() {
    let mut rng = Rng::new(7);
    let id = |n: u128| Ulid(n);
    let mut history = History::new();
    let batch = |w: u32, b: u64, n: u32, rng: &mut Rng| -> Vec<String> {
        (0..n).map(|r| payload((w, b, r), rng)).collect()
    };
    let acked = batch(0, 1, 3, &mut rng);
    let unknown = batch(0, 2, 2, &mut rng);
    history.insert(
        (0, 1),
        Sent {
            ingester: "i".into(),
            payloads: acked.clone(),
            outcome: Outcome::Acked {
                first: id(10),
                last: id(12),
            },
        },
    );
    history.insert(
        (0, 2),
        Sent {
            ingester: "i".into(),
            payloads: unknown.clone(),
            outcome: Outcome::Unknown("timeout".into()),
        },
    );
    for line in acked.iter().chain(&unknown) {
        assert!(parse_payload(line).is_some(), "{line}");
    }
    let all_stores = |lines: &[String]| {
        vec![
            ("a".to_string(), lines.to_vec()),
            ("b".to_string(), lines.to_vec()),
        ]
    };

    // Everything right: acked once each, one record of the unknown batch.
    let strict: Vec<(Ulid, String)> = vec![
        (id(10), acked[0].clone()),
        (id(11), acked[1].clone()),
        (id(12), acked[2].clone()),
        (id(20), unknown[0].clone()),
    ];
    let verdict = check(&history, &strict, &all_stores(&acked), 2);
    assert!(verdict.ok(), "{}", verdict.samples());
    assert_eq!(
        (
            verdict.acked_records,
            verdict.unacked_seen,
            verdict.partial_unacked
        ),
        (3, 1, 1)
    );

    // One record lost, one shown twice, one store short of a copy.
    let bad = vec![
        (id(10), acked[0].clone()),
        (id(11), acked[1].clone()),
        (id(11), acked[1].clone()),
    ];
    let stores = vec![
        ("a".to_string(), acked.clone()),
        ("b".to_string(), acked[..2].to_vec()),
    ];
    let verdict = check(&history, &bad, &stores, 2);
    assert_eq!(verdict.lost.len(), 1, "{verdict:?}");
    assert_eq!(verdict.duplicated.len(), 1, "{verdict:?}");
    assert_eq!(verdict.out_of_order.len(), 1, "{verdict:?}");
    assert_eq!(verdict.under_replicated.len(), 1, "{verdict:?}");

    // A flipped byte, a line never sent, an id outside the acked range.
    let mut flipped = acked[2].clone().into_bytes();
    flipped[8] ^= 1;
    let flipped = String::from_utf8(flipped).unwrap();
    let never = payload((3, 9, 0), &mut rng);
    let odd = vec![
        (id(10), acked[0].clone()),
        (id(11), acked[1].clone()),
        (id(12), flipped),
        (id(13), never),
        (id(14), acked[2].clone()),
    ];
    let verdict = check(&history, &odd, &all_stores(&acked), 2);
    assert_eq!(verdict.corrupt.len(), 2, "{verdict:?}");
    assert_eq!(verdict.unsent.len(), 1, "{verdict:?}");
    assert!(verdict.lost.is_empty() && verdict.duplicated.is_empty());
}
