//! Which side of a call a log entry describes. Envoy does not say, so it is inferred, in
//! this order:
//! 1. a gateway reporter (Istio `router~` node, `istio=*gateway` label, or the `gateway`
//!    rule matching its log name or service name) is the server of its downstream and the
//!    client of its upstream;
//! 2. the upstream cluster: `inbound|…` is the server side, `outbound|…` the client side;
//! 3. the log-name rules (`inbound_log_name`, `outbound_log_name`);
//! 4. otherwise the proxy is treated like a gateway (a front proxy): both sides.

use regex::Regex;

use crate::config::DirectionRules;
use crate::error::{Error, Result};
use crate::identity::NodeIdentity;
use crate::names::{ClusterDirection, istio_cluster_direction};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// The reporter is the server; the peer is downstream.
    Inbound,
    /// The reporter is the client; the peer is upstream.
    Outbound,
    /// The reporter sits between a downstream client and an upstream server.
    Gateway,
}

pub struct RoleRules {
    inbound: Regex,
    outbound: Regex,
    gateway: Regex,
}

impl RoleRules {
    pub fn new(rules: &DirectionRules) -> Result<RoleRules> {
        let compile = |name: &str, pattern: &str| {
            Regex::new(pattern)
                .map_err(|e| Error::Config(format!("rules.{name}: invalid regex: {e}")))
        };
        Ok(RoleRules {
            inbound: compile("inbound_log_name", &rules.inbound_log_name)?,
            outbound: compile("outbound_log_name", &rules.outbound_log_name)?,
            gateway: compile("gateway", &rules.gateway)?,
        })
    }

    /// Whether a stream's reporter is a gateway: decided once per stream.
    pub fn is_gateway(&self, reporter: &NodeIdentity, log_name: &str) -> bool {
        reporter.is_gateway
            || (!log_name.is_empty() && self.gateway.is_match(log_name))
            || self.gateway.is_match(&reporter.service.name)
    }

    pub fn role(&self, gateway: bool, log_name: &str, upstream_cluster: &str) -> Role {
        if gateway {
            return Role::Gateway;
        }
        if let Some(direction) = istio_cluster_direction(upstream_cluster) {
            return match direction {
                ClusterDirection::Inbound => Role::Inbound,
                ClusterDirection::Outbound => Role::Outbound,
            };
        }
        if self.inbound.is_match(log_name) {
            return Role::Inbound;
        }
        if self.outbound.is_match(log_name) {
            return Role::Outbound;
        }
        Role::Gateway
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::tests::node;

    #[test]
    fn role_order() {
        let rules = RoleRules::new(&DirectionRules::default()).unwrap();
        let sidecar = NodeIdentity::from_node(&node("f", "frontend", &[], &[])).unwrap();
        let ingress = NodeIdentity::from_node(&node("i", "ingress", &[], &[])).unwrap();
        let router = NodeIdentity::from_node(&node(
            "router~1~gw.ns~ns.svc.cluster.local",
            "edge",
            &[],
            &[],
        ))
        .unwrap();
        let cases = [
            (
                &sidecar,
                "frontend_inbound_http",
                "inbound|18080||",
                Role::Inbound,
            ),
            (
                &sidecar,
                "frontend_outbound_http",
                "outbound|18200||backend.shop.svc.cluster.local",
                Role::Outbound,
            ),
            // The cluster name wins over a misleading log name.
            (&sidecar, "inbound_log", "outbound|1||x", Role::Outbound),
            (&sidecar, "app_inbound", "local_app", Role::Inbound),
            (&sidecar, "app_outbound", "backend", Role::Outbound),
            (&sidecar, "access", "backend", Role::Gateway),
            (
                &ingress,
                "edge_http",
                "outbound|18100||frontend.shop.svc.cluster.local",
                Role::Gateway,
            ),
            (
                &sidecar,
                "ingress_http",
                "outbound|18100||frontend.shop.svc.cluster.local",
                Role::Gateway,
            ),
            (
                &router,
                "http",
                "outbound|80||web.shop.svc.cluster.local",
                Role::Gateway,
            ),
        ];
        for (reporter, log_name, cluster, want) in cases {
            let gateway = rules.is_gateway(reporter, log_name);
            assert_eq!(
                rules.role(gateway, log_name, cluster),
                want,
                "{log_name} {cluster}"
            );
        }
    }
}
