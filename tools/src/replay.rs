//! `meshscope replay`: sends captured Envoy streams (the fixtures' format: a 4-byte big-endian
//! length, then one serialized `StreamAccessLogsMessage` or `StreamMetricsMessage`, with an
//! index line per record naming its stream) to a collector. Access-log entries are moved
//! forward in time so that they land in the current minutes: a live collector refuses minutes
//! that are already closed. Statistics need no shift: the collector stamps them on receipt.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use meshscope_proto::pb::envoy::data::accesslog::v3::AccessLogCommon;
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use meshscope_proto::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use meshscope_proto::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use meshscope_proto::pb::google::protobuf::Timestamp;
use prost::Message;
use tracing::info;

use crate::error::{Error, Result};

/// The flags of `meshscope replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The collector's gRPC address
    #[arg(long, default_value = "http://127.0.0.1:11800")]
    target: String,
    /// Access-log capture files (`NAME.bin`, with `NAME.index.jsonl` beside it)
    #[arg(required_unless_present = "metrics")]
    captures: Vec<PathBuf>,
    /// A metrics-service capture (proxies' own statistics), in the same format (repeatable)
    #[arg(long)]
    metrics: Vec<PathBuf>,
}

/// Runs `meshscope replay`: the access-log captures first, then the metrics captures.
pub async fn run(args: ReplayArgs) -> Result<()> {
    if !args.captures.is_empty() {
        replay_access_logs(&args.target, &args.captures).await?;
    }
    if !args.metrics.is_empty() {
        replay_metrics(&args.target, &args.metrics).await?;
    }
    Ok(())
}

async fn replay_metrics(target: &str, captures: &[PathBuf]) -> Result<()> {
    let mut streams = Vec::new();
    for path in captures {
        streams.extend(read_streams::<StreamMetricsMessage>(path)?);
    }
    let mut client = MetricsServiceClient::connect(target.to_string())
        .await
        .map_err(Error::connect(target))?;
    let count = streams.len();
    for messages in streams {
        client
            .stream_metrics(tokio_stream::iter(messages))
            .await
            .map_err(Error::refused("the collector refused a metrics stream"))?;
    }
    info!(streams = count, "metrics captures replayed");
    Ok(())
}

async fn replay_access_logs(target: &str, captures: &[PathBuf]) -> Result<()> {
    let mut streams = Vec::new();
    for path in captures {
        streams.extend(read_streams::<StreamAccessLogsMessage>(path)?);
    }
    // One shift for all captures keeps their entries aligned with each other, so both
    // sides of a call still meet.
    let earliest = streams
        .iter()
        .flatten()
        .flat_map(entry_commons)
        .filter_map(|c| c.start_time.as_ref().map(millis))
        .min()
        .ok_or_else(|| Error::Capture("the captures hold no entries".into()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let shift = now - earliest;
    for message in streams.iter_mut().flatten() {
        for common in entry_commons_mut(message) {
            if let Some(t) = common.start_time.as_mut() {
                *t = timestamp(millis(t) + shift);
            }
        }
    }
    let mut client = AccessLogServiceClient::connect(target.to_string())
        .await
        .map_err(Error::connect(target))?;
    let count = streams.len();
    for messages in streams {
        client
            .stream_access_logs(tokio_stream::iter(messages))
            .await
            .map_err(Error::refused("the collector refused a stream"))?;
    }
    info!(streams = count, "captures replayed");
    Ok(())
}

/// The messages of each stream, in capture order (a stream's run of consecutive records).
fn read_streams<M: Message + Default>(bin: &Path) -> Result<Vec<Vec<M>>> {
    let mut streams: Vec<(u64, Vec<M>)> = Vec::new();
    for (stream, message) in read_capture(bin)? {
        match streams.last_mut() {
            Some((id, messages)) if *id == stream => messages.push(message),
            _ => streams.push((stream, vec![message])),
        }
    }
    Ok(streams.into_iter().map(|(_, m)| m).collect())
}

/// Every record of the capture `bin` (with `NAME.index.jsonl` beside it), in capture order,
/// each with the stream its index line names.
pub(crate) fn read_capture<M: Message + Default>(bin: &Path) -> Result<Vec<(u64, M)>> {
    let bytes = std::fs::read(bin).map_err(|source| Error::ReadCapture {
        path: bin.to_owned(),
        source,
    })?;
    let index_path = bin.with_extension("index.jsonl");
    let index = std::fs::read_to_string(&index_path).map_err(|source| Error::ReadCapture {
        path: index_path.clone(),
        source,
    })?;
    let mut records = Vec::new();
    let mut offset = 0usize;
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line)?;
        let stream = record["stream"]
            .as_u64()
            .ok_or_else(|| Error::Capture("an index line without stream".into()))?;
        let Some(head) = bytes.get(offset..offset + 4) else {
            return Err(Error::Capture(format!(
                "{} ends before its index does",
                bin.display()
            )));
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let body = bytes
            .get(offset + 4..offset + 4 + len)
            .ok_or_else(|| Error::Capture(format!("{}: a truncated record", bin.display())))?;
        offset += 4 + len;
        records.push((stream, M::decode(body)?));
    }
    Ok(records)
}

/// The common properties of every entry of an access-log message, HTTP or TCP.
pub fn entry_commons(message: &StreamAccessLogsMessage) -> Vec<&AccessLogCommon> {
    match &message.log_entries {
        Some(LogEntries::HttpLogs(logs)) => logs
            .log_entry
            .iter()
            .filter_map(|e| e.common_properties.as_ref())
            .collect(),
        Some(LogEntries::TcpLogs(logs)) => logs
            .log_entry
            .iter()
            .filter_map(|e| e.common_properties.as_ref())
            .collect(),
        None => Vec::new(),
    }
}

/// [`entry_commons`], to change them: the common properties of every entry of an
/// access-log message, HTTP or TCP.
pub fn entry_commons_mut(message: &mut StreamAccessLogsMessage) -> Vec<&mut AccessLogCommon> {
    match &mut message.log_entries {
        Some(LogEntries::HttpLogs(logs)) => logs
            .log_entry
            .iter_mut()
            .filter_map(|e| e.common_properties.as_mut())
            .collect(),
        Some(LogEntries::TcpLogs(logs)) => logs
            .log_entry
            .iter_mut()
            .filter_map(|e| e.common_properties.as_mut())
            .collect(),
        None => Vec::new(),
    }
}

fn millis(t: &Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}
