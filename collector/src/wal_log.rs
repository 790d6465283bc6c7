//! The collector's write-ahead log: every access-log and metrics-service message it
//! accepts is logged, as the protobuf bytes received, before it is applied; closing
//! minutes notes how far the log is in the files; segments all in the files are deleted.
//!
//! Received bytes rather than decoded observations: logging them is one copy per message
//! and nothing per entry, replay reads them with the same code as live traffic, and the
//! log keeps no format of the collector's own that could drift from it. The price is size
//! (some 725 bytes per HTTP entry against about 60 for an observation) and replay speed
//! (every entry is decoded and resolved again).
//!
//! Messages are logged and applied under a gate that each message holds shared and that a
//! close of minutes takes exclusively while it reads the log position and switches the
//! minutes to their late rows. So every message logged before that position was applied
//! before the switch and every message after it, after: the cut `wal_mark` relies on.

use std::sync::Arc;

use meshscope_storage::wal::{Position, StreamId, SyncPolicy, WalWriter};
use meshscope_storage::{ClosedBatch, EpochMillis};
use parking_lot::Mutex;
use tokio::sync::{RwLock, RwLockReadGuard};
use tonic::Status;

use crate::wal_checkpoint::Checkpoints;
use crate::wal_mark::{MarkTracker, PersistedMark};
use crate::{Collector, Result};

/// What a logged stream's header says it is, as its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// `StreamAccessLogsMessage`s; the header holds the encoded `Identifier`.
    AccessLog = 1,
    /// `StreamMetricsMessage`s; the header holds the encoded `Identifier`.
    Metrics = 2,
}

impl StreamKind {
    pub fn from_byte(byte: u8) -> Option<StreamKind> {
        match byte {
            1 => Some(StreamKind::AccessLog),
            2 => Some(StreamKind::Metrics),
            _ => None,
        }
    }
}

/// The log as the collector uses it.
pub struct CollectorLog {
    pub(crate) writer: Arc<WalWriter>,
    pub(crate) gate: RwLock<()>,
    pub(crate) marks: Mutex<MarkTracker>,
    future_allowance_ms: i64,
    /// Checkpoints of the unclosed minutes, when taken.
    pub(crate) checkpoints: Option<Checkpoints>,
}

/// A gRPC stream's place in the log; closed when dropped.
pub struct LoggedStream {
    writer: Arc<WalWriter>,
    id: StreamId,
}

impl Drop for LoggedStream {
    fn drop(&mut self) {
        self.writer.close_stream(self.id);
    }
}

/// Held while a logged message is applied.
pub type ApplyTurn<'a> = RwLockReadGuard<'a, ()>;

impl CollectorLog {
    pub(crate) fn new(
        writer: WalWriter,
        persisted: PersistedMark,
        future_allowance_ms: i64,
        checkpoints: Option<Checkpoints>,
    ) -> CollectorLog {
        CollectorLog {
            writer: Arc::new(writer),
            gate: RwLock::new(()),
            marks: Mutex::new(MarkTracker::new(persisted)),
            future_allowance_ms,
            checkpoints,
        }
    }

    /// Opens a stream whose messages are read with `identifier` (the encoded identifier
    /// of its first message).
    pub fn open_stream(&self, kind: StreamKind, identifier: &[u8]) -> LoggedStream {
        let mut header = Vec::with_capacity(1 + identifier.len());
        header.push(kind as u8);
        header.extend_from_slice(identifier);
        LoggedStream {
            writer: self.writer.clone(),
            id: self.writer.open_stream(header),
        }
    }

    /// Logs one message received at `now_ms`; the turn returned is held while it is
    /// applied. With `always`, it returns once the message is on disk; with any policy, it
    /// waits when the log's buffer is over its bound, which slows the sender down.
    pub async fn log(
        &self,
        stream: &LoggedStream,
        now_ms: i64,
        message: &[u8],
    ) -> Result<ApplyTurn<'_>, Status> {
        let turn = self.gate.read().await;
        let appended = self
            .writer
            .append(stream.id, now_ms, message)
            .map_err(|error| Status::unavailable(error.to_string()))?;
        if appended.over_bound || self.writer.sync_policy() == SyncPolicy::Always {
            self.writer
                .wait_durable(appended.end)
                .await
                .map_err(|error| Status::unavailable(error.to_string()))?;
        }
        Ok(turn)
    }
}

impl Collector {
    /// The write-ahead log, once started.
    pub fn log(&self) -> Option<&CollectorLog> {
        self.log.get()
    }

    /// Closes minutes in the aggregator, with the log position of the switch noted when
    /// there is a log.
    pub(crate) async fn close_minutes(
        &self,
        first_unwritten: i64,
        first_open: i64,
    ) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        let Some(log) = self.log() else {
            return self.aggregator.close(first_unwritten, first_open);
        };
        let exclusive = log.gate.write().await;
        let cut = log.writer.position();
        log.marks.lock().closed(first_unwritten, first_open, cut);
        self.aggregator
            .close_after(first_unwritten, first_open, move || drop(exclusive))
    }

    /// Proxy statistics of minutes before `minute` are about to be written: noted with the
    /// next write of minutes, ahead of them.
    pub(crate) fn proxy_stats_due(&self, minute: EpochMillis) {
        if let Some(log) = self.log() {
            log.marks.lock().proxy_written_before(minute);
        }
    }

    /// Writes closed minutes; with a log, with the mark they make true, and then deletes
    /// the segments all in the files.
    pub(crate) async fn write_closed(
        &self,
        closed: &[ClosedBatch],
        before: Option<EpochMillis>,
    ) -> meshscope_storage::Result<()> {
        let Some(log) = self.log() else {
            return self.store.append_batches_before(closed, before).await;
        };
        let next = {
            let marks = log.marks.lock();
            marks.moved().then(|| marks.next.clone())
        };
        let Some(next) = next else {
            return self.store.append_batches_before(closed, before).await;
        };
        self.store
            .append_batches_noted(closed, before, &next.to_note())
            .await?;
        if !closed.is_empty() {
            fault_point("after_minute_files");
        }
        log.marks.lock().persisted(next.clone());
        let kept_from = next.log_kept_from_ms(log.future_allowance_ms);
        let deleted = log
            .writer
            .delete_segments_before(kept_from, next.all_before.segment);
        if deleted > 0 {
            tracing::debug!(deleted, "log segments all in the files deleted");
        }
        Ok(())
    }

    /// At shutdown, before the last minutes are written: from the next write on, the mark
    /// says the whole log is in the files. The receivers are stopped by then; the gate
    /// makes sure no message is still being applied.
    pub(crate) async fn log_all_written(&self) {
        if let Some(log) = self.log() {
            let _exclusive = log.gate.write().await;
            let mut marks = log.marks.lock();
            marks.next.all_before = log.writer.position();
        }
    }

    /// Stops the log's writer, writing out what it holds.
    pub(crate) fn close_log(&self) {
        if let Some(log) = self.log() {
            log.writer.close();
        }
    }
}

/// A test-only crash point: when `MESHSCOPE_FAULT_ABORT` names `point`, the process aborts
/// there, as a crash at that moment would stop it.
pub fn fault_point(point: &str) {
    if std::env::var_os("MESHSCOPE_FAULT_ABORT").is_some_and(|p| p == point) {
        tracing::error!(point, "aborting at a fault point, as asked");
        std::process::abort();
    }
}

/// Positions the writer must start past: the mark's own, which may name segments since
/// deleted.
pub(crate) fn positions_in(mark: &PersistedMark) -> impl Iterator<Item = Position> + '_ {
    std::iter::once(mark.all_before).chain(mark.cuts.values().copied())
}
