//! Tests of the sketch: accuracy, merges, removal and the byte form.

use super::*;

#[test]
fn the_log_constant_is_the_log_of_gamma() {
    assert_eq!(LN_GAMMA, GAMMA.ln());
    assert_eq!(key_of(MIN_VALUE_MS * 1.0001), MIN_KEY);
    assert!(value_of(MAX_KEY) > 9.0e8, "top bin is about eleven days");
}

/// The bins of `values` in a sketch: what `remove` must leave behind.
fn sketch_of(values: impl IntoIterator<Item = f64>) -> LatencySketch {
    let mut sketch = LatencySketch::new();
    for value in values {
        sketch.add(value);
    }
    sketch
}

#[test]
fn removing_a_merged_sketch_leaves_the_bins_of_the_rest() {
    // Sparse, dense and a zero: a quiet minute, a busy one and a sub-microsecond call.
    let quiet = sketch_of([3.0, 7.5, 7.5, 40.0]);
    let busy = sketch_of((1..=2_000).map(|i| f64::from(i) / 7.0));
    let tiny = sketch_of([0.0, 12.0]);
    for (kept, gone) in [
        (&quiet, &busy),
        (&busy, &quiet),
        (&tiny, &busy),
        (&busy, &tiny),
    ] {
        let mut window = kept.clone();
        window.merge(gone);
        window.remove_bytes(&gone.to_bytes()).unwrap();
        window.set_extremes(kept.min, kept.max);
        assert_eq!(window.count(), kept.count());
        assert_eq!(window.zero, kept.zero);
        assert!((window.sum - kept.sum).abs() < 1e-6 * kept.sum.max(1.0));
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(window.quantile(q), kept.quantile(q), "q={q}");
        }
        let bins = |s: &LatencySketch| {
            let mut all = Vec::new();
            s.bins.visit(|k, n| {
                all.push((k, n));
                true
            });
            all
        };
        assert_eq!(bins(&window), bins(kept));
    }
}

#[test]
fn removing_everything_empties_and_removing_more_is_refused() {
    let minute = sketch_of([5.0, 9.0]);
    let mut window = minute.clone();
    window.remove_bytes(&minute.to_bytes()).unwrap();
    assert_eq!(window, LatencySketch::new());

    let mut window = sketch_of([5.0]);
    let before = window.clone();
    let error = window.remove_bytes(&minute.to_bytes()).unwrap_err();
    assert!(error.to_string().contains("does not hold"), "{error}");
    assert_eq!(window, before, "a refused removal changes nothing");
    assert_eq!(
        LatencySketch::extremes_of(&minute.to_bytes()).unwrap(),
        Some((5.0, 9.0))
    );
}

#[test]
fn quantiles_stay_within_one_percent() {
    let mut sketch = LatencySketch::new();
    for i in 1..=10_000 {
        sketch.add(i as f64 / 10.0);
    }
    assert!(
        matches!(sketch.bins, Bins::Dense(_)),
        "many bins turn dense"
    );
    for q in [0.01, 0.5, 0.95, 0.99] {
        let truth = q * 1000.0;
        let got = sketch.quantile(q).unwrap();
        assert!(
            (got - truth).abs() / truth <= 0.011,
            "q={q} got={got} truth={truth}"
        );
    }
    assert_eq!(sketch.quantile(0.0), Some(0.1));
    assert_eq!(sketch.quantile(1.0), Some(1000.0));
}

#[test]
fn few_values_stay_sparse_and_small() {
    let mut sketch = LatencySketch::new();
    for v in [3.0, 2.99, 12.0, 250.0, 250.0, 0.0] {
        sketch.add(v);
    }
    let Bins::Sparse(bins) = &sketch.bins else {
        panic!("few values stay sparse");
    };
    assert_eq!(bins.len(), 3, "3.0 and 2.99 share a bin, 250 counts twice");
    assert_eq!(sketch.quantile(0.1), Some(0.0), "the zero is the lowest");
    let p99 = sketch.quantile(0.99).unwrap();
    assert!((p99 - 250.0).abs() / 250.0 <= 0.01, "{p99}");
    assert!(sketch.to_bytes().len() < 40, "{}", sketch.to_bytes().len());
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
    for q in [0.0, 0.25, 0.5, 0.99, 1.0] {
        assert_eq!(restored.quantile(q), all.quantile(q), "q={q}");
    }
    assert_eq!(restored.sum(), all.sum());
    let empty = LatencySketch::from_bytes(&LatencySketch::new().to_bytes()).unwrap();
    assert_eq!(empty.quantile(0.5), None);
    assert_eq!(empty.sum(), None);
}

#[test]
fn counts_past_the_narrow_widths_are_kept() {
    let mut one = LatencySketch::new();
    one.add(5.0);
    let mut big = LatencySketch::new();
    for _ in 0..70_000 {
        big.add(5.0);
    }
    assert!(matches!(big.bins, Bins::Dense(_)), "past u16 in one bin");
    // Doubling by merging reaches 2^32 in one bin after a few dozen steps.
    for _ in 0..17 {
        let copy = big.clone();
        big.merge(&copy);
    }
    big.merge(&one);
    assert!(matches!(big.bins, Bins::Wide(_)));
    assert_eq!(big.count(), 70_000 * (1 << 17) + 1);
    let restored = LatencySketch::from_bytes(&big.to_bytes()).unwrap();
    assert_eq!(restored.count(), big.count());
    let p50 = restored.quantile(0.5).unwrap();
    assert!((p50 - 5.0).abs() / 5.0 <= 0.01);
}

#[test]
fn bad_bytes_are_refused_with_a_reason() {
    let mut sketch = LatencySketch::new();
    sketch.add(10.0);
    sketch.add(20.0);
    let good = sketch.to_bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![9, 0], "format"),
        (good[..good.len() - 2].to_vec(), "add up"),
        (good[..10].to_vec(), "cut short"),
        ([good.clone(), vec![0, 1]].concat(), "out of order"),
        (vec![1, 0, 7], "trailing"),
    ];
    for (bytes, reason) in cases {
        let error = LatencySketch::from_bytes(&bytes).unwrap_err().to_string();
        assert!(error.contains(reason), "{error} should say {reason}");
    }
}

#[test]
fn merging_bytes_equals_merging_sketches_and_refusals_change_nothing() {
    let mut a = LatencySketch::new();
    let mut b = LatencySketch::new();
    for i in 0..300 {
        a.add(1.0 + i as f64);
        b.add(0.5 * i as f64);
    }
    let mut by_sketch = a.clone();
    by_sketch.merge(&b);
    let mut by_bytes = a.clone();
    by_bytes.merge_bytes(&b.to_bytes()).unwrap();
    assert_eq!(by_bytes, by_sketch);
    let mut bad = b.to_bytes();
    bad.pop();
    bad.pop();
    assert!(by_bytes.merge_bytes(&bad).is_err());
    assert_eq!(by_bytes, by_sketch, "a refused encoding adds nothing");
    let mut empty = LatencySketch::new();
    empty.merge_bytes(&a.to_bytes()).unwrap();
    assert_eq!(empty, a);
}

#[test]
fn quantiles_in_one_pass_equal_quantiles_one_by_one() {
    let quiet = sketch_of([3.0, 7.5, 7.5, 40.0]);
    let busy = sketch_of((1..=2_000).map(|i| f64::from(i) / 7.0));
    let zeros = sketch_of([0.0, 0.0, 0.0, 12.0]);
    let qs = [0.0, 0.25, 0.5, 0.95, 0.99, 0.999, 1.0];
    for sketch in [&quiet, &busy, &zeros, &LatencySketch::new()] {
        let one_by_one: Vec<Option<f64>> = qs.iter().map(|&q| sketch.quantile(q)).collect();
        assert_eq!(sketch.quantiles(qs).to_vec(), one_by_one);
    }
}

#[test]
fn merging_decoded_bins_keeps_every_count_across_every_representation() {
    // Sparse into sparse that overflows into dense, dense into sparse, a count past a
    // sparse bin's sixteen bits, and past a dense bin's thirty-two.
    let few = sketch_of((1..=30).map(f64::from));
    let more = sketch_of((20..=60).map(f64::from));
    let busy = sketch_of((1..=2_000).map(|i| f64::from(i) / 7.0));
    let mut heavy = LatencySketch::new();
    for _ in 0..70_000 {
        heavy.add(5.0);
    }
    for (a, b) in [
        (&few, &more),
        (&more, &few),
        (&few, &busy),
        (&busy, &few),
        (&heavy, &few),
        (&few, &heavy),
    ] {
        let mut by_bytes = a.clone();
        by_bytes.merge_bytes(&b.to_bytes()).unwrap();
        let mut by_adding = a.clone();
        b.bins.visit(|key, n| {
            by_adding.bins.add(key, n);
            true
        });
        let mut bins_by_bytes = Vec::new();
        by_bytes.bins.visit(|key, n| {
            bins_by_bytes.push((key, n));
            true
        });
        let mut bins_by_adding = Vec::new();
        by_adding.bins.visit(|key, n| {
            bins_by_adding.push((key, n));
            true
        });
        assert_eq!(bins_by_bytes, bins_by_adding);
        assert_eq!(by_bytes.count(), a.count() + b.count());
    }
    let mut wide = heavy.clone();
    for _ in 0..62_000 {
        wide.merge(&heavy);
    }
    let mut wider = wide.clone();
    wider.merge_bytes(&wide.to_bytes()).unwrap();
    assert_eq!(wider.count(), 2 * 62_001 * 70_000);
    assert_eq!(wider.quantile(0.5), heavy.quantile(0.5));
    assert!(matches!(wider.bins, Bins::Wide(_)), "a bin past u32 widens");
}

#[test]
fn huge_and_tiny_values_are_clamped_not_lost() {
    let mut sketch = LatencySketch::new();
    for v in [f64::NAN, -5.0, 1.0e-9, 1.0e15, f64::INFINITY] {
        sketch.add(v);
    }
    assert_eq!(sketch.count(), 5);
    assert_eq!(sketch.quantile(1.0), Some(1.0e15));
    let restored = LatencySketch::from_bytes(&sketch.to_bytes()).unwrap();
    assert_eq!(restored, sketch);
}
