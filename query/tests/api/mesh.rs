//! The small known mesh every API test reads, in the minute before the current one
//! (closed) and the current one (open):
//! ```text
//! external -> shop/ingress -> shop/frontend -> shop/backend
//!                                           -> payments      (no sidecar: client side only)
//!                                           -> db (TCP)      (no sidecar: client side only)
//! ops/prober -> payments                                     (client side only)
//! ```
//! plus `shop/legacy`, which had traffic half an hour ago only. The figures the tests
//! assert are read against these rows.

pub(crate) use meshscope_storage::MINUTE_MS;
use meshscope_storage::{MetricRow, Metrics, Protocol, RowKey, ServiceRef, Side};

/// 2026-11-25T02:30:00Z: the open minute.
pub(crate) const NOW_MINUTE: i64 = 1_795_573_800_000;
pub(crate) const PREVIOUS_MINUTE: i64 = NOW_MINUTE - MINUTE_MS;
pub(crate) const NOW: i64 = NOW_MINUTE + 45_000;
/// `window=15m` at NOW.
pub(crate) const WINDOW_START: i64 = NOW_MINUTE - 14 * MINUTE_MS;
pub(crate) const WINDOW_END: i64 = NOW_MINUTE + MINUTE_MS;

pub(crate) fn shop(name: &str) -> ServiceRef {
    ServiceRef::service("shop", name)
}

pub(crate) fn plain(name: &str) -> ServiceRef {
    ServiceRef::service("", name)
}

/// `calls` calls of `latency_ms` each, `errors` of them failed (5xx), `errors_4xx` 4xx.
pub(crate) fn figures(calls: u64, errors: u64, errors_4xx: u64, latency_ms: f64) -> Metrics {
    let mut metrics = Metrics {
        calls,
        errors,
        errors_4xx,
        bytes_sent: calls * 100,
        bytes_received: calls * 1000,
        ..Metrics::default()
    };
    for _ in 0..calls {
        metrics.latency.add(latency_ms);
    }
    metrics
}

pub(crate) fn with_apdex(mut metrics: Metrics, satisfied: u64, tolerating: u64) -> Metrics {
    metrics.apdex_satisfied = satisfied;
    metrics.apdex_tolerating = tolerating;
    metrics
}

pub(crate) fn with_mtls(mut metrics: Metrics) -> Metrics {
    metrics.mtls_calls = metrics.calls;
    metrics
}

pub(crate) fn row(minute: i64, key: RowKey, side: Side, metrics: Metrics) -> MetricRow {
    MetricRow {
        minute,
        key,
        side,
        metrics,
    }
}

/// `calls` of `service`'s inbound `endpoint` to `target`'s `target_endpoint`, as the
/// calling proxy logged them.
pub(crate) fn dependency(
    minute: i64,
    (service, endpoint): (ServiceRef, &str),
    (target, target_endpoint): (ServiceRef, &str),
    metrics: Metrics,
) -> MetricRow {
    let key = RowKey::Dependency {
        service,
        endpoint: endpoint.into(),
        target,
        target_endpoint: target_endpoint.into(),
    };
    row(minute, key, Side::Client, metrics)
}

/// `side`'s figures between caller instance `source` and callee instance `target`.
pub(crate) fn instance_pair(
    minute: i64,
    (source, source_instance): (ServiceRef, &str),
    (target, target_instance): (ServiceRef, &str),
    side: Side,
    metrics: Metrics,
) -> MetricRow {
    let key = RowKey::InstancePair {
        source,
        source_instance: source_instance.into(),
        target,
        target_instance: target_instance.into(),
    };
    row(minute, key, side, metrics)
}

pub(crate) fn service(minute: i64, service: ServiceRef, side: Side, metrics: Metrics) -> MetricRow {
    row(minute, RowKey::Service { service }, side, metrics)
}

pub(crate) fn edge(
    minute: i64,
    (source, target): (ServiceRef, ServiceRef),
    protocol: Protocol,
    side: Side,
    metrics: Metrics,
) -> MetricRow {
    row(
        minute,
        RowKey::Edge {
            source,
            target,
            protocol,
        },
        side,
        metrics,
    )
}

pub(crate) fn closed_rows() -> Vec<MetricRow> {
    use Side::{Client, Server};
    let old = NOW_MINUTE - 30 * MINUTE_MS;
    vec![
        service(old, shop("legacy"), Server, figures(7, 0, 0, 5.0)),
        dependency(
            PREVIOUS_MINUTE,
            (shop("frontend"), "GET /"),
            (shop("backend"), "GET /items/{id}"),
            figures(40, 4, 0, 20.0),
        ),
        service(
            PREVIOUS_MINUTE,
            shop("ingress"),
            Server,
            with_apdex(figures(100, 10, 0, 20.0), 80, 10),
        ),
        service(
            PREVIOUS_MINUTE,
            shop("frontend"),
            Server,
            with_apdex(figures(100, 10, 0, 15.0), 90, 0),
        ),
        // The ingress's own view of the frontend: must lose to the frontend's.
        service(
            PREVIOUS_MINUTE,
            shop("frontend"),
            Client,
            figures(100, 12, 0, 16.0),
        ),
        edge(
            PREVIOUS_MINUTE,
            (ServiceRef::virtual_node("external"), shop("ingress")),
            Protocol::Http,
            Server,
            figures(100, 10, 0, 20.0),
        ),
        edge(
            PREVIOUS_MINUTE,
            (shop("ingress"), shop("frontend")),
            Protocol::Http,
            Server,
            with_mtls(figures(100, 10, 0, 15.0)),
        ),
        edge(
            PREVIOUS_MINUTE,
            (shop("ingress"), shop("frontend")),
            Protocol::Http,
            Client,
            figures(100, 12, 0, 16.0),
        ),
        row(
            PREVIOUS_MINUTE,
            RowKey::Instance {
                service: shop("frontend"),
                instance: "frontend-v1-pod-1".into(),
            },
            Server,
            figures(100, 10, 0, 15.0),
        ),
    ]
}

pub(crate) fn open_rows() -> Vec<MetricRow> {
    use Side::{Client, Server};
    vec![
        service(
            NOW_MINUTE,
            shop("frontend"),
            Server,
            with_apdex(figures(50, 0, 0, 15.0), 50, 0),
        ),
        service(
            NOW_MINUTE,
            shop("backend"),
            Server,
            with_apdex(figures(60, 6, 3, 300.0), 0, 54),
        ),
        service(
            NOW_MINUTE,
            plain("payments"),
            Client,
            with_apdex(figures(40, 0, 0, 8.0), 40, 0),
        ),
        edge(
            NOW_MINUTE,
            (shop("ingress"), shop("frontend")),
            Protocol::Http,
            Server,
            with_mtls(figures(50, 0, 0, 15.0)),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), shop("backend")),
            Protocol::Http,
            Server,
            with_mtls(figures(60, 6, 3, 300.0)),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), shop("backend")),
            Protocol::Http,
            Client,
            figures(60, 6, 3, 301.0),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), plain("payments")),
            Protocol::Http,
            Client,
            figures(30, 0, 0, 8.0),
        ),
        edge(
            NOW_MINUTE,
            (ServiceRef::service("ops", "prober"), plain("payments")),
            Protocol::Http,
            Client,
            figures(10, 0, 0, 8.0),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), plain("db")),
            Protocol::Tcp,
            Client,
            Metrics {
                tcp_connections: 30,
                ..figures(30, 0, 0, 2.0)
            },
        ),
        row(
            NOW_MINUTE,
            RowKey::Instance {
                service: shop("frontend"),
                instance: "frontend-v1-pod-1".into(),
            },
            Server,
            figures(20, 0, 0, 15.0),
        ),
        row(
            NOW_MINUTE,
            RowKey::Instance {
                service: shop("frontend"),
                instance: "frontend-v1-pod-2".into(),
            },
            Server,
            figures(30, 0, 0, 15.0),
        ),
        row(
            NOW_MINUTE,
            RowKey::Endpoint {
                service: shop("backend"),
                endpoint: "GET /items/{id}".into(),
            },
            Server,
            figures(45, 6, 0, 300.0),
        ),
        row(
            NOW_MINUTE,
            RowKey::Endpoint {
                service: shop("backend"),
                endpoint: "POST /cart".into(),
            },
            Server,
            figures(15, 0, 3, 300.0),
        ),
        // Where the applications pass the request id on: the frontend's `GET /` led to
        // these calls (and to 40 more to the backend the minute before).
        dependency(
            NOW_MINUTE,
            (shop("frontend"), "GET /"),
            (shop("backend"), "GET /items/{id}"),
            figures(10, 0, 0, 20.0),
        ),
        dependency(
            NOW_MINUTE,
            (shop("frontend"), "GET /"),
            (plain("payments"), "POST /charge"),
            figures(5, 1, 0, 80.0),
        ),
        dependency(
            NOW_MINUTE,
            (shop("ingress"), "GET /"),
            (shop("frontend"), "GET /"),
            figures(60, 0, 0, 40.0),
        ),
        // Requests paired by request id between the frontend's first pod and the backend's
        // instance: 30 requests, 4 of them retried (34 attempts), all paired; and 3 attempts
        // whose caller logged nothing.
        instance_pair(
            NOW_MINUTE,
            (shop("frontend"), "frontend-v1-pod-1"),
            (shop("backend"), "backend-1"),
            Client,
            Metrics {
                retries: 4,
                ..figures(30, 2, 0, 12.0)
            },
        ),
        instance_pair(
            NOW_MINUTE,
            (shop("frontend"), "frontend-v1-pod-1"),
            (shop("backend"), "backend-1"),
            Server,
            Metrics {
                paired: 30,
                ..figures(34, 6, 0, 10.0)
            },
        ),
        instance_pair(
            NOW_MINUTE,
            (shop("frontend"), meshscope_storage::UNKNOWN_INSTANCE),
            (shop("backend"), "backend-1"),
            Server,
            Metrics {
                server_only: 3,
                ..figures(3, 0, 0, 10.0)
            },
        ),
    ]
}
