//! The metrics service receiver over the real captures of the shop mesh, and over bad input.

mod support;

use std::collections::HashMap;

use meshscope_collector::CollectorConfig;
use meshscope_proto::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use meshscope_proto::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use meshscope_proto::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier;
use meshscope_proto::pb::io::prometheus::client::{
    Counter, LabelPair, Metric, MetricFamily, MetricType,
};
use meshscope_storage::{ProxyMetricKind, ProxyMetricRow};
use support::serve;

fn read_metric_streams() -> Vec<Vec<StreamMetricsMessage>> {
    support::read_records("shop-mesh", "metrics")
        .into_iter()
        .map(|(_, messages)| messages)
        .collect()
}

async fn send(
    addr: std::net::SocketAddr,
    messages: Vec<StreamMetricsMessage>,
) -> Result<(), tonic::Status> {
    let mut client = MetricsServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 * 1024 * 1024);
    client
        .stream_metrics(tokio_stream::iter(messages))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn captured_proxies_are_identified_and_request_totals_match_the_traffic() {
    let served = serve(CollectorConfig::default(), 1_795_542_330_000).await;
    for stream in read_metric_streams() {
        send(served.addr, stream).await.expect("stream accepted");
    }
    let proxies: HashMap<String, (String, String, String)> = served
        .store
        .proxy_registry()
        .proxies()
        .into_iter()
        .map(|p| (p.id, (p.service, p.instance, p.envoy_version)))
        .collect();
    assert_eq!(
        proxies["frontend-v1-pod-1"],
        (
            "shop/frontend".to_string(),
            "frontend-7d9f-abc".to_string(),
            "1.39.3".to_string()
        )
    );
    assert_eq!(proxies["backend-v2-pod-1"].0, "shop/backend");
    assert_eq!(proxies["ingress-1"].0, "shop/ingress");

    let mut totals: HashMap<(String, String, String), f64> = HashMap::new();
    let mut histograms: HashMap<(String, String), u64> = HashMap::new();
    let rows = served.collector.unwritten_proxy_rows();
    for row in &rows {
        *totals
            .entry((row.proxy.clone(), row.name.clone(), row.cluster.clone()))
            .or_default() += row.value;
        if row.kind == ProxyMetricKind::Histogram {
            *histograms
                .entry((row.proxy.clone(), row.cluster.clone()))
                .or_default() += row.count;
        }
    }
    let total = |proxy: &str, cluster: &str| {
        totals
            .get(&(proxy.into(), "upstream_rq_total".into(), cluster.into()))
            .copied()
    };
    // traffic.json: 300 requests through the mesh, 30 of them calling payments.
    assert_eq!(
        total(
            "frontend-v1-pod-1",
            "outbound|18200||backend.shop.svc.cluster.local"
        ),
        Some(300.0)
    );
    assert_eq!(
        total(
            "frontend-v1-pod-1",
            "outbound|18082||payments.shop.svc.cluster.local"
        ),
        Some(30.0)
    );
    assert_eq!(total("frontend-v1-pod-1", "inbound|18080||"), Some(300.0));
    // Each histogram is stored once: the summary twin and the `external.` variant would
    // double the count of requests timed.
    assert_eq!(
        histograms[&(
            "frontend-v1-pod-1".to_string(),
            "outbound|18200||backend.shop.svc.cluster.local".to_string()
        )],
        300
    );
    assert!(
        rows.iter()
            .all(|r| !r.cluster.contains("external") && !r.cluster.contains("internal")),
        "internal./external. variants are dropped"
    );

    // Envoy's buckets are kept: 20 of the 300 calls to the backend took 300 ms or more,
    // nothing else over 35 ms, so the median is fast and the 99th percentile slow.
    let mut timed: Option<ProxyMetricRow> = None;
    for row in rows.iter().filter(|r| {
        r.proxy == "frontend-v1-pod-1"
            && r.name == "upstream_rq_time"
            && r.cluster == "outbound|18200||backend.shop.svc.cluster.local"
    }) {
        match &mut timed {
            Some(t) => t.merge(row),
            None => timed = Some(row.clone()),
        }
    }
    let timed = timed.expect("the backend cluster's request times");
    assert_eq!(timed.count, 300);
    assert!(!timed.buckets.is_empty());
    let p50 = timed.quantile(0.5).unwrap();
    let p99 = timed.quantile(0.99).unwrap();
    assert!(p50 < 35.0, "p50 {p50}");
    assert!(p99 >= 300.0, "p99 {p99}");
    // Each cluster names the service it leads to, as the graph's edges do.
    let upstreams: HashMap<String, String> = rows
        .into_iter()
        .filter(|r| r.proxy == "frontend-v1-pod-1")
        .map(|r| (r.cluster, r.upstream))
        .collect();
    assert_eq!(
        upstreams["outbound|18200||backend.shop.svc.cluster.local"],
        "shop/backend"
    );
    assert_eq!(
        upstreams["outbound|18082||payments.shop.svc.cluster.local"],
        "shop/payments"
    );
    assert_eq!(upstreams["inbound|18080||"], "");
}

fn counter_family(name: Option<&str>, metrics: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: name.map(str::to_string),
        r#type: Some(MetricType::Counter as i32),
        metric: metrics,
        ..Default::default()
    }
}

fn counter(value: f64, label: Option<String>) -> Metric {
    Metric {
        counter: Some(Counter {
            value: Some(value),
            ..Default::default()
        }),
        label: label
            .map(|v| {
                vec![LabelPair {
                    name: Some("flood".into()),
                    value: Some(v),
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_families_are_dropped_label_floods_capped_and_the_server_stays_up() {
    let mut config = CollectorConfig::default();
    config.proxy_stats.max_series_per_proxy = 100;
    let served = serve(config, 1_795_542_330_000).await;
    let node = meshscope_proto::pb::envoy::config::core::v3::Node {
        id: "flooder".into(),
        cluster: "flood".into(),
        ..Default::default()
    };
    let flood: Vec<Metric> = (0..10_000)
        .map(|i| counter(1.0, Some(format!("v{i}"))))
        .collect();
    let message = StreamMetricsMessage {
        identifier: Some(Identifier { node: Some(node) }),
        envoy_metrics: vec![
            counter_family(None, vec![counter(1.0, None)]),
            counter_family(
                Some("cluster.c.upstream_rq_total"),
                vec![counter(f64::NAN, None)],
            ),
            counter_family(Some("cluster.c.upstream_rq_5xx"), vec![counter(-3.0, None)]),
            counter_family(Some("cluster.c.upstream_rq_retry"), flood),
        ],
    };
    send(served.addr, vec![message])
        .await
        .expect("bad statistics are dropped, not the stream");
    let rows = served.collector.unwritten_proxy_rows();
    let retried: f64 = rows
        .iter()
        .filter(|r| r.name == "upstream_rq_retry")
        .map(|r| r.value)
        .sum();
    assert_eq!(retried, 100.0, "label sets past the cap are dropped");
    assert!(
        rows.iter()
            .all(|r| r.name != "upstream_rq_total" && r.name != "upstream_rq_5xx")
    );

    // A stream without an identifier is refused; the server still takes the next one.
    let refused = send(served.addr, vec![StreamMetricsMessage::default()]).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
    let again = StreamMetricsMessage {
        identifier: Some(Identifier {
            node: Some(meshscope_proto::pb::envoy::config::core::v3::Node {
                id: "ok".into(),
                cluster: "ok".into(),
                ..Default::default()
            }),
        }),
        envoy_metrics: vec![counter_family(
            Some("cluster.c.upstream_rq_total"),
            vec![counter(5.0, None)],
        )],
    };
    send(served.addr, vec![again]).await.expect("server up");
    assert!(served.store.proxy_registry().proxy("ok").is_some());
}
