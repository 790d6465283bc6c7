//! A sketch's bins in memory: a sorted list of packed four-byte bins while a row sees few
//! distinct latencies, a dense array of counters (`u32`, then `u64` once a bin passes
//! `u32::MAX`) past that.

use super::{MAX_KEY, MIN_KEY};

/// Past this many distinct bins a sketch turns dense: adding is then an index instead of a
/// search, at the price of a counter for every bin in its range.
const SPARSE_MAX_BINS: usize = 48;
/// Bins a dense array grows by past the one it needed, so a widening range does not
/// reallocate on every new key.
const DENSE_SLACK: i32 = 8;

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
pub(super) trait Counter: Copy + Default {
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
pub(super) struct Dense<C> {
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

    /// `add` for a key within the counters' range, as `reserve` made it.
    fn add_in_range(&mut self, key: i32, n: u64) -> Option<()> {
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
pub(super) enum Bins {
    /// Packed bins sorted by key.
    Sparse(Vec<u32>),
    Dense(Dense<u32>),
    /// Once a bin passes `u32::MAX`, which only long rollups of busy rows reach.
    Wide(Dense<u64>),
}

impl Bins {
    pub(super) fn add(&mut self, key: i32, n: u64) {
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

    pub(super) fn merge(&mut self, other: &Bins) {
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
    pub(super) fn merge_sorted(&mut self, incoming: &[(i32, u64)]) {
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
                // The keys are sorted, so the counters cover them all once they cover the
                // first and the last.
                let reserved = dense.add(lo, 0).and_then(|()| dense.add(hi, 0));
                for (at, &(key, n)) in incoming.iter().enumerate() {
                    if reserved.is_none() || dense.add_in_range(key, n).is_none() {
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

    pub(super) fn count_at(&self, key: i32) -> u64 {
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
    pub(super) fn take(&mut self, key: i32, n: u64) {
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
    pub(super) fn visit(&self, mut f: impl FnMut(i32, u64) -> bool) {
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
