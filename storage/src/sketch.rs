//! Latency sketches: mergeable, with a bounded relative error, so that rollups and
//! window queries merge distributions instead of averaging percentiles.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use crate::error::{Error, Result};

/// Relative accuracy of every latency sketch: quantiles are within 1% of the true value.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Sketches are built from one config everywhere; merging needs identical configs.
fn config() -> Config {
    // 2048 bins cover 1 µs to well over an hour at 1% accuracy.
    Config::new(RELATIVE_ACCURACY, 2048, 1.0e-3)
}

/// A latency distribution in milliseconds.
#[derive(Clone, Serialize, Deserialize)]
pub struct LatencySketch {
    inner: DDSketch,
}

impl std::fmt::Debug for LatencySketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySketch")
            .field("count", &self.count())
            .finish()
    }
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencySketch {
    pub fn new() -> Self {
        Self {
            inner: DDSketch::new(config()),
        }
    }

    /// Records one observation; negative and non-finite values are clamped to zero
    /// because a proxy clock can step backwards.
    pub fn add(&mut self, millis: f64) {
        let value = if millis.is_finite() && millis > 0.0 {
            millis
        } else {
            0.0
        };
        self.inner.add(value);
    }

    pub fn merge(&mut self, other: &LatencySketch) {
        // Both sides come from `config()`, so the merge cannot fail on a config mismatch.
        let _ = self.inner.merge(&other.inner);
    }

    pub fn count(&self) -> u64 {
        self.inner.count() as u64
    }

    /// The q-quantile in milliseconds, or `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.inner.quantile(q.clamp(0.0, 1.0)).ok().flatten()
    }

    pub fn sum(&self) -> Option<f64> {
        self.inner.sum()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.inner).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Ok(Self::new());
        }
        let inner: DDSketch = postcard::from_bytes(bytes).map_err(|e| Error::Sketch {
            reason: e.to_string(),
        })?;
        Ok(Self { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_stay_within_one_percent() {
        let mut sketch = LatencySketch::new();
        for i in 1..=10_000 {
            sketch.add(i as f64 / 10.0);
        }
        for q in [0.5, 0.95, 0.99] {
            let truth = q * 1000.0;
            let got = sketch.quantile(q).unwrap();
            assert!(
                (got - truth).abs() / truth <= 0.011,
                "q={q} got={got} truth={truth}"
            );
        }
    }

    #[test]
    fn merge_equals_single_sketch_and_bytes_round_trip() {
        let mut a = LatencySketch::new();
        let mut b = LatencySketch::new();
        let mut all = LatencySketch::new();
        for i in 0..500 {
            a.add(i as f64);
            all.add(i as f64);
            b.add(300.0 + i as f64);
            all.add(300.0 + i as f64);
        }
        a.merge(&b);
        let restored = LatencySketch::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(restored.count(), 1000);
        assert_eq!(restored.quantile(0.99), all.quantile(0.99));
    }
}
