//! Starting the log: what the log holds and the files do not is replayed into the open
//! minutes, then the writer starts on a new segment. Run before the gRPC port opens.
//!
//! Each logged message is applied again as it was received: with its stream's identity
//! (from the header written in its segment), checked against the time it was received,
//! keeping only the entries of the minutes the files miss (see `wal_mark`). Replayed
//! messages count in their own figures, not in the received and accepted ones.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier as AccessLogIdentifier;
use meshscope_proto::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use meshscope_proto::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier as MetricsIdentifier;
use meshscope_storage::wal::{
    Position, ReadRecord, RecordKind, SkippedSegments, StreamId, WalConfig, WalWriter,
    read_log_from,
};
use meshscope_storage::{MINUTE_MS, minute_of};
use prost::Message as _;
use tracing::{info, warn};

use crate::als::Applied;
use crate::identity::NodeIdentity;
use crate::ingest::StreamContext;
use crate::wal_checkpoint::{CheckpointConfig, Checkpoints, STARTED_FROM_CHECKPOINT};
use crate::wal_log::{CollectorLog, StreamKind, positions_in};
use crate::wal_mark::PersistedMark;
use crate::{Collector, Error, Result, wire};

/// Messages replayed at start.
pub const REPLAYED_MESSAGES: &str = "meshscope_wal_replayed_messages_total";
/// Entries replayed at start (those the files did not hold).
pub const REPLAYED_ENTRIES: &str = "meshscope_wal_replayed_entries_total";
/// Logged messages that could not be replayed, by `reason`.
pub const REPLAY_SKIPPED: &str = "meshscope_wal_replay_skipped_total";

/// The process dies here (`MESHSCOPE_CRASH_AT=wal-replaying:<n>`) before the n-th logged
/// message is replayed.
pub const CRASH_REPLAYING: &str = "wal-replaying";

/// Parked entries are retried this often in the log's time, as the flusher does live.
const RETRY_EVERY_MS: i64 = 250;

/// What a start of the log did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub messages: u64,
    pub entries: u64,
    pub skipped: u64,
    pub segments: usize,
    pub torn_tails: u64,
    pub quarantined: u64,
    /// The checkpoint loaded, when one was: its position and the rows it gave.
    pub from_checkpoint: Option<(Position, u64)>,
}

/// A logged stream's identity, from its header.
enum Replayed {
    AccessLog(StreamContext),
    Metrics(NodeIdentity),
    Refused,
}

impl Collector {
    /// Replays the log in `config.dir` over what the files hold (`note`, the mark written
    /// with the last minutes), then starts logging every message accepted. Damaged
    /// segments go to `quarantine_dir`.
    /// With `checkpoints`, the newest checkpoint that fits the files is loaded first and
    /// only the log after its position is replayed; from then on checkpoints are taken
    /// at its interval.
    pub fn start_log(
        self: &Arc<Self>,
        config: WalConfig,
        quarantine_dir: &Path,
        note: Option<&str>,
        checkpoints: Option<CheckpointConfig>,
    ) -> Result<ReplayReport> {
        let mark = match note.map(PersistedMark::from_note) {
            None => PersistedMark::default(),
            Some(Ok(mark)) => mark,
            Some(Err(error)) => {
                return Err(Error::Log(format!(
                    "the note of the last minutes written is unreadable: {error}"
                )));
            }
        };
        let started = Instant::now();
        let restored = match &checkpoints {
            Some(checkpoints) => self.restore_checkpoint(checkpoints, quarantine_dir, &mark)?,
            None => None,
        };
        metrics::gauge!(STARTED_FROM_CHECKPOINT).set(f64::from(u8::from(restored.is_some())));
        let from = restored
            .as_ref()
            .map_or_else(Position::default, |r| r.position);
        let skip = restored.as_ref().map(|r| SkippedSegments {
            before_segment: r.position.segment,
            max_time_ms: r.taken_at_ms,
        });
        let mut replay = Replay {
            collector: self,
            mark: &mark,
            from,
            streams: HashMap::new(),
            report: ReplayReport::default(),
            last_retry_ms: i64::MIN,
        };
        let summary = read_log_from(&config.dir, quarantine_dir, skip, |record| {
            replay.apply(record)
        })
        .map_err(|error| Error::Log(error.to_string()))?;
        let mut report = replay.report;
        report.from_checkpoint = restored.as_ref().map(|r| (r.position, r.rows));
        report.segments = summary.segments.len();
        report.torn_tails = summary.torn_tails;
        report.quarantined = summary.quarantined;
        metrics::counter!(REPLAYED_MESSAGES).increment(report.messages);
        metrics::counter!(REPLAYED_ENTRIES).increment(report.entries);
        let seconds = started.elapsed().as_secs_f64();
        info!(
            messages = report.messages,
            entries = report.entries,
            skipped = report.skipped,
            segments = report.segments,
            bytes = summary.bytes,
            skipped_segments = summary.skipped,
            from_checkpoint = ?report.from_checkpoint,
            seconds,
            "write-ahead log replayed"
        );
        let past_every_segment = summary
            .segments
            .iter()
            .map(|s| s.seq)
            .chain(positions_in(&mark).map(|p| p.segment))
            .chain(restored.iter().map(|r| r.position.segment))
            .max()
            .map_or(1, |seq| seq + 1);
        let future_allowance_ms = self.config.future_allowance_secs as i64 * 1000;
        let writer = WalWriter::start(
            config,
            past_every_segment,
            summary.max_stream + 1,
            summary.segments,
        )
        .map_err(|error| Error::Log(error.to_string()))?;
        if self
            .log
            .set(CollectorLog::new(
                writer,
                mark,
                future_allowance_ms,
                checkpoints.map(Checkpoints::new),
            ))
            .is_err()
        {
            return Err(Error::Log("the log is already started".into()));
        }
        Ok(report)
    }
}

/// A replay in progress.
struct Replay<'a> {
    collector: &'a Collector,
    mark: &'a PersistedMark,
    /// Messages logged before this position are in the checkpoint loaded.
    from: Position,
    streams: HashMap<StreamId, Replayed>,
    report: ReplayReport,
    last_retry_ms: i64,
}

impl Replay<'_> {
    fn apply(&mut self, record: ReadRecord<'_>) {
        match record.kind {
            RecordKind::StreamHeader => {
                let replayed = identify(self.collector, record.payload);
                self.streams.insert(record.stream, replayed);
            }
            RecordKind::Entry => {
                if record.position < self.mark.all_before || record.position < self.from {
                    return;
                }
                meshscope_storage::crash_point(CRASH_REPLAYING);
                self.retry_parked(record.time_ms);
                let outcome = match self.streams.get(&record.stream) {
                    Some(Replayed::AccessLog(context)) => {
                        replay_access_log(self.collector, self.mark, context, record)
                    }
                    Some(Replayed::Metrics(identity)) => {
                        replay_metrics(self.collector, self.mark, identity, record)
                    }
                    Some(Replayed::Refused) => Err("refused_stream"),
                    None => Err("no_header"),
                };
                match outcome {
                    Ok(entries) => {
                        self.report.messages += 1;
                        self.report.entries += entries;
                    }
                    Err(reason) => {
                        metrics::counter!(REPLAY_SKIPPED, "reason" => reason).increment(1);
                        if self.report.skipped == 0 {
                            warn!(reason, "a logged message could not be replayed");
                        }
                        self.report.skipped += 1;
                    }
                }
            }
        }
    }

    /// Entries parked for their peer's report are retried as the log's time moves, as
    /// the flusher retries them live.
    fn retry_parked(&mut self, now_ms: i64) {
        if now_ms >= self.last_retry_ms.saturating_add(RETRY_EVERY_MS) {
            let mut pipeline = self.collector.pipeline();
            pipeline.access_log = None;
            pipeline.retry_waiting(now_ms);
            pipeline.settle_pairs(now_ms);
            self.last_retry_ms = now_ms;
        }
    }
}

/// A stream's identity from its header: a kind byte, then the encoded identifier.
fn identify(collector: &Collector, header: &[u8]) -> Replayed {
    let Some((&kind, identifier)) = header.split_first() else {
        return Replayed::Refused;
    };
    match StreamKind::from_byte(kind) {
        Some(StreamKind::AccessLog) => AccessLogIdentifier::decode(identifier)
            .ok()
            .and_then(|identifier| collector.stream_context(&identifier).ok())
            .map_or(Replayed::Refused, Replayed::AccessLog),
        Some(StreamKind::Metrics) => MetricsIdentifier::decode(identifier)
            .ok()
            .and_then(|identifier| collector.identify(identifier.node.as_ref()).ok())
            .map_or(Replayed::Refused, Replayed::Metrics),
        None => Replayed::Refused,
    }
}

/// Applies a logged access-log message again; the entries kept.
fn replay_access_log(
    collector: &Collector,
    mark: &PersistedMark,
    context: &StreamContext,
    record: ReadRecord<'_>,
) -> Result<u64, &'static str> {
    // The entries of a message received at t start in the minutes from the first one
    // open at t to the one of t plus the future allowance: when the files hold all of
    // those, the message is skipped unread.
    let time_rules = &collector.time_rules;
    let first = time_rules.first_unclosed_minute(record.time_ms);
    let last = minute_of(record.time_ms + time_rules.future_allowance_ms);
    let any_missing = (0..)
        .map(|n| first + n * MINUTE_MS)
        .take_while(|minute| *minute <= last)
        .any(|minute| mark.replays_minute(record.position, minute));
    if !any_missing {
        return Ok(0);
    }
    let message = wire::Message::parse(record.payload).map_err(|_| "malformed")?;
    let position = record.position;
    let replays_minute = move |minute: i64| mark.replays_minute(position, minute);
    Ok(collector.ingest_message_at(
        context,
        &message,
        record.time_ms,
        Applied::Replayed(&replays_minute),
    ))
}

/// Applies a logged metrics-service message again: its rows only when the files miss
/// its minute, its counters always.
fn replay_metrics(
    collector: &Collector,
    mark: &PersistedMark,
    identity: &NodeIdentity,
    record: ReadRecord<'_>,
) -> Result<u64, &'static str> {
    let message = StreamMetricsMessage::decode(record.payload).map_err(|_| "malformed")?;
    let store_rows = mark.replays_proxy_stats(record.position, record.time_ms);
    collector.ingest_proxy_stats_at(identity, &message, record.time_ms, store_rows);
    Ok(0)
}
