//! Who is on the other end of an entry. The server side of a call names its caller from,
//! in order: the `x-envoy-downstream-service-cluster` header, the peer certificate's
//! SPIFFE id, the connection's 4-tuple as the caller's own proxy reported it, and the
//! static address map; what stays unknown becomes a virtual node. The client side names
//! its callee from the server's listening address when that server reports for itself,
//! then the upstream cluster (Istio or plain name), then the static address map.

use std::net::SocketAddr;

use meshscope_storage::{ServiceRef, Side};

use crate::entry::Observation;
use crate::identity::NodeIdentity;
use crate::names::{NamedService, parse_istio_cluster, parse_spiffe, service_from_host};
use crate::registry::Registry;
use crate::role::Role;

/// Virtual node for callers from outside the mesh, as seen by a gateway.
pub const EXTERNAL: &str = "external";
/// Virtual node for peers no evidence names.
pub const UNKNOWN: &str = "unknown";

/// How a caller was named, for the `/metrics` counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEvidence {
    Header,
    Certificate,
    Connection,
    StaticMap,
    Fallback,
}

impl PeerEvidence {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerEvidence::Header => "header",
            PeerEvidence::Certificate => "certificate",
            PeerEvidence::Connection => "connection",
            PeerEvidence::StaticMap => "static_map",
            PeerEvidence::Fallback => "fallback",
        }
    }
}

/// One call as one side saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub side: Side,
    pub source: ServiceRef,
    pub target: ServiceRef,
    /// The instance of the target that answered.
    pub target_instance: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    Ready {
        attributions: Vec<Attribution>,
        evidence: Option<PeerEvidence>,
    },
    /// The caller's own report may still be on its way: ask again later.
    Wait,
}

pub struct Resolver<'a> {
    pub registry: &'a Registry,
}

impl Resolver<'_> {
    /// `may_wait` is false once an entry has waited its time.
    pub fn resolve(
        &self,
        reporter: &NodeIdentity,
        role: Role,
        obs: &Observation,
        may_wait: bool,
    ) -> Resolution {
        let mut attributions = Vec::with_capacity(2);
        let mut evidence = None;
        if matches!(role, Role::Inbound | Role::Gateway) {
            let fallback = if role == Role::Gateway { EXTERNAL } else { UNKNOWN };
            let Some((source, how)) = self.downstream_peer(reporter, obs, may_wait, fallback)
            else {
                return Resolution::Wait;
            };
            evidence = Some(how);
            attributions.push(Attribution {
                side: Side::Server,
                source,
                target: reporter.service.clone(),
                target_instance: reporter.instance.clone(),
            });
        }
        if matches!(role, Role::Outbound | Role::Gateway) {
            let (target, target_instance) = self.upstream_peer(obs);
            attributions.push(Attribution {
                side: Side::Client,
                source: reporter.service.clone(),
                target,
                target_instance,
            });
        }
        Resolution::Ready {
            attributions,
            evidence,
        }
    }

    /// Remembers what this entry teaches about the mesh, before resolving anything.
    pub fn learn(&self, reporter: &NodeIdentity, role: Role, obs: &Observation) {
        if matches!(role, Role::Inbound | Role::Gateway) {
            if let Some(local) = obs.downstream_local {
                self.registry
                    .learn_listener(local, &reporter.service, &reporter.instance);
            }
        }
        if matches!(role, Role::Outbound | Role::Gateway) {
            if let (Some(local), Some(remote)) = (obs.upstream_local, obs.upstream_remote) {
                self.registry
                    .learn_connection(local, remote, &reporter.service);
            }
        }
    }

    fn downstream_peer(
        &self,
        reporter: &NodeIdentity,
        obs: &Observation,
        may_wait: bool,
        fallback: &str,
    ) -> Option<(ServiceRef, PeerEvidence)> {
        if let Some(cluster) = &obs.downstream_cluster_header {
            // Envoy also sets the header on requests a proxy originates: naming itself
            // is no evidence of the caller.
            if *cluster != reporter.cluster {
                let service = self.registry.by_cluster(cluster).unwrap_or_else(|| {
                    self.registry.canonical(&service_from_host(cluster))
                });
                if service != reporter.service {
                    return Some((service, PeerEvidence::Header));
                }
            }
        }
        if let Some(spiffe) = obs.peer_uri_san.as_deref().and_then(parse_spiffe) {
            return Some((self.registry.by_spiffe(&spiffe), PeerEvidence::Certificate));
        }
        let peer = obs.downstream_direct_remote;
        if let (Some(peer), Some(local)) = (peer, obs.downstream_local) {
            if let Some(owner) = self.registry.connection_owner(peer, local) {
                return Some((owner, PeerEvidence::Connection));
            }
        }
        if let Some(service) = peer.and_then(|p| self.registry.static_lookup(p)) {
            return Some((service, PeerEvidence::StaticMap));
        }
        if may_wait && peer.is_some() && obs.downstream_local.is_some() {
            return None;
        }
        Some((ServiceRef::virtual_node(fallback), PeerEvidence::Fallback))
    }

    fn upstream_peer(&self, obs: &Observation) -> (ServiceRef, String) {
        let remote = obs.upstream_remote;
        let instance = |remote: Option<SocketAddr>| {
            remote.map_or_else(|| UNKNOWN.to_string(), |r| r.to_string())
        };
        if let Some(listener) = remote.and_then(|r| self.registry.listener(r)) {
            // The server itself reported this address: its name wins over the caller's.
            self.registry
                .learn_cluster_alias(&obs.upstream_cluster, &listener.service);
            return (listener.service, listener.instance);
        }
        if let Some(service) = self.registry.cluster_alias(&obs.upstream_cluster) {
            return (service, instance(remote));
        }
        let named = match parse_istio_cluster(&obs.upstream_cluster) {
            Some(c) if !c.host.is_empty() => Some(service_from_host(c.host)),
            Some(_) => None,
            None if is_passthrough(&obs.upstream_cluster) || obs.upstream_cluster.is_empty() => {
                None
            }
            None => Some(NamedService {
                namespace: None,
                name: obs.upstream_cluster.clone(),
            }),
        };
        if let Some(named) = named {
            return (self.registry.canonical(&named), instance(remote));
        }
        if let Some(service) = remote.and_then(|r| self.registry.static_lookup(r)) {
            return (service, instance(remote));
        }
        let name = if obs.upstream_cluster == "BlackHoleCluster" {
            "blackhole"
        } else if is_passthrough(&obs.upstream_cluster) {
            EXTERNAL
        } else {
            UNKNOWN
        };
        (ServiceRef::virtual_node(name), instance(remote))
    }
}

/// Istio's catch-all clusters name no service.
fn is_passthrough(cluster: &str) -> bool {
    matches!(
        cluster,
        "PassthroughCluster"
            | "BlackHoleCluster"
            | "InboundPassthroughCluster"
            | "InboundPassthroughClusterIpv4"
            | "InboundPassthroughClusterIpv6"
    )
}
