//! Columns added after files were first written (`retries`, `identity_conflicts`, the
//! response flag kinds, the pairing counters and the overhead sketch): a file written
//! without them reads as 0 (an empty sketch) beside files written with them, in reads of
//! both sides, of one side, in SQL and through an hour's rollup.

use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use meshscope_storage::{KeyFilter, MINUTE_MS, Side, SqlLimits, Store, Table};

use crate::support::*;

/// Whether a column is one of those added later.
fn is_later(name: &str) -> bool {
    [
        "retries",
        "identity_conflicts",
        "paired",
        "client_only",
        "server_only",
        "overhead",
    ]
    .contains(&name)
        || name.starts_with("flag_")
}

/// Rewrites every edge minute file under `dir` without the later counters, as a store
/// from before them wrote it.
fn drop_later_columns(dir: &Path) {
    for file in files_under(dir) {
        if !file.starts_with("edge_minute/") || !file.ends_with(".parquet") {
            continue;
        }
        let path = dir.join(&file);
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader
            .map(|batch| {
                let batch = batch.unwrap();
                let keep: Vec<usize> = (0..batch.num_columns())
                    .filter(|&i| !is_later(batch.schema().field(i).name()))
                    .collect();
                batch.project(&keep).unwrap()
            })
            .collect();
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batches[0].schema(),
            None,
        )
        .unwrap();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.close().unwrap();
    }
}

#[tokio::test]
async fn files_without_the_later_counters_read_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store
            .append_closed(vec![
                row(T0, edge("web", "cart"), Side::Server, 30, 12.0),
                row(T0, edge("web", "cart"), Side::Client, 20, 12.0),
            ])
            .await
            .unwrap();
    }
    drop_later_columns(dir.path());
    let store = Store::open(config(dir.path())).await.unwrap();
    let mut client = row(T0 + MINUTE_MS, edge("web", "cart"), Side::Client, 10, 12.0);
    client.metrics.retries = 4;
    // UF (kind 5) three times, URX (kind 14) once; one request no callee logged.
    *client.metrics.response_flags.get_mut(5) += 3;
    *client.metrics.response_flags.get_mut(14) += 1;
    client.metrics.client_only = 1;
    let mut server = row(T0 + MINUTE_MS, edge("web", "cart"), Side::Server, 14, 12.0);
    server.metrics.identity_conflicts = 2;
    server.metrics.paired = 9;
    for overhead in [1.0, 2.0, 40.0] {
        server.metrics.overhead.add(overhead);
    }
    store.append_closed(vec![client, server]).await.unwrap();

    let window = all(T0, T0 + HOUR);
    let chosen = store
        .aggregate(Table::EdgeMinute, window, &KeyFilter::default())
        .await
        .unwrap();
    assert_eq!(chosen.len(), 1);
    // The server side reported both minutes: 30 + 14 calls, its conflicts only.
    assert_eq!(chosen[0].metrics.calls, 44);
    assert_eq!(chosen[0].metrics.identity_conflicts, 2);
    assert_eq!(chosen[0].metrics.paired, 9);
    assert_eq!(chosen[0].metrics.overhead.count(), 3);
    let client_side = store
        .aggregate(
            Table::EdgeMinute,
            window,
            &KeyFilter {
                side: Some(Side::Client),
                ..KeyFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (client_side[0].metrics.calls, client_side[0].metrics.retries),
        (30, 4)
    );
    assert_eq!(
        client_side[0]
            .metrics
            .response_flags
            .nonzero()
            .collect::<Vec<_>>(),
        vec![("UF", 3), ("URX", 1)]
    );
    assert_eq!(client_side[0].metrics.client_only, 1);

    let sums = |query: &'static str| {
        let store = &store;
        async move {
            let batches = store.sql(query, &SqlLimits::default()).await.unwrap();
            let value = |c: usize| batches[0].column(c).as_primitive::<Int64Type>().value(0);
            (value(0), value(1))
        }
    };
    let query = "SELECT CAST(coalesce(sum(retries), 0) AS BIGINT), \
                 CAST(coalesce(sum(identity_conflicts), 0) AS BIGINT) FROM edge_minute";
    assert_eq!(sums(query).await, (4, 2));
    let flags = "SELECT CAST(coalesce(sum(flag_uf), 0) AS BIGINT), \
                 CAST(coalesce(sum(paired), 0) AS BIGINT) FROM edge_minute";
    assert_eq!(sums(flags).await, (3, 9));

    // Compaction and the hour's rollup take old and new files together.
    store.maintain(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(sums(query).await, (4, 2));
    let hour = "SELECT CAST(sum(calls) AS BIGINT), \
                CAST(coalesce(sum(identity_conflicts), 0) AS BIGINT) FROM edge_hour \
                WHERE side = 'server'";
    assert_eq!(sums(hour).await, (44, 2));
    let hour_pairs = "SELECT CAST(coalesce(sum(paired), 0) AS BIGINT), \
                      CAST(round(quantile(merge_sketch(overhead), 0.5)) AS BIGINT) FROM edge_hour \
                      WHERE side = 'server'";
    // The overhead's median of 1, 2 and 40 ms is 2 ms, within the sketch's error.
    assert_eq!(sums(hour_pairs).await, (9, 2));
}
