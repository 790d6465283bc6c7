//! Checkpoints of the unclosed minutes, so that a start replays only the log after the
//! newest one instead of every message the files do not hold (see `checkpoint_state`).
//!
//! Taking one: at the end of a tick, every `interval`, when every minute closed so far is
//! in the files (nothing waits to be written, nothing is on its way), the log's gate is
//! taken exclusively, as a close of minutes takes it, and the state is copied: maps
//! cloned, nothing encoded. Ingest waits only for that copy. Encoding and writing happen
//! on a blocking thread while ingest goes on. The log is deleted by the files' mark alone,
//! never by a checkpoint, so that a damaged checkpoint can always fall back on the log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::Collector;
use crate::checkpoint_file;
use crate::checkpoint_state::CheckpointState;
use crate::proxy_minutes::ProxyRowState;
use crate::wal_mark::PersistedMark;

/// Checkpoints written.
pub const CHECKPOINTS: &str = "meshscope_wal_checkpoints_total";
/// Checkpoints that could not be written.
pub const CHECKPOINT_FAILURES: &str = "meshscope_wal_checkpoint_failures_total";
/// Seconds ingest waited while a checkpoint's state was copied.
pub const CHECKPOINT_PAUSE: &str = "meshscope_wal_checkpoint_pause_seconds";
/// Seconds to copy, encode and write a checkpoint.
pub const CHECKPOINT_SECONDS: &str = "meshscope_wal_checkpoint_seconds";
/// Bytes of the last checkpoint written.
pub const CHECKPOINT_BYTES: &str = "meshscope_wal_checkpoint_bytes";
/// Log messages the last start replayed from a checkpoint's position on (1) or from the
/// start of the log (0).
pub const STARTED_FROM_CHECKPOINT: &str = "meshscope_wal_started_from_checkpoint";

/// Where checkpoints go and how often.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    pub dir: PathBuf,
    pub interval: Duration,
}

/// The default interval, chosen by measurement (see BENCHMARKS.md): replay after a
/// crash stays a few seconds of traffic, and a checkpoint of a 1,000-service mesh costs
/// a small fraction of a core at this pace.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The collector's checkpointing, beside its log.
pub(crate) struct Checkpoints {
    config: CheckpointConfig,
    last_ms: AtomicI64,
}

impl Checkpoints {
    pub(crate) fn new(config: CheckpointConfig) -> Checkpoints {
        Checkpoints {
            config,
            last_ms: AtomicI64::new(i64::MIN),
        }
    }
}

/// What a start took from a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The log is replayed from here on.
    pub position: meshscope_storage::wal::Position,
    /// The clock when the checkpoint was taken.
    pub taken_at_ms: i64,
    pub rows: u64,
    pub parked: usize,
    /// Requests put back to wait for their other side.
    pub pairs: usize,
}

/// The state copied under the gate, before it is put in the checkpoint's form.
struct Copied {
    position: meshscope_storage::wal::Position,
    taken_at_ms: i64,
    mark: PersistedMark,
    unclosed: crate::aggregate::UnclosedCopy,
    parked: Vec<crate::wait_queue::ParkedEntry>,
    requests: crate::packed_requests::PackedRequests,
    learned: crate::registry::LearnedCopy,
    counters: crate::proxy_stats::CounterState,
    proxy_rows: Vec<meshscope_storage::ProxyMetricRow>,
}

impl Copied {
    fn into_state(self) -> CheckpointState {
        let parked = crate::wait_queue::ParkedStates::of(&self.parked);
        CheckpointState {
            position: self.position,
            taken_at_ms: self.taken_at_ms,
            unclosed: self.unclosed.into_rows(),
            parked: parked.entries,
            parked_reporters: parked.reporters,
            packed_requests: self.requests,
            requests: Vec::new(),
            learned: self.learned.into_state(),
            counters: self.counters,
            proxy_rows: self
                .proxy_rows
                .iter()
                .filter(|row| row.minute >= self.mark.proxy_before)
                .map(ProxyRowState::of)
                .collect(),
            mark: self.mark,
        }
    }
}

impl Collector {
    /// Takes a checkpoint if one is due at `now_ms` and every closed minute is in the
    /// files; a failure is logged and counted, and tried again at the next interval.
    pub async fn checkpoint_if_due(&self, now_ms: i64) {
        let Some(log) = self.log() else {
            return;
        };
        let Some(checkpoints) = &log.checkpoints else {
            return;
        };
        let interval_ms = checkpoints.config.interval.as_millis() as i64;
        if now_ms
            < checkpoints
                .last_ms
                .load(Ordering::Relaxed)
                .saturating_add(interval_ms)
        {
            return;
        }
        if let Err(error) = self.checkpoint_now().await {
            metrics::counter!(CHECKPOINT_FAILURES).increment(1);
            warn!(%error, "a checkpoint could not be written; the log keeps what it would hold");
        }
        checkpoints.last_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Takes a checkpoint now; `Ok(None)` when one cannot be taken at this moment (a
    /// closed minute is not in the files yet), else the bytes written.
    pub async fn checkpoint_now(&self) -> Result<Option<usize>, String> {
        let Some(log) = self.log() else {
            return Ok(None);
        };
        let Some(checkpoints) = &log.checkpoints else {
            return Ok(None);
        };
        if !self.unwritten.lock().is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let copied = {
            let _exclusive = log.gate.write().await;
            let paused = Instant::now();
            let mark = {
                let marks = log.marks.lock();
                if marks.moved() {
                    return Ok(None);
                }
                marks.persisted.clone()
            };
            let Some(unclosed) = self.aggregator.copy_unclosed() else {
                return Ok(None);
            };
            let copied = Copied {
                position: log.writer.position(),
                taken_at_ms: self.clock.now_ms(),
                mark,
                unclosed,
                parked: self.waiting.copy(),
                requests: self.pairs.copy_packed(),
                learned: self.registry.copy_learned(),
                counters: self.proxy_stats.copy(),
                proxy_rows: self.proxy_minutes.rows(),
            };
            metrics::histogram!(CHECKPOINT_PAUSE).record(paused.elapsed().as_secs_f64());
            copied
        };
        let dir = checkpoints.config.dir.clone();
        let rows = copied.unclosed.rows();
        let written = tokio::task::spawn_blocking(move || {
            let state = copied.into_state();
            checkpoint_file::write(&dir, &state).map(|bytes| (bytes, state.position))
        })
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;
        let (bytes, position) = written;
        let seconds = started.elapsed().as_secs_f64();
        metrics::counter!(CHECKPOINTS).increment(1);
        metrics::histogram!(CHECKPOINT_SECONDS).record(seconds);
        metrics::gauge!(CHECKPOINT_BYTES).set(bytes as f64);
        debug!(rows, bytes, seconds, ?position, "checkpoint written");
        Ok(Some(bytes))
    }

    /// Puts the newest whole checkpoint in `config.dir` that can stand in for the log
    /// before its position (given the files' mark) into this collector, which holds
    /// nothing yet. `None` when there is none: the whole log is replayed.
    pub(crate) fn restore_checkpoint(
        &self,
        config: &CheckpointConfig,
        quarantine_dir: &std::path::Path,
        files: &PersistedMark,
    ) -> crate::Result<Option<Restored>> {
        let started = Instant::now();
        let io = |error: std::io::Error| crate::Error::Log(format!("reading checkpoints: {error}"));
        let Some(state) = checkpoint_file::newest(&config.dir, quarantine_dir).map_err(io)? else {
            return Ok(None);
        };
        if let Err(reason) = state.fits(files) {
            warn!(reason, position = ?state.position, "the newest checkpoint does not fit the files; the whole log is replayed");
            return Ok(None);
        }
        let restored = Restored {
            position: state.position,
            taken_at_ms: state.taken_at_ms,
            rows: 0,
            parked: 0,
            pairs: 0,
        };
        let path = config.dir.join(checkpoint_file::file_name(state.position));
        let keeps = |minute| state.keeps_minute(files, minute);
        let rows = match self
            .aggregator
            .restore_unclosed(state.unclosed.clone(), keeps)
        {
            Ok(rows) => rows,
            Err(reason) => {
                // Nothing was put in: the names and rows are checked first.
                checkpoint_file::quarantine(&path, quarantine_dir, &reason).map_err(io)?;
                return Ok(None);
            }
        };
        let parked = self.waiting.restore(
            state
                .parked
                .iter()
                .filter(|p| state.keeps_minute(files, p.minute())),
            &state.parked_reporters,
        );
        // A request is put back only where every minute it may settle into is taken from
        // the checkpoint: where the files already hold a minute, what the request added
        // there after the checkpoint is in them too, and settling it again would count it
        // twice.
        let pairs: Vec<_> = state
            .waiting_requests()
            .into_iter()
            .filter(|p| p.minutes().all(|minute| state.keeps_minute(files, minute)))
            .collect();
        let pairs = self.pairs.restore(pairs);
        self.registry.restore_learned(state.learned.clone());
        self.proxy_stats.restore(state.counters.clone());
        for row in state
            .proxy_rows
            .iter()
            .cloned()
            .filter_map(ProxyRowState::row)
        {
            if state.keeps_proxy_minute(files, row.minute) {
                self.proxy_minutes.record(row);
            }
        }
        info!(
            rows,
            parked,
            pairs,
            position = ?state.position,
            seconds = started.elapsed().as_secs_f64(),
            "checkpoint restored; the log is replayed from its position"
        );
        Ok(Some(Restored {
            rows,
            parked,
            pairs,
            ..restored
        }))
    }
}
