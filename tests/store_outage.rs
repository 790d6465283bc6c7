//! The store unreachable for over a minute: a node writing to an S3-compatible server
//! (moto, through a relay the test cuts) keeps accepting access logs while the minute
//! they fall in closes and cannot be written, and once the store is back it writes them,
//! each call once.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::Meshscope;
use support::moto::{BUCKET, Relay, keys, s3_env, start_moto};
use support::replayed_capture::{Graph, captured_edges, graph, replay};

/// Calls and errors by caller and callee.
type CapturedEdges = std::collections::BTreeMap<(String, String), (u64, u64)>;

/// Whether the map's edges are exactly `want`'s, with their figures.
fn same_edges(got: &Graph, want: &CapturedEdges) -> bool {
    got.len() == want.len()
        && got.iter().all(|((source, target, _), figures)| {
            want.get(&(source.clone(), target.clone())) == Some(figures)
        })
}

/// How long the store stays unreachable, at the least.
const OUTAGE: Duration = Duration::from_secs(60);

/// How long after a minute ends the collector writes it (`write_after_secs`' default).
const WRITE_AFTER: Duration = Duration::from_secs(10);

async fn accepted(node: &Meshscope) -> u64 {
    support::captured_streams::metric(node, "meshscope_als_entries_accepted_total").await
}

/// How long until the minute after the current one starts, by the wall clock.
fn until_next_minute() -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Duration::from_millis(60_000 - (now.as_millis() % 60_000) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_accepting_while_the_store_is_unreachable_and_writes_every_call_once_it_is_back()
 {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, moto_port) = start_moto(dir.path()).await;
    let relay = Relay::start(moto_port).await;
    let env = s3_env(relay.port);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let store = format!("s3://{BUCKET}/mesh");
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let node = Meshscope::start_with_env(
        "node",
        &node_dir,
        &["--store", &store, "--writer-id", "node-a"],
        &env,
    )
    .await;

    // The store goes away; the capture is sent twice, the second time after the minute
    // of the first has closed and its write has been due for a while.
    relay.cut();
    let cut = Instant::now();
    replay(node.grpc);
    let once = accepted(&node).await;
    assert!(once > 0);
    // At least a minute without the store, and past the first closed minute's write.
    let write_due = until_next_minute() + WRITE_AFTER + Duration::from_secs(10);
    tokio::time::sleep(write_due.max(OUTAGE.saturating_sub(cut.elapsed()))).await;
    replay(node.grpc);
    assert_eq!(
        accepted(&node).await,
        2 * once,
        "ingest goes on while the store cannot be written"
    );
    assert!(
        keys(moto_port, "mesh/edge_minute/").await.is_empty(),
        "nothing reached the store through the cut relay"
    );
    // The failed writes are counted as the store's I/O, and health says so.
    let failed = support::captured_streams::metric(
        &node,
        "meshscope_store_write_failures_total{reason=\"io\"}",
    )
    .await;
    assert!(failed > 0, "failed writes are counted");
    let health = node.json("/healthz").await;
    eprintln!(
        "after {:?} without the store: /healthz {health}",
        cut.elapsed()
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["storage"]["reason"], "io", "{health}");
    assert_eq!(health["storage"]["writable"], false, "{health}");

    // The store is back: the closed minutes are written, each call once.
    relay.mend();
    let mended = Instant::now();
    while keys(moto_port, "mesh/edge_minute/").await.is_empty() {
        assert!(
            mended.elapsed() < Duration::from_secs(180),
            "the closed minutes never reached the store:\n{}",
            node.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "the first minute file reached the store {:?} after it came back",
        mended.elapsed()
    );
    let want: CapturedEdges = captured_edges()
        .into_iter()
        .map(|(edge, (calls, errors))| (edge, (2 * calls, 2 * errors)))
        .collect();
    let started = Instant::now();
    let got = loop {
        let got = graph(&node).await;
        if same_edges(&got, &want) || started.elapsed() > Duration::from_secs(60) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        same_edges(&got, &want),
        "after the store came back: {got:?}\nwant (the capture twice over): {want:?}"
    );
    assert_eq!(node.json("/healthz").await["status"], "ok");
}
