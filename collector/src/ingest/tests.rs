use std::collections::BTreeMap;

use meshscope_storage::RowKey;

use super::*;
use crate::aggregate::Limits;
use crate::config::DirectionRules;
use crate::identity::tests::node;
use crate::logged_address::LoggedAddress;
use crate::registry::Registry;
use crate::request_pairs::RequestPairs;

fn reporter(id: &str, cluster: &str) -> Arc<NodeIdentity> {
    Arc::new(NodeIdentity::from_node(&node(id, cluster, &[("NAMESPACE", "shop")], &[])).unwrap())
}

fn observation(cluster: &'static str) -> Observation<'static> {
    Observation {
        start_ms: 60_000,
        duration_ms: 5.0,
        upstream_cluster: cluster,
        method: "GET",
        path: "/",
        status: 200,
        ..Observation::empty(Protocol::Http)
    }
}

/// What a pipeline borrows, with the limits every test here uses.
struct Harness {
    registry: Registry,
    aggregator: Aggregator,
    rules: RoleRules,
    waiting: WaitQueue,
    pairs: RequestPairs,
}

impl Harness {
    fn new(registry: Registry, pairs: RequestPairs) -> Harness {
        Harness {
            registry,
            aggregator: Aggregator::new(Limits {
                max_endpoints_per_service: 100,
                max_instances_per_service: 100,
                max_services: 100,
                apdex_threshold_ms: 500.0,
            }),
            rules: RoleRules::new(&DirectionRules::default()).unwrap(),
            waiting: WaitQueue::new(100),
            pairs,
        }
    }

    /// The pipeline over this harness, resolving at once (no join wait).
    fn pipeline(&self) -> Pipeline<'_> {
        self.pipeline_waiting(0)
    }

    /// The pipeline over this harness, parking entries for up to `join_wait_ms`.
    fn pipeline_waiting(&self, join_wait_ms: i64) -> Pipeline<'_> {
        Pipeline {
            role_rules: &self.rules,
            resolver: Resolver {
                registry: &self.registry,
            },
            aggregator: &self.aggregator,
            waiting: &self.waiting,
            pairs: &self.pairs,
            join_wait_ms,
            access_log: None,
        }
    }
}

/// A stream's context for entries `reporter` sent.
fn context_of(reporter: &Arc<NodeIdentity>) -> StreamContext {
    StreamContext {
        reporter: reporter.clone(),
        log_name: String::new(),
        gateway: false,
    }
}

fn addr(s: &str) -> LoggedAddress<'static> {
    LoggedAddress::Known(s.parse().unwrap())
}

/// Calls per (side, row) as the aggregator holds them.
fn calls(aggregator: &Aggregator) -> BTreeMap<(Side, String), u64> {
    let mut calls = BTreeMap::new();
    for row in aggregator.snapshot() {
        let key = match row.key {
            RowKey::Edge { source, target, .. } => {
                format!("{} -> {}", source.id(), target.id())
            }
            RowKey::Instance { service, instance } => format!("{} @ {instance}", service.id()),
            _ => continue,
        };
        *calls.entry((row.side, key)).or_default() += row.metrics.calls;
    }
    calls
}

#[test]
fn an_answer_found_in_a_message_serves_only_entries_that_ask_the_same() {
    let registry = Registry::new(&[], 1000).unwrap();
    let frontend = reporter("frontend-1", "frontend");
    let backend = reporter("backend-1", "backend");
    let other = reporter("other-1", "other");
    for r in [&frontend, &backend, &other] {
        registry.register_reporter(r);
    }
    registry.learn_listener(
        "10.0.0.2:8080".parse().unwrap(),
        &backend.service,
        "backend-1",
    );
    registry.learn_listener(
        "10.0.0.3:8080".parse().unwrap(),
        &backend.service,
        "backend-2",
    );
    // The other service's proxy opened 10.0.0.9:4000 -> 10.0.0.2:8080.
    registry.learn_connection(
        "10.0.0.9:4000".parse().unwrap(),
        "10.0.0.2:8080".parse().unwrap(),
        &other.service,
    );
    let harness = Harness::new(registry, RequestPairs::new(5_000, 100));
    let pipeline = harness.pipeline();

    // The frontend calls the same service at two hosts, turn about.
    let outbound = ["10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.2:8080"].map(|remote| {
        let mut o = observation("outbound|8080||backend.shop.svc.cluster.local");
        o.addresses.upstream_remote = addr(remote);
        o
    });
    pipeline.ingest(&context_of(&frontend), outbound.into_iter(), 60_000);

    // The backend is called by the frontend (named by its header, twice), then by a
    // caller without a header whose connection the other service's proxy reported,
    // then over a connection no proxy reported.
    let inbound = [
        (Some("frontend"), "10.0.0.9:4000"),
        (Some("frontend"), "10.0.0.9:4000"),
        (None, "10.0.0.9:4000"),
        (None, "10.0.0.8:5000"),
    ]
    .map(|(header, peer)| {
        let mut o = observation("inbound|8080||");
        o.downstream_cluster_header = header;
        o.addresses.downstream_peer = addr(peer);
        o.addresses.downstream_local = addr("10.0.0.2:8080");
        o
    });
    pipeline.ingest(&context_of(&backend), inbound.into_iter(), 60_000);

    let expected: BTreeMap<(Side, String), u64> = [
        ((Side::Client, "shop/frontend -> shop/backend"), 3),
        ((Side::Client, "shop/backend @ backend-1"), 2),
        ((Side::Client, "shop/backend @ backend-2"), 1),
        ((Side::Server, "shop/frontend -> shop/backend"), 2),
        ((Side::Server, "shop/other -> shop/backend"), 1),
        ((Side::Server, "unknown -> shop/backend"), 1),
        ((Side::Server, "shop/backend @ backend-1"), 4),
    ]
    .into_iter()
    .map(|((side, key), n)| ((side, key.to_string()), n))
    .collect();
    assert_eq!(calls(&harness.aggregator), expected);
}

/// Retries are the caller's proxy's attempts beyond the first, on the client side's
/// rows only: the callee's proxy logs each attempt as a call of its own.
#[test]
fn retries_count_on_the_client_side_only() {
    let registry = Registry::new(&[], 1000).unwrap();
    let frontend = reporter("frontend-1", "frontend");
    let backend = reporter("backend-1", "backend");
    for r in [&frontend, &backend] {
        registry.register_reporter(r);
    }
    let harness = Harness::new(registry, RequestPairs::new(5_000, 100));
    let pipeline = harness.pipeline();
    // Three requests: one attempt, three attempts, and one not logged with a count.
    let outbound = [1, 3, 0].map(|attempts| Observation {
        upstream_attempts: attempts,
        ..observation("outbound|8080||backend.shop.svc.cluster.local")
    });
    pipeline.ingest(&context_of(&frontend), outbound.into_iter(), 60_000);
    // The callee's proxy logged the five attempts it received, each its own request.
    let inbound = [1; 5].map(|attempts| Observation {
        upstream_attempts: attempts,
        downstream_cluster_header: Some("frontend"),
        ..observation("inbound|8080||")
    });
    pipeline.ingest(&context_of(&backend), inbound.into_iter(), 60_000);

    let edges: BTreeMap<Side, (u64, u64)> = harness
        .aggregator
        .snapshot()
        .into_iter()
        .filter(|row| matches!(row.key, RowKey::Edge { .. }))
        .map(|row| (row.side, (row.metrics.calls, row.metrics.retries)))
        .collect();
    assert_eq!(
        edges,
        BTreeMap::from([(Side::Server, (5, 0)), (Side::Client, (3, 2))])
    );
}

/// A frontend that passes the request id on: its inbound `GET /checkout` led to the
/// backend's `GET /items/{id}`, and the hop between them is paired. With pairing off,
/// nothing waits and neither is kept.
#[test]
fn a_passed_on_request_id_links_an_inbound_endpoint_to_the_calls_it_made() {
    for on in [true, false] {
        let registry = Registry::new(&[], 1000).unwrap();
        let frontend = reporter("frontend-1", "frontend");
        let backend = reporter("backend-1", "backend");
        for r in [&frontend, &backend] {
            registry.register_reporter(r);
        }
        let pairs = if on {
            RequestPairs::new(5_000, 100)
        } else {
            RequestPairs::off()
        };
        let harness = Harness::new(registry, pairs);
        let pipeline = harness.pipeline();
        let checkout = Observation {
            request_id: 42,
            path: "/checkout",
            downstream_cluster_header: Some("ingress"),
            ..observation("inbound|8080||")
        };
        let item_call = Observation {
            request_id: 42,
            path: "/items/7",
            upstream_attempts: 1,
            ..observation("outbound|8080||backend.shop.svc.cluster.local")
        };
        pipeline.ingest(
            &context_of(&frontend),
            [checkout, item_call].into_iter(),
            60_000,
        );
        let item = Observation {
            request_id: 42,
            path: "/items/7",
            downstream_cluster_header: Some("frontend"),
            ..observation("inbound|8080||")
        };
        pipeline.ingest(&context_of(&backend), [item].into_iter(), 60_000);
        assert_eq!(harness.pairs.len(), usize::from(on), "one request waits");
        pipeline.flush_waiting(60_000);

        let rows = harness.aggregator.snapshot();
        let dependencies: Vec<(String, String, String, String, u64)> = rows
            .iter()
            .filter_map(|row| match &row.key {
                RowKey::Dependency {
                    service,
                    endpoint,
                    target,
                    target_endpoint,
                } => Some((
                    service.id(),
                    endpoint.clone(),
                    target.id(),
                    target_endpoint.clone(),
                    row.metrics.calls,
                )),
                _ => None,
            })
            .collect();
        let paired: u64 = rows
            .iter()
            .filter(|row| matches!(row.key, RowKey::Edge { .. }))
            .map(|row| row.metrics.paired)
            .sum();
        if on {
            let expected = (
                "shop/frontend".to_string(),
                "GET /checkout".to_string(),
                "shop/backend".to_string(),
                "GET /items/{id}".to_string(),
                1,
            );
            assert_eq!(dependencies, vec![expected]);
            assert_eq!(paired, 1);
        } else {
            assert!(dependencies.is_empty(), "{dependencies:?}");
            assert_eq!(paired, 0);
        }
    }
}

/// An inbound entry parked for its caller's report is named as soon as the caller's
/// proxy reports the connection, at the next retry; one whose connection nobody reports
/// waits out its time and is then named as unknown.
#[test]
fn a_parked_entry_is_named_once_its_connection_is_learned_or_its_wait_is_over() {
    let registry = Registry::new(&[], 1000).unwrap();
    let frontend = reporter("frontend-1", "frontend");
    let backend = reporter("backend-1", "backend");
    for r in [&frontend, &backend] {
        registry.register_reporter(r);
    }
    let harness = Harness::new(registry, RequestPairs::off());
    let pipeline = harness.pipeline_waiting(5_000);
    let inbound = ["10.0.0.9:4000", "10.0.0.8:5000"].map(|peer| {
        let mut o = observation("inbound|8080||");
        o.addresses.downstream_peer = addr(peer);
        o.addresses.downstream_local = addr("10.0.0.2:8080");
        o
    });
    pipeline.ingest(&context_of(&backend), inbound.into_iter(), 60_000);
    assert_eq!(harness.waiting.len(), 2);
    // The frontend's call on another connection teaches the backend's names, not these
    // two connections.
    let outbound = |port: u16| {
        let mut o = observation("outbound|8080||backend.shop.svc.cluster.local");
        o.addresses.upstream_local = LoggedAddress::Known(([10, 0, 0, 9], port).into());
        o.addresses.upstream_remote = addr("10.0.0.2:8080");
        o
    };
    pipeline.ingest(&context_of(&frontend), [outbound(3999)].into_iter(), 60_100);
    for now in [60_250, 60_500, 60_600] {
        pipeline.retry_waiting(now);
    }
    assert_eq!(
        harness.waiting.len(),
        2,
        "nothing learned of theirs: both still wait"
    );

    // The frontend's proxy reports the call that opened the first connection.
    pipeline.ingest(&context_of(&frontend), [outbound(4000)].into_iter(), 60_700);
    pipeline.retry_waiting(60_750);
    assert_eq!(
        harness.waiting.len(),
        1,
        "the frontend's connection is named"
    );
    let server_edges = |aggregator: &Aggregator| {
        calls(aggregator)
            .into_iter()
            .filter(|((side, key), _)| *side == Side::Server && key.contains("->"))
            .map(|((_, key), n)| (key, n))
            .collect::<BTreeMap<String, u64>>()
    };
    assert_eq!(
        server_edges(&harness.aggregator),
        BTreeMap::from([("shop/frontend -> shop/backend".to_string(), 1)])
    );

    pipeline.retry_waiting(64_999);
    assert_eq!(harness.waiting.len(), 1, "its wait is not over yet");
    pipeline.retry_waiting(65_000);
    assert!(harness.waiting.is_empty());
    assert_eq!(
        server_edges(&harness.aggregator),
        BTreeMap::from([
            ("shop/frontend -> shop/backend".to_string(), 1),
            ("unknown -> shop/backend".to_string(), 1),
        ])
    );
}
