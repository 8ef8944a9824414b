//! The LogQL subset's syntax tree and its printer.
//!
//! [`Expr`]'s `Display` writes the canonical text of a tree: what
//! [`super::parse`] reads back into the same tree (the property test in
//! `tests.rs` holds it to that). Strings are printed double-quoted with Go
//! escapes, durations in Prometheus units (`1h30m`), vector aggregations
//! with their grouping first (`sum by (a) (…)`), and a range after the
//! pipeline.

use std::fmt;

/// A LogQL query: a log query (streams) or a metric query (samples).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `{…} |= "…"`: the matching lines.
    Log(LogExpr),
    /// `count_over_time(…)`, `sum by (…) (…)`, `vector(1)`, `a + b`, `1`.
    Metric(MetricExpr),
}

/// A stream selector and its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    /// The label matchers of `{…}`: at least one.
    pub selector: Vec<LabelMatcher>,
    /// Line filters and `| drop` stages, in order.
    pub pipeline: Vec<Stage>,
}

/// One `name op "value"` of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatcher {
    /// The label name.
    pub name: String,
    /// How the label's value is compared.
    pub op: MatchOp,
    /// The text or (anchored) regex compared with.
    pub value: String,
}

/// A label matcher's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~`, anchored at both ends
    Re,
    /// `!~`, anchored at both ends
    NotRe,
}

/// One stage of a log pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// A line filter.
    Line(LineFilter),
    /// `| drop __error__, __error_details__`: a no-op, since sluice has no
    /// parser that sets those labels. Holds the names as written.
    Drop(Vec<String>),
}

/// `|= "a" or "b"`: an operator and one or more alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFilter {
    /// The operator.
    pub op: FilterOp,
    /// The alternatives (`or`): at least one.
    pub values: Vec<String>,
}

/// A line filter's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `|=`: the line holds one of the strings.
    Contains,
    /// `!=`: the line holds none of them.
    NotContains,
    /// `|~`: the line matches one of the (unanchored) regexes.
    Regex,
    /// `!~`: the line matches none of them.
    NotRegex,
}

/// A metric expression.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    /// `count_over_time({…}[5m])` and its kin, optionally grouped.
    Range(RangeAgg),
    /// `sum by (a) (…)` and its kin.
    Vector {
        /// The aggregation.
        op: VectorOp,
        /// `by`/`without`, if given.
        grouping: Option<Grouping>,
        /// What is aggregated.
        inner: Box<MetricExpr>,
    },
    /// `vector(n)`: one series with no labels, `n` at every step.
    VectorOf(f64),
    /// A number: a scalar.
    Number(f64),
    /// `a + b`.
    Add(Box<MetricExpr>, Box<MetricExpr>),
}

/// A range aggregation over a log expression.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeAgg {
    /// Which one.
    pub op: RangeOp,
    /// The lines counted.
    pub log: LogExpr,
    /// The window, ms (at least 1).
    pub range_ms: u64,
    /// `count_over_time(…) by (a)`, if given.
    pub grouping: Option<Grouping>,
}

/// A range aggregation's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    /// Lines in the window.
    CountOverTime,
    /// Lines per second in the window.
    Rate,
    /// Line bytes in the window.
    BytesOverTime,
    /// Line bytes per second in the window.
    BytesRate,
}

/// A vector aggregation's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    /// `sum`
    Sum,
    /// `count`
    Count,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `avg`
    Avg,
}

/// `by (a, b)` or `without (a, b)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// `without` rather than `by`.
    pub without: bool,
    /// The label names (may be empty).
    pub labels: Vec<String>,
}

impl RangeOp {
    /// Its name in LogQL.
    pub fn name(self) -> &'static str {
        match self {
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::Rate => "rate",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::BytesRate => "bytes_rate",
        }
    }

    /// Whether it sums line bytes rather than counting lines.
    pub fn counts_bytes(self) -> bool {
        matches!(self, RangeOp::BytesOverTime | RangeOp::BytesRate)
    }

    /// Whether it divides by the window's seconds.
    pub fn per_second(self) -> bool {
        matches!(self, RangeOp::Rate | RangeOp::BytesRate)
    }
}

impl VectorOp {
    /// Its name in LogQL.
    pub fn name(self) -> &'static str {
        match self {
            VectorOp::Sum => "sum",
            VectorOp::Count => "count",
            VectorOp::Min => "min",
            VectorOp::Max => "max",
            VectorOp::Avg => "avg",
        }
    }
}

impl MetricExpr {
    /// Every range aggregation in the expression, left to right.
    pub fn ranges(&self) -> Vec<&RangeAgg> {
        let mut out = Vec::new();
        self.collect_ranges(&mut out);
        out
    }

    fn collect_ranges<'a>(&'a self, out: &mut Vec<&'a RangeAgg>) {
        match self {
            MetricExpr::Range(range) => out.push(range),
            MetricExpr::Vector { inner, .. } => inner.collect_ranges(out),
            MetricExpr::Add(a, b) => {
                a.collect_ranges(out);
                b.collect_ranges(out);
            }
            MetricExpr::VectorOf(_) | MetricExpr::Number(_) => {}
        }
    }

    /// Whether any `by (…)` in the expression names `label`.
    pub fn groups_by(&self, label: &str) -> bool {
        let names = |g: &Option<Grouping>| {
            g.as_ref()
                .is_some_and(|g| !g.without && g.labels.iter().any(|l| l == label))
        };
        match self {
            MetricExpr::Range(range) => names(&range.grouping),
            MetricExpr::Vector {
                grouping, inner, ..
            } => names(grouping) || inner.groups_by(label),
            MetricExpr::Add(a, b) => a.groups_by(label) || b.groups_by(label),
            MetricExpr::VectorOf(_) | MetricExpr::Number(_) => false,
        }
    }
}

/// Write `s` as a Go double-quoted string.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Write `ms` in Prometheus duration units, largest first (`1h30m`).
pub(crate) fn write_duration(f: &mut impl fmt::Write, ms: u64) -> fmt::Result {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if ms == 0 {
        return f.write_str("0s");
    }
    let mut rest = ms;
    for (unit, size) in UNITS {
        if rest >= size {
            write!(f, "{}{unit}", rest / size)?;
            rest %= size;
        }
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(log) => log.fmt(f),
            Expr::Metric(metric) => metric.fmt(f),
        }
    }
}

impl fmt::Display for LogExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.selector.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            m.fmt(f)?;
        }
        f.write_str("}")?;
        for stage in &self.pipeline {
            f.write_str(" ")?;
            stage.fmt(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        };
        write!(f, "{}{op}", self.name)?;
        write_quoted(f, &self.value)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Line(filter) => filter.fmt(f),
            Stage::Drop(names) => write!(f, "| drop {}", names.join(", ")),
        }
    }
}

impl fmt::Display for LineFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FilterOp::Contains => "|=",
            FilterOp::NotContains => "!=",
            FilterOp::Regex => "|~",
            FilterOp::NotRegex => "!~",
        };
        f.write_str(op)?;
        for (i, value) in self.values.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { " or " })?;
            write_quoted(f, value)?;
        }
        Ok(())
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.without { "without" } else { "by" };
        write!(f, "{word} ({})", self.labels.join(", "))
    }
}

impl fmt::Display for MetricExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpr::Range(range) => {
                write!(f, "{}({} [", range.op.name(), range.log)?;
                write_duration(f, range.range_ms)?;
                f.write_str("])")?;
                if let Some(g) = &range.grouping {
                    write!(f, " {g}")?;
                }
                Ok(())
            }
            MetricExpr::Vector {
                op,
                grouping,
                inner,
            } => {
                f.write_str(op.name())?;
                if let Some(g) = grouping {
                    write!(f, " {g} ")?;
                }
                write!(f, "({inner})")
            }
            MetricExpr::VectorOf(n) => write!(f, "vector({n})"),
            MetricExpr::Number(n) => write!(f, "{n}"),
            // `+` is left-associative: a sum on the right needs brackets.
            MetricExpr::Add(a, b) => match **b {
                MetricExpr::Add(..) => write!(f, "{a} + ({b})"),
                _ => write!(f, "{a} + {b}"),
            },
        }
    }
}
