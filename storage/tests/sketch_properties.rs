//! Property tests of the latency sketch through its public surface: merging in any order
//! (sketches or their bytes) equals inserting every sample into one sketch, removing what was
//! merged gives the first sketch back, the byte encoding round-trips exactly, refused bytes
//! change nothing, and quantiles stay within the documented relative error of the samples'.
//!
//! Most samples are multiples of 2^-10 ms small enough that every sum of them is exact in
//! an `f64`: the sketch's total then does not depend on the order of additions, and whole
//! encodings can be compared byte for byte.

use meshscope_storage::LatencySketch;
use proptest::prelude::*;

/// The relative accuracy the sketch documents: every quantile within 1% of the true value.
const DOCUMENTED_RELATIVE_ERROR: f64 = 0.01;
/// Latencies at or under one microsecond are documented to count as zero.
const ZERO_AT_OR_UNDER_MS: f64 = 1.0e-3;

// --- strategies -------------------------------------------------------------------------

/// Values a proxy can report that the sketch clamps to zero: zero itself, anything at or
/// under a microsecond, negative (a clock stepping back) and non-finite values.
fn clamped_to_zero() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1.0 / 1024.0),
        Just(-3.5),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ]
}

/// `m · 2^e` ms with `m < 2^mantissa_bits` and `e` in `exponents`: a multiple of 2^-10.
fn dyadic(
    mantissa_bits: u32,
    exponents: std::ops::RangeInclusive<i32>,
) -> impl Strategy<Value = f64> {
    (1u64..(1 << mantissa_bits), exponents).prop_map(|(m, e)| m as f64 * 2f64.powi(e))
}

/// Light samples: up to 2^32 ms (past the sketch's top bin, about eleven days), up to 160
/// of them, so any three sets sum exactly.
fn light_samples() -> impl Strategy<Value = Vec<f64>> {
    let value = prop_oneof![
        8 => dyadic(20, -10..=12),
        1 => clamped_to_zero(),
    ];
    proptest::collection::vec(value, 0..160)
}

/// A sketch as the test builds it: the samples added one by one, then merged into itself
/// `doublings` times. Doubling reaches bin counts that adding cannot in a test: past what a
/// sparse bin holds (2^16) and past 32 bits.
#[derive(Clone, Debug)]
struct Built {
    samples: Vec<f64>,
    doublings: u32,
}

impl Built {
    fn sketch(&self) -> LatencySketch {
        let mut sketch = LatencySketch::new();
        for &v in &self.samples {
            sketch.add(v);
        }
        for _ in 0..self.doublings {
            let copy = sketch.clone();
            sketch.merge(&copy);
        }
        sketch
    }
}

/// Heavy sketches: a few small samples (under 16 ms, sums under 2^8 ms) doubled up to 33
/// times, so totals stay under 2^41 ms and sums of three stay exact.
fn heavy() -> impl Strategy<Value = Built> {
    let value = prop_oneof![
        6 => dyadic(10, -10..=-6),
        1 => clamped_to_zero(),
    ];
    (proptest::collection::vec(value, 1..16), 0u32..=33).prop_map(|(mut samples, doublings)| {
        // Repeat one sample so that a bin is shared, and its count passes 2^32 when doubled.
        samples.push(samples[0]);
        Built { samples, doublings }
    })
}

fn light() -> impl Strategy<Value = Built> {
    light_samples().prop_map(|samples| Built {
        samples,
        doublings: 0,
    })
}

fn any_built() -> impl Strategy<Value = Built> {
    prop_oneof![3 => light(), 1 => heavy()]
}

/// A value as the sketch records it: what it clamps to zero is zero.
fn recorded(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

fn merged_in_order(sketches: &[LatencySketch], order: &[usize]) -> LatencySketch {
    let mut total = LatencySketch::new();
    for &at in order {
        total.merge(&sketches[at]);
    }
    total
}

fn merged_bytes_in_order(sketches: &[LatencySketch], order: &[usize]) -> LatencySketch {
    let mut total = LatencySketch::new();
    for &at in order {
        total.merge_bytes(&sketches[at].to_bytes()).unwrap();
    }
    total
}

const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merging_equals_inserting_every_sample_into_one_sketch(
        parts in proptest::collection::vec(light_samples(), 3),
    ) {
        let mut one = LatencySketch::new();
        for v in parts.iter().flatten() {
            one.add(*v);
        }
        let sketches: Vec<_> = parts
            .iter()
            .map(|samples| Built { samples: samples.clone(), doublings: 0 }.sketch())
            .collect();
        let expected = one.to_bytes();
        for order in ORDERS {
            prop_assert_eq!(merged_in_order(&sketches, &order).to_bytes(), expected.clone(), "merge {:?}", order);
            prop_assert_eq!(merged_bytes_in_order(&sketches, &order).to_bytes(), expected.clone(), "merge_bytes {:?}", order);
        }
        // The totals, from the samples themselves.
        let all: Vec<f64> = parts.iter().flatten().map(|v| recorded(*v)).collect();
        prop_assert_eq!(one.count(), all.len() as u64);
        prop_assert_eq!(one.sum(), (!all.is_empty()).then(|| all.iter().sum::<f64>()));
        let extremes = LatencySketch::extremes_of(&expected).unwrap();
        let min = all.iter().copied().reduce(f64::min);
        let max = all.iter().copied().reduce(f64::max);
        prop_assert_eq!(extremes, min.zip(max));
    }

    #[test]
    fn merging_is_independent_of_order(built in proptest::collection::vec(any_built(), 3)) {
        let sketches: Vec<_> = built.iter().map(Built::sketch).collect();
        let expected = merged_in_order(&sketches, &ORDERS[0]);
        prop_assert_eq!(expected.count(), sketches.iter().map(LatencySketch::count).sum::<u64>());
        let expected = expected.to_bytes();
        for order in ORDERS {
            prop_assert_eq!(merged_in_order(&sketches, &order).to_bytes(), expected.clone(), "merge {:?}", order);
            prop_assert_eq!(merged_bytes_in_order(&sketches, &order).to_bytes(), expected.clone(), "merge_bytes {:?}", order);
            // Starting from a sketch rather than from an empty one.
            let mut from_first = sketches[order[0]].clone();
            from_first.merge(&sketches[order[1]]);
            from_first.merge_bytes(&sketches[order[2]].to_bytes()).unwrap();
            prop_assert_eq!(from_first.to_bytes(), expected.clone(), "from the first of {:?}", order);
        }
    }

    #[test]
    fn removing_what_was_merged_gives_the_first_sketch_back(first in any_built(), second in any_built(), as_bytes in any::<bool>()) {
        let first = first.sketch();
        let second = second.sketch();
        let mut merged = first.clone();
        if as_bytes {
            merged.merge_bytes(&second.to_bytes()).unwrap();
        } else {
            merged.merge(&second);
        }
        merged.remove_bytes(&second.to_bytes()).unwrap();
        // Extremes do not come apart: the caller sets them for what is left.
        let first_bytes = first.to_bytes();
        if let Some((min, max)) = LatencySketch::extremes_of(&first_bytes).unwrap() {
            merged.set_extremes(min, max);
        }
        prop_assert_eq!(merged.count(), first.count());
        prop_assert_eq!(merged.to_bytes(), first_bytes);
    }

    #[test]
    fn removing_what_is_not_held_is_refused_and_changes_nothing(held in any_built(), other in any_built()) {
        let mut sketch = held.sketch();
        let other = other.sketch();
        let before = sketch.to_bytes();
        match sketch.remove_bytes(&other.to_bytes()) {
            Ok(()) => prop_assert_eq!(sketch.count(), held.sketch().count() - other.count()),
            Err(_) => prop_assert_eq!(sketch.to_bytes(), before),
        }
        if other.count() > held.sketch().count() {
            let mut sketch = held.sketch();
            prop_assert!(sketch.remove_bytes(&other.to_bytes()).is_err());
        }
    }

    #[test]
    fn the_byte_encoding_round_trips_exactly(built in any_built(), dirty in proptest::collection::vec(any::<u8>(), 0..64)) {
        let sketch = built.sketch();
        let bytes = sketch.to_bytes();
        let decoded = LatencySketch::from_bytes(&bytes).unwrap();
        prop_assert_eq!(decoded.to_bytes(), bytes.clone());
        prop_assert_eq!(decoded.count(), sketch.count());
        prop_assert_eq!(decoded.sum().map(f64::to_bits), sketch.sum().map(f64::to_bits));
        for q in [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            prop_assert_eq!(decoded.quantile(q).map(f64::to_bits), sketch.quantile(q).map(f64::to_bits), "q {}", q);
        }
        // Into a reused buffer: whatever it held is gone.
        let mut buffer = dirty;
        sketch.write_bytes(&mut buffer);
        prop_assert_eq!(buffer, bytes);
    }

    #[test]
    fn refused_bytes_change_nothing_and_never_panic(
        built in any_built(),
        junk in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut sketch = built.sketch();
        let before = sketch.to_bytes();
        let _ = LatencySketch::extremes_of(&junk);
        let _ = LatencySketch::from_bytes(&junk);
        if sketch.merge_bytes(&junk).is_err() {
            prop_assert_eq!(sketch.to_bytes(), before.clone());
        }
        let mut sketch = built.sketch();
        if sketch.remove_bytes(&junk).is_err() {
            prop_assert_eq!(sketch.to_bytes(), before);
        }
    }

    #[test]
    fn quantiles_stay_within_the_documented_relative_error(
        samples in proptest::collection::vec(
            prop_oneof![
                12 => (-6.9f64..20.5).prop_map(f64::exp),
                1 => clamped_to_zero(),
            ],
            1..400,
        ),
        qs in proptest::collection::vec(0.0f64..1.0, 1..8),
    ) {
        let mut sketch = LatencySketch::new();
        for &v in &samples {
            sketch.add(v);
        }
        let mut sorted: Vec<f64> = samples.iter().map(|v| recorded(*v)).collect();
        sorted.sort_by(f64::total_cmp);
        let last = sorted.len() - 1;
        prop_assert_eq!(sketch.quantile(0.0), Some(sorted[0]));
        prop_assert_eq!(sketch.quantile(1.0), Some(sorted[last]));
        let alpha = DOCUMENTED_RELATIVE_ERROR * (1.0 + 1e-9);
        for q in qs {
            // The true q-quantile lies between the samples at the ranks around q · (n − 1).
            let rank = q * last as f64;
            let (below, above) = (sorted[rank.floor() as usize], sorted[rank.ceil() as usize]);
            let low = if below > ZERO_AT_OR_UNDER_MS { below * (1.0 - alpha) } else { 0.0 };
            let high = if above > ZERO_AT_OR_UNDER_MS { above * (1.0 + alpha) } else { above };
            let estimate = sketch.quantile(q).unwrap();
            prop_assert!(
                low <= estimate && estimate <= high,
                "q {} gave {}, the samples there are {} and {}", q, estimate, below, above
            );
        }
        // Several quantiles in one pass give what each gives alone.
        let qs = [0.5, 0.9, 0.95, 0.99];
        let one_pass = sketch.quantiles(qs);
        for (q, got) in qs.into_iter().zip(one_pass) {
            prop_assert_eq!(got, sketch.quantile(q));
        }
    }
}
