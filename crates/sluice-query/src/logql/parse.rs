//! A recursive-descent parser for the LogQL subset (grammar in the parent
//! module's docs). It works on bytes with a cursor, never indexes past the
//! end, bounds its depth ([`MAX_DEPTH`]) and the query's length
//! ([`MAX_QUERY_BYTES`]), and answers everything outside the subset with a
//! [`ParseError`] that names what it met and what is supported.

use super::ast::{
    Expr, FilterOp, Grouping, LabelMatcher, LineFilter, LogExpr, MatchOp, MetricExpr, RangeAgg,
    RangeOp, Stage, VectorOp,
};

/// The longest query read.
pub const MAX_QUERY_BYTES: usize = 64 << 10;
/// The deepest nesting of brackets and aggregations read (so a hostile
/// query cannot exhaust the stack).
pub const MAX_DEPTH: usize = 64;

/// What sluice's LogQL reads, for error messages.
pub const SUPPORTED: &str = "sluice supports this LogQL subset: a stream selector {label=\"value\", …} \
with =, !=, =~, !~; line filters |= != |~ !~ with \"…\" or `…` strings and `or` alternatives; \
| drop __error__, __error_details__; count_over_time, rate, bytes_over_time, bytes_rate over \
[range]; sum, count, min, max, avg with by (…) or without (…); vector(n); numbers; and +";

/// A query outside the subset, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at byte {offset}: {message}; {SUPPORTED}")]
pub struct ParseError {
    /// Where reading stopped.
    pub offset: usize,
    /// What was wrong, with the offending text.
    pub message: String,
}

/// Parse a whole query.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser::new(text)?;
    let expr = p.expr(0)?;
    p.end()?;
    Ok(expr)
}

/// Parse a pipeline alone (`|= "a" != "b"`, possibly empty): what a
/// coordinator sends the nodes of a query.
pub fn parse_pipeline(text: &str) -> Result<Vec<Stage>, ParseError> {
    let mut p = Parser::new(text)?;
    let mut stages = Vec::new();
    while let Some(stage) = p.stage()? {
        stages.push(stage);
    }
    p.end()?;
    Ok(stages)
}

/// Parse a stream selector alone (`{a="b"}`), as `match[]` sends it.
pub fn parse_selector(text: &str) -> Result<Vec<LabelMatcher>, ParseError> {
    let mut p = Parser::new(text)?;
    let selector = p.selector()?;
    p.end()?;
    Ok(selector)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

/// Words that are functions or stages LogQL has and this subset does not.
const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "sum_over_time",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
    "first_over_time",
    "last_over_time",
    "absent_over_time",
    "rate_counter",
    "topk",
    "bottomk",
    "stddev",
    "stdvar",
    "sort",
    "sort_desc",
    "label_replace",
    "approx_topk",
];

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Parser<'a>, ParseError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(ParseError {
                offset: MAX_QUERY_BYTES,
                message: format!(
                    "the query is {} bytes, over the limit of {MAX_QUERY_BYTES}",
                    text.len()
                ),
            });
        }
        Ok(Parser { text, at: 0 })
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            offset: self.at,
            message: message.into(),
        })
    }

    fn rest(&self) -> &'a [u8] {
        &self.text.as_bytes()[self.at..]
    }

    /// Skip spaces and `#` comments.
    fn skip(&mut self) {
        loop {
            match self.rest().first() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.at += 1,
                Some(b'#') => {
                    let line = self.rest().iter().position(|&b| b == b'\n');
                    self.at += line.map_or(self.rest().len(), |n| n + 1);
                }
                _ => return,
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.rest().first().copied()
    }

    fn starts(&mut self, token: &str) -> bool {
        self.skip();
        self.rest().starts_with(token.as_bytes())
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.starts(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), ParseError> {
        if self.eat(token) {
            return Ok(());
        }
        let found = self.found();
        self.err(format!("expected {token:?}, found {found}"))
    }

    /// What lies at the cursor, for a message.
    fn found(&mut self) -> String {
        self.skip();
        let rest = &self.text[self.at..];
        match rest.chars().next() {
            None => "the end of the query".into(),
            Some(_) => {
                let cut: String = rest.chars().take(20).collect();
                format!("{cut:?}")
            }
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        if self.peek().is_none() {
            return Ok(());
        }
        let found = self.found();
        if self.starts("-")
            || self.starts("*")
            || self.starts("/")
            || self.starts("%")
            || self.starts("^")
            || self.starts("==")
            || self.starts(">")
            || self.starts("<")
        {
            return self.err(format!(
                "the operator at {found} is not supported (only + is)"
            ));
        }
        self.err(format!("unexpected {found}"))
    }

    /// An identifier, if one is at the cursor.
    fn ident(&mut self) -> Option<&'a str> {
        self.skip();
        let rest = self.rest();
        if !rest
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        {
            return None;
        }
        let n = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .unwrap_or(rest.len());
        let word = &self.text[self.at..self.at + n];
        self.at += n;
        Some(word)
    }

    fn peek_ident(&mut self) -> Option<&'a str> {
        let at = self.at;
        let word = self.ident();
        self.at = at;
        word
    }

    fn depth(&self, depth: usize) -> Result<usize, ParseError> {
        if depth >= MAX_DEPTH {
            return self.err(format!("the query nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(depth + 1)
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let depth = self.depth(depth)?;
        let first = self.term(depth)?;
        if !self.starts("+") {
            return Ok(first);
        }
        let mut left = self.metric(first)?;
        // Each `+` is a loop turn, not a level of recursion.
        while self.eat("+") {
            let right = self.term(depth)?;
            let right = self.metric(right)?;
            left = MetricExpr::Add(Box::new(left), Box::new(right));
        }
        Ok(Expr::Metric(left))
    }

    fn metric(&self, expr: Expr) -> Result<MetricExpr, ParseError> {
        match expr {
            Expr::Metric(m) => Ok(m),
            Expr::Log(_) => self.err(
                "a log query cannot be added or aggregated: wrap it in count_over_time(…[range]) first",
            ),
        }
    }

    fn term(&mut self, depth: usize) -> Result<Expr, ParseError> {
        match self.peek() {
            Some(b'{') => Ok(Expr::Log(self.log_expr(depth, false)?.0)),
            Some(b'(') => {
                self.at += 1;
                let inner = self.expr(depth)?;
                self.expect(")")?;
                if let Expr::Log(log) = inner {
                    // `({…} |= "x") |= "y"`: the pipeline may go on.
                    let mut log = log;
                    while let Some(stage) = self.stage()? {
                        log.pipeline.push(stage);
                    }
                    return Ok(Expr::Log(log));
                }
                Ok(inner)
            }
            Some(b'0'..=b'9') => Ok(Expr::Metric(MetricExpr::Number(self.number()?))),
            Some(_) => {
                let start = self.at;
                let Some(word) = self.ident() else {
                    let found = self.found();
                    return self.err(format!("unexpected {found}"));
                };
                if let Some(op) = range_op(word) {
                    return Ok(Expr::Metric(self.range_agg(op, depth)?));
                }
                if let Some(op) = vector_op(word) {
                    return Ok(Expr::Metric(self.vector_agg(op, depth)?));
                }
                if word == "vector" {
                    self.expect("(")?;
                    let n = self.number()?;
                    self.expect(")")?;
                    return Ok(Expr::Metric(MetricExpr::VectorOf(n)));
                }
                self.at = start;
                if UNSUPPORTED_FUNCTIONS.contains(&word) {
                    return self.err(format!("the function {word} is not supported"));
                }
                self.err(format!("unknown word {word:?}"))
            }
            None => self.err("the query is empty or ends too early"),
        }
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        self.skip();
        let rest = self.rest();
        let int = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if int == 0 {
            let found = self.found();
            return self.err(format!("expected a number, found {found}"));
        }
        let mut n = int;
        if rest.get(n) == Some(&b'.') {
            let frac = rest[n + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if frac == 0 {
                return self.err("a number's '.' must be followed by digits");
            }
            n += 1 + frac;
        }
        let text = &self.text[self.at..self.at + n];
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => {
                self.at += n;
                Ok(v)
            }
            _ => self.err(format!("{text:?} is not a number sluice can use")),
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = match self.peek_ident() {
            Some("by") => false,
            Some("without") => true,
            _ => return Ok(None),
        };
        self.ident();
        self.expect("(")?;
        let mut labels = Vec::new();
        if !self.eat(")") {
            loop {
                let Some(name) = self.ident() else {
                    let found = self.found();
                    return self.err(format!("expected a label name, found {found}"));
                };
                labels.push(name.to_string());
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok(Some(Grouping { without, labels }))
    }

    fn vector_agg(&mut self, op: VectorOp, depth: usize) -> Result<MetricExpr, ParseError> {
        let before = self.grouping()?;
        self.expect("(")?;
        let inner = self.expr(depth)?;
        let inner = self.metric(inner)?;
        self.expect(")")?;
        let after = self.grouping()?;
        let grouping = match (before, after) {
            (Some(_), Some(_)) => return self.err("a grouping is given twice"),
            (g, None) | (None, g) => g,
        };
        if matches!(
            self.peek_ident(),
            Some("on" | "ignoring" | "bool" | "offset")
        ) {
            let word = self.peek_ident().unwrap_or_default();
            return self.err(format!("{word} is not supported"));
        }
        Ok(MetricExpr::Vector {
            op,
            grouping,
            inner: Box::new(inner),
        })
    }

    fn range_agg(&mut self, op: RangeOp, depth: usize) -> Result<MetricExpr, ParseError> {
        self.expect("(")?;
        let (log, range) = self.log_expr(depth, true)?;
        let Some(range_ms) = range else {
            return self.err(format!(
                "{} needs a range after its log query, like [5m]",
                op.name()
            ));
        };
        if self.peek_ident() == Some("offset") {
            return self.err("offset is not supported");
        }
        self.expect(")")?;
        let grouping = self.grouping()?;
        Ok(MetricExpr::Range(RangeAgg {
            op,
            log,
            range_ms,
            grouping,
        }))
    }

    /// A selector (or a bracketed log query) and its pipeline, with a
    /// range (`[5m]`) where `ranged`.
    fn log_expr(
        &mut self,
        depth: usize,
        ranged: bool,
    ) -> Result<(LogExpr, Option<u64>), ParseError> {
        let mut range = None;
        let mut log = if self.peek() == Some(b'(') {
            let depth = self.depth(depth)?;
            self.at += 1;
            let (inner, inner_range) = self.log_expr(depth, ranged)?;
            range = inner_range;
            self.expect(")")?;
            inner
        } else {
            LogExpr {
                selector: self.selector()?,
                pipeline: Vec::new(),
            }
        };
        loop {
            if self.peek() == Some(b'[') {
                if !ranged {
                    return self.err("a range [..] belongs inside count_over_time(…) or rate(…)");
                }
                if range.is_some() {
                    return self.err("a range is given twice");
                }
                range = Some(self.range()?);
                continue;
            }
            match self.stage()? {
                Some(stage) => log.pipeline.push(stage),
                None => break,
            }
        }
        Ok((log, range))
    }

    fn range(&mut self) -> Result<u64, ParseError> {
        self.expect("[")?;
        self.skip();
        let len = self
            .rest()
            .iter()
            .position(|&b| b == b']')
            .ok_or(ParseError {
                offset: self.at,
                message: "a range [ has no closing ]".into(),
            })?;
        let text = self.text[self.at..self.at + len].trim();
        let ms = parse_duration_ms(text).map_err(|message| ParseError {
            offset: self.at,
            message,
        })?;
        self.at += len + 1;
        if ms == 0 {
            return self.err("a range must be longer than 0");
        }
        Ok(ms)
    }

    fn selector(&mut self) -> Result<Vec<LabelMatcher>, ParseError> {
        self.expect("{")?;
        let mut matchers = Vec::new();
        if self.eat("}") {
            return self.err(
                "an empty selector {} matches no stream: give at least one matcher, like {topic=~\".+\"}",
            );
        }
        loop {
            let Some(name) = self.ident() else {
                let found = self.found();
                return self.err(format!("expected a label name, found {found}"));
            };
            let op = if self.eat("=~") {
                MatchOp::Re
            } else if self.eat("!~") {
                MatchOp::NotRe
            } else if self.eat("!=") {
                MatchOp::Ne
            } else if self.eat("=") {
                MatchOp::Eq
            } else {
                let found = self.found();
                return self.err(format!("expected =, !=, =~ or !~, found {found}"));
            };
            let value = self.string()?;
            if matches!(op, MatchOp::Re | MatchOp::NotRe) {
                self.check_regex(&anchored(&value))?;
            }
            matchers.push(LabelMatcher {
                name: name.to_string(),
                op,
                value,
            });
            if self.eat("}") {
                return Ok(matchers);
            }
            self.expect(",")?;
        }
    }

    fn check_regex(&self, pattern: &str) -> Result<(), ParseError> {
        match regex::bytes::RegexBuilder::new(pattern)
            .size_limit(16 << 20)
            .build()
        {
            Ok(_) => Ok(()),
            Err(e) => self.err(format!("invalid regex {pattern:?}: {e}")),
        }
    }

    /// A pipeline stage, or `None` when none is at the cursor.
    fn stage(&mut self) -> Result<Option<Stage>, ParseError> {
        let op = if self.eat("|=") {
            FilterOp::Contains
        } else if self.eat("!=") {
            FilterOp::NotContains
        } else if self.eat("|~") {
            FilterOp::Regex
        } else if self.eat("!~") {
            FilterOp::NotRegex
        } else if self.starts("|>") {
            return self.err("pattern line filters |> are not supported");
        } else if self.eat("|") {
            return self.pipe_stage().map(Some);
        } else {
            return Ok(None);
        };
        let mut values = Vec::new();
        loop {
            if self.peek_ident() == Some("ip") {
                return self.err("ip() line filters are not supported");
            }
            let value = self.string()?;
            if matches!(op, FilterOp::Regex | FilterOp::NotRegex) {
                self.check_regex(&value)?;
            }
            values.push(value);
            if self.peek_ident() != Some("or") {
                break;
            }
            self.ident();
        }
        Ok(Some(Stage::Line(LineFilter { op, values })))
    }

    /// What follows a lone `|`: only `drop __error__, __error_details__`.
    fn pipe_stage(&mut self) -> Result<Stage, ParseError> {
        let start = self.at;
        let Some(word) = self.ident() else {
            let found = self.found();
            return self.err(format!("expected a stage after |, found {found}"));
        };
        if word != "drop" {
            self.at = start;
            return match word {
                "json" | "logfmt" | "regexp" | "pattern" | "unpack" | "line_format"
                | "label_format" | "unwrap" | "decolorize" | "keep" | "distinct" => {
                    self.err(format!("the stage | {word} is not supported"))
                }
                _ => self.err(format!(
                    "label filters (| {word} …) and parsers are not supported"
                )),
            };
        }
        let mut names = Vec::new();
        loop {
            let Some(name) = self.ident() else {
                let found = self.found();
                return self.err(format!("expected a label name after drop, found {found}"));
            };
            if !matches!(name, "__error__" | "__error_details__") {
                return self.err(format!(
                    "| drop {name} is not supported: only __error__ and __error_details__ may be dropped"
                ));
            }
            // `__error__="x"` would be a drop matcher; `!=`/`!~` after a
            // name is read as the next line filter (a drop matcher there
            // would be refused anyway).
            if self.peek() == Some(b'=') {
                return self.err("drop with a matcher is not supported");
            }
            names.push(name.to_string());
            if !self.eat(",") {
                return Ok(Stage::Drop(names));
            }
        }
    }

    /// A Go string: `"…"` with escapes, or `` `…` `` raw.
    fn string(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(b'`') => {
                let rest = &self.rest()[1..];
                let Some(n) = rest.iter().position(|&b| b == b'`') else {
                    return self.err("a `string has no closing `");
                };
                let value = self.text[self.at + 1..self.at + 1 + n].to_string();
                self.at += n + 2;
                Ok(value)
            }
            Some(b'"') => {
                let (value, used) =
                    unquote(&self.text[self.at..]).map_err(|message| ParseError {
                        offset: self.at,
                        message,
                    })?;
                self.at += used;
                Ok(value)
            }
            _ => {
                let found = self.found();
                self.err(format!("expected a \"string\" or `string`, found {found}"))
            }
        }
    }
}

fn range_op(word: &str) -> Option<RangeOp> {
    Some(match word {
        "count_over_time" => RangeOp::CountOverTime,
        "rate" => RangeOp::Rate,
        "bytes_over_time" => RangeOp::BytesOverTime,
        "bytes_rate" => RangeOp::BytesRate,
        _ => return None,
    })
}

fn vector_op(word: &str) -> Option<VectorOp> {
    Some(match word {
        "sum" => VectorOp::Sum,
        "count" => VectorOp::Count,
        "min" => VectorOp::Min,
        "max" => VectorOp::Max,
        "avg" => VectorOp::Avg,
        _ => return None,
    })
}

/// A label regex as Prometheus runs it: anchored at both ends.
pub fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// Read a Go double-quoted string at the start of `text`: its value and
/// the bytes it took.
fn unquote(text: &str) -> Result<(String, usize), String> {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err("a \"string has no closing \"".into());
        };
        match b {
            b'"' => break,
            b'\n' => return Err("a \"string may not hold a newline; write \\n".into()),
            b'\\' => {
                let Some(&e) = bytes.get(i + 1) else {
                    return Err("a \"string ends in a lone \\".into());
                };
                i += 2;
                let simple = match e {
                    b'a' => Some(7),
                    b'b' => Some(8),
                    b'f' => Some(12),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'v' => Some(11),
                    b'\\' => Some(b'\\'),
                    b'"' => Some(b'"'),
                    _ => None,
                };
                if let Some(c) = simple {
                    out.push(c);
                    continue;
                }
                let hex = |n: usize, i: usize| -> Result<u32, String> {
                    let digits = text
                        .get(i..i + n)
                        .ok_or_else(|| format!("\\{} needs {n} hex digits", e as char))?;
                    u32::from_str_radix(digits, 16).map_err(|_| {
                        format!("\\{} needs {n} hex digits, not {digits:?}", e as char)
                    })
                };
                match e {
                    b'x' => {
                        out.push(hex(2, i)? as u8);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let n = if e == b'u' { 4 } else { 8 };
                        let code = hex(n, i)?;
                        let c = char::from_u32(code)
                            .ok_or_else(|| format!("\\{} {code:#x} is no character", e as char))?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += n;
                    }
                    b'0'..=b'7' => {
                        let digits = text
                            .get(i - 1..i + 2)
                            .filter(|d| d.bytes().all(|b| (b'0'..=b'7').contains(&b)))
                            .ok_or("an octal escape needs 3 digits 0-7")?;
                        let v = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
                        if v > 255 {
                            return Err(format!("octal escape \\{digits} is over 255"));
                        }
                        out.push(v as u8);
                        i += 2;
                    }
                    other => {
                        return Err(format!(
                            "unknown escape \\{} in a \"string",
                            (other as char).escape_default()
                        ));
                    }
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let value = String::from_utf8(out)
        .map_err(|_| "a \"string's escapes make invalid UTF-8".to_string())?;
    Ok((value, i + 1))
}

/// A Prometheus duration (`5m`, `1h30m`, `250ms`; units y w d h m s ms,
/// largest first, each at most once) in ms.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    // Order of the units, largest first, to check they descend.
    fn rank(unit: &str) -> u8 {
        match unit {
            "y" => 0,
            "w" => 1,
            "d" => 2,
            "h" => 3,
            "m" => 4,
            "s" => 5,
            _ => 6,
        }
    }
    let bad = || format!("{text:?} is not a duration like 5m, 1h30m or 250ms");
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last: Option<u8> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, size) = UNITS
            .iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(bad)?;
        let r = rank(unit);
        if last.is_some_and(|l| l >= r) {
            return Err(bad());
        }
        last = Some(r);
        rest = &rest[unit.len()..];
        total = n
            .checked_mul(*size)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}
