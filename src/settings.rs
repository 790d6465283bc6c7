//! What `meshscope serve` runs with: its flags, merged with the environment, the config
//! file and the defaults, into one [`Settings`]; and the store's config, which `maintain`
//! shares.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use meshscope_collector::CollectorConfig;
use meshscope_storage::StoreConfig;
use meshscope_storage::wal::SyncPolicy;

use crate::config::{FileConfig, StorageSection};
use crate::security::{SecurityArgs, SecuritySettings};

const DEFAULT_GRPC_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 11800);
const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 12800);
const DEFAULT_DATA_DIR: &str = "data";
const DEFAULT_WAL_SYNC_INTERVAL_MS: u64 = 100;
/// How often a query node lists the store by default, in milliseconds.
const DEFAULT_STORE_LIST_INTERVAL_MS: u64 = 2_000;

/// Every flag can also come from a `MESHSCOPE_*` variable; a flag beats the variable, the
/// variable beats the config file, the file beats the default.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address of the gRPC receivers (Envoy access log service) [default: 0.0.0.0:11800]
    #[arg(long, env = "MESHSCOPE_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// Address of the HTTP API and UI [default: 0.0.0.0:12800]
    #[arg(long, env = "MESHSCOPE_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Directory for stored data [default: ./data]
    #[arg(long, env = "MESHSCOPE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the Parquet files live: file:///path, s3://bucket/prefix, gs://bucket/prefix
    /// or az://container/prefix, configured by the provider's standard variables
    /// (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...); the write-ahead log stays in --data-dir
    /// [default: the data directory]
    #[arg(long, env = "MESHSCOPE_STORE")]
    store: Option<String>,
    /// What this process does: `collector` (gRPC receivers, write-ahead log, writes files;
    /// HTTP for /healthz and /metrics only), `query` (HTTP API and dashboard, reads only)
    /// or `all` [default: all]
    #[arg(long, env = "MESHSCOPE_ROLE")]
    role: Option<Role>,
    /// This writer's id in the names of the files it writes (letters, digits, '-'), so
    /// that several collectors share one store [default: made once, kept in the data
    /// directory's `writer-id`]
    #[arg(long, env = "MESHSCOPE_WRITER_ID")]
    writer_id: Option<String>,
    /// A collector's gRPC address as the other collectors reach it (`host:port`): with it,
    /// the collectors on one store find each other through it, and each entry is ingested
    /// by the one that owns its request id, so that both sides of every request meet
    /// [default: none, every entry is ingested where it arrives]
    #[arg(long, env = "MESHSCOPE_ADVERTISE_GRPC")]
    advertise_grpc: Option<String>,
    /// Run compaction, rollups and retention here: exactly one writer of a shared store
    /// should [default: true for `all`, false for `collector`; never for `query`]
    #[arg(long, env = "MESHSCOPE_UPKEEP", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    upkeep: Option<bool>,
    /// How often a query node lists the store for what the collectors wrote: about 24
    /// LIST requests each time, and a call shows within this plus 2 s [default: 2000]
    #[arg(long, env = "MESHSCOPE_STORE_LIST_INTERVAL_MS")]
    store_list_interval_ms: Option<u64>,
    /// TOML config file with [server], [collector] and [storage] sections
    #[arg(long, env = "MESHSCOPE_CONFIG")]
    config: Option<PathBuf>,
    /// Also run a small simulated mesh against this server, for a first look
    #[arg(long, env = "MESHSCOPE_DEMO", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    demo: Option<bool>,
    /// Topology windows read ahead at start and after each minute is written, so that a
    /// dashboard's reads find them ready; comma-separated, `none` for none
    /// [default: 15m,1h,6h,24h,7d]
    #[arg(long, env = "MESHSCOPE_WARM_WINDOWS", value_delimiter = ',')]
    warm_windows: Option<Vec<String>>,
    /// When a received message counts as kept by the write-ahead log: `always` (fsynced
    /// before it is applied), `interval` (fsynced every --wal-sync-interval-ms) or `never`
    /// (left to the operating system) [default: interval]
    #[arg(long, env = "MESHSCOPE_WAL_SYNC")]
    wal_sync: Option<SyncPolicy>,
    /// How often the write-ahead log is written out and, with `interval`, fsynced
    /// [default: 100]
    #[arg(long, env = "MESHSCOPE_WAL_SYNC_INTERVAL_MS")]
    wal_sync_interval_ms: Option<u64>,
    /// Write the log around the page cache (O_DIRECT) where the filesystem allows it, while
    /// the device keeps up (then through the page cache): a quarter less CPU per entry
    /// where the device is fast (BENCHMARKS.md, "Write-ahead log") [default: true]
    #[arg(long, env = "MESHSCOPE_WAL_DIRECT_WRITES")]
    wal_direct_writes: Option<bool>,
    /// How often the unclosed minutes are checkpointed, so that a start replays only the
    /// log after the newest checkpoint; 0 takes none [default: 5000]
    #[arg(long, env = "MESHSCOPE_WAL_CHECKPOINT_INTERVAL_MS")]
    wal_checkpoint_interval_ms: Option<u64>,
    #[command(flatten)]
    security: SecurityArgs,
}

/// What one `meshscope serve` process does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Takes the proxies' gRPC streams, logs them, writes files; serves only /healthz and
    /// /metrics over HTTP.
    Collector,
    /// Serves the HTTP API and the dashboard from the store; never writes.
    Query,
    /// Both, in one process.
    #[default]
    All,
}

impl Role {
    pub(crate) fn collects(self) -> bool {
        matches!(self, Role::Collector | Role::All)
    }

    pub(crate) fn serves_reads(self) -> bool {
        matches!(self, Role::Query | Role::All)
    }
}

/// What `serve` runs with, after merging flags, environment, file and defaults.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) role: Role,
    /// The writer id given (flag, environment or file); `None` takes the one kept in the
    /// data directory.
    pub(crate) writer_id: Option<String>,
    /// A collector's gRPC address as the others reach it; set, it joins the ring of
    /// collectors on its store.
    pub(crate) advertise_grpc: Option<String>,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    pub(crate) demo: bool,
    pub(crate) warm_windows: Vec<String>,
    pub(crate) store: StoreConfig,
    pub(crate) collector: CollectorConfig,
    pub(crate) wal_sync: SyncPolicy,
    pub(crate) wal_sync_interval: Duration,
    pub(crate) wal_direct_writes: bool,
    /// `None` takes no checkpoints.
    pub(crate) wal_checkpoint_interval: Option<Duration>,
    /// How often a query node lists the store again.
    pub(crate) store_list_interval: Duration,
    pub(crate) security: SecuritySettings,
}

impl Settings {
    /// Reads the config file the flags name (if any) and resolves against it.
    pub(crate) fn load(args: ServeArgs) -> anyhow::Result<Self> {
        let file = FileConfig::load(args.config.as_deref())?;
        Ok(Self::resolve(args, file))
    }

    /// Each value from the flag, else the environment (clap reads both), else the file,
    /// else the default.
    pub(crate) fn resolve(args: ServeArgs, file: FileConfig) -> Self {
        let security = SecuritySettings::resolve(args.security, file.security);
        let role = args.role.or(file.server.role).unwrap_or_default();
        let writer_id = args.writer_id.or(file.storage.writer_id.clone());
        let upkeep = match role {
            Role::Query => false,
            Role::Collector => args.upkeep.or(file.storage.upkeep).unwrap_or(false),
            Role::All => args.upkeep.or(file.storage.upkeep).unwrap_or(true),
        };
        let list_interval_ms = file.storage.list_interval_ms;
        let mut store = store_config(args.data_dir, file.storage);
        store.store = args.store.or(store.store);
        if !upkeep {
            store.maintenance_interval_secs = 0;
        }
        Self {
            role,
            writer_id,
            advertise_grpc: args.advertise_grpc.or(file.server.advertise_grpc),
            grpc_addr: args
                .grpc_addr
                .or(file.server.grpc_addr)
                .unwrap_or(DEFAULT_GRPC_ADDR),
            http_addr: args
                .http_addr
                .or(file.server.http_addr)
                .unwrap_or(DEFAULT_HTTP_ADDR),
            demo: args.demo.or(file.server.demo).unwrap_or(false),
            warm_windows: args
                .warm_windows
                .or(file.server.warm_windows)
                .unwrap_or_else(|| {
                    meshscope_query::warm::DEFAULT_WINDOWS
                        .iter()
                        .map(|w| (*w).to_owned())
                        .collect()
                })
                .into_iter()
                .map(|w| w.trim().to_owned())
                .filter(|w| !w.is_empty() && w != "none")
                .collect(),
            store,
            collector: CollectorConfig {
                strict_reporter_identity: security.strict_reporter_identity,
                ..file.collector
            },
            wal_sync: args.wal_sync.or(file.wal.sync).unwrap_or_default(),
            wal_sync_interval: Duration::from_millis(
                args.wal_sync_interval_ms
                    .or(file.wal.sync_interval_ms)
                    .unwrap_or(DEFAULT_WAL_SYNC_INTERVAL_MS)
                    .max(1),
            ),
            wal_direct_writes: args
                .wal_direct_writes
                .or(file.wal.direct_writes)
                .unwrap_or(true),
            wal_checkpoint_interval: Some(
                args.wal_checkpoint_interval_ms
                    .or(file.wal.checkpoint_interval_ms)
                    .map_or(
                        meshscope_collector::wal_checkpoint::DEFAULT_INTERVAL,
                        Duration::from_millis,
                    ),
            )
            .filter(|interval| !interval.is_zero()),
            store_list_interval: Duration::from_millis(
                args.store_list_interval_ms
                    .or(list_interval_ms)
                    .unwrap_or(DEFAULT_STORE_LIST_INTERVAL_MS)
                    .max(100),
            ),
            security,
        }
    }
}

/// The store's config: the data directory from the flag, the file or the default, the rest
/// from the file's `[storage]` section or the store's defaults.
pub(crate) fn store_config(data_dir: Option<PathBuf>, file: StorageSection) -> StoreConfig {
    let defaults = StoreConfig::default();
    StoreConfig {
        data_dir: data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        retention: file.retention,
        maintenance_interval_secs: file
            .maintenance_interval_secs
            .unwrap_or(defaults.maintenance_interval_secs),
        settle_minutes: file.settle_minutes.unwrap_or(defaults.settle_minutes),
        store: file.store,
        writer_id: String::new(),
        object_store: None,
        access_log: file.access_log,
        sql: file.sql,
        memory_hint: Some(crate::memory::large_use_of_memory),
        clock: defaults.clock,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn settings(argv: &[&str], file: &str) -> Settings {
        let mut full = vec!["meshscope"];
        full.extend_from_slice(argv);
        let args = TestCli::try_parse_from(full).unwrap().serve;
        Settings::resolve(args, FileConfig::parse(file).unwrap())
    }

    /// Everything about precedence in one test: environment variables are process-wide,
    /// so a second test parsing flags could see this one's variables.
    #[test]
    fn precedence_is_flag_then_env_then_file_then_default() {
        let defaults = settings(&[], "");
        assert_eq!(defaults.grpc_addr, DEFAULT_GRPC_ADDR);
        assert_eq!(defaults.http_addr, "0.0.0.0:12800".parse().unwrap());
        assert_eq!(defaults.store.data_dir, PathBuf::from("data"));
        assert!(!defaults.demo);
        assert_eq!(defaults.warm_windows, ["15m", "1h", "6h", "24h", "7d"]);

        let file = "[server]\ngrpc_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\ndemo = true\n\
                    warm_windows = [\"1h\"]\n[storage]\ndata_dir = \"/from/file\"\n";
        let from_file = settings(&[], file);
        assert_eq!(from_file.grpc_addr, "127.0.0.1:1".parse().unwrap());
        assert_eq!(from_file.http_addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(from_file.store.data_dir, PathBuf::from("/from/file"));
        assert!(from_file.demo);
        assert_eq!(from_file.warm_windows, ["1h"]);
        assert!(
            settings(&["--warm-windows", "none"], file)
                .warm_windows
                .is_empty()
        );
        assert_eq!(
            settings(&["--warm-windows", "5m, 2h"], file).warm_windows,
            ["5m", "2h"]
        );

        // SAFETY: no other test in this binary reads or writes the environment.
        unsafe {
            std::env::set_var("MESHSCOPE_GRPC_ADDR", "127.0.0.1:4");
            std::env::set_var("MESHSCOPE_DATA_DIR", "/from/env");
            std::env::set_var("MESHSCOPE_DEMO", "false");
        }
        let from_env = settings(&[], file);
        let from_flags = settings(
            &[
                "--grpc-addr",
                "127.0.0.1:3",
                "--data-dir",
                "/from/flag",
                "--demo",
            ],
            file,
        );
        // SAFETY: as above.
        unsafe {
            std::env::remove_var("MESHSCOPE_GRPC_ADDR");
            std::env::remove_var("MESHSCOPE_DATA_DIR");
            std::env::remove_var("MESHSCOPE_DEMO");
        }
        assert_eq!(from_env.grpc_addr, "127.0.0.1:4".parse().unwrap());
        assert_eq!(from_env.http_addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(from_env.store.data_dir, PathBuf::from("/from/env"));
        assert!(!from_env.demo);

        assert_eq!(from_flags.grpc_addr, "127.0.0.1:3".parse().unwrap());
        assert_eq!(from_flags.http_addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(from_flags.store.data_dir, PathBuf::from("/from/flag"));
        assert!(from_flags.demo);
    }

    #[test]
    fn role_store_and_upkeep_come_from_flag_then_file_then_default() {
        let defaults = settings(&[], "");
        assert_eq!(defaults.role, Role::All);
        assert_eq!(defaults.store.store, None);
        assert_eq!(defaults.writer_id, None);
        assert_eq!(defaults.store.maintenance_interval_secs, 60);

        let file = "[server]\nrole = \"collector\"\n[storage]\nstore = \"s3://b/p\"\nwriter_id = \"c-1\"\n";
        let from_file = settings(&[], file);
        assert_eq!(from_file.role, Role::Collector);
        assert_eq!(from_file.store.store.as_deref(), Some("s3://b/p"));
        assert_eq!(from_file.writer_id.as_deref(), Some("c-1"));
        assert_eq!(
            from_file.store.maintenance_interval_secs, 0,
            "a collector runs no upkeep unless told"
        );
        let told = settings(&["--upkeep"], file);
        assert_eq!(told.store.maintenance_interval_secs, 60);
        assert_eq!(defaults.advertise_grpc, None);
        let advertised = "[server]\nadvertise_grpc = \"c-0.collectors:11800\"\n";
        assert_eq!(
            settings(&[], advertised).advertise_grpc.as_deref(),
            Some("c-0.collectors:11800")
        );
        assert_eq!(
            settings(&["--advertise-grpc", "10.0.0.7:11800"], advertised)
                .advertise_grpc
                .as_deref(),
            Some("10.0.0.7:11800")
        );

        let query = settings(
            &["--role", "query", "--store", "gs://x/y", "--upkeep", "true"],
            file,
        );
        assert_eq!(query.role, Role::Query);
        assert_eq!(query.store.store.as_deref(), Some("gs://x/y"));
        assert_eq!(
            query.store.maintenance_interval_secs, 0,
            "never on a query node"
        );
        assert!(FileConfig::parse("[server]\nrole = \"reader\"\n").is_err());
    }

    #[test]
    fn a_query_nodes_listing_interval_comes_from_flag_then_file_then_default() {
        assert_eq!(
            settings(&[], "").store_list_interval,
            Duration::from_secs(2)
        );
        let file = "[storage]\nlist_interval_ms = 10000\n";
        assert_eq!(
            settings(&[], file).store_list_interval,
            Duration::from_secs(10)
        );
        assert_eq!(
            settings(&["--store-list-interval-ms", "30000"], file).store_list_interval,
            Duration::from_secs(30)
        );
        // A listing at most every 100 ms: 0 would list without pause.
        assert_eq!(
            settings(&["--store-list-interval-ms", "0"], "").store_list_interval,
            Duration::from_millis(100)
        );
    }

    #[test]
    fn wal_settings_come_from_flag_then_file_then_default() {
        let defaults = settings(&[], "");
        assert_eq!(defaults.wal_sync, SyncPolicy::Interval);
        assert_eq!(defaults.wal_sync_interval, Duration::from_millis(100));
        assert!(defaults.wal_direct_writes);
        let file = "[wal]\nsync = \"never\"\nsync_interval_ms = 250\ndirect_writes = false\n";
        let from_file = settings(&[], file);
        assert!(!from_file.wal_direct_writes);
        assert_eq!(from_file.wal_sync, SyncPolicy::Never);
        assert_eq!(from_file.wal_sync_interval, Duration::from_millis(250));
        let from_flags = settings(
            &[
                "--wal-sync",
                "always",
                "--wal-sync-interval-ms",
                "5",
                "--wal-direct-writes",
                "true",
            ],
            file,
        );
        assert!(from_flags.wal_direct_writes);
        assert_eq!(from_flags.wal_sync, SyncPolicy::Always);
        assert_eq!(from_flags.wal_sync_interval, Duration::from_millis(5));
        assert!(FileConfig::parse("[wal]\nsync = \"sometimes\"\n").is_err());
    }
}
