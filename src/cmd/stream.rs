//! `sluice stream`: a client of `GET /stream`, the live tail.
//!
//! It prints live records until interrupted. When the connection to the
//! node breaks, it connects again with `after` = the last id it printed,
//! so nothing is missed and nothing is printed twice. `--checkpoint FILE`
//! keeps that id on disk (written atomically) and starts from it next
//! time: a client killed with -9 resumes right after the last id it
//! saved.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use sluice_query::frames::{Frame, FrameDecoder};
use sluice_record::Ulid;

use super::{
    print::{self, Style},
    query::{base_url, cannot_reach},
};

#[derive(clap::Args)]
pub struct Args {
    /// Address of a sluice node's HTTP API (any node tails the whole cluster).
    #[arg(long, default_value = sluice_api::DEFAULT_ADDR, env = "SLUICE_API")]
    api: String,
    #[command(flatten)]
    filter: super::filter::Filter,
    /// Prefix each line with its ULID.
    #[arg(long, conflicts_with = "time")]
    ulid: bool,
    /// Prefix each line with its time (RFC 3339).
    #[arg(long)]
    time: bool,
    /// One JSON object per record: id, time, topic, payload (and truncated).
    #[arg(long, conflicts_with_all = ["ulid", "time"])]
    json: bool,
    /// First print every record after this ULID up to now, then the live
    /// tail, with no gap and no duplicate between them.
    #[arg(long, value_name = "ULID")]
    after: Option<String>,
    /// Keep the id of the last record printed in FILE and start after it
    /// next time (unless --after is given).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Save the checkpoint after this many records...
    #[arg(long, default_value_t = 1000, requires = "checkpoint")]
    checkpoint_every: u64,
    /// ...or this long after the last save, whichever comes first.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, requires = "checkpoint")]
    checkpoint_interval: Duration,
    /// How long the node holds records to put them in id order across
    /// ingesters (at most 10s).
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    window: Duration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(stream(args))
}

/// The last id printed, saved now and then.
struct Checkpoint {
    path: PathBuf,
    every: u64,
    interval: Duration,
    unsaved: u64,
    saved_at: Instant,
}

impl Checkpoint {
    fn load(path: &Path) -> anyhow::Result<Option<Ulid>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = text.trim();
                Ulid::from_string(text).map(Some).map_err(|_| {
                    anyhow::anyhow!(
                        "checkpoint {} holds {text:?}, not a ULID: fix or remove the file",
                        path.display()
                    )
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read checkpoint {}", path.display())),
        }
    }

    /// Whether a save is due after one more record.
    fn due(&mut self) -> bool {
        self.unsaved += 1;
        self.unsaved >= self.every || self.saved_at.elapsed() >= self.interval
    }

    /// Save `id` atomically: a temp file, fsynced, renamed over the old.
    fn save(&mut self, id: Ulid) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            writeln!(file, "{id}")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("save checkpoint {}", self.path.display()))?;
        self.unsaved = 0;
        self.saved_at = Instant::now();
        Ok(())
    }
}

async fn stream(args: Args) -> anyhow::Result<ExitCode> {
    let base = base_url(&args.api);
    let mut checkpoint = args.checkpoint.as_ref().map(|path| Checkpoint {
        path: path.clone(),
        every: args.checkpoint_every.max(1),
        interval: args.checkpoint_interval,
        unsaved: 0,
        saved_at: Instant::now(),
    });
    let mut after = match &args.after {
        Some(text) => Some(
            Ulid::from_string(text)
                .map_err(|_| anyhow::anyhow!("--after {text:?} is not a ULID"))?,
        ),
        None => match &args.checkpoint {
            Some(path) => Checkpoint::load(path)?,
            None => None,
        },
    };
    let style = Style {
        json: args.json,
        ulid: args.ulid,
        time: args.time,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("build the HTTP client")?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut line = Vec::new();
    let mut connected_once = false;
    let mut backoff = Duration::from_millis(100);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let mut params: Vec<(&str, String)> = vec![
            ("format", "frames".into()),
            ("window", format!("{}ms", args.window.as_millis())),
        ];
        params.extend(args.filter.params());
        if let Some(id) = after {
            params.push(("after", id.to_string()));
        }
        let sent = client
            .get(format!("{base}/stream"))
            .query(&params)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if connected_once => {
                eprintln!("sluice stream: {}: {e}; retrying", cannot_reach(&base));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut interrupted => return finish(&mut out, &mut checkpoint, after),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => return Err(e).with_context(|| cannot_reach(&base)),
        };
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("stream failed with {status}: {}", body.trim());
        }
        connected_once = true;
        backoff = Duration::from_millis(100);
        let mut chunks = response.bytes_stream();
        let mut decoder = FrameDecoder::new();
        let lost = loop {
            match decoder.next_frame() {
                Ok(Some(Frame::Records(records))) => {
                    for record in records.iter() {
                        print::record(&mut out, &mut line, &record, style)?;
                        after = Some(record.id);
                        if let Some(checkpoint) = &mut checkpoint
                            && checkpoint.due()
                        {
                            // What the checkpoint names must be printed
                            // first: a restart resumes after it.
                            out.flush()?;
                            checkpoint.save(record.id)?;
                        }
                    }
                    out.flush()?;
                }
                Ok(Some(Frame::Lagged(missed))) => {
                    out.flush()?;
                    eprintln!(
                        "sluice stream: lagged: {missed} records were dropped because this reader fell behind"
                    );
                }
                Ok(Some(Frame::Progress(_))) => {
                    if let (Some(checkpoint), Some(id)) = (&mut checkpoint, after)
                        && checkpoint.unsaved > 0
                        && checkpoint.saved_at.elapsed() >= checkpoint.interval
                    {
                        out.flush()?;
                        checkpoint.save(id)?;
                    }
                }
                Ok(Some(Frame::Stats(_))) => break "the node ended the stream".to_string(),
                Ok(Some(Frame::Error(message))) => break format!("the node failed: {message}"),
                Ok(None) => tokio::select! {
                    chunk = chunks.next() => match chunk {
                        Some(Ok(chunk)) => decoder.push(&chunk),
                        Some(Err(e)) => break format!("the connection broke: {e}"),
                        None => break "the node closed the connection".to_string(),
                    },
                    _ = &mut interrupted => return finish(&mut out, &mut checkpoint, after),
                },
                Err(e) => break format!("bad answer: {e}"),
            }
        };
        out.flush()?;
        eprintln!("sluice stream: {lost}; reconnecting to {base}");
    }
}

/// Ctrl-C: flush, save the checkpoint, exit 0.
fn finish(
    out: &mut impl Write,
    checkpoint: &mut Option<Checkpoint>,
    last: Option<Ulid>,
) -> anyhow::Result<ExitCode> {
    out.flush()?;
    if let (Some(checkpoint), Some(id)) = (checkpoint, last) {
        checkpoint.save(id)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let mut cp = Checkpoint {
            path: path.clone(),
            every: 2,
            interval: Duration::from_secs(3600),
            unsaved: 0,
            saved_at: Instant::now(),
        };
        assert!(!cp.due());
        assert!(cp.due());
        let id = Ulid::from_parts(1_795_240_800_000, 9);
        cp.save(id).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(id));
        std::fs::write(&path, "nope\n").unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a ULID"), "{err}");
    }
}
