//! The collector: the receivers' shared state (identity rules, address registry, waiting
//! entries), the aggregation buffers, and the background work that closes minutes and hands
//! them to the store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use meshscope_storage::clock::{Clock, SystemClock};
use meshscope_storage::{AccessLogRow, ClosedBatch, MetricRow, MinuteWriter, Store};
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::aggregate::{Aggregator, Limits};
use crate::collector_ring::CollectorRing;
use crate::config::CollectorConfig;
use crate::error::{Error, Result};
use crate::forwarding::{PeerChannels, RING_MEMBERS};
use crate::ingest::Pipeline;
use crate::proxy_minutes::ProxyMinutes;
use crate::proxy_stats::ProxyStats;
use crate::registry::Registry;
use crate::request_pairs::RequestPairs;
use crate::resolve::Resolver;
use crate::role::RoleRules;
use crate::stats;
use crate::time_rules::TimeRules;
use crate::wait_queue::WaitQueue;

/// How often minutes are closed and parked entries retried.
const TICK: Duration = Duration::from_millis(250);
/// Proxy statistics are published and stale reads let go every this many ticks.
const PUBLISH_EVERY_TICKS: u32 = 4;

/// The collector: owns the receivers' shared state and the aggregation buffers. The
/// fields the receivers' own `impl Collector` blocks (`als`, `metrics_service`) read are
/// visible to the crate.
pub struct Collector {
    pub(crate) config: CollectorConfig,
    /// The store as a writer sees it.
    pub(crate) store: Arc<dyn MinuteWriter>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) registry: Registry,
    pub(crate) role_rules: RoleRules,
    pub(crate) aggregator: Arc<Aggregator>,
    pub(crate) waiting: WaitQueue,
    /// Requests waiting for their other side's entry, by request id.
    pub(crate) pairs: RequestPairs,
    pub(crate) time_rules: TimeRules,
    /// Closed rows the store has not taken yet; retried on the next tick.
    pub(crate) unwritten: Mutex<Vec<ClosedBatch>>,
    /// Raw entries waiting for the next tick, filled only when the store keeps an access log.
    access_log: Mutex<Vec<AccessLogRow>>,
    keep_access_log: bool,
    /// When a rejection was last logged, so a flood of bad entries logs once a second.
    last_reject_log_ms: AtomicI64,
    pub(crate) proxy_stats: ProxyStats,
    /// Proxy statistics of minutes not yet written; the store reads their live minute here.
    pub(crate) proxy_minutes: Arc<ProxyMinutes>,
    /// The write-ahead log, once started (`start_log`); without it nothing is logged.
    pub(crate) log: std::sync::OnceLock<crate::wal_log::CollectorLog>,
    /// When the write of closed minutes under way started (clock time), `None` between
    /// writes: receivers stop reading while one runs past `max_write_stall_ms`.
    writing_since: tokio::sync::watch::Sender<Option<i64>>,
    /// The collectors sharing the work, as last listed (`set_ring`); alone until set.
    ring: parking_lot::RwLock<Arc<CollectorRing>>,
    /// Channels to the other members, for the entries they own.
    pub(crate) peer_channels: PeerChannels,
}

/// A write of closed minutes under way, for `wait_while_writes_stall`: noted when it
/// starts and cleared when it ends, also when the tick is dropped halfway.
struct WriteUnderWay<'a>(&'a tokio::sync::watch::Sender<Option<i64>>);

impl<'a> WriteUnderWay<'a> {
    fn start(since: &'a tokio::sync::watch::Sender<Option<i64>>, now_ms: i64) -> Self {
        since.send_replace(Some(now_ms));
        WriteUnderWay(since)
    }
}

impl Drop for WriteUnderWay<'_> {
    fn drop(&mut self) {
        self.0.send_replace(None);
    }
}

/// Closed rows kept for retry while the store fails; past it the oldest are dropped and
/// counted. They stay readable meanwhile, as the aggregator's closing minutes.
const MAX_UNWRITTEN_ROWS: usize = 2_000_000;

impl Collector {
    pub fn new(config: CollectorConfig, store: Arc<Store>) -> Result<Arc<Self>> {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    pub fn with_clock(
        config: CollectorConfig,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>> {
        crate::stats::describe();
        let registry = Registry::new(&config.address_map, config.address_book_capacity)?;
        let role_rules = RoleRules::new(&config.rules)?;
        let aggregator = Arc::new(Aggregator::new(Limits {
            max_endpoints_per_service: config.max_endpoints_per_service,
            max_instances_per_service: config.max_instances_per_service,
            max_services: config.max_services,
            apdex_threshold_ms: config.apdex_threshold_ms,
        }));
        // Reads of unclosed minutes go to the aggregator itself.
        store.attach_live_minute_source(aggregator.clone());
        let waiting = WaitQueue::new(config.max_waiting_entries);
        let pairs = if config.pair_requests {
            RequestPairs::new(config.pair_wait_ms, config.max_waiting_pairs)
        } else {
            RequestPairs::off()
        };
        let time_rules = TimeRules {
            late_allowance_ms: config.late_allowance_secs as i64 * 1000,
            future_allowance_ms: config.future_allowance_secs as i64 * 1000,
            write_after_ms: config.write_after_secs as i64 * 1000,
        };
        let proxy_minutes = Arc::new(ProxyMinutes::default());
        store.attach_live_proxy_source(proxy_minutes.clone());
        let keep_access_log = store.access_log_enabled();
        Ok(Arc::new(Self {
            config,
            store,
            access_log: Mutex::new(Vec::new()),
            keep_access_log,
            clock,
            registry,
            role_rules,
            aggregator,
            waiting,
            pairs,
            time_rules,
            unwritten: Mutex::new(Vec::new()),
            last_reject_log_ms: AtomicI64::new(i64::MIN),
            proxy_stats: ProxyStats::default(),
            proxy_minutes,
            log: std::sync::OnceLock::new(),
            writing_since: tokio::sync::watch::Sender::new(None),
            ring: parking_lot::RwLock::new(CollectorRing::alone()),
            peer_channels: PeerChannels::default(),
        }))
    }

    /// The collectors sharing the work, as last set.
    pub fn ring(&self) -> Arc<CollectorRing> {
        self.ring.read().clone()
    }

    /// Sets the collectors sharing the work: from now on each received entry is ingested
    /// by the member that owns it (see [`crate::collector_ring`]).
    pub fn set_ring(&self, ring: CollectorRing) {
        metrics::gauge!(RING_MEMBERS).set(ring.members().len() as f64);
        let mut current = self.ring.write();
        if **current != ring {
            info!(
                members = ?ring.members().iter().map(|m| m.writer.as_str()).collect::<Vec<_>>(),
                "the collectors sharing the work changed"
            );
            *current = Arc::new(ring);
        }
    }

    pub(crate) fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            role_rules: &self.role_rules,
            resolver: Resolver {
                registry: &self.registry,
            },
            aggregator: &self.aggregator,
            waiting: &self.waiting,
            pairs: &self.pairs,
            join_wait_ms: self.config.join_wait_ms as i64,
            access_log: self.keep_access_log.then_some(&self.access_log),
        }
    }

    /// One step of the background work: retry parked entries, hand the store the minutes
    /// due to be written and the late rows whose allowance has passed. Tests call it
    /// directly.
    pub async fn tick(&self, publish: bool) -> Result<()> {
        let now = self.clock.now_ms();
        self.pipeline().retry_waiting(now);
        self.pipeline().settle_pairs(now);
        let first_unclosed = self.time_rules.first_unclosed_minute(now);
        let first_unwritten = self.time_rules.first_unwritten_minute(now);
        let permit = self.store.memory_peak_permit().await;
        if publish {
            self.proxy_stats_due(crate::proxy_minutes::minutes_due(now));
        }
        let newly_closed = self.close_minutes(first_unwritten, first_unclosed).await?;
        let rows: usize = newly_closed.iter().map(ClosedBatch::rows).sum();
        metrics::counter!(stats::ROWS_CLOSED).increment(rows as u64);
        metrics::gauge!(stats::UNCLOSED_ROWS).set(self.aggregator.unclosed_row_count() as f64);
        let mut closed = std::mem::take(&mut *self.unwritten.lock());
        closed.extend(newly_closed);
        // The store marks the closed minutes as its own in the same step that shows their
        // files, so reads see each minute once, from the aggregator or from the files.
        let writing = WriteUnderWay::start(&self.writing_since, self.clock.now_ms());
        let written = self.write_closed(&closed, Some(first_unwritten)).await;
        drop(writing);
        let closed_result = match written {
            Ok(()) => Ok(()),
            Err(error) => {
                self.keep_unwritten(closed);
                Err(error)
            }
        };
        // Minutes the store could not take stay readable where they are, among the
        // closing ones, until a write takes them.
        if closed_result.is_ok() {
            self.aggregator.finish_closing();
        }
        drop(permit);
        let logged = self.write_access_log().await;
        // Proxies flush every few seconds: once a second is soon enough for their rows.
        let proxies = if publish {
            self.store.expire_live_minute_reads();
            // With a log, proxy statistics are written only once the mark saying so is.
            if self.log().is_none() || closed_result.is_ok() {
                self.proxy_minutes
                    .write_closed(self.store.as_ref(), now)
                    .await
            } else {
                Ok(())
            }
        } else {
            Ok(())
        };
        if closed_result.is_ok() {
            self.checkpoint_if_due(now).await;
        }
        closed_result.and(logged).and(proxies).map_err(Error::from)
    }

    /// Returns once no write of closed minutes has run longer than `max_write_stall_ms`:
    /// at once, unless the disk is slow. A receiver calls it before reading each message,
    /// so that while a write stalls it stops reading its stream and HTTP/2 flow control
    /// slows the sender, instead of the collector holding one more minute of rows for
    /// every minute the write takes. A write that fails (a full disk) ends at once and
    /// does not pause anyone: its minutes wait within their own bound.
    pub(crate) async fn wait_while_writes_stall(&self) {
        let limit = self.config.max_write_stall_ms as i64;
        let stalled = |since: Option<i64>| {
            limit > 0 && since.is_some_and(|since| self.clock.now_ms() - since > limit)
        };
        if !stalled(*self.writing_since.borrow()) {
            return;
        }
        metrics::counter!(stats::WRITE_STALL_PAUSES).increment(1);
        let mut since = self.writing_since.subscribe();
        while stalled(*since.borrow_and_update()) {
            // Woken when the write ends; the timeout rereads the clock meanwhile.
            let _ = tokio::time::timeout(Duration::from_millis(250), since.changed()).await;
        }
    }

    /// Writes buffered raw entries. They are not retried: the access log is for looking into
    /// recent requests, and holding entries through a store outage would cost more memory
    /// than the metrics themselves.
    async fn write_access_log(&self) -> meshscope_storage::Result<()> {
        let rows = std::mem::take(&mut *self.access_log.lock());
        if rows.is_empty() {
            return Ok(());
        }
        let count = rows.len() as u64;
        let result = self.store.append_access_log(rows).await;
        if result.is_err() {
            stats::reject("store_unavailable_access_log", count);
        }
        result
    }

    /// Keeps batches the store refused for the next tick, the newest first in line to
    /// stay: past the cap, the oldest are dropped and counted.
    fn keep_unwritten(&self, batches: Vec<ClosedBatch>) {
        let mut unwritten = self.unwritten.lock();
        let mut batches = batches;
        batches.append(&mut unwritten);
        batches.sort_by_key(|b| std::cmp::Reverse(b.hour));
        let mut kept = 0;
        let mut newest_dropped_hour = None;
        batches.retain(|b| {
            kept += b.rows();
            let keep = kept <= MAX_UNWRITTEN_ROWS;
            if !keep {
                stats::reject("store_unavailable_rows", b.rows() as u64);
                newest_dropped_hour = newest_dropped_hour.max(Some(b.hour));
            }
            keep
        });
        *unwritten = batches;
        drop(unwritten);
        // Reads stop showing an hour some of whose rows are gone.
        if let Some(hour) = newest_dropped_hour {
            self.aggregator
                .forget_closing(|minute| meshscope_storage::hour_of(minute) <= hour);
        }
    }

    /// Logs a rejection at most once a second; `/metrics` has every count.
    pub(crate) fn log_rejection(
        &self,
        reporter: &str,
        log_name: &str,
        reason: &'static str,
        count: usize,
    ) {
        let now = self.clock.now_ms();
        let last = self.last_reject_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000
            && self
                .last_reject_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                reporter,
                log_name, reason, count, "access log entries rejected"
            );
        }
    }

    /// A copy of every row of the minutes not yet closed.
    pub fn unclosed_rows(&self) -> Vec<MetricRow> {
        self.aggregator.snapshot()
    }

    /// A copy of every proxy statistics row of the minutes not yet written.
    pub fn unwritten_proxy_rows(&self) -> Vec<meshscope_storage::ProxyMetricRow> {
        self.proxy_minutes.rows()
    }

    /// Resolves parked entries at once and makes the next read see every unclosed row: what a
    /// test or a shutdown does instead of waiting for the next ticks.
    pub async fn flush_now(&self) -> Result<()> {
        self.pipeline().flush_waiting(self.clock.now_ms());
        self.store.refresh_live_minutes();
        self.proxy_minutes
            .write_closed(self.store.as_ref(), self.clock.now_ms())
            .await?;
        Ok(())
    }

    /// Runs until `shutdown` resolves: publishes unclosed minutes for live reads and hands
    /// closed minutes to the store. On shutdown it closes every minute still held.
    pub async fn run_flusher(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut ticks: u32 = 0;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = interval.tick() => {
                    ticks = ticks.wrapping_add(1);
                    if let Err(error) = self.tick(ticks.is_multiple_of(PUBLISH_EVERY_TICKS)).await {
                        metrics::counter!(stats::FLUSH_ERRORS).increment(1);
                        warn!(%error, "closing minutes failed; they stay unclosed and are retried");
                    }
                }
            }
        }
        self.pipeline().flush_waiting(self.clock.now_ms());
        let mut batches = std::mem::take(&mut *self.unwritten.lock());
        // The closing minutes still held are those waiting in `batches`.
        self.aggregator.finish_closing();
        match self.aggregator.drain() {
            Ok(held) => batches.extend(held),
            Err(error) => warn!(%error, "encoding unclosed minutes at shutdown failed"),
        }
        let count: usize = batches.iter().map(ClosedBatch::rows).sum();
        self.log_all_written().await;
        // The store's upkeep writes no minute file meanwhile, as the note's write requires.
        let permit = self.store.memory_peak_permit().await;
        let written = self.write_closed(&batches, None).await;
        drop(permit);
        if let Err(error) = written {
            warn!(%error, "writing unclosed minutes at shutdown failed");
        } else {
            info!(rows = count, "unclosed minutes written at shutdown");
        }
        if let Err(error) = self.write_access_log().await {
            warn!(%error, "writing the access log at shutdown failed");
        }
        if let Err(error) = self.proxy_minutes.write_all(self.store.as_ref()).await {
            warn!(%error, "writing proxy statistics at shutdown failed");
        }
        self.close_log();
    }
}
