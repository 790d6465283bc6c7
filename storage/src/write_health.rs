//! Whether the store can write: every failed write is counted in `/metrics` by reason
//! (`meshscope_store_write_failures_total{reason=...}`), and the failure stands as the
//! store's state (what `/healthz` reports as degraded) until a write succeeds again. A
//! full disk is the common case: closed minutes then wait in the collector, bounded, and
//! are written by its next tick once space returns.

use std::io::ErrorKind;

use parking_lot::Mutex;
use serde::Serialize;

use crate::error::Error;
use crate::model::EpochMillis;
use crate::store::Store;

/// The counter of failed writes, labelled by `reason`.
pub const WRITE_FAILURES_METRIC: &str = "meshscope_store_write_failures_total";

/// Every reason a write is counted under.
pub const WRITE_FAILURE_REASONS: [&str; 6] = [
    "no_space",
    "quota",
    "read_only",
    "permission",
    "io",
    "encode",
];

/// Writes have been failing since `since_ms`; the last failure's reason and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WriteFailure {
    /// One of `WRITE_FAILURE_REASONS`.
    pub reason: &'static str,
    /// The last failure's message.
    pub detail: String,
    /// When the first failure of this run of failures happened (epoch milliseconds).
    pub since_ms: EpochMillis,
    /// Failed writes since then.
    pub failed_writes: u64,
}

/// The store's record of failing writes, and of the last one that succeeded.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    failing: Mutex<Option<WriteFailure>>,
    /// When a write last succeeded (epoch milliseconds); `None` before the first.
    last_success_ms: Mutex<Option<EpochMillis>>,
}

impl WriteHealth {
    /// Makes the counters appear in `/metrics` at 0 before anything fails.
    pub(crate) fn register() {
        for reason in WRITE_FAILURE_REASONS {
            metrics::counter!(WRITE_FAILURES_METRIC, "reason" => reason).increment(0);
        }
    }

    /// Counts a failed write and marks the store as failing to write.
    pub(crate) fn failed(&self, error: &Error, now_ms: EpochMillis) {
        let reason = failure_reason(error);
        metrics::counter!(WRITE_FAILURES_METRIC, "reason" => reason).increment(1);
        let mut failing = self.failing.lock();
        let first = failing.is_none();
        let failure = failing.get_or_insert_with(|| WriteFailure {
            reason,
            detail: String::new(),
            since_ms: now_ms,
            failed_writes: 0,
        });
        failure.reason = reason;
        failure.detail = error.to_string();
        failure.failed_writes += 1;
        if first {
            tracing::warn!(reason, %error, "the store cannot write; what is closed waits in memory");
        }
    }

    /// Marks the store as writing again, as of `now_ms`.
    pub(crate) fn succeeded(&self, now_ms: EpochMillis) {
        *self.last_success_ms.lock() = Some(now_ms);
        if let Some(failure) = self.failing.lock().take() {
            tracing::info!(
                reason = failure.reason,
                failed_writes = failure.failed_writes,
                "the store writes again"
            );
        }
    }

    pub(crate) fn failing(&self) -> Option<WriteFailure> {
        self.failing.lock().clone()
    }

    pub(crate) fn last_success_ms(&self) -> Option<EpochMillis> {
        *self.last_success_ms.lock()
    }
}

impl Store {
    /// Why writes are failing, while they are; `None` once a write succeeds.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        self.inner.files.health().failing()
    }
}

/// The reason a failed write is counted under.
pub fn failure_reason(error: &Error) -> &'static str {
    match error {
        Error::Io(error) => match error.kind() {
            ErrorKind::StorageFull => "no_space",
            ErrorKind::QuotaExceeded => "quota",
            ErrorKind::ReadOnlyFilesystem => "read_only",
            ErrorKind::PermissionDenied => "permission",
            _ => "io",
        },
        Error::ObjectStore(_) => "io",
        _ => "encode",
    }
}

/// The kind of the first I/O error in `error`'s chain of causes that a write is counted
/// under by name (see `failure_reason`): object_store and Parquet errors carry it only as
/// a cause, at times inside an I/O error of no particular kind (a buffered upload's).
pub(crate) fn telling_io_kind(error: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    let mut at = Some(error);
    while let Some(cause) = at {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            let kind = io.kind();
            if matches!(
                kind,
                ErrorKind::StorageFull
                    | ErrorKind::QuotaExceeded
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::PermissionDenied
            ) {
                return Some(kind);
            }
            // An I/O error's own `source` skips the error it wraps.
            if let Some(inner) = io.get_ref() {
                at = Some(inner);
                continue;
            }
        }
        at = cause.source();
    }
    None
}

/// Whether `error`'s chain of causes holds an object store's error: a Parquet writer's
/// failure to upload what it wrote (the store unreachable, a request refused) is the
/// store's I/O, not an encoding error, and is counted as such.
pub(crate) fn carries_object_store_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(error);
    while let Some(cause) = at {
        if cause.downcast_ref::<object_store::Error>().is_some() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            at = Some(inner);
            continue;
        }
        at = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_inside_an_object_store_error_is_told_apart() {
        let full = std::io::Error::from_raw_os_error(28);
        let wrapped = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(full),
        };
        assert_eq!(failure_reason(&Error::from(wrapped)), "no_space");
        let other = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::other("broken")),
        };
        assert_eq!(failure_reason(&Error::from(other)), "io");
        let parquet = datafusion::parquet::errors::ParquetError::External(Box::new(
            std::io::Error::from_raw_os_error(122),
        ));
        assert_eq!(failure_reason(&Error::from(parquet)), "quota");
        // A buffered upload's failure, as a Parquet writer reports it.
        let upload = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from_raw_os_error(28)),
        };
        let parquet = datafusion::parquet::errors::ParquetError::External(Box::new(
            std::io::Error::other(upload),
        ));
        assert_eq!(failure_reason(&Error::from(parquet)), "no_space");
        // An upload to a store that cannot be reached, as a Parquet writer reports it.
        let unreachable = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(ErrorKind::ConnectionRefused)),
        };
        let parquet = datafusion::parquet::errors::ParquetError::External(Box::new(
            std::io::Error::other(unreachable),
        ));
        assert_eq!(failure_reason(&Error::from(parquet)), "io");
        // A Parquet error of its own is an encoding one.
        let bad = datafusion::parquet::errors::ParquetError::General("bad batch".into());
        assert_eq!(failure_reason(&Error::from(bad)), "encode");
    }

    #[test]
    fn a_failure_stands_until_a_write_succeeds() {
        let health = WriteHealth::default();
        let full = Error::Io(std::io::Error::from_raw_os_error(28));
        health.failed(&full, 10);
        health.failed(&full, 20);
        let failure = health.failing().unwrap();
        assert_eq!(
            (failure.reason, failure.since_ms, failure.failed_writes),
            ("no_space", 10, 2)
        );
        assert_eq!(health.last_success_ms(), None);
        health.succeeded(30);
        assert_eq!(health.failing(), None);
        assert_eq!(health.last_success_ms(), Some(30));
    }
}
