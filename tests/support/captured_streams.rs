//! The captured shop-mesh access-log streams (Envoy 1.39.3, `tests/fixtures/shop-mesh`)
//! as a load to send: the sidecars' streams, their entries moved to now, and the server's
//! own figures to compare them with.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use meshscope_tools::replay::entry_commons_mut;
use prost::Message;

use super::{Meshscope, meshscope_sql};

const CALLS: &str = "SELECT sum(calls) AS calls FROM edge_minute";

/// One captured stream: its messages in order, the first with the identifier.
pub(crate) struct Stream {
    pub(crate) messages: Vec<StreamAccessLogsMessage>,
}

pub(crate) fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop-mesh/als_http.bin")
}

/// The sidecars' streams of the capture.
pub(crate) fn sidecar_streams() -> Vec<Stream> {
    let bin = fixture();
    let bytes = std::fs::read(&bin).unwrap();
    let index = std::fs::read_to_string(bin.with_extension("index.jsonl")).unwrap();
    let mut streams: Vec<(u64, Stream)> = Vec::new();
    let mut offset = 0;
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let message =
            StreamAccessLogsMessage::decode(&bytes[offset + 4..offset + 4 + len]).unwrap();
        offset += 4 + len;
        if record["log_name"].as_str().unwrap().contains("ingress") {
            continue;
        }
        let id = record["stream"].as_u64().unwrap();
        match streams.iter_mut().find(|(s, _)| *s == id) {
            Some((_, stream)) => stream.messages.push(message),
            None => streams.push((
                id,
                Stream {
                    messages: vec![message],
                },
            )),
        }
    }
    streams.into_iter().map(|(_, s)| s).collect()
}

pub(crate) fn entries(message: &StreamAccessLogsMessage) -> u64 {
    match &message.log_entries {
        Some(LogEntries::HttpLogs(logs)) => logs.log_entry.len() as u64,
        Some(LogEntries::TcpLogs(logs)) => logs.log_entry.len() as u64,
        None => 0,
    }
}

/// Every entry's start moved by `shift_ms`.
pub(crate) fn shifted(message: &StreamAccessLogsMessage, shift_ms: i64) -> StreamAccessLogsMessage {
    let mut message = message.clone();
    let commons = entry_commons_mut(&mut message);
    for common in commons {
        if let Some(t) = common.start_time.as_mut() {
            let ms = t.seconds * 1000 + i64::from(t.nanos) / 1_000_000 + shift_ms;
            t.seconds = ms.div_euclid(1000);
            t.nanos = (ms.rem_euclid(1000) * 1_000_000) as i32;
        }
    }
    message
}

pub(crate) fn earliest_ms(streams: &[Stream]) -> i64 {
    streams
        .iter()
        .flat_map(|s| &s.messages)
        .filter_map(|m| match &m.log_entries {
            Some(LogEntries::HttpLogs(logs)) => logs
                .log_entry
                .iter()
                .filter_map(|e| e.common_properties.as_ref()?.start_time.as_ref())
                .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
                .min(),
            _ => None,
        })
        .min()
        .unwrap()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) async fn accepted(server: &Meshscope) -> u64 {
    let text = server.text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with("meshscope_als_entries_accepted_total"))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

pub(crate) async fn stored_calls(server: &Meshscope) -> u64 {
    let url = format!("http://{}", server.http);
    let (code, out, err) = meshscope_sql(&["--server", &url, "--format", "json", CALLS]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    rows[0]["calls"].as_u64().unwrap_or(0)
}

/// The stored calls once they stop moving: replayed entries parked for their peer resolve
/// at the server's next ticks, which a loaded machine may run late, so the figure must hold
/// over three readings in a row.
pub(crate) async fn settled_calls(server: &Meshscope) -> u64 {
    let mut last = stored_calls(server).await;
    let mut unchanged = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = stored_calls(server).await;
        if now == last {
            unchanged += 1;
            if unchanged == 3 {
                return now;
            }
        } else {
            unchanged = 0;
        }
        last = now;
    }
}

/// An unlabelled figure of the server's `/metrics`, 0 when absent.
pub(crate) async fn metric(server: &Meshscope, name: &str) -> u64 {
    let text = server.text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}
