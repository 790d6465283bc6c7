//! The receiver reads access-log messages field by field instead of decoding them whole:
//! over every entry of the real captures it must read exactly what a full prost decode
//! gives, and refuse what is not protobuf.

mod support;

use meshscope_collector::entry::{self, Reject};
use meshscope_collector::wire::{Message, WireError};
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use prost::Message as _;

const MAX_LEN: usize = 4096;

fn check_capture(log: &str) -> usize {
    let mut compared = 0;
    for (_, messages) in support::read_streams("shop-mesh", log) {
        for decoded in messages {
            let bytes = decoded.encode_to_vec();
            let read = Message::parse(&bytes).unwrap();
            assert_eq!(read.identifier.is_some(), decoded.identifier.is_some());
            let expected: Vec<_> = match &decoded.log_entries {
                Some(LogEntries::HttpLogs(h)) => h
                    .log_entry
                    .iter()
                    .map(|e| entry::from_http(e, MAX_LEN))
                    .collect(),
                Some(LogEntries::TcpLogs(t)) => t
                    .log_entry
                    .iter()
                    .map(|e| entry::from_tcp(e, MAX_LEN))
                    .collect(),
                None => Vec::new(),
            };
            let got: Vec<_> = read.observations(MAX_LEN).collect();
            assert_eq!(read.entry_count(), expected.len());
            assert_eq!(got, expected);
            // Read in place, one observation reused for every entry: the same.
            let mut in_place = Vec::new();
            read.read_each(MAX_LEN, |r| in_place.push(r.map(|obs| *obs)));
            assert_eq!(in_place, expected);
            compared += got.len();
        }
    }
    compared
}

#[test]
fn reads_every_captured_entry_as_prost_does() {
    let http = check_capture("als_http");
    let tcp = check_capture("als_tcp");
    // The capture's sizes, so that an empty reading cannot pass.
    assert!(http > 600, "{http} HTTP entries compared");
    assert!(tcp > 0, "{tcp} TCP entries compared");
}

#[test]
fn oversized_and_missing_fields_are_rejected_per_entry() {
    let (_, messages) = support::read_streams("shop-mesh", "als_http").remove(0);
    let mut message = messages
        .into_iter()
        .find(|m| m.log_entries.is_some())
        .unwrap();
    let Some(LogEntries::HttpLogs(h)) = &mut message.log_entries else {
        panic!("an HTTP message")
    };
    h.log_entry.truncate(3);
    h.log_entry[0].request.as_mut().unwrap().path = "/x".repeat(MAX_LEN);
    h.log_entry[1].common_properties = None;
    let bytes = message.encode_to_vec();
    let message = Message::parse(&bytes).unwrap();
    let read: Vec<_> = message.observations(MAX_LEN).map(|r| r.err()).collect();
    let mut in_place = Vec::new();
    message.read_each(MAX_LEN, |r| in_place.push(r.err()));
    assert_eq!(in_place, read);
    assert_eq!(
        read,
        vec![
            Some(Reject::OversizedField),
            Some(Reject::MissingCommon),
            None
        ]
    );
}

#[test]
fn broken_framing_refuses_the_whole_message() {
    let message = StreamAccessLogsMessage::default();
    assert!(Message::parse(&message.encode_to_vec()).is_ok());
    // http_logs whose length runs past the end.
    assert_eq!(
        Message::parse(&[0x12, 0x10, 0x0a]).unwrap_err(),
        WireError::Truncated
    );
    // An entry list that holds a truncated entry.
    assert_eq!(
        Message::parse(&[0x12, 0x02, 0x0a, 0x05]).unwrap_err(),
        WireError::Truncated
    );
    // A group (wire type 3), which no field of these messages uses.
    assert_eq!(Message::parse(&[0x0b]).unwrap_err(), WireError::WireType(3));
}
