//! Damaged Parquet files at start: one cut short, one overwritten with garbage. A real
//! `meshscope serve` moves both aside to `quarantine/` with a reason, counts them in
//! `/metrics`, and serves the rest.

mod support;

use std::io::{Seek, SeekFrom, Write};

use meshscope_storage::MINUTE_MS;
use support::rows::{service_row, store_without_upkeep};
use support::{Meshscope, files_under, meshscope_sql};

/// 2025-11-23T00:00:00Z.
const T0: i64 = 1_763_856_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn damaged_files_are_moved_aside_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = store_without_upkeep(&data).await;
        // One file each, in this order.
        for (at, service, calls) in [(0, "cart", 3), (1, "web", 5), (2, "db", 7)] {
            store
                .append_closed(vec![service_row(T0 + at * MINUTE_MS, service, calls)])
                .await
                .unwrap();
        }
    }
    let files: Vec<String> = files_under(&data)
        .into_iter()
        .filter(|f| f.starts_with("service_minute/") && f.ends_with(".parquet"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    // Names sort in the order the files were written: cart, web, db.
    let (cart, web) = (&files[0], &files[1]);
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .open(data.join(cart))
        .unwrap();
    let size = cut.metadata().unwrap().len();
    cut.set_len(size / 2).unwrap();
    let mut garbled = std::fs::OpenOptions::new()
        .write(true)
        .open(data.join(web))
        .unwrap();
    let size = garbled.metadata().unwrap().len();
    garbled.seek(SeekFrom::Start(size / 3)).unwrap();
    garbled
        .write_all(&vec![0x5a; (size - size / 3) as usize])
        .unwrap();
    drop((cut, garbled));

    let server = Meshscope::start(dir.path(), &[]).await;
    let url = format!("http://{}", server.http);
    let (code, out, err) = meshscope_sql(&[
        "--server",
        &url,
        "--format",
        "csv",
        "SELECT service_name, CAST(sum(calls) AS BIGINT) AS calls FROM service_minute \
         GROUP BY 1 ORDER BY 1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().skip(1).collect::<Vec<_>>(), ["db,7"], "{out}");

    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains(r#"meshscope_quarantined_files_total{kind="parquet"} 2"#),
        "{metrics}"
    );
    let now_under = files_under(&data);
    for damaged in [cart, web] {
        assert!(!now_under.contains(damaged), "{damaged} still served");
        let moved = format!("quarantine/{damaged}");
        assert!(now_under.contains(&moved), "{moved} missing: {now_under:?}");
        let reason = std::fs::read_to_string(data.join(format!("{moved}.reason"))).unwrap();
        assert!(!reason.trim().is_empty());
    }
    assert!(
        server.proc.log_text().contains("moved aside"),
        "{}",
        server.proc.log_text()
    );
}
