//! One row of a proxy's own statistics, as the `proxy_metrics_*` tables store it (see
//! `proxy_table`), and the arithmetic of its cumulative histogram buckets.

use serde::Serialize;

use crate::model::EpochMillis;

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

#[cfg(test)]
mod tests {
    use super::*;

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
