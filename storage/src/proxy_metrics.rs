//! Proxies' own statistics: which proxies report, and their per-minute figures.
//!
//! Kept in memory with a bounded window and a row cap: these figures describe the proxies'
//! recent health, and a flood of series must not grow the process without limit.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;
use serde::Serialize;

use crate::model::{EpochMillis, MINUTE_MS, minute_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMetricKind {
    /// `value` is what the counter grew by during the minute.
    Counter,
    /// `value` is the last value seen during the minute.
    Gauge,
    /// `count` and `sum` are what the histogram grew by during the minute; `value` is `sum`.
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
}

/// One statistic of one proxy for one minute.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyMetricRow {
    pub minute: EpochMillis,
    pub proxy: String,
    pub service: String,
    pub name: String,
    /// The upstream cluster the statistic belongs to; empty for server-wide statistics.
    pub cluster: String,
    pub kind: ProxyMetricKind,
    pub value: f64,
    pub count: u64,
    pub sum: f64,
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

/// A time series for one statistic and cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySeries {
    pub name: String,
    pub cluster: String,
    pub kind: ProxyMetricKind,
    /// `(minute, value)`, oldest first.
    pub points: Vec<(EpochMillis, f64)>,
}

#[derive(Clone, Copy, Debug)]
pub struct ProxyMetricsLimits {
    /// Minutes older than this before the newest row are forgotten.
    pub retention_ms: EpochMillis,
    /// Rows kept at most; past it the oldest minute is forgotten first.
    pub max_rows: usize,
    /// Proxies remembered at most; new ones past it are not registered.
    pub max_proxies: usize,
}

impl Default for ProxyMetricsLimits {
    fn default() -> Self {
        Self {
            retention_ms: 6 * 60 * MINUTE_MS,
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

/// The proxy registry and the proxy statistics.
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

    /// Merges a row into its minute: counters and histograms add up, gauges keep the last.
    pub fn record(&self, row: ProxyMetricRow) {
        let mut rows = self.rows.write();
        let minute = minute_of(row.minute);
        let key = (row.proxy.clone(), row.name.clone(), row.cluster.clone());
        let bucket = rows.by_minute.entry(minute).or_default();
        let mut added = false;
        match bucket.get_mut(&key) {
            Some(existing) => match row.kind {
                ProxyMetricKind::Gauge => existing.value = row.value,
                ProxyMetricKind::Counter | ProxyMetricKind::Histogram => {
                    existing.value += row.value;
                    existing.count += row.count;
                    existing.sum += row.sum;
                }
            },
            None => {
                bucket.insert(key, ProxyMetricRow { minute, ..row });
                added = true;
            }
        }
        if added {
            rows.len += 1;
        }
        Self::trim(&mut rows, self.limits);
    }

    fn trim(rows: &mut Rows, limits: ProxyMetricsLimits) {
        let newest = rows.by_minute.keys().next_back().copied().unwrap_or(0);
        while let Some((&oldest, bucket)) = rows.by_minute.iter().next() {
            let too_old = oldest < newest - limits.retention_ms;
            if !too_old && rows.len <= limits.max_rows {
                break;
            }
            rows.len -= bucket.len();
            rows.by_minute.remove(&oldest);
        }
    }

    /// Rows of one proxy in `[start, end)`, as series per name and cluster; `names` empty
    /// means every name.
    pub fn series(
        &self,
        proxy: &str,
        names: &[String],
        start: EpochMillis,
        end: EpochMillis,
    ) -> Vec<ProxySeries> {
        let rows = self.rows.read();
        let mut out: BTreeMap<(String, String), ProxySeries> = BTreeMap::new();
        for (&minute, bucket) in rows.by_minute.range(start..end) {
            for ((p, name, cluster), row) in bucket {
                if p != proxy || (!names.is_empty() && !names.contains(name)) {
                    continue;
                }
                out.entry((name.clone(), cluster.clone()))
                    .or_insert_with(|| ProxySeries {
                        name: name.clone(),
                        cluster: cluster.clone(),
                        kind: row.kind,
                        points: Vec::new(),
                    })
                    .points
                    .push((minute, row.value));
            }
        }
        out.into_values().collect()
    }

    /// The newest value of a statistic of a proxy's cluster, if any minute holds it.
    pub fn latest(&self, proxy: &str, name: &str, cluster: &str) -> Option<f64> {
        let rows = self.rows.read();
        let key = (proxy.to_string(), name.to_string(), cluster.to_string());
        rows.by_minute
            .values()
            .rev()
            .find_map(|bucket| bucket.get(&key).map(|r| r.value))
    }

    /// Every row, oldest minute first; for tests and export.
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

    fn row(minute: EpochMillis, kind: ProxyMetricKind, value: f64) -> ProxyMetricRow {
        ProxyMetricRow {
            minute,
            proxy: "p".into(),
            service: "s".into(),
            name: "n".into(),
            cluster: "c".into(),
            kind,
            value,
            count: 0,
            sum: 0.0,
        }
    }

    #[test]
    fn counters_add_gauges_keep_last_and_old_minutes_go() {
        let m = ProxyMetrics::new(ProxyMetricsLimits {
            retention_ms: 2 * MINUTE_MS,
            max_rows: 100,
            max_proxies: 1,
        });
        m.record(row(MINUTE_MS + 5, ProxyMetricKind::Counter, 2.0));
        m.record(row(MINUTE_MS + 9, ProxyMetricKind::Counter, 3.0));
        let s = m.series("p", &[], 0, 10 * MINUTE_MS);
        assert_eq!(s[0].points, vec![(MINUTE_MS, 5.0)]);
        let mut g = row(MINUTE_MS, ProxyMetricKind::Gauge, 1.0);
        g.name = "g".into();
        m.record(g.clone());
        g.value = 7.0;
        m.record(g);
        assert_eq!(m.latest("p", "g", "c"), Some(7.0));
        m.record(row(5 * MINUTE_MS, ProxyMetricKind::Counter, 1.0));
        assert_eq!(m.rows().len(), 1, "minute 1 is past retention");
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
}
