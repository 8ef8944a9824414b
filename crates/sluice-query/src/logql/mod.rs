//! The LogQL subset the Loki read API speaks (Grafana's Explore, its logs
//! volume and health check, logcli):
//!
//! ```text
//! expr        = log_expr | metric_expr
//! log_expr    = selector { line_filter | "|" "drop" names } | "(" log_expr ")"
//! selector    = "{" matcher { "," matcher } "}"
//! matcher     = IDENT ( "=" | "!=" | "=~" | "!~" ) STRING        regexes anchored
//! line_filter = ( "|=" | "!=" | "|~" | "!~" ) STRING { "or" STRING }
//! metric_expr = range_agg | vector_agg | "vector(" NUMBER ")" | metric_expr "+" metric_expr
//!             | NUMBER | "(" metric_expr ")"
//! range_agg   = ( "count_over_time" | "rate" | "bytes_over_time" | "bytes_rate" )
//!               "(" log_expr RANGE ")" [grouping]        (the range may follow the selector)
//! vector_agg  = ( "sum" | "count" | "min" | "max" | "avg" )
//!               ( grouping "(" metric_expr ")" | "(" metric_expr ")" [grouping] )
//! grouping    = ( "by" | "without" ) "(" [ IDENT { "," IDENT } ] ")"
//! RANGE       = "[" duration "]"    durations: 5m, 1h30m, 250ms (y w d h m s ms)
//! STRING      = Go "…" with escapes | `raw`          "#" comments run to the line's end
//! ```
//!
//! `| drop` takes only `__error__` and `__error_details__`, and is a no-op:
//! sluice has no parsers that set them. Everything else LogQL has (parsers
//! such as `| json`, label filters, `line_format`, `unwrap`, `offset`,
//! other functions and operators) is a [`ParseError`] naming the subset.
//!
//! - [`ast`]: the tree and its printer (the canonical text).
//! - [`parse()`]: the parser.
//! - [`select`]: selectors over topics' label sets, and the line filters
//!   as one [`crate::Matcher`].
//! - [`eval`]: metric evaluation, sans IO.

pub mod ast;
pub mod eval;
mod parse;
pub mod select;

pub use ast::{
    Expr, FilterOp, Grouping, LabelMatcher, LineFilter, LogExpr, MatchOp, MetricExpr, RangeAgg,
    RangeOp, Stage, VectorOp,
};
pub use parse::{
    MAX_DEPTH, MAX_QUERY_BYTES, ParseError, SUPPORTED, parse, parse_duration_ms, parse_pipeline,
    parse_selector,
};

#[cfg(test)]
mod tests;
