//! Micro-benchmarks of the collector's hot paths over the real shop-mesh capture:
//! decoding (full prost decode against the field-by-field reading the receiver does),
//! identity resolution, endpoint grouping, sketch insert, the whole ingest of a message
//! (resolution + minute aggregation) and building Arrow batches of closed minutes.
//!
//! `cargo bench -p meshscope-collector --bench hot_paths`

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshscope_collector::endpoint::endpoint_name;
use meshscope_collector::identity::NodeIdentity;
use meshscope_collector::{Collector, CollectorConfig, ManualClock, wire};
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use meshscope_storage::to_batch;
use meshscope_storage::{LatencySketch, Store, StoreConfig, Table};
use prost::Message;

fn fixtures() -> PathBuf {
    std::env::var("MESHSCOPE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"))
}

/// The raw records of the HTTP capture.
fn records() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(fixtures().join("shop-mesh/als_http.bin")).expect("fixture");
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        out.push(bytes[offset + 4..offset + 4 + len].to_vec());
        offset += 4 + len;
    }
    out
}

fn entries(message: &StreamAccessLogsMessage) -> u64 {
    match &message.log_entries {
        Some(LogEntries::HttpLogs(h)) => h.log_entry.len() as u64,
        _ => 0,
    }
}

fn benches(c: &mut Criterion) {
    let records = records();
    // Later messages carry entries only; the first of a stream also carries the node.
    let messages: Vec<StreamAccessLogsMessage> = records
        .iter()
        .map(|r| StreamAccessLogsMessage::decode(r.as_slice()).unwrap())
        .collect();
    let entry_records: Vec<&Vec<u8>> = records
        .iter()
        .zip(&messages)
        .filter(|(_, m)| m.identifier.is_none())
        .map(|(r, _)| r)
        .collect();
    let entry_count: u64 = messages
        .iter()
        .filter(|m| m.identifier.is_none())
        .map(entries)
        .sum();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(entry_count));
    group.bench_function("prost_full_message", |b| {
        b.iter(|| {
            for r in &entry_records {
                std::hint::black_box(StreamAccessLogsMessage::decode(r.as_slice()).unwrap());
            }
        })
    });
    // What the receiver does instead: read the used fields, borrowing the strings.
    group.bench_function("wire_scan_observations", |b| {
        b.iter(|| {
            for r in &entry_records {
                let message = wire::Message::parse(r.as_slice()).unwrap();
                for obs in message.observations(4096) {
                    std::hint::black_box(obs.unwrap());
                }
            }
        })
    });
    group.finish();

    let node = messages
        .iter()
        .find_map(|m| m.identifier.as_ref()?.node.clone())
        .unwrap();
    c.bench_function("identity/from_node", |b| {
        b.iter(|| NodeIdentity::from_node(std::hint::black_box(&node)).unwrap())
    });

    let paths = [
        "/",
        "/api/v1/orders/123456/items",
        "/u/550e8400-e29b-41d4-a716-446655440000/profile?tab=1",
        "/blob/deadbeefdeadbeefdeadbeef",
    ];
    c.bench_function("endpoint/group", |b| {
        b.iter(|| {
            for p in paths {
                std::hint::black_box(endpoint_name("GET", p));
            }
        })
    });

    c.bench_function("sketch/insert", |b| {
        let mut sketch = LatencySketch::new();
        let mut x = 0.5f64;
        b.iter(|| {
            x = (x * 1.37 + 0.11) % 400.0;
            sketch.add(x);
        })
    });

    // The whole ingest of the capture's messages: resolution and aggregation.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = runtime.block_on(async {
        Arc::new(
            Store::open(StoreConfig::in_dir(data.path().to_path_buf()))
                .await
                .unwrap(),
        )
    });
    let start = messages
        .iter()
        .filter_map(|m| match &m.log_entries {
            Some(LogEntries::HttpLogs(h)) => h
                .log_entry
                .first()?
                .common_properties
                .as_ref()?
                .start_time
                .as_ref()
                .map(|t| t.seconds * 1000),
            _ => None,
        })
        .max()
        .unwrap();
    let clock = Arc::new(ManualClock::new(start + 10_000));
    let collector = Collector::with_clock(
        CollectorConfig {
            join_wait_ms: 0,
            ..Default::default()
        },
        store,
        clock,
    )
    .unwrap();
    let contexts: Vec<_> = messages
        .iter()
        .filter_map(|m| m.identifier.as_ref())
        .map(|id| collector.stream_context(id).unwrap())
        .collect();
    let total: u64 = messages.iter().map(entries).sum();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(total));
    group.bench_function("shop_mesh_capture", |b| {
        b.iter(|| {
            let mut context = &contexts[0];
            let mut next = 0;
            for (r, m) in records.iter().zip(&messages) {
                if m.identifier.is_some() {
                    context = &contexts[next];
                    next += 1;
                }
                collector.ingest_message(context, &wire::Message::parse(r).unwrap());
            }
        })
    });
    group.finish();

    // Closing a minute: the unclosed rows the capture made, into the store's Arrow batches.
    let rows = collector.unclosed_rows();
    let mut group = c.benchmark_group("arrow");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("minute_rows_to_batches", |b| {
        b.iter(|| {
            for table in Table::ALL {
                std::hint::black_box(to_batch(table, &rows).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
