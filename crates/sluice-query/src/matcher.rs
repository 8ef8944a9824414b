//! Matching payloads.

use std::sync::Arc;

use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};

mod folded;
mod literals;

use folded::FoldedFinder;
use literals::{Required, required_literals};

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
    /// `any_of` is set when every match holds one of a bounded set of
    /// literals (`ERROR|FATAL` gives two, `status=5[0-9]{2}` the hundred
    /// from `status=500` to `status=599`; see `matcher/literals.rs`):
    /// cursors also prune blocks and frames that can hold none of them.
    Regex {
        /// The compiled pattern, case-insensitive with `-i`.
        regex: Regex,
        /// The same pattern with `^` and `$` at line starts and ends, for
        /// searching many newline-separated payloads at once (see
        /// [`Matcher::text_matcher`]).
        lines: Regex,
        /// Whether the pattern ignores case (`required` is then not the
        /// bytes a match holds, only what prunes).
        ignore_case: bool,
        /// The longest literal every match contains, if any.
        required: Option<Arc<memmem::Finder<'static>>>,
        /// Literals one of which every match contains (two to 256), if
        /// any.
        any_of: Option<Arc<[Vec<u8>]>>,
        /// For a literal with `-i` whose case variants are all ASCII: the
        /// same search as the regex, at memmem's speed rather than Teddy's
        /// (see `matcher/folded.rs`).
        folded: Option<Arc<FoldedFinder>>,
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
        let folded = match regex {
            false => FoldedFinder::new(query).map(Arc::new),
            true => None,
        };
        Ok(Matcher::Regex {
            regex: compiled,
            lines,
            ignore_case,
            required,
            any_of,
            folded,
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

    /// Literals one of which every match contains, from the pattern's
    /// literal extraction (for a chain, its first positive matcher's that
    /// has them).
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
            Matcher::Regex {
                folded: Some(folded),
                ..
            } => folded.find(payload).is_some(),
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
    /// A literal every match holds, if the regex has one worth searching
    /// for.
    candidates: Option<Arc<memmem::Finder<'static>>>,
}

impl LinesRegex {
    /// The first match at or after `start` that lies within one line (no
    /// newline inside it), found line by line from the lines that hold
    /// `candidates`: every match holds it, so a line without it has no
    /// match. Matches that cross a newline are not returned; the callers
    /// decide each line (or payload) on its own bytes, so they lose
    /// nothing by that (see [`TextMatcher`](sluice_storage::block_segment::TextMatcher)).
    fn find_in_lines(
        &self,
        candidates: &memmem::Finder<'_>,
        text: &[u8],
        start: usize,
    ) -> Option<(usize, usize)> {
        let mut from = start;
        while from <= text.len() {
            let hit = from + candidates.find(&text[from..])?;
            let line_start = memchr::memrchr(b'\n', &text[..hit]).map_or(0, |at| at + 1);
            let line_end = memchr::memchr(b'\n', &text[hit..]).map_or(text.len(), |at| hit + at);
            // Cut at the newline: `$` and `\b` see the end of the text
            // there as they would see the newline.
            if let Some(m) = self.lines.find_at(&text[..line_end], line_start.max(start)) {
                return Some((m.start(), m.end()));
            }
            from = line_end + 1;
        }
        None
    }
}

impl sluice_storage::block_segment::TextMatcher for LinesRegex {
    fn find_at(&self, text: &[u8], start: usize) -> Option<(usize, usize)> {
        if let Some(candidates) = &self.candidates {
            return self.find_in_lines(candidates, text, start);
        }
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

    fn required_literal(&self) -> Option<&memmem::Finder<'static>> {
        self.candidates.as_deref()
    }
}

/// A literal with `-i` searched over a block's text as a whole: the
/// needle holds no newline, so every occurrence lies within one line.
struct FoldedText(Arc<FoldedFinder>);

impl sluice_storage::block_segment::TextMatcher for FoldedText {
    fn find_at(&self, text: &[u8], start: usize) -> Option<(usize, usize)> {
        let found = start + self.0.find(text.get(start..)?)?;
        Some((found, found + self.0.needle().len()))
    }

    fn is_match(&self, payload: &[u8]) -> bool {
        self.0.find(payload).is_some()
    }

    fn looks_around(&self) -> bool {
        false
    }
}

impl Matcher {
    /// For a regex (or a literal with `-i`): a matcher that block cursors
    /// run over each decoded block's text as a whole, as grep does, rather
    /// than once per record.
    pub fn text_matcher(&self) -> Option<Arc<dyn sluice_storage::block_segment::TextMatcher>> {
        match self {
            Matcher::Regex {
                folded: Some(folded),
                ..
            } => Some(Arc::new(FoldedText(folded.clone()))),
            Matcher::Regex {
                regex,
                lines,
                ignore_case,
                required,
                ..
            } => Some(Arc::new(LinesRegex {
                lines: lines.clone(),
                payload: regex.clone(),
                looks_around: looks_around(regex.as_str()),
                // Bytes a match must hold, searched for first: the regex
                // crate's own prefilter looks at a match's first bytes
                // only, which can be a byte on every line (`"` of
                // `" 5[0-9]{2} [0-9]+`).
                candidates: required.clone().filter(|f| {
                    !ignore_case && f.needle().len() >= 2 && !f.needle().contains(&b'\n')
                }),
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

    /// A pattern of pieces that exercise concatenation, groups,
    /// repetition, alternation, small classes that the extractor expands
    /// (`[0-9]`, `[ab]`, `-i` letters) and large ones it does not; whether
    /// it is case-insensitive; and a haystack with a match of it generated
    /// from the pattern between random bytes (random bytes alone where the
    /// generator does not take the pattern: `\b`, `^`).
    fn pattern_and_haystack() -> impl proptest::strategy::Strategy<Value = (String, bool, String)> {
        use proptest::prelude::*;
        let piece = proptest::sample::select(vec![
            "ab",
            "abc",
            "bcd",
            "(abc)",
            "(?:ab|cd)",
            "(?:abc|dcb)",
            "(?:abcd|ba+dc|cc)",
            "(?:(abc)+|x?dcb)",
            "c+",
            "(bcd)?",
            "[a-c]",
            "d*",
            "(abcd){1,2}",
            "x",
            "(ab)+c",
            ".",
            "(?i)ab",
            "[0-9]{2}",
            "5[0-9]",
            "(a|b)c",
            "[0-9]",
            "[0-9]+",
            "[05]{1,3}",
            "a[0-9]?",
            "(?:5|x)[0-9]{2}",
            "[ab]{3}",
            " ",
            "\\b",
            "^",
            "(?:a[0-9]|b)c",
            "\\d",
            "[a-z]",
        ]);
        (proptest::collection::vec(piece, 1..6), any::<bool>()).prop_flat_map(
            |(pieces, ignore_case)| {
                let pattern: String = pieces.concat();
                let generated = match ignore_case {
                    true => format!("(?i:{pattern})"),
                    false => pattern.clone(),
                };
                let random = "[a-dxA-D0-9 ]{0,200}";
                let middle: BoxedStrategy<String> = match proptest::string::string_regex(&generated)
                {
                    Ok(matching) => matching.boxed(),
                    Err(_) => random.boxed(),
                };
                let context = "[a-dxA-D0-9 ]{0,12}";
                (Just(pattern), Just(ignore_case), (context, middle, context)).prop_map(
                    |(pattern, ignore_case, (before, middle, after))| {
                        (pattern, ignore_case, format!("{before}{middle}{after}"))
                    },
                )
            },
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Soundness: whatever a regex matches contains its required
        /// literal and one of its literal set.
        #[test]
        fn a_match_always_contains_the_required_literal(
            (pattern, ignore_case, haystack) in pattern_and_haystack(),
        ) {
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
