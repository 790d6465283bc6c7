//! The `meshscope` binary: parses the command line and hands off to one subcommand. The
//! server (`serve`) and the store's own commands (`sql`, `maintain`) live here; the load
//! tools are the `meshscope-tools` library's.

mod config;
mod listeners;
mod maintain_cmd;
mod memory;
mod metric_help;
mod process_metrics;
mod ring_membership;
mod security;
mod serve;
mod settings;
mod shutdown;
mod sql_cmd;
mod tls;

use clap::{Parser, Subcommand, ValueEnum};
use meshscope_tools::{bench, replay, simulate, sink};
use tracing_subscriber::EnvFilter;

// Arrow builders and decoders allocate heavily; mimalloc keeps that cheap on every thread.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "meshscope",
    version,
    about = "Service mesh observability and topology backend"
)]
struct Cli {
    /// Log line format; the level comes from RUST_LOG (default: info).
    #[arg(long, global = true, env = "MESHSCOPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive Envoy telemetry over gRPC, store it and serve the HTTP API.
    Serve(settings::ServeArgs),
    /// Send a simulated mesh's access logs and proxy statistics to a collector (a demo and a load generator).
    Simulate(simulate::SimulateArgs),
    /// Send a large service graph (500 services, 5,000 edges by default) once, a few calls per edge.
    SimulateWide(simulate::wide::WideArgs),
    /// Send captured Envoy access-log and metrics streams to a collector, moved to the present.
    Replay(replay::ReplayArgs),
    /// The ingest benchmark: the same load to a decode-and-discard sink, then to meshscope.
    Bench(bench::BenchArgs),
    /// A decode-and-discard access log receiver: the floor cost of receiving, for `bench`.
    Sink(sink::SinkArgs),
    /// Run one read-only SQL query against a data directory or a running server.
    Sql(sql_cmd::SqlArgs),
    /// One pass of the store's upkeep (compaction, rollups, retention) over a data directory
    /// no server is writing to.
    Maintain(maintain_cmd::MaintainArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A query's answer is the output; the store's progress notes would only be noise.
    let default_level = match cli.command {
        Command::Sql(_) => "warn",
        _ => "info",
    };
    init_tracing(cli.log_format, default_level);
    memory::return_freed_memory_promptly();
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Simulate(args) => Ok(simulate::run(args).await?),
        Command::SimulateWide(args) => Ok(simulate::wide::run(args).await?),
        Command::Replay(args) => Ok(replay::run(args).await?),
        Command::Bench(args) => Ok(bench::run(args).await?),
        Command::Sink(args) => Ok(sink::run(args).await?),
        Command::Maintain(args) => maintain_cmd::run(args).await,
        Command::Sql(args) => {
            // One plain line, never a backtrace: the message is for the person who typed
            // the query.
            if let Err(error) = sql_cmd::run(args).await {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Logs go to stderr so that commands that print results (simulate, sql) keep stdout clean.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
