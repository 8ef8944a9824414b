//! `sluice cluster status` and `sluice cluster forget`: clients of
//! `GET /cluster` and `POST /cluster/forget`.

use std::{io::Write, process::ExitCode};

use anyhow::{Context, bail};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Every node the asked node knows: id, roles, addresses, health, live
    /// or dead, generation and last heartbeat.
    Status(StatusArgs),
    /// Drop a dead node from the view, so queries stop reporting it as
    /// failed. A node that comes back later shows again.
    Forget(ForgetArgs),
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Address of any node's HTTP API.
    #[arg(long, default_value = sluice_api::DEFAULT_ADDR, env = "SLUICE_API")]
    api: String,
    /// Print the view as JSON (the body of GET /cluster).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ForgetArgs {
    /// The node's id (the first column of `sluice cluster status`).
    node: String,
    /// Address of any node's HTTP API.
    #[arg(long, default_value = sluice_api::DEFAULT_ADDR, env = "SLUICE_API")]
    api: String,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        match command {
            Command::Status(args) => status(args).await,
            Command::Forget(args) => forget(args).await,
        }
    })
}

fn base_url(api: &str) -> String {
    super::query::base_url(api)
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let base = base_url(&args.api);
    let response = super::query::client_for(&base)?
        .get(format!("{base}/cluster"))
        .send()
        .await
        .with_context(|| super::query::cannot_reach(&base))?;
    let status = response.status();
    let body = response.text().await.context("read the cluster view")?;
    if !status.is_success() {
        bail!("GET /cluster failed with {status}: {}", body.trim());
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", body.trim())?;
        return Ok(ExitCode::SUCCESS);
    }
    let view: serde_json::Value =
        serde_json::from_str(&body).context("the node's /cluster answer is not JSON")?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    writeln!(
        out,
        "cluster {}, seen from {}",
        text(&view["cluster_id"]),
        text(&view["self"])
    )?;
    writeln!(
        out,
        "{:<26}  {:<12}  {:<21}  {:<9}  {:<4}  {:<3}  {:<13}  {:>9}",
        "NODE", "ROLES", "API", "HEALTH", "LIVE", "RF", "GENERATION", "HEARTBEAT"
    )?;
    let nodes: Vec<&serde_json::Value> = view["nodes"].as_array().into_iter().flatten().collect();
    let mut rfs: Vec<u64> = nodes.iter().filter_map(|n| n["rf"].as_u64()).collect();
    rfs.sort_unstable();
    rfs.dedup();
    for node in nodes {
        let heartbeat = match node["heartbeat_age_ms"].as_u64() {
            Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
            None => "-".to_string(),
        };
        writeln!(
            out,
            "{:<26}  {:<12}  {:<21}  {:<9}  {:<4}  {:<3}  {:<13}  {:>9}",
            text(&node["id"]),
            text(&node["roles"]),
            text(&node["api"]),
            text(&node["health"]),
            if node["live"].as_bool() == Some(true) {
                "live"
            } else {
                "DEAD"
            },
            text(&node["rf"]),
            text(&node["generation"]),
            heartbeat
        )?;
    }
    if rfs.len() > 1 {
        let list: Vec<String> = rfs.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "warning: the nodes run with different replication factors ({}): give every node the same --replication-factor",
            list.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn forget(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let base = base_url(&args.api);
    let response = super::query::client_for(&base)?
        .post(format!("{base}/cluster/forget"))
        .query(&[("node", &args.node)])
        .send()
        .await
        .with_context(|| super::query::cannot_reach(&base))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("forget {} failed with {status}: {}", args.node, body.trim());
    }
    eprintln!("{}", body.trim());
    Ok(ExitCode::SUCCESS)
}
