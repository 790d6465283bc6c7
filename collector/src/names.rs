//! Parsing the names proxies use for services: Istio cluster names, Kubernetes-style
//! hosts and SPIFFE ids. Pure functions, so the rules are easy to table-test.

/// Which way an Istio cluster name points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterDirection {
    Inbound,
    Outbound,
}

/// An Istio-style cluster name: `outbound|9080|v1|reviews.default.svc.cluster.local` or
/// `inbound|18081||`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IstioCluster<'a> {
    pub direction: ClusterDirection,
    pub port: &'a str,
    pub subset: &'a str,
    pub host: &'a str,
}

/// The direction of an Istio cluster name, without reading the rest of it: asked of every
/// entry, where the whole name is wanted far less often.
pub fn istio_cluster_direction(cluster: &str) -> Option<ClusterDirection> {
    if cluster.starts_with("inbound|") {
        Some(ClusterDirection::Inbound)
    } else if cluster.starts_with("outbound|") {
        Some(ClusterDirection::Outbound)
    } else {
        None
    }
}

pub fn parse_istio_cluster(cluster: &str) -> Option<IstioCluster<'_>> {
    let mut parts = cluster.splitn(4, '|');
    let direction = match parts.next()? {
        "inbound" => ClusterDirection::Inbound,
        "outbound" => ClusterDirection::Outbound,
        _ => return None,
    };
    let port = parts.next()?;
    let subset = parts.next().unwrap_or("");
    let host = parts.next().unwrap_or("");
    Some(IstioCluster {
        direction,
        port,
        subset,
        host,
    })
}

/// A service name with an optional namespace, as read from some piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamedService {
    pub namespace: Option<String>,
    pub name: String,
}

/// Reads a host the way Kubernetes DNS spells services: `name.namespace.svc[.cluster.local]`
/// or `name.namespace`. Anything else (an IP, an external FQDN, a plain name) keeps the
/// whole host as the name, without a namespace.
pub fn service_from_host(host: &str) -> NamedService {
    let host = host.trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() >= 3 && labels[2] == "svc" {
        return NamedService {
            namespace: Some(labels[1].to_string()),
            name: labels[0].to_string(),
        };
    }
    if labels.len() == 2 && !labels[1].chars().all(|c| c.is_ascii_digit()) && !is_tld(labels[1]) {
        return NamedService {
            namespace: Some(labels[1].to_string()),
            name: labels[0].to_string(),
        };
    }
    NamedService {
        namespace: None,
        name: host.to_string(),
    }
}

/// A two-label host whose second label is a common public suffix is a domain, not
/// `service.namespace`.
fn is_tld(label: &str) -> bool {
    matches!(
        label,
        "com" | "org" | "net" | "io" | "dev" | "local" | "internal" | "cloud" | "app" | "co"
    )
}

/// `spiffe://trust-domain/ns/<namespace>/sa/<service-account>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

pub fn parse_spiffe(uri: &str) -> Option<SpiffeId> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (trust_domain, path) = rest.split_once('/')?;
    let segments: Vec<&str> = path.split('/').collect();
    let mut namespace = None;
    let mut service_account = None;
    let mut i = 0;
    while i + 1 < segments.len() {
        match segments[i] {
            "ns" => namespace = Some(segments[i + 1]),
            "sa" => service_account = Some(segments[i + 1]),
            _ => {}
        }
        i += 2;
    }
    Some(SpiffeId {
        trust_domain: trust_domain.to_string(),
        namespace: namespace?.to_string(),
        service_account: service_account?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_cluster_names() {
        let cases = [
            (
                "outbound|9080|v1|reviews.default.svc.cluster.local",
                Some((
                    ClusterDirection::Outbound,
                    "9080",
                    "v1",
                    "reviews.default.svc.cluster.local",
                )),
            ),
            (
                "outbound|18200||backend.shop.svc.cluster.local",
                Some((
                    ClusterDirection::Outbound,
                    "18200",
                    "",
                    "backend.shop.svc.cluster.local",
                )),
            ),
            (
                "inbound|18081||",
                Some((ClusterDirection::Inbound, "18081", "", "")),
            ),
            ("inbound|", Some((ClusterDirection::Inbound, "", "", ""))),
            ("backend", None),
            ("inbound", None),
            ("outbound-gateway", None),
            ("PassthroughCluster", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = parse_istio_cluster(input).map(|c| (c.direction, c.port, c.subset, c.host));
            assert_eq!(got, want, "{input}");
            assert_eq!(istio_cluster_direction(input), want.map(|w| w.0), "{input}");
        }
    }

    #[test]
    fn hosts_to_services() {
        let cases = [
            ("backend.shop.svc.cluster.local", Some("shop"), "backend"),
            ("backend.shop.svc", Some("shop"), "backend"),
            ("backend.shop", Some("shop"), "backend"),
            ("backend", None, "backend"),
            ("api.example.com", None, "api.example.com"),
            ("10.0.0.1", None, "10.0.0.1"),
        ];
        for (host, ns, name) in cases {
            let got = service_from_host(host);
            assert_eq!(got.namespace.as_deref(), ns, "{host}");
            assert_eq!(got.name, name, "{host}");
        }
    }

    #[test]
    fn spiffe_ids() {
        let id = parse_spiffe("spiffe://cluster.local/ns/shop/sa/frontend").unwrap();
        assert_eq!(id.namespace, "shop");
        assert_eq!(id.service_account, "frontend");
        assert_eq!(id.trust_domain, "cluster.local");
        assert!(parse_spiffe("spiffe://cluster.local/workload/x").is_none());
        assert!(parse_spiffe("https://example.com").is_none());
    }
}
