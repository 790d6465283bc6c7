//! Proxies' own statistics: which proxies report, and their per-minute figures while the
//! minute is open. Closed minutes go to the `proxy_metrics_*` tables (see `proxy_table`).
//!
//! Memory stays bounded: only minutes not yet written are held, under a row cap, and the
//! registry of proxies has a cap of its own.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;
use serde::Serialize;

use crate::model::{EpochMillis, minute_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMetricKind {
    /// `value` is what the counter grew by during the bucket.
    Counter,
    /// `value` is the last value reported during the bucket, `min` and `max` the extremes,
    /// `sum / count` the mean of the reports.
    Gauge,
    /// `count` and `sum` are what the histogram grew by during the bucket (`value` is
    /// `sum`), `buckets` the samples at or under each upper bound.
    Histogram,
}

impl ProxyMetricKind {
    pub fn name(self) -> &'static str {
        match self {
            ProxyMetricKind::Counter => "counter",
            ProxyMetricKind::Gauge => "gauge",
            ProxyMetricKind::Histogram => "histogram",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "counter" => Some(ProxyMetricKind::Counter),
            "gauge" => Some(ProxyMetricKind::Gauge),
            "histogram" => Some(ProxyMetricKind::Histogram),
            _ => None,
        }
    }
}

/// One statistic of one proxy for one minute (or hour, or day in the rollups).
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyMetricRow {
    pub minute: EpochMillis,
    pub proxy: String,
    pub service: String,
    pub name: String,
    /// The upstream cluster the statistic belongs to; empty for server-wide statistics.
    pub cluster: String,
    /// The service id the cluster leads to as the collector named it when the row was
    /// made; empty when unknown, for inbound clusters and for server-wide statistics.
    pub upstream: String,
    pub kind: ProxyMetricKind,
    pub value: f64,
    pub count: u64,
    pub sum: f64,
    /// Gauges only; 0 for other kinds.
    pub min: f64,
    pub max: f64,
    /// Histograms only: `(upper bound, samples at or under it)`, bounds ascending, as
    /// Prometheus and Envoy cumulate them. Samples above the last bound are
    /// `count` minus the last cumulative count.
    pub buckets: Vec<(f64, u64)>,
}

impl ProxyMetricRow {
    /// A counter's increase.
    pub fn counter(value: f64) -> Self {
        Self::of(ProxyMetricKind::Counter, value)
    }

    /// One report of a gauge.
    pub fn gauge(value: f64) -> Self {
        Self {
            count: 1,
            sum: value,
            min: value,
            max: value,
            ..Self::of(ProxyMetricKind::Gauge, value)
        }
    }

    /// A histogram's increase: samples, their sum and the cumulative bucket counts.
    pub fn histogram(count: u64, sum: f64, buckets: Vec<(f64, u64)>) -> Self {
        Self {
            count,
            sum,
            buckets,
            ..Self::of(ProxyMetricKind::Histogram, sum)
        }
    }

    fn of(kind: ProxyMetricKind, value: f64) -> Self {
        Self {
            minute: 0,
            proxy: String::new(),
            service: String::new(),
            name: String::new(),
            cluster: String::new(),
            upstream: String::new(),
            kind,
            value,
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            buckets: Vec::new(),
        }
    }

    /// Folds a later row of the same series into this one: counters and histograms add
    /// up, gauges keep the later value and the extremes of both.
    pub fn merge(&mut self, later: &ProxyMetricRow) {
        match self.kind {
            ProxyMetricKind::Gauge => {
                self.value = later.value;
                self.min = self.min.min(later.min);
                self.max = self.max.max(later.max);
            }
            ProxyMetricKind::Counter | ProxyMetricKind::Histogram => self.value += later.value,
        }
        self.count += later.count;
        self.sum += later.sum;
        if !later.buckets.is_empty() {
            self.buckets = merge_buckets(&self.buckets, &later.buckets);
        }
        if !later.upstream.is_empty() {
            self.upstream.clone_from(&later.upstream);
        }
    }

    /// The q-quantile of a histogram row, interpolated linearly inside the bucket that
    /// holds it (Prometheus' `histogram_quantile`); `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        bucket_quantile(&self.buckets, self.count, q)
    }
}

/// Adds two cumulative bucket lists. Lists with other bounds are added on the union of
/// bounds, each side counting at a bound what it had at its nearest bound below.
pub(crate) fn merge_buckets(a: &[(f64, u64)], b: &[(f64, u64)]) -> Vec<(f64, u64)> {
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    let same_bounds = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0);
    if same_bounds {
        return a.iter().zip(b).map(|(x, y)| (x.0, x.1 + y.1)).collect();
    }
    let mut bounds: Vec<f64> = a.iter().chain(b).map(|(bound, _)| *bound).collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let at = |list: &[(f64, u64)], bound: f64| {
        list.iter()
            .take_while(|(b, _)| *b <= bound)
            .last()
            .map_or(0, |(_, count)| *count)
    };
    bounds
        .into_iter()
        .map(|bound| (bound, at(a, bound) + at(b, bound)))
        .collect()
}

/// See [`ProxyMetricRow::quantile`]. A quantile above the last bound reads as the last
/// bound, the most that can be said of it.
pub fn bucket_quantile(buckets: &[(f64, u64)], count: u64, q: f64) -> Option<f64> {
    if count == 0 || buckets.is_empty() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * count as f64;
    let mut lower = 0.0_f64;
    let mut below = 0_u64;
    for &(upper, cumulative) in buckets {
        if cumulative > below && cumulative as f64 >= rank {
            let share = (rank - below as f64) / (cumulative - below) as f64;
            let lower = lower.min(upper);
            return Some(lower + (upper - lower) * share.clamp(0.0, 1.0));
        }
        lower = upper;
        below = below.max(cumulative);
    }
    buckets.last().map(|(bound, _)| *bound)
}

/// What a proxy said about itself when it last connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyInfo {
    pub id: String,
    pub service: String,
    pub instance: String,
    pub envoy_version: String,
    pub last_seen: EpochMillis,
}

#[derive(Clone, Copy, Debug)]
pub struct ProxyMetricsLimits {
    /// Rows held in memory at most; past it the oldest minute is forgotten first. Only
    /// reached when closed minutes cannot be written: normally memory holds the open
    /// minute alone.
    pub max_rows: usize,
    /// Proxies remembered at most; new ones past it are not registered.
    pub max_proxies: usize,
}

impl Default for ProxyMetricsLimits {
    fn default() -> Self {
        Self {
            max_rows: 2_000_000,
            max_proxies: 10_000,
        }
    }
}

type SeriesKey = (String, String, String);

#[derive(Default)]
struct Rows {
    /// minute -> (proxy, name, cluster) -> row
    by_minute: BTreeMap<EpochMillis, HashMap<SeriesKey, ProxyMetricRow>>,
    len: usize,
}

/// The proxy registry and the proxy statistics of minutes not yet written.
pub struct ProxyMetrics {
    limits: ProxyMetricsLimits,
    proxies: RwLock<BTreeMap<String, ProxyInfo>>,
    rows: RwLock<Rows>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new(ProxyMetricsLimits::default())
    }
}

impl ProxyMetrics {
    pub fn new(limits: ProxyMetricsLimits) -> Self {
        Self {
            limits,
            proxies: RwLock::new(BTreeMap::new()),
            rows: RwLock::new(Rows::default()),
        }
    }

    /// Records that a proxy reported; returns false when the registry is full.
    pub fn see_proxy(&self, info: ProxyInfo) -> bool {
        let mut proxies = self.proxies.write();
        if !proxies.contains_key(&info.id) && proxies.len() >= self.limits.max_proxies {
            return false;
        }
        proxies.insert(info.id.clone(), info);
        true
    }

    /// Marks a known proxy as seen now, without changing what it said about itself.
    pub fn touch(&self, id: &str, now: EpochMillis) {
        if let Some(p) = self.proxies.write().get_mut(id) {
            p.last_seen = p.last_seen.max(now);
        }
    }

    pub fn proxies(&self) -> Vec<ProxyInfo> {
        self.proxies.read().values().cloned().collect()
    }

    pub fn proxy(&self, id: &str) -> Option<ProxyInfo> {
        self.proxies.read().get(id).cloned()
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
        Self::trim(&mut rows, self.limits);
    }

    fn trim(rows: &mut Rows, limits: ProxyMetricsLimits) {
        while let Some((&oldest, bucket)) = rows.by_minute.iter().next() {
            if rows.len <= limits.max_rows || rows.by_minute.len() == 1 {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MINUTE_MS;

    fn row(minute: EpochMillis, mut row: ProxyMetricRow) -> ProxyMetricRow {
        row.minute = minute;
        row.proxy = "p".into();
        row.name = "n".into();
        row.cluster = "c".into();
        row
    }

    #[test]
    fn counters_add_gauges_keep_last_and_extremes_and_the_row_cap_drops_old_minutes() {
        let m = ProxyMetrics::new(ProxyMetricsLimits {
            max_rows: 2,
            max_proxies: 1,
        });
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
        let m = ProxyMetrics::default();
        m.record(row(MINUTE_MS, ProxyMetricRow::counter(1.0)));
        m.record(row(2 * MINUTE_MS, ProxyMetricRow::counter(2.0)));
        let taken = m.take_before(2 * MINUTE_MS);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].minute, MINUTE_MS);
        assert_eq!(m.rows().len(), 1);
    }

    #[test]
    fn registry_is_capped() {
        let m = ProxyMetrics::new(ProxyMetricsLimits {
            max_proxies: 1,
            ..Default::default()
        });
        let info = |id: &str| ProxyInfo {
            id: id.into(),
            service: "s".into(),
            instance: "i".into(),
            envoy_version: "1".into(),
            last_seen: 0,
        };
        assert!(m.see_proxy(info("a")));
        assert!(!m.see_proxy(info("b")));
        assert!(m.see_proxy(info("a")));
        assert_eq!(m.proxies().len(), 1);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 samples: 50 at most 1 ms, 40 in (1, 5], 10 in (5, 10].
        let buckets = [(1.0, 50), (5.0, 90), (10.0, 100)];
        assert_eq!(bucket_quantile(&buckets, 100, 0.5), Some(1.0));
        assert_eq!(bucket_quantile(&buckets, 100, 0.7), Some(3.0));
        assert_eq!(bucket_quantile(&buckets, 100, 0.95), Some(7.5));
        assert_eq!(bucket_quantile(&buckets, 0, 0.5), None);
        // Samples above the last bound: the last bound is all that is known.
        assert_eq!(bucket_quantile(&buckets, 200, 0.99), Some(10.0));
    }

    #[test]
    fn buckets_add_on_the_same_bounds_and_on_the_union_of_others() {
        let a = [(1.0, 2), (5.0, 4)];
        assert_eq!(merge_buckets(&a, &a), vec![(1.0, 4), (5.0, 8)]);
        let b = [(2.0, 1), (5.0, 3)];
        assert_eq!(merge_buckets(&a, &b), vec![(1.0, 2), (2.0, 3), (5.0, 7)]);
        assert_eq!(merge_buckets(&[], &b), b.to_vec());
    }
}
