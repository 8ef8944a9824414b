use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Where to send: tcp://HOST:PORT, an ingester's line port (fast 7651 or durable 7652).
    #[arg(value_name = "URL", env = "SLUICE_FORWARD_TO")]
    destination: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = sluice_forward::ForwardConfig::from_url(&args.destination)?;
    let stdin = std::io::stdin();
    let stats = sluice_forward::forward(&config, stdin.lock())
        .with_context(|| format!("forward to {}", args.destination))?;
    tracing::info!(
        lines_read = stats.lines_read,
        bytes_read = stats.bytes_read,
        bytes_sent = stats.bytes_sent,
        reconnects = stats.reconnects,
        "forwarder finished"
    );
    Ok(ExitCode::SUCCESS)
}
