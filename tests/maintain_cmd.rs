//! `meshscope maintain`: one upkeep pass over a data directory, as of a chosen time.

mod support;

use std::process::Command;

use meshscope_storage::{MINUTE_MS, MetricRow};
use support::rows::{service_row, store_without_upkeep};

/// 2025-11-23T00:00:00Z.
const T0: i64 = 1_763_856_000_000;

/// A server-side row of `shop/cart` with `calls` calls.
fn row(minute: i64, calls: u64) -> MetricRow {
    service_row(minute, "cart", calls)
}

fn meshscope(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn maintain_compacts_and_rolls_up_an_hour_as_of_the_time_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = store_without_upkeep(&data).await;
        // Two minutes closed one after the other: two files of one hour.
        store.append_closed(vec![row(T0, 3)]).await.unwrap();
        store
            .append_closed(vec![row(T0 + MINUTE_MS, 4)])
            .await
            .unwrap();
    }
    let data = data.display().to_string();

    // What a pass did as of `at`: files compacted, hours rolled up and ten-minute blocks
    // summarized.
    let maintain_at = |at: &str| {
        let (ok, out, err) = meshscope(&["maintain", "--data-dir", &data, "--at", at]);
        assert!(ok, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            report["files_compacted"].clone(),
            report["hours_rolled_up"].clone(),
            report["blocks_summarized"].clone(),
        )
    };
    // Within the hour and its settling time no compaction is due, but the block of the
    // two minutes is closed and summarized; then the hour is compacted, which makes its
    // one file of the two, and the block is summarized again from that file.
    assert_eq!(
        maintain_at("2025-11-23T01:02:00Z"),
        (0.into(), 0.into(), 1.into())
    );
    assert_eq!(
        maintain_at("2025-11-23T01:10:00Z"),
        (2.into(), 1.into(), 1.into())
    );

    let (ok, out, err) = meshscope(&[
        "sql",
        "--data-dir",
        &data,
        "--format",
        "csv",
        "SELECT (SELECT count(*) FROM service_minute), (SELECT sum(calls) FROM service_hour)",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().nth(1), Some("2,7"), "{out}");

    let missing = dir.path().join("nowhere").display().to_string();
    let (ok, _, err) = meshscope(&["maintain", "--data-dir", &missing]);
    assert!(!ok);
    assert!(err.contains("no data directory at"), "{err}");
}
