//! A pool of real Envoy traffic: the access-log streams of a capture (the fixtures'
//! format: a 4-byte big-endian length, then one `StreamAccessLogsMessage`, with an index
//! line per message naming its stream), sent round after round like the simulated pool,
//! every entry's start moved to the second it is sent.

use std::path::Path;

use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use prost::Message;

use super::{Encoded, Pool, PooledStream, SENTINEL_SECONDS, request_id_rounds};
use crate::error::{Error, Result};

impl Pool {
    /// The streams of the access-log capture `bin` (with `NAME.index.jsonl` beside it).
    pub(crate) fn from_capture(bin: &Path) -> Result<Pool> {
        let mut by_stream: Vec<(u64, Vec<StreamAccessLogsMessage>)> = Vec::new();
        for (stream, message) in crate::replay::read_capture(bin)? {
            match by_stream.iter_mut().find(|(id, _)| *id == stream) {
                Some((_, messages)) => messages.push(message),
                None => by_stream.push((stream, vec![message])),
            }
        }
        let mut streams = Vec::new();
        for (stream, messages) in by_stream {
            let identifier = messages
                .iter()
                .find_map(|m| m.identifier.clone())
                .ok_or_else(|| {
                    Error::Capture(format!("stream {stream} of the capture has no identifier"))
                })?;
            let identifier = StreamAccessLogsMessage {
                identifier: Some(identifier),
                log_entries: None,
            }
            .encode_to_vec()
            .into();
            let messages = messages
                .into_iter()
                .filter_map(|mut message| {
                    message.identifier = None;
                    mark_request_ids(&mut message);
                    let entries = stamp_sentinels(&mut message);
                    (entries > 0).then(|| Encoded::new(&message, entries))
                })
                .collect();
            streams.push(PooledStream {
                identifier,
                messages,
            });
        }
        let pool = Pool::of_streams(streams);
        if pool.entries_per_round == 0 {
            return Err(Error::Capture(format!(
                "{} holds no access-log entries",
                bin.display()
            )));
        }
        Ok(pool)
    }
}

/// Marks every HTTP entry's request id to carry the round it is sent in.
fn mark_request_ids(message: &mut StreamAccessLogsMessage) {
    if let Some(LogEntries::HttpLogs(http)) = message.log_entries.as_mut() {
        for entry in &mut http.log_entry {
            if let Some(request) = entry.request.as_mut() {
                request_id_rounds::mark(&mut request.request_id);
            }
        }
    }
}

/// Marks every entry's start second to be stamped at send time; the entries.
fn stamp_sentinels(message: &mut StreamAccessLogsMessage) -> u64 {
    let commons = crate::replay::entry_commons_mut(message);
    let mut entries = 0;
    for common in commons {
        let start = common.start_time.get_or_insert_with(Default::default);
        start.seconds = SENTINEL_SECONDS;
        entries += 1;
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capture_becomes_one_stream_per_log_with_every_entry_stamped() {
        let bin =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/shop-mesh/als_http.bin");
        let pool = Pool::from_capture(&bin).unwrap();
        let index = std::fs::read_to_string(bin.with_extension("index.jsonl")).unwrap();
        let mut want_entries = 0;
        let mut want_streams = std::collections::BTreeSet::new();
        for line in index.lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            want_entries += record["entries"].as_u64().unwrap();
            want_streams.insert(record["stream"].as_u64().unwrap());
        }
        assert_eq!(pool.entries_per_round, want_entries);
        assert_eq!(pool.stream_count(), want_streams.len());
        for stream in &pool.streams {
            let first = StreamAccessLogsMessage::decode(stream.identifier.as_ref()).unwrap();
            assert!(first.identifier.is_some() && first.log_entries.is_none());
            for message in &stream.messages {
                assert_eq!(message.time_offsets.len() as u64, message.entries);
                // Envoy logs a request id on every HTTP entry, each marked once.
                assert_eq!(message.id_offsets.len() as u64, message.entries);
                let stamped = message.stamped(1_790_000_000, 0x0102_0304);
                assert_eq!(
                    stamped.len(),
                    message.bytes.len(),
                    "a UUID keeps its length"
                );
            }
        }
    }
}
