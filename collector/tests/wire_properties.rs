//! Property tests of the field-by-field access-log reader (`wire`): on generated messages,
//! encoded by prost, it must read every field it exposes as the prost-decoded message holds
//! it, and refuse an entry only for a reason the entry really has. Bytes that are not a
//! message, or that are a damaged one, may be refused but must never panic the reader.

use std::net::{IpAddr, SocketAddr};

use meshscope_collector::entry::{DOWNSTREAM_CLUSTER_HEADER, Observation, Reject};
use meshscope_collector::wire::Message;
use meshscope_proto::pb::envoy::config::core::v3::{
    Address, RequestMethod, address, socket_address::PortSpecifier,
};
use meshscope_proto::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, ResponseFlags, TcpAccessLogEntry,
    tls_properties::certificate_properties::subject_alt_name::San,
};
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    Identifier, LogEntries,
};
use meshscope_storage::Protocol;
use proptest::prelude::*;
use prost::Message as _;

mod generated_access_logs;

use generated_access_logs::message;

/// Small, so that generated strings often run past it.
const MAX_LEN: usize = 24;

// --- what the decoded message says ------------------------------------------------------

/// The socket address an `Address` names, when it is a literal IP and a port that fits.
fn literal_socket(addr: Option<&Address>) -> Option<SocketAddr> {
    let Some(address::Address::SocketAddress(socket)) = addr?.address.as_ref() else {
        return None;
    };
    let ip: IpAddr = socket.address.parse().ok()?;
    let port = match socket.port_specifier {
        Some(PortSpecifier::PortValue(port)) => u16::try_from(port).ok()?,
        _ => 0,
    };
    Some(SocketAddr::new(ip, port))
}

fn millis(seconds: i64, nanos: i32) -> f64 {
    seconds as f64 * 1000.0 + f64::from(nanos) / 1.0e6
}

/// The response flags that say the proxy got no answer from upstream or gave up on it.
fn upstream_failed(f: &ResponseFlags) -> bool {
    f.failed_local_healthcheck
        || f.no_healthy_upstream
        || f.upstream_request_timeout
        || f.local_reset
        || f.upstream_remote_reset
        || f.upstream_connection_failure
        || f.upstream_connection_termination
        || f.upstream_overflow
        || f.no_route_found
        || f.fault_injected
        || f.upstream_retry_limit_exceeded
        || f.stream_idle_timeout
        || f.upstream_max_stream_duration_reached
        || f.duration_timeout
        || f.upstream_protocol_error
        || f.no_cluster_found
        || f.overload_manager
        || f.dns_resolution_failure
}

/// Every reason the entry cannot be counted; empty when it can.
fn reject_reasons(
    common: Option<&AccessLogCommon>,
    request: Option<&HttpRequestProperties>,
) -> Vec<Reject> {
    let Some(common) = common else {
        return vec![Reject::MissingCommon];
    };
    let mut reasons = Vec::new();
    if common.start_time.is_none() {
        reasons.push(Reject::MissingStartTime);
    }
    let header = request.and_then(|r| r.request_headers.get(DOWNSTREAM_CLUSTER_HEADER));
    if common.upstream_cluster.len() > MAX_LEN
        || request.is_some_and(|r| r.path.len() > MAX_LEN)
        || header.is_some_and(|h| h.len() > MAX_LEN)
    {
        reasons.push(Reject::OversizedField);
    }
    reasons
}

/// What the common properties alone say, before the HTTP or TCP part adds to it.
struct Expected {
    start_ms: i64,
    duration_ms: f64,
    upstream_cluster: String,
    downstream_peer: Option<SocketAddr>,
    downstream_local: Option<SocketAddr>,
    upstream_local: Option<SocketAddr>,
    upstream_remote: Option<SocketAddr>,
    peer_uri_san: Option<String>,
    mtls: bool,
    failed: bool,
    downstream_bytes_in: u64,
    downstream_bytes_out: u64,
    upstream_bytes_out: u64,
    upstream_bytes_in: u64,
    method: &'static str,
    path: String,
    status: u32,
    downstream_cluster_header: Option<String>,
    upstream_attempts: u32,
    response_flags: u32,
    request_id: u64,
}

/// The response flags as a bit set: bit `n` for field `n` of `ResponseFlags` that is set
/// (for `unauthorized_details`, present).
fn flag_bits(f: &ResponseFlags) -> u32 {
    let fields = [
        (1, f.failed_local_healthcheck),
        (2, f.no_healthy_upstream),
        (3, f.upstream_request_timeout),
        (4, f.local_reset),
        (5, f.upstream_remote_reset),
        (6, f.upstream_connection_failure),
        (7, f.upstream_connection_termination),
        (8, f.upstream_overflow),
        (9, f.no_route_found),
        (10, f.delay_injected),
        (11, f.fault_injected),
        (12, f.rate_limited),
        (13, f.unauthorized_details.is_some()),
        (14, f.rate_limit_service_error),
        (15, f.downstream_connection_termination),
        (16, f.upstream_retry_limit_exceeded),
        (17, f.stream_idle_timeout),
        (18, f.invalid_envoy_request_headers),
        (19, f.downstream_protocol_error),
        (20, f.upstream_max_stream_duration_reached),
        (21, f.response_from_cache_filter),
        (22, f.no_filter_config_found),
        (23, f.duration_timeout),
        (24, f.upstream_protocol_error),
        (25, f.no_cluster_found),
        (26, f.overload_manager),
        (27, f.dns_resolution_failure),
        (28, f.downstream_remote_reset),
    ];
    fields
        .into_iter()
        .filter(|(_, on)| *on)
        .fold(0, |bits, (n, _)| bits | 1 << n)
}

fn expected_common(common: &AccessLogCommon) -> Expected {
    let start = common
        .start_time
        .as_ref()
        .expect("checked by reject_reasons");
    let peer = common
        .tls_properties
        .as_ref()
        .and_then(|t| t.peer_certificate_properties.as_ref());
    Expected {
        start_ms: start
            .seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(start.nanos / 1_000_000)),
        duration_ms: common
            .duration
            .as_ref()
            .or(common.time_to_last_downstream_tx_byte.as_ref())
            .map_or(0.0, |d| millis(d.seconds, d.nanos)),
        upstream_cluster: common.upstream_cluster.clone(),
        downstream_peer: literal_socket(
            common
                .downstream_direct_remote_address
                .as_ref()
                .or(common.downstream_remote_address.as_ref()),
        ),
        downstream_local: literal_socket(common.downstream_local_address.as_ref()),
        upstream_local: literal_socket(common.upstream_local_address.as_ref()),
        upstream_remote: literal_socket(common.upstream_remote_address.as_ref()),
        peer_uri_san: peer.and_then(|p| {
            p.subject_alt_name.iter().find_map(|s| match &s.san {
                Some(San::Uri(uri)) if uri.len() <= MAX_LEN => Some(uri.clone()),
                _ => None,
            })
        }),
        mtls: peer.is_some_and(|p| !p.subject_alt_name.is_empty() || !p.subject.is_empty()),
        failed: common.response_flags.as_ref().is_some_and(upstream_failed),
        downstream_bytes_in: common.downstream_wire_bytes_received,
        downstream_bytes_out: common.downstream_wire_bytes_sent,
        upstream_bytes_out: common.upstream_wire_bytes_sent,
        upstream_bytes_in: common.upstream_wire_bytes_received,
        method: "",
        path: String::new(),
        status: 0,
        downstream_cluster_header: None,
        upstream_attempts: common.upstream_request_attempt_count,
        response_flags: common.response_flags.as_ref().map_or(0, flag_bits),
        request_id: 0,
    }
}

/// An id's hash is 0 exactly when there is no id.
fn assert_hash_marks_presence(id: &str, hash: u64) {
    assert_eq!(
        id.is_empty(),
        hash == 0,
        "request id {id:?} hashed to {hash}"
    );
}

fn expected_http(entry: &HttpAccessLogEntry) -> Result<Expected, Vec<Reject>> {
    let reasons = reject_reasons(entry.common_properties.as_ref(), entry.request.as_ref());
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let mut expected = expected_common(entry.common_properties.as_ref().unwrap());
    if let Some(request) = &entry.request {
        expected.method = RequestMethod::try_from(request.request_method)
            .ok()
            .filter(|m| *m != RequestMethod::MethodUnspecified)
            .map_or("", |m| m.as_str_name());
        expected.path = request.path.clone();
        expected.request_id =
            meshscope_collector::entry::request_id_hash(request.request_id.as_bytes());
        assert_hash_marks_presence(&request.request_id, expected.request_id);
        expected.downstream_cluster_header = request
            .request_headers
            .get(DOWNSTREAM_CLUSTER_HEADER)
            .filter(|v| !v.is_empty())
            .cloned();
        let request_bytes = request.request_headers_bytes + request.request_body_bytes;
        if expected.downstream_bytes_in == 0 {
            expected.downstream_bytes_in = request_bytes;
        }
        if expected.upstream_bytes_out == 0 {
            expected.upstream_bytes_out = request_bytes;
        }
    }
    if let Some(response) = &entry.response {
        expected.status = response.response_code.as_ref().map_or(0, |c| c.value);
        let grpc_status = response
            .response_trailers
            .get("grpc-status")
            .or(response.response_headers.get("grpc-status"));
        if grpc_status.is_some_and(|s| s.trim_matches([' ', '\t']) != "0") {
            expected.failed = true;
        }
        let response_bytes = response.response_headers_bytes + response.response_body_bytes;
        if expected.downstream_bytes_out == 0 {
            expected.downstream_bytes_out = response_bytes;
        }
        if expected.upstream_bytes_in == 0 {
            expected.upstream_bytes_in = response_bytes;
        }
    }
    Ok(expected)
}

fn expected_tcp(entry: &TcpAccessLogEntry) -> Result<Expected, Vec<Reject>> {
    let reasons = reject_reasons(entry.common_properties.as_ref(), None);
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let mut expected = expected_common(entry.common_properties.as_ref().unwrap());
    if let Some(connection) = &entry.connection_properties {
        if expected.downstream_bytes_in == 0 {
            expected.downstream_bytes_in = connection.received_bytes;
        }
        if expected.downstream_bytes_out == 0 {
            expected.downstream_bytes_out = connection.sent_bytes;
        }
        if expected.upstream_bytes_out == 0 {
            expected.upstream_bytes_out = connection.received_bytes;
        }
        if expected.upstream_bytes_in == 0 {
            expected.upstream_bytes_in = connection.sent_bytes;
        }
    }
    Ok(expected)
}

/// Compares one reading with what the decoded entry says, field by field.
fn check_reading(
    protocol: Protocol,
    got: Result<&Observation<'_>, Reject>,
    expected: &Result<Expected, Vec<Reject>>,
) -> Result<(), TestCaseError> {
    let (got, expected) = match (got, expected) {
        (Err(reason), Err(reasons)) => {
            prop_assert!(
                reasons.contains(&reason),
                "refused for {reason:?}, not one of {reasons:?}"
            );
            return Ok(());
        }
        (Ok(got), Ok(expected)) => (got, expected),
        (got, expected) => {
            return Err(TestCaseError::fail(format!(
                "read {:?}, expected {:?}",
                got.map(|_| "an observation"),
                expected.as_ref().map(|_| "an observation")
            )));
        }
    };
    prop_assert_eq!(got.protocol, protocol);
    prop_assert_eq!(got.start_ms, expected.start_ms);
    prop_assert_eq!(got.duration_ms.to_bits(), expected.duration_ms.to_bits());
    prop_assert_eq!(got.upstream_cluster, expected.upstream_cluster.as_str());
    prop_assert_eq!(got.method, expected.method);
    prop_assert_eq!(got.path, expected.path.as_str());
    prop_assert_eq!(got.status, expected.status);
    prop_assert_eq!(got.failed, expected.failed);
    prop_assert_eq!(
        got.addresses.downstream_peer.get(),
        expected.downstream_peer
    );
    prop_assert_eq!(
        got.addresses.downstream_local.get(),
        expected.downstream_local
    );
    prop_assert_eq!(got.addresses.upstream_local.get(), expected.upstream_local);
    prop_assert_eq!(
        got.addresses.upstream_remote.get(),
        expected.upstream_remote
    );
    prop_assert_eq!(
        got.downstream_cluster_header,
        expected.downstream_cluster_header.as_deref()
    );
    prop_assert_eq!(got.peer_uri_san, expected.peer_uri_san.as_deref());
    prop_assert_eq!(got.mtls, expected.mtls);
    prop_assert_eq!(got.downstream_bytes_in, expected.downstream_bytes_in);
    prop_assert_eq!(got.downstream_bytes_out, expected.downstream_bytes_out);
    prop_assert_eq!(got.upstream_bytes_out, expected.upstream_bytes_out);
    prop_assert_eq!(got.upstream_bytes_in, expected.upstream_bytes_in);
    prop_assert_eq!(got.upstream_attempts, expected.upstream_attempts);
    prop_assert_eq!(got.response_flags, expected.response_flags);
    prop_assert_eq!(got.request_id, expected.request_id);
    Ok(())
}

/// Everything the reader exposes for `bytes`, read both ways (one observation per entry,
/// and one observation reused in place), with every address read too. Used on bytes that
/// may be anything: it must return, not panic.
fn read_everything(bytes: &[u8]) {
    let Ok(message) = Message::parse(bytes) else {
        return;
    };
    let _ = message.entry_count();
    let touch = |obs: &Observation<'_>| {
        let a = obs.addresses;
        let _ = (a.downstream_peer.get(), a.downstream_local.get());
        let _ = (a.upstream_local.get(), a.upstream_remote.get());
        let _ = obs.to_owned();
    };
    for obs in message.observations(MAX_LEN).flatten() {
        touch(&obs);
    }
    message.read_each(MAX_LEN, |obs| {
        if let Ok(obs) = obs {
            touch(obs);
        }
    });
}

/// A valid encoding damaged: bytes replaced, inserted or removed at chosen places, or cut.
#[derive(Clone, Debug)]
enum Damage {
    Replace(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Cut(usize),
}

fn apply_damage(bytes: &mut Vec<u8>, damage: &[Damage]) {
    for d in damage {
        if bytes.is_empty() {
            return;
        }
        match *d {
            Damage::Replace(at, b) => {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            Damage::Insert(at, b) => {
                let at = at % (bytes.len() + 1);
                bytes.insert(at, b);
            }
            Damage::Remove(at) => {
                let at = at % bytes.len();
                bytes.remove(at);
            }
            Damage::Cut(at) => {
                let at = at % bytes.len();
                bytes.truncate(at);
            }
        }
    }
}

fn damages() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Replace(at, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
        2 => any::<usize>().prop_map(Damage::Remove),
        1 => any::<usize>().prop_map(Damage::Cut),
    ];
    proptest::collection::vec(one, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_reader_reads_what_prost_decodes(sent in message()) {
        let bytes = sent.encode_to_vec();
        let decoded = StreamAccessLogsMessage::decode(bytes.as_slice()).unwrap();
        prop_assert_eq!(&decoded, &sent);
        let read = Message::parse(&bytes).unwrap();

        let identifier = read.identifier.map(|b| Identifier::decode(b).unwrap());
        prop_assert_eq!(identifier, decoded.identifier.clone());

        let (protocol, expected): (Option<Protocol>, Vec<_>) = match &decoded.log_entries {
            Some(LogEntries::HttpLogs(h)) => {
                (Some(Protocol::Http), h.log_entry.iter().map(expected_http).collect())
            }
            Some(LogEntries::TcpLogs(t)) => {
                (Some(Protocol::Tcp), t.log_entry.iter().map(expected_tcp).collect())
            }
            None => (None, Vec::new()),
        };
        prop_assert_eq!(read.protocol, protocol);
        prop_assert_eq!(read.entry_count(), expected.len());

        let observations: Vec<_> = read.observations(MAX_LEN).collect();
        prop_assert_eq!(observations.len(), expected.len());
        let protocol = protocol.unwrap_or(Protocol::Http);
        for (got, expected) in observations.iter().zip(&expected) {
            check_reading(protocol, got.as_ref().map_err(|r| *r), expected)?;
        }
        // Read in place, one observation reused for every entry: the same readings.
        let mut in_place = Vec::new();
        read.read_each(MAX_LEN, |r| in_place.push(r.map(|obs| *obs)));
        prop_assert_eq!(in_place, observations);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        read_everything(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic_the_reader(sent in message(), damage_done in damages()) {
        let mut bytes = sent.encode_to_vec();
        apply_damage(&mut bytes, &damage_done);
        read_everything(&bytes);
    }
}
