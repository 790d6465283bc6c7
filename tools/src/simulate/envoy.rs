//! Access log entries and stream identifiers shaped like real Envoy's (see the shop-mesh
//! captures): Istio-style node metadata, `inbound|port||` / `outbound|port||host` clusters,
//! the four addresses of each connection, SPIFFE peer certificates on mTLS hops and the
//! caller's cluster in `x-envoy-downstream-service-cluster`.

use std::collections::HashMap;
use std::time::SystemTime;

use meshscope_proto::pb::envoy::config::core::v3::{
    Address, Node, SocketAddress, address, socket_address::PortSpecifier,
};
use meshscope_proto::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, ConnectionProperties, HttpAccessLogEntry, HttpRequestProperties,
    HttpResponseProperties, TcpAccessLogEntry, TlsProperties,
    tls_properties::CertificateProperties,
    tls_properties::certificate_properties::{SubjectAltName, subject_alt_name::San},
};
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier;
use meshscope_proto::pb::google::protobuf::{
    Duration, Struct, Timestamp, UInt32Value, Value, value::Kind,
};

pub(crate) struct Proxy {
    pub(crate) node_id: String,
    pub(crate) cluster: String,
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) ip: [u8; 4],
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

pub(crate) fn identifier(proxy: &Proxy, log_name: &str) -> Identifier {
    let labels = Struct {
        fields: HashMap::from([
            ("app".to_string(), string(&proxy.cluster)),
            ("version".to_string(), string("v1")),
        ]),
    };
    let metadata = Struct {
        fields: HashMap::from([
            ("NAMESPACE".to_string(), string(&proxy.namespace)),
            ("NAME".to_string(), string(&proxy.pod)),
            ("WORKLOAD_NAME".to_string(), string(&proxy.cluster)),
            ("SERVICE_ACCOUNT".to_string(), string(&proxy.cluster)),
            ("INSTANCE_IPS".to_string(), string(&ip_string(proxy.ip))),
            (
                "LABELS".to_string(),
                Value {
                    kind: Some(Kind::StructValue(labels)),
                },
            ),
        ]),
    };
    Identifier {
        node: Some(Node {
            id: proxy.node_id.clone(),
            cluster: proxy.cluster.clone(),
            metadata: Some(metadata),
            user_agent_name: "envoy".into(),
            ..Default::default()
        }),
        log_name: log_name.to_string(),
    }
}

pub(crate) fn ip_string(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

pub(crate) fn address(ip: [u8; 4], port: u16) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip_string(ip),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    })
}

pub(crate) fn timestamp(t: SystemTime) -> Option<Timestamp> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Some(Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

pub(crate) fn duration(ms: f64) -> Option<Duration> {
    let nanos = (ms * 1.0e6) as i64;
    Some(Duration {
        seconds: nanos / 1_000_000_000,
        nanos: (nanos % 1_000_000_000) as i32,
    })
}

/// One side of one hop, before it becomes an entry.
pub(crate) struct Hop<'a> {
    pub(crate) start: SystemTime,
    pub(crate) latency_ms: f64,
    pub(crate) cluster: String,
    pub(crate) downstream_remote: ([u8; 4], u16),
    pub(crate) downstream_local: ([u8; 4], u16),
    pub(crate) upstream_local: ([u8; 4], u16),
    pub(crate) upstream_remote: ([u8; 4], u16),
    /// The caller's `node.cluster`, as Envoy's `add_user_agent` sets it.
    pub(crate) caller_cluster: Option<&'a str>,
    /// SPIFFE id of the caller's certificate on an mTLS hop.
    pub(crate) peer_spiffe: Option<String>,
    pub(crate) method: i32,
    pub(crate) path: &'a str,
    pub(crate) status: u32,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
}

fn common(hop: &Hop<'_>) -> AccessLogCommon {
    AccessLogCommon {
        start_time: timestamp(hop.start),
        duration: duration(hop.latency_ms),
        upstream_cluster: hop.cluster.clone(),
        downstream_remote_address: address(hop.downstream_remote.0, hop.downstream_remote.1),
        downstream_direct_remote_address: address(hop.downstream_remote.0, hop.downstream_remote.1),
        downstream_local_address: address(hop.downstream_local.0, hop.downstream_local.1),
        upstream_local_address: address(hop.upstream_local.0, hop.upstream_local.1),
        upstream_remote_address: address(hop.upstream_remote.0, hop.upstream_remote.1),
        downstream_wire_bytes_received: hop.request_bytes,
        downstream_wire_bytes_sent: hop.response_bytes,
        upstream_wire_bytes_sent: hop.request_bytes,
        upstream_wire_bytes_received: hop.response_bytes,
        upstream_request_attempt_count: 1,
        tls_properties: hop.peer_spiffe.as_ref().map(|spiffe| TlsProperties {
            tls_version: 3,
            peer_certificate_properties: Some(CertificateProperties {
                subject_alt_name: vec![SubjectAltName {
                    san: Some(San::Uri(spiffe.clone())),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn http_entry(hop: &Hop<'_>, request_id: &str) -> HttpAccessLogEntry {
    let mut headers = HashMap::from([("x-request-id".to_string(), request_id.to_string())]);
    if let Some(caller) = hop.caller_cluster {
        headers.insert(
            "x-envoy-downstream-service-cluster".to_string(),
            caller.to_string(),
        );
    }
    HttpAccessLogEntry {
        common_properties: Some(common(hop)),
        protocol_version: 2,
        request: Some(HttpRequestProperties {
            request_method: hop.method,
            scheme: "http".into(),
            path: hop.path.to_string(),
            request_id: request_id.to_string(),
            request_headers: headers,
            request_headers_bytes: hop.request_bytes / 2,
            request_body_bytes: hop.request_bytes - hop.request_bytes / 2,
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: hop.status }),
            response_headers_bytes: 120,
            response_body_bytes: hop.response_bytes.saturating_sub(120),
            response_code_details: "via_upstream".into(),
            ..Default::default()
        }),
    }
}

/// Sets the attempts the caller's proxy made for the request of a client-side `entry`.
pub(crate) fn set_attempts(entry: &mut HttpAccessLogEntry, attempts: u32) {
    if let Some(common) = entry.common_properties.as_mut() {
        common.upstream_request_attempt_count = attempts;
    }
}

pub(crate) fn tcp_entry(hop: &Hop<'_>) -> TcpAccessLogEntry {
    TcpAccessLogEntry {
        common_properties: Some(common(hop)),
        connection_properties: Some(ConnectionProperties {
            received_bytes: hop.request_bytes,
            sent_bytes: hop.response_bytes,
        }),
    }
}
