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
//! At about 830 lines this file is over the usual size on purpose: the bins' sparse and
//! dense forms, the sketch built on them and its byte form share invariants (key range,
//! packed order, counter widths) that each of them relies on; split apart, each part would
//! have to expose them. The tests live in `sketch/tests.rs`.

use crate::error::{Error, Result};

/// Relative accuracy of every latency sketch: quantiles are within 1% of the true value.
pub const RELATIVE_ACCURACY: f64 = 0.01;

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

/// Past this many distinct bins a sketch turns dense: adding is then an index instead of a
/// search, at the price of a counter for every bin in its range.
const SPARSE_MAX_BINS: usize = 48;
/// Bins a dense array grows by past the one it needed, so a widening range does not
/// reallocate on every new key.
const DENSE_SLACK: i32 = 8;

/// First byte of the encoding; a later layout gets another number.
const FORMAT_V1: u8 = 1;

fn key_of(millis: f64) -> i32 {
    ((millis.ln() / LN_GAMMA).floor() as i32).clamp(MIN_KEY, MAX_KEY)
}

fn value_of(key: i32) -> f64 {
    (f64::from(key) * LN_GAMMA).exp() * BIN_VALUE_FACTOR
}

/// A sparse bin: the key (offset to be unsigned, so packed order is key order) in the high
/// half and its count in the low half.
fn pack(key: i32, count: u32) -> u32 {
    (((key - MIN_KEY) as u32) << 16) | count
}

fn packed_key(bin: u32) -> i32 {
    (bin >> 16) as i32 + MIN_KEY
}

fn packed_count(bin: u32) -> u32 {
    bin & 0xFFFF
}

/// A bin counter width for dense arrays.
trait Counter: Copy + Default {
    fn get(self) -> u64;
    /// `self + n`, or `None` when that does not fit.
    fn plus(self, n: u64) -> Option<Self>;
    /// `self - n`, for an `n` no larger than `self`.
    fn less(self, n: u64) -> Self;
}

impl Counter for u32 {
    fn get(self) -> u64 {
        u64::from(self)
    }
    fn plus(self, n: u64) -> Option<Self> {
        u32::try_from(u64::from(self) + n).ok()
    }
    fn less(self, n: u64) -> Self {
        // n <= self, so it fits.
        self - n as u32
    }
}

impl Counter for u64 {
    fn get(self) -> u64 {
        self
    }
    fn plus(self, n: u64) -> Option<Self> {
        self.checked_add(n)
    }
    fn less(self, n: u64) -> Self {
        self - n
    }
}

/// Counters for every key from `offset` on.
#[derive(Clone, Debug, PartialEq)]
struct Dense<C> {
    offset: i32,
    counts: Vec<C>,
}

impl<C: Counter> Dense<C> {
    fn from_bins(bins: impl Iterator<Item = (i32, u64)>) -> Option<Self> {
        let mut dense = Dense {
            offset: 0,
            counts: Vec::new(),
        };
        for (key, count) in bins {
            dense.add(key, count)?;
        }
        Some(dense)
    }

    fn add(&mut self, key: i32, n: u64) -> Option<()> {
        if self.counts.is_empty() {
            self.offset = key;
        }
        let end = self.offset + self.counts.len() as i32;
        if key < self.offset {
            let start = (key - DENSE_SLACK).max(MIN_KEY);
            let grow = (self.offset - start) as usize;
            self.counts
                .splice(0..0, std::iter::repeat_n(C::default(), grow));
            self.offset = start;
        } else if key >= end {
            let new_end = (key + 1 + DENSE_SLACK).min(MAX_KEY + 1);
            self.counts
                .resize((new_end - self.offset) as usize, C::default());
        }
        let slot = &mut self.counts[(key - self.offset) as usize];
        *slot = slot.plus(n)?;
        Some(())
    }

    fn count_at(&self, key: i32) -> u64 {
        usize::try_from(key - self.offset)
            .ok()
            .and_then(|at| self.counts.get(at))
            .map_or(0, |c| c.get())
    }

    /// Takes `n` from `key`'s counter, which `count_at` said holds at least `n`.
    fn take(&mut self, key: i32, n: u64) {
        let slot = &mut self.counts[(key - self.offset) as usize];
        *slot = slot.less(n);
    }

    fn visit(&self, f: &mut impl FnMut(i32, u64) -> bool) {
        for (i, c) in self.counts.iter().enumerate() {
            if c.get() > 0 && !f(self.offset + i as i32, c.get()) {
                return;
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Bins {
    /// Packed bins sorted by key.
    Sparse(Vec<u32>),
    Dense(Dense<u32>),
    /// Once a bin passes `u32::MAX`, which only long rollups of busy rows reach.
    Wide(Dense<u64>),
}

impl Bins {
    fn add(&mut self, key: i32, n: u64) {
        match self {
            Bins::Sparse(bins) => {
                let probe = pack(key, 0);
                match bins.binary_search_by(|b| (b & !0xFFFF).cmp(&probe)) {
                    Ok(at) => {
                        let sum = u64::from(packed_count(bins[at])) + n;
                        if sum <= 0xFFFF {
                            bins[at] = pack(key, sum as u32);
                            return;
                        }
                    }
                    Err(at) if bins.len() < SPARSE_MAX_BINS && n <= 0xFFFF => {
                        bins.insert(at, pack(key, n as u32));
                        return;
                    }
                    Err(_) => {}
                }
                self.densify();
                self.add(key, n);
            }
            Bins::Dense(dense) => {
                if dense.add(key, n).is_none() {
                    self.widen();
                    self.add(key, n);
                }
            }
            Bins::Wide(wide) => {
                // 2^64 requests in one bin cannot happen; saturate rather than wrap.
                if wide.add(key, n).is_none() {
                    let slot = &mut wide.counts[(key - wide.offset) as usize];
                    *slot = u64::MAX;
                }
            }
        }
    }

    fn merge(&mut self, other: &Bins) {
        // Dense into dense, the common case when a read folds busy rows: one pass over
        // the arrays instead of a lookup per bin.
        if let (Bins::Dense(ours), Bins::Dense(theirs)) = (&mut *self, other)
            && !theirs.counts.is_empty()
        {
            let lo = theirs.offset;
            let hi = theirs.offset + theirs.counts.len() as i32 - 1;
            if ours.add(lo, 0).is_some() && ours.add(hi, 0).is_some() {
                let start = (lo - ours.offset) as usize;
                let span = &mut ours.counts[start..start + theirs.counts.len()];
                let fits = span
                    .iter()
                    .zip(&theirs.counts)
                    .all(|(a, b)| a.checked_add(*b).is_some());
                if fits {
                    for (a, b) in span.iter_mut().zip(&theirs.counts) {
                        *a += *b;
                    }
                    return;
                }
            }
        }
        other.visit(|key, n| {
            self.add(key, n);
            true
        });
    }

    /// Adds bins sorted by key with distinct keys, as a decoded sketch holds them: one
    /// linear merge for sparse bins instead of a search and an insert per bin, and one
    /// growth of a dense range instead of one per new key.
    fn merge_sorted(&mut self, incoming: &[(i32, u64)]) {
        let (Some(&(lo, _)), Some(&(hi, _))) = (incoming.first(), incoming.last()) else {
            return;
        };
        match self {
            Bins::Sparse(bins) => {
                if let Some(merged) = merge_sparse(bins, incoming) {
                    *bins = merged;
                    return;
                }
                let dense = if bins.is_empty() {
                    Dense::<u32>::from_bins(incoming.iter().copied()).map(Bins::Dense)
                } else {
                    None
                };
                match dense {
                    Some(dense) => *self = dense,
                    None => {
                        self.densify();
                        self.merge_sorted(incoming);
                    }
                }
            }
            Bins::Dense(dense) => {
                let reserved = dense.add(lo, 0).and_then(|()| dense.add(hi, 0));
                for (at, &(key, n)) in incoming.iter().enumerate() {
                    if reserved.is_none() || dense.add(key, n).is_none() {
                        // `add` leaves a counter that would overflow as it was, so the
                        // bins from `at` on are still to be added.
                        self.widen();
                        self.merge_sorted(&incoming[at..]);
                        return;
                    }
                }
            }
            Bins::Wide(wide) => {
                for &(key, n) in incoming {
                    if wide.add(key, n).is_none() {
                        let slot = &mut wide.counts[(key - wide.offset) as usize];
                        *slot = u64::MAX;
                    }
                }
            }
        }
    }

    fn count_at(&self, key: i32) -> u64 {
        match self {
            Bins::Sparse(bins) => {
                let probe = pack(key, 0);
                bins.binary_search_by(|b| (b & !0xFFFF).cmp(&probe))
                    .map_or(0, |at| u64::from(packed_count(bins[at])))
            }
            Bins::Dense(dense) => dense.count_at(key),
            Bins::Wide(wide) => wide.count_at(key),
        }
    }

    /// Takes `n` from `key`'s bin, which `count_at` said holds at least `n`.
    fn take(&mut self, key: i32, n: u64) {
        match self {
            Bins::Sparse(bins) => {
                let probe = pack(key, 0);
                if let Ok(at) = bins.binary_search_by(|b| (b & !0xFFFF).cmp(&probe)) {
                    let left = u64::from(packed_count(bins[at])) - n;
                    if left == 0 {
                        bins.remove(at);
                    } else {
                        bins[at] = pack(key, left as u32);
                    }
                }
            }
            Bins::Dense(dense) => dense.take(key, n),
            Bins::Wide(wide) => wide.take(key, n),
        }
    }

    fn densify(&mut self) {
        let mut bins = Vec::new();
        self.visit(|key, n| {
            bins.push((key, n));
            true
        });
        *self = match Dense::<u32>::from_bins(bins.iter().copied()) {
            Some(dense) => Bins::Dense(dense),
            None => Bins::Wide(Dense::from_bins(bins.into_iter()).unwrap_or(Dense {
                offset: 0,
                counts: Vec::new(),
            })),
        };
    }

    fn widen(&mut self) {
        if let Bins::Dense(dense) = self {
            *self = Bins::Wide(Dense {
                offset: dense.offset,
                counts: dense.counts.iter().map(|c| u64::from(*c)).collect(),
            });
        }
    }

    /// Calls `f` with each non-empty bin in key order until it returns false.
    fn visit(&self, mut f: impl FnMut(i32, u64) -> bool) {
        match self {
            Bins::Sparse(bins) => {
                for bin in bins {
                    if !f(packed_key(*bin), u64::from(packed_count(*bin))) {
                        return;
                    }
                }
            }
            Bins::Dense(dense) => dense.visit(&mut f),
            Bins::Wide(wide) => wide.visit(&mut f),
        }
    }
}

/// Sparse `bins` and sorted `incoming` merged into one sorted list, or `None` when the
/// result has too many bins or a count too large for a sparse bin.
fn merge_sparse(bins: &[u32], incoming: &[(i32, u64)]) -> Option<Vec<u32>> {
    if incoming.len() > SPARSE_MAX_BINS {
        return None;
    }
    let mut merged = Vec::with_capacity((bins.len() + incoming.len()).min(SPARSE_MAX_BINS));
    let mut ours = bins.iter().copied().peekable();
    for &(key, n) in incoming {
        while let Some(&bin) = ours.peek() {
            if packed_key(bin) >= key {
                break;
            }
            merged.push(bin);
            ours.next();
        }
        let sum = match ours.peek() {
            Some(&bin) if packed_key(bin) == key => {
                ours.next();
                u64::from(packed_count(bin)) + n
            }
            _ => n,
        };
        if sum > 0xFFFF {
            return None;
        }
        merged.push(pack(key, sum as u32));
    }
    merged.extend(ours);
    (merged.len() <= SPARSE_MAX_BINS).then_some(merged)
}

thread_local! {
    /// Bins decoded by `merge_bytes`, reused: a fold decodes a sketch per row.
    static DECODED: std::cell::RefCell<Vec<(i32, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
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

    /// The smallest and largest values of an encoded sketch, `None` when it is empty.
    pub fn extremes_of(bytes: &[u8]) -> Result<Option<(f64, f64)>> {
        Ok(Header::read(bytes)?.map(|header| (header.min, header.max)))
    }

    /// Takes out an encoded sketch that was merged in earlier, for a window that moves on:
    /// the counts, the zero count and the bins subtract exactly, and so does the sum up to
    /// rounding. A minimum and a maximum do not come apart: the caller sets them for what
    /// is left with `set_extremes`. Refused, leaving `self` as it was, when `bytes` hold
    /// observations `self` does not.
    pub fn remove_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(header) = Header::read(bytes)? else {
            return Ok(());
        };
        let mut fits = header.count <= self.count && header.zero <= self.zero;
        header.bins.visit(|key, n| {
            fits = fits && self.bins.count_at(key) >= n;
            fits
        })?;
        if !fits {
            return Err(invalid(
                "a latency sketch cannot lose observations it does not hold".into(),
            ));
        }
        header.bins.visit(|key, n| {
            self.bins.take(key, n);
            true
        })?;
        self.count -= header.count;
        self.zero -= header.zero;
        if self.count == 0 {
            *self = LatencySketch::new();
        } else {
            self.sum = (self.sum - header.sum).max(0.0);
        }
        Ok(())
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

    /// A compact encoding: a format byte, the totals, then each non-empty bin as its key's
    /// distance from the previous key and its count, both as varints.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        self.write_bytes(&mut out);
        out
    }

    /// `to_bytes` into a reused buffer, which is cleared first.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(FORMAT_V1);
        put_varint(out, self.count);
        if self.count == 0 {
            return;
        }
        put_varint(out, self.zero);
        for figure in [self.sum, self.min, self.max] {
            out.extend_from_slice(&figure.to_le_bytes());
        }
        let mut previous = MIN_KEY;
        self.bins.visit(|key, n| {
            put_varint(out, (key - previous) as u64);
            put_varint(out, n);
            previous = key;
            true
        });
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut sketch = Self::new();
        sketch.merge_bytes(bytes)?;
        Ok(sketch)
    }

    /// Merges an encoded sketch without building it first: reads fold thousands of rows
    /// into one total, and this spares a sketch per row. The bytes are checked whole
    /// before anything is added, so a refused encoding leaves `self` as it was.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(header) = Header::read(bytes)? else {
            return Ok(());
        };
        DECODED.with_borrow_mut(|decoded| {
            decoded.clear();
            let mut binned: u64 = 0;
            header.bins.visit(|key, n| {
                binned = binned.saturating_add(n);
                decoded.push((key, n));
                true
            })?;
            if header.zero.checked_add(binned) != Some(header.count) {
                return Err(invalid("latency sketch counts do not add up".into()));
            }
            self.bins.merge_sorted(decoded);
            Ok(())
        })?;
        if self.count == 0 {
            self.min = header.min;
            self.max = header.max;
        } else {
            self.min = self.min.min(header.min);
            self.max = self.max.max(header.max);
        }
        self.count += header.count;
        self.zero += header.zero;
        self.sum += header.sum;
        Ok(())
    }
}

/// The totals at the head of an encoded sketch, and a reader over its bins.
struct Header<'a> {
    count: u64,
    zero: u64,
    sum: f64,
    min: f64,
    max: f64,
    bins: EncodedBins<'a>,
}

impl<'a> Header<'a> {
    /// `None` for an empty sketch.
    fn read(bytes: &'a [u8]) -> Result<Option<Self>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let mut input = Reader { bytes, at: 0 };
        match input.byte()? {
            FORMAT_V1 => {}
            other => {
                return Err(invalid(format!(
                    "unknown latency sketch format {other}; it was written by another \
                     version of meshscope"
                )));
            }
        }
        let count = input.varint()?;
        if count == 0 {
            return input.end().map(|()| None);
        }
        let zero = input.varint()?;
        let sum = input.f64()?;
        let min = input.f64()?;
        let max = input.f64()?;
        Ok(Some(Header {
            count,
            zero,
            sum,
            min,
            max,
            bins: EncodedBins {
                bytes: &bytes[input.at..],
            },
        }))
    }
}

#[derive(Clone, Copy)]
struct EncodedBins<'a> {
    bytes: &'a [u8],
}

impl EncodedBins<'_> {
    /// Calls `f` with each bin in key order, refusing bins out of order or range.
    fn visit(&self, mut f: impl FnMut(i32, u64) -> bool) -> Result<()> {
        let mut input = Reader {
            bytes: self.bytes,
            at: 0,
        };
        let mut key = MIN_KEY;
        let mut first = true;
        while !input.done() {
            let step = input.varint()?;
            let n = input.varint()?;
            if (!first && step == 0) || n == 0 || step > (MAX_KEY - MIN_KEY) as u64 {
                return Err(invalid("latency sketch bins out of order".into()));
            }
            key += step as i32;
            if key > MAX_KEY {
                return Err(invalid("latency sketch bin out of range".into()));
            }
            first = false;
            if !f(key, n) {
                break;
            }
        }
        Ok(())
    }
}

fn invalid(reason: String) -> Error {
    Error::Sketch { reason }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn end(&self) -> Result<()> {
        if self.done() {
            Ok(())
        } else {
            Err(invalid("latency sketch has trailing bytes".into()))
        }
    }

    fn byte(&mut self) -> Result<u8> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| invalid("latency sketch is cut short".into()))?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(invalid("latency sketch varint too long".into()))
    }

    fn f64(&mut self) -> Result<f64> {
        let end = self.at + 8;
        let raw = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| invalid("latency sketch is cut short".into()))?;
        self.at = end;
        Ok(f64::from_le_bytes(raw.try_into().expect("eight bytes")))
    }
}

#[cfg(test)]
mod tests;
