//! `sluice`: one binary, every role. This file is glue: the command line,
//! logging, and dispatch to the library crates under `crates/`.

mod cmd;
mod size;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Distributed log aggregation and search: forward, ingest, store, query.
///
/// Every flag can also be set with an environment variable: SLUICE_ and
/// the flag's name in capitals, dashes as underscores, for example
/// SLUICE_DATA=/var/lib/sluice or SLUICE_MAX_LINE=4MiB.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about)]
struct Cli {
    /// Log format on stderr. SLUICE_LOG filters the logs (e.g. SLUICE_LOG=debug);
    /// query, cluster and testsvc log only when it is set.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SLUICE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
// Each subcommand's arguments are built only when it runs: building every
// node role's (with their defaults from the core count) was a fifth of a
// `sluice query` process's own CPU.
#[command(defer = true)]
enum Command {
    /// Run the ingest and store roles in one process: the default for one machine.
    Ingeststore(cmd::node::BothNode),
    /// Run an ingest node of a cluster: it takes lines and holds them until stores consume them.
    Ingest(cmd::node::IngestNode),
    /// Run a store node of a cluster: it consumes from every ingester it finds by gossip and keeps what it takes.
    Store(cmd::node::StoreNode),
    /// Count each record's copies across the live stores in a time range, and copy again what has fewer than the replication factor.
    Repair(cmd::repair::Args),
    /// Show the cluster's nodes, or forget a dead one.
    #[command(subcommand)]
    Cluster(cmd::cluster::Command),
    /// Search stored records in a time range; prints payloads in time order.
    Query(cmd::query::Args),
    /// Print live records from every ingester as they arrive, until interrupted.
    Stream(cmd::stream::Args),
    /// Send lines from stdin or followed files to ingesters, acknowledged, with an optional disk spool.
    Forward(cmd::forward::Args),
    /// Print realistic synthetic log lines, for tests and benchmarks.
    Testsvc(cmd::testsvc::Args),
}

impl Command {
    /// Whether the command's own code logs (the nodes, the forwarder, a
    /// repair). The others are clients that print their results and errors
    /// themselves; for them the log subscriber would only carry the HTTP
    /// client's debug events, so it starts only when `SLUICE_LOG` asks for
    /// it. Setting it up (the span registry's slab, the filter) was a
    /// thirtieth of a `sluice query` for a rare id.
    fn logs(&self) -> bool {
        !matches!(
            self,
            Command::Query(_) | Command::Cluster(_) | Command::Testsvc(_)
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.logs() || std::env::var_os("SLUICE_LOG").is_some() {
        init_logging(cli.log_format);
    }
    let result = match cli.command {
        Command::Ingeststore(args) => cmd::node::run_both(args),
        Command::Ingest(args) => cmd::node::run_ingest(args),
        Command::Store(args) => cmd::node::run_store(args),
        Command::Repair(args) => cmd::repair::run(args),
        Command::Cluster(command) => cmd::cluster::run(command),
        Command::Query(args) => cmd::query::run(args),
        Command::Stream(args) => cmd::stream::run(args),
        Command::Forward(args) => cmd::forward::run(args),
        Command::Testsvc(args) => cmd::testsvc::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sluice: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A closed stdout (`sluice query ... | head`) is a normal way to stop.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The command line is consistent (clap's own checks, over every
    /// subcommand, deferred ones built).
    #[test]
    fn the_command_line_passes_clap_checks() {
        Cli::command().debug_assert();
    }

    /// A subcommand's arguments are built only when it runs (`defer`), yet
    /// its --help says what the list of commands says of it: no Args
    /// struct's doc replaces it, and its arguments are there.
    #[test]
    fn every_subcommand_built_late_keeps_its_about_and_gets_its_arguments() {
        let about = |c: &clap::Command| c.get_about().map(|a| a.to_string()).unwrap_or_default();
        let listed: Vec<(String, String)> = Cli::command()
            .get_subcommands()
            .map(|c| (c.get_name().to_string(), about(c)))
            .collect();
        assert!(listed.len() >= 9, "{listed:?}");
        let mut built = Cli::command();
        built.build();
        for (name, listed_about) in listed {
            let sub = built.find_subcommand(&name).expect("listed");
            assert!(!listed_about.is_empty(), "{name} has no about");
            assert_eq!(about(sub), listed_about, "the about of {name}");
            assert!(
                sub.get_arguments().any(|a| a.get_id() != "help")
                    || sub.get_subcommands().next().is_some(),
                "{name} has no arguments once built"
            );
        }
    }

    /// The nodes, the forwarder and a repair log from the start; the
    /// client commands (query, cluster, testsvc) only when `SLUICE_LOG`
    /// asks (see [`super::Command::logs`]).
    #[test]
    fn only_the_commands_that_log_start_the_log_subscriber_by_default() {
        use clap::Parser;
        let logs = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("sluice").chain(argv.iter().copied()))
                .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
                .command
                .logs()
        };
        for argv in [
            &["ingeststore"][..],
            &["ingest"],
            &["store"],
            &["forward", "tcp://127.0.0.1:7651"],
            &["repair"],
            &["stream"],
        ] {
            assert!(logs(argv), "{argv:?} should log");
        }
        for argv in [
            &["query", "-q", "ERROR"][..],
            &["query", "--histogram"],
            &["cluster", "status"],
            &["testsvc"],
        ] {
            assert!(
                !logs(argv),
                "{argv:?} should log only when SLUICE_LOG is set"
            );
        }
    }

    /// The unwinder is linked in (`build.rs`), in this test binary as in
    /// `sluice`: a panic still unwinds, running drops on its way, on the
    /// main thread's side and in a spawned thread, and a backtrace still
    /// walks the stack. The worker pool's `catch_unwind` relies on it.
    #[test]
    fn panics_unwind_through_the_linked_in_unwinder() {
        use std::sync::atomic::{AtomicBool, Ordering};

        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if option_env!("SLUICE_SHARED_UNWINDER").is_none_or(|v| v == "0") {
            let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
            assert!(
                !maps.contains("libgcc_s"),
                "this test binary loaded the shared unwinder; build.rs should have linked it in"
            );
        }

        static DROPPED: AtomicBool = AtomicBool::new(false);
        struct Guard;
        impl Drop for Guard {
            fn drop(&mut self) {
                DROPPED.store(true, Ordering::SeqCst);
            }
        }
        #[inline(never)]
        fn fail(depth: u32) -> u32 {
            let _guard = Guard;
            if depth == 0 {
                panic!("a panic the test expects");
            }
            fail(depth - 1) + 1
        }
        let caught = std::panic::catch_unwind(|| fail(4));
        assert!(caught.is_err(), "the panic was not caught");
        assert!(
            DROPPED.load(Ordering::SeqCst),
            "no drop ran while unwinding"
        );

        let joined = std::thread::spawn(|| fail(2)).join();
        assert!(
            joined.is_err(),
            "a panicking thread's join did not report the panic"
        );

        let trace = std::backtrace::Backtrace::force_capture();
        assert_eq!(trace.status(), std::backtrace::BacktraceStatus::Captured);
    }
}
