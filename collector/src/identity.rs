//! Who is reporting: a proxy's identity read from the node in a stream's first message.
//! Shared by every receiver so that access logs and metrics name a proxy the same way.

use meshscope_proto::pb::envoy::config::core::v3::Node;
use meshscope_proto::pb::google::protobuf::{Struct, Value, value::Kind};
use meshscope_storage::ServiceRef;

/// Labels that name the application, most specific first (Istio's canonical name, the
/// Kubernetes recommended label, then the common `app`).
const NAME_LABELS: [&str; 3] = [
    "service.istio.io/canonical-name",
    "app.kubernetes.io/name",
    "app",
];

/// Longest name part we accept from a proxy; longer ones are cut so that a hostile or
/// broken proxy cannot grow memory through its identity.
pub const MAX_NAME_LEN: usize = 253;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeIdentity {
    pub service: ServiceRef,
    /// The instance: the workload's own name (`NAME`, a pod name) when given, else the node id.
    pub instance: String,
    pub node_id: String,
    /// `node.cluster`, which plain Envoy configs use as the service name; other proxies'
    /// clusters and `x-envoy-downstream-service-cluster` headers refer to it.
    pub cluster: String,
    pub service_account: Option<String>,
    pub version: Option<String>,
    /// `envoy/1.39.3` style, from the node's user agent.
    pub proxy_version: String,
    /// Addresses the proxy says it has (`INSTANCE_IPS`).
    pub instance_ips: Vec<String>,
    /// An Istio gateway (`router~…` node id) or a proxy labelled as a gateway.
    pub is_gateway: bool,
}

/// Why a node cannot name a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityError {
    /// Neither metadata, `node.cluster` nor `node.id` gives a name.
    Anonymous,
}

impl NodeIdentity {
    /// Reads a node: Istio-style metadata first (`NAMESPACE`, `LABELS`, `WORKLOAD_NAME`),
    /// then `node.cluster` as the service and `node.id` as the instance.
    pub fn from_node(node: &Node) -> Result<NodeIdentity, IdentityError> {
        let metadata = node.metadata.as_ref();
        let labels = metadata.and_then(|m| struct_field(m, "LABELS"));
        let label = |key: &str| labels.and_then(|l| string_field(l, key));
        let meta = |key: &str| metadata.and_then(|m| string_field(m, key));

        let namespace = meta("NAMESPACE").unwrap_or_default();
        let name = NAME_LABELS
            .iter()
            .find_map(|key| label(key))
            .or_else(|| meta("WORKLOAD_NAME"))
            .or_else(|| non_empty(&node.cluster))
            .or_else(|| non_empty(&node.id).map(|id| name_from_node_id(&id)))
            .ok_or(IdentityError::Anonymous)?;
        let instance = meta("NAME")
            .or_else(|| non_empty(&node.id))
            .unwrap_or_else(|| name.clone());
        let istio_gateway_label = label("istio").is_some_and(|v| v.contains("gateway"));
        let proxy_version = proxy_version(node);
        Ok(NodeIdentity {
            service: ServiceRef::service(clip(&namespace), clip(&name)),
            instance: clip(&instance),
            node_id: clip(&node.id),
            cluster: clip(&node.cluster),
            service_account: meta("SERVICE_ACCOUNT").map(|s| clip(&s)),
            version: label("version").map(|s| clip(&s)),
            proxy_version: clip(&proxy_version),
            instance_ips: meta("INSTANCE_IPS")
                .map(|ips| ips.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            is_gateway: node.id.starts_with("router~") || istio_gateway_label,
        })
    }
}

/// `envoy/1.39.3`: the user agent name and its version, however the node spells it.
fn proxy_version(node: &Node) -> String {
    use meshscope_proto::pb::envoy::config::core::v3::node::UserAgentVersionType;
    let version = match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
        Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
            .version
            .as_ref()
            .map(|s| format!("{}.{}.{}", s.major_number, s.minor_number, s.patch))
            .unwrap_or_default(),
        None => String::new(),
    };
    match (node.user_agent_name.is_empty(), version.is_empty()) {
        (_, true) => node.user_agent_name.clone(),
        (true, false) => version,
        (false, false) => format!("{}/{}", node.user_agent_name, version),
    }
}

/// Istio node ids look like `sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local`;
/// the third part holds `pod.namespace`. Other ids are taken whole.
fn name_from_node_id(id: &str) -> String {
    let parts: Vec<&str> = id.split('~').collect();
    if parts.len() == 4 {
        return parts[2].split('.').next().unwrap_or(id).to_string();
    }
    id.to_string()
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_NAME_LEN {
        return s.to_string();
    }
    let mut end = MAX_NAME_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn struct_field<'a>(s: &'a Struct, key: &str) -> Option<&'a Struct> {
    match s.fields.get(key)?.kind.as_ref()? {
        Kind::StructValue(inner) => Some(inner),
        _ => None,
    }
}

fn string_field(s: &Struct, key: &str) -> Option<String> {
    value_string(s.fields.get(key)?)
}

fn value_string(v: &Value) -> Option<String> {
    match v.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s.clone()),
        Kind::NumberValue(n) => Some(n.to_string()),
        Kind::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn string_value(s: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(s.to_string())),
        }
    }

    pub(crate) fn node(
        id: &str,
        cluster: &str,
        meta: &[(&str, &str)],
        labels: &[(&str, &str)],
    ) -> Node {
        let mut fields: HashMap<String, Value> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), string_value(v)))
            .collect();
        if !labels.is_empty() {
            let label_fields = labels
                .iter()
                .map(|(k, v)| (k.to_string(), string_value(v)))
                .collect();
            fields.insert(
                "LABELS".into(),
                Value {
                    kind: Some(Kind::StructValue(Struct {
                        fields: label_fields,
                    })),
                },
            );
        }
        Node {
            id: id.into(),
            cluster: cluster.into(),
            metadata: (!fields.is_empty()).then_some(Struct { fields }),
            ..Default::default()
        }
    }

    #[test]
    fn identity_rules() {
        struct Case {
            node: Node,
            service: &'static str,
            instance: &'static str,
            gateway: bool,
        }
        let cases = [
            Case {
                node: node(
                    "frontend-v1-pod-1",
                    "frontend",
                    &[
                        ("NAMESPACE", "shop"),
                        ("NAME", "frontend-7d9f-abc"),
                        ("WORKLOAD_NAME", "frontend-wl"),
                    ],
                    &[("app", "frontend"), ("version", "v1")],
                ),
                service: "shop/frontend",
                instance: "frontend-7d9f-abc",
                gateway: false,
            },
            Case {
                node: node(
                    "x",
                    "c",
                    &[("NAMESPACE", "shop")],
                    &[
                        ("app", "generic"),
                        ("service.istio.io/canonical-name", "reviews"),
                    ],
                ),
                service: "shop/reviews",
                instance: "x",
                gateway: false,
            },
            Case {
                node: node(
                    "x",
                    "c",
                    &[("NAMESPACE", "shop"), ("WORKLOAD_NAME", "wl")],
                    &[],
                ),
                service: "shop/wl",
                instance: "x",
                gateway: false,
            },
            Case {
                node: node("backend-vm-1", "backend", &[], &[]),
                service: "backend",
                instance: "backend-vm-1",
                gateway: false,
            },
            Case {
                node: node(
                    "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local",
                    "",
                    &[],
                    &[],
                ),
                service: "reviews-v1-abc",
                instance: "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local",
                gateway: false,
            },
            Case {
                node: node(
                    "router~10.0.0.9~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
                    "istio-ingressgateway",
                    &[("NAMESPACE", "istio-system")],
                    &[("app", "istio-ingressgateway"), ("istio", "ingressgateway")],
                ),
                service: "istio-system/istio-ingressgateway",
                instance: "router~10.0.0.9~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
                gateway: true,
            },
        ];
        for case in cases {
            let id = NodeIdentity::from_node(&case.node).unwrap();
            assert_eq!(id.service.id(), case.service);
            assert_eq!(id.instance, case.instance);
            assert_eq!(id.is_gateway, case.gateway, "{}", case.service);
        }
    }

    #[test]
    fn anonymous_node_is_an_error_and_huge_names_are_cut() {
        assert_eq!(
            NodeIdentity::from_node(&Node::default()),
            Err(IdentityError::Anonymous)
        );
        let long = "a".repeat(10_000);
        let id = NodeIdentity::from_node(&node(&long, &long, &[], &[])).unwrap();
        assert_eq!(id.service.name.len(), MAX_NAME_LEN);
        assert_eq!(id.instance.len(), MAX_NAME_LEN);
    }
}
