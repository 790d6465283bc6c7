//! One received access-log message cut into the parts each collector of the ring owns, and
//! those parts encoded again as `StreamAccessLogsMessage`s.
//!
//! An entry's routing key is its request id, so that every side and attempt of one request
//! meets in one collector. An entry without one (a TCP connection, or a proxy that does not
//! log the id) is routed by its connection, the (caller address, callee address) pair that
//! the caller's proxy logs as its upstream and the callee's as its downstream, so that the
//! two reports of one connection meet too. An entry with neither, or one that cannot be
//! read, stays where it arrived (and is refused there when it is bad).

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use meshscope_storage::Protocol;
use prost::encoding::encode_varint;

use crate::collector_ring::{CollectorRing, Owner, stable_hash};
use crate::entry::Observation;
use crate::ingest::StreamContext;
use crate::role::{Role, RoleRules};
use crate::wire;

/// A message's entries by owner: those this collector keeps, and those of each peer (by
/// ring index, in the order the peers first appear).
#[derive(Debug, Default)]
pub struct SplitMessage<'a> {
    pub local: Vec<&'a [u8]>,
    pub peers: Vec<(usize, Vec<&'a [u8]>)>,
}

impl<'a> SplitMessage<'a> {
    /// Cuts `message`'s entries by the owner of each one's routing key in `ring`.
    pub fn of(
        message: &wire::Message<'a>,
        ctx: &StreamContext,
        rules: &RoleRules,
        ring: &CollectorRing,
        max_len: usize,
    ) -> SplitMessage<'a> {
        let mut split = SplitMessage::default();
        let protocol = message.protocol.unwrap_or(Protocol::Http);
        for bytes in message.entry_bytes() {
            // Most entries carry a request id: read it alone, and the whole entry only
            // when there is none.
            let key = match protocol {
                Protocol::Http => wire::http_request_id(bytes),
                Protocol::Tcp => 0,
            };
            let key = if key != 0 {
                key
            } else {
                match wire::read_entry_bytes(protocol, bytes, max_len) {
                    Ok(obs) => {
                        let role = rules.role(ctx.gateway, &ctx.log_name, obs.upstream_cluster);
                        routing_key(&obs, role)
                    }
                    Err(_) => 0,
                }
            };
            match ring.owner(key) {
                Owner::Local => split.local.push(bytes),
                Owner::Peer(index) => match split.peers.iter_mut().find(|(i, _)| *i == index) {
                    Some((_, entries)) => entries.push(bytes),
                    None => split.peers.push((index, vec![bytes])),
                },
            }
        }
        split
    }

    /// Whether every entry stays here.
    pub fn all_local(&self) -> bool {
        self.peers.is_empty()
    }
}

/// The key an entry is routed by: its request id, else its connection's two ends as the
/// reporting side logged them; 0 when it has neither.
pub fn routing_key(obs: &Observation<'_>, role: Role) -> u64 {
    if obs.request_id != 0 {
        return obs.request_id;
    }
    let addresses = &obs.addresses;
    let (caller, callee) = match role {
        // The server's side of the connection, and a gateway's downstream.
        Role::Inbound | Role::Gateway => (
            addresses.downstream_peer.get(),
            addresses.downstream_local.get(),
        ),
        Role::Outbound => (
            addresses.upstream_local.get(),
            addresses.upstream_remote.get(),
        ),
    };
    match (caller, callee) {
        (Some(caller), Some(callee)) => connection_key(caller, callee),
        _ => 0,
    }
}

/// A key for the connection from `caller` to `callee`, the same in every collector.
fn connection_key(caller: SocketAddr, callee: SocketAddr) -> u64 {
    let text = format!("{caller}>{callee}");
    stable_hash(text.as_bytes()).max(1)
}

/// A `StreamAccessLogsMessage` carrying only the stream's identifier (`identifier` is the
/// encoded `Identifier`): what opens a forwarded stream.
pub fn identifier_message(identifier: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(identifier.len() + 10);
    put_field(&mut out, 1, identifier);
    out.freeze()
}

/// A `StreamAccessLogsMessage` of `protocol` carrying `entries` (each an encoded entry),
/// without an identifier.
pub fn entries_message(protocol: Protocol, entries: &[&[u8]]) -> Bytes {
    let inner: usize = entries
        .iter()
        .map(|e| 1 + prost::encoding::encoded_len_varint(e.len() as u64) + e.len())
        .sum();
    let mut out = BytesMut::with_capacity(inner + 11);
    let field = match protocol {
        Protocol::Http => 2,
        Protocol::Tcp => 3,
    };
    put_key(&mut out, field);
    encode_varint(inner as u64, &mut out);
    for entry in entries {
        put_field(&mut out, 1, entry);
    }
    out.freeze()
}

/// A length-delimited field: its key, its length and its bytes.
fn put_field(out: &mut BytesMut, field: u32, bytes: &[u8]) {
    put_key(out, field);
    encode_varint(bytes.len() as u64, out);
    out.put_slice(bytes);
}

fn put_key(out: &mut BytesMut, field: u32) {
    encode_varint(u64::from(field << 3 | 2), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DirectionRules;
    use crate::identity::NodeIdentity;
    use meshscope_proto::pb::envoy::config::core::v3::{Node, SocketAddress, address};
    use meshscope_proto::pb::envoy::data::accesslog::v3::{
        AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, TcpAccessLogEntry,
    };
    use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
    use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
        HttpAccessLogEntries, Identifier, LogEntries, TcpAccessLogEntries,
    };
    use prost::Message as _;
    use std::sync::Arc;

    fn address(text: &str) -> meshscope_proto::pb::envoy::config::core::v3::Address {
        let addr: SocketAddr = text.parse().unwrap();
        meshscope_proto::pb::envoy::config::core::v3::Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: addr.ip().to_string(),
                port_specifier: Some(
                    meshscope_proto::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                        u32::from(addr.port()),
                    ),
                ),
                ..Default::default()
            })),
        }
    }

    fn start() -> meshscope_proto::pb::google::protobuf::Timestamp {
        meshscope_proto::pb::google::protobuf::Timestamp {
            seconds: 1_765_000_000,
            nanos: 0,
        }
    }

    fn http_entry(request_id: &str, path: &str) -> HttpAccessLogEntry {
        HttpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                start_time: Some(start()),
                ..Default::default()
            }),
            request: Some(HttpRequestProperties {
                request_id: request_id.into(),
                path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn context(log_name: &str) -> StreamContext {
        let node = Node {
            id: "caller-1".into(),
            cluster: "caller".into(),
            ..Default::default()
        };
        StreamContext {
            reporter: Arc::new(NodeIdentity::from_node(&node).unwrap()),
            log_name: log_name.into(),
            gateway: false,
        }
    }

    fn ring(own: &str) -> CollectorRing {
        CollectorRing::new(
            own,
            ["a", "b", "c"].map(|w| (w.to_string(), format!("{w}:1"))),
        )
    }

    #[test]
    fn parts_hold_every_entry_once_and_encode_back_to_the_same_entries() {
        let entries: Vec<HttpAccessLogEntry> = (0..300)
            .map(|n| http_entry(&format!("id-{n}"), &format!("/item/{n}")))
            .collect();
        let message = StreamAccessLogsMessage {
            identifier: Some(Identifier {
                node: Some(Node::default()),
                log_name: "outbound".into(),
            }),
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: entries.clone(),
            })),
        }
        .encode_to_vec();
        let parsed = wire::Message::parse(&message).unwrap();
        let rules = RoleRules::new(&DirectionRules::default()).unwrap();
        let split = SplitMessage::of(&parsed, &context("outbound"), &rules, &ring("a"), 4096);
        assert!(!split.all_local());
        let mut paths = Vec::new();
        let mut parts = vec![entries_message(Protocol::Http, &split.local)];
        parts.extend(
            split
                .peers
                .iter()
                .map(|(_, part)| entries_message(Protocol::Http, part)),
        );
        for part in &parts {
            let decoded = StreamAccessLogsMessage::decode(part.as_ref()).unwrap();
            assert!(decoded.identifier.is_none());
            let Some(LogEntries::HttpLogs(http)) = decoded.log_entries else {
                panic!("not HTTP: {decoded:?}");
            };
            assert!(!http.log_entry.is_empty(), "an empty part");
            paths.extend(http.log_entry.into_iter().map(|e| e.request.unwrap().path));
        }
        paths.sort();
        let mut want: Vec<String> = entries
            .iter()
            .map(|e| e.request.as_ref().unwrap().path.clone())
            .collect();
        want.sort();
        assert_eq!(paths, want);
        // Each of the three collectors has a share.
        assert_eq!(parts.len(), 3);
        // Another member cuts the same message the same way: the same entries per writer.
        let from_b = SplitMessage::of(&parsed, &context("outbound"), &rules, &ring("b"), 4096);
        let local_a: Vec<&[u8]> = from_b
            .peers
            .iter()
            .find(|(i, _)| ring("b").member(*i).writer == "a")
            .map(|(_, part)| part.clone())
            .unwrap();
        assert_eq!(local_a, split.local);
    }

    #[test]
    fn the_request_id_read_alone_is_the_one_the_whole_entry_gives() {
        for (id, want) in [("id-1", crate::entry::request_id_hash(b"id-1")), ("", 0)] {
            let entry = http_entry(id, "/x").encode_to_vec();
            assert_eq!(wire::http_request_id(&entry), want, "{id:?}");
            let whole = wire::read_entry_bytes(Protocol::Http, &entry, 4096).unwrap();
            assert_eq!(whole.request_id, want, "{id:?}");
        }
        // Bytes that are not an entry have none.
        assert_eq!(wire::http_request_id(&[0x1a, 0xff]), 0);
    }

    #[test]
    fn the_two_reports_of_one_connection_have_one_key() {
        let client = TcpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                start_time: Some(start()),
                upstream_local_address: Some(address("10.0.0.1:40000")),
                upstream_remote_address: Some(address("10.0.0.2:5432")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let server = TcpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                start_time: Some(start()),
                downstream_direct_remote_address: Some(address("10.0.0.1:40000")),
                downstream_local_address: Some(address("10.0.0.2:5432")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let encode = |entry: &TcpAccessLogEntry| {
            StreamAccessLogsMessage {
                identifier: None,
                log_entries: Some(LogEntries::TcpLogs(TcpAccessLogEntries {
                    log_entry: vec![entry.clone()],
                })),
            }
            .encode_to_vec()
        };
        let key = |bytes: &[u8], role: Role| {
            let parsed = wire::Message::parse(bytes).unwrap();
            let entry = parsed.entry_bytes().next().unwrap();
            let obs = wire::read_entry_bytes(Protocol::Tcp, entry, 4096).unwrap();
            routing_key(&obs, role)
        };
        let client_key = key(&encode(&client), Role::Outbound);
        assert_ne!(client_key, 0);
        assert_eq!(client_key, key(&encode(&server), Role::Inbound));
        // A connection between other ends has another key.
        let mut other = server.clone();
        other
            .common_properties
            .as_mut()
            .unwrap()
            .downstream_local_address = Some(address("10.0.0.3:5432"));
        assert_ne!(client_key, key(&encode(&other), Role::Inbound));
    }

    #[test]
    fn an_identifier_message_reads_back_as_the_identifier_alone() {
        let identifier = Identifier {
            node: Some(Node {
                id: "callee-1".into(),
                ..Default::default()
            }),
            log_name: "inbound".into(),
        }
        .encode_to_vec();
        let message = identifier_message(&identifier);
        let parsed = wire::Message::parse(&message).unwrap();
        assert_eq!(parsed.identifier, Some(identifier.as_slice()));
        assert_eq!(parsed.protocol, None);
    }
}
