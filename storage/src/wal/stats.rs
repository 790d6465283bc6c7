//! The log's own figures, exported on `/metrics` through the `metrics` facade.

/// Bytes handed to the operating system (records and segment headers).
pub const BYTES_WRITTEN: &str = "meshscope_wal_bytes_written_total";
/// Segment files on disk.
pub const SEGMENTS: &str = "meshscope_wal_segments";
/// Seconds one group commit took: the write of the grouped records and, unless the policy
/// is `never`, their fsync.
pub const COMMIT_SECONDS: &str = "meshscope_wal_commit_seconds";
/// Writes, syncs or file operations that failed, by `reason`.
pub const WRITE_FAILURES: &str = "meshscope_wal_write_failures_total";
/// Records dropped because a write failed or the buffer was over its bound.
pub const RECORDS_LOST: &str = "meshscope_wal_records_lost_total";
/// 1 while the open segment is written around the page cache, 0 through it.
pub const DIRECT_WRITES: &str = "meshscope_wal_direct_writes";
/// Files moved aside to `quarantine/` at start, by `kind`.
pub const QUARANTINED: &str = "meshscope_quarantined_files_total";

/// Buckets of the commit histogram, in seconds: from a page-cache write to a slow disk's
/// fsync.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub(crate) fn write_failure(reason: &'static str) {
    metrics::counter!(WRITE_FAILURES, "reason" => reason).increment(1);
}
