//! Golden tests over real Envoy 1.39.3 captures of the shop mesh: every stream is sent
//! through the gRPC receiver as Envoy sent it, and the store must show the true call graph
//! of the fixture's README.

mod support;

use meshscope_collector::CollectorConfig;
use meshscope_storage::{
    Aggregate, KeyFilter, Metrics, Protocol, RowKey, ServiceRef, Side, Table, TimeRange,
};
use support::{read_streams, send_streams, serve, traffic_window};

fn svc(id: &str) -> ServiceRef {
    match id {
        "external" => ServiceRef::virtual_node("external"),
        _ => {
            let (ns, name) = id.split_once('/').unwrap_or(("", id));
            ServiceRef::service(ns, name)
        }
    }
}

struct Replayed {
    served: support::Served,
    range: TimeRange,
}

async fn replay(dir: &str) -> Replayed {
    let (start, end) = traffic_window(dir);
    // The collector's clock stands just after the capture, as it did for the live collector.
    let served = serve(CollectorConfig::default(), end + 5_000).await;
    let mut streams = read_streams(dir, "als_http");
    streams.extend(read_streams(dir, "als_tcp"));
    for result in send_streams(served.addr, streams).await {
        result.expect("every captured stream is accepted");
    }
    // Entries waiting for a peer's report get their wait, then resolve.
    served.clock.advance(3_000);
    served.collector.tick(true).await.unwrap();
    Replayed {
        served,
        range: TimeRange {
            start: start - 120_000,
            end: end + 120_000,
        },
    }
}

fn edge_of<'a>(
    edges: &'a [Aggregate],
    source: &str,
    target: &str,
    protocol: Protocol,
) -> &'a Aggregate {
    edges
        .iter()
        .find(|a| {
            a.key
                == RowKey::Edge {
                    source: svc(source),
                    target: svc(target),
                    protocol,
                }
        })
        .unwrap_or_else(|| {
            let all: Vec<_> = edges.iter().map(|a| format!("{:?}", a.key)).collect();
            panic!("no edge {source} -> {target}; edges: {all:#?}")
        })
}

fn figures(m: &Metrics) -> (u64, u64) {
    (m.calls, m.errors)
}

#[tokio::test]
async fn shop_mesh_topology_matches_the_true_call_graph() {
    let Replayed { served, range } = replay("shop-mesh").await;
    let edges = served
        .store
        .aggregate(Table::EdgeMinute, range, &KeyFilter::default())
        .await
        .unwrap();

    let expected = [
        (
            "external",
            "shop/ingress",
            Protocol::Http,
            Side::Server,
            300,
            50,
            false,
        ),
        (
            "shop/ingress",
            "shop/frontend",
            Protocol::Http,
            Side::Server,
            300,
            50,
            true,
        ),
        (
            "shop/frontend",
            "shop/backend",
            Protocol::Http,
            Side::Server,
            300,
            50,
            true,
        ),
        (
            "shop/frontend",
            "shop/payments",
            Protocol::Http,
            Side::Client,
            30,
            0,
            false,
        ),
        (
            "shop/frontend",
            "shop/db",
            Protocol::Tcp,
            Side::Client,
            30,
            0,
            false,
        ),
    ];
    assert_eq!(
        edges.len(),
        expected.len(),
        "one edge per true call: {:#?}",
        edges.iter().map(|e| &e.key).collect::<Vec<_>>()
    );
    for (source, target, protocol, side, calls, errors, mtls) in expected {
        let edge = edge_of(&edges, source, target, protocol);
        assert_eq!(edge.detected_by, side, "{source} -> {target}");
        assert_eq!(
            figures(&edge.metrics),
            (calls, errors),
            "{source} -> {target}"
        );
        assert_eq!(
            edge.metrics.mtls_calls == calls,
            mtls,
            "{source} -> {target} mtls"
        );
    }

    // Slow calls show in the tail, not in the middle.
    let backend = &edge_of(&edges, "shop/frontend", "shop/backend", Protocol::Http).metrics;
    assert!(backend.latency.quantile(0.99).unwrap() >= 300.0);
    assert!(backend.latency.quantile(0.50).unwrap() < 35.0);

    // TCP bytes as the fixture's summary gives them (770 each way over 30 connections).
    let db = &edge_of(&edges, "shop/frontend", "shop/db", Protocol::Tcp).metrics;
    assert_eq!(
        (db.bytes_sent, db.bytes_received, db.tcp_connections),
        (770, 770, 30)
    );
}

#[tokio::test]
async fn both_sides_are_kept_as_separate_series() {
    let Replayed { served, range } = replay("shop-mesh").await;
    for side in [Side::Server, Side::Client] {
        let filter = KeyFilter {
            source: Some(svc("shop/frontend")),
            target: Some(svc("shop/backend")),
            side: Some(side),
            ..Default::default()
        };
        let edges = served
            .store
            .aggregate(Table::EdgeMinute, range, &filter)
            .await
            .unwrap();
        assert_eq!(edges.len(), 1, "{side:?}");
        assert_eq!(figures(&edges[0].metrics), (300, 50), "{side:?}");
    }
}

#[tokio::test]
async fn services_instances_and_endpoints() {
    let Replayed { served, range } = replay("shop-mesh").await;
    let store = &served.store;
    let services = store
        .aggregate(Table::ServiceMinute, range, &KeyFilter::default())
        .await
        .unwrap();
    let mut by_id: Vec<(String, Side, u64, u64)> = services
        .iter()
        .map(|a| match &a.key {
            RowKey::Service { service } => (
                service.id(),
                a.detected_by,
                a.metrics.calls,
                a.metrics.errors,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    by_id.sort();
    assert_eq!(
        by_id,
        vec![
            ("shop/backend".to_string(), Side::Server, 300, 50),
            ("shop/db".to_string(), Side::Client, 30, 0),
            ("shop/frontend".to_string(), Side::Server, 300, 50),
            ("shop/ingress".to_string(), Side::Server, 300, 50),
            ("shop/payments".to_string(), Side::Client, 30, 0),
        ]
    );

    let filter = KeyFilter {
        service: Some(svc("shop/backend")),
        ..Default::default()
    };
    let mut endpoints: Vec<(String, u64, u64)> = store
        .aggregate(Table::EndpointMinute, range, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|a| match a.key {
            RowKey::Endpoint { endpoint, .. } => (endpoint, a.metrics.calls, a.metrics.errors),
            other => panic!("{other:?}"),
        })
        .collect();
    endpoints.sort();
    assert_eq!(
        endpoints,
        vec![
            ("GET /".to_string(), 230, 0),
            ("GET /fail".to_string(), 50, 50),
            ("GET /slow".to_string(), 20, 0),
        ]
    );

    let instances: Vec<(String, u64)> = store
        .aggregate(Table::InstanceMinute, range, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|a| match a.key {
            RowKey::Instance { instance, .. } => (instance, a.metrics.calls),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(instances, vec![("backend-5b8c-def".to_string(), 300)]);
}

#[tokio::test]
async fn a_collector_restart_loses_only_the_outage() {
    // Envoy does not replay what it could not send; the streams that reopened after the
    // outage carry the identifier again and must be accepted as new streams.
    let Replayed { served, range } = replay("shop-mesh/collector-restart").await;
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            support::fixtures_dir().join("shop-mesh/collector-restart/outage_report.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let received = |log: &str| report["loss_per_log"][log]["received"].as_u64().unwrap();
    let edges = served
        .store
        .aggregate(Table::EdgeMinute, range, &KeyFilter::default())
        .await
        .unwrap();
    let backend = edge_of(&edges, "shop/frontend", "shop/backend", Protocol::Http);
    assert_eq!(backend.metrics.calls, received("backend_inbound_http"));
    let ingress = edge_of(&edges, "external", "shop/ingress", Protocol::Http);
    assert_eq!(ingress.metrics.calls, received("ingress_http"));
    let db = edge_of(&edges, "shop/frontend", "shop/db", Protocol::Tcp);
    assert_eq!(db.metrics.calls, received("frontend_outbound_tcp"));
}
