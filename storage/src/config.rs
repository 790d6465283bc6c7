//! How the store is set up: where data lives, how long each granularity is kept, and the
//! limits on SQL from SREs. Every field has a default so a config file names only what
//! it changes.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;

const HOUR_SECS: u64 = 3600;
const DAY_SECS: u64 = 24 * HOUR_SECS;

/// How a store is set up; see the module doc.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The node's own directory: the Parquet files too unless `store` names another place.
    pub data_dir: PathBuf,
    /// Where the Parquet files live, as a URL: `file:///path`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`, configured by the provider's standard
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...). `None` keeps
    /// them in `data_dir`.
    pub store: Option<String>,
    /// This node's name in the names of the files it writes, so that several writers share
    /// one store without overwriting each other: letters, digits and `-`. Empty writes
    /// names without one (a store with one writer).
    pub writer_id: String,
    pub retention: RetentionConfig,
    /// Seconds between background compaction, rollup and retention passes; 0 turns the
    /// background task off (tests drive `Store::maintain` themselves).
    pub maintenance_interval_secs: u64,
    /// Minutes after an hour ends before it is compacted and rolled up, so that late
    /// closed minutes still land in its minute files first.
    pub settle_minutes: u64,
    /// Keep raw access-log entries in the `access_log` table.
    pub access_log: bool,
    pub sql: SqlLimits,
    /// Called with `true` as a large, short use of memory starts (a closing minute's
    /// encoding and write, an upkeep pass) and with `false` as it ends; the calls nest.
    /// Both free and take again tens of megabytes within moments: the binary has its
    /// allocator give freed pages back at once meanwhile rather than after its usual delay.
    #[serde(skip)]
    pub memory_hint: Option<fn(bool)>,
    /// Where the store reads wall time from: when background upkeep runs, how long a read
    /// of live minutes is reused, when a kept moving span has been idle too long. The
    /// machine's clock unless set (tests set a `ManualClock`).
    #[serde(skip)]
    pub clock: SharedClock,
    /// An object store given by the caller, used instead of the one `store` names (tests
    /// share one in-memory store between several stores this way).
    #[serde(skip)]
    pub object_store: Option<Arc<dyn ObjectStore>>,
}

/// How long each granularity is kept, in seconds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub minute_secs: u64,
    pub hour_secs: u64,
    pub day_secs: u64,
    pub access_log_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            minute_secs: 2 * DAY_SECS,
            hour_secs: 14 * DAY_SECS,
            day_secs: 90 * DAY_SECS,
            access_log_secs: DAY_SECS,
        }
    }
}

/// Bounds on one SQL query.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SqlLimits {
    pub timeout_ms: u64,
    pub max_rows: usize,
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            max_rows: 100_000,
            memory_bytes: 512 * 1024 * 1024,
        }
    }
}

impl StoreConfig {
    /// Defaults for everything but where the data lives.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            store: None,
            writer_id: String::new(),
            retention: RetentionConfig::default(),
            maintenance_interval_secs: 60,
            settle_minutes: 5,
            access_log: false,
            sql: SqlLimits::default(),
            memory_hint: None,
            clock: SharedClock::default(),
            object_store: None,
        }
    }
}
