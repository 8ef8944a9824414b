//! `sluice-testsvc`: a synthetic "service" that writes realistic log lines.
//!
//! Used by `sluice testsvc`, by integration tests and by the benchmarks to
//! produce load that looks like what sluice ingests in production: a mix of
//!
//! * nginx/apache combined access-log lines (with nginx timing fields),
//! * plain `2026-11-21T06:00:00.123Z ERROR svc: message k=v` lines,
//! * Python-logging lines (`2026-11-21 06:00:00,123 WARN [svc] ...`),
//! * logfmt in go-kit (`ts=... level=info ...`) and slog (`time=... level=INFO ...`) flavours,
//! * JSON lines in zap (`{"level":"error","ts":1795327200.123,...}`) and
//!   upper-case (`{"ts":"...","level":"ERROR",...}`) flavours,
//!
//! carrying request ids, user ids, hex trace and span ids, IPv4 addresses,
//! durations, HTTP methods, paths and statuses, hosts and regions.
//!
//! Properties the tests and benchmarks rely on:
//!
//! * no line contains `\n` or `\r`;
//! * the upper-case token `ERROR` appears in roughly 1% of lines (about 1.5%
//!   of lines have error severity; the lower-case styles spell it `error`);
//! * lines are about [`Config::size`] bytes long (±25% jitter for sizes of 60
//!   and more; very small sizes are floored by the timestamp and level);
//! * output is a pure function of [`Config::size`] and [`Config::seed`] (the
//!   pacing only decides *when* lines are written).
//!
//! For speed, [`run`] generates a pool of lines (about 16 MiB, or just
//! [`Config::count`] lines when that is smaller) once and then cycles through
//! it, writing large chunks, so an unpaced run is limited by the writer, not
//! by the generator. Timestamps inside the pool are fixed (starting at
//! 2026-11-21T06:00:00Z) and repeat when the pool wraps.

mod generator;
mod realistic;
mod timefmt;
mod vocab;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use generator::LineGen;

/// Bytes of lines generated up front by [`run`] before cycling.
const POOL_BYTES: usize = 16 << 20;
/// Never fewer lines than this in a pool (unless `count` is smaller).
const MIN_POOL_LINES: usize = 64;
/// Largest single write in the unpaced path.
const CHUNK_BYTES: usize = 1 << 20;
/// Pacing granularity when a rate is set.
const SLICE: Duration = Duration::from_millis(10);

/// What to generate and how fast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Approximate bytes per line, excluding the newline.
    pub size: usize,
    /// Lines per second; 0 means as fast as the writer accepts.
    pub rate: u64,
    /// Stop after this many lines; `None` runs until the writer fails.
    pub count: Option<u64>,
    /// Seed for the random generator; equal seeds give equal lines.
    pub seed: u64,
    /// Which corpus: the mixed one, or the realistic one that repeats as
    /// production logs do (see [`Corpus`]).
    pub corpus: Corpus,
}

/// The corpora `sluice testsvc` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Corpus {
    /// Every value drawn afresh: the vocabulary recurs, little else
    /// (the module docs above).
    #[default]
    Mixed,
    /// A few hundred templates with Zipf-skewed use, request ids on several
    /// interleaved lines, Zipf-skewed users and client addresses; line
    /// length follows the template, not [`Config::size`].
    Realistic,
}

/// The default bytes per line (`--size`).
pub const DEFAULT_SIZE: usize = 100;
/// The default lines per second (`--rate`).
pub const DEFAULT_RATE: u64 = 100;
/// The default seed (`--seed`).
pub const DEFAULT_SEED: u64 = 1;

impl Default for Config {
    /// 100-byte lines at 100 lines/s, forever, seed 1 (the CLI defaults).
    fn default() -> Self {
        Self {
            size: DEFAULT_SIZE,
            rate: DEFAULT_RATE,
            count: None,
            seed: DEFAULT_SEED,
            corpus: Corpus::Mixed,
        }
    }
}

/// Generated lines stored back to back, with the end offset of each line.
struct Pool {
    data: Vec<u8>,
    /// `ends[i]` is the offset just past line `i`'s newline.
    ends: Vec<usize>,
}

impl Pool {
    fn build(cfg: &Config, lines: usize) -> Self {
        let mut data = Vec::with_capacity(lines.saturating_mul(cfg.size + 1).min(POOL_BYTES * 2));
        let mut ends = Vec::with_capacity(lines);
        match cfg.corpus {
            Corpus::Mixed => {
                let mut gen_ = LineGen::new(cfg.size, cfg.seed);
                for _ in 0..lines {
                    gen_.next_line(&mut data);
                    ends.push(data.len());
                }
            }
            Corpus::Realistic => {
                let mut gen_ = realistic::RealisticGen::new(cfg.seed);
                for _ in 0..lines {
                    gen_.next_line(&mut data);
                    ends.push(data.len());
                }
            }
        }
        Self { data, ends }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn start(&self, line: usize) -> usize {
        if line == 0 { 0 } else { self.ends[line - 1] }
    }

    /// Writes `n` lines starting at pool line `*pos`, wrapping around, in
    /// chunks of at most [`CHUNK_BYTES`]; advances `*pos`.
    fn write_lines(&self, out: &mut dyn Write, pos: &mut usize, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let from = *pos;
            let avail = (self.len() - from) as u64;
            let mut to = from + n.min(avail) as usize;
            // Keep single writes bounded, but always make progress.
            let start = self.start(from);
            if self.ends[to - 1] - start > CHUNK_BYTES {
                let limit = start + CHUNK_BYTES;
                let k = self.ends[from..to].partition_point(|&e| e <= limit);
                to = from + k.max(1);
            }
            out.write_all(&self.data[start..self.ends[to - 1]])?;
            n -= (to - from) as u64;
            *pos = if to == self.len() { 0 } else { to };
        }
        Ok(())
    }
}

/// How many lines [`run`] puts in its pool for `cfg`.
fn pool_lines(cfg: &Config) -> usize {
    let by_size = (POOL_BYTES / (cfg.size + 1)).max(MIN_POOL_LINES);
    match cfg.count {
        Some(c) => by_size.min(usize::try_from(c).unwrap_or(usize::MAX)),
        None => by_size,
    }
}

/// Writes lines to `out` as configured and returns how many were written.
///
/// Runs until `cfg.count` lines are written (forever when `None`) or `out`
/// fails; write errors, including `BrokenPipe`, are returned to the caller.
/// With `cfg.rate > 0` lines are written in small batches every 10 ms (or at
/// the time the next line is due, for low rates) and `out` is flushed after
/// each batch; with `cfg.rate == 0` lines are written in large chunks.
pub fn run(cfg: &Config, out: &mut dyn Write) -> io::Result<u64> {
    let lines = pool_lines(cfg);
    if lines == 0 {
        out.flush()?;
        return Ok(0);
    }
    let pool = Pool::build(cfg, lines);
    let mut pos = 0usize;
    let mut written = 0u64;
    let limit = cfg.count.unwrap_or(u64::MAX);

    if cfg.rate == 0 {
        while written < limit {
            let n = (limit - written).min(pool.len() as u64);
            pool.write_lines(out, &mut pos, n)?;
            written += n;
        }
        out.flush()?;
        return Ok(written);
    }

    let start = Instant::now();
    let rate = u128::from(cfg.rate);
    while written < limit {
        let elapsed = start.elapsed().as_nanos();
        // Line k (0-based) is due at k / rate seconds.
        let due = (elapsed * rate / 1_000_000_000 + 1).min(u128::from(limit)) as u64;
        if due > written {
            pool.write_lines(out, &mut pos, due - written)?;
            out.flush()?;
            written = due;
        }
        if written >= limit {
            break;
        }
        let next_due = Duration::from_nanos(
            u64::try_from(u128::from(written) * 1_000_000_000 / rate).unwrap_or(u64::MAX),
        );
        let wait = next_due.saturating_sub(start.elapsed()).max(SLICE);
        std::thread::sleep(wait);
    }
    out.flush()?;
    Ok(written)
}

/// Generates `lines` newline-terminated lines for `cfg.size` and `cfg.seed`
/// (rate and count are ignored), e.g. as benchmark input.
///
/// The first `n` lines of [`run`]'s output equal `generate_pool(cfg, n)` as
/// long as `n` is within run's pool (about 16 MiB of lines).
pub fn generate_pool(cfg: &Config, lines: usize) -> Vec<u8> {
    Pool::build(cfg, lines).data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(size: usize, count: u64, seed: u64) -> Config {
        Config {
            size,
            rate: 0,
            count: Some(count),
            seed,
            corpus: Corpus::Mixed,
        }
    }

    fn lines(buf: &[u8]) -> Vec<&[u8]> {
        assert_eq!(buf.last(), Some(&b'\n'), "output must end with a newline");
        buf[..buf.len() - 1].split(|&b| b == b'\n').collect()
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn no_newlines_or_carriage_returns_inside_lines() {
        for size in [1, 40, 100, 200, 1000, 4096] {
            let buf = generate_pool(&cfg(size, 0, 7), 5000);
            let ls = lines(&buf);
            assert_eq!(ls.len(), 5000);
            assert!(!buf.contains(&b'\r'), "size {size}: CR in output");
            assert!(ls.iter().all(|l| !l.is_empty()), "size {size}: empty line");
            assert!(buf.is_ascii(), "size {size}: non-ascii output");
        }
    }

    #[test]
    fn size_roughly_honoured() {
        for (size, lo, hi) in [
            (40usize, 30.0, 60.0),
            (100, 90.0, 112.0),
            (200, 185.0, 215.0),
            (1000, 950.0, 1050.0),
            (65_536, 62_000.0, 69_000.0),
        ] {
            let n = if size > 10_000 { 200 } else { 20_000 };
            let buf = generate_pool(&cfg(size, 0, 1), n);
            let ls = lines(&buf);
            let mean = ls.iter().map(|l| l.len()).sum::<usize>() as f64 / ls.len() as f64;
            assert!(
                (lo..=hi).contains(&mean),
                "size {size}: mean line length {mean}"
            );
            let max = ls.iter().map(|l| l.len()).max().unwrap();
            assert!(max <= size * 3 / 2 + 64, "size {size}: longest line {max}");
        }
    }

    #[test]
    fn error_fraction_about_one_percent() {
        for seed in [0, 42] {
            let buf = generate_pool(&cfg(100, 0, seed), 100_000);
            let ls = lines(&buf);
            let errors = ls.iter().filter(|l| contains(l, b"ERROR")).count();
            let frac = errors as f64 / ls.len() as f64;
            assert!(
                (0.005..=0.03).contains(&frac),
                "seed {seed}: ERROR fraction {frac}"
            );
            let lower = ls.iter().filter(|l| contains(l, b"error")).count();
            assert!(lower > 0, "lower-case error levels are mixed in too");
        }
    }

    #[test]
    fn formats_are_mixed() {
        let buf = generate_pool(&cfg(150, 0, 3), 10_000);
        let ls = lines(&buf);
        let count = |pred: &dyn Fn(&[u8]) -> bool| ls.iter().filter(|l| pred(l)).count();
        let json = count(&|l| l.starts_with(b"{\"") && l.ends_with(b"}"));
        let kit = count(&|l| l.starts_with(b"ts="));
        let slog = count(&|l| l.starts_with(b"time="));
        let access = count(&|l| contains(l, b" HTTP/1.1\" "));
        let plain = count(&|l| l.len() > 24 && l[10] == b'T' && l[23] == b'Z');
        for (name, n) in [
            ("json", json),
            ("kit", kit),
            ("slog", slog),
            ("access", access),
            ("plain", plain),
        ] {
            assert!(n > 500, "{name}: only {n} of 10000 lines");
        }
        assert!(count(&|l| contains(l, b"trace_id")) > 1000);
        assert!(count(&|l| contains(l, b"request_id")) > 1000);
        assert!(count(&|l| contains(l, b"status=5")) > 0);
    }

    #[test]
    fn json_lines_are_well_formed_enough() {
        let buf = generate_pool(&cfg(300, 0, 9), 5000);
        for l in lines(&buf).into_iter().filter(|l| l.starts_with(b"{")) {
            let quotes = l.iter().filter(|&&b| b == b'"').count();
            assert_eq!(
                quotes % 2,
                0,
                "unbalanced quotes: {}",
                String::from_utf8_lossy(l)
            );
            assert!(!l.contains(&b'\\'));
            assert_eq!(l.iter().filter(|&&b| b == b'{').count(), 1);
        }
    }

    #[test]
    fn count_honoured_exactly() {
        for (size, count) in [
            (100usize, 0u64),
            (100, 1),
            (100, 12_345),
            (40, 100_000),
            (8000, 5000),
        ] {
            let mut out = Vec::new();
            let n = run(&cfg(size, count, 5), &mut out).unwrap();
            assert_eq!(n, count);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count() as u64, count);
            assert!(out.is_empty() || out.ends_with(b"\n"));
        }
    }

    #[test]
    fn run_cycles_the_pool() {
        // 8000-byte lines give a pool of ~2000 lines; 5000 lines wrap twice.
        let c = cfg(8000, 5000, 11);
        let mut out = Vec::new();
        run(&c, &mut out).unwrap();
        let pool_n = pool_lines(&Config {
            count: None,
            ..c.clone()
        });
        assert!(pool_n < 5000);
        let pool = generate_pool(&c, pool_n);
        assert!(out.starts_with(&pool));
        assert_eq!(&out[pool.len()..2 * pool.len()], &pool[..]);
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate_pool(&cfg(120, 0, 77), 3000);
        let b = generate_pool(&cfg(120, 0, 77), 3000);
        let c = generate_pool(&cfg(120, 0, 78), 3000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut out = Vec::new();
        run(&cfg(120, 3000, 77), &mut out).unwrap();
        assert_eq!(out, a);
    }

    #[test]
    fn paced_run_respects_rate() {
        let c = Config {
            size: 80,
            rate: 2000,
            count: Some(300),
            seed: 1,
            corpus: Corpus::Mixed,
        };
        let t = Instant::now();
        let mut out = Vec::new();
        assert_eq!(run(&c, &mut out).unwrap(), 300);
        let secs = t.elapsed().as_secs_f64();
        // 300 lines at 2000/s is ~150 ms (pool generation included).
        assert!((0.1..2.0).contains(&secs), "took {secs}s");
        assert_eq!(out, generate_pool(&c, 300));
    }

    #[test]
    fn write_errors_are_returned() {
        struct Broken(usize);
        impl Write for Broken {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe));
                }
                self.0 -= 1;
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let c = Config {
            size: 100,
            rate: 0,
            count: None,
            seed: 0,
            corpus: Corpus::Mixed,
        };
        let err = run(&c, &mut Broken(3)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
