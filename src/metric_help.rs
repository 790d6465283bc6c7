//! The HELP text and unit of every metric the server exports, given once at start, and the
//! build's own `meshscope_build_info`. The names are the crates' own constants; the query
//! crate describes its metrics itself.

use meshscope_collector::{forwarding, reporter_check, stats, wal_checkpoint, wal_replay};
use meshscope_storage::wal::stats as wal;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

const BUILD_INFO: &str = "meshscope_build_info";

/// Describes every metric and sets `meshscope_build_info` to 1.
pub(crate) fn describe_all() {
    describe_collector();
    describe_store();
    meshscope_query::telemetry::describe_metrics();
    crate::process_metrics::describe();
    describe_counter!(
        crate::tls::listener::HANDSHAKES_FAILED,
        "TLS handshakes that failed, by listener and reason."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; its labels name the build: version, profile and allocator."
    );
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "profile" => if cfg!(debug_assertions) { "debug" } else { "release" },
        "allocator" => if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" }
    )
    .set(1.0);
}

fn describe_collector() {
    describe_counter!(
        forwarding::FORWARDED_ENTRIES,
        "Access log entries whose request id another collector owns: sent to it, kept here because it could not be reached, or returned by a forwarded stream that failed and kept here."
    );
    describe_counter!(
        forwarding::FORWARDED_STREAMS_FAILED,
        "Forwarded streams to another collector that failed; their queued entries were kept here."
    );
    describe_gauge!(
        forwarding::RING_MEMBERS,
        "Collectors sharing the work as this one last listed them (itself included); 0 or 1 when it passes nothing on."
    );
    describe_counter!(
        stats::STREAMS_OPENED,
        "Access log streams opened by proxies."
    );
    describe_gauge!(stats::STREAMS_ACTIVE, "Access log streams open now.");
    describe_counter!(
        stats::STREAMS_FAILED,
        "Access log streams ended by an error, by reason."
    );
    describe_counter!(stats::MESSAGES, "Access log messages received.");
    describe_counter!(
        stats::ENTRIES_RECEIVED,
        "Access log entries received, by kind (http or tcp)."
    );
    describe_counter!(
        stats::ENTRIES_ACCEPTED,
        "Access log entries added to a minute."
    );
    describe_counter!(
        stats::ENTRIES_REJECTED,
        "Access log entries refused, by reason."
    );
    describe_counter!(
        stats::PEER_RESOLVED,
        "Entries whose peer was named, by how it was found."
    );
    describe_gauge!(
        stats::JOIN_WAITING,
        "Entries waiting for their peer's address to be learned."
    );
    describe_counter!(
        stats::PAIRS_SETTLED,
        "Requests settled by pairing the caller's and the callee's entries by request id, by outcome (paired, client_only, server_only)."
    );
    describe_counter!(
        stats::PAIRS_SETTLED_EARLY,
        "Requests settled before their pairing wait was over, with what had arrived, by reason (capacity: too many requests waiting)."
    );
    describe_gauge!(
        stats::PAIRS_WAITING,
        "Requests waiting for the other side's entry with the same request id."
    );
    describe_counter!(
        stats::OVERFLOW,
        "Keys folded into an overflow key because a limit was reached, by what."
    );
    describe_counter!(
        stats::ROWS_CLOSED,
        "Minute rows closed and handed to the store."
    );
    describe_counter!(
        stats::LATE_ROWS,
        "Samples for minutes already written, added to their late rows."
    );
    describe_counter!(
        stats::FLUSH_ERRORS,
        "Closed minutes the store failed to write."
    );
    describe_gauge!(stats::UNCLOSED_ROWS, "Rows held in minutes not yet closed.");
    describe_counter!(
        stats::PROXY_STATS_MESSAGES,
        "Proxy statistics messages received."
    );
    describe_counter!(
        stats::PROXY_STATS_STORED,
        "Proxy statistics kept as rows of their minute."
    );
    describe_counter!(
        stats::PROXY_STATS_DROPPED,
        "Proxy statistics dropped, by reason."
    );
    describe_counter!(
        wal_replay::REPLAYED_MESSAGES,
        "Write-ahead log messages replayed at start."
    );
    describe_counter!(
        wal_replay::REPLAYED_ENTRIES,
        "Access log entries replayed from the write-ahead log at start."
    );
    describe_counter!(
        wal_replay::REPLAY_SKIPPED,
        "Logged messages that could not be replayed, by reason."
    );
    describe_checkpoints();
    describe_counter!(
        reporter_check::REPORTER_IDENTITY_CHECKS,
        "Checks of a reporting proxy's identity against its certificate, by outcome."
    );
}

fn describe_checkpoints() {
    describe_counter!(
        wal_checkpoint::CHECKPOINTS,
        "Checkpoints of the unclosed minutes written."
    );
    describe_counter!(
        wal_checkpoint::CHECKPOINT_FAILURES,
        "Checkpoints of the unclosed minutes that could not be written."
    );
    describe_histogram!(
        wal_checkpoint::CHECKPOINT_PAUSE,
        Unit::Seconds,
        "Time ingest waited while a checkpoint's state was copied."
    );
    describe_histogram!(
        wal_checkpoint::CHECKPOINT_SECONDS,
        Unit::Seconds,
        "Time to copy, encode and write a checkpoint."
    );
    describe_gauge!(
        wal_checkpoint::CHECKPOINT_BYTES,
        Unit::Bytes,
        "Size of the last checkpoint written."
    );
    describe_gauge!(
        wal_checkpoint::STARTED_FROM_CHECKPOINT,
        "1 when the last start replayed the log from a checkpoint's position, 0 when from its beginning."
    );
}

fn describe_store() {
    describe_counter!(
        meshscope_storage::WRITE_FAILURES_METRIC,
        "Store writes that failed, by reason."
    );
    describe_counter!(
        meshscope_storage::QUARANTINED_METRIC,
        "Damaged files moved aside at start, by kind."
    );
    describe_counter!(
        meshscope_storage::RELISTED_READS_METRIC,
        "Reads on a query node that found a file gone (replaced or expired by upkeep since the last listing), listed the store again and were made again."
    );
    describe_counter!(
        meshscope_storage::BLOCK_SUMMARIES_READ_METRIC,
        "Ten-minute block summaries a first fold (a window's first read, or the upkeep's of the trailing hour) folded instead of the block's minutes."
    );
    describe_counter!(
        meshscope_storage::TRAILING_SUMMARIES_READ_METRIC,
        "Trailing-hour summaries a first fold (a window's first read, or the upkeep's of the next trailing hour) folded instead of the hour's block summaries and minutes."
    );
    describe_counter!(
        meshscope_storage::MAINTENANCE_PASSES_METRIC,
        "Maintenance passes run (compaction, rollups, retention)."
    );
    describe_counter!(
        meshscope_storage::MAINTENANCE_FAILURES_METRIC,
        "Maintenance passes that failed."
    );
    describe_counter!(
        meshscope_storage::MAINTENANCE_SKIPPED_METRIC,
        "Maintenance passes skipped or stopped part way because another node held the upkeep lease of the shared store."
    );
    describe_gauge!(
        meshscope_storage::UPKEEP_LEASE_HELD_METRIC,
        "1 while this node holds the upkeep lease of its shared store, else 0."
    );
    describe_counter!(
        wal::BYTES_WRITTEN,
        Unit::Bytes,
        "Bytes written to the write-ahead log."
    );
    describe_gauge!(wal::SEGMENTS, "Write-ahead log segment files on disk.");
    describe_gauge!(
        wal::DIRECT_WRITES,
        "1 while the open write-ahead log segment is written around the page cache (O_DIRECT), 0 through it."
    );
    describe_histogram!(
        wal::COMMIT_SECONDS,
        Unit::Seconds,
        "Time one group commit of the write-ahead log took."
    );
    describe_counter!(
        wal::WRITE_FAILURES,
        "Write-ahead log writes, syncs or file operations that failed, by reason."
    );
    describe_counter!(
        wal::RECORDS_LOST,
        "Write-ahead log records dropped because a write failed or the buffer was full."
    );
}
