//! `meshscope maintain`: one pass of the store's upkeep (compaction, hour and day rollups,
//! retention) over a data directory, as a running server does once a minute. For a store
//! whose server is stopped: after a restore or a move, or to see what the upkeep costs at
//! a given scale (`--at` picks the time it runs as).

use std::path::PathBuf;

use anyhow::Context;
use meshscope_storage::{Store, StoreConfig};

use crate::config::FileConfig;

#[derive(Debug, clap::Args)]
pub(crate) struct MaintainArgs {
    /// Data directory; no server may be writing to it meanwhile [default: ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML config file: its [storage] data_dir and retention apply
    #[arg(long, env = "MESHSCOPE_CONFIG")]
    config: Option<PathBuf>,
    /// Run as of this time (RFC 3339, e.g. 2026-12-06T07:06:00Z) instead of now
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::Utc>>,
}

pub(crate) async fn run(args: MaintainArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let config = StoreConfig {
        // This pass only: no background upkeep beside it.
        maintenance_interval_secs: 0,
        ..crate::settings::store_config(args.data_dir, file.storage)
    };
    let data_dir = config.data_dir.clone();
    anyhow::ensure!(
        data_dir.is_dir(),
        "no data directory at {}",
        data_dir.display()
    );
    let store = Store::open(config)
        .await
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let at = args.at.unwrap_or_else(chrono::Utc::now);
    let started = std::time::Instant::now();
    let report = store.maintain(at.timestamp_millis()).await?;
    println!(
        "{}",
        serde_json::json!({
            "at": at.to_rfc3339(),
            "seconds": started.elapsed().as_secs_f64(),
            "files_compacted": report.files_compacted,
            "hours_rolled_up": report.hours_rolled_up,
            "days_rolled_up": report.days_rolled_up,
            "blocks_summarized": report.blocks_summarized,
            "trailing_hours_summarized": report.trailing_hours_summarized,
            "files_expired": report.files_expired,
        })
    );
    Ok(())
}
