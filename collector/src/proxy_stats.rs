//! Proxies' own statistics from the metrics service: which ones we keep, which cluster they
//! belong to, and how cumulative counters become per-minute increases.

use std::collections::HashMap;

use meshscope_proto::pb::io::prometheus::client::{Metric, MetricFamily, MetricType};
use meshscope_storage::{EpochMillis, ProxyMetricRow};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::stats;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyStatsConfig {
    /// Envoy's `report_counters_as_deltas`: counters are already increases since the
    /// previous flush rather than totals since the proxy started. (Histograms always come
    /// as what was recorded since the previous flush.)
    pub report_counters_as_deltas: bool,
    /// Server-wide statistics kept, by full name.
    pub server_stats: Vec<String>,
    /// Per-cluster statistics kept, by what follows the cluster name
    /// (`cluster.<cluster>.<stat>`).
    pub cluster_stats: Vec<String>,
    /// Distinct statistic series (name and labels) tracked per proxy; past it new ones
    /// are dropped and counted, so a proxy flooding label sets cannot grow memory.
    pub max_series_per_proxy: usize,
    /// A proxy the collector hears from for the first time (a new proxy, or any proxy
    /// after the collector restarted) whose `server.uptime` is above this many seconds has
    /// been counting for longer than we can place in time: its first cumulative values are
    /// a baseline only, and increases count from its next flush.
    pub fresh_proxy_uptime_secs: u64,
}

impl Default for ProxyStatsConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Self {
            report_counters_as_deltas: false,
            server_stats: strings(&[
                "server.memory_allocated",
                "server.memory_heap_size",
                "server.memory_physical_size",
                "server.total_connections",
                "server.uptime",
            ]),
            cluster_stats: strings(&[
                "upstream_rq_total",
                "upstream_rq_5xx",
                "upstream_rq_retry",
                "upstream_rq_timeout",
                "upstream_rq_pending_active",
                "upstream_rq_active",
                "upstream_cx_active",
                "membership_healthy",
                "membership_total",
                "circuit_breakers.default.rq_open",
                "circuit_breakers.default.cx_open",
                "upstream_rq_time",
            ]),
            max_series_per_proxy: 5_000,
            fresh_proxy_uptime_secs: 60,
        }
    }
}

/// Why a statistic was not stored; the reason label on `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    NoName,
    NotAllowed,
    /// `internal.`/`external.` variants repeat the cluster's own counts, and each
    /// histogram also arrives as a summary.
    Duplicate,
    /// NaN, infinite or negative where a counter or histogram needs a count.
    BadValue,
    TooManySeries,
    /// The family's type does not match what it carries.
    Malformed,
}

impl Drop {
    pub fn reason(self) -> &'static str {
        match self {
            Drop::NoName => "no_name",
            Drop::NotAllowed => "not_allowed",
            Drop::Duplicate => "duplicate",
            Drop::BadValue => "bad_value",
            Drop::TooManySeries => "too_many_series",
            Drop::Malformed => "malformed",
        }
    }
}

/// The increase of a counter since its previous report. A value below the previous one
/// means the proxy restarted and counts from zero again. Without a previous report the
/// value counts in full: Envoy's counters start at zero with the proxy, and
/// [`ProxyStats::rows`] turns first reports of long-running proxies into a baseline.
pub fn counter_delta(previous: Option<f64>, value: f64, as_deltas: bool) -> Result<f64, Drop> {
    if !value.is_finite() || value < 0.0 {
        return Err(Drop::BadValue);
    }
    if as_deltas {
        return Ok(value);
    }
    Ok(match previous {
        Some(prev) if value >= prev => value - prev,
        _ => value,
    })
}

/// Splits `cluster.<cluster>.<stat>` by matching an allowed stat from the end: cluster
/// names hold dots and `|`, so the name cannot be split on dots.
pub fn classify(config: &ProxyStatsConfig, name: &str) -> Result<(String, String), Drop> {
    if config.server_stats.iter().any(|s| s == name) {
        return Ok((name.to_string(), String::new()));
    }
    let Some(rest) = name.strip_prefix("cluster.") else {
        return Err(Drop::NotAllowed);
    };
    for stat in &config.cluster_stats {
        let Some(cluster) = rest
            .strip_suffix(stat.as_str())
            .and_then(|c| c.strip_suffix('.'))
        else {
            continue;
        };
        if cluster.is_empty() {
            continue;
        }
        if cluster.ends_with(".internal") || cluster.ends_with(".external") {
            return Err(Drop::Duplicate);
        }
        return Ok((stat.clone(), cluster.to_string()));
    }
    Err(Drop::NotAllowed)
}

#[derive(Clone, Copy, Default, Debug, serde::Serialize, serde::Deserialize)]
struct Previous {
    value: f64,
}

#[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize)]
struct ProxyState {
    series: HashMap<(String, String), Previous>,
    /// The proxy's `server.uptime` at its last flush, to tell a restart.
    uptime: Option<f64>,
}

/// `server.uptime` of a flush in seconds, whether or not the allow-list keeps it.
fn uptime_of(families: &[MetricFamily]) -> Option<f64> {
    let family = families
        .iter()
        .find(|f| f.name.as_deref() == Some("server.uptime"))?;
    let metric = family.metric.first()?;
    metric
        .gauge
        .as_ref()
        .and_then(|g| g.value)
        .or_else(|| metric.counter.as_ref().and_then(|c| c.value))
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Per-proxy memory of the last cumulative values, kept across a proxy's streams so that
/// a reconnect does not count everything again.
#[derive(Default)]
pub struct ProxyStats {
    proxies: Mutex<HashMap<String, ProxyState>>,
}

/// Who the rows are for.
pub struct Reporter<'a> {
    pub proxy: &'a str,
    pub service: &'a str,
}

impl ProxyStats {
    /// Turns one flush of families into rows, counting what is dropped.
    pub fn rows(
        &self,
        config: &ProxyStatsConfig,
        reporter: &Reporter<'_>,
        families: &[MetricFamily],
        now: EpochMillis,
    ) -> Vec<ProxyMetricRow> {
        let mut proxies = self.proxies.lock();
        let first_flush = !proxies.contains_key(reporter.proxy);
        let state = proxies.entry(reporter.proxy.to_string()).or_default();
        let uptime = uptime_of(families);
        if let (Some(now_up), Some(before)) = (uptime, state.uptime)
            && now_up < before
        {
            // The proxy restarted: what it reports now it counted since starting.
            state.series.clear();
        }
        state.uptime = uptime.or(state.uptime);
        // Cumulative totals of a proxy that has run for a while before we first heard of it
        // (typically after the collector restarted) would show as one huge spike.
        let baseline_only = first_flush
            && !config.report_counters_as_deltas
            && uptime.is_some_and(|u| u > config.fresh_proxy_uptime_secs as f64);
        let mut rows = Vec::new();
        for family in families {
            let kind = family.r#type.and_then(|t| MetricType::try_from(t).ok());
            let result = match family.name.as_deref() {
                None | Some("") => Err(Drop::NoName),
                Some(_) if kind == Some(MetricType::Summary) => Err(Drop::Duplicate),
                Some(name) => classify(config, name),
            };
            let (stat, cluster) = match result {
                Ok(found) => found,
                Err(drop) => {
                    stats::proxy_stat_dropped(drop.reason(), family.metric.len().max(1) as u64);
                    continue;
                }
            };
            let full_name = family.name.as_deref().unwrap_or_default();
            for metric in &family.metric {
                let labels = label_key(metric);
                let key = (full_name.to_string(), labels);
                let known = state.series.contains_key(&key);
                if !known && state.series.len() >= config.max_series_per_proxy {
                    stats::proxy_stat_dropped(Drop::TooManySeries.reason(), 1);
                    continue;
                }
                let previous = state.series.get(&key).copied();
                let baseline = baseline_only && previous.is_none();
                let outcome = match kind {
                    Some(MetricType::Counter) => metric
                        .counter
                        .as_ref()
                        .and_then(|c| c.value)
                        .ok_or(Drop::Malformed)
                        .and_then(|v| {
                            let delta = counter_delta(
                                previous.map(|p| p.value),
                                v,
                                config.report_counters_as_deltas,
                            )?;
                            let remember = Previous { value: v };
                            Ok((
                                (!baseline).then(|| ProxyMetricRow::counter(delta)),
                                remember,
                            ))
                        }),
                    Some(MetricType::Gauge) => metric
                        .gauge
                        .as_ref()
                        .and_then(|g| g.value)
                        .filter(|v| v.is_finite())
                        .ok_or(Drop::BadValue)
                        .map(|v| (Some(ProxyMetricRow::gauge(v)), Previous::default())),
                    Some(MetricType::Histogram) => {
                        histogram(metric).map(|row| (Some(row), Previous::default()))
                    }
                    _ => Err(Drop::Malformed),
                };
                match outcome {
                    Ok((row, remember)) => {
                        state.series.insert(key, remember);
                        if let Some(row) = row {
                            rows.push(ProxyMetricRow {
                                minute: now,
                                proxy: reporter.proxy.to_string(),
                                service: reporter.service.to_string(),
                                name: stat.clone(),
                                cluster: cluster.clone(),
                                ..row
                            });
                        }
                    }
                    Err(drop) => stats::proxy_stat_dropped(drop.reason(), 1),
                }
            }
        }
        rows
    }

    /// How many proxies have counter state.
    pub fn tracked_proxies(&self) -> usize {
        self.proxies.lock().len()
    }
}

/// A histogram's samples since the proxy's previous flush, their sum and its buckets as a
/// row. Envoy's metrics service sends each histogram's interval statistics (what was
/// recorded since the last flush), whatever `report_counters_as_deltas` says, so they are
/// taken as they are. Buckets keep Envoy's finite upper bounds with cumulative counts; the
/// samples above the last bound are the count minus the last bucket's.
fn histogram(metric: &Metric) -> Result<ProxyMetricRow, Drop> {
    let h = metric.histogram.as_ref().ok_or(Drop::Malformed)?;
    let count = h.sample_count.unwrap_or(0);
    let sum = h.sample_sum.unwrap_or(0.0);
    if !sum.is_finite() || sum < 0.0 {
        return Err(Drop::BadValue);
    }
    let buckets: Vec<(f64, u64)> = h
        .bucket
        .iter()
        .filter_map(|b| Some((b.upper_bound?, b.cumulative_count.unwrap_or(0))))
        .filter(|(bound, _)| bound.is_finite())
        .collect();
    let ordered = buckets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
    if !ordered || buckets.last().is_some_and(|(_, c)| *c > count) {
        return Err(Drop::Malformed);
    }
    Ok(ProxyMetricRow::histogram(count, sum, buckets))
}

fn label_key(metric: &Metric) -> String {
    let mut pairs: Vec<String> = metric
        .label
        .iter()
        .map(|l| {
            format!(
                "{}={}",
                l.name.as_deref().unwrap_or_default(),
                l.value.as_deref().unwrap_or_default()
            )
        })
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Each proxy's last cumulative values, as a checkpoint keeps them.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CounterState(Vec<(String, ProxyState)>);

impl ProxyStats {
    /// A copy of every proxy's last values.
    pub fn copy(&self) -> CounterState {
        CounterState(
            self.proxies
                .lock()
                .iter()
                .map(|(proxy, state)| (proxy.clone(), state.clone()))
                .collect(),
        )
    }

    /// Takes the last values of `state` as this proxy's own.
    pub fn restore(&self, state: CounterState) {
        self.proxies.lock().extend(state.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_counters_become_increases_and_resets_count_from_zero() {
        assert_eq!(counter_delta(None, 10.0, false), Ok(10.0));
        assert_eq!(counter_delta(Some(10.0), 25.0, false), Ok(15.0));
        assert_eq!(counter_delta(Some(25.0), 25.0, false), Ok(0.0));
        // The proxy restarted: 4 requests since, not -21.
        assert_eq!(counter_delta(Some(25.0), 4.0, false), Ok(4.0));
    }

    fn flush(uptime: f64, requests: f64) -> Vec<MetricFamily> {
        use meshscope_proto::pb::io::prometheus::client::{Counter, Gauge};
        vec![
            MetricFamily {
                name: Some("server.uptime".into()),
                r#type: Some(MetricType::Gauge as i32),
                metric: vec![Metric {
                    gauge: Some(Gauge {
                        value: Some(uptime),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetricFamily {
                name: Some("cluster.backend.upstream_rq_total".into()),
                r#type: Some(MetricType::Counter as i32),
                metric: vec![Metric {
                    counter: Some(Counter {
                        value: Some(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ]
    }

    fn requests(stats: &ProxyStats, proxy: &str, families: &[MetricFamily]) -> Option<f64> {
        let reporter = Reporter {
            proxy,
            service: "shop/frontend",
        };
        stats
            .rows(&ProxyStatsConfig::default(), &reporter, families, 0)
            .iter()
            .find(|r| r.name == "upstream_rq_total")
            .map(|r| r.value)
    }

    #[test]
    fn a_long_running_proxy_first_heard_of_gives_a_baseline_and_a_fresh_one_counts_in_full() {
        let stats = ProxyStats::default();
        // Up for a day when the collector first hears of it: its total is no increase.
        assert_eq!(requests(&stats, "old", &flush(86_400.0, 1e6)), None);
        assert_eq!(
            requests(&stats, "old", &flush(86_405.0, 1e6 + 7.0)),
            Some(7.0)
        );
        // Started seconds ago: everything it counted is recent.
        assert_eq!(requests(&stats, "new", &flush(3.0, 12.0)), Some(12.0));
        // A series that appears later on a known proxy was zero until now.
        let mut later = flush(86_410.0, 1e6 + 7.0);
        later[1].name = Some("cluster.payments.upstream_rq_total".into());
        assert_eq!(requests(&stats, "old", &later), Some(1e6 + 7.0));
        // The old proxy restarted (uptime went down): counts since its start are new.
        assert_eq!(requests(&stats, "old", &flush(2.0, 4.0)), Some(4.0));
        assert_eq!(requests(&stats, "old", &flush(7.0, 9.0)), Some(5.0));
    }

    #[test]
    fn delta_counters_are_taken_as_they_are() {
        assert_eq!(counter_delta(Some(25.0), 4.0, true), Ok(4.0));
        assert_eq!(counter_delta(None, 0.0, true), Ok(0.0));
    }

    #[test]
    fn nan_infinite_and_negative_counters_are_rejected() {
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(counter_delta(Some(1.0), bad, false), Err(Drop::BadValue));
            assert_eq!(counter_delta(None, bad, true), Err(Drop::BadValue));
        }
    }

    #[test]
    fn cluster_names_with_dots_and_bars_are_matched_from_the_end() {
        let config = ProxyStatsConfig::default();
        let got = classify(
            &config,
            "cluster.outbound|18200||backend.shop.svc.cluster.local.upstream_rq_total",
        );
        assert_eq!(
            got,
            Ok((
                "upstream_rq_total".into(),
                "outbound|18200||backend.shop.svc.cluster.local".into()
            ))
        );
        assert_eq!(
            classify(
                &config,
                "cluster.inbound|18080||.circuit_breakers.default.rq_open"
            ),
            Ok((
                "circuit_breakers.default.rq_open".into(),
                "inbound|18080||".into()
            ))
        );
        assert_eq!(
            classify(
                &config,
                "cluster.outbound|18200||backend.shop.svc.cluster.local.upstream_rq_pending_active"
            )
            .unwrap()
            .0,
            "upstream_rq_pending_active"
        );
        assert_eq!(
            classify(&config, "cluster.inbound|18080||.external.upstream_rq_5xx"),
            Err(Drop::Duplicate)
        );
        assert_eq!(
            classify(&config, "cluster.x.upstream_cx_total"),
            Err(Drop::NotAllowed)
        );
        assert_eq!(
            classify(&config, "server.uptime"),
            Ok(("server.uptime".into(), String::new()))
        );
        assert_eq!(
            classify(&config, "cluster.upstream_rq_total"),
            Err(Drop::NotAllowed)
        );
    }
}
