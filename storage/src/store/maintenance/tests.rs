//! Tests of how partitions are grouped and folded in passes.

use super::*;
use object_store::path::Path;

fn file(name: &str, times: Option<(EpochMillis, EpochMillis)>) -> FileEntry {
    FileEntry {
        path: Path::from(name),
        size: 1,
        partition: 0,
        times,
    }
}

fn names(groups: &[Vec<FileEntry>]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| g.iter().map(|f| f.path.to_string()).collect())
        .collect()
}

#[test]
fn a_fold_in_passes_gives_the_rows_of_one_pass() {
    use crate::model::{MetricRow, Metrics, ServiceRef};
    let table = Table::ServiceMinute;
    let row = |i: u64, minute: EpochMillis, side: Side, calls: u64| MetricRow {
        minute,
        key: RowKey::Service {
            service: ServiceRef::service("ns", format!("s{i}")),
        },
        side,
        metrics: Metrics {
            calls,
            ..Metrics::default()
        },
    };
    let mut rows = Vec::new();
    for i in 0..300 {
        rows.push(row(i, 0, Side::Server, i + 1));
        if i % 2 == 0 {
            // Covered by the server side of the same minute: not counted.
            rows.push(row(i, 0, Side::Client, 1000));
        }
        // Only the client reported this minute: counted on the client side.
        rows.push(row(i, MINUTE_MS, Side::Client, 2));
    }
    let batch = batch::to_batch(table, &rows).unwrap();
    let fold_in = |passes: u64| {
        let mut out = Vec::new();
        for pass in 0..passes {
            let mut fold = Fold::new(Rows::Metrics(table), HOUR_MS, KeysOfPass::of(pass, passes));
            for phase in 0..fold.phases() {
                for slice in slices_of(&batch) {
                    fold.add_minutes(phase, &slice).unwrap();
                }
            }
            fold.group_done();
            let rolled = batch::from_batch(table, &fold.finish().unwrap()).unwrap();
            assert!(rolled.len() < 600 || passes == 1, "a pass took every key");
            out.extend(
                rolled
                    .into_iter()
                    .map(|r| (format!("{:?}", r.key), r.side, r.minute, r.metrics.calls)),
            );
        }
        out.sort_by(|a, b| (&a.0, a.1 as u8).cmp(&(&b.0, b.1 as u8)));
        out
    };
    let once = fold_in(1);
    assert_eq!(once.len(), 600);
    assert_eq!(
        once.iter().map(|r| r.3).sum::<u64>(),
        (1..=300).sum::<u64>() + 600
    );
    assert_eq!(fold_in(3), once);
}

#[test]
fn files_whose_minutes_overlap_are_read_together_and_in_time_order() {
    let m = MINUTE_MS;
    let files = [
        file("c", Some((2 * m, 2 * m))),
        file("a", Some((0, 0))),
        file("late-b", Some((m, 2 * m))),
        file("b", Some((m, m))),
        file("d", Some((4 * m, 4 * m))),
    ];
    assert_eq!(
        names(&overlapping_groups(&files, HOUR_MS)),
        [vec!["a"], vec!["b", "late-b", "c"], vec!["d"]]
    );
    // A file of unknown times may hold any minute of the hour: one group.
    let unknown = [
        file("a", Some((0, 0))),
        file("x", None),
        file("d", Some((4 * m, 4 * m))),
    ];
    assert_eq!(
        names(&overlapping_groups(&unknown, HOUR_MS)),
        [vec!["a", "x", "d"]]
    );
}
