//! The TOML config file: one section per component, each read into that component's own
//! config struct. Unknown keys are errors, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use meshscope_collector::CollectorConfig;
use meshscope_storage::{RetentionConfig, SqlLimits};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) server: ServerSection,
    pub(crate) collector: CollectorConfig,
    pub(crate) storage: StorageSection,
    pub(crate) security: crate::security::SecuritySection,
    pub(crate) wal: WalSection,
}

/// `[wal]`: how the write-ahead log makes received messages durable. Unset values keep
/// the defaults (`interval`, every 100 ms).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WalSection {
    pub(crate) sync: Option<meshscope_storage::wal::SyncPolicy>,
    pub(crate) sync_interval_ms: Option<u64>,
    /// Write the log around the page cache (`O_DIRECT`) where the filesystem allows it.
    pub(crate) direct_writes: Option<bool>,
    /// How often the unclosed minutes are checkpointed; 0 takes none.
    pub(crate) checkpoint_interval_ms: Option<u64>,
}

/// `[server]`: where meshscope listens. Unset values fall back to the built-in defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServerSection {
    pub(crate) grpc_addr: Option<SocketAddr>,
    pub(crate) http_addr: Option<SocketAddr>,
    pub(crate) demo: Option<bool>,
    /// Topology windows read ahead of the dashboard; empty to read none ahead.
    pub(crate) warm_windows: Option<Vec<String>>,
    /// What this process does: `collector`, `query` or `all`.
    pub(crate) role: Option<crate::settings::Role>,
    /// A collector's gRPC address as the other collectors reach it (`host:port`).
    pub(crate) advertise_grpc: Option<String>,
}

/// `[storage]`: where data lives, how long each granularity is kept, whether raw access-log
/// entries are kept, and the bounds on SQL queries. Unset values keep the store's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageSection {
    pub(crate) data_dir: Option<PathBuf>,
    /// Where the Parquet files live: `file:///...`, `s3://bucket/prefix`, `gs://...`,
    /// `az://...`; the data directory when unset.
    pub(crate) store: Option<String>,
    /// This writer's id in the names of its files; made once and kept in the data
    /// directory when unset.
    pub(crate) writer_id: Option<String>,
    /// Whether this process runs compaction, rollups and retention; `all` does by default,
    /// a collector only when told, a query node never.
    pub(crate) upkeep: Option<bool>,
    pub(crate) retention: RetentionConfig,
    pub(crate) access_log: bool,
    pub(crate) sql: SqlLimits,
    pub(crate) maintenance_interval_secs: Option<u64>,
    pub(crate) settle_minutes: Option<u64>,
    /// How often a query node lists the store for what the collectors wrote, in ms.
    pub(crate) list_interval_ms: Option<u64>,
}

impl FileConfig {
    /// Reads `path`, or gives the defaults when no file is named.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in config file {}", path.display()))
    }

    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_fill_each_component_config() {
        let config = FileConfig::parse(
            r#"
            [server]
            grpc_addr = "127.0.0.1:1180"

            [collector]
            apdex_threshold_ms = 250.0

            [storage]
            data_dir = "/var/lib/meshscope"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.server.grpc_addr,
            Some("127.0.0.1:1180".parse().unwrap())
        );
        assert_eq!(config.server.http_addr, None);
        assert_eq!(config.collector.apdex_threshold_ms, 250.0);
        assert_eq!(
            config.collector.max_field_len,
            CollectorConfig::default().max_field_len
        );
        assert_eq!(
            config.storage.data_dir,
            Some(PathBuf::from("/var/lib/meshscope"))
        );
    }

    #[test]
    fn typos_are_errors() {
        let error = FileConfig::parse("[server]\ngrpc_adr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(format!("{error:#}").contains("grpc_adr"), "{error:#}");
        assert!(FileConfig::parse("[srever]\n").is_err());
    }

    /// The README's examples are what users copy; they must stay valid.
    #[test]
    fn readme_examples_parse() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md next to Cargo.toml");
        let blocks: Vec<&str> = readme
            .split("```toml")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .collect();
        assert!(!blocks.is_empty(), "the README shows a config example");
        for block in blocks {
            if let Err(error) = FileConfig::parse(block) {
                panic!("README example does not parse: {error:#}\n{block}");
            }
        }
    }

    #[test]
    fn storage_section_sets_retention_access_log_and_sql_limits() {
        let config = FileConfig::parse(
            r#"
            [storage]
            access_log = true

            [storage.retention]
            minute_secs = 3600

            [storage.sql]
            max_rows = 10
            "#,
        )
        .unwrap();
        let storage = config.storage;
        assert!(storage.access_log);
        assert_eq!(storage.retention.minute_secs, 3600);
        assert_eq!(
            storage.retention.hour_secs,
            RetentionConfig::default().hour_secs
        );
        assert_eq!(storage.sql.max_rows, 10);
        assert_eq!(storage.sql.timeout_ms, SqlLimits::default().timeout_ms);
        assert!(FileConfig::parse("[storage.retention]\nminutes = 1\n").is_err());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = FileConfig::parse("").unwrap();
        assert_eq!(config.server.grpc_addr, None);
        assert_eq!(config.storage.data_dir, None);
        assert!(!config.storage.access_log);
        assert_eq!(config.storage.retention, RetentionConfig::default());
        assert_eq!(config.storage.sql, SqlLimits::default());
    }
}
