//! Latency sketches: mergeable, with a bounded relative error, so that rollups and
//! window queries merge distributions instead of averaging percentiles.
//!
//! The mapping is DDSketch's logarithmic one (a value `v` falls in bin
//! `floor(ln v / ln γ)` with `γ = (1 + α) / (1 − α)`), so every quantile is within α of
//! the true value. The bins are kept here rather than in a DDSketch crate because of their
//! size: a live minute holds a sketch per row, hundreds of thousands of them on a large
//! mesh, and most rows see a few dozen requests a minute. Those crates allocate their dense
//! bins 128 at a time as `u64`, a kilobyte per row; here a row with few requests keeps a
//! sorted list of four-byte bins and only busy rows switch to a dense array.
//!
//! Three ideas, one file each: the bins' sparse and dense forms (`bins`), the sketch's
//! arithmetic on them (here: add, merge, quantiles) and its byte form (`encoding`: write,
//! read, merge and remove encoded sketches without building them). The tests live in
//! `sketch/tests.rs`.

mod bins;
mod encoding;

use bins::Bins;

/// Relative accuracy of every latency sketch: quantiles are within 1% of the true value.
pub(crate) const RELATIVE_ACCURACY: f64 = 0.01;

const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
/// `GAMMA.ln()`, which is not a const fn (a test checks the figure).
const LN_GAMMA: f64 = 0.020000666706669435;
/// A bin's value is the midpoint of its bounds in relative terms.
const BIN_VALUE_FACTOR: f64 = 2.0 * GAMMA / (1.0 + GAMMA);

/// Latencies at or under one microsecond are counted as zero.
const MIN_VALUE_MS: f64 = 1.0e-3;
/// Keys are clamped to `[MIN_KEY, MAX_KEY]`: one microsecond to about eleven days. A value
/// past the top is counted in the top bin; `max` still reports it exactly.
const MIN_KEY: i32 = -346;
const MAX_KEY: i32 = 1_037;

fn key_of(millis: f64) -> i32 {
    ((millis.ln() / LN_GAMMA).floor() as i32).clamp(MIN_KEY, MAX_KEY)
}

fn value_of(key: i32) -> f64 {
    (f64::from(key) * LN_GAMMA).exp() * BIN_VALUE_FACTOR
}

/// A latency distribution in milliseconds.
#[derive(Clone, PartialEq)]
pub struct LatencySketch {
    count: u64,
    /// Observations at or under `MIN_VALUE_MS`.
    zero: u64,
    sum: f64,
    min: f64,
    max: f64,
    bins: Bins,
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

/// A latency with its bin found. An entry adds its latency to the sketches of several
/// rows (the edge, the instance, the endpoint); the logarithm is taken once.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Binned {
    millis: f64,
    /// `None` for values too small for a bin, counted as zeros.
    key: Option<i32>,
}

impl Binned {
    /// Negative and non-finite values are clamped to zero, because a proxy clock can
    /// step backwards.
    pub fn new(millis: f64) -> Binned {
        let millis = if millis.is_finite() && millis > 0.0 {
            millis
        } else {
            0.0
        };
        let key = (millis > MIN_VALUE_MS).then(|| key_of(millis));
        Binned { millis, key }
    }

    pub fn millis(self) -> f64 {
        self.millis
    }
}

impl LatencySketch {
    pub fn new() -> Self {
        Self {
            count: 0,
            zero: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bins: Bins::Sparse(Vec::new()),
        }
    }

    /// Records one observation; negative and non-finite values are clamped to zero
    /// because a proxy clock can step backwards.
    pub fn add(&mut self, millis: f64) {
        self.add_binned(Binned::new(millis));
    }

    /// Records a value whose bin was found once for all the sketches it goes to.
    pub fn add_binned(&mut self, value: Binned) {
        match value.key {
            Some(key) => self.bins.add(key, 1),
            None => self.zero += 1,
        }
        self.count += 1;
        self.sum += value.millis;
        self.min = self.min.min(value.millis);
        self.max = self.max.max(value.millis);
    }

    pub fn merge(&mut self, other: &LatencySketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.clone_from(other);
            return;
        }
        self.bins.merge(&other.bins);
        self.count += other.count;
        self.zero += other.zero;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sets the smallest and largest values after `remove_bytes`; ignored when empty.
    pub fn set_extremes(&mut self, min: f64, max: f64) {
        if self.count > 0 {
            self.min = min;
            self.max = max;
        }
    }

    /// The q-quantile in milliseconds, or `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let rank = (q * (self.count - 1) as f64) as u64;
        if rank < self.zero {
            return Some(0.0);
        }
        let rank = rank - self.zero;
        let mut seen = 0;
        let mut found = None;
        self.bins.visit(|key, n| {
            seen += n;
            found = Some(key);
            seen <= rank
        });
        found.map(value_of)
    }

    /// Several quantiles in one pass over the bins, as `quantile` gives each; `qs` in
    /// ascending order (a pass reads the bins once for all of them).
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Option<f64>; N] {
        let mut found = [None; N];
        if self.count == 0 {
            return found;
        }
        // Ranks among the binned observations, for the quantiles the bins answer.
        let mut wanted: [Option<u64>; N] = [None; N];
        for (at, q) in qs.into_iter().enumerate() {
            let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
            let rank = (q * (self.count - 1) as f64) as u64;
            if q == 0.0 {
                found[at] = Some(self.min);
            } else if q == 1.0 {
                found[at] = Some(self.max);
            } else if rank < self.zero {
                found[at] = Some(0.0);
            } else {
                wanted[at] = Some(rank - self.zero);
            }
        }
        let mut next = 0;
        let mut seen = 0;
        let mut last = None;
        self.bins.visit(|key, n| {
            seen += n;
            last = Some(key);
            while next < N {
                match wanted[next] {
                    Some(rank) if seen <= rank => return true,
                    Some(_) => found[next] = Some(value_of(key)),
                    None => {}
                }
                next += 1;
            }
            false
        });
        // Counts that do not reach a rank (never, for a consistent sketch) read as the
        // top bin, as `quantile` does.
        for at in next..N {
            if wanted[at].is_some() {
                found[at] = last.map(value_of);
            }
        }
        found
    }

    pub fn sum(&self) -> Option<f64> {
        (self.count > 0).then_some(self.sum)
    }
}

#[cfg(test)]
mod tests;
