//! `sluice query`: a client of `GET /query`.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::{Context, bail};
use futures_util::StreamExt;

#[derive(clap::Args)]
pub struct Args {
    /// Address of a sluice node's HTTP API.
    #[arg(long, default_value = sluice_api::DEFAULT_ADDR, env = "SLUICE_API")]
    api: String,
    /// Start of the range: a duration ago (5m, 1h, 7d), an RFC 3339 time, or Unix ms.
    #[arg(long, default_value = sluice_query::time::DEFAULT_FROM)]
    from: String,
    /// End of the range, same forms, or now.
    #[arg(long, default_value = sluice_query::time::DEFAULT_TO)]
    to: String,
    /// Text to find in the payload. Empty matches every record.
    #[arg(short = 'q', long = "query", default_value = "")]
    query: String,
    /// Treat -q as a regular expression (Rust regex syntax).
    #[arg(long)]
    regex: bool,
    /// Ignore case.
    #[arg(short = 'i', long = "ignore-case")]
    ignore_case: bool,
    /// Only records of this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<u64>,
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
    json: bool,
    /// Print the plan and counts (segments, bytes, records scanned and matched) as JSON instead of records.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(query(args))
}

fn base_url(api: &str) -> String {
    if api.starts_with("http://") || api.starts_with("https://") {
        api.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", api.trim_end_matches('/'))
    }
}

async fn query(args: Args) -> anyhow::Result<ExitCode> {
    let base = base_url(&args.api);
    let mut params: Vec<(&str, String)> = vec![
        ("from", args.from.clone()),
        ("to", args.to.clone()),
        ("q", args.query.clone()),
    ];
    if args.regex {
        params.push(("regex", "true".into()));
    }
    if args.ignore_case {
        params.push(("i", "true".into()));
    }
    if let Some(topic) = &args.topic {
        params.push(("topic", topic.clone()));
    }
    if let Some(limit) = args.limit {
        params.push(("limit", limit.to_string()));
    }
    if let Some(after) = &args.after {
        params.push(("after", after.clone()));
    }
    if args.stats {
        params.push(("stats", "true".into()));
    }
    if args.json {
        params.push(("format", "json".into()));
    }
    let client = reqwest::Client::new();
    let url = format!("{base}/query");
    let response = client
        .get(&url)
        .query(&params)
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach sluice at {base}: is a node running there? (set --api or SLUICE_API)"
            )
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        let retry = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("1")
            .to_string();
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
    let mut out = io::BufWriter::with_capacity(256 << 10, stdout.lock());
    let mut stream = response.bytes_stream();
    if args.stats || args.json {
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.context("read query results")?)?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("read query results (the server may have failed mid-query)")?;
        pending.extend_from_slice(&chunk);
        let Some(last_nl) = memchr::memrchr(b'\n', &pending) else {
            continue;
        };
        for line in pending[..last_nl].split(|&b| b == b'\n') {
            print_line(&mut out, line, &args)?;
        }
        pending.drain(..=last_nl);
    }
    if !pending.is_empty() {
        bail!("query results ended in the middle of a record");
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A raw result line is `<ulid> <topic> <payload>`.
fn print_line(out: &mut impl Write, line: &[u8], args: &Args) -> anyhow::Result<()> {
    if line.len() < 27 {
        bail!("malformed result line {:?}", String::from_utf8_lossy(line));
    }
    let (id, rest) = line.split_at(26);
    let payload = match rest[1..].iter().position(|&b| b == b' ') {
        Some(space) => &rest[1 + space + 1..],
        None => bail!("malformed result line {:?}", String::from_utf8_lossy(line)),
    };
    if args.ulid {
        out.write_all(id)?;
        out.write_all(b" ")?;
    } else if args.time {
        let id = std::str::from_utf8(id)
            .ok()
            .and_then(|s| ulid::Ulid::from_string(s).ok());
        let Some(id) = id else {
            bail!(
                "malformed id in result line {:?}",
                String::from_utf8_lossy(line)
            );
        };
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(id.timestamp_ms());
        write!(out, "{} ", humantime::format_rfc3339_millis(time))?;
    }
    out.write_all(payload)?;
    out.write_all(b"\n")?;
    Ok(())
}
