//! Scale-out on object storage, end to end: an S3-compatible server (moto's server mode,
//! started here), two collectors writing to one bucket and a query node reading it. The
//! captured Envoy streams of `tests/fixtures/shop-mesh` are replayed into each collector,
//! and into a single `all` node twice; the query node's graph must equal the single node's,
//! and its figures the capture's own counts doubled. Then one collector is killed: the
//! query node still answers, with the same figures.
//!
//! moto comes from `MESHSCOPE_MOTO_SERVER` (a `moto_server` executable), else from the
//! virtual environment `scripts/test` installs it into (see `support::moto`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::moto::{BUCKET, keys, s3_env, start_moto};
use support::replayed_capture::{Graph, captured_edges, graph, replay};
use support::{Meshscope, get};

/// A query node shows a call within this of the collector receiving it.
const FRESHNESS: Duration = Duration::from_secs(15);

async fn start(
    name: &str,
    dir: &Path,
    flags: &[&str],
    env: &[(&'static str, String)],
) -> Meshscope {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Meshscope::start_with_env(name, &dir, flags, &env).await
}

/// Polls `node`'s graph until it equals `want` or `within` has passed; returns the last
/// graph read and how long it took.
async fn wait_for(node: &Meshscope, want: &Graph, within: Duration) -> (Graph, Duration) {
    let started = Instant::now();
    loop {
        let got = graph(node).await;
        if &got == want || started.elapsed() > within {
            return (got, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_and_a_query_node_on_one_bucket_give_the_single_node_graph() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_moto, port) = start_moto(dir.path()).await;
    let env = s3_env(port);
    let store = format!("s3://{BUCKET}/mesh");

    let mut collector_a = start(
        "collector-a",
        dir.path(),
        &[
            "--role",
            "collector",
            "--store",
            &store,
            "--writer-id",
            "collector-a",
        ],
        &env,
    )
    .await;
    let collector_b = start(
        "collector-b",
        dir.path(),
        &[
            "--role",
            "collector",
            "--store",
            &store,
            "--writer-id",
            "collector-b",
        ],
        &env,
    )
    .await;
    let query = start(
        "query",
        dir.path(),
        &["--role", "query", "--store", &store],
        &env,
    )
    .await;
    let single = start("single", dir.path(), &[], &[]).await;

    // A collector serves health and metrics over HTTP, and nothing else.
    let (status, _) = get(&format!("http://{}/metrics", collector_a.http))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = get(&format!(
        "http://{}/api/v1/topology?window=15m",
        collector_a.http
    ))
    .await
    .unwrap();
    assert_eq!(status, 404, "a collector serves no reads");

    // The same capture into each collector, and twice into the single node.
    replay(collector_a.grpc);
    replay(collector_b.grpc);
    let replayed = Instant::now();
    replay(single.grpc);
    replay(single.grpc);

    let captured = captured_edges();
    let single_graph = {
        let started = Instant::now();
        loop {
            let got = graph(&single).await;
            let whole = captured.iter().all(|((client, server), (calls, errors))| {
                got.iter().any(|((source, target, _), figures)| {
                    source == client && target == server && *figures == (2 * calls, 2 * errors)
                })
            });
            if whole {
                break got;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the single node never showed the capture twice over: {got:?}\nwant {captured:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    assert_eq!(single_graph.len(), captured.len(), "{single_graph:?}");

    let (got, took) = wait_for(&query, &single_graph, FRESHNESS).await;
    assert_eq!(got, single_graph, "the query node's graph after {took:?}");
    let since_replay = replayed.elapsed();
    eprintln!("query node showed both collectors' calls {since_replay:?} after they were sent");
    assert!(since_replay < FRESHNESS + Duration::from_secs(10));

    // Each collector wrote its own files, under its own id, into the bucket; the query
    // node wrote none, and the collectors keep only their logs on their disks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = keys(port, "mesh/open-minutes/").await;
    assert!(
        open.iter()
            .any(|k| k.starts_with("mesh/open-minutes/collector-a/"))
            && open
                .iter()
                .any(|k| k.starts_with("mesh/open-minutes/collector-b/")),
        "{open:?}"
    );
    for key in keys(port, "mesh/").await {
        if key.ends_with(".parquet") && !key.starts_with("mesh/open-minutes/") {
            assert!(
                key.contains("-collector-a_") || key.contains("-collector-b_"),
                "a file without a collector's id: {key}"
            );
        }
    }
    for name in ["collector-a", "collector-b", "query"] {
        let on_disk = support::files_under(&dir.path().join(name));
        assert!(
            !on_disk.iter().any(|f| f.ends_with(".parquet")),
            "{name} kept Parquet on its disk: {on_disk:?}"
        );
    }

    // Once both collectors have closed and written the minutes, the query node reads
    // them from their files, each once (a writer's open rows of a minute its files hold
    // are left out).
    let started = Instant::now();
    loop {
        let written = keys(port, "mesh/edge_minute/").await;
        if ["-collector-a_", "-collector-b_"]
            .iter()
            .all(|id| written.iter().any(|k| k.contains(id)))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the collectors never wrote their minutes: {written:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(graph(&query).await, single_graph, "read from the files");

    // One collector dies: the query node still answers, with what it had accepted.
    let killed = Command::new("kill")
        .args(["-KILL", &collector_a.proc.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    collector_a.proc.wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(graph(&query).await, single_graph);
    drop(collector_b);
}

/// The value of an unlabelled metric in a node's `/metrics`, if it is there.
async fn metric(node: &Meshscope, name: &str) -> Option<f64> {
    let text = node.text("/metrics").await;
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The numbers of the upkeep lease's terms in the bucket.
async fn lease_terms(port: u16) -> Vec<u64> {
    let mut terms: Vec<u64> = keys(port, "mesh/upkeep-lease/")
        .await
        .iter()
        .filter_map(|key| {
            key.rsplit_once("term-")?
                .1
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    terms.sort_unstable();
    terms
}

/// The tests here each start several servers: one at a time, so that one's load does not
/// slow the other's past its deadlines.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Two collectors told to run upkeep on one bucket: one holds the lease (a term object
/// made with a conditional write, `If-None-Match: *`) and the other skips its passes;
/// when the holder is killed, the other takes over once the holder's term has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upkeep_nodes_on_one_bucket_take_turns_by_the_lease() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_moto, port) = start_moto(dir.path()).await;
    // A pass every 2 s: terms of the shortest length, 15 s.
    let config = dir.path().join("upkeep.toml");
    std::fs::write(&config, "[storage]\nmaintenance_interval_secs = 2\n").unwrap();
    let mut env = s3_env(port);
    env.push(("MESHSCOPE_CONFIG", config.display().to_string()));
    let store = format!("s3://{BUCKET}/mesh");
    let flags = |id: &'static str| {
        [
            "--role",
            "collector",
            "--store",
            &store,
            "--writer-id",
            id,
            "--upkeep",
            "true",
        ]
        .map(str::to_owned)
    };
    let held = "meshscope_store_upkeep_lease_held";
    let skipped = "meshscope_store_maintenance_skipped_total";
    let until = |what: &'static str, within: Duration| {
        let deadline = Instant::now() + within;
        move || assert!(Instant::now() < deadline, "{what} within {within:?}")
    };

    let a_flags = flags("collector-a");
    let a_flags: Vec<&str> = a_flags.iter().map(String::as_str).collect();
    let mut a = start("collector-a", dir.path(), &a_flags, &env).await;
    let in_time = until("the first node holds the lease", Duration::from_secs(20));
    while metric(&a, held).await != Some(1.0) {
        in_time();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let b_flags = flags("collector-b");
    let b_flags: Vec<&str> = b_flags.iter().map(String::as_str).collect();
    let b = start("collector-b", dir.path(), &b_flags, &env).await;
    let in_time = until("the second node skips a pass", Duration::from_secs(20));
    while metric(&b, skipped).await.unwrap_or(0.0) < 2.0 {
        in_time();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(metric(&b, held).await, Some(0.0));
    assert_eq!(metric(&a, held).await, Some(1.0), "the holder renews");
    let before = lease_terms(port).await;
    assert!(!before.is_empty() && before.len() <= 4, "{before:?}");

    // The holder dies: the other takes over after the term (15 s) and the grace (5 s).
    let killed = Command::new("kill")
        .args(["-KILL", &a.proc.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    a.proc.wait();
    let in_time = until("the survivor takes the lease over", Duration::from_secs(40));
    while metric(&b, held).await != Some(1.0) {
        in_time();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = lease_terms(port).await;
    assert!(
        after.len() <= 4 && after.last() > before.last(),
        "a new term, old ones deleted: {before:?} then {after:?}"
    );
}
