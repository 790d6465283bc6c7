//! Telemetry comes from proxies we do not control: bad streams and entries get a clear
//! status or a counted rejection, memory stays bounded, and other streams go on.

mod support;

use std::sync::OnceLock;

use bytes::Bytes;
use meshscope_collector::CollectorConfig;
use meshscope_collector::codec::PreEncodedRequests;
use meshscope_proto::pb::envoy::config::core::v3::Node;
use meshscope_proto::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries,
};
use meshscope_proto::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use meshscope_proto::pb::google::protobuf::{Duration, Timestamp, UInt32Value};
use meshscope_storage::{KeyFilter, RowKey, ServiceRef, Table, TimeRange};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use support::{client, serve};
use tonic::Code;

const NOW: i64 = 1_800_000_000_000;

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

/// The value of a counter line in the Prometheus text, 0 when absent.
fn counter(name_and_labels: &str) -> u64 {
    recorder()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn identifier(cluster: &str) -> Option<Identifier> {
    Some(Identifier {
        node: Some(Node {
            id: format!("{cluster}-1"),
            cluster: cluster.into(),
            ..Default::default()
        }),
        log_name: format!("{cluster}_inbound_http"),
    })
}

fn entry(start_ms: i64, path: &str) -> HttpAccessLogEntry {
    HttpAccessLogEntry {
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
            path: path.into(),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: 200 }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn message(
    identifier: Option<Identifier>,
    entries: Vec<HttpAccessLogEntry>,
) -> StreamAccessLogsMessage {
    StreamAccessLogsMessage {
        identifier,
        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
            log_entry: entries,
        })),
    }
}

fn range() -> TimeRange {
    TimeRange {
        start: NOW - 3_600_000,
        end: NOW + 3_600_000,
    }
}

async fn service_calls(served: &support::Served, service: &str) -> u64 {
    served.collector.flush_now().await.unwrap();
    let filter = KeyFilter {
        service: Some(ServiceRef::service("", service)),
        ..Default::default()
    };
    served
        .store
        .aggregate(Table::ServiceMinute, range(), &filter)
        .await
        .unwrap()
        .iter()
        .map(|a| a.metrics.calls)
        .sum()
}

#[tokio::test]
async fn a_stream_without_identifier_is_refused_and_others_go_on() {
    recorder();
    let served = serve(CollectorConfig::default(), NOW).await;
    let before = counter("meshscope_als_entries_rejected_total{reason=\"no_identifier\"}");
    let mut c = client(served.addr).await;
    let status = c
        .stream_access_logs(tokio_stream::iter(vec![message(
            None,
            vec![entry(NOW, "/")],
        )]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("identifier"),
        "{}",
        status.message()
    );
    assert_eq!(
        counter("meshscope_als_entries_rejected_total{reason=\"no_identifier\"}") - before,
        1
    );

    let anonymous = Some(Identifier {
        node: Some(Node::default()),
        log_name: "x".into(),
    });
    let status = c
        .stream_access_logs(tokio_stream::iter(vec![message(anonymous, vec![])]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    c.stream_access_logs(tokio_stream::iter(vec![message(
        identifier("good"),
        vec![entry(NOW, "/")],
    )]))
    .await
    .unwrap();
    assert_eq!(service_calls(&served, "good").await, 1);
}

#[tokio::test]
async fn entries_missing_fields_or_out_of_time_are_counted_not_folded_in() {
    recorder();
    let served = serve(CollectorConfig::default(), NOW).await;
    let reasons = [
        "missing_common_properties",
        "missing_start_time",
        "too_old",
        "future",
        "oversized_field",
    ];
    let before: Vec<u64> = reasons
        .iter()
        .map(|r| {
            counter(&format!(
                "meshscope_als_entries_rejected_total{{reason=\"{r}\"}}"
            ))
        })
        .collect();
    let mut no_start = entry(NOW, "/");
    no_start.common_properties.as_mut().unwrap().start_time = None;
    let entries = vec![
        entry(NOW, "/ok"),
        HttpAccessLogEntry::default(),
        no_start,
        entry(NOW - 3_600_000, "/old"),
        entry(NOW + 3_600_000, "/future"),
        entry(NOW, &format!("/{}", "a".repeat(100_000))),
        entry(NOW - 1_000, "/ok"),
    ];
    let mut c = client(served.addr).await;
    c.stream_access_logs(tokio_stream::iter(vec![message(
        identifier("svc"),
        entries,
    )]))
    .await
    .unwrap();
    assert_eq!(
        service_calls(&served, "svc").await,
        2,
        "only the two good entries count"
    );
    for (reason, before) in reasons.iter().zip(before) {
        let after = counter(&format!(
            "meshscope_als_entries_rejected_total{{reason=\"{reason}\"}}"
        ));
        assert_eq!(after - before, 1, "{reason}");
    }
}

#[tokio::test]
async fn a_malformed_message_ends_its_stream_only() {
    recorder();
    let served = serve(CollectorConfig::default(), NOW).await;
    let before = counter("meshscope_als_streams_failed_total{reason=\"malformed\"}");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let garbage = Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    let path = http::uri::PathAndQuery::from_static(
        "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
    );
    let status = grpc
        .client_streaming(
            tonic::Request::new(tokio_stream::iter(vec![garbage])),
            path,
            PreEncodedRequests::<StreamAccessLogsResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("malformed StreamAccessLogsMessage"),
        "{status:?}"
    );
    assert_eq!(
        counter("meshscope_als_streams_failed_total{reason=\"malformed\"}") - before,
        1
    );

    let mut c = client(served.addr).await;
    c.stream_access_logs(tokio_stream::iter(vec![message(
        identifier("after"),
        vec![entry(NOW, "/")],
    )]))
    .await
    .unwrap();
    assert_eq!(service_calls(&served, "after").await, 1);
}

#[tokio::test]
async fn a_flood_of_unique_paths_and_peers_stays_bounded() {
    recorder();
    let config = CollectorConfig {
        max_endpoints_per_service: 50,
        max_services: 20,
        ..Default::default()
    };
    let served = serve(config, NOW).await;
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let entries: Vec<HttpAccessLogEntry> = (0..2_000)
        .map(|i| {
            // Word paths that do not look like ids, so only the cap can hold them.
            let path = format!(
                "/{}/{}/{}",
                words[i % 8],
                words[(i / 8) % 8],
                words[(i / 64) % 8]
            );
            let mut e = entry(NOW, &path);
            let request = e.request.as_mut().unwrap();
            request.request_headers.insert(
                "x-envoy-downstream-service-cluster".into(),
                format!("peer-{i}"),
            );
            e
        })
        .collect();
    let mut c = client(served.addr).await;
    c.stream_access_logs(tokio_stream::iter(
        entries
            .chunks(100)
            .enumerate()
            .map(|(i, chunk)| {
                message(
                    (i == 0).then(|| identifier("target")).flatten(),
                    chunk.to_vec(),
                )
            })
            .collect::<Vec<_>>(),
    ))
    .await
    .unwrap();
    assert_eq!(
        service_calls(&served, "target").await,
        2_000,
        "nothing lost"
    );

    let filter = KeyFilter {
        service: Some(ServiceRef::service("", "target")),
        ..Default::default()
    };
    let endpoints = served
        .store
        .aggregate(Table::EndpointMinute, range(), &filter)
        .await
        .unwrap();
    assert_eq!(endpoints.len(), 51, "50 endpoints and the overflow bucket");
    let overflow: u64 = endpoints
        .iter()
        .filter(|a| matches!(&a.key, RowKey::Endpoint { endpoint, .. } if endpoint == "{overflow}"))
        .map(|a| a.metrics.calls)
        .sum();
    assert!(overflow > 1_000, "{overflow}");

    let services = served
        .store
        .aggregate(Table::EdgeMinute, range(), &KeyFilter::default())
        .await
        .unwrap();
    assert!(services.len() <= 20, "{} edges", services.len());
    let calls: u64 = services.iter().map(|a| a.metrics.calls).sum();
    assert_eq!(calls, 2_000, "capped peers still count");
}
