use std::{io::Write, process::ExitCode};

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Approximate bytes per line, without the newline.
    #[arg(long, default_value_t = 100, env = "SLUICE_TESTSVC_SIZE")]
    size: usize,
    /// Lines per second; 0 writes as fast as possible.
    #[arg(long, default_value_t = 100, env = "SLUICE_TESTSVC_RATE")]
    rate: u64,
    /// Stop after this many lines.
    #[arg(long)]
    count: Option<u64>,
    /// Seed of the generator: the same seed gives the same lines.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = sluice_testsvc::Config {
        size: args.size,
        rate: args.rate,
        count: args.count,
        seed: args.seed,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    sluice_testsvc::run(&config, &mut out).context("write lines to stdout")?;
    out.flush().context("write lines to stdout")?;
    Ok(ExitCode::SUCCESS)
}
