//! Who is on the other end of an entry. The server side of a call names its caller from,
//! in order: the peer certificate's SPIFFE id, the `x-envoy-downstream-service-cluster`
//! header, the connection's 4-tuple as the caller's own proxy reported it, and the
//! static address map; what stays unknown becomes a virtual node. The client side names
//! its callee from the server's listening address when that server reports for itself,
//! then the upstream cluster (Istio or plain name), then the static address map.

use std::borrow::Cow;
use std::net::SocketAddr;

use meshscope_storage::{ServiceRef, Side};

use crate::attribution::{Attribution, PeerEvidence, Resolution};
use crate::entry::Observation;
use crate::identity::NodeIdentity;
use crate::names::{NamedService, parse_istio_cluster, parse_spiffe, service_from_host};
use crate::registry::{ClusterLookup, Registry};
use crate::role::Role;

/// Virtual node for callers from outside the mesh, as seen by a gateway.
pub const EXTERNAL: &str = "external";
/// Virtual node for peers no evidence names.
pub const UNKNOWN: &str = "unknown";

/// The caller of a server-side entry and how it was named.
struct DownstreamPeer {
    service: ServiceRef,
    evidence: PeerEvidence,
    identity_conflict: bool,
}

impl DownstreamPeer {
    fn plain(service: ServiceRef, evidence: PeerEvidence) -> Self {
        DownstreamPeer {
            service,
            evidence,
            identity_conflict: false,
        }
    }
}

/// Names the peers of an entry from what the registry has learned.
pub struct Resolver<'a> {
    pub registry: &'a Registry,
}

impl Resolver<'_> {
    /// Who is on each side of the call the entry logged, and by what evidence its caller
    /// was named; or `Wait` while a peer's own report may still be on its way. `may_wait`
    /// is false once an entry has waited its time.
    pub fn resolve<'r>(
        &self,
        reporter: &'r NodeIdentity,
        role: Role,
        obs: &Observation,
        may_wait: bool,
    ) -> Resolution<'r> {
        let mut attributions = Vec::with_capacity(2);
        let mut evidence = None;
        let mut identity_conflict = false;
        if matches!(role, Role::Inbound | Role::Gateway) {
            let fallback = if role == Role::Gateway {
                EXTERNAL
            } else {
                UNKNOWN
            };
            let Some(caller) = self.downstream_peer(reporter, obs, may_wait, fallback) else {
                return Resolution::Wait;
            };
            evidence = Some(caller.evidence);
            identity_conflict = caller.identity_conflict;
            attributions.push(Attribution {
                side: Side::Server,
                source: Cow::Owned(caller.service),
                target: Cow::Borrowed(&reporter.service),
                target_instance: Cow::Borrowed(&reporter.instance),
            });
        }
        if matches!(role, Role::Outbound | Role::Gateway) {
            let Some((target, target_instance)) = self.upstream_peer(obs, may_wait) else {
                return Resolution::Wait;
            };
            attributions.push(Attribution {
                side: Side::Client,
                source: Cow::Borrowed(&reporter.service),
                target: Cow::Owned(target),
                target_instance: Cow::Owned(target_instance),
            });
        }
        Resolution::Ready {
            attributions,
            evidence,
            identity_conflict,
        }
    }

    /// The caller and the evidence that named it. A verified peer certificate (its
    /// SPIFFE id) names the caller before the caller-cluster header, which any
    /// application can set; when both name a caller and the names differ, the
    /// certificate's wins and the answer says so (`identity_conflict`).
    fn downstream_peer(
        &self,
        reporter: &NodeIdentity,
        obs: &Observation,
        may_wait: bool,
        fallback: &str,
    ) -> Option<DownstreamPeer> {
        let header_named = obs
            .downstream_cluster_header
            .and_then(|cluster| self.caller_by_header(reporter, cluster));
        // A name that no reporter carries may yet be one whose stream has not opened:
        // wait for it before taking the name as written.
        let mut named_but_unknown = None;
        if let Some(spiffe) = obs.peer_uri_san.and_then(parse_spiffe) {
            let service = self.registry.by_spiffe(&spiffe);
            let identity_conflict = header_named.as_ref().is_some_and(|h| *h != service);
            let answer = DownstreamPeer {
                service,
                evidence: PeerEvidence::Certificate,
                identity_conflict,
            };
            if self.registry.is_reporter(&answer.service) {
                return Some(answer);
            }
            named_but_unknown = Some(answer);
        } else if let Some(service) = header_named {
            let answer = DownstreamPeer::plain(service, PeerEvidence::Header);
            if self.registry.is_reporter(&answer.service) {
                return Some(answer);
            }
            named_but_unknown = Some(answer);
        }
        let peer = obs.addresses.downstream_peer.get();
        let local = obs.addresses.downstream_local.get();
        if let (Some(peer), Some(local)) = (peer, local)
            && let Some(owner) = self.registry.connection_owner(peer, local)
        {
            return Some(DownstreamPeer::plain(owner, PeerEvidence::Connection));
        }
        if named_but_unknown.is_some() {
            return if may_wait { None } else { named_but_unknown };
        }
        if let Some(service) = peer.and_then(|p| self.registry.static_lookup(p)) {
            return Some(DownstreamPeer::plain(service, PeerEvidence::StaticMap));
        }
        if may_wait && peer.is_some() && local.is_some() {
            return None;
        }
        Some(DownstreamPeer::plain(
            ServiceRef::virtual_node(fallback),
            PeerEvidence::Fallback,
        ))
    }

    /// The caller the caller-cluster header names, or `None` when it names the reporter
    /// itself (Envoy also sets it on requests a proxy originates) or several services.
    fn caller_by_header(&self, reporter: &NodeIdentity, cluster: &str) -> Option<ServiceRef> {
        if cluster == reporter.cluster {
            return None;
        }
        let service = match self.registry.caller_by_cluster(cluster, &reporter.service) {
            ClusterLookup::Found(service) => service,
            ClusterLookup::Ambiguous => return None,
            ClusterLookup::Unknown => self.registry.canonical(&service_from_host(cluster)),
        };
        (service != reporter.service).then_some(service)
    }

    /// The callee and its instance; `None` while a name that no reporter carries may
    /// still be tied to one by the server's own report.
    fn upstream_peer(&self, obs: &Observation, may_wait: bool) -> Option<(ServiceRef, String)> {
        let remote = obs.addresses.upstream_remote.get();
        let instance = |remote: Option<SocketAddr>| {
            remote.map_or_else(|| UNKNOWN.to_string(), |r| r.to_string())
        };
        if let Some(listener) = remote.and_then(|r| self.registry.listener(r)) {
            // The server itself reported this address: its name wins over the caller's.
            self.registry
                .learn_cluster_alias(obs.upstream_cluster, &listener.service);
            return Some((listener.service, listener.instance));
        }
        if let Some(service) = self.registry.cluster_alias(obs.upstream_cluster) {
            return Some((service, instance(remote)));
        }
        let named = match parse_istio_cluster(obs.upstream_cluster) {
            Some(c) if !c.host.is_empty() => Some(service_from_host(c.host)),
            Some(_) => None,
            None if is_passthrough(obs.upstream_cluster) || obs.upstream_cluster.is_empty() => None,
            None => Some(NamedService {
                namespace: None,
                name: obs.upstream_cluster.to_string(),
            }),
        };
        if let Some(named) = named {
            let service = self.registry.canonical(&named);
            if may_wait && remote.is_some() && !self.registry.is_reporter(&service) {
                return None;
            }
            return Some((service, instance(remote)));
        }
        if let Some(service) = remote.and_then(|r| self.registry.static_lookup(r)) {
            return Some((service, instance(remote)));
        }
        let name = if obs.upstream_cluster == "BlackHoleCluster" {
            "blackhole"
        } else if is_passthrough(obs.upstream_cluster) {
            EXTERNAL
        } else {
            UNKNOWN
        };
        Some((ServiceRef::virtual_node(name), instance(remote)))
    }
}

/// Istio's catch-all clusters name no service.
pub(crate) fn is_passthrough(cluster: &str) -> bool {
    matches!(
        cluster,
        "PassthroughCluster"
            | "BlackHoleCluster"
            | "InboundPassthroughCluster"
            | "InboundPassthroughClusterIpv4"
            | "InboundPassthroughClusterIpv6"
    )
}

#[cfg(test)]
mod tests;
