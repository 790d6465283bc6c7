//! The socket addresses of an entry, read only when used. A proxy logs four per entry and
//! an entry's role looks at two of them (a gateway's at all four), so the others are left
//! as the bytes they came in.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use meshscope_proto::pb::envoy::config::core::v3::{Address, address, socket_address};

use crate::protobuf_fields::Fields;
use crate::role::Role;

/// One socket address of an entry: absent, still encoded, or read.
#[derive(Clone, Copy, Debug, Default)]
pub enum LoggedAddress<'a> {
    #[default]
    Absent,
    /// An encoded `envoy.config.core.v3.Address`, not read yet.
    Encoded(&'a [u8]),
    Known(SocketAddr),
}

impl<'a> LoggedAddress<'a> {
    /// A read address, or `Absent` for `None`.
    pub fn known(addr: Option<SocketAddr>) -> LoggedAddress<'static> {
        addr.map_or(LoggedAddress::Absent, LoggedAddress::Known)
    }

    /// The address when it is a literal IP and port. Anything else (a pipe, an internal
    /// address, a name to resolve, or bytes that are not an `Address`) is no use for
    /// matching connections, and is `None`.
    pub fn get(self) -> Option<SocketAddr> {
        match self {
            LoggedAddress::Absent => None,
            LoggedAddress::Encoded(bytes) => socket_addr_of_encoded(bytes),
            LoggedAddress::Known(addr) => Some(addr),
        }
    }

    /// Read now, so that later uses cost nothing and the value outlives the message.
    pub fn decoded(self) -> LoggedAddress<'static> {
        LoggedAddress::known(self.get())
    }
}

/// Two addresses are the same when they read the same, however they are held.
impl PartialEq for LoggedAddress<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// The four addresses of an entry's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ConnectionAddresses<'a> {
    /// The peer of the downstream connection (its direct remote, else its remote).
    pub downstream_peer: LoggedAddress<'a>,
    pub downstream_local: LoggedAddress<'a>,
    pub upstream_local: LoggedAddress<'a>,
    pub upstream_remote: LoggedAddress<'a>,
}

impl<'a> ConnectionAddresses<'a> {
    /// Reads the addresses the role looks at, once.
    pub fn decode_for(&mut self, role: Role) {
        if matches!(role, Role::Inbound | Role::Gateway) {
            self.downstream_peer = self.downstream_peer.decoded();
            self.downstream_local = self.downstream_local.decoded();
        }
        if matches!(role, Role::Outbound | Role::Gateway) {
            self.upstream_local = self.upstream_local.decoded();
            self.upstream_remote = self.upstream_remote.decoded();
        }
    }

    /// All four read, to outlive the message.
    pub fn decoded(&self) -> ConnectionAddresses<'static> {
        ConnectionAddresses {
            downstream_peer: self.downstream_peer.decoded(),
            downstream_local: self.downstream_local.decoded(),
            upstream_local: self.upstream_local.decoded(),
            upstream_remote: self.upstream_remote.decoded(),
        }
    }
}

/// The socket address in an encoded `Address` holding a `SocketAddress` with a literal IP;
/// anything else (a pipe, an internal address, a name to resolve, bytes that are not an
/// `Address`) is `None`. The entry was counted already: an address is read only when the
/// entry's role needs it.
pub(crate) fn socket_addr_of_encoded(buf: &[u8]) -> Option<SocketAddr> {
    let mut socket = None;
    for field in Fields::new(buf) {
        if let (1, v) = field.ok()? {
            socket = Some(v.bytes());
        }
    }
    let (mut ip, mut port) = (None, 0u64);
    for field in Fields::new(socket?) {
        match field.ok()? {
            (2, v) => ip = Some(v.bytes()),
            (3, v) => port = v.varint(),
            _ => {}
        }
    }
    let ip = parse_ip(ip?)?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

/// The socket address in a decoded `Address`, by the same rules as
/// [`socket_addr_of_encoded`]: for entries decoded by prost.
pub fn socket_addr_of_decoded(addr: &Address) -> Option<SocketAddr> {
    match addr.address.as_ref()? {
        address::Address::SocketAddress(sa) => {
            let ip: IpAddr = sa.address.parse().ok()?;
            let port = match sa.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p).ok()?,
                _ => 0,
            };
            Some(SocketAddr::new(ip, port))
        }
        _ => None,
    }
}

/// An IP literal as Envoy writes it. Dotted quads, nearly every address a proxy logs, are
/// read without the UTF-8 check and the general parser; anything else goes to the
/// standard parser, which also decides what a quad this reader refuses really is.
pub fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = parse_dotted_quad(bytes) {
        return Some(IpAddr::V4(v4));
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn parse_dotted_quad(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = bytes.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        // A leading zero is refused, as the standard parser does: it reads as octal elsewhere.
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value = 0u16;
        for &digit in part {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(digit - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prost::Message as _;

    /// An `Address` as a proxy encodes it.
    pub(crate) fn encoded_address(ip: &str, port: u32) -> Vec<u8> {
        use meshscope_proto::pb::envoy::config::core::v3::SocketAddress;
        Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn addresses_are_read_as_a_prost_decode_reads_them() {
        for (ip, port) in [
            ("10.1.2.3", 8080),
            ("::1", 443),
            ("not-an-ip", 80),
            ("10.0.0.1", 70000),
        ] {
            let bytes = encoded_address(ip, port);
            let expected = socket_addr_of_decoded(&Address::decode(bytes.as_slice()).unwrap());
            assert_eq!(socket_addr_of_encoded(&bytes), expected, "{ip}:{port}");
        }
        assert_eq!(socket_addr_of_encoded(&[0x0a, 0x05, 0x12]), None);
    }

    #[test]
    fn ip_literals_read_as_the_standard_parser_reads_them() {
        let cases = [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "127.0.0.10",
            "1.2.3.04",
            "01.2.3.4",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "1.2.3.",
            ".1.2.3",
            "1.2.3.4 ",
            "1.2.3.a",
            "1000.1.1.1",
            "::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "",
            "not an ip",
        ];
        for case in cases {
            assert_eq!(
                parse_ip(case.as_bytes()),
                case.parse::<IpAddr>().ok(),
                "{case:?}"
            );
        }
        assert_eq!(parse_ip(&[0xff, b'.', b'1']), None);
    }

    #[test]
    fn a_role_reads_only_its_own_sides() {
        let encoded = |ip: &str| encoded_address(ip, 80).leak() as &'static [u8];
        let all = ConnectionAddresses {
            downstream_peer: LoggedAddress::Encoded(encoded("10.0.0.1")),
            downstream_local: LoggedAddress::Encoded(encoded("10.0.0.2")),
            upstream_local: LoggedAddress::Encoded(encoded("10.0.0.3")),
            upstream_remote: LoggedAddress::Encoded(encoded("10.0.0.4")),
        };
        let mut inbound = all;
        inbound.decode_for(Role::Inbound);
        assert!(matches!(inbound.downstream_peer, LoggedAddress::Known(_)));
        assert!(matches!(inbound.downstream_local, LoggedAddress::Known(_)));
        assert!(matches!(inbound.upstream_local, LoggedAddress::Encoded(_)));
        assert!(matches!(inbound.upstream_remote, LoggedAddress::Encoded(_)));
        let mut outbound = all;
        outbound.decode_for(Role::Outbound);
        assert!(matches!(
            outbound.downstream_peer,
            LoggedAddress::Encoded(_)
        ));
        assert!(matches!(outbound.upstream_remote, LoggedAddress::Known(_)));
        // However held, the addresses read the same.
        assert_eq!(inbound, outbound);
        assert_eq!(
            outbound.upstream_remote.get(),
            Some("10.0.0.4:80".parse().unwrap())
        );
        assert_eq!(all.decoded(), all);
    }
}
