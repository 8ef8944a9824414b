//! `sluice query`: a client of `GET /query`.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use sluice_query::frames::Frame;

#[derive(clap::Args)]
pub struct Args {
    /// Address of a sluice node's HTTP API.
    #[arg(long, default_value = sluice_api::DEFAULT_ADDR, env = "SLUICE_API")]
    pub api: String,
    /// Start of the range: a duration ago (5m, 1h, 7d), an RFC 3339 time, or Unix ms.
    #[arg(long, default_value = sluice_query::time::DEFAULT_FROM)]
    pub from: String,
    /// End of the range, same forms, or now.
    #[arg(long, default_value = sluice_query::time::DEFAULT_TO)]
    pub to: String,
    #[command(flatten)]
    pub filter: super::filter::Filter,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// Print matching records per time bucket (a text chart; JSON with --json)
    /// instead of the records.
    #[arg(long, conflicts_with_all = ["stats", "reverse", "ulid", "time", "limit", "after"])]
    histogram: bool,
    /// Buckets of --histogram (1 to 1000).
    #[arg(long, requires = "histogram", default_value_t = sluice_query::count::DEFAULT_BUCKETS)]
    pub buckets: u32,
    /// Newest first: the newest --limit records, in descending time order, reading
    /// only the newest data it needs (needs --limit).
    #[arg(long)]
    reverse: bool,
    /// Resume: only records after this ULID (the last id you read, e.g. from --ulid or --json).
    #[arg(long, value_name = "ULID")]
    after: Option<String>,
    /// Prefix each line with its ULID.
    #[arg(long, conflicts_with = "time")]
    ulid: bool,
    /// Prefix each line with its time (RFC 3339).
    #[arg(long)]
    time: bool,
    /// One JSON object per record: id, time, topic, payload (and truncated).
    #[arg(long, conflicts_with_all = ["ulid", "time", "stats"])]
    pub json: bool,
    /// Print the plan and counts (segments, bytes, records scanned and matched, nodes
    /// queried and failed) as JSON instead of records.
    #[arg(long)]
    stats: bool,
    /// Only the records the node at --api holds itself (its store and ingest
    /// segments), not the whole cluster's: to see what one node keeps, such
    /// as each store's copies with --replication-factor above 1.
    #[arg(long, conflicts_with_all = ["histogram", "consistency", "node_timeout"])]
    local: bool,
    /// What a node that cannot answer does to the query: partial goes on with the
    /// others, names the failed nodes on stderr and exits 3; strict fails the query.
    #[arg(long, default_value = "partial", value_parser = ["partial", "strict"], env = "SLUICE_CONSISTENCY")]
    pub consistency: String,
    /// How long the coordinating node waits for another node's next answer before
    /// it counts that node as failed (default: the node's --node-timeout, 10s).
    #[arg(long, value_parser = humantime::parse_duration, env = "SLUICE_NODE_TIMEOUT")]
    pub node_timeout: Option<std::time::Duration>,
}

/// The exit status of a query whose result is incomplete (a node failed).
const EXIT_INCOMPLETE: u8 = 3;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(query(args))
}

/// What to say when no node answers at `base`.
pub fn cannot_reach(base: &str) -> String {
    format!("cannot reach sluice at {base}: is a node running there? (set --api or SLUICE_API)")
}

pub fn base_url(api: &str) -> String {
    if api.starts_with("http://") || api.starts_with("https://") {
        api.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", api.trim_end_matches('/'))
    }
}

/// The HTTP client of a command that talks to the node at `base`. The
/// built-in root certificates are loaded only for an `https://` node: for
/// plain HTTP they are a start cost with nothing to verify.
pub fn client_for(base: &str) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_built_in_root_certs(base.starts_with("https://"))
        .build()
        .context("set up the HTTP client")
}

async fn query(args: Args) -> anyhow::Result<ExitCode> {
    let base = base_url(&args.api);
    if args.histogram {
        return crate::cmd::histogram::run(&base, &args).await;
    }
    let mut params: Vec<(&str, String)> =
        vec![("from", args.from.clone()), ("to", args.to.clone())];
    params.extend(args.filter.params());
    if let Some(limit) = args.limit {
        params.push(("limit", limit.to_string()));
    }
    if let Some(after) = &args.after {
        params.push(("after", after.clone()));
    }
    if args.reverse {
        let max = sluice_query::newest::MAX_BACKWARD_LIMIT;
        if !args.limit.is_some_and(|l| (1..=max).contains(&l)) {
            bail!(
                "--reverse needs --limit N (1 to {max}): the newest N records are kept in \
                 memory until they are printed"
            );
        }
        params.push(("direction", "backward".into()));
    }
    if args.stats {
        params.push(("stats", "true".into()));
    } else {
        params.push(("format", "frames".into()));
    }
    if args.local {
        params.push(("scope", "local".into()));
    } else {
        params.push(("consistency", args.consistency.clone()));
    }
    if let Some(timeout) = args.node_timeout {
        params.push(("node_timeout", format!("{}ms", timeout.as_millis())));
    }
    let client = client_for(&base)?;
    let url = format!("{base}/query");
    let mut progress = start_progress(&client, &url, &params, &args).await;
    let response = client
        .get(&url)
        .query(&params)
        .send()
        .await
        .with_context(|| cannot_reach(&base))?;
    let status = response.status();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        && let Some(retry) = response.headers().get(reqwest::header::RETRY_AFTER)
    {
        let retry = retry.to_str().unwrap_or("1").to_string();
        let body = response.text().await.unwrap_or_default();
        bail!(
            "the node at {base} is busy and refused the query: {}; try again in {retry} s",
            body.trim()
        );
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("query failed with {status}: {}", body.trim());
    }
    let stdout = io::stdout();
    // A pipe holds 64 KiB, so a larger buffer saves no writes; at 256 KiB it
    // was allocated by `mmap` and freed by `munmap`, two calls at every start.
    let mut out = io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut stream = response.bytes_stream();
    if args.stats {
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.context("read query stats")?);
        }
        out.write_all(&body)?;
        out.flush()?;
        let stats: serde_json::Value =
            serde_json::from_slice(&body).context("the node's stats are not JSON")?;
        return Ok(verdict(&stats));
    }
    let mut decoder = sluice_query::frames::FrameDecoder::new();
    let mut line = Vec::new();
    let style = super::print::Style {
        json: args.json,
        ulid: args.ulid,
        time: args.time,
    };
    loop {
        match decoder.next_frame() {
            Ok(Some(Frame::Records(records))) => {
                let mut n = 0;
                for record in &records {
                    super::print::record(&mut out, &mut line, &record, style)?;
                    n += 1;
                }
                progress.records(n);
                if let Some(last) = records.last_id() {
                    progress.mark(last);
                }
            }
            Ok(Some(Frame::Progress(id))) => progress.mark(id),
            Ok(Some(Frame::Lagged(_))) => {}
            Ok(Some(Frame::Stats(stats))) => {
                progress.finish();
                out.flush()?;
                return Ok(verdict(&serde_json::Value::Object(stats)));
            }
            Ok(Some(Frame::Error(message))) => {
                progress.finish();
                out.flush()?;
                bail!("the query failed: {message}");
            }
            Ok(None) => match stream.next().await {
                Some(chunk) => decoder.push(
                    &chunk.context("read query results (the node may have failed mid-query)")?,
                ),
                None => {
                    progress.finish();
                    out.flush()?;
                    bail!(
                        "query results ended before their stats: the node at {base} stopped \
                         mid-query; the records printed are a prefix of the result"
                    );
                }
            },
            Err(e) => bail!("query results from {base} are damaged: {e}"),
        }
    }
}

/// The progress line, drawn only when stderr is a terminal and stdout is
/// not (see [`crate::cmd::progress`]); its plan's size from `HEAD /query`.
async fn start_progress(
    client: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
    args: &Args,
) -> crate::cmd::progress::Progress {
    use std::io::IsTerminal;
    let show = !args.stats
        && crate::cmd::progress::should_show(
            io::stderr().is_terminal(),
            io::stdout().is_terminal(),
        );
    let now = sluice_query::time::now_ms();
    let from_ms = sluice_query::parse_time_ms(&args.from, now).unwrap_or(0);
    let to_ms = sluice_query::parse_time_ms(&args.to, now).unwrap_or(now);
    let mut plan_bytes = 0;
    if show && let Ok(head) = client.head(url).query(params).send().await {
        plan_bytes = head
            .headers()
            .get("x-sluice-bytes")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
    }
    crate::cmd::progress::Progress::new(show, from_ms, to_ms, plan_bytes, args.reverse)
}

/// Exit 0 for a complete result; for an incomplete one, name the failed
/// nodes on stderr and exit 3.
pub fn verdict(stats: &serde_json::Value) -> ExitCode {
    if stats["complete"].as_bool() != Some(false) {
        return ExitCode::SUCCESS;
    }
    let failed: Vec<String> = stats["nodes_failed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            format!(
                "{} at {} ({})",
                n["node"].as_str().unwrap_or("?"),
                n["api"].as_str().unwrap_or("?"),
                n["reason"].as_str().unwrap_or("?")
            )
        })
        .collect();
    eprintln!(
        "sluice: the result is incomplete: {} of {} nodes failed: {}",
        failed.len(),
        stats["nodes_queried"].as_u64().unwrap_or(0),
        failed.join(", ")
    );
    ExitCode::from(EXIT_INCOMPLETE)
}
