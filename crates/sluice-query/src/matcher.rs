//! Matching payloads.

use std::sync::Arc;

use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};
use regex_syntax::hir::{Hir, HirKind};

/// The query's pattern (a regex, or a literal with `-i`) does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regex {pattern:?}: {source}")]
pub struct MatcherError {
    pattern: String,
    #[source]
    source: regex::Error,
}

/// What a query looks for in each payload.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The empty query: every record.
    All,
    /// Shared so that segment cursors can prefilter whole batches with it.
    Literal(Arc<memmem::Finder<'static>>),
    /// `required` is the longest literal every match contains, when the
    /// pattern has one: cursors prune blocks and find candidates with it,
    /// and run the regex only on records that hold it.
    ///
    /// `any_of` is set when every match holds one of a few literals (as
    /// `ERROR|FATAL` does): cursors also prune blocks that can hold none
    /// of them.
    Regex {
        /// The compiled pattern, case-insensitive with `-i`.
        regex: Regex,
        /// The same pattern with `^` and `$` at line starts and ends, for
        /// searching many newline-separated payloads at once (see
        /// [`Matcher::text_matcher`]).
        lines: Regex,
        /// The longest literal every match contains, if any.
        required: Option<Arc<memmem::Finder<'static>>>,
        /// Literals one of which every match contains, if any.
        any_of: Option<Arc<[Vec<u8>]>>,
    },
    /// A chain of line filters that all must pass (LogQL's `|= "a" != "b"`):
    /// built by [`Matcher::chain`].
    Chain(Arc<Chain>),
}

/// Line filters ANDed together: every `must` matcher matches and no
/// `must_not` matcher does.
#[derive(Debug)]
pub struct Chain {
    /// Matchers every payload must match.
    pub must: Vec<Matcher>,
    /// Matchers no payload may match.
    pub must_not: Vec<Matcher>,
}

impl Matcher {
    /// Build a matcher. A literal with `ignore_case` becomes an escaped,
    /// case-insensitive regex.
    pub fn new(query: &str, regex: bool, ignore_case: bool) -> Result<Matcher, MatcherError> {
        if query.is_empty() {
            return Ok(Matcher::All);
        }
        if !regex && !ignore_case {
            return Ok(Matcher::Literal(Arc::new(
                memmem::Finder::new(query.as_bytes()).into_owned(),
            )));
        }
        let pattern = if regex {
            query.to_string()
        } else {
            regex::escape(query)
        };
        let build = |multi_line: bool| {
            RegexBuilder::new(&pattern)
                .case_insensitive(ignore_case)
                .multi_line(multi_line)
                .size_limit(64 << 20)
                .build()
                .map_err(|source| MatcherError {
                    pattern: query.to_string(),
                    source,
                })
        };
        let compiled = build(false)?;
        let lines = build(true)?;
        let Required { one, any_of } = required_literals(&pattern, ignore_case);
        let required = one.map(|literal| Arc::new(memmem::Finder::new(&literal).into_owned()));
        let any_of = any_of.map(Into::into);
        Ok(Matcher::Regex {
            regex: compiled,
            lines,
            required,
            any_of,
        })
    }

    /// Matchers ANDed, with negated ones: the simplest matcher that says
    /// the same (`All` for nothing to check, the one matcher for one
    /// positive one), else a [`Chain`]. `All`s among `must` are dropped.
    pub fn chain(must: Vec<Matcher>, must_not: Vec<Matcher>) -> Matcher {
        let mut must: Vec<Matcher> = must
            .into_iter()
            .filter(|m| !matches!(m, Matcher::All))
            .collect();
        match (must.len(), must_not.len()) {
            (0, 0) => Matcher::All,
            (1, 0) => must.remove(0),
            _ => Matcher::Chain(Arc::new(Chain { must, must_not })),
        }
    }

    /// A literal every match contains, when there is one (for a chain,
    /// the longest of its positive matchers').
    pub fn required_literal(&self) -> Option<&Arc<memmem::Finder<'static>>> {
        match self {
            Matcher::Literal(finder) => Some(finder),
            Matcher::Regex { required, .. } => required.as_ref(),
            Matcher::All => None,
            Matcher::Chain(chain) => chain
                .must
                .iter()
                .filter_map(Matcher::required_literal)
                .max_by_key(|f| f.needle().len()),
        }
    }

    /// Literals one of which every match contains, from an alternation
    /// (for a chain, its first positive matcher's that has them).
    pub fn required_any_of(&self) -> Option<&Arc<[Vec<u8>]>> {
        match self {
            Matcher::Regex { any_of, .. } => any_of.as_ref(),
            Matcher::Literal(_) | Matcher::All => None,
            Matcher::Chain(chain) => chain.must.iter().find_map(Matcher::required_any_of),
        }
    }

    /// Whether `payload` matches: holds the literal, or matches the regex.
    #[inline]
    pub fn is_match(&self, payload: &[u8]) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Literal(finder) => finder.find(payload).is_some(),
            Matcher::Regex { regex, .. } => regex.is_match(payload),
            Matcher::Chain(chain) => {
                chain.must.iter().all(|m| m.is_match(payload))
                    && !chain.must_not.iter().any(|m| m.is_match(payload))
            }
        }
    }
}

/// A regex searched over a block's text as a whole (see
/// [`Matcher::text_matcher`]).
struct LinesRegex {
    lines: Regex,
    payload: Regex,
    looks_around: bool,
}

impl sluice_storage::block_segment::TextMatcher for LinesRegex {
    fn find_at(&self, text: &[u8], start: usize) -> Option<(usize, usize)> {
        self.lines
            .find_at(text, start)
            .map(|m| (m.start(), m.end()))
    }

    fn is_match(&self, payload: &[u8]) -> bool {
        self.payload.is_match(payload)
    }

    fn looks_around(&self) -> bool {
        self.looks_around
    }
}

impl Matcher {
    /// For a regex (or a literal with `-i`): a matcher that block cursors
    /// run over each decoded block's text as a whole, as grep does, rather
    /// than once per record.
    pub fn text_matcher(&self) -> Option<Arc<dyn sluice_storage::block_segment::TextMatcher>> {
        match self {
            Matcher::Regex { regex, lines, .. } => Some(Arc::new(LinesRegex {
                lines: lines.clone(),
                payload: regex.clone(),
                looks_around: looks_around(regex.as_str()),
            })),
            Matcher::All | Matcher::Literal(_) | Matcher::Chain(_) => None,
        }
    }
}

/// Whether `pattern` has an assertion about the bytes around a position
/// (`^`, `$`, `\b`, `\B`); a pattern the parser rejects counts as one.
fn looks_around(pattern: &str) -> bool {
    regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .map_or(true, |hir| !hir.properties().look_set().is_empty())
}

/// What every match of a regex contains, as far as pruning can use it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Required {
    /// This literal (the longest mandatory one).
    one: Option<Vec<u8>>,
    /// One of these (from an alternation), sorted.
    any_of: Option<Vec<Vec<u8>>>,
}

/// What every match of `pattern` contains: its longest mandatory literal
/// of at least [`MIN_REQUIRED_LITERAL`] bytes, and the smallest set of
/// two or more such literals one of which every match holds.
///
/// Sound by construction: only the mandatory path of the pattern counts
/// (parts of a concatenation, the body of a repetition of at least one, a
/// capture group), and an alternation counts only when each of its
/// branches has a literal, giving "one of these". Classes and optional
/// parts contribute nothing, and so does case-insensitive matching, whose
/// letters parse as classes. A pattern the parser rejects has nothing (the
/// regex crate has rejected it already).
fn required_literals(pattern: &str, ignore_case: bool) -> Required {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .case_insensitive(ignore_case)
        // Like `regex::bytes`: a pattern may match bytes that are not UTF-8.
        .utf8(false)
        .build()
        .parse(pattern)
    else {
        return Required::default();
    };
    let mut clauses = Vec::new();
    mandatory_clauses(&hir, &mut clauses);
    let (singles, alternations): (Vec<_>, Vec<_>) = clauses.into_iter().partition(|c| c.len() == 1);
    Required {
        one: singles
            .into_iter()
            .flatten()
            .max_by_key(|literal| literal.len()),
        any_of: best_clause(alternations),
    }
}

/// Shorter literals select too many records to be worth a prefilter, and
/// the term filter cannot prune with fewer than three bytes.
const MIN_REQUIRED_LITERAL: usize = 3;
/// An alternation of more literals than this prunes too little to probe.
const MAX_ANY_OF: usize = 16;

/// The clause that prunes best: the fewest literals, then the longest
/// shortest literal.
fn best_clause(clauses: Vec<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    clauses.into_iter().min_by_key(|c| {
        let shortest = c.iter().map(Vec::len).min().unwrap_or(0);
        (c.len(), std::cmp::Reverse(shortest))
    })
}

/// Pushes onto `out` clauses that every match of `hir` satisfies, each a
/// set of literals (every one at least [`MIN_REQUIRED_LITERAL`] bytes) one
/// of which the match contains.
fn mandatory_clauses(hir: &Hir, out: &mut Vec<Vec<Vec<u8>>>) {
    match hir.kind() {
        HirKind::Literal(literal) if literal.0.len() >= MIN_REQUIRED_LITERAL => {
            out.push(vec![literal.0.to_vec()])
        }
        HirKind::Capture(capture) => mandatory_clauses(&capture.sub, out),
        HirKind::Repetition(repetition) if repetition.min >= 1 => {
            mandatory_clauses(&repetition.sub, out)
        }
        HirKind::Concat(parts) => {
            for part in parts {
                mandatory_clauses(part, out);
            }
        }
        HirKind::Alternation(branches) => {
            // Each branch implies its best clause, so the whole implies
            // their union.
            let mut union: Vec<Vec<u8>> = Vec::new();
            for branch in branches {
                let mut clauses = Vec::new();
                mandatory_clauses(branch, &mut clauses);
                let Some(clause) = best_clause(clauses) else {
                    return;
                };
                union.extend(clause);
            }
            union.sort();
            union.dedup();
            if union.len() <= MAX_ANY_OF {
                out.push(union);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_regex_and_case() {
        let lit = Matcher::new("ERROR", false, false).unwrap();
        assert!(lit.is_match(b"x ERROR y") && !lit.is_match(b"error"));
        let ci = Matcher::new("a.b", false, true).unwrap();
        assert!(ci.is_match(b"A.B") && !ci.is_match(b"axb"));
        let re = Matcher::new("status=5[0-9]{2}", true, false).unwrap();
        assert!(re.is_match(b"status=503") && !re.is_match(b"status=404"));
        assert!(Matcher::new("(", true, false).is_err());
        assert!(Matcher::new("", false, false).unwrap().is_match(b""));
        let binary = Matcher::new("\u{fffd}", false, false).unwrap();
        assert!(!binary.is_match(b"\xff"));
    }

    fn required(pattern: &str, ignore_case: bool) -> Option<String> {
        let matcher = Matcher::new(pattern, true, ignore_case).unwrap();
        matcher
            .required_literal()
            .map(|f| String::from_utf8(f.needle().to_vec()).unwrap())
    }

    #[test]
    fn regexes_yield_their_longest_mandatory_literal() {
        assert_eq!(
            required("status=5[0-9]{2}", false).as_deref(),
            Some("status=5")
        );
        assert_eq!(
            required("(GET|PUT) /api/v1/users", false).as_deref(),
            Some(" /api/v1/users")
        );
        assert_eq!(
            required("(?:timeout)+ after", false).as_deref(),
            Some("timeout")
        );
        assert_eq!(required("x(abcdef)y", false).as_deref(), Some("abcdef"));
        // Nothing mandatory, too short, or case-insensitive: no literal.
        assert_eq!(required("ERROR|WARN", false), None);
        assert_eq!(required("(ERROR|WARN) x(y|zz)", false), None);
        assert_eq!(required("(timeout)?ab", false), None);
        assert_eq!(required("(timeout)*x", false), None);
        assert_eq!(required("[0-9]+ms", false), None);
        assert_eq!(required("status", true), None);
        assert_eq!(required("(?i)status", false), None);
    }

    fn any_of(pattern: &str) -> Option<Vec<String>> {
        let matcher = Matcher::new(pattern, true, false).unwrap();
        matcher.required_any_of().map(|literals| {
            literals
                .iter()
                .map(|l| String::from_utf8(l.clone()).unwrap())
                .collect()
        })
    }

    #[test]
    fn alternations_yield_one_of_their_branches_literals() {
        for (pattern, want) in [
            ("ERROR|WARN", &["ERROR", "WARN"][..]),
            // Of two alternations, the one whose shortest literal is longer.
            ("(error|fatal) .*(timeout|refused)", &["refused", "timeout"]),
            // A branch's own mandatory literal stands for it.
            ("(GET [0-9]+ ok|PUT x+ done)", &[" done", "GET "]),
            // Alongside a mandatory literal too.
            ("(ERROR|WARN) request failed", &["ERROR", "WARN"]),
        ] {
            assert_eq!(any_of(pattern).expect(pattern), want, "{pattern}");
        }
        assert_eq!(
            required("(ERROR|WARN) request failed", false).as_deref(),
            Some(" request failed")
        );
        // A branch without a literal, a too-short one or an optional
        // alternation gives nothing.
        for pattern in ["ERROR|[0-9]+", "ERROR|OK", "(ERROR|WARN)?x"] {
            assert_eq!(any_of(pattern), None, "{pattern}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Soundness: whatever a regex matches contains its required
        /// literal. Patterns are built from pieces that exercise
        /// concatenation, groups, repetition, alternation and classes.
        #[test]
        fn a_match_always_contains_the_required_literal(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "ab", "abc", "bcd", "(abc)", "(?:ab|cd)", "(?:abc|dcb)", "(?:abcd|ba+dc|cc)", "(?:(abc)+|x?dcb)", "c+", "(bcd)?", "[a-c]", "d*",
                    "(abcd){1,2}", "x", "(ab)+c", ".", "(?i)ab",
                ]),
                1..4,
            ),
            haystack in "[a-dxA-D]{0,200}",
            ignore_case in proptest::bool::ANY,
        ) {
            let pattern: String = pieces.concat();
            let matcher = Matcher::new(&pattern, true, ignore_case).unwrap();
            let Matcher::Regex { regex, .. } = &matcher else {
                unreachable!("a regex");
            };
            for found in regex.find_iter(haystack.as_bytes()) {
                if let Some(literal) = matcher.required_literal() {
                    proptest::prop_assert!(
                        literal.find(found.as_bytes()).is_some(),
                        "{pattern:?} matched {:?} without {:?}",
                        found.as_bytes(),
                        literal.needle()
                    );
                }
                if let Some(literals) = matcher.required_any_of() {
                    proptest::prop_assert!(
                        literals.iter().any(|l| memmem::find(found.as_bytes(), l).is_some()),
                        "{pattern:?} matched {:?} without any of {:?}",
                        found.as_bytes(),
                        literals
                    );
                }
            }
        }
    }
}
