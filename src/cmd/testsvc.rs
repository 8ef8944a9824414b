use std::{io::Write, process::ExitCode};

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Approximate bytes per line, without the newline.
    #[arg(long, default_value_t = sluice_testsvc::DEFAULT_SIZE, env = "SLUICE_TESTSVC_SIZE")]
    size: usize,
    /// Lines per second; 0 writes as fast as possible.
    #[arg(long, default_value_t = sluice_testsvc::DEFAULT_RATE, env = "SLUICE_TESTSVC_RATE")]
    rate: u64,
    /// Stop after this many lines.
    #[arg(long)]
    count: Option<u64>,
    /// Seed of the generator: the same seed gives the same lines.
    #[arg(long, default_value_t = sluice_testsvc::DEFAULT_SEED)]
    seed: u64,
    /// Which lines: mixed (every value drawn afresh; the default) or
    /// realistic (a few hundred templates used with skewed frequencies,
    /// request ids that recur over several lines, users and client
    /// addresses drawn from Zipf distributions; line length follows the
    /// template, not --size).
    #[arg(long, default_value = "mixed", value_parser = ["mixed", "realistic"])]
    corpus: String,
    /// How lines are framed: lines (one per line), syslog (octet-counted
    /// RFC 5424, as rsyslog forwards, for the syslog port), syslog-lf (the
    /// same messages one per line) or fluent (Fluentd Forward-mode frames
    /// asking for acks, for the fluent port). The framed formats spread lines
    /// over four apps (tags) and stamp them with the time the generator
    /// started.
    #[arg(long, default_value = "lines", value_parser = ["lines", "syslog", "syslog-lf", "fluent"])]
    format: String,
    /// With --format fluent: events per frame (chunk).
    #[arg(long, default_value_t = 1000)]
    frame_events: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = sluice_testsvc::Config {
        size: args.size,
        rate: args.rate,
        count: args.count,
        seed: args.seed,
        corpus: if args.corpus == "realistic" {
            sluice_testsvc::Corpus::Realistic
        } else {
            sluice_testsvc::Corpus::Mixed
        },
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format.as_str() {
        "lines" => {
            sluice_testsvc::run(&config, &mut out).context("write lines to stdout")?;
        }
        format => {
            let framing = match format {
                "syslog" => Framing::Syslog { counted: true },
                "syslog-lf" => Framing::Syslog { counted: false },
                _ => Framing::Fluent(args.frame_events.max(1)),
            };
            let mut framed = Reframe::new(framing, &mut out);
            sluice_testsvc::run(&config, &mut framed).context("write frames to stdout")?;
            framed.finish().context("write frames to stdout")?;
        }
    }
    out.flush().context("write lines to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Apps (syslog APP-NAMEs, fluent tags) the framed formats spread lines over.
const APPS: [&str; 4] = ["web", "api", "worker", "db"];

enum Framing {
    /// RFC 5424, octet-counted or one per line.
    Syslog { counted: bool },
    /// Events per frame.
    Fluent(usize),
}

/// Re-frames the generator's lines for a protocol port.
struct Reframe<'a> {
    framing: Framing,
    out: &'a mut dyn Write,
    /// An incomplete line from the last write.
    partial: Vec<u8>,
    /// Framed output waiting to be written.
    buf: Vec<u8>,
    lines: u64,
    frames: u64,
    timestamp: String,
    time_ns: i64,
    fluent: Option<sluice_fluent::ForwardEncoder>,
}

impl<'a> Reframe<'a> {
    fn new(framing: Framing, out: &'a mut dyn Write) -> Self {
        let now = std::time::SystemTime::now();
        let since_epoch = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Reframe {
            framing,
            out,
            partial: Vec::new(),
            buf: Vec::with_capacity(1 << 20),
            lines: 0,
            frames: 0,
            timestamp: humantime::format_rfc3339_millis(now).to_string(),
            time_ns: since_epoch.as_nanos() as i64,
            fluent: None,
        }
    }

    fn line(&mut self, line: &[u8]) {
        let app = APPS[(self.lines % APPS.len() as u64) as usize];
        self.lines += 1;
        match self.framing {
            Framing::Syslog { counted } => {
                use std::io::Write as _;
                let header = format!("<134>1 {} bench-host {app} - - - ", self.timestamp);
                if counted {
                    let _ = write!(self.buf, "{} ", header.len() + line.len());
                }
                self.buf.extend_from_slice(header.as_bytes());
                self.buf.extend_from_slice(line);
                if !counted {
                    self.buf.push(b'\n');
                }
            }
            Framing::Fluent(per_frame) => {
                let tag = APPS[(self.frames % APPS.len() as u64) as usize];
                let encoder = self
                    .fluent
                    .get_or_insert_with(|| sluice_fluent::ForwardEncoder::new(tag));
                encoder.push(self.time_ns, line);
                if encoder.len() >= per_frame {
                    self.seal();
                }
            }
        }
    }

    fn seal(&mut self) {
        if let Some(mut encoder) = self.fluent.take() {
            self.frames += 1;
            let frame = encoder.seal(&format!("bench-{:x}", self.frames));
            self.buf.extend_from_slice(&frame);
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.seal();
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

impl Write for Reframe<'_> {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let len = data.len();
        while let Some(end) = memchr::memchr(b'\n', data) {
            if self.partial.is_empty() {
                self.line(&data[..end]);
            } else {
                self.partial.extend_from_slice(&data[..end]);
                let line = std::mem::take(&mut self.partial);
                self.line(&line);
            }
            data = &data[end + 1..];
        }
        self.partial.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(len)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}
