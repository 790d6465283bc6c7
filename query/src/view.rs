//! The JSON figures the API shows for a node, an edge or a minute, derived from the
//! store's additive `Metrics`.

use meshscope_storage::{EpochMillis, MINUTE_MS, Metrics, SeriesPoint, ServiceRef, TimeRange};
use serde::Serialize;
use utoipa::ToSchema;

/// Figures of a service, instance or endpoint over `minutes` minutes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeMetrics {
    pub(crate) calls: u64,
    pub(crate) cpm: f64,
    pub(crate) errors: u64,
    /// Fraction of calls that failed, 0 to 1; 0 without calls.
    pub(crate) error_rate: f64,
    pub(crate) errors_4xx: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// `(satisfied + tolerating / 2) / calls`; null without calls.
    pub(crate) apdex: Option<f64>,
}

impl NodeMetrics {
    pub(crate) fn from_metrics(metrics: &Metrics, minutes: i64) -> Self {
        let calls = metrics.calls;
        let [p50_ms, p95_ms, p99_ms] = percentiles(metrics);
        let apdex = (calls > 0).then(|| {
            (metrics.apdex_satisfied as f64 + metrics.apdex_tolerating as f64 / 2.0) / calls as f64
        });
        Self {
            calls,
            cpm: per_minute(calls, minutes),
            errors: metrics.errors,
            error_rate: ratio(metrics.errors, calls),
            errors_4xx: metrics.errors_4xx,
            p50_ms,
            p95_ms,
            p99_ms,
            apdex,
        }
    }
}

/// Figures of a call edge over `minutes` minutes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EdgeMetrics {
    /// Requests (HTTP) or connections (TCP).
    pub(crate) calls: u64,
    pub(crate) cpm: f64,
    pub(crate) errors: u64,
    pub(crate) error_rate: f64,
    pub(crate) errors_4xx: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) tcp_connections: u64,
    pub(crate) mtls_calls: u64,
}

impl EdgeMetrics {
    pub(crate) fn from_metrics(metrics: &Metrics, minutes: i64) -> Self {
        let [p50_ms, p95_ms, p99_ms] = percentiles(metrics);
        Self {
            calls: metrics.calls,
            cpm: per_minute(metrics.calls, minutes),
            errors: metrics.errors,
            error_rate: ratio(metrics.errors, metrics.calls),
            errors_4xx: metrics.errors_4xx,
            p50_ms,
            p95_ms,
            p99_ms,
            bytes_sent: metrics.bytes_sent,
            bytes_received: metrics.bytes_received,
            tcp_connections: metrics.tcp_connections,
            mtls_calls: metrics.mtls_calls,
        }
    }
}

/// One minute of a series: `t` is the minute's start in epoch milliseconds.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Point<M> {
    pub(crate) t: EpochMillis,
    #[serde(flatten)]
    pub(crate) metrics: M,
}

/// One point per minute of `range`, in time order; minutes without rows show zero calls
/// so that charts draw gaps as quiet minutes rather than interpolating across them.
pub(crate) fn dense_series<M>(
    range: TimeRange,
    points: &[SeriesPoint],
    convert: impl Fn(&Metrics) -> M,
) -> Vec<Point<M>> {
    let empty = Metrics::default();
    let mut points = points.iter().peekable();
    let mut series = Vec::with_capacity(crate::window::minutes_in(range) as usize);
    let mut minute = range.start;
    while minute < range.end {
        // Skip rows outside the range or out of order rather than trusting the reader.
        while points.next_if(|p| p.minute < minute).is_some() {}
        let metrics = match points.next_if(|p| p.minute == minute) {
            Some(point) => &point.metrics,
            None => &empty,
        };
        series.push(Point {
            t: minute,
            metrics: convert(metrics),
        });
        minute += MINUTE_MS;
    }
    series
}

/// The kinds of node, as `kind` names them.
#[derive(ToSchema)]
#[schema(as = NodeKind, rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: `kind` is rendered from the store's kind.
pub(crate) enum NodeKindName {
    Service,
    Virtual,
}

/// A node as the topology and the service list show it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// `service` (a workload with rows of its own) or `virtual` (a stand-in for traffic
    /// that cannot be attributed, such as `external`).
    #[schema(value_type = NodeKindName)]
    pub(crate) kind: &'static str,
    pub(crate) metrics: NodeMetrics,
}

impl NodeView {
    pub(crate) fn new(service: &ServiceRef, metrics: &Metrics, minutes: i64) -> Self {
        Self {
            id: service.id(),
            name: service.name.clone(),
            namespace: service.namespace.clone(),
            kind: service.kind.as_str(),
            metrics: NodeMetrics::from_metrics(metrics, minutes),
        }
    }
}

fn per_minute(count: u64, minutes: i64) -> f64 {
    round3(count as f64 / minutes.max(1) as f64)
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// p50, p95 and p99: one pass over the sketch reads all three.
pub(crate) fn percentiles(metrics: &Metrics) -> [Option<f64>; 3] {
    if metrics.calls == 0 {
        return [None; 3];
    }
    metrics
        .latency
        .quantiles([0.50, 0.95, 0.99])
        .map(|q| q.map(round3))
}

/// Microsecond precision is all a millisecond figure needs, and it keeps the JSON readable.
pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minute: EpochMillis, calls: u64) -> SeriesPoint {
        SeriesPoint {
            minute,
            detected_by: meshscope_storage::Side::Server,
            metrics: Metrics {
                calls,
                ..Metrics::default()
            },
        }
    }

    #[test]
    fn dense_series_fills_quiet_minutes_with_zero() {
        let range = TimeRange {
            start: 0,
            end: 4 * MINUTE_MS,
        };
        let points = [
            point(-MINUTE_MS, 9),
            point(MINUTE_MS, 3),
            point(3 * MINUTE_MS, 5),
        ];
        let series = dense_series(range, &points, |m| m.calls);
        let got: Vec<_> = series.iter().map(|p| (p.t, p.metrics)).collect();
        assert_eq!(
            got,
            [
                (0, 0),
                (MINUTE_MS, 3),
                (2 * MINUTE_MS, 0),
                (3 * MINUTE_MS, 5)
            ]
        );
    }

    #[test]
    fn node_metrics_without_calls_have_no_latency_or_apdex() {
        let view = NodeMetrics::from_metrics(&Metrics::default(), 15);
        assert_eq!(view.calls, 0);
        assert_eq!(view.error_rate, 0.0);
        assert_eq!(view.p99_ms, None);
        assert_eq!(view.apdex, None);
    }

    #[test]
    fn node_metrics_rates_and_apdex() {
        let mut metrics = Metrics {
            calls: 30,
            errors: 6,
            apdex_satisfied: 20,
            apdex_tolerating: 4,
            ..Metrics::default()
        };
        for _ in 0..30 {
            metrics.latency.add(10.0);
        }
        let view = NodeMetrics::from_metrics(&metrics, 15);
        assert_eq!(view.cpm, 2.0);
        assert_eq!(view.error_rate, 0.2);
        assert_eq!(view.apdex, Some(22.0 / 30.0));
        let p50 = view.p50_ms.unwrap();
        assert!((p50 - 10.0).abs() <= 0.1, "{p50}");
    }
}
