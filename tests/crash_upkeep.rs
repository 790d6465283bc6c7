//! `kill -9` in the middle of upkeep: `meshscope maintain` is made to die
//! (`MESHSCOPE_CRASH_AT`) at each named point of each file replacement a pass makes
//! (compactions, hour and day rollups, retention), every time on a fresh copy of one data
//! directory. After each death a reader sees every row once in every tier; the next pass
//! finishes the work, and the totals are exactly those of the rows written.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use meshscope_storage::{MINUTE_MS, MetricRow};
use support::rows::{service_row, store_without_upkeep};

/// 2025-11-23T00:00:00Z: day 0.
const T0: i64 = 1_763_856_000_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

const POINTS: [&str; 4] = [
    "file-synced",
    "replacement-recorded",
    "replacement-renamed",
    "replacement-deleted",
];

/// A server-side row of `shop/cart` with `calls` calls.
fn row(minute: i64, calls: u64) -> MetricRow {
    service_row(minute, "cart", calls)
}

/// Minutes of day 0, hours 0 and 1, and of day 1, hour 0, each written as its own file.
fn first_rows() -> Vec<MetricRow> {
    vec![
        row(T0, 3),
        row(T0 + MINUTE_MS, 4),
        row(T0 + 2 * MINUTE_MS, 5),
        row(T0 + HOUR, 6),
        row(T0 + HOUR + MINUTE_MS, 7),
        row(T0 + DAY, 20),
        row(T0 + DAY + MINUTE_MS, 30),
    ]
}

/// Late minutes written after the first pass: day 0's hour 1 and day 1's hour 0 must be
/// rolled up again, and day 0 with them.
fn late_rows() -> Vec<MetricRow> {
    vec![
        row(T0 + HOUR + 2 * MINUTE_MS, 100),
        row(T0 + DAY + 2 * MINUTE_MS, 1000),
    ]
}

async fn write_minutes(data: &Path, rows: Vec<MetricRow>) {
    let store = store_without_upkeep(data).await;
    for row in rows {
        store.append_closed(vec![row]).await.unwrap();
    }
}

/// `meshscope maintain` as of `at`, dying at `crash_at` if given: whether it succeeded,
/// its output and its error output.
fn maintain(data: &Path, config: &Path, at: &str, crash_at: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshscope"));
    command
        .args(["maintain", "--data-dir"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["--at", at])
        .env("RUST_LOG", "warn");
    if let Some(point) = crash_at {
        command.env("MESHSCOPE_CRASH_AT", point);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Calls per hour (or day) bucket of a tier, read by `meshscope sql` as a reader beside
/// a server would.
fn calls_by(data: &Path, table: &str, bucket_ms: i64) -> BTreeMap<i64, u64> {
    let query = format!(
        "SELECT (CAST(minute AS BIGINT) / {bucket_ms}) * {bucket_ms} AS bucket, \
         CAST(sum(calls) AS BIGINT) AS calls FROM {table} GROUP BY 1 ORDER BY 1"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["sql", "--format", "csv", "--data-dir"])
        .arg(data)
        .arg(&query)
        .env_remove("RUST_LOG")
        .env_remove("MESHSCOPE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .skip(1)
        .map(|line| {
            let (bucket, calls) = line.split_once(',').unwrap();
            (bucket.parse().unwrap(), calls.parse().unwrap())
        })
        .collect()
}

fn sum_of(rows: &[MetricRow], from: i64, to: i64) -> u64 {
    rows.iter()
        .filter(|r| (from..to).contains(&r.minute))
        .map(|r| r.metrics.calls)
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upkeep_killed_at_any_step_neither_loses_nor_doubles_rows() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let defaults = dir.path().join("defaults.toml");
    std::fs::write(&defaults, "").unwrap();
    let config = dir.path().join("meshscope.toml");
    // Minutes are kept a day: the second pass expires day 0's hour 0 of minutes.
    std::fs::write(&config, "[storage.retention]\nminute_secs = 86400\n").unwrap();
    write_minutes(&pristine, first_rows()).await;
    let (ok, out) = maintain(&pristine, &defaults, "2025-11-24T01:10:00Z", None);
    assert!(ok, "{out}");
    write_minutes(&pristine, late_rows()).await;

    let all: Vec<MetricRow> = first_rows().into_iter().chain(late_rows()).collect();
    let first = first_rows();
    let hours = [T0, T0 + HOUR, T0 + DAY];
    // Each hour's calls, as of the first pass and with the late minutes.
    let before: BTreeMap<i64, u64> = hours
        .iter()
        .map(|&h| (h, sum_of(&first, h, h + HOUR)))
        .collect();
    let after: BTreeMap<i64, u64> = hours
        .iter()
        .map(|&h| (h, sum_of(&all, h, h + HOUR)))
        .collect();
    let day0_before = sum_of(&first, T0, T0 + DAY);
    let day0_after = sum_of(&all, T0, T0 + DAY);

    // What a finished second pass leaves: day 0's hour 0 of minutes expired, every hour
    // rolled up with its late minutes, day 0 rolled up again.
    let finished = |data: &Path, context: &str| {
        let minutes = calls_by(data, "service_minute", HOUR);
        let want_minutes: BTreeMap<i64, u64> = after
            .iter()
            .filter(|(h, _)| **h != T0)
            .map(|(h, c)| (*h, *c))
            .collect();
        assert_eq!(minutes, want_minutes, "minutes, {context}");
        assert_eq!(
            calls_by(data, "service_hour", HOUR),
            after,
            "hours, {context}"
        );
        assert_eq!(
            calls_by(data, "service_day", DAY),
            BTreeMap::from([(T0, day0_after)]),
            "days, {context}"
        );
    };

    let mut crashes = 0;
    for point in POINTS {
        for nth in 1.. {
            let crash_at = format!("{point}:{nth}");
            let data = dir.path().join(format!("run-{point}-{nth}"));
            copy_dir(&pristine, &data);
            let (ok, out) = maintain(&data, &config, "2025-11-24T01:20:00Z", Some(&crash_at));
            if ok {
                // The pass reaches this point fewer than `nth` times.
                finished(&data, &format!("{crash_at} never reached"));
                break;
            }
            assert!(out.contains("dying at"), "{crash_at}: {out}");
            crashes += 1;
            let context = format!("after dying at {crash_at}");

            // Each tier as it stands: every bucket whole, old or new, never summed twice.
            let minutes = calls_by(&data, "service_minute", HOUR);
            for (hour, calls) in &after {
                let seen = minutes.get(hour).copied();
                // Day 0's hour 0 is expired as a whole or not at all.
                let expired = *hour == T0 && seen.is_none();
                assert!(
                    expired || seen == Some(*calls),
                    "minutes of {hour}: {seen:?}, {context}"
                );
            }
            let rolled = calls_by(&data, "service_hour", HOUR);
            for hour in hours {
                let seen = rolled.get(&hour).copied();
                assert!(
                    seen == Some(before[&hour]) || seen == Some(after[&hour]),
                    "hour {hour}: {seen:?}, {context}"
                );
            }
            let day = calls_by(&data, "service_day", DAY).get(&T0).copied();
            assert!(
                day == Some(day0_before) || day == Some(day0_after),
                "day 0: {day:?}, {context}"
            );

            let (ok, out) = maintain(&data, &config, "2025-11-24T01:20:00Z", None);
            assert!(ok, "{context}: {out}");
            finished(&data, &context);
            // Nothing is left to do, and nothing is done again.
            let (ok, out) = maintain(&data, &config, "2025-11-24T01:20:00Z", None);
            assert!(ok, "{out}");
            let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(
                (
                    &report["files_compacted"],
                    &report["hours_rolled_up"],
                    &report["days_rolled_up"],
                    &report["files_expired"]
                ),
                (&0.into(), &0.into(), &0.into(), &0.into()),
                "{context}"
            );
            finished(&data, &context);
            assert!(
                !data
                    .join("replacing")
                    .read_dir()
                    .is_ok_and(|mut d| d.next().is_some())
            );
        }
    }
    // Two hours (each a compaction with its rollup), a day and the retention, each
    // interrupted after its record, its renames and its deletes (retention has no
    // renames: it dies after its deletes when asked to die after renames one more time).
    assert!(crashes >= 10, "only {crashes} crashes were made");
}
