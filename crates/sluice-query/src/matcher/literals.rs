//! What every match of a regex contains, as far as pruning can use it: its
//! longest mandatory literal, and a bounded set of literals one of which
//! every match contains (`status=500` to `status=599` for
//! `status=5[0-9]{2}`, `ERROR` or `FATAL` for `ERROR|FATAL`).
//!
//! # Why the sets are sound
//!
//! Only the *mandatory path* of the pattern counts: a match of the whole
//! holds a match of each part of a concatenation on it, of the body of a
//! repetition of at least one, and of a capture group's body. For any such
//! node, regex-syntax's prefix [`Extractor`] gives, when the result is
//! finite, literals one of which every match of the node *starts with*, so
//! contains. That holds for a run of consecutive parts of a concatenation
//! too (`5[0-9]{2} ` of `status=5[0-9]{2} `): every match of the whole
//! holds a match of the run. A run's literals are its parts' prefix
//! literals crossed as the extractor crosses a concatenation's (through
//! `Seq::cross_forward`, with the same limits; a literal stays exact only
//! while every part so far was matched exactly). An alternation gives the
//! union of a set from each branch, only when every branch has one. A set
//! is usable only when every literal has at least [`MIN_LITERAL`] bytes (a
//! shorter one rules nothing out) and there are at most [`MAX_SET`].
//!
//! Of the usable sets, the one whose shortest literal is longest wins,
//! then the one of fewer literals; a single literal longer than the
//! longest mandatory one becomes the required literal.
//!
//! Case-insensitive letters parse as classes of two or three (`[Ee]`,
//! `[Kk\u{212A}]`): their variants are extracted like any small class, up
//! to the bound. The term filter's keys are case-sensitive, so each variant
//! is probed: `-i error` probes its 32, a long `-i` literal the variants of
//! about eight of its letters.
//!
//! A class of more than ten members (`[a-z]`, `\d` and `\w`, which are
//! Unicode classes) is not expanded: `status=5\d{2}` gives only
//! `status=5`, where `status=5[0-9]{2}` gives its 100 literals.

use memchr::memmem;
use regex_syntax::hir::{
    Hir, HirKind,
    literal::{Extractor, Literal, Seq},
};

/// What every match of a regex contains, as far as pruning can use it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Required {
    /// This literal (the longest mandatory one).
    pub(super) one: Option<Vec<u8>>,
    /// One of these, sorted: two or more, each of [`MIN_LITERAL`] bytes or
    /// more, at most [`MAX_SET`], none holding another.
    pub(super) any_of: Option<Vec<Vec<u8>>>,
}

/// Shorter literals select too many records to be worth a prefilter, and
/// the term filter cannot prune with fewer than three bytes.
pub(super) const MIN_LITERAL: usize = 3;
/// The most literals of a set: `[0-9]{2}` (100) fits, and probing this
/// many per block stays cheap (`sluice_storage::term_filter::AnyOfProbe`).
pub(super) const MAX_SET: usize = 256;
/// The most parts of a concatenation one run crosses: crossing mostly
/// stops sooner, at the bound of literals or at a part with no finite
/// set, and this bounds the rest (empty parts such as `\b`).
const RUN_PARTS: usize = 16;
/// The extractor's longest literal (its default): a longer one is cut and
/// counts as a prefix.
const MAX_LITERAL_LEN: usize = 100;
/// The most extractions of groups, repetitions, alternations and
/// concatenations, and runs, for one pattern.
const MAX_EXTRACTIONS: usize = 256;

/// What every match of `pattern` contains: its longest literal of at least
/// [`MIN_LITERAL`] bytes (a literal node on the mandatory path, or a
/// single literal the extractor puts together, as `xabcdefy` of
/// `x(abcdef)y`), and the best set of two or more such literals one of
/// which every match holds (see the module docs), unless the required
/// literal holds one of them (the set then rules out no frame that the
/// required literal does not).
///
/// A pattern the parser rejects has nothing (the regex crate has rejected
/// it already).
pub(super) fn required_literals(pattern: &str, ignore_case: bool) -> Required {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .case_insensitive(ignore_case)
        // Like `regex::bytes`: a pattern may match bytes that are not UTF-8.
        .utf8(false)
        .build()
        .parse(pattern)
    else {
        return Required::default();
    };
    let mut sets = Sets::new();
    let _ = sets.best(&hir, true);
    let mut one = longest_mandatory(&hir);
    if let Some(single) = sets.single.take()
        && one.as_ref().is_none_or(|o| single.len() > o.len())
    {
        one = Some(single);
    }
    let any_of = sets.several.take().map(|set| set.literals).filter(|set| {
        // A set with a literal that the required one holds rules out no
        // frame the required literal does not.
        !one.as_ref()
            .is_some_and(|o| set.iter().any(|l| memmem::find(o, l).is_some()))
    });
    Required { one, any_of }
}

/// The longest literal of [`MIN_LITERAL`] bytes or more on the mandatory
/// path of `hir` (a literal node itself, not one the extractor puts
/// together).
fn longest_mandatory(hir: &Hir) -> Option<Vec<u8>> {
    match hir.kind() {
        HirKind::Literal(literal) if literal.0.len() >= MIN_LITERAL => Some(literal.0.to_vec()),
        HirKind::Capture(capture) => longest_mandatory(&capture.sub),
        HirKind::Repetition(repetition) if repetition.min >= 1 => {
            longest_mandatory(&repetition.sub)
        }
        HirKind::Concat(parts) => parts
            .iter()
            .filter_map(longest_mandatory)
            .max_by_key(Vec::len),
        _ => None,
    }
}

/// A usable literal set: sorted, deduplicated, no literal holding another
/// (a record with the longer one holds the shorter), each of
/// [`MIN_LITERAL`] bytes or more, at most [`MAX_SET`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiteralSet {
    literals: Vec<Vec<u8>>,
}

impl LiteralSet {
    /// The set of a finite sequence of prefix literals, if usable.
    fn of(seq: &Seq) -> Option<LiteralSet> {
        LiteralSet::new(
            seq.literals()?
                .iter()
                .map(|l| l.as_bytes().to_vec())
                .collect(),
        )
    }

    fn new(mut literals: Vec<Vec<u8>>) -> Option<LiteralSet> {
        if literals.is_empty() || literals.iter().any(|l| l.len() < MIN_LITERAL) {
            return None;
        }
        // Shortest first, so a literal is only checked against shorter
        // ones (a set of one length, as extractions mostly are, costs no
        // search).
        literals.sort_unstable_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        literals.dedup();
        let mut kept: Vec<Vec<u8>> = Vec::with_capacity(literals.len());
        for literal in literals {
            let held = kept
                .iter()
                .take_while(|k| k.len() < literal.len())
                .any(|k| memmem::find(&literal, k).is_some());
            if !held {
                kept.push(literal);
            }
        }
        if kept.len() > MAX_SET {
            return None;
        }
        kept.sort_unstable();
        Some(LiteralSet { literals: kept })
    }

    /// Which set prunes better, as a sortable key: the longer shortest
    /// literal (more of the term filter's keys each), then fewer literals.
    fn rank(&self) -> (usize, std::cmp::Reverse<usize>) {
        let shortest = self.literals.iter().map(Vec::len).min().unwrap_or(0);
        (shortest, std::cmp::Reverse(self.literals.len()))
    }
}

/// The better of two candidate sets (the first on a tie).
fn better(a: Option<LiteralSet>, b: Option<LiteralSet>) -> Option<LiteralSet> {
    match (a, b) {
        (Some(a), Some(b)) if b.rank() > a.rank() => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// Finds the best literal sets of a pattern, within a budget of
/// extractions.
struct Sets {
    extractor: Extractor,
    extractions_left: usize,
    /// The longest single literal found on the pattern's mandatory path.
    single: Option<Vec<u8>>,
    /// The best set of two or more literals found there.
    several: Option<LiteralSet>,
}

impl Sets {
    fn new() -> Sets {
        let mut extractor = Extractor::new();
        // Prefix extraction (the default); classes of up to 10 members
        // and repetitions up to 10 (the defaults); no more literals than a
        // set may have, none longer than `run` keeps.
        extractor
            .limit_total(MAX_SET)
            .limit_literal_len(MAX_LITERAL_LEN);
        Sets {
            extractor,
            extractions_left: MAX_EXTRACTIONS,
            single: None,
            several: None,
        }
    }

    /// The extractor's prefix literals of `hir`; none known (an infinite
    /// sequence) once the budget is spent. A literal, class or assertion
    /// costs nothing (the extractor does not walk it), so the parts of a
    /// long concatenation are all there for its runs.
    fn extract(&mut self, hir: &Hir) -> Seq {
        let leaf = matches!(
            hir.kind(),
            HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_)
        );
        if !leaf {
            match self.extractions_left.checked_sub(1) {
                Some(left) => self.extractions_left = left,
                None => return Seq::infinite(),
            }
        }
        self.extractor.extract(hir)
    }

    /// The prefix literals of the concatenation of the parts whose prefix
    /// literals are `parts`, as the extractor computes a concatenation's
    /// (each part's literals crossed onto the exact ones so far, within
    /// the same limits), without extracting or cloning the parts again.
    /// Crosses at most [`RUN_PARTS`] parts; `None` once the budget is
    /// spent.
    fn run(&mut self, parts: &[Seq]) -> Option<Seq> {
        self.extractions_left = self.extractions_left.checked_sub(1)?;
        let mut seq = Seq::singleton(Literal::exact(vec![]));
        for part in parts.iter().take(RUN_PARTS) {
            if seq.is_inexact() {
                return Some(seq);
            }
            let mut part = part.clone();
            if seq.max_cross_len(&part).is_some_and(|len| len > MAX_SET) {
                part.make_infinite();
            }
            seq.cross_forward(&mut part);
            seq.keep_first_bytes(MAX_LITERAL_LEN);
        }
        if parts.len() > RUN_PARTS {
            // Parts were left out: the literals are only prefixes.
            seq.make_inexact();
        }
        Some(seq)
    }

    /// The best of `best` and `candidate`; with `whole` (the node is on the
    /// whole pattern's mandatory path, so every match of the pattern holds
    /// one of the candidate's literals), the candidate is also kept as
    /// [`Sets::single`] or [`Sets::several`] if it beats them. The required
    /// literal and the set are both probed, so a set is kept even where a
    /// single literal ranks higher: the two narrow each other
    /// (` HTTP/1` and `1" 500 ` to `1" 599 ` for
    /// `HTTP/1.1" 5[0-9]{2} `).
    fn consider(
        &mut self,
        best: Option<LiteralSet>,
        candidate: Option<LiteralSet>,
        whole: bool,
    ) -> Option<LiteralSet> {
        if whole && let Some(set) = &candidate {
            match &set.literals[..] {
                [one] => {
                    if self.single.as_ref().is_none_or(|s| one.len() > s.len()) {
                        self.single = Some(one.clone());
                    }
                }
                _ => {
                    if self.several.as_ref().is_none_or(|s| set.rank() > s.rank()) {
                        self.several = Some(set.clone());
                    }
                }
            }
        }
        better(best, candidate)
    }

    /// The best set one of whose literals every match of `hir` holds, and
    /// the prefix literals of `hir` (for the runs of a concatenation that
    /// holds it). `whole`: `hir` is on the mandatory path of the whole
    /// pattern.
    fn best(&mut self, hir: &Hir, whole: bool) -> (Option<LiteralSet>, Seq) {
        if let HirKind::Concat(parts) = hir.kind() {
            let mut best = None;
            let mut seqs = Vec::with_capacity(parts.len());
            for part in parts {
                let (set, seq) = self.best(part, whole);
                best = better(best, set);
                seqs.push(seq);
            }
            // Every match holds a match of each run of consecutive parts
            // (a run of one part is that part, done above); the run from
            // the first part is the whole concatenation.
            let mut prefixes = Seq::infinite();
            for start in 0..parts.len().saturating_sub(1) {
                let Some(seq) = self.run(&seqs[start..]) else {
                    break;
                };
                // A set's shortest literal is the sequence's; one shorter
                // than the best so far cannot win (most runs of a long
                // pattern), and is not built.
                let shortest = seq.min_literal_len().unwrap_or(0);
                let beaten =
                    |set: &Option<LiteralSet>| set.as_ref().is_some_and(|s| s.rank().0 > shortest);
                let kept_beaten = match seq.len() {
                    Some(1) => self.single.as_ref().is_some_and(|s| s.len() >= shortest),
                    _ => beaten(&self.several),
                };
                if !beaten(&best) || (whole && !kept_beaten) {
                    best = self.consider(best, LiteralSet::of(&seq), whole);
                }
                if start == 0 {
                    prefixes = seq;
                }
            }
            return (best, prefixes);
        }
        let prefixes = self.extract(hir);
        let mut best = self.consider(None, LiteralSet::of(&prefixes), whole);
        match hir.kind() {
            HirKind::Capture(capture) => {
                let (sub, _) = self.best(&capture.sub, whole);
                best = better(best, sub);
            }
            HirKind::Repetition(repetition) if repetition.min >= 1 => {
                let (sub, _) = self.best(&repetition.sub, whole);
                best = better(best, sub);
            }
            HirKind::Alternation(branches) => {
                // Each branch's best set, when every branch has one and
                // they add up to few enough. Within a branch, a set holds
                // for that branch's matches only.
                let mut union = Some(Vec::new());
                for branch in branches {
                    match (self.best(branch, false).0, union.as_mut()) {
                        (Some(set), Some(u)) if u.len() + set.literals.len() <= MAX_SET => {
                            u.extend(set.literals)
                        }
                        _ => {
                            union = None;
                            break;
                        }
                    }
                }
                let union = union.and_then(LiteralSet::new);
                best = self.consider(best, union, whole);
            }
            _ => {}
        }
        (best, prefixes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(literals: &[Vec<u8>]) -> Vec<String> {
        literals
            .iter()
            .map(|l| String::from_utf8(l.clone()).unwrap())
            .collect()
    }

    fn any_of(pattern: &str, ignore_case: bool) -> Option<Vec<String>> {
        required_literals(pattern, ignore_case)
            .any_of
            .map(|set| strings(&set))
    }

    fn one(pattern: &str) -> Option<String> {
        required_literals(pattern, false)
            .one
            .map(|l| String::from_utf8(l).unwrap())
    }

    #[test]
    fn a_digit_class_expands_to_every_number() {
        let want: Vec<String> = (500..600).map(|s| format!("status={s}")).collect();
        assert_eq!(any_of("status=5[0-9]{2}", false), Some(want));
        assert_eq!(one("status=5[0-9]{2}").as_deref(), Some("status=5"));
        // `\d` is every Unicode digit, hundreds: not expanded.
        assert_eq!(any_of("status=5\\d{2}", false), None);
        assert_eq!(one("status=5\\d{2}").as_deref(), Some("status=5"));
        // The number with a separator on each side, which the term filter
        // indexes; the digits after are not expanded (1,000 literals).
        let want: Vec<String> = (500..600).map(|s| format!(" {s} ")).collect();
        assert_eq!(any_of(" 5[0-9]{2} [0-9]+", false), Some(want.clone()));
        assert_eq!(any_of("\" 5[0-9]{2} \"", false).map(|s| s.len()), Some(100));
        // A set is kept beside a required literal that ranks higher: both
        // are probed, and narrow each other (`.` is any byte).
        let want: Vec<String> = (500..600).map(|s| format!("1\" {s} ")).collect();
        let pattern = "GET [^ ]+ HTTP/1.1\" 5[0-9]{2} [0-9]+";
        assert_eq!(any_of(pattern, false), Some(want));
        assert_eq!(one(pattern).as_deref(), Some(" HTTP/1"));
    }

    #[test]
    fn alternations_give_their_branches() {
        assert_eq!(
            any_of("(ERROR|FATAL)", false),
            Some(vec!["ERROR".into(), "FATAL".into()])
        );
        assert_eq!(
            any_of("ERROR|WARN", false),
            Some(vec!["ERROR".into(), "WARN".into()])
        );
        // Of two alternations, the one whose shortest literal is longer.
        assert_eq!(
            any_of("(error|fatal) .*(timeout|refused)", false),
            Some(vec!["refused".into(), "timeout".into()])
        );
        // A branch's own best set stands for it.
        assert_eq!(
            any_of("(level=(ERROR|FATAL)|status=50[34])", false),
            Some(vec![
                "level=ERROR".into(),
                "level=FATAL".into(),
                "status=503".into(),
                "status=504".into(),
            ])
        );
        // What follows the alternation lengthens each literal.
        assert_eq!(
            any_of("(ERROR|WARN) request failed", false),
            Some(vec![
                "ERROR request failed".into(),
                "WARN request failed".into()
            ])
        );
        assert_eq!(
            one("(ERROR|WARN) request failed").as_deref(),
            Some(" request failed")
        );
        // A literal that holds another adds nothing.
        assert_eq!(
            any_of("(error|errors|fatal)", false),
            Some(vec!["error".into(), "fatal".into()])
        );
        // A branch without a literal, a too-short one or an optional
        // alternation gives nothing.
        for pattern in ["ERROR|[0-9]+", "ERROR|OK", "(ERROR|WARN)?x"] {
            assert_eq!(
                required_literals(pattern, false),
                Required::default(),
                "{pattern}"
            );
        }
    }

    #[test]
    fn a_long_expansion_is_cut_at_the_bound() {
        // 1,000 numbers: the extractor keeps 100 prefixes of two digits.
        let set = any_of("deadline exceeded after 4[0-9]{3}ms", false).unwrap();
        assert_eq!(set.len(), 100);
        assert!(set[0] == "deadline exceeded after 400" && set[99].ends_with("499"));
        assert_eq!(
            one("deadline exceeded after 4[0-9]{3}ms").as_deref(),
            Some("deadline exceeded after 4")
        );
        // Never more than the bound.
        for pattern in [
            "[0-9]{3}[0-9]{3}xyz",
            "x[0-9][0-9][0-9][0-9]",
            "(a|b|c|d|e|f|g|h)(a|b|c|d|e|f|g|h)(a|b|c|d|e|f|g|h)",
        ] {
            let set = required_literals(pattern, false).any_of;
            assert!(set.is_none_or(|s| s.len() <= MAX_SET), "{pattern}");
        }
        // A pattern of many parts stays within the budget of extractions.
        let long: String = (0..2_000).map(|i| format!("(x{i}|y)")).collect();
        let required = required_literals(&long, false);
        assert!(required.any_of.is_none_or(|s| s.len() <= MAX_SET));
    }

    /// A run crosses at most `RUN_PARTS` parts; the literals of a longer
    /// one are prefixes, never exact (a concatenation that held it would
    /// otherwise cross the next part onto them).
    #[test]
    fn a_run_of_many_parts_gives_prefixes() {
        let mut sets = Sets::new();
        let parts: Vec<Seq> = (b'a'..=b'z')
            .map(|b| Seq::singleton(Literal::exact(vec![b])))
            .collect();
        let seq = sets.run(&parts[..RUN_PARTS]).unwrap();
        assert!(seq.is_exact());
        let seq = sets.run(&parts).unwrap();
        assert!(seq.is_inexact());
        assert_eq!(seq.literals().unwrap()[0].as_bytes(), b"abcdefghijklmnop");
        // And what a concatenation of them requires.
        let pattern: String = (b'a'..=b'z').map(|b| format!("({})", b as char)).collect();
        assert_eq!(
            required_literals(&pattern, false).one.as_deref(),
            Some(&b"abcdefghijklmnop"[..])
        );
    }

    #[test]
    fn case_insensitive_letters_give_their_variants() {
        let set = any_of("error", true).unwrap();
        assert_eq!(set.len(), 32);
        assert!(set.contains(&"error".into()) && set.contains(&"ERROR".into()));
        assert!(set.contains(&"eRrOr".into()));
        // A long one: the first letters' variants, at most the bound.
        let set = any_of("connection refused", true).unwrap();
        assert!(set.len() <= MAX_SET && set.iter().all(|l| l.len() >= 8));
        let lower = set
            .iter()
            .find(|l| "connection refused".contains(l.as_str()));
        assert!(lower.is_some(), "{set:?}");
        // No letters: the literal itself.
        assert_eq!(
            required_literals("12:00:00", true).one.as_deref(),
            Some(&b"12:00:00"[..])
        );
    }

    #[test]
    fn regexes_yield_their_longest_mandatory_literal() {
        assert_eq!(
            one("(GET|PUT) /api/v1/users").as_deref(),
            Some(" /api/v1/users")
        );
        assert_eq!(one("(?:timeout)+ after").as_deref(), Some("timeout"));
        // Consecutive groups make one literal.
        assert_eq!(one("x(abcdef)y").as_deref(), Some("xabcdefy"));
        assert_eq!(one("(abc)(def)").as_deref(), Some("abcdef"));
        assert_eq!(any_of("(abc)(def)[0-9]+", false).map(|s| s.len()), Some(10));
        // Nothing mandatory, too short, or case-insensitive: no literal.
        assert_eq!(one("ERROR|WARN"), None);
        assert_eq!(one("(ERROR|WARN) x(y|zz)"), None);
        assert_eq!(one("(timeout)?ab"), None);
        assert_eq!(one("(timeout)*x"), None);
        assert_eq!(one("[0-9]+ms"), None);
        assert_eq!(required_literals("status", true).one, None);
        assert_eq!(one("(?i)status"), None);
    }
}
