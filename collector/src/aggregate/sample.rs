//! Sample arithmetic: what one entry adds to one row's counters.

use meshscope_storage::Binned;
use meshscope_storage::Metrics;

/// What one entry contributes to a row.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub error: bool,
    pub error_4xx: bool,
    pub latency: Binned,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub tcp: bool,
    pub mtls: bool,
    /// Attempts beyond the first that the caller's proxy made (client side only).
    pub retries: u32,
    /// The caller-cluster header named another caller than the peer certificate.
    pub identity_conflict: bool,
    /// The entry's response flags, as [`crate::entry::Observation::response_flags`].
    pub response_flags: u32,
}

/// Adds one sample to a row's counters: one call, its outcome, latency and bytes, and its
/// Apdex class (satisfied up to `apdex_threshold_ms`, tolerating up to four times it;
/// a failed call is never either).
#[inline]
pub fn add_sample(metrics: &mut Metrics, sample: &Sample, apdex_threshold_ms: f64) {
    metrics.calls += 1;
    metrics.errors += u64::from(sample.error);
    metrics.errors_4xx += u64::from(sample.error_4xx);
    metrics.latency.add_binned(sample.latency);
    metrics.bytes_sent += sample.bytes_sent;
    metrics.bytes_received += sample.bytes_received;
    metrics.tcp_connections += u64::from(sample.tcp);
    metrics.mtls_calls += u64::from(sample.mtls);
    metrics.retries += u64::from(sample.retries);
    metrics.identity_conflicts += u64::from(sample.identity_conflict);
    if sample.response_flags != 0 {
        crate::response_flag_bits::count_kinds(metrics, sample.response_flags);
    }
    if !sample.error {
        let latency_ms = sample.latency.millis();
        if latency_ms <= apdex_threshold_ms {
            metrics.apdex_satisfied += 1;
        } else if latency_ms <= 4.0 * apdex_threshold_ms {
            metrics.apdex_tolerating += 1;
        }
    }
}

/// What one settled request adds to an edge row (see [`crate::request_pairs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PairFigures {
    pub paired: u64,
    pub client_only: u64,
    pub server_only: u64,
    /// Client duration minus server duration, for a paired request made in one attempt
    /// and received once.
    pub overhead: Option<Binned>,
}

/// Adds one settled request's figures to a row; no call is counted.
#[inline]
pub fn add_pair(metrics: &mut Metrics, figures: &PairFigures) {
    metrics.paired += figures.paired;
    metrics.client_only += figures.client_only;
    metrics.server_only += figures.server_only;
    if let Some(overhead) = figures.overhead {
        metrics.overhead.add_binned(overhead);
    }
}

/// What one settled entry adds to its instance pair's or dependency's row: its call, and
/// the request's pairing figures where that row carries them, in one lookup of the row.
#[derive(Clone, Copy, Debug, Default)]
pub struct SettledCall {
    pub sample: Sample,
    pub figures: PairFigures,
}

/// Adds a settled entry's call and figures to a row.
#[inline]
pub fn add_settled(metrics: &mut Metrics, call: &SettledCall, apdex_threshold_ms: f64) {
    add_sample(metrics, &call.sample, apdex_threshold_ms);
    if call.figures != PairFigures::default() {
        add_pair(metrics, &call.figures);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apdex_counts_satisfied_and_tolerating_and_never_errors() {
        let mut m = Metrics::default();
        let cases = [
            (50.0, false),  // satisfied
            (100.0, false), // satisfied at T
            (250.0, false), // tolerating
            (400.0, false), // tolerating at 4T
            (401.0, false), // frustrated
            (10.0, true),   // fast but failed: frustrated
        ];
        for (latency_ms, error) in cases {
            let sample = Sample {
                latency: Binned::new(latency_ms),
                error,
                ..Default::default()
            };
            add_sample(&mut m, &sample, 100.0);
        }
        assert_eq!((m.calls, m.errors), (6, 1));
        assert_eq!((m.apdex_satisfied, m.apdex_tolerating), (2, 2));
    }
}
