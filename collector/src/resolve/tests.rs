use super::*;
use crate::config::AddressMapping;
use crate::identity::tests::node;
use crate::logged_address::LoggedAddress;
use meshscope_storage::Protocol;

fn addr(s: &str) -> LoggedAddress<'static> {
    LoggedAddress::Known(s.parse().unwrap())
}

fn obs() -> Observation<'static> {
    Observation {
        duration_ms: 1.0,
        method: "GET",
        path: "/",
        status: 200,
        ..Observation::empty(Protocol::Http)
    }
}

fn identity(
    id: &str,
    cluster: &str,
    meta: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> NodeIdentity {
    NodeIdentity::from_node(&node(id, cluster, meta, labels)).unwrap()
}

struct Mesh {
    registry: Registry,
    frontend: NodeIdentity,
    backend: NodeIdentity,
    vm: NodeIdentity,
}

fn mesh() -> Mesh {
    let registry = Registry::new(
        &[
            AddressMapping {
                matches: "10.9.0.0/16".into(),
                service: "legacy/billing".into(),
            },
            AddressMapping {
                matches: "10.9.1.1:8080".into(),
                service: "legacy/ledger".into(),
            },
        ],
        1000,
    )
    .unwrap();
    let frontend = identity(
        "frontend-v1-pod-1",
        "frontend",
        &[("NAMESPACE", "shop"), ("SERVICE_ACCOUNT", "frontend-sa")],
        &[("app", "frontend")],
    );
    let backend = identity(
        "backend-1",
        "backend",
        &[("NAMESPACE", "shop")],
        &[("app", "backend")],
    );
    let vm = identity("inventory-vm-3", "inventory", &[], &[]);
    for r in [&frontend, &backend, &vm] {
        registry.register_reporter(r);
    }
    Mesh {
        registry,
        frontend,
        backend,
        vm,
    }
}

fn source_of(res: Resolution) -> (String, Option<PeerEvidence>) {
    match res {
        Resolution::Ready {
            attributions,
            evidence,
            ..
        } => (attributions[0].source.id(), evidence),
        Resolution::Wait => ("<wait>".into(), None),
    }
}

fn target_of(res: Resolution) -> String {
    match res {
        Resolution::Ready { attributions, .. } => attributions.last().unwrap().target.id(),
        Resolution::Wait => "<wait>".into(),
    }
}

/// The order in which a server-side entry's caller is named. The peer certificate
/// comes first: the TLS handshake proved it, whereas the caller-cluster header is a
/// request header that any application behind a proxy can set to any name (Envoy
/// only adds it when absent). The header was once asked first; a caller could then
/// move its calls onto another service's edge.
#[test]
fn inbound_peer_order() {
    let m = mesh();
    let r = Resolver {
        registry: &m.registry,
    };
    // The frontend's sidecar owns 10.0.0.1:50000 -> 10.0.0.2:8080.
    m.registry.learn_connection(
        addr("10.0.0.1:50000").get().unwrap(),
        addr("10.0.0.2:8080").get().unwrap(),
        &m.frontend.service,
    );

    let with = |f: &dyn Fn(&mut Observation)| {
        let mut o = obs();
        o.upstream_cluster = "inbound|8080||";
        f(&mut o);
        o
    };
    let cases: Vec<(&str, Observation, bool, &str, Option<PeerEvidence>)> = vec![
        (
            "header names the caller's cluster",
            with(&|o| o.downstream_cluster_header = Some("frontend")),
            true,
            "shop/frontend",
            Some(PeerEvidence::Header),
        ),
        (
            "header with an Istio host",
            with(&|o| o.downstream_cluster_header = Some("frontend.shop")),
            true,
            "shop/frontend",
            Some(PeerEvidence::Header),
        ),
        (
            "certificate beats a header naming another service",
            with(&|o| {
                o.downstream_cluster_header = Some("inventory");
                o.peer_uri_san = Some("spiffe://cluster.local/ns/shop/sa/frontend-sa");
            }),
            true,
            "shop/frontend",
            Some(PeerEvidence::Certificate),
        ),
        (
            "the reporter's own cluster in the header is no evidence",
            with(&|o| {
                o.downstream_cluster_header = Some("backend");
                o.peer_uri_san = Some("spiffe://cluster.local/ns/shop/sa/frontend-sa");
            }),
            true,
            "shop/frontend",
            Some(PeerEvidence::Certificate),
        ),
        (
            "certificate via service account",
            with(&|o| o.peer_uri_san = Some("spiffe://cluster.local/ns/shop/sa/frontend-sa")),
            true,
            "shop/frontend",
            Some(PeerEvidence::Certificate),
        ),
        (
            "certificate of a service not seen yet: waits",
            with(&|o| o.peer_uri_san = Some("spiffe://td/ns/ops/sa/cron")),
            true,
            "<wait>",
            None,
        ),
        (
            "certificate of a non-reporter, after the wait",
            with(&|o| o.peer_uri_san = Some("spiffe://td/ns/ops/sa/cron")),
            false,
            "ops/cron",
            Some(PeerEvidence::Certificate),
        ),
        (
            "4-tuple join",
            with(&|o| {
                o.addresses.downstream_peer = addr("10.0.0.1:50000");
                o.addresses.downstream_local = addr("10.0.0.2:8080");
            }),
            true,
            "shop/frontend",
            Some(PeerEvidence::Connection),
        ),
        (
            "same client ip, other port: no join, waits",
            with(&|o| {
                o.addresses.downstream_peer = addr("10.0.0.1:50001");
                o.addresses.downstream_local = addr("10.0.0.2:8080");
            }),
            true,
            "<wait>",
            None,
        ),
        (
            "after the wait: unknown",
            with(&|o| {
                o.addresses.downstream_peer = addr("10.0.0.1:50001");
                o.addresses.downstream_local = addr("10.0.0.2:8080");
            }),
            false,
            "unknown",
            Some(PeerEvidence::Fallback),
        ),
        (
            "static map, most specific first",
            with(&|o| {
                o.addresses.downstream_peer = addr("10.9.1.1:8080");
                o.addresses.downstream_local = addr("10.0.0.2:8080");
            }),
            true,
            "legacy/ledger",
            Some(PeerEvidence::StaticMap),
        ),
        (
            "static map CIDR",
            with(&|o| {
                o.addresses.downstream_peer = addr("10.9.7.7:1234");
                o.addresses.downstream_local = addr("10.0.0.2:8080");
            }),
            true,
            "legacy/billing",
            Some(PeerEvidence::StaticMap),
        ),
        (
            "no address at all: unknown at once",
            with(&|_| {}),
            true,
            "unknown",
            Some(PeerEvidence::Fallback),
        ),
    ];
    for (name, o, may_wait, want, evidence) in cases {
        let got = source_of(r.resolve(&m.backend, Role::Inbound, &o, may_wait));
        assert_eq!(got, (want.to_string(), evidence), "{name}");
    }
}

/// Whether the answer says the header and the certificate disagreed: only when both
/// name a caller and the names differ.
#[test]
fn a_header_that_disagrees_with_the_certificate_is_a_conflict() {
    let m = mesh();
    let r = Resolver {
        registry: &m.registry,
    };
    let frontend_cert = "spiffe://cluster.local/ns/shop/sa/frontend-sa";
    let cases: [(&str, Option<&'static str>, Option<&'static str>, bool); 5] = [
        (
            "forged header",
            Some("inventory"),
            Some(frontend_cert),
            true,
        ),
        (
            "header and certificate agree",
            Some("frontend"),
            Some(frontend_cert),
            false,
        ),
        (
            "the reporter's own cluster",
            Some("backend"),
            Some(frontend_cert),
            false,
        ),
        ("certificate alone", None, Some(frontend_cert), false),
        ("header alone", Some("inventory"), None, false),
    ];
    for (name, header, uri, want_conflict) in cases {
        let mut o = obs();
        o.upstream_cluster = "inbound|8080||";
        o.downstream_cluster_header = header;
        o.peer_uri_san = uri;
        let Resolution::Ready {
            attributions,
            identity_conflict,
            ..
        } = r.resolve(&m.backend, Role::Inbound, &o, true)
        else {
            panic!("{name}: waits");
        };
        assert_eq!(identity_conflict, want_conflict, "{name}");
        let want_caller = if uri.is_some() {
            "shop/frontend"
        } else {
            "inventory"
        };
        assert_eq!(attributions[0].source.id(), want_caller, "{name}");
    }
}

#[test]
fn gateway_downstream_defaults_to_external_and_upstream_is_the_cluster() {
    let m = mesh();
    let r = Resolver {
        registry: &m.registry,
    };
    let ingress = identity(
        "ingress-1",
        "ingress",
        &[("NAMESPACE", "shop")],
        &[("app", "ingress")],
    );
    let mut o = obs();
    o.upstream_cluster = "outbound|80||frontend.shop.svc.cluster.local";
    o.addresses.downstream_peer = addr("192.0.2.7:4444");
    o.addresses.downstream_local = addr("10.0.0.9:80");
    o.downstream_cluster_header = Some("ingress");
    match r.resolve(&ingress, Role::Gateway, &o, false) {
        Resolution::Ready { attributions, .. } => {
            let got: Vec<(Side, String, String)> = attributions
                .iter()
                .map(|a| (a.side, a.source.id(), a.target.id()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (Side::Server, "external".into(), "shop/ingress".into()),
                    (Side::Client, "shop/ingress".into(), "shop/frontend".into()),
                ]
            );
            assert_eq!(
                attributions[0].source.kind,
                meshscope_storage::NodeKind::Virtual
            );
        }
        Resolution::Wait => panic!("no wait after the wait"),
    }
}

#[test]
fn upstream_names_one_service_one_node() {
    let m = mesh();
    let r = Resolver {
        registry: &m.registry,
    };
    let target = |cluster: &str, remote: Option<SocketAddr>| {
        let mut o = obs();
        o.upstream_cluster = cluster;
        o.addresses.upstream_remote = LoggedAddress::known(remote);
        target_of(r.resolve(&m.frontend, Role::Outbound, &o, true))
    };
    assert_eq!(
        target("outbound|8080||backend.shop.svc.cluster.local", None),
        "shop/backend"
    );
    assert_eq!(
        target("backend", None),
        "shop/backend",
        "plain cluster of a reporter"
    );
    assert_eq!(
        target("outbound|80|v2|reviews.shop.svc.cluster.local", None),
        "shop/reviews"
    );
    assert_eq!(
        target("payments", None),
        "payments",
        "plain name, no evidence of a namespace"
    );
    assert_eq!(
        target("PassthroughCluster", addr("10.9.3.3:443").get()),
        "legacy/billing"
    );
    assert_eq!(
        target("PassthroughCluster", addr("203.0.113.5:443").get()),
        "external"
    );
    assert_eq!(target("BlackHoleCluster", None), "blackhole");
    assert_eq!(target("", None), "unknown");

    // The VM reports for itself on 10.1.1.1:9000; a caller names it by an Istio host.
    m.registry.learn_listener(
        addr("10.1.1.1:9000").get().unwrap(),
        &m.vm.service,
        &m.vm.instance,
    );
    let cluster = "outbound|9000||inventory.shop.svc.cluster.local";
    assert_eq!(target(cluster, addr("10.1.1.1:9000").get()), "inventory");
    // Once learned, the name alone is enough.
    assert_eq!(target(cluster, None), "inventory");
}

#[test]
fn a_cluster_name_reused_across_namespaces_is_read_in_the_callee_namespace() {
    let m = mesh();
    let r = Resolver {
        registry: &m.registry,
    };
    let shop_ingress = identity("ingress-1", "ingress", &[("NAMESPACE", "shop")], &[]);
    let lab_ingress = identity("ingress-2", "ingress", &[("NAMESPACE", "lab")], &[]);
    let lab_api = identity("api-1", "api", &[("NAMESPACE", "lab")], &[]);
    let ops_job = identity("job-1", "job", &[("NAMESPACE", "ops")], &[]);
    for id in [&shop_ingress, &lab_ingress, &lab_api, &ops_job] {
        m.registry.register_reporter(id);
    }
    let mut o = obs();
    o.upstream_cluster = "inbound|8080||";
    o.downstream_cluster_header = Some("ingress");
    // Registered last, shop's ingress must not take lab's calls.
    assert_eq!(
        source_of(r.resolve(&lab_api, Role::Inbound, &o, false)),
        ("lab/ingress".to_string(), Some(PeerEvidence::Header))
    );
    // Neither namespace's: the header proves nothing, other evidence decides.
    assert_eq!(
        source_of(r.resolve(&ops_job, Role::Inbound, &o, false)),
        ("unknown".to_string(), Some(PeerEvidence::Fallback))
    );
    // The backend's own namespace has one ingress: shop's.
    assert_eq!(
        source_of(r.resolve(&m.backend, Role::Inbound, &o, false)),
        ("shop/ingress".to_string(), Some(PeerEvidence::Header))
    );
}
