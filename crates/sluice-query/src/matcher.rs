//! Matching payloads.

use std::sync::Arc;

use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};

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
    Regex(Regex),
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
        Ok(Matcher::Regex(compiled))
    }

    /// The literal every match contains, when there is one.
    pub fn required_literal(&self) -> Option<&Arc<memmem::Finder<'static>>> {
        match self {
            Matcher::Literal(finder) => Some(finder),
            _ => None,
        }
    }

    #[inline]
    pub fn is_match(&self, payload: &[u8]) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Literal(finder) => finder.find(payload).is_some(),
            Matcher::Regex(re) => re.is_match(payload),
        }
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
}
