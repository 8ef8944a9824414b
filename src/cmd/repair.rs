//! `sluice repair`: walk a time range over every live store, count the
//! copies of each record, and have what has fewer than RF copied again.
//!
//! Each live store is asked for its own ids in the range
//! (`GET /query?scope=local&format=ids`), and the id streams are merged in
//! ULID order with one buffered frame per store, so memory does not grow
//! with the range. Consecutive records with fewer than RF copies and the
//! same holders form a run; for each run one holder is asked to copy the
//! run's id range to the stores that lack it, in rendezvous order
//! (`POST /store/repair/copy`). Records on dead stores are not counted:
//! that is what makes them under-replicated. Records still on ingesters
//! (not yet taken by a store) are not on any store and are not counted.

use std::{collections::VecDeque, io::Write, process::ExitCode};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Serialize;
use sluice_cluster::{ClusterView, Health};
use sluice_query::frames::{Frame, FrameDecoder};
use sluice_record::Ulid;
use sluice_store::placement::{self, Candidate};

#[derive(clap::Args)]
pub struct Args {
    /// Address of any node's HTTP API.
    #[arg(long, default_value = sluice_api::DEFAULT_ADDR, env = "SLUICE_API")]
    api: String,
    /// Start of the range: a duration ago (5m, 1h, 7d), an RFC 3339 time, or Unix ms.
    #[arg(long, default_value = sluice_query::time::DEFAULT_FROM)]
    from: String,
    /// End of the range, same forms, or now.
    #[arg(long, default_value = sluice_query::time::DEFAULT_TO)]
    to: String,
    /// Count and report what would be copied, and copy nothing.
    #[arg(long)]
    dry_run: bool,
    /// Copies wanted of each record. Default: the asked node's
    /// --replication-factor.
    #[arg(long = "replication-factor", visible_alias = "rf", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    rf: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs kept from one walk; past this, the rest waits for another run.
const MAX_RUNS: usize = 100_000;

/// A stretch of records, consecutive in ULID order over the live stores,
/// with fewer than RF copies and the same holders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The first record's id.
    pub min: String,
    /// The last record's id.
    pub max: String,
    /// Records in it.
    pub records: u64,
    /// The live stores that hold them.
    pub holders: Vec<String>,
    /// Copies wanted on other stores.
    pub missing: usize,
    /// Where they were (or would be) copied.
    pub targets: Vec<String>,
    /// What went wrong, if the copy failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a walk found and did.
#[derive(Debug, Default, Serialize)]
struct Report {
    from: String,
    to: String,
    rf: u32,
    dry_run: bool,
    stores: Vec<String>,
    records: u64,
    under_replicated: u64,
    runs: usize,
    copies_made: usize,
    records_copied: u64,
    failed: usize,
    truncated: bool,
    ranges: Vec<Run>,
}

/// A run as the merge finds it: ids, count and holders (store indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    min: Ulid,
    max: Ulid,
    records: u64,
    holders: Vec<usize>,
}

/// Builds runs from the merged id stream (sans-IO, unit-tested).
#[derive(Debug)]
struct Runs {
    rf: usize,
    runs: Vec<Span>,
    open: Option<Span>,
    truncated: bool,
}

impl Runs {
    fn new(rf: usize) -> Runs {
        Runs {
            rf,
            runs: Vec::new(),
            open: None,
            truncated: false,
        }
    }

    /// Record `id`, held by the stores `holders` (indexes, ascending).
    fn push(&mut self, id: Ulid, holders: &[usize]) {
        if holders.len() >= self.rf {
            self.close();
            return;
        }
        if let Some(open) = &mut self.open
            && open.holders == holders
        {
            open.max = id;
            open.records += 1;
            return;
        }
        self.close();
        self.open = Some(Span {
            min: id,
            max: id,
            records: 1,
            holders: holders.to_vec(),
        });
    }

    fn close(&mut self) {
        if let Some(run) = self.open.take() {
            if self.runs.len() < MAX_RUNS {
                self.runs.push(run);
            } else {
                self.truncated = true;
            }
        }
    }

    fn finish(mut self) -> (Vec<Span>, bool) {
        self.close();
        (self.runs, self.truncated)
    }
}

/// One store's id stream, a frame at a time.
struct Feed {
    rx: tokio::sync::mpsc::Receiver<anyhow::Result<Vec<Ulid>>>,
    buf: VecDeque<Ulid>,
    done: bool,
}

impl Feed {
    async fn head(&mut self) -> anyhow::Result<Option<Ulid>> {
        while self.buf.is_empty() && !self.done {
            match self.rx.recv().await {
                Some(Ok(ids)) => self.buf.extend(ids),
                Some(Err(err)) => return Err(err),
                None => self.done = true,
            }
        }
        Ok(self.buf.front().copied())
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(walk(args))
}

async fn walk(args: Args) -> anyhow::Result<ExitCode> {
    let base = super::query::base_url(&args.api);
    let client = reqwest::Client::new();
    let view: ClusterView = {
        let response = client
            .get(format!("{base}/cluster"))
            .send()
            .await
            .with_context(|| super::query::cannot_reach(&base))?;
        let status = response.status();
        let body = response.text().await.context("read the cluster view")?;
        if !status.is_success() {
            bail!("GET /cluster failed with {status}: {}", body.trim());
        }
        serde_json::from_str(&body).context("the node's /cluster answer is not a cluster view")?
    };
    let rf = match args.rf {
        Some(rf) => rf,
        None => view
            .nodes
            .iter()
            .find(|n| n.id == view.self_id)
            .and_then(|n| n.rf)
            .unwrap_or(1),
    };
    let stores: Vec<&sluice_cluster::NodeInfo> = view
        .nodes
        .iter()
        .filter(|n| n.live && n.roles.is_some_and(|r| r.store) && n.api.is_some())
        .collect();
    if stores.is_empty() {
        bail!("the node at {base} sees no live store; nothing to walk");
    }
    let mut report = Report {
        from: args.from.clone(),
        to: args.to.clone(),
        rf,
        dry_run: args.dry_run,
        stores: stores.iter().map(|s| s.id.clone()).collect(),
        ..Report::default()
    };

    let mut feeds: Vec<Feed> = stores
        .iter()
        .map(|store| {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let api = store.api.clone().unwrap_or_default();
            let params = vec![
                ("from", args.from.clone()),
                ("to", args.to.clone()),
                ("scope", "local".to_string()),
                ("format", "ids".to_string()),
            ];
            tokio::spawn(read_ids(client.clone(), api, store.id.clone(), params, tx));
            Feed {
                rx,
                buf: VecDeque::new(),
                done: false,
            }
        })
        .collect();

    let mut runs = Runs::new(rf as usize);
    let mut holders = Vec::with_capacity(feeds.len());
    loop {
        let mut smallest: Option<Ulid> = None;
        for feed in feeds.iter_mut() {
            if let Some(id) = feed.head().await? {
                smallest = Some(smallest.map_or(id, |s| s.min(id)));
            }
        }
        let Some(id) = smallest else { break };
        holders.clear();
        for (i, feed) in feeds.iter_mut().enumerate() {
            if feed.buf.front() == Some(&id) {
                feed.buf.pop_front();
                holders.push(i);
            }
        }
        report.records += 1;
        if holders.len() < rf as usize {
            report.under_replicated += 1;
        }
        runs.push(id, &holders);
    }
    let (found, truncated) = runs.finish();
    report.truncated = truncated;
    report.runs = found.len();

    let candidates: Vec<Candidate> = view
        .nodes
        .iter()
        .filter(|n| n.live && n.roles.is_some_and(|r| r.store))
        .filter(|n| n.health == Some(Health::Ready))
        .filter_map(|n| {
            Some(Candidate {
                id: n.id.clone(),
                api: n.api.clone()?,
                weight: u64::from(n.disk.unwrap_or(0)) + 1,
            })
        })
        .collect();
    for span in found {
        let Span {
            min,
            max,
            records,
            holders: holder_indexes,
        } = span;
        let holder_ids: Vec<String> = holder_indexes
            .iter()
            .map(|&i| stores[i].id.clone())
            .collect();
        let missing = rf as usize - holder_ids.len();
        let name = format!("{min}-{max}");
        let targets: Vec<String> = placement::rank(&name, &candidates)
            .into_iter()
            .filter(|c| !holder_ids.contains(&c.id))
            .take(missing)
            .map(|c| c.id.clone())
            .collect();
        let mut run = Run {
            min: min.to_string(),
            max: max.to_string(),
            records,
            holders: holder_ids,
            missing,
            targets,
            error: None,
        };
        if run.targets.len() < missing {
            run.error = Some(format!(
                "{} of the {missing} stores needed can take a copy (live, ready, without it)",
                run.targets.len()
            ));
        } else if !args.dry_run {
            let holder = stores[holder_indexes[0]];
            match copy(&client, holder.api.as_deref().unwrap_or(""), &run).await {
                Ok(()) => {
                    report.copies_made += 1;
                    report.records_copied += records;
                }
                Err(err) => run.error = Some(format!("{err:#}")),
            }
        }
        if run.error.is_some() {
            report.failed += 1;
        }
        report.ranges.push(run);
    }
    print_report(&report, args.json)?;
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Stream one store's ids in the range into `tx`, a frame at a time.
async fn read_ids(
    client: reqwest::Client,
    api: String,
    node: String,
    params: Vec<(&'static str, String)>,
    tx: tokio::sync::mpsc::Sender<anyhow::Result<Vec<Ulid>>>,
) {
    let result = async {
        let url = format!("http://{api}/query");
        let response = client
            .get(&url)
            .query(&params)
            .send()
            .await
            .with_context(|| format!("store {node} at {api} did not answer; run again when it is up, or forget it if it is gone"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("store {node} at {api} answered {status}: {}", body.trim());
        }
        let mut decoder = FrameDecoder::new();
        let mut stream = response.bytes_stream();
        loop {
            match decoder
                .next_frame()
                .with_context(|| format!("ids from store {node} are damaged"))?
            {
                Some(Frame::Records(records)) => {
                    let ids: Vec<Ulid> = records.iter().map(|r| r.id).collect();
                    if tx.send(Ok(ids)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Frame::Stats(_)) => return Ok(()),
                Some(Frame::Error(message)) => bail!("store {node} failed its scan: {message}"),
                Some(Frame::Progress(_) | Frame::Lagged(_)) => {}
                None => match stream.next().await {
                    Some(chunk) => decoder.push(
                        &chunk.with_context(|| format!("reading ids from store {node} failed"))?,
                    ),
                    None => {
                        decoder.finish();
                        if decoder.next_frame().is_err() || !decoder.is_ended() {
                            bail!("the ids from store {node} ended early; run again");
                        }
                        return Ok(());
                    }
                },
            }
        }
    }
    .await;
    if let Err(err) = result {
        let _ = tx.send(Err(err)).await;
    }
}

/// Ask the run's first holder to copy it to the run's targets.
async fn copy(client: &reqwest::Client, api: &str, run: &Run) -> anyhow::Result<()> {
    let url = format!("http://{api}/store/repair/copy");
    let response = client
        .post(&url)
        .query(&[
            ("min", run.min.as_str()),
            ("max", run.max.as_str()),
            ("to", run.targets.join(",").as_str()),
        ])
        .send()
        .await
        .with_context(|| format!("ask {api} to copy {}..={}", run.min, run.max))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("{api} answered {status}: {}", body.trim());
    }
    Ok(())
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "walked {} records on {} live store(s) ({}), from {} to {}; wanted {} copies each",
        report.records,
        report.stores.len(),
        report.stores.join(", "),
        report.from,
        report.to,
        report.rf
    )?;
    if report.under_replicated == 0 {
        writeln!(out, "nothing to do: every record has {} copies", report.rf)?;
        return Ok(());
    }
    writeln!(
        out,
        "under-replicated: {} records in {} range(s){}",
        report.under_replicated,
        report.runs,
        if report.truncated {
            "; more remain past the first ranges, run again"
        } else {
            ""
        }
    )?;
    for run in &report.ranges {
        let what = match (&run.error, report.dry_run) {
            (Some(err), _) => format!("FAILED: {err}"),
            (None, true) => format!("would copy to {}", run.targets.join(",")),
            (None, false) => format!("copied to {}", run.targets.join(",")),
        };
        writeln!(
            out,
            "  {}..{}  {} records on {}: {what}",
            run.min,
            run.max,
            run.records,
            run.holders.join(",")
        )?;
    }
    if report.dry_run {
        writeln!(out, "dry run: nothing copied")?;
    } else {
        writeln!(
            out,
            "copied {} records in {} range(s); {} failed",
            report.records_copied, report.copies_made, report.failed
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(min: u128, max: u128, records: u64, holders: &[usize]) -> Span {
        Span {
            min: Ulid(min),
            max: Ulid(max),
            records,
            holders: holders.to_vec(),
        }
    }

    #[test]
    fn runs_gather_consecutive_records_with_the_same_holders() {
        let mut runs = Runs::new(2);
        runs.push(Ulid(1), &[0, 1]);
        runs.push(Ulid(2), &[0]);
        runs.push(Ulid(3), &[0]);
        runs.push(Ulid(4), &[1]);
        runs.push(Ulid(5), &[0, 1]);
        runs.push(Ulid(6), &[1]);
        let (found, truncated) = runs.finish();
        assert!(!truncated);
        assert_eq!(
            found,
            vec![
                span(2, 3, 2, &[0]),
                span(4, 4, 1, &[1]),
                span(6, 6, 1, &[1])
            ]
        );
    }

    #[test]
    fn a_fully_replicated_walk_has_no_runs() {
        let mut runs = Runs::new(2);
        for id in 0..100 {
            runs.push(Ulid(id), &[0, 2]);
        }
        assert!(runs.finish().0.is_empty());
    }
}
