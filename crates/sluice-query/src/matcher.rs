//! Matching payloads.

use std::sync::Arc;

use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};
use regex_syntax::hir::{Hir, HirKind};

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
    Regex {
        regex: Regex,
        required: Option<Arc<memmem::Finder<'static>>>,
    },
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
        let compiled = RegexBuilder::new(&pattern)
            .case_insensitive(ignore_case)
            .size_limit(64 << 20)
            .build()
            .map_err(|source| MatcherError {
                pattern: query.to_string(),
                source,
            })?;
        let required = required_literal(&pattern, ignore_case)
            .map(|literal| Arc::new(memmem::Finder::new(&literal).into_owned()));
        Ok(Matcher::Regex {
            regex: compiled,
            required,
        })
    }

    /// A literal every match contains, when there is one.
    pub fn required_literal(&self) -> Option<&Arc<memmem::Finder<'static>>> {
        match self {
            Matcher::Literal(finder) => Some(finder),
            Matcher::Regex { required, .. } => required.as_ref(),
            Matcher::All => None,
        }
    }

    #[inline]
    pub fn is_match(&self, payload: &[u8]) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Literal(finder) => finder.find(payload).is_some(),
            Matcher::Regex { regex, .. } => regex.is_match(payload),
        }
    }
}

/// The longest literal that every match of `pattern` contains, if any of
/// at least [`MIN_REQUIRED_LITERAL`] bytes.
///
/// Sound by construction: only literals on the mandatory path of the
/// pattern count (parts of a concatenation, the body of a repetition of at
/// least one, a capture group). Alternations, classes and optional parts
/// contribute nothing, and so does case-insensitive matching, whose
/// letters parse as classes. A pattern the parser rejects has none; the
/// regex crate then reports the error.
fn required_literal(pattern: &str, ignore_case: bool) -> Option<Vec<u8>> {
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(ignore_case)
        // Like `regex::bytes`: a pattern may match bytes that are not UTF-8.
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let mut literals = Vec::new();
    mandatory_literals(&hir, &mut literals);
    literals
        .into_iter()
        .filter(|l| l.len() >= MIN_REQUIRED_LITERAL)
        .max_by_key(|l| l.len())
}

/// Shorter literals select too many records to be worth a prefilter, and
/// the term filter cannot prune with fewer than three bytes.
const MIN_REQUIRED_LITERAL: usize = 3;

fn mandatory_literals(hir: &Hir, out: &mut Vec<Vec<u8>>) {
    match hir.kind() {
        HirKind::Literal(literal) => out.push(literal.0.to_vec()),
        HirKind::Capture(capture) => mandatory_literals(&capture.sub, out),
        HirKind::Repetition(repetition) if repetition.min >= 1 => {
            mandatory_literals(&repetition.sub, out)
        }
        HirKind::Concat(parts) => {
            for part in parts {
                mandatory_literals(part, out);
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
        assert_eq!(required("(timeout)?ab", false), None);
        assert_eq!(required("(timeout)*x", false), None);
        assert_eq!(required("[0-9]+ms", false), None);
        assert_eq!(required("status", true), None);
        assert_eq!(required("(?i)status", false), None);
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
                    "ab", "abc", "bcd", "(abc)", "(?:ab|cd)", "(?:abc|dcb)", "c+", "(bcd)?", "[a-c]", "d*",
                    "(abcd){1,2}", "x", "(ab)+c", ".", "(?i)ab",
                ]),
                1..4,
            ),
            haystack in "[a-dx]{0,200}",
        ) {
            let pattern: String = pieces.concat();
            let matcher = Matcher::new(&pattern, true, false).unwrap();
            if let (Some(literal), Matcher::Regex { regex, .. }) = (matcher.required_literal(), &matcher) {
                for found in regex.find_iter(haystack.as_bytes()) {
                    proptest::prop_assert!(
                        literal.find(found.as_bytes()).is_some(),
                        "{pattern:?} matched {:?} without {:?}",
                        found.as_bytes(),
                        literal.needle()
                    );
                }
            }
        }
    }
}
