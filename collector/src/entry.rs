//! One access-log entry reduced to what the pipeline uses: times, outcome, bytes, TLS and
//! the four addresses of the connection. Everything after this works on `Observation`.

use meshscope_proto::pb::envoy::config::core::v3::RequestMethod;
use meshscope_proto::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, TcpAccessLogEntry,
    tls_properties::certificate_properties::subject_alt_name::San,
};
use meshscope_storage::Protocol;

use crate::logged_address::{ConnectionAddresses, LoggedAddress, socket_addr_of_decoded};
use crate::response_flag_bits::{FAILURE_FLAGS, bits_of};

/// Header that Envoy's `add_user_agent` sets to the caller's `node.cluster`.
pub const DOWNSTREAM_CLUSTER_HEADER: &str = "x-envoy-downstream-service-cluster";

/// Why an entry was not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    MissingCommon,
    MissingStartTime,
    OversizedField,
    TooOld,
    Future,
    /// An entry whose fields are not valid protobuf inside valid framing.
    Malformed,
    /// A string the pipeline reads is not UTF-8.
    InvalidUtf8,
}

impl Reject {
    /// The reason's label on the rejection counter.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::MissingCommon => "missing_common_properties",
            Reject::MissingStartTime => "missing_start_time",
            Reject::OversizedField => "oversized_field",
            Reject::TooOld => "too_old",
            Reject::Future => "future",
            Reject::Malformed => "malformed_entry",
            Reject::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// One entry, with its strings borrowed from the received message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation<'a> {
    pub protocol: Protocol,
    pub start_ms: i64,
    pub duration_ms: f64,
    pub upstream_cluster: &'a str,
    pub method: &'static str,
    pub path: &'a str,
    pub status: u32,
    /// A failure response flag (UF, UH, NR, UT, …) or a non-zero grpc-status.
    pub failed: bool,
    /// The response flags set: bit `n` is field `n` of `ResponseFlags`
    /// (see [`crate::response_flag_bits`]).
    pub response_flags: u32,
    /// The request id (x-request-id) as a 64-bit hash; 0 when not logged. The id itself
    /// is never kept.
    pub request_id: u64,
    pub addresses: ConnectionAddresses<'a>,
    /// `x-envoy-downstream-service-cluster` when it was logged.
    pub downstream_cluster_header: Option<&'a str>,
    /// URI SAN of the certificate the downstream peer presented.
    pub peer_uri_san: Option<&'a str>,
    /// The downstream connection was TLS with a client certificate.
    pub mtls: bool,
    /// Bytes from the downstream side (the request), and back to it (the response).
    pub downstream_bytes_in: u64,
    pub downstream_bytes_out: u64,
    /// Bytes sent to and received from the upstream.
    pub upstream_bytes_out: u64,
    pub upstream_bytes_in: u64,
    /// `upstream_request_attempt_count`: requests the proxy sent upstream for this one
    /// (1 without retries; 0 when not logged, as for a request never sent upstream).
    pub upstream_attempts: u32,
}

impl<'a> Observation<'a> {
    /// An observation of `protocol` with every other field zero or empty.
    pub fn empty(protocol: Protocol) -> Observation<'a> {
        Observation {
            protocol,
            start_ms: 0,
            duration_ms: 0.0,
            upstream_cluster: "",
            method: "",
            path: "",
            status: 0,
            failed: false,
            response_flags: 0,
            request_id: 0,
            addresses: ConnectionAddresses::default(),
            downstream_cluster_header: None,
            peer_uri_san: None,
            mtls: false,
            downstream_bytes_in: 0,
            downstream_bytes_out: 0,
            upstream_bytes_out: 0,
            upstream_bytes_in: 0,
            upstream_attempts: 0,
        }
    }

    /// Attempts beyond the first: `upstream_attempts - 1`, 0 when not logged.
    pub fn retries(&self) -> u32 {
        self.upstream_attempts.saturating_sub(1)
    }

    /// Whether the call failed: a failure flag, a non-zero grpc-status or a 5xx status.
    pub fn is_error(&self) -> bool {
        self.failed || self.status >= 500
    }

    /// Whether the status is a 4xx.
    pub fn is_4xx(&self) -> bool {
        (400..500).contains(&self.status)
    }

    /// A copy that outlives the message, for entries that wait for their peer's report.
    pub fn to_owned(&self) -> OwnedObservation {
        OwnedObservation {
            fields: Observation {
                upstream_cluster: "",
                path: "",
                downstream_cluster_header: None,
                peer_uri_san: None,
                addresses: self.addresses.decoded(),
                ..*self
            },
            upstream_cluster: self.upstream_cluster.into(),
            path: self.path.into(),
            downstream_cluster_header: self.downstream_cluster_header.map(Into::into),
            peer_uri_san: self.peer_uri_san.map(Into::into),
        }
    }
}

/// An observation that owns its strings.
#[derive(Clone, Debug)]
pub struct OwnedObservation {
    /// Everything but the strings, which are empty here.
    fields: Observation<'static>,
    upstream_cluster: Box<str>,
    path: Box<str>,
    downstream_cluster_header: Option<Box<str>>,
    peer_uri_san: Option<Box<str>>,
}

impl OwnedObservation {
    /// The observation, borrowing its strings from this copy.
    pub fn view(&self) -> Observation<'_> {
        Observation {
            upstream_cluster: &self.upstream_cluster,
            path: &self.path,
            downstream_cluster_header: self.downstream_cluster_header.as_deref(),
            peer_uri_san: self.peer_uri_san.as_deref(),
            ..self.fields
        }
    }
}

/// An HTTP entry decoded by prost, read as the in-place reader of received bytes reads it:
/// for tests and tools that hold prost messages.
pub fn from_http(entry: &HttpAccessLogEntry, max_len: usize) -> Result<Observation<'_>, Reject> {
    let common = entry
        .common_properties
        .as_ref()
        .ok_or(Reject::MissingCommon)?;
    let mut obs = from_common(common, Protocol::Http, max_len)?;
    if let Some(request) = &entry.request {
        if request.path.len() > max_len {
            return Err(Reject::OversizedField);
        }
        obs.method = RequestMethod::try_from(request.request_method)
            .ok()
            .filter(|m| *m != RequestMethod::MethodUnspecified)
            .map_or("", |m| m.as_str_name());
        obs.path = &request.path;
        obs.request_id = request_id_hash(request.request_id.as_bytes());
        if let Some(value) = request.request_headers.get(DOWNSTREAM_CLUSTER_HEADER) {
            if value.len() > max_len {
                return Err(Reject::OversizedField);
            }
            if !value.is_empty() {
                obs.downstream_cluster_header = Some(value);
            }
        }
        let request_bytes = request.request_headers_bytes + request.request_body_bytes;
        if obs.downstream_bytes_in == 0 {
            obs.downstream_bytes_in = request_bytes;
        }
        if obs.upstream_bytes_out == 0 {
            obs.upstream_bytes_out = request_bytes;
        }
    }
    if let Some(response) = &entry.response {
        obs.status = response.response_code.as_ref().map_or(0, |c| c.value);
        let grpc_status = response
            .response_trailers
            .get("grpc-status")
            .or_else(|| response.response_headers.get("grpc-status"));
        if grpc_status.is_some_and(|s| s.trim() != "0") {
            obs.failed = true;
        }
        let response_bytes = response.response_headers_bytes + response.response_body_bytes;
        if obs.downstream_bytes_out == 0 {
            obs.downstream_bytes_out = response_bytes;
        }
        if obs.upstream_bytes_in == 0 {
            obs.upstream_bytes_in = response_bytes;
        }
    }
    Ok(obs)
}

/// A TCP entry decoded by prost, read as the in-place reader of received bytes reads it.
pub fn from_tcp(entry: &TcpAccessLogEntry, max_len: usize) -> Result<Observation<'_>, Reject> {
    let common = entry
        .common_properties
        .as_ref()
        .ok_or(Reject::MissingCommon)?;
    let mut obs = from_common(common, Protocol::Tcp, max_len)?;
    if let Some(conn) = &entry.connection_properties {
        // For a TCP proxy, what it received from downstream went upstream and back.
        if obs.downstream_bytes_in == 0 {
            obs.downstream_bytes_in = conn.received_bytes;
        }
        if obs.downstream_bytes_out == 0 {
            obs.downstream_bytes_out = conn.sent_bytes;
        }
        if obs.upstream_bytes_out == 0 {
            obs.upstream_bytes_out = conn.received_bytes;
        }
        if obs.upstream_bytes_in == 0 {
            obs.upstream_bytes_in = conn.sent_bytes;
        }
    }
    Ok(obs)
}

fn from_common(
    common: &AccessLogCommon,
    protocol: Protocol,
    max_len: usize,
) -> Result<Observation<'_>, Reject> {
    let start = common.start_time.as_ref().ok_or(Reject::MissingStartTime)?;
    if common.upstream_cluster.len() > max_len {
        return Err(Reject::OversizedField);
    }
    let start_ms = start
        .seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(start.nanos) / 1_000_000);
    let duration_ms = common
        .duration
        .as_ref()
        .or(common.time_to_last_downstream_tx_byte.as_ref())
        .map_or(0.0, |d| {
            d.seconds as f64 * 1000.0 + f64::from(d.nanos) / 1.0e6
        });
    let tls = common.tls_properties.as_ref();
    let peer_cert = tls.and_then(|t| t.peer_certificate_properties.as_ref());
    let peer_uri_san = peer_cert.and_then(|p| {
        p.subject_alt_name.iter().find_map(|san| match &san.san {
            Some(San::Uri(uri)) if uri.len() <= max_len => Some(uri.as_str()),
            _ => None,
        })
    });
    let mtls = peer_cert.is_some_and(|p| !p.subject_alt_name.is_empty() || !p.subject.is_empty());
    let flags = common.response_flags.as_ref().map_or(0, bits_of);
    Ok(Observation {
        protocol,
        start_ms,
        duration_ms,
        upstream_cluster: &common.upstream_cluster,
        method: "",
        path: "",
        status: 0,
        failed: flags & FAILURE_FLAGS != 0,
        response_flags: flags,
        request_id: 0,
        addresses: ConnectionAddresses {
            downstream_peer: LoggedAddress::known(
                common
                    .downstream_direct_remote_address
                    .as_ref()
                    .or(common.downstream_remote_address.as_ref())
                    .and_then(socket_addr_of_decoded),
            ),
            downstream_local: LoggedAddress::known(
                common
                    .downstream_local_address
                    .as_ref()
                    .and_then(socket_addr_of_decoded),
            ),
            upstream_local: LoggedAddress::known(
                common
                    .upstream_local_address
                    .as_ref()
                    .and_then(socket_addr_of_decoded),
            ),
            upstream_remote: LoggedAddress::known(
                common
                    .upstream_remote_address
                    .as_ref()
                    .and_then(socket_addr_of_decoded),
            ),
        },
        downstream_cluster_header: None,
        peer_uri_san,
        mtls,
        downstream_bytes_in: common.downstream_wire_bytes_received,
        downstream_bytes_out: common.downstream_wire_bytes_sent,
        upstream_bytes_out: common.upstream_wire_bytes_sent,
        upstream_bytes_in: common.upstream_wire_bytes_received,
        upstream_attempts: common.upstream_request_attempt_count,
    })
}

/// The 64-bit hash a request id is kept as: the same for the same id in every process
/// (a fixed seed), so that entries restored from a checkpoint still meet their other
/// side. 0 means no id; an id that hashes to 0 is kept as 1.
pub fn request_id_hash(id: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    if id.is_empty() {
        return 0;
    }
    const SEED: u64 = 0x6d65_7368_7363_6f70;
    foldhash::fast::FixedState::with_seed(SEED)
        .hash_one(id)
        .max(1)
}
