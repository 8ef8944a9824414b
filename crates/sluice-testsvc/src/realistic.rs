//! The realistic corpus: lines that repeat as production logs do.
//!
//! The mixed corpus ([`crate::generator`]) draws every value afresh, so
//! nothing recurs but the vocabulary. Real logs are more repetitive, and
//! compression and indexes behave differently on them:
//! - a few hundred **templates** (service, style, level, message and the
//!   fields it carries), used with Zipf-skewed frequencies: a handful make
//!   most lines, most are rare;
//! - **request ids** that recur: a request writes 2 to 8 lines, and up to 64
//!   requests are open at once, so its lines interleave with others';
//! - **users** and **client IPs** drawn from Zipf distributions over 100,000
//!   users and 20,000 addresses: a few are everywhere, most are seen once or
//!   twice;
//! - nginx access lines for the HTTP templates, whose statuses and paths
//!   follow the same skew.
//!
//! Line length follows from the template (about 90 to 250 bytes), not from
//! `--size`. Like the mixed corpus, no line holds `\n` or `\r`, the output
//! is a pure function of the seed, and the upper-case `ERROR` appears only
//! as the level of error lines (about 1% of lines).

use std::fmt::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::timefmt::{TsFormat, days_from_civil, write_ts};
use crate::vocab::{self, Kind, Level};

/// Templates in the corpus.
const TEMPLATES: usize = 300;
/// Zipf exponent of template use.
const TEMPLATE_SKEW: f64 = 1.1;
/// Distinct users and their skew.
const USERS: usize = 100_000;
const USER_SKEW: f64 = 1.05;
/// Distinct client addresses and their skew.
const CLIENTS: usize = 20_000;
const CLIENT_SKEW: f64 = 1.2;
/// Distinct ids in request paths.
const ITEMS: usize = 50_000;
/// Requests open at once.
const OPEN_REQUESTS: usize = 64;

/// How a template's line is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Access,
    Plain,
    Logfmt,
    Json,
}

#[derive(Clone, Debug)]
struct Template {
    service: &'static str,
    layout: Layout,
    level: Level,
    message: &'static str,
    kind: Kind,
    /// Path and method of an HTTP template.
    route: (&'static str, &'static str),
    /// Status of an access line.
    status: u16,
}

/// A discrete Zipf distribution over `0..n` (rank 0 the most frequent),
/// sampled by binary search in its cumulative weights.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(exponent);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let total = *self.cumulative.last().expect("n > 0");
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

struct Request {
    id: String,
    user: usize,
    client: usize,
    lines_left: u32,
}

/// Generates the realistic corpus; deterministic for a seed.
pub struct RealisticGen {
    rng: StdRng,
    now_us: i64,
    templates: Vec<Template>,
    template_zipf: Zipf,
    user_zipf: Zipf,
    client_zipf: Zipf,
    /// A random permutation: which user id a Zipf rank is, so popular users
    /// are not simply the small numbers.
    user_ids: Vec<u32>,
    client_ips: Vec<u32>,
    /// Ids in paths (orders, products): skewed like users.
    item_zipf: Zipf,
    open: Vec<Request>,
    line: String,
}

impl RealisticGen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> RealisticGen {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x005E_ED0F_4EA1);
        let mut templates: Vec<Template> = (0..TEMPLATES).map(|_| template(&mut rng)).collect();
        // Errors: two plain-text templates at Zipf ranks 20 and 60 make
        // about 1% of lines (as in production, errors are a steady trickle
        // of a few kinds); every other template is below error level.
        for (rank, t) in templates.iter_mut().enumerate() {
            if rank == 20 || rank == 60 {
                t.level = Level::Error;
                t.layout = Layout::Plain;
                let messages = vocab::messages(t.kind, Level::Error);
                t.message = messages[rank % messages.len()];
            } else if t.level == Level::Error {
                t.level = Level::Warn;
                let messages = vocab::messages(t.kind, Level::Warn);
                t.message = messages[rank % messages.len()];
            }
        }
        let mut user_ids: Vec<u32> = (0..USERS as u32).map(|i| 100_000 + i * 7).collect();
        shuffle(&mut user_ids, &mut rng);
        let client_ips: Vec<u32> = (0..CLIENTS)
            .map(|_| rng.random::<u32>() | 0x0a00_0000)
            .collect();
        let base_s = days_from_civil(2026, 11, 21) * 86_400 + 6 * 3600;
        RealisticGen {
            rng,
            now_us: base_s * 1_000_000,
            templates,
            template_zipf: Zipf::new(TEMPLATES, TEMPLATE_SKEW),
            user_zipf: Zipf::new(USERS, USER_SKEW),
            client_zipf: Zipf::new(CLIENTS, CLIENT_SKEW),
            user_ids,
            client_ips,
            item_zipf: Zipf::new(ITEMS, USER_SKEW),
            open: Vec::with_capacity(OPEN_REQUESTS),
            line: String::with_capacity(512),
        }
    }

    /// Appends one line, terminated by `\n`, to `out`.
    pub fn next_line(&mut self, out: &mut Vec<u8>) {
        self.now_us += self.rng.random_range(0..2000);
        let request = self.request();
        let template = self.templates[self.template_zipf.sample(&mut self.rng)].clone();
        let (id, user, client) = {
            let r = &self.open[request];
            (
                r.id.clone(),
                self.user_ids[r.user],
                self.client_ips[r.client],
            )
        };
        self.line.clear();
        self.render(&template, &id, user, client);
        out.extend_from_slice(self.line.as_bytes());
        out.push(b'\n');
        let r = &mut self.open[request];
        r.lines_left -= 1;
        if r.lines_left == 0 {
            self.open.swap_remove(request);
        }
    }

    /// The index of an open request to write for: a new one when fewer
    /// than [`OPEN_REQUESTS`] are open and a coin says so.
    fn request(&mut self) -> usize {
        if self.open.len() < OPEN_REQUESTS && (self.open.is_empty() || self.rng.random_bool(0.3)) {
            let id = format!("{:016x}", self.rng.random::<u64>());
            let user = self.user_zipf.sample(&mut self.rng);
            let client = self.client_zipf.sample(&mut self.rng);
            let lines_left = self.rng.random_range(2..=8);
            self.open.push(Request {
                id,
                user,
                client,
                lines_left,
            });
            return self.open.len() - 1;
        }
        self.rng.random_range(0..self.open.len())
    }

    fn render(&mut self, t: &Template, request: &str, user: u32, client: u32) {
        let ip = format!(
            "{}.{}.{}.{}",
            client >> 24,
            (client >> 16) & 0xff,
            (client >> 8) & 0xff,
            client & 0xff
        );
        let millis = self.rng.random_range(1..400u32);
        let item = 1000 + self.item_zipf.sample(&mut self.rng);
        // A timeout says how long it waited, as real ones do: a regex with a
        // literal prefix (`deadline exceeded after 4[0-9]{3}ms`) has work.
        let message: std::borrow::Cow<'static, str> = if t.message.ends_with("deadline exceeded") {
            let waited = self.rng.random_range(1000..6000u32);
            format!("{} after {waited}ms", t.message).into()
        } else {
            t.message.into()
        };
        let line = &mut self.line;
        match t.layout {
            Layout::Access => {
                let (method, path) = t.route;
                let path = path.replace("{}", &item.to_string());
                let _ = write!(line, "{ip} - user{user} [");
                write_ts(line, self.now_us, TsFormat::Clf);
                let bytes = self.rng.random_range(200..40_000u32);
                let _ = write!(
                    line,
                    "] \"{method} {path} HTTP/1.1\" {} {bytes} \"-\" \"{}\" rt={}.{:03} req={request}",
                    t.status,
                    vocab::USER_AGENTS[(user as usize) % vocab::USER_AGENTS.len()],
                    millis / 1000,
                    millis % 1000
                );
            }
            Layout::Plain => {
                write_ts(line, self.now_us, TsFormat::Rfc3339Millis);
                let _ = write!(
                    line,
                    " {} {}: {} request_id={request} user_id={user} client={ip} duration_ms={millis}",
                    t.level.upper(),
                    t.service,
                    message
                );
            }
            Layout::Logfmt => {
                line.push_str("ts=");
                write_ts(line, self.now_us, TsFormat::Rfc3339Millis);
                let _ = write!(
                    line,
                    " level={} svc={} msg=\"{}\" request_id={request} user_id={user} client={ip} duration_ms={millis}",
                    t.level.lower(),
                    t.service,
                    message
                );
            }
            Layout::Json => {
                line.push_str("{\"ts\":\"");
                write_ts(line, self.now_us, TsFormat::Rfc3339Millis);
                let _ = write!(
                    line,
                    "\",\"level\":\"{}\",\"svc\":\"{}\",\"msg\":\"{}\",\"request_id\":\"{request}\",\"user_id\":{user},\"client\":\"{ip}\",\"duration_ms\":{millis}}}",
                    t.level.lower(),
                    t.service,
                    message
                );
            }
        }
        // Kind-specific detail, as real templates carry.
        match t.kind {
            Kind::Db => {
                let table = vocab::TABLES[(user as usize) % vocab::TABLES.len()];
                if t.layout != Layout::Json && t.layout != Layout::Access {
                    let _ = write!(line, " table={table}");
                }
            }
            Kind::Queue => {
                let topic = vocab::TOPICS[(user as usize) % vocab::TOPICS.len()];
                if t.layout != Layout::Json && t.layout != Layout::Access {
                    let _ = write!(line, " topic={topic}");
                }
            }
            _ => {}
        }
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut StdRng) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

fn template(rng: &mut StdRng) -> Template {
    let kind = vocab::KINDS[rng.random_range(0..vocab::KINDS.len())];
    // About 1% of lines are errors: errors are rare templates too.
    let level = match rng.random_range(0..1000) {
        0..=59 => Level::Debug,
        60..=899 => Level::Info,
        900..=979 => Level::Warn,
        _ => Level::Error,
    };
    let messages = vocab::messages(kind, level);
    let message = messages[rng.random_range(0..messages.len())];
    let layout = match (kind, rng.random_range(0..10)) {
        (Kind::Http, 0..=5) => Layout::Access,
        (_, 0..=3) => Layout::Plain,
        (_, 4..=6) => Layout::Logfmt,
        _ => Layout::Json,
    };
    let status = match level {
        Level::Error => [500, 502, 503, 504][rng.random_range(0..4)],
        Level::Warn => [400, 401, 403, 404, 429][rng.random_range(0..5)],
        _ => [200, 200, 200, 201, 204, 301, 304][rng.random_range(0..7)],
    };
    Template {
        service: vocab::SERVICES[rng.random_range(0..vocab::SERVICES.len())],
        layout,
        level,
        message,
        kind,
        route: (
            vocab::METHODS[rng.random_range(0..vocab::METHODS.len())],
            vocab::PATHS[rng.random_range(0..vocab::PATHS.len())],
        ),
        status,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lines(seed: u64, n: usize) -> Vec<String> {
        let mut generator = RealisticGen::new(seed);
        let mut out = Vec::new();
        for _ in 0..n {
            generator.next_line(&mut out);
        }
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        let at = line.find(key)? + key.len();
        let rest = &line[at..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        assert_eq!(lines(7, 500), lines(7, 500));
        assert_ne!(lines(7, 500), lines(8, 500));
    }

    #[test]
    fn requests_recur_and_users_are_skewed() {
        let all = lines(1, 20_000);
        assert!(all.iter().all(|l| !l.contains('\r') && !l.is_empty()));
        let mut per_request: HashMap<&str, usize> = HashMap::new();
        let mut per_user: HashMap<&str, usize> = HashMap::new();
        for line in &all {
            let request = field(line, "request_id=")
                .or_else(|| field(line, "\"request_id\":\""))
                .or_else(|| field(line, "req="))
                .expect("every line names its request");
            *per_request.entry(request).or_default() += 1;
            if let Some(user) = field(line, "user_id=").or_else(|| field(line, "\"user_id\":")) {
                *per_user.entry(user).or_default() += 1;
            }
        }
        let multi = per_request.values().filter(|&&n| n >= 2).count();
        assert!(
            multi * 2 > per_request.len(),
            "most requests write several lines: {multi} of {}",
            per_request.len()
        );
        let mut counts: Vec<usize> = per_user.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = counts.iter().take(10).sum();
        let lines_with_user: usize = counts.iter().sum();
        assert!(
            top * 20 > lines_with_user,
            "the 10 busiest users hold over 5% of lines: {top} of {lines_with_user}"
        );
    }

    #[test]
    fn errors_are_rare_and_templates_skewed() {
        let all = lines(3, 50_000);
        let errors = all.iter().filter(|l| l.contains("ERROR")).count();
        assert!(
            errors < all.len() / 20,
            "{errors} ERROR lines of {}",
            all.len()
        );
        // The most common shape (the line with digits and ids removed)
        // covers far more than an even share.
        let mut shapes: HashMap<String, usize> = HashMap::new();
        for line in &all {
            let shape: Vec<&str> = line
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|token| !token.bytes().any(|b| b.is_ascii_digit()))
                .collect();
            *shapes.entry(shape.join(" ")).or_default() += 1;
        }
        let top = shapes.values().max().copied().unwrap_or(0);
        assert!(
            top * TEMPLATES > all.len() * 5,
            "top shape {top} of {}",
            all.len()
        );
    }
}
