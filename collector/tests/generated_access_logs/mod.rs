//! Generators of access-log messages for property tests: entries as proxies send them and
//! worse (missing parts, Unicode and oversized strings, addresses that are not literal IPs,
//! extreme times), built as prost messages. The larger strategies are boxed: their value
//! trees nest deep enough to overflow a test thread's stack in a debug build otherwise.

use std::collections::HashMap;
use std::net::IpAddr;

use meshscope_collector::entry::DOWNSTREAM_CLUSTER_HEADER;
use meshscope_proto::pb::envoy::config::core::v3::{
    Address, EnvoyInternalAddress, Node, Pipe, SocketAddress, address,
    envoy_internal_address::AddressNameSpecifier, socket_address::PortSpecifier,
};
use meshscope_proto::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, ConnectionProperties, HttpAccessLogEntry, HttpRequestProperties,
    HttpResponseProperties, ResponseFlags, TcpAccessLogEntry, TlsProperties,
    tls_properties::{
        CertificateProperties,
        certificate_properties::{SubjectAltName, subject_alt_name::San},
    },
};
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries, TcpAccessLogEntries,
};
use meshscope_proto::pb::google::protobuf::{Duration, Timestamp, UInt32Value};
use proptest::prelude::*;

/// Text as proxies log it and worse: empty, ASCII, any Unicode, sometimes longer than
/// the field limit the tests read with.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9./|_-]{1,30}",
        "\\PC{0,12}",
        any::<String>(),
    ]
}

/// A value of a `grpc-status` header or trailer: zero (with or without spaces around it), an
/// error code, or other text. The spaces are ASCII ones: gRPC statuses are ASCII digits, and
/// whether a Unicode space around one counts as space is left open here.
fn grpc_status() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just(" 0\t".to_string()),
        Just("14".to_string()),
        Just(String::new()),
        "[0-9 \t]{0,4}",
        "[a-zA-Z0-9]{0,8}",
    ]
}

fn ip_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|s| IpAddr::from(s).to_string()),
        // Not literals a reader may take: names, zones, leading zeros, a fifth octet.
        Just("backend.shop.svc".to_string()),
        Just("fe80::1%eth0".to_string()),
        Just("010.1.2.3".to_string()),
        Just("1.2.3.4.5".to_string()),
        Just("256.1.1.1".to_string()),
        Just("::ffff:10.0.0.1".to_string()),
        text(),
    ]
}

fn address() -> BoxedStrategy<Option<Address>> {
    let port = prop_oneof![
        3 => (0u32..70_000).prop_map(PortSpecifier::PortValue),
        1 => any::<u32>().prop_map(PortSpecifier::PortValue),
        1 => text().prop_map(PortSpecifier::NamedPort),
    ];
    let socket = (ip_literal(), proptest::option::of(port)).prop_map(|(ip, port)| {
        address::Address::SocketAddress(SocketAddress {
            address: ip,
            port_specifier: port,
            ..Default::default()
        })
    });
    let kind = prop_oneof![
        6 => socket,
        1 => text().prop_map(|path| address::Address::Pipe(Pipe { path, mode: 0 })),
        1 => text().prop_map(|name| address::Address::EnvoyInternalAddress(EnvoyInternalAddress {
            address_name_specifier: Some(AddressNameSpecifier::ServerListenerName(name)),
            endpoint_id: String::new(),
        })),
    ];
    proptest::option::weighted(
        0.8,
        proptest::option::of(kind).prop_map(|a| Address { address: a }),
    )
    .boxed()
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    let seconds = prop_oneof![
        8 => 0i64..4_102_444_800,
        1 => any::<i64>(),
    ];
    (seconds, 0i32..1_000_000_000).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
}

fn duration() -> impl Strategy<Value = Duration> {
    let seconds = prop_oneof![
        8 => 0i64..100_000,
        1 => any::<i64>(),
    ];
    (seconds, 0i32..1_000_000_000).prop_map(|(seconds, nanos)| Duration { seconds, nanos })
}

/// Byte counts small enough that a request's or a response's two counts add up without
/// overflow.
fn byte_count() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0u64..100_000, 0u64..(1 << 48)]
}

/// Response flags with none, one or a few set, by their field number (1 to 28), as in real
/// traffic where most entries carry none.
fn response_flags() -> impl Strategy<Value = Option<ResponseFlags>> {
    let set = proptest::collection::vec(1u32..=28, 0..3);
    proptest::option::of(set.prop_map(|set| {
        let on = |field: u32| set.contains(&field);
        ResponseFlags {
            failed_local_healthcheck: on(1),
            no_healthy_upstream: on(2),
            upstream_request_timeout: on(3),
            local_reset: on(4),
            upstream_remote_reset: on(5),
            upstream_connection_failure: on(6),
            upstream_connection_termination: on(7),
            upstream_overflow: on(8),
            no_route_found: on(9),
            delay_injected: on(10),
            fault_injected: on(11),
            rate_limited: on(12),
            unauthorized_details: on(13).then(Default::default),
            rate_limit_service_error: on(14),
            downstream_connection_termination: on(15),
            upstream_retry_limit_exceeded: on(16),
            stream_idle_timeout: on(17),
            invalid_envoy_request_headers: on(18),
            downstream_protocol_error: on(19),
            upstream_max_stream_duration_reached: on(20),
            response_from_cache_filter: on(21),
            no_filter_config_found: on(22),
            duration_timeout: on(23),
            upstream_protocol_error: on(24),
            no_cluster_found: on(25),
            overload_manager: on(26),
            dns_resolution_failure: on(27),
            downstream_remote_reset: on(28),
        }
    }))
}

fn tls() -> BoxedStrategy<Option<TlsProperties>> {
    let san = proptest::option::weighted(
        0.9,
        prop_oneof![text().prop_map(San::Uri), text().prop_map(San::Dns)],
    )
    .prop_map(|san| SubjectAltName { san });
    let peer = (proptest::collection::vec(san, 0..4), text()).prop_map(|(sans, subject)| {
        CertificateProperties {
            subject_alt_name: sans,
            subject,
            issuer: String::new(),
        }
    });
    proptest::option::of(proptest::option::of(peer).prop_map(|peer| TlsProperties {
        peer_certificate_properties: peer,
        tls_sni_hostname: "sni.example".into(),
        ..Default::default()
    }))
    .boxed()
}

fn common() -> BoxedStrategy<AccessLogCommon> {
    let addresses = (address(), address(), address(), address(), address());
    let times = (
        proptest::option::weighted(0.95, timestamp()),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
    );
    let bytes = (byte_count(), byte_count(), byte_count(), byte_count());
    (
        addresses,
        times,
        bytes,
        tls(),
        response_flags(),
        text(),
        text(),
        // Mostly a few attempts, as a retry policy makes; now and then any number.
        prop_oneof![4 => 0u32..5, 1 => any::<u32>()],
    )
        .prop_map(
            |(
                (remote, direct_remote, local, upstream_remote, upstream_local),
                (start, duration, last_tx),
                (ds_sent, ds_received, us_sent, us_received),
                tls,
                flags,
                cluster,
                route,
                attempts,
            )| AccessLogCommon {
                downstream_remote_address: remote,
                downstream_direct_remote_address: direct_remote,
                downstream_local_address: local,
                upstream_remote_address: upstream_remote,
                upstream_local_address: upstream_local,
                start_time: start,
                duration,
                time_to_last_downstream_tx_byte: last_tx,
                downstream_wire_bytes_sent: ds_sent,
                downstream_wire_bytes_received: ds_received,
                upstream_wire_bytes_sent: us_sent,
                upstream_wire_bytes_received: us_received,
                tls_properties: tls,
                response_flags: flags,
                upstream_cluster: cluster,
                route_name: route,
                upstream_request_attempt_count: attempts,
                ..Default::default()
            },
        )
        .boxed()
}

/// A header map of other headers that may also hold `named`, with a value from `value`.
fn headers(
    named: &'static str,
    value: BoxedStrategy<String>,
) -> impl Strategy<Value = HashMap<String, String>> {
    (
        proptest::collection::hash_map(text(), text(), 0..4),
        proptest::option::of(value),
    )
        .prop_map(move |(mut map, value)| {
            map.remove(named);
            if let Some(value) = value {
                map.insert(named.to_string(), value);
            }
            map
        })
}

fn request() -> BoxedStrategy<HttpRequestProperties> {
    let method = prop_oneof![4 => 0i32..=10, 1 => any::<i32>()];
    (
        method,
        text(),
        byte_count(),
        byte_count(),
        headers(DOWNSTREAM_CLUSTER_HEADER, text().boxed()),
        text(),
    )
        .prop_map(
            |(method, path, header_bytes, body_bytes, headers, request_id)| HttpRequestProperties {
                request_method: method,
                path,
                request_id,
                authority: "shop.example".into(),
                request_headers_bytes: header_bytes,
                request_body_bytes: body_bytes,
                request_headers: headers,
                ..Default::default()
            },
        )
        .boxed()
}

fn response() -> BoxedStrategy<HttpResponseProperties> {
    let code = proptest::option::of(prop_oneof![100u32..600, any::<u32>()]);
    (
        code,
        byte_count(),
        byte_count(),
        headers("grpc-status", grpc_status().boxed()),
        headers("grpc-status", grpc_status().boxed()),
    )
        .prop_map(
            |(code, header_bytes, body_bytes, headers, trailers)| HttpResponseProperties {
                response_code: code.map(|value| UInt32Value { value }),
                response_headers_bytes: header_bytes,
                response_body_bytes: body_bytes,
                response_headers: headers,
                response_trailers: trailers,
                response_code_details: "via_upstream".into(),
                ..Default::default()
            },
        )
        .boxed()
}

fn http_entry() -> BoxedStrategy<HttpAccessLogEntry> {
    (
        proptest::option::weighted(0.95, common()),
        proptest::option::of(request()),
        proptest::option::of(response()),
    )
        .prop_map(|(common, request, response)| HttpAccessLogEntry {
            common_properties: common,
            protocol_version: 2,
            request,
            response,
        })
        .boxed()
}

fn tcp_entry() -> BoxedStrategy<TcpAccessLogEntry> {
    (
        proptest::option::weighted(0.95, common()),
        proptest::option::of((byte_count(), byte_count())),
    )
        .prop_map(|(common, connection)| TcpAccessLogEntry {
            common_properties: common,
            connection_properties: connection.map(|(received, sent)| ConnectionProperties {
                received_bytes: received,
                sent_bytes: sent,
            }),
        })
        .boxed()
}

fn identifier() -> impl Strategy<Value = Option<Identifier>> {
    proptest::option::of(
        (text(), text(), text()).prop_map(|(id, cluster, log_name)| Identifier {
            node: Some(Node {
                id,
                cluster,
                ..Default::default()
            }),
            log_name,
        }),
    )
}

/// A message with no entries, HTTP entries or TCP entries, with or without the stream's
/// identifier.
pub(crate) fn message() -> BoxedStrategy<StreamAccessLogsMessage> {
    let entries = prop_oneof![
        Just(None),
        proptest::collection::vec(http_entry(), 0..6)
            .prop_map(|log_entry| Some(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry }))),
        proptest::collection::vec(tcp_entry(), 0..6)
            .prop_map(|log_entry| Some(LogEntries::TcpLogs(TcpAccessLogEntries { log_entry }))),
    ];
    (identifier(), entries)
        .prop_map(|(identifier, log_entries)| StreamAccessLogsMessage {
            identifier,
            log_entries,
        })
        .boxed()
}
