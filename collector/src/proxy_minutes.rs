//! Proxies' own statistics per minute while the minute is not yet written: rows of a
//! series in one minute merge as they arrive, closed minutes go to the store's
//! `proxy_metrics_minute` table, and the store reads the rest as the table's live part
//! (this is its [`LiveProxyMinuteSource`] source).
//!
//! Memory stays bounded: only minutes not yet written are held, under a row cap.

use std::collections::{BTreeMap, HashMap};

use meshscope_storage::hour_of;
use meshscope_storage::{
    EpochMillis, LiveProxyMinuteSource, MinuteWriter, ProxyMetricKind, ProxyMetricRow, minute_of,
};
use parking_lot::RwLock;

/// A minute is written this long after it ends, so that a flush that read the clock just
/// before the minute turned still lands in memory first.
pub const CLOSE_GRACE_MS: EpochMillis = 5_000;

/// Proxy statistics of the minutes before this one are written by a flush at `now`.
pub fn minutes_due(now: EpochMillis) -> EpochMillis {
    minute_of(now - CLOSE_GRACE_MS)
}

/// Rows held at most by default; see [`ProxyMinutes::new`].
const DEFAULT_MAX_ROWS: usize = 2_000_000;

/// A series: proxy, statistic name and cluster.
type SeriesKey = (String, String, String);

#[derive(Default)]
struct HeldRows {
    /// minute -> (proxy, name, cluster) -> row
    by_minute: BTreeMap<EpochMillis, HashMap<SeriesKey, ProxyMetricRow>>,
    len: usize,
}

/// The proxy statistics of minutes not yet written, one row per series and minute.
pub struct ProxyMinutes {
    max_rows: usize,
    rows: RwLock<HeldRows>,
}

impl Default for ProxyMinutes {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ROWS)
    }
}

impl ProxyMinutes {
    /// Holds `max_rows` rows at most; past it the oldest minute is forgotten first. Only
    /// reached when closed minutes cannot be written: normally memory holds the open
    /// minute alone.
    pub fn new(max_rows: usize) -> Self {
        Self {
            max_rows,
            rows: RwLock::new(HeldRows::default()),
        }
    }

    /// Merges a row into its minute (see [`ProxyMetricRow::merge`]).
    pub fn record(&self, row: ProxyMetricRow) {
        let mut rows = self.rows.write();
        let minute = minute_of(row.minute);
        let key = (row.proxy.clone(), row.name.clone(), row.cluster.clone());
        let bucket = rows.by_minute.entry(minute).or_default();
        match bucket.get_mut(&key) {
            Some(existing) => existing.merge(&row),
            None => {
                bucket.insert(key, ProxyMetricRow { minute, ..row });
                rows.len += 1;
            }
        }
        Self::trim(&mut rows, self.max_rows);
    }

    fn trim(rows: &mut HeldRows, max_rows: usize) {
        while let Some((&oldest, bucket)) = rows.by_minute.iter().next() {
            if rows.len <= max_rows || rows.by_minute.len() == 1 {
                break;
            }
            rows.len -= bucket.len();
            rows.by_minute.remove(&oldest);
        }
    }

    /// Takes out every row of the minutes before `minute`, oldest first, to be written.
    pub fn take_before(&self, minute: EpochMillis) -> Vec<ProxyMetricRow> {
        let mut rows = self.rows.write();
        let kept = rows.by_minute.split_off(&minute);
        let taken = std::mem::replace(&mut rows.by_minute, kept);
        rows.len = rows.by_minute.values().map(HashMap::len).sum();
        taken
            .into_values()
            .flat_map(|bucket| bucket.into_values())
            .collect()
    }

    /// Every row held in memory, oldest minute first.
    pub fn rows(&self) -> Vec<ProxyMetricRow> {
        let rows = self.rows.read();
        rows.by_minute
            .values()
            .flat_map(|b| b.values().cloned())
            .collect()
    }

    /// Writes the minutes that ended at least [`CLOSE_GRACE_MS`] before `now` to `store`
    /// (one file per hour they span) and has the store publish the rest for reads. What
    /// fails to be written is held again.
    pub async fn write_closed(
        &self,
        store: &dyn MinuteWriter,
        now: EpochMillis,
    ) -> meshscope_storage::Result<()> {
        self.write_before(store, minutes_due(now)).await?;
        store.publish_live_proxy_minutes()
    }

    /// Writes every row held to `store`: what a shutdown does.
    pub async fn write_all(&self, store: &dyn MinuteWriter) -> meshscope_storage::Result<()> {
        self.write_before(store, EpochMillis::MAX).await?;
        store.publish_live_proxy_minutes()
    }

    /// Writes the rows held for the minutes before `minute`, hour by hour; on failure the
    /// rows of the hour that failed are held again.
    async fn write_before(
        &self,
        store: &dyn MinuteWriter,
        minute: EpochMillis,
    ) -> meshscope_storage::Result<()> {
        let closed = self.take_before(minute);
        if closed.is_empty() {
            return Ok(());
        }
        let mut by_hour: BTreeMap<EpochMillis, Vec<ProxyMetricRow>> = BTreeMap::new();
        for row in closed {
            by_hour.entry(hour_of(row.minute)).or_default().push(row);
        }
        for (hour, rows) in by_hour {
            if let Err(error) = store.append_proxy_hour(hour, &rows).await {
                // Kept for the next flush; the row cap bounds what a long outage holds.
                for row in rows {
                    self.record(row);
                }
                return Err(error);
            }
        }
        Ok(())
    }
}

/// A proxy statistics row as a checkpoint keeps it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ProxyRowState {
    pub minute: EpochMillis,
    pub proxy: String,
    pub service: String,
    pub name: String,
    pub cluster: String,
    pub upstream: String,
    /// 0 counter, 1 gauge, 2 histogram.
    pub kind: u8,
    /// Value, sum, min, max.
    pub values: [f64; 4],
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl ProxyRowState {
    pub fn of(row: &ProxyMetricRow) -> ProxyRowState {
        ProxyRowState {
            minute: row.minute,
            proxy: row.proxy.clone(),
            service: row.service.clone(),
            name: row.name.clone(),
            cluster: row.cluster.clone(),
            upstream: row.upstream.clone(),
            kind: match row.kind {
                ProxyMetricKind::Counter => 0,
                ProxyMetricKind::Gauge => 1,
                ProxyMetricKind::Histogram => 2,
            },
            values: [row.value, row.sum, row.min, row.max],
            count: row.count,
            buckets: row.buckets.clone(),
        }
    }

    /// The row again; `None` for a kind no row has.
    pub fn row(self) -> Option<ProxyMetricRow> {
        let kind = match self.kind {
            0 => ProxyMetricKind::Counter,
            1 => ProxyMetricKind::Gauge,
            2 => ProxyMetricKind::Histogram,
            _ => return None,
        };
        let [value, sum, min, max] = self.values;
        Some(ProxyMetricRow {
            minute: self.minute,
            proxy: self.proxy,
            service: self.service,
            name: self.name,
            cluster: self.cluster,
            upstream: self.upstream,
            kind,
            value,
            count: self.count,
            sum,
            min,
            max,
            buckets: self.buckets,
        })
    }
}

impl LiveProxyMinuteSource for ProxyMinutes {
    fn live_proxy_rows(&self) -> Vec<ProxyMetricRow> {
        self.rows()
    }
}

#[cfg(test)]
mod tests {
    use meshscope_storage::MINUTE_MS;

    use super::*;

    fn row(minute: EpochMillis, mut row: ProxyMetricRow) -> ProxyMetricRow {
        row.minute = minute;
        row.proxy = "p".into();
        row.name = "n".into();
        row.cluster = "c".into();
        row
    }

    #[test]
    fn counters_add_gauges_keep_last_and_extremes_and_the_row_cap_drops_old_minutes() {
        let m = ProxyMinutes::new(2);
        m.record(row(MINUTE_MS + 5, ProxyMetricRow::counter(2.0)));
        m.record(row(MINUTE_MS + 9, ProxyMetricRow::counter(3.0)));
        assert_eq!(m.rows()[0].value, 5.0);
        let mut g = row(MINUTE_MS, ProxyMetricRow::gauge(4.0));
        g.name = "g".into();
        m.record(g.clone());
        m.record(ProxyMetricRow {
            value: 7.0,
            min: 7.0,
            max: 7.0,
            sum: 7.0,
            ..g.clone()
        });
        m.record(ProxyMetricRow {
            value: 1.0,
            min: 1.0,
            max: 1.0,
            sum: 1.0,
            ..g
        });
        let gauge = m.rows().into_iter().find(|r| r.name == "g").unwrap();
        assert_eq!(
            (gauge.value, gauge.min, gauge.max, gauge.sum, gauge.count),
            (1.0, 1.0, 7.0, 12.0, 3)
        );
        m.record(row(5 * MINUTE_MS, ProxyMetricRow::counter(1.0)));
        assert_eq!(m.rows().len(), 1, "past the cap, minute 1 goes first");
    }

    #[test]
    fn closed_minutes_are_taken_out() {
        let m = ProxyMinutes::default();
        m.record(row(MINUTE_MS, ProxyMetricRow::counter(1.0)));
        m.record(row(2 * MINUTE_MS, ProxyMetricRow::counter(2.0)));
        let taken = m.take_before(2 * MINUTE_MS);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].minute, MINUTE_MS);
        assert_eq!(m.rows().len(), 1);
    }
}
