//! Evaluating metric queries, sans IO: records go in one at a time, series
//! of samples come out.
//!
//! A range aggregation is evaluated at `t = start, start + step, …, ≤ end`
//! over the window `(t − range, t]` (left-open, as Loki's). Times are whole
//! ms (a record's time is its id's ms). Each series counts into one
//! [`Histogram`] laid as a fixed grid ([`Histogram::grid`], the bucket
//! routine `/histogram` uses) of width `g = gcd(step, range)` starting at
//! `start − range + 1`: each window is then exactly `range / g` whole
//! buckets, which prefix sums add up. Points with no record are left out.
//!
//! Limits: at most [`MAX_POINTS`] steps, and [`MAX_CELLS`] grid buckets
//! over all series of one range aggregation (what its memory is), each
//! answered with an [`EvalError`] that says what to change.

use std::collections::{BTreeMap, HashMap};

use sluice_record::labels::Labels;

use super::ast::{Grouping, MetricExpr, RangeAgg, VectorOp};
use crate::count::Histogram;

/// The most steps a query evaluates (Loki's limit too).
pub const MAX_POINTS: u64 = 11_000;
/// The most grid buckets one range aggregation keeps over all its series.
pub const MAX_CELLS: u64 = 16_000_000;
/// The most distinct topics whose labels are kept read.
const TOPIC_CACHE: usize = 10_000;
/// The label that holds a line's level word, when a query groups by it.
pub const DETECTED_LEVEL: &str = "detected_level";

/// A metric query that cannot be evaluated as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Too many steps.
    #[error(
        "exceeded maximum resolution of {MAX_POINTS} points per timeseries ({points} asked); try increasing the value of the step parameter"
    )]
    TooManyPoints {
        /// Steps asked for.
        points: u64,
    },
    /// Too much memory for the series.
    #[error(
        "the query would keep more than {MAX_CELLS} counts ({series} series of {buckets} buckets of {grid_ms} ms); narrow the selector, or use a step that is a multiple of the range"
    )]
    TooManyCells {
        /// Series so far.
        series: usize,
        /// Buckets per series.
        buckets: u64,
        /// Bucket width.
        grid_ms: u64,
    },
    /// An aggregation of a scalar.
    #[error("{0} needs a vector (a range aggregation or vector(n)), not a number")]
    ScalarAggregation(&'static str),
    /// The step is zero.
    #[error("the step must be longer than 0")]
    ZeroStep,
}

/// The evaluation times: `start_ms + k * step_ms` for `k < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// The first, Unix ms.
    pub start_ms: u64,
    /// Between two, ms.
    pub step_ms: u64,
    /// How many (at least 1).
    pub count: u64,
}

impl Steps {
    /// Every step from `start_ms` to `end_ms` inclusive.
    pub fn new(start_ms: u64, end_ms: u64, step_ms: u64) -> Result<Steps, EvalError> {
        if step_ms == 0 {
            return Err(EvalError::ZeroStep);
        }
        let count = end_ms.saturating_sub(start_ms) / step_ms + 1;
        if count > MAX_POINTS {
            return Err(EvalError::TooManyPoints { points: count });
        }
        Ok(Steps {
            start_ms,
            step_ms,
            count,
        })
    }

    /// Step `k`'s time, Unix ms.
    pub fn at(&self, k: u64) -> u64 {
        self.start_ms + k * self.step_ms
    }
}

/// One series: its labels and a value (or none) per step.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// One per step; `None`: no sample there.
    pub points: Vec<Option<f64>>,
}

/// What a metric expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number, the same at every step.
    Scalar(f64),
    /// Series.
    Vector(Vec<Series>),
}

/// The counts of one range aggregation, fed record by record.
#[derive(Debug)]
pub struct RangeCounter {
    range: RangeAgg,
    steps: Steps,
    grid_ms: u64,
    buckets: u64,
    with_level: bool,
    /// Per series: lines, and for the bytes functions, bytes.
    series: HashMap<BTreeMap<String, String>, (Histogram, Option<Histogram>)>,
    topics: HashMap<Vec<u8>, BTreeMap<String, String>>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl RangeCounter {
    /// Counts for `range` at `steps`; `with_level` adds each line's
    /// [`DETECTED_LEVEL`] to its series' labels.
    pub fn new(range: &RangeAgg, steps: Steps, with_level: bool) -> RangeCounter {
        let grid_ms = gcd(steps.step_ms, range.range_ms).max(1);
        let span = (steps.count - 1) * steps.step_ms + range.range_ms;
        RangeCounter {
            range: range.clone(),
            steps,
            grid_ms,
            buckets: span.div_ceil(grid_ms),
            with_level,
            series: HashMap::new(),
            topics: HashMap::new(),
        }
    }

    /// The records to feed, Unix ms, inclusive: the first window's start
    /// to the last step.
    pub fn scan_range_ms(&self) -> (u64, u64) {
        (self.origin(), self.steps.at(self.steps.count - 1))
    }

    /// Where the grid starts: the first window's first ms.
    fn origin(&self) -> u64 {
        (self.steps.start_ms + 1).saturating_sub(self.range.range_ms)
    }

    /// Count a line of `topic` at `ms`.
    pub fn add(&mut self, ms: u64, topic: &[u8], payload: &[u8]) -> Result<(), EvalError> {
        if !self.topics.contains_key(topic) {
            if self.topics.len() >= TOPIC_CACHE {
                self.topics.clear();
            }
            let labels: BTreeMap<String, String> = Labels::from_topic(topic)
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.topics.insert(topic.to_vec(), labels);
        }
        let mut labels = self.topics[topic].clone();
        if self.with_level {
            labels.insert(DETECTED_LEVEL.into(), detected_level(payload).into());
        }
        if !self.series.contains_key(&labels) {
            let cells = (self.series.len() as u64 + 1) * self.buckets;
            if cells > MAX_CELLS {
                return Err(EvalError::TooManyCells {
                    series: self.series.len() + 1,
                    buckets: self.buckets,
                    grid_ms: self.grid_ms,
                });
            }
            let grid = || Histogram::grid(self.origin(), self.grid_ms, self.buckets as usize);
            let bytes = self.range.op.counts_bytes().then(grid);
            self.series.insert(labels.clone(), (grid(), bytes));
        }
        if let Some((lines, bytes)) = self.series.get_mut(&labels) {
            lines.add(ms, 1);
            if let Some(bytes) = bytes {
                bytes.add(ms, payload.len() as u64);
            }
        }
        Ok(())
    }

    /// The series: each window's value, where it holds a line; grouped
    /// by the aggregation's own `by`/`without` (summed), if it has one.
    pub fn finish(self) -> Vec<Series> {
        let per_window = (self.range.range_ms / self.grid_ms) as usize;
        let per_step = (self.steps.step_ms / self.grid_ms) as usize;
        let seconds = self.range.range_ms as f64 / 1000.0;
        let mut out: Vec<Series> = Vec::with_capacity(self.series.len());
        for (labels, (lines, bytes)) in self.series {
            let prefix = |h: &Histogram| {
                let mut sums = Vec::with_capacity(h.counts.len() + 1);
                sums.push(0u64);
                for c in &h.counts {
                    sums.push(sums.last().copied().unwrap_or(0) + c);
                }
                sums
            };
            let line_sums = prefix(&lines);
            let byte_sums = bytes.as_ref().map(prefix);
            let points = (0..self.steps.count as usize)
                .map(|k| {
                    let a = (k * per_step).min(line_sums.len() - 1);
                    let b = (a + per_window).min(line_sums.len() - 1);
                    let n = line_sums[b] - line_sums[a];
                    if n == 0 {
                        return None;
                    }
                    let v = match &byte_sums {
                        Some(sums) => (sums[b] - sums[a]) as f64,
                        None => n as f64,
                    };
                    Some(if self.range.op.per_second() {
                        v / seconds
                    } else {
                        v
                    })
                })
                .collect();
            out.push(Series { labels, points });
        }
        match &self.range.grouping {
            Some(grouping) => aggregate(VectorOp::Sum, Some(grouping), out),
            None => sorted(out),
        }
    }
}

/// Loki's name for a line's level (`detected_level`): `unknown` when the
/// line has no level word.
pub fn detected_level(payload: &[u8]) -> &'static str {
    match sluice_storage::block_segment::severity_of(payload) {
        1 => "fatal",
        2 | 3 => "critical",
        4 => "error",
        5 => "warn",
        6 | 7 => "info",
        8 => "debug",
        9 => "trace",
        _ => "unknown",
    }
}

fn sorted(mut series: Vec<Series>) -> Vec<Series> {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series
}

/// One group's samples at one step: (sum, count, min, max).
type Acc = (f64, u64, f64, f64);

/// Aggregate series per group, step by step.
fn aggregate(op: VectorOp, grouping: Option<&Grouping>, series: Vec<Series>) -> Vec<Series> {
    let steps = series.first().map_or(0, |s| s.points.len());
    let mut groups: BTreeMap<BTreeMap<String, String>, Vec<Option<Acc>>> = BTreeMap::new();
    for s in series {
        let key: BTreeMap<String, String> = match grouping {
            None => BTreeMap::new(),
            Some(g) if g.without => s
                .labels
                .into_iter()
                .filter(|(k, _)| !g.labels.contains(k))
                .collect(),
            Some(g) => s
                .labels
                .into_iter()
                .filter(|(k, _)| g.labels.contains(k))
                .collect(),
        };
        let acc = groups.entry(key).or_insert_with(|| vec![None; steps]);
        for (slot, point) in acc.iter_mut().zip(&s.points) {
            let Some(v) = *point else { continue };
            *slot = Some(match *slot {
                None => (v, 1, v, v),
                Some((sum, n, min, max)) => (sum + v, n + 1, min.min(v), max.max(v)),
            });
        }
    }
    groups
        .into_iter()
        .map(|(labels, acc)| Series {
            labels,
            points: acc
                .into_iter()
                .map(|slot| {
                    slot.map(|(sum, n, min, max)| match op {
                        VectorOp::Sum => sum,
                        VectorOp::Count => n as f64,
                        VectorOp::Min => min,
                        VectorOp::Max => max,
                        VectorOp::Avg => sum / n as f64,
                    })
                })
                .collect(),
        })
        .collect()
}

/// Evaluate `expr` at `steps`, taking each range aggregation's series from
/// `ranges` in the order of [`MetricExpr::ranges`].
pub fn evaluate(
    expr: &MetricExpr,
    steps: Steps,
    ranges: &mut impl Iterator<Item = Vec<Series>>,
) -> Result<Value, EvalError> {
    Ok(match expr {
        MetricExpr::Range(_) => Value::Vector(ranges.next().unwrap_or_default()),
        MetricExpr::Number(n) => Value::Scalar(*n),
        MetricExpr::VectorOf(n) => Value::Vector(vec![Series {
            labels: BTreeMap::new(),
            points: vec![Some(*n); steps.count as usize],
        }]),
        MetricExpr::Vector {
            op,
            grouping,
            inner,
        } => match evaluate(inner, steps, ranges)? {
            Value::Scalar(_) => return Err(EvalError::ScalarAggregation(op.name())),
            Value::Vector(series) => Value::Vector(aggregate(*op, grouping.as_ref(), series)),
        },
        MetricExpr::Add(a, b) => {
            let a = evaluate(a, steps, ranges)?;
            let b = evaluate(b, steps, ranges)?;
            add(a, b)
        }
    })
}

/// `a + b`: numbers add; a number adds to every sample; two vectors add
/// where their label sets are equal (one to one), step by step.
fn add(a: Value, b: Value) -> Value {
    let shift = |series: Vec<Series>, n: f64| {
        series
            .into_iter()
            .map(|s| Series {
                labels: s.labels,
                points: s.points.into_iter().map(|p| p.map(|v| v + n)).collect(),
            })
            .collect()
    };
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(x + y),
        (Value::Scalar(n), Value::Vector(v)) | (Value::Vector(v), Value::Scalar(n)) => {
            Value::Vector(shift(v, n))
        }
        (Value::Vector(left), Value::Vector(right)) => {
            let right: BTreeMap<_, _> = right.into_iter().map(|s| (s.labels, s.points)).collect();
            let mut out = Vec::new();
            for s in left {
                let Some(other) = right.get(&s.labels) else {
                    continue;
                };
                let points: Vec<Option<f64>> = s
                    .points
                    .iter()
                    .zip(other)
                    .map(|(x, y)| Some((*x)? + (*y)?))
                    .collect();
                if points.iter().any(Option::is_some) {
                    out.push(Series {
                        labels: s.labels,
                        points,
                    });
                }
            }
            Value::Vector(out)
        }
    }
}

/// A sample value as Loki writes it (Go's `FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}
