//! A minute is written a few seconds after it ends; entries for it that come later, within
//! the late allowance, count as if they had come in time once their late rows are written,
//! in the minute reads and in the rollups.

mod support;

use std::sync::OnceLock;

use meshscope_collector::CollectorConfig;
use meshscope_proto::pb::envoy::config::core::v3::Node;
use meshscope_proto::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries,
};
use meshscope_proto::pb::google::protobuf::{Duration, Timestamp, UInt32Value};
use meshscope_storage::{KeyFilter, ServiceRef, SqlLimits, Table, TimeRange};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use support::{client, serve};

/// On an hour boundary (500,000 hours), so that the hour rollup is easy to ask for.
const HOUR: i64 = 500_000 * 3_600_000;
const MINUTE: i64 = 60_000;

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

fn counter(name: &str) -> u64 {
    recorder()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn message(start_ms: i64, count: usize, status: u32) -> StreamAccessLogsMessage {
    let entry = HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            start_time: Some(Timestamp {
                seconds: start_ms / 1000,
                nanos: ((start_ms % 1000) * 1_000_000) as i32,
            }),
            duration: Some(Duration {
                seconds: 0,
                nanos: 5_000_000,
            }),
            upstream_cluster: "inbound|8080||".into(),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: 1,
            path: "/orders".into(),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: status }),
            ..Default::default()
        }),
        ..Default::default()
    };
    StreamAccessLogsMessage {
        identifier: Some(Identifier {
            node: Some(Node {
                id: "orders-1".into(),
                cluster: "orders".into(),
                ..Default::default()
            }),
            log_name: "orders_inbound_http".into(),
        }),
        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
            log_entry: vec![entry; count],
        })),
    }
}

/// Calls and errors of the service over `range`, from whatever tables answer it.
async fn figures(served: &support::Served, range: TimeRange) -> (u64, u64) {
    let filter = KeyFilter {
        service: Some(ServiceRef::service("", "orders")),
        ..Default::default()
    };
    let rows = served
        .store
        .aggregate(Table::ServiceMinute, range, &filter)
        .await
        .unwrap();
    (
        rows.iter().map(|a| a.metrics.calls).sum(),
        rows.iter().map(|a| a.metrics.errors).sum(),
    )
}

#[tokio::test]
async fn late_entries_join_their_minute_once_written() {
    recorder();
    let config = CollectorConfig::default();
    assert_eq!(
        (config.write_after_secs, config.late_allowance_secs),
        (10, 120)
    );
    let served = serve(config, HOUR + 5_000).await;
    let first_minute = TimeRange {
        start: HOUR,
        end: HOUR + MINUTE,
    };
    let mut c = client(served.addr).await;
    c.stream_access_logs(tokio_stream::iter(vec![message(HOUR + 1_000, 3, 200)]))
        .await
        .unwrap();
    served.collector.tick(true).await.unwrap();
    assert_eq!(
        figures(&served, first_minute).await,
        (3, 0),
        "read while unclosed"
    );

    // Fifteen seconds after the minute: written, and no longer held.
    served.clock.set(HOUR + MINUTE + 15_000);
    served.collector.tick(true).await.unwrap();
    assert_eq!(served.collector.unclosed_rows().len(), 0);
    assert_eq!(
        figures(&served, first_minute).await,
        (3, 0),
        "read from its file"
    );

    let late_before = counter("meshscope_late_row_samples_total");
    let too_old_before = counter("meshscope_als_entries_rejected_total{reason=\"too_old\"}");
    c.stream_access_logs(tokio_stream::iter(vec![message(HOUR + 2_000, 2, 503)]))
        .await
        .unwrap();
    served.collector.flush_now().await.unwrap();
    assert!(
        counter("meshscope_late_row_samples_total") > late_before,
        "the late samples are counted"
    );
    assert!(
        !served.collector.unclosed_rows().is_empty(),
        "held as late rows"
    );
    served.collector.tick(true).await.unwrap();
    assert_eq!(
        figures(&served, first_minute).await,
        (3, 0),
        "late rows are read once written, not before"
    );

    // Past the allowance: the late rows are written beside the minute's first rows.
    served.clock.set(HOUR + MINUTE + 121_000);
    served.collector.tick(true).await.unwrap();
    assert_eq!(served.collector.unclosed_rows().len(), 0);
    assert_eq!(figures(&served, first_minute).await, (5, 2));

    // And now the minute is closed for good.
    c.stream_access_logs(tokio_stream::iter(vec![message(HOUR + 3_000, 1, 200)]))
        .await
        .unwrap();
    served.collector.flush_now().await.unwrap();
    assert_eq!(
        counter("meshscope_als_entries_rejected_total{reason=\"too_old\"}") - too_old_before,
        1
    );

    // The hour rollup adds the minute's two sets of rows, as the minute reads do.
    let report = served.store.maintain(HOUR + 3 * 3_600_000).await.unwrap();
    assert!(report.hours_rolled_up >= 1, "{report:?}");
    let hour = TimeRange {
        start: HOUR,
        end: HOUR + 3_600_000,
    };
    assert_eq!(figures(&served, hour).await, (5, 2));
    let batches = served
        .store
        .sql(
            "SELECT CAST(SUM(calls) AS BIGINT) AS calls FROM service_hour \
             WHERE service_name = 'orders'",
            &SqlLimits::default(),
        )
        .await
        .unwrap();
    let calls = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<meshscope_storage::arrow::array::Int64Array>()
        .map(|a| a.value(0));
    assert_eq!(
        calls,
        Some(5),
        "the hour table itself holds both sets of rows"
    );
}
