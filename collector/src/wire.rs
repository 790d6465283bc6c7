//! Reads `StreamAccessLogsMessage` straight from the received bytes: only the fields the
//! pipeline uses are looked at, strings are borrowed from the buffer, and nothing is
//! allocated per entry. A full prost decode builds every header map and string of every
//! entry only to throw most of them away; at hundreds of thousands of entries a second
//! that is most of the cost of receiving.
//!
//! Field numbers are those of `envoy.data.accesslog.v3` and `envoy.config.core.v3`.

use meshscope_proto::pb::envoy::config::core::v3::RequestMethod;
use meshscope_storage::Protocol;

use crate::entry::{DOWNSTREAM_CLUSTER_HEADER, Observation, Reject, request_id_hash};
use crate::logged_address::LoggedAddress;
/// Why a message could not be read; kept at this path for the reader's users.
pub use crate::protobuf_fields::WireError;
use crate::protobuf_fields::{Fields, Value};
use crate::response_flag_bits::{FAILURE_FLAGS, UNAUTHORIZED_FIELD};

/// What a message holds, without its entries decoded yet.
#[derive(Debug)]
pub struct Message<'a> {
    /// The encoded `Identifier`, on a stream's first message.
    pub identifier: Option<&'a [u8]>,
    pub protocol: Option<Protocol>,
    /// The encoded `HTTPAccessLogEntries` or `TCPAccessLogEntries`.
    entries: &'a [u8],
}

impl<'a> Message<'a> {
    /// Reads a message's identifier and protocol and checks the framing of its entry list;
    /// the entries themselves are read later, one at a time.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, WireError> {
        let mut message = Message {
            identifier: None,
            protocol: None,
            entries: &[],
        };
        for field in Fields::new(buf) {
            match field? {
                (1, v) => message.identifier = Some(v.bytes()),
                // A oneof: the last one set wins, as in any protobuf decoder.
                (2, v) => {
                    message.protocol = Some(Protocol::Http);
                    message.entries = v.bytes();
                }
                (3, v) => {
                    message.protocol = Some(Protocol::Tcp);
                    message.entries = v.bytes();
                }
                _ => {}
            }
        }
        // Check the framing of the entry list now, so that a bad message is refused whole
        // before any of it is counted.
        for field in Fields::new(message.entries) {
            field?;
        }
        Ok(message)
    }

    /// Number of entries the message carries.
    pub fn entry_count(&self) -> usize {
        Fields::new(self.entries)
            .filter(|f| matches!(f, Ok((1, _))))
            .count()
    }

    /// Each entry, read into an observation (or the reason it cannot be counted).
    pub fn observations(
        &self,
        max_len: usize,
    ) -> impl Iterator<Item = Result<Observation<'a>, Reject>> + 'a {
        let protocol = self.protocol.unwrap_or(Protocol::Http);
        Fields::new(self.entries).filter_map(move |field| match field {
            Ok((1, v)) => {
                let mut obs = Observation::empty(protocol);
                Some(read_entry(protocol, v.bytes(), max_len, &mut obs).map(|()| obs))
            }
            // Framing was checked by `parse`.
            _ => None,
        })
    }

    /// Reads each entry in turn into one observation, in place, and hands it to `each`
    /// (or the reason it cannot be counted): what [`Message::observations`] gives, without
    /// moving each entry from the reader to its user.
    pub fn read_each(
        &self,
        max_len: usize,
        mut each: impl FnMut(Result<&mut Observation<'a>, Reject>),
    ) {
        let protocol = self.protocol.unwrap_or(Protocol::Http);
        let mut obs = Observation::empty(protocol);
        for field in Fields::new(self.entries) {
            // Framing was checked by `parse`.
            if let Ok((1, v)) = field {
                each(read_entry(protocol, v.bytes(), max_len, &mut obs).map(|()| &mut obs));
            }
        }
    }
}

impl<'a> Message<'a> {
    /// Each entry's encoded bytes, unread: for routing entries before any is ingested.
    pub fn entry_bytes(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        // Framing was checked by `parse`.
        Fields::new(self.entries).filter_map(|field| match field {
            Ok((1, v)) => Some(v.bytes()),
            _ => None,
        })
    }
}

/// Reads one encoded entry of `protocol` into an observation (or the reason it cannot be
/// counted): what [`Message::read_each`] does for each entry.
pub fn read_entry_bytes<'a>(
    protocol: Protocol,
    entry: &'a [u8],
    max_len: usize,
) -> Result<Observation<'a>, Reject> {
    let mut obs = Observation::empty(protocol);
    read_entry(protocol, entry, max_len, &mut obs).map(|()| obs)
}

/// The request id of an encoded HTTP entry as [`request_id_hash`] keeps it, read without
/// the rest of the entry; 0 when it logs none or cannot be read.
pub fn http_request_id(entry: &[u8]) -> u64 {
    let mut id = 0;
    for field in Fields::new(entry) {
        match field {
            Ok((3, request)) => {
                for field in Fields::new(request.bytes()) {
                    match field {
                        Ok((9, v)) => id = request_id_hash(v.bytes()),
                        Ok(_) => {}
                        Err(_) => return 0,
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return 0,
        }
    }
    id
}

fn read_entry<'a>(
    protocol: Protocol,
    buf: &'a [u8],
    max_len: usize,
    obs: &mut Observation<'a>,
) -> Result<(), Reject> {
    *obs = Observation::empty(protocol);
    match protocol {
        Protocol::Http => http_entry(buf, max_len, obs),
        Protocol::Tcp => tcp_entry(buf, max_len, obs),
    }
}

/// The entry's fields are framed but something inside is not.
fn malformed(_: WireError) -> Reject {
    Reject::Malformed
}

fn utf8(bytes: &[u8]) -> Result<&str, Reject> {
    std::str::from_utf8(bytes).map_err(|_| Reject::InvalidUtf8)
}

fn bounded(bytes: &[u8], max_len: usize) -> Result<&str, Reject> {
    if bytes.len() > max_len {
        return Err(Reject::OversizedField);
    }
    utf8(bytes)
}

fn http_entry<'a>(buf: &'a [u8], max_len: usize, obs: &mut Observation<'a>) -> Result<(), Reject> {
    let mut common = None;
    let mut request = None;
    let mut response = None;
    for field in Fields::new(buf) {
        match field.map_err(malformed)? {
            (1, v) => common = Some(v.bytes()),
            (3, v) => request = Some(v.bytes()),
            (4, v) => response = Some(v.bytes()),
            _ => {}
        }
    }
    self::common(common.ok_or(Reject::MissingCommon)?, max_len, obs)?;
    if let Some(request) = request {
        let mut request_bytes = 0u64;
        for field in Fields::new(request) {
            match field.map_err(malformed)? {
                (1, v) => {
                    obs.method = i32::try_from(v.varint())
                        .ok()
                        .and_then(|m| RequestMethod::try_from(m).ok())
                        .filter(|m| *m != RequestMethod::MethodUnspecified)
                        .map_or("", |m| m.as_str_name());
                }
                (5, v) => obs.path = bounded(v.bytes(), max_len)?,
                (9, v) => obs.request_id = request_id_hash(v.bytes()),
                (11, v) | (12, v) => request_bytes += v.varint(),
                (13, v) => {
                    let (key, value) = map_entry(v.bytes())?;
                    if key == DOWNSTREAM_CLUSTER_HEADER.as_bytes() {
                        let value = bounded(value, max_len)?;
                        obs.downstream_cluster_header = (!value.is_empty()).then_some(value);
                    }
                }
                _ => {}
            }
        }
        if obs.downstream_bytes_in == 0 {
            obs.downstream_bytes_in = request_bytes;
        }
        if obs.upstream_bytes_out == 0 {
            obs.upstream_bytes_out = request_bytes;
        }
    }
    if let Some(response) = response {
        let mut response_bytes = 0u64;
        let mut grpc_header = None;
        let mut grpc_trailer = None;
        for field in Fields::new(response) {
            match field.map_err(malformed)? {
                (1, v) => {
                    obs.status = Fields::new(v.bytes())
                        .filter_map(Result::ok)
                        .filter(|(n, _)| *n == 1)
                        .map(|(_, v)| v.varint() as u32)
                        .last()
                        .unwrap_or(0);
                }
                (2, v) | (3, v) => response_bytes += v.varint(),
                (4, v) => {
                    let (key, value) = map_entry(v.bytes())?;
                    if key == b"grpc-status" {
                        grpc_header = Some(value);
                    }
                }
                (5, v) => {
                    let (key, value) = map_entry(v.bytes())?;
                    if key == b"grpc-status" {
                        grpc_trailer = Some(value);
                    }
                }
                _ => {}
            }
        }
        if grpc_trailer
            .or(grpc_header)
            .is_some_and(|s| s.trim_ascii() != b"0")
        {
            obs.failed = true;
        }
        if obs.downstream_bytes_out == 0 {
            obs.downstream_bytes_out = response_bytes;
        }
        if obs.upstream_bytes_in == 0 {
            obs.upstream_bytes_in = response_bytes;
        }
    }
    Ok(())
}

fn tcp_entry<'a>(buf: &'a [u8], max_len: usize, obs: &mut Observation<'a>) -> Result<(), Reject> {
    let mut common = None;
    let mut connection = None;
    for field in Fields::new(buf) {
        match field.map_err(malformed)? {
            (1, v) => common = Some(v.bytes()),
            (2, v) => connection = Some(v.bytes()),
            _ => {}
        }
    }
    self::common(common.ok_or(Reject::MissingCommon)?, max_len, obs)?;
    if let Some(connection) = connection {
        let (mut received, mut sent) = (0, 0);
        for field in Fields::new(connection) {
            match field.map_err(malformed)? {
                (1, v) => received = v.varint(),
                (2, v) => sent = v.varint(),
                _ => {}
            }
        }
        // For a TCP proxy, what it received from downstream went upstream and back.
        if obs.downstream_bytes_in == 0 {
            obs.downstream_bytes_in = received;
        }
        if obs.downstream_bytes_out == 0 {
            obs.downstream_bytes_out = sent;
        }
        if obs.upstream_bytes_out == 0 {
            obs.upstream_bytes_out = received;
        }
        if obs.upstream_bytes_in == 0 {
            obs.upstream_bytes_in = sent;
        }
    }
    Ok(())
}

/// Fills `obs`, which comes empty, from the entry's common properties.
fn common<'a>(buf: &'a [u8], max_len: usize, obs: &mut Observation<'a>) -> Result<(), Reject> {
    let mut start = None;
    let mut duration = None;
    let mut last_downstream_tx = None;
    let mut downstream_remote = None;
    let mut downstream_direct_remote = None;
    for field in Fields::new(buf) {
        match field.map_err(malformed)? {
            (2, v) => downstream_remote = Some(v.bytes()),
            (3, v) => obs.addresses.downstream_local = LoggedAddress::Encoded(v.bytes()),
            (4, v) => tls(v.bytes(), max_len, obs)?,
            (5, v) => start = Some(v.bytes()),
            (12, v) => last_downstream_tx = Some(v.bytes()),
            (13, v) => obs.addresses.upstream_remote = LoggedAddress::Encoded(v.bytes()),
            (14, v) => obs.addresses.upstream_local = LoggedAddress::Encoded(v.bytes()),
            (15, v) => obs.upstream_cluster = bounded(v.bytes(), max_len)?,
            (16, v) => {
                for flag in Fields::new(v.bytes()) {
                    match flag.map_err(malformed)? {
                        (n @ 1..=31, Value::Varint(set)) if set != 0 => {
                            obs.response_flags |= 1 << n;
                        }
                        // The one flag that is a message: set when present.
                        (UNAUTHORIZED_FIELD, Value::Bytes(_)) => {
                            obs.response_flags |= 1 << UNAUTHORIZED_FIELD;
                        }
                        _ => {}
                    }
                }
                if obs.response_flags & FAILURE_FLAGS != 0 {
                    obs.failed = true;
                }
            }
            (20, v) => downstream_direct_remote = Some(v.bytes()),
            (23, v) => duration = Some(v.bytes()),
            (24, v) => obs.upstream_attempts = u32::try_from(v.varint()).unwrap_or(u32::MAX),
            (29, v) => obs.downstream_bytes_out = v.varint(),
            (30, v) => obs.downstream_bytes_in = v.varint(),
            (31, v) => obs.upstream_bytes_out = v.varint(),
            (32, v) => obs.upstream_bytes_in = v.varint(),
            _ => {}
        }
    }
    let (seconds, nanos) = seconds_nanos(start.ok_or(Reject::MissingStartTime)?)?;
    obs.start_ms = seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(nanos) / 1_000_000);
    if let Some(d) = duration.or(last_downstream_tx) {
        let (seconds, nanos) = seconds_nanos(d)?;
        obs.duration_ms = seconds as f64 * 1000.0 + f64::from(nanos) / 1.0e6;
    }
    // The direct remote is the peer of the connection even behind a proxy protocol or
    // an XFF rewrite of the remote address.
    if let Some(addr) = downstream_direct_remote.or(downstream_remote) {
        obs.addresses.downstream_peer = LoggedAddress::Encoded(addr);
    }
    Ok(())
}

fn seconds_nanos(buf: &[u8]) -> Result<(i64, i32), Reject> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for field in Fields::new(buf) {
        match field.map_err(malformed)? {
            (1, v) => seconds = v.varint() as i64,
            (2, v) => nanos = v.varint() as i32,
            _ => {}
        }
    }
    Ok((seconds, nanos))
}

fn tls<'a>(buf: &'a [u8], max_len: usize, obs: &mut Observation<'a>) -> Result<(), Reject> {
    for field in Fields::new(buf) {
        let (5, peer) = field.map_err(malformed)? else {
            continue;
        };
        let mut has_identity = false;
        for cert_field in Fields::new(peer.bytes()) {
            match cert_field.map_err(malformed)? {
                (1, san) => {
                    has_identity = true;
                    for san_field in Fields::new(san.bytes()) {
                        if let (1, uri) = san_field.map_err(malformed)?
                            && obs.peer_uri_san.is_none()
                            && uri.bytes().len() <= max_len
                        {
                            obs.peer_uri_san = Some(utf8(uri.bytes())?);
                        }
                    }
                }
                (2, subject) => has_identity |= !subject.bytes().is_empty(),
                _ => {}
            }
        }
        obs.mtls = has_identity;
    }
    Ok(())
}

/// A `map<string, string>` entry: key 1, value 2.
fn map_entry(buf: &[u8]) -> Result<(&[u8], &[u8]), Reject> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for field in Fields::new(buf) {
        match field.map_err(malformed)? {
            (1, v) => key = v.bytes(),
            (2, v) => value = v.bytes(),
            _ => {}
        }
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response code whose wrapper is badly framed (a varint cut short) reads as no
    /// code; reading it once looped for ever on the same bytes.
    #[test]
    fn a_badly_framed_response_code_reads_as_none() {
        // common_properties { start_time { seconds: 1 } }, then
        // response { response_code { 0x08 0x96 } }.
        let entry = [
            0x0a, 0x04, 0x2a, 0x02, 0x08, 0x01, 0x22, 0x04, 0x0a, 0x02, 0x08, 0x96,
        ];
        let obs = read_entry_bytes(Protocol::Http, &entry, 1024).unwrap();
        assert_eq!(obs.status, 0);
    }

    #[test]
    fn a_message_whose_entry_list_is_badly_framed_is_refused_whole() {
        assert!(Message::parse(&[0x12, 0x03, 0x0a, 0x05, 0x00]).is_err());
    }
}
