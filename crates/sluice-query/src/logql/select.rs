//! What a log expression selects: label matchers over a record's topic
//! (read as a label set by [`Labels::from_topic`]) and its line filters as
//! one [`Matcher`], so the ordinary scan prunes and filters with them.

use regex::Regex;
use sluice_record::labels::Labels;

use super::{
    ast::{FilterOp, LabelMatcher, MatchOp, Stage},
    parse::anchored,
};
use crate::{Matcher, MatcherError};

/// A compiled stream selector.
#[derive(Debug, Clone)]
pub struct Selector {
    matchers: Vec<(String, Compiled)>,
}

#[derive(Debug, Clone)]
enum Compiled {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

impl Selector {
    /// Compile `matchers` (regexes anchored, Prometheus style).
    pub fn new(matchers: &[LabelMatcher]) -> Result<Selector, regex::Error> {
        let mut out = Vec::with_capacity(matchers.len());
        for m in matchers {
            let compiled = match m.op {
                MatchOp::Eq => Compiled::Eq(m.value.clone()),
                MatchOp::Ne => Compiled::Ne(m.value.clone()),
                MatchOp::Re => Compiled::Re(Regex::new(&anchored(&m.value))?),
                MatchOp::NotRe => Compiled::NotRe(Regex::new(&anchored(&m.value))?),
            };
            out.push((m.name.clone(), compiled));
        }
        Ok(Selector { matchers: out })
    }

    /// Whether a stream of `labels` is selected. A label the stream lacks
    /// has the value "" (so `{x=""}` and `{x!="a"}` select streams
    /// without `x`).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|(name, m)| {
            let value = labels.get(name).unwrap_or("");
            match m {
                Compiled::Eq(v) => value == v,
                Compiled::Ne(v) => value != v,
                Compiled::Re(re) => re.is_match(value),
                Compiled::NotRe(re) => !re.is_match(value),
            }
        })
    }

    /// Whether records of `topic` are selected.
    pub fn matches_topic(&self, topic: &[u8]) -> bool {
        self.matches(&Labels::from_topic(topic))
    }
}

/// The line filters of `pipeline` as one matcher: each filter's
/// alternatives (`or`) become one regex alternation (literals escaped), so
/// the scan's pruning by required literals sees them; the filters AND
/// together. `| drop` stages add nothing.
pub fn line_matcher(pipeline: &[Stage]) -> Result<Matcher, MatcherError> {
    let mut must = Vec::new();
    let mut must_not = Vec::new();
    for stage in pipeline {
        let Stage::Line(filter) = stage else { continue };
        let regex = matches!(filter.op, FilterOp::Regex | FilterOp::NotRegex);
        let matcher = if filter.values.len() == 1 {
            Matcher::new(&filter.values[0], regex, false)?
        } else if !regex && filter.values.iter().any(String::is_empty) {
            // One alternative is "", which every line holds.
            Matcher::All
        } else {
            let alternatives: Vec<String> = filter
                .values
                .iter()
                .map(|v| match regex {
                    true => format!("(?:{v})"),
                    false => regex::escape(v),
                })
                .collect();
            Matcher::new(&alternatives.join("|"), true, false)?
        };
        match filter.op {
            FilterOp::Contains | FilterOp::Regex => must.push(matcher),
            FilterOp::NotContains | FilterOp::NotRegex => must_not.push(matcher),
        }
    }
    Ok(Matcher::chain(must, must_not))
}

/// The pipeline's text as [`super::parse_pipeline`] reads it back: what a
/// coordinator sends the nodes.
pub fn pipeline_text(pipeline: &[Stage]) -> String {
    pipeline
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}
