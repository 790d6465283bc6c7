//! `upstream_health` on edges: what the caller's own proxies say about the cluster the
//! calls go through (members healthy out of total, circuit breakers, queued requests,
//! 5xx, retries and timeouts), joined to the edge by the service the cluster leads to.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meshscope_storage::{
    EpochMillis, ProxyFilter, ProxyMetricKind, ProxyMetricRow, TimeRange, WindowReader,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Result;

const HEALTHY: &str = "membership_healthy";
const TOTAL: &str = "membership_total";
const PENDING: &str = "upstream_rq_pending_active";
const ERRORS_5XX: &str = "upstream_rq_5xx";
const RETRIES: &str = "upstream_rq_retry";
const TIMEOUTS: &str = "upstream_rq_timeout";
const BREAKERS: [&str; 2] = [
    "circuit_breakers.default.cx_open",
    "circuit_breakers.default.rq_open",
];

/// What the caller's own proxies report about the cluster an edge's calls go through.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub(crate) struct UpstreamHealth {
    /// Members of the cluster passing health checks, from the reporting proxy with the
    /// worst view (summed over its clusters to the callee); null when not reported.
    pub(crate) healthy: Option<u64>,
    pub(crate) total: Option<u64>,
    /// A default-priority circuit breaker (connections or requests) was open at the last
    /// report of any proxy.
    pub(crate) circuit_breaker_open: bool,
    /// Requests waiting for a connection at the last report, summed over the proxies.
    pub(crate) pending_requests: u64,
    /// Increases over the window, summed over the proxies.
    pub(crate) errors_5xx: u64,
    pub(crate) retries: u64,
    pub(crate) timeouts: u64,
    pub(crate) clusters: Vec<String>,
    pub(crate) reported_by: Vec<String>,
    /// Start of the newest minute the gauges come from, epoch milliseconds.
    pub(crate) as_of: EpochMillis,
}

/// Per (caller id, callee id), the health its callers' proxies reported.
pub(crate) struct UpstreamHealthIndex {
    by_edge: HashMap<(String, String), UpstreamHealth>,
}

/// The newest gauge values of one proxy's clusters to one callee.
#[derive(Default)]
struct ProxyView {
    as_of: EpochMillis,
    healthy: Option<u64>,
    total: Option<u64>,
    breaker_open: bool,
    pending: u64,
}

impl UpstreamHealthIndex {
    pub(crate) async fn load(store: &dyn WindowReader, range: TimeRange) -> Result<Self> {
        let mut names: Vec<String> = [HEALTHY, TOTAL, PENDING, ERRORS_5XX, RETRIES, TIMEOUTS]
            .iter()
            .chain(BREAKERS.iter())
            .map(|n| n.to_string())
            .collect();
        names.sort();
        let filter = ProxyFilter {
            names,
            with_upstream: true,
            ..ProxyFilter::default()
        };
        let rows = store.proxy_rows(range, &filter).await?;
        Ok(Self::from_rows(&rows))
    }

    fn from_rows(rows: &[ProxyMetricRow]) -> Self {
        // Rows are sorted by proxy, name, cluster and time: the last row of a series is its
        // newest.
        let mut newest: BTreeMap<(&str, &str, &str), &ProxyMetricRow> = BTreeMap::new();
        let mut by_edge: HashMap<(String, String), UpstreamHealth> = HashMap::new();
        let mut clusters: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
        for row in rows {
            let edge = (row.service.clone(), row.upstream.clone());
            clusters
                .entry(edge.clone())
                .or_default()
                .insert(row.cluster.clone());
            let health = by_edge.entry(edge).or_default();
            if row.kind == ProxyMetricKind::Counter {
                let increase = row.value.max(0.0).round() as u64;
                match row.name.as_str() {
                    ERRORS_5XX => health.errors_5xx += increase,
                    RETRIES => health.retries += increase,
                    TIMEOUTS => health.timeouts += increase,
                    _ => {}
                }
            } else if row.kind == ProxyMetricKind::Gauge {
                newest.insert((&row.proxy, &row.name, &row.cluster), row);
            }
        }
        // Per edge and proxy, the gauges of the newest minute each series reported.
        let mut views: HashMap<(String, String), BTreeMap<String, ProxyView>> = HashMap::new();
        for row in newest.values() {
            let edge = (row.service.clone(), row.upstream.clone());
            let view = views
                .entry(edge)
                .or_default()
                .entry(row.proxy.clone())
                .or_default();
            view.as_of = view.as_of.max(row.minute);
            let value = row.value.max(0.0).round() as u64;
            match row.name.as_str() {
                HEALTHY => *view.healthy.get_or_insert(0) += value,
                TOTAL => *view.total.get_or_insert(0) += value,
                PENDING => view.pending += value,
                name if BREAKERS.contains(&name) => view.breaker_open |= value > 0,
                _ => {}
            }
        }
        for (edge, health) in &mut by_edge {
            health.clusters = clusters
                .remove(edge)
                .unwrap_or_default()
                .into_iter()
                .collect();
            let Some(proxies) = views.get(edge) else {
                continue;
            };
            health.reported_by = proxies.keys().cloned().collect();
            health.as_of = proxies.values().map(|v| v.as_of).max().unwrap_or(0);
            health.circuit_breaker_open = proxies.values().any(|v| v.breaker_open);
            health.pending_requests = proxies.values().map(|v| v.pending).sum();
            let worst = proxies
                .values()
                .filter(|v| v.total.is_some() || v.healthy.is_some())
                .min_by(|a, b| healthy_share(a).total_cmp(&healthy_share(b)));
            if let Some(worst) = worst {
                health.healthy = worst.healthy;
                health.total = worst.total;
            }
        }
        // Counters alone (no gauge in the window) still name who reported them.
        for ((service, upstream), health) in &mut by_edge {
            if health.reported_by.is_empty() {
                let mut proxies: Vec<String> = rows
                    .iter()
                    .filter(|r| &r.service == service && &r.upstream == upstream)
                    .map(|r| r.proxy.clone())
                    .collect();
                proxies.dedup();
                health.reported_by = proxies;
                health.as_of = rows
                    .iter()
                    .filter(|r| &r.service == service && &r.upstream == upstream)
                    .map(|r| r.minute)
                    .max()
                    .unwrap_or(0);
            }
        }
        Self { by_edge }
    }

    pub(crate) fn get(&self, source: &str, target: &str) -> Option<UpstreamHealth> {
        self.by_edge
            .get(&(source.to_string(), target.to_string()))
            .cloned()
    }
}

fn healthy_share(view: &ProxyView) -> f64 {
    match (view.healthy, view.total) {
        (Some(healthy), Some(total)) if total > 0 => healthy as f64 / total as f64,
        (_, Some(0)) => 1.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        proxy: &str,
        name: &str,
        cluster: &str,
        minute: EpochMillis,
        value: f64,
    ) -> ProxyMetricRow {
        let base = if name.starts_with("upstream_rq_") && name != PENDING {
            ProxyMetricRow::counter(value)
        } else {
            ProxyMetricRow::gauge(value)
        };
        ProxyMetricRow {
            minute,
            proxy: proxy.into(),
            service: "shop/frontend".into(),
            name: name.into(),
            cluster: cluster.into(),
            upstream: "shop/backend".into(),
            ..base
        }
    }

    #[test]
    fn the_newest_gauges_and_the_worst_view_win_and_counters_add_up() {
        let mut rows = vec![
            row("a", HEALTHY, "c", 0, 3.0),
            row("a", HEALTHY, "c", 60_000, 2.0),
            row("a", TOTAL, "c", 60_000, 3.0),
            row("a", ERRORS_5XX, "c", 0, 4.0),
            row("a", ERRORS_5XX, "c", 60_000, 1.0),
            row("b", HEALTHY, "c", 60_000, 3.0),
            row("b", TOTAL, "c", 60_000, 3.0),
            row("b", BREAKERS[1], "c", 60_000, 1.0),
            row("b", RETRIES, "c", 60_000, 2.0),
        ];
        rows.sort_by(|x, y| {
            (&x.proxy, &x.name, &x.cluster, x.minute)
                .cmp(&(&y.proxy, &y.name, &y.cluster, y.minute))
        });
        let index = UpstreamHealthIndex::from_rows(&rows);
        let health = index.get("shop/frontend", "shop/backend").unwrap();
        assert_eq!(
            health,
            UpstreamHealth {
                healthy: Some(2),
                total: Some(3),
                circuit_breaker_open: true,
                pending_requests: 0,
                errors_5xx: 5,
                retries: 2,
                timeouts: 0,
                clusters: vec!["c".into()],
                reported_by: vec!["a".into(), "b".into()],
                as_of: 60_000,
            }
        );
        assert!(index.get("shop/backend", "shop/frontend").is_none());
    }
}
