//! The line generator: one realistic log line at a time from a seeded RNG.
//!
//! Each line is built as `head + message + fields + tail`, where the head and
//! tail depend on the output style (plain, Python logging, go-kit logfmt,
//! slog logfmt, zap JSON, upper-case JSON, nginx combined access log). Fields
//! are added in priority order while they fit the target length, then the
//! message is padded with filler words (or trimmed) so the line lands on the
//! target. Lines never contain `\n` or `\r`, and the upper-case token `ERROR`
//! only appears as the level of error lines in the upper-case styles.

use std::fmt::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::timefmt::{TsFormat, days_from_civil, write_ts};
use crate::vocab::{self, Kind, Level};

/// Output styles, each mimicking a common producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// nginx/apache combined log format, with nginx timing fields appended.
    Access,
    /// `2026-11-21T06:00:00.123Z ERROR svc: message k=v`
    Plain,
    /// `2026-11-21 06:00:00,123 ERROR [svc] message k=v`
    Python,
    /// `ts=... level=error svc=... caller=... msg="..." k=v` (go-kit)
    KitLogfmt,
    /// `time=... level=ERROR msg="..." svc=... k=v` (Go slog TextHandler)
    SlogLogfmt,
    /// `{"level":"error","ts":1795327200.123,"logger":"svc",...}` (zap)
    ZapJson,
    /// `{"ts":"...","level":"ERROR","svc":"...","msg":"...",...}` (logback/slog JSON)
    UpperJson,
}

impl Style {
    /// Plain and Python lines have the shortest mandatory part; they may cut
    /// their message to get near small targets.
    fn compact(self) -> bool {
        matches!(self, Style::Plain | Style::Python)
    }
}

/// Cumulative weights (per mille) of the styles.
const STYLE_WEIGHTS: &[(Style, u32)] = &[
    (Style::Access, 250),
    (Style::Plain, 400),
    (Style::Python, 500),
    (Style::KitLogfmt, 650),
    (Style::SlogLogfmt, 750),
    (Style::ZapJson, 875),
    (Style::UpperJson, 1000),
];

/// A field value: rendered text plus whether JSON should leave it unquoted.
struct Field {
    key: &'static str,
    val: String,
    num: bool,
}

/// Generates log lines; deterministic for a given size and seed.
pub struct LineGen {
    rng: StdRng,
    size: usize,
    now_us: i64,
    pods: Vec<String>,
    head: String,
    fields: String,
    tail: String,
    msg: String,
    scratch: String,
    cand: Vec<Field>,
}

impl LineGen {
    /// A generator for lines of roughly `size` bytes.
    pub fn new(size: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let pods = vocab::SERVICES
            .iter()
            .map(|s| {
                format!(
                    "{s}-{:08x}-{}",
                    rng.random::<u32>() & 0x7fff_ffff,
                    base36(rng.random::<u32>(), 5)
                )
            })
            .collect();
        let base_s = days_from_civil(2026, 11, 21) * 86_400 + 6 * 3600;
        Self {
            rng,
            size: size.max(1),
            now_us: base_s * 1_000_000,
            pods,
            head: String::new(),
            fields: String::new(),
            tail: String::new(),
            msg: String::new(),
            scratch: String::new(),
            cand: Vec::new(),
        }
    }

    /// Appends one line, terminated by `\n`, to `out`.
    pub fn next_line(&mut self, out: &mut Vec<u8>) {
        self.now_us += self.rng.random_range(0..4000);
        let target = self.target();
        let r = self.rng.random_range(0..1000);
        let style = if target < 72 {
            // Only the compact styles can get near such small targets.
            if r % 2 == 0 {
                Style::Plain
            } else {
                Style::Python
            }
        } else {
            match STYLE_WEIGHTS
                .iter()
                .find(|(_, w)| r < *w)
                .map_or(Style::Plain, |(s, _)| *s)
            {
                // Multi-kilobyte request lines are not realistic.
                Style::Access if target > 2048 => Style::UpperJson,
                s => s,
            }
        };
        let start = out.len();
        if style == Style::Access {
            self.access_line(target, out);
        } else {
            self.app_line(style, target, out);
        }
        // Styles with a long mandatory part cannot honour small targets;
        // those lines fall back to the compact plain style.
        let len = out.len() - start;
        if !style.compact() && len > target + target / 8 + 8 {
            out.truncate(start);
            self.app_line(Style::Plain, target, out);
        }
        debug_assert!(!out[start..].contains(&b'\n') && !out[start..].contains(&b'\r'));
        out.push(b'\n');
    }

    /// The length to aim for: `size`, jittered by up to ±25% for larger sizes.
    fn target(&mut self) -> usize {
        if self.size < 60 {
            self.size
        } else {
            self.size * 3 / 4 + self.rng.random_range(0..=self.size / 2)
        }
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn level(&mut self) -> Level {
        match self.rng.random_range(0..1000) {
            0..20 => Level::Error,
            20..90 => Level::Warn,
            90..210 => Level::Debug,
            _ => Level::Info,
        }
    }

    fn app_line(&mut self, style: Style, target: usize, out: &mut Vec<u8>) {
        let level = self.level();
        let kind = self.pick(vocab::KINDS);
        let svc_idx = self.rng.random_range(0..vocab::SERVICES.len());
        let svc = vocab::SERVICES[svc_idx];
        let base_msg = self.pick(vocab::messages(kind, level));
        let json = matches!(style, Style::ZapJson | Style::UpperJson);

        self.head.clear();
        self.tail.clear();
        let ts = self.now_us;
        let h = &mut self.head;
        match style {
            Style::Plain => {
                write_ts(h, ts, TsFormat::Rfc3339Millis);
                let _ = write!(h, " {} {svc}: ", level.upper());
            }
            Style::Python => {
                write_ts(h, ts, TsFormat::Python);
                let _ = write!(h, " {} [{svc}] ", level.upper());
            }
            Style::KitLogfmt => {
                h.push_str("ts=");
                write_ts(h, ts, TsFormat::Rfc3339Millis);
                let _ = write!(h, " level={} svc={svc} msg=\"", level.lower());
                self.tail.push('"');
            }
            Style::SlogLogfmt => {
                h.push_str("time=");
                write_ts(h, ts, TsFormat::Rfc3339Micros);
                let _ = write!(h, " level={} msg=\"", level.upper());
                let _ = write!(self.tail, "\" svc={svc}");
            }
            Style::ZapJson => {
                let _ = write!(h, "{{\"level\":\"{}\",\"ts\":", level.lower());
                write_ts(h, ts, TsFormat::EpochMillis);
                let _ = write!(h, ",\"logger\":\"{svc}\",\"msg\":\"");
                self.tail.push('"');
            }
            Style::UpperJson => {
                h.push_str("{\"ts\":\"");
                write_ts(h, ts, TsFormat::Rfc3339Millis);
                let _ = write!(
                    h,
                    "\",\"level\":\"{}\",\"svc\":\"{svc}\",\"msg\":\"",
                    level.upper()
                );
                self.tail.push('"');
            }
            Style::Access => unreachable!("access lines are built by access_line"),
        }

        self.candidates(kind, level, svc_idx, style);
        let close = usize::from(json); // the closing `}`
        let fixed = self.head.len() + self.tail.len() + close;
        let min_msg = base_msg.len();
        self.fields.clear();
        let cand = std::mem::take(&mut self.cand);
        for f in &cand {
            self.scratch.clear();
            render_field(&mut self.scratch, f, json);
            if fixed + self.fields.len() + self.scratch.len() + min_msg <= target {
                self.fields.push_str(&self.scratch);
            }
        }
        self.cand = cand;
        let budget = target.saturating_sub(fixed + self.fields.len());
        self.fill_msg(base_msg, budget, ' ', style.compact());

        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(self.msg.as_bytes());
        out.extend_from_slice(self.tail.as_bytes());
        out.extend_from_slice(self.fields.as_bytes());
        if json {
            out.push(b'}');
        }
    }

    /// Fills `self.msg` with `base` plus filler words separated by `sep`, so
    /// that its length lands near `budget` (whole words only: a word is added
    /// when at least half of it fits). A `base` longer than `budget` is cut
    /// at a separator, keeping at least its first word, when `cut_base`.
    fn fill_msg(&mut self, base: &str, budget: usize, sep: char, cut_base: bool) {
        self.msg.clear();
        if base.len() <= budget || !cut_base {
            self.msg.push_str(base);
        } else {
            let cut = base[..=budget.min(base.len() - 1)]
                .rfind(sep)
                .filter(|&i| i > 0)
                .or_else(|| base.find(sep))
                .unwrap_or(base.len());
            self.msg.push_str(&base[..cut]);
        }
        loop {
            let w = self.pick(vocab::WORDS);
            let add = 1 + w.len();
            if self.msg.len() + add > budget + add / 2 {
                break;
            }
            self.msg.push(sep);
            self.msg.push_str(w);
            if self.rng.random_range(0..8) == 0 {
                let n = self.rng.random_range(0..100_000u32);
                self.scratch.clear();
                let _ = write!(self.scratch, "{sep}{n}");
                if self.msg.len() + self.scratch.len() <= budget + self.scratch.len() / 2 {
                    self.msg.push_str(&self.scratch);
                }
            }
        }
    }

    /// Candidate fields for an application line, most important first.
    fn candidates(&mut self, kind: Kind, level: Level, svc_idx: usize, style: Style) {
        let mut c = std::mem::take(&mut self.cand);
        c.clear();
        let rng = &mut self.rng;
        let s = |key, val: String| Field {
            key,
            val,
            num: false,
        };
        let n = |key, val: String| Field {
            key,
            val,
            num: true,
        };
        match kind {
            Kind::Http => {
                let status = http_status(rng, level);
                c.push(s(
                    "method",
                    vocab::METHODS[rng.random_range(0..vocab::METHODS.len())].into(),
                ));
                c.push(s("path", http_path(rng)));
                c.push(n("status", status.to_string()));
                c.push(n("duration_ms", duration_ms(rng, level)));
                c.push(s("request_id", request_id(rng)));
                c.push(n(
                    "user_id",
                    rng.random_range(1000..5_000_000u32).to_string(),
                ));
                c.push(s("client_ip", ipv4(rng)));
                c.push(n("bytes", rng.random_range(0..250_000u32).to_string()));
            }
            Kind::Db => {
                let ops = ["select", "insert", "update", "delete"];
                c.push(s(
                    "table",
                    vocab::TABLES[rng.random_range(0..vocab::TABLES.len())].into(),
                ));
                c.push(s("op", ops[rng.random_range(0..ops.len())].into()));
                c.push(n("rows", rng.random_range(0..5000u32).to_string()));
                c.push(n("duration_ms", duration_ms(rng, level)));
                c.push(s("request_id", request_id(rng)));
                c.push(s("db", format!("pg-main-{:02}", rng.random_range(1..4))));
                c.push(n("conn_id", rng.random_range(1..512u32).to_string()));
            }
            Kind::Queue => {
                c.push(s(
                    "topic",
                    vocab::TOPICS[rng.random_range(0..vocab::TOPICS.len())].into(),
                ));
                c.push(n("partition", rng.random_range(0..32u32).to_string()));
                c.push(n("offset", rng.random_range(0..90_000_000u64).to_string()));
                c.push(s(
                    "group",
                    format!("{}-consumers", vocab::SERVICES[svc_idx]),
                ));
                c.push(n("lag", rng.random_range(0..20_000u32).to_string()));
                c.push(s("message_id", uuid(rng)));
            }
            Kind::Auth => {
                let methods = ["password", "oauth", "sso", "api_key", "webauthn"];
                c.push(n(
                    "user_id",
                    rng.random_range(1000..5_000_000u32).to_string(),
                ));
                c.push(s("client_ip", ipv4(rng)));
                c.push(s(
                    "auth_method",
                    methods[rng.random_range(0..methods.len())].into(),
                ));
                c.push(s("session_id", hex64(rng)));
                c.push(s("request_id", request_id(rng)));
            }
            Kind::Job => {
                c.push(s(
                    "job",
                    vocab::JOBS[rng.random_range(0..vocab::JOBS.len())].into(),
                ));
                c.push(s("job_id", uuid(rng)));
                c.push(n("attempt", rng.random_range(1..6u32).to_string()));
                c.push(s(
                    "elapsed",
                    format!(
                        "{}.{:03}s",
                        rng.random_range(0..900u32),
                        rng.random_range(0..1000u32)
                    ),
                ));
                c.push(n("items", rng.random_range(0..1_000_000u32).to_string()));
            }
            Kind::Cache => {
                let kinds = ["user", "product", "cart", "session", "price"];
                let k = kinds[rng.random_range(0..kinds.len())];
                c.push(s(
                    "key",
                    format!(
                        "{k}:{}:v{}",
                        rng.random_range(1..2_000_000u32),
                        rng.random_range(1..4)
                    ),
                ));
                c.push(n("ttl_s", rng.random_range(30..86_400u32).to_string()));
                c.push(n("size_bytes", rng.random_range(16..65_536u32).to_string()));
                c.push(n(
                    "duration_us",
                    rng.random_range(40..50_000u32).to_string(),
                ));
            }
        }
        // Text-style loggers often lead with the request id.
        if style.compact() && rng.random_bool(0.5) {
            match c.iter().position(|f| f.key == "request_id") {
                Some(i) => {
                    let f = c.remove(i);
                    c.insert(0, f);
                }
                None => c.insert(0, s("request_id", request_id(rng))),
            }
        }
        let trace = s("trace_id", format!("{:032x}", rng.random::<u128>()));
        if rng.random_bool(0.35) {
            c.insert(c.len().min(2), trace);
        } else {
            c.push(trace);
        }
        c.push(s("span_id", hex64(rng)));
        c.push(s("host", self.pods[svc_idx].clone()));
        c.push(s(
            "region",
            vocab::REGIONS[rng.random_range(0..vocab::REGIONS.len())].into(),
        ));
        c.push(s(
            "version",
            format!("1.{}.{}", rng.random_range(0..40), rng.random_range(0..20)),
        ));
        self.cand = c;
    }

    fn access_line(&mut self, target: usize, out: &mut Vec<u8>) {
        let rng = &mut self.rng;
        let status = match rng.random_range(0..1000) {
            0..850 => 200,
            850..890 => 304,
            890..910 => 302,
            910..950 => 404,
            950..960 => 401,
            960..970 => 403,
            970..975 => 499,
            975..982 => 400,
            982..990 => 500,
            990..995 => 502,
            995..998 => 503,
            _ => 504,
        };
        let bytes = if status == 304 {
            0
        } else {
            rng.random_range(20..120_000u32)
        };
        let ua = if target < 160 {
            vocab::USER_AGENTS[rng.random_range(4..vocab::USER_AGENTS.len())]
        } else {
            vocab::USER_AGENTS[rng.random_range(0..vocab::USER_AGENTS.len())]
        };
        let referer = vocab::REFERERS[rng.random_range(0..vocab::REFERERS.len())];
        let method = vocab::METHODS[rng.random_range(0..vocab::METHODS.len())];
        let user = if rng.random_range(0..10) == 0 {
            format!("u{}", rng.random_range(1000..5_000_000u32))
        } else {
            "-".to_string()
        };

        self.head.clear();
        let _ = write!(self.head, "{} - {user} [", ipv4(rng));
        write_ts(&mut self.head, self.now_us, TsFormat::Clf);
        let _ = write!(self.head, "] \"{method} {}", http_path(rng));

        self.tail.clear();
        let _ = write!(
            self.tail,
            " HTTP/1.1\" {status} {bytes} \"{referer}\" \"{ua}\""
        );

        // nginx-style timing fields appended to the combined format.
        let rt = rng.random_range(0..3000u32);
        let trailing = [
            format!(" rt={}.{:03}", rt / 1000, rt % 1000),
            format!(" uct=\"0.{:03}\"", rng.random_range(0..20u32)),
            format!(
                " urt=\"{}.{:03}\"",
                rt / 1000,
                (rt % 1000).saturating_sub(1)
            ),
            format!(" req_id={:032x}", rng.random::<u128>()),
        ];
        let fixed = self.head.len() + self.tail.len();
        self.fields.clear();
        for t in &trailing {
            if fixed + self.fields.len() + t.len() <= target {
                self.fields.push_str(t);
            }
        }
        let budget = target.saturating_sub(fixed + self.fields.len());
        self.msg.clear();
        if budget >= 8 {
            let q = if self.head.contains('?') {
                "&q="
            } else {
                "?q="
            };
            let first = self.pick(vocab::WORDS);
            let base = format!("{q}{first}");
            self.fill_msg(&base, budget, '+', false);
        }
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(self.msg.as_bytes());
        out.extend_from_slice(self.tail.as_bytes());
        out.extend_from_slice(self.fields.as_bytes());
    }
}

/// Renders ` key=value` (logfmt, value quoted when needed) or `,"key":value` (JSON).
fn render_field(out: &mut String, f: &Field, json: bool) {
    if json {
        if f.num {
            let _ = write!(out, ",\"{}\":{}", f.key, f.val);
        } else {
            let _ = write!(out, ",\"{}\":\"{}\"", f.key, f.val);
        }
    } else if f.val.contains([' ', '=', '"']) {
        let _ = write!(out, " {}=\"{}\"", f.key, f.val);
    } else {
        let _ = write!(out, " {}={}", f.key, f.val);
    }
}

fn http_status(rng: &mut StdRng, level: Level) -> u16 {
    let pick = |rng: &mut StdRng, xs: &[u16]| xs[rng.random_range(0..xs.len())];
    match level {
        Level::Error => pick(rng, &[500, 502, 503, 504, 500]),
        Level::Warn => pick(rng, &[429, 499, 404, 408, 200, 200]),
        Level::Info => pick(
            rng,
            &[
                200, 200, 200, 200, 200, 200, 201, 204, 304, 301, 400, 401, 403, 404,
            ],
        ),
        Level::Debug => 200,
    }
}

fn duration_ms(rng: &mut StdRng, level: Level) -> String {
    let ms = match level {
        Level::Error => rng.random_range(1000..60_000u32),
        Level::Warn => rng.random_range(500..10_000u32),
        _ => rng.random_range(0..400u32),
    };
    format!("{ms}.{:03}", rng.random_range(0..1000u32))
}

fn http_path(rng: &mut StdRng) -> String {
    let t = vocab::PATHS[rng.random_range(0..vocab::PATHS.len())];
    let id = rng.random_range(1..3_000_000u32);
    let mut p = t.replacen("{}", &id.to_string(), 1);
    if t == "/api/v1/search" {
        let _ = write!(p, "?page={}", rng.random_range(1..20));
    }
    p
}

fn request_id(rng: &mut StdRng) -> String {
    match rng.random_range(0..3) {
        0 => uuid(rng),
        1 => format!("req-{:016x}", rng.random::<u64>()),
        _ => format!("{:024x}", rng.random::<u128>() >> 32),
    }
}

fn uuid(rng: &mut StdRng) -> String {
    let v = rng.random::<u128>();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn hex64(rng: &mut StdRng) -> String {
    format!("{:016x}", rng.random::<u64>())
}

fn ipv4(rng: &mut StdRng) -> String {
    let v = rng.random::<u32>();
    format!(
        "{}.{}.{}.{}",
        (v >> 24) % 223 + 1,
        (v >> 16) & 255,
        (v >> 8) & 255,
        (v & 255).max(1)
    )
}

/// Lower-case base-36 rendering of `v`, exactly `width` characters.
fn base36(mut v: u32, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = vec![b'0'; width];
    for c in s.iter_mut().rev() {
        *c = DIGITS[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(s).expect("ascii digits")
}
