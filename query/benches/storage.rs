//! The store's benchmark: minute rows written to Parquet per second, bytes on disk per
//! minute row and per raw access-log entry, and the latency of `GET /api/v1/topology`
//! (through the real router) over 1 h, 24 h and 7 days of a synthetic mesh.
//!
//! The data is laid out the way a week of meshscope leaves it: minute files for the last
//! two days, written one closed minute at a time like the collector does; older hours
//! written as one row per key and hour; then one maintenance pass compacts, rolls up
//! into hour and day tables and expires minutes past their retention.
//!
//! `cargo bench -p meshscope-query --bench storage` (500 services, 5,000 edges, 7 days);
//! `-- --services 50 --edges 500 --days 2 --minute-hours 3` for a quick run; `--reuse DIR`
//! keeps the generated store in DIR and, on later runs, only repeats the queries.
//!
//! Over 600 lines: one benchmark program (data generation, the timed reads and their
//! report); splitting it would spread one sequence of steps over several files.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use meshscope_query::{AppState, router};
use meshscope_storage::clock::{Clock, ManualClock};
use meshscope_storage::{
    AccessLogRow, EpochMillis, LatencySketch, MINUTE_MS, MetricRow, Metrics, Protocol,
    RetentionConfig, RowKey, ServiceRef, Side, Store, StoreConfig,
};
use tower::ServiceExt;

// The allocator the meshscope binary ships with, so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

struct Options {
    services: usize,
    edges: usize,
    days: i64,
    /// How far back minute rows go; older hours have one row per key and hour.
    minute_hours: i64,
    access_log_entries: usize,
    runs: usize,
    /// Minutes the clock moves on after the fixed-time reads, each read at its turn.
    slide_minutes: usize,
    /// Keep the generated store here and, when it is already there, only run the queries.
    reuse: Option<std::path::PathBuf>,
    /// The windows read at a fixed time, e.g. `1h` alone when profiling its repeats.
    windows: Option<Vec<String>>,
    /// The windows read ahead as `meshscope serve` reads them: at start and after each
    /// write (`none` for none, to time reads that find nothing kept).
    read_ahead: Vec<String>,
    /// A window read once, untimed, before the fixed-time reads: a process that has
    /// served other reads (its code paged in, its DataFusion session made), so that the
    /// first read of each window times the window alone.
    warm_with: Option<String>,
    /// Whether each minute of the slide runs the upkeep after its write, as the server
    /// does once a minute, and times it.
    upkeep: bool,
}

impl Options {
    fn parse() -> Self {
        let mut options = Options {
            services: 500,
            edges: 5_000,
            days: 7,
            minute_hours: 48,
            access_log_entries: 1_000_000,
            runs: 20,
            slide_minutes: 20,
            reuse: None,
            windows: None,
            warm_with: None,
            upkeep: false,
            read_ahead: meshscope_query::warm::DEFAULT_WINDOWS
                .iter()
                .map(|w| (*w).to_owned())
                .collect(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || -> i64 {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{arg} needs a number"))
            };
            match arg.as_str() {
                "--services" => options.services = value() as usize,
                "--edges" => options.edges = value() as usize,
                "--days" => options.days = value(),
                "--minute-hours" => options.minute_hours = value(),
                "--access-log-entries" => options.access_log_entries = value() as usize,
                "--runs" => options.runs = value() as usize,
                "--slide-minutes" => options.slide_minutes = value() as usize,
                "--reuse" => options.reuse = args.next().map(Into::into),
                "--warm-with" => options.warm_with = args.next(),
                "--upkeep" => options.upkeep = true,
                "--windows" => {
                    options.windows = Some(
                        args.next()
                            .unwrap_or_else(|| panic!("--windows needs a list, e.g. 1h,24h"))
                            .split(',')
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                "--read-ahead" => {
                    options.read_ahead = args
                        .next()
                        .unwrap_or_else(|| panic!("--read-ahead needs a list, e.g. 1h,24h"))
                        .split(',')
                        .filter(|w| !w.is_empty() && *w != "none")
                        .map(str::to_owned)
                        .collect()
                }
                // Cargo passes `--bench`; anything else is a filter we do not use.
                _ => {}
            }
        }
        assert!(
            options.edges <= options.services * (options.services - 1),
            "too many edges for the services"
        );
        options
    }
}

/// A small deterministic generator (xorshift), so every run writes the same data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Mesh {
    services: Vec<ServiceRef>,
    edges: Vec<RowKey>,
    /// Sketches of a minute's (or an hour's) latencies to start each row's from: building
    /// every row's from scratch would measure the generator, not the store.
    minute_sketches: Vec<LatencySketch>,
    hour_sketches: Vec<LatencySketch>,
}

impl Mesh {
    fn new(options: &Options, random: &mut Random) -> Self {
        let services: Vec<ServiceRef> = (0..options.services)
            .map(|i| ServiceRef::service(format!("team-{:02}", i % 25), format!("service-{i:03}")))
            .collect();
        let mut pairs = std::collections::BTreeSet::new();
        while pairs.len() < options.edges {
            let source = random.below(options.services as u64) as usize;
            let target = random.below(options.services as u64) as usize;
            if source != target {
                pairs.insert((source, target));
            }
        }
        let edges = pairs
            .into_iter()
            .map(|(source, target)| RowKey::Edge {
                source: services[source].clone(),
                target: services[target].clone(),
                protocol: if target % 10 == 0 {
                    Protocol::Tcp
                } else {
                    Protocol::Http
                },
            })
            .collect();
        let sketch = |random: &mut Random, samples: usize| {
            let mut sketch = LatencySketch::new();
            for _ in 0..samples {
                // Mostly a few milliseconds, with a slow tail.
                let base = 1.0 + random.below(40) as f64 / 4.0;
                let tail = if random.below(50) == 0 { 300.0 } else { 0.0 };
                sketch.add(base + tail);
            }
            sketch
        };
        let minute_sketches = (0..64).map(|_| sketch(random, 60)).collect();
        let hour_sketches = (0..64).map(|_| sketch(random, 3_600)).collect();
        Mesh {
            services,
            edges,
            minute_sketches,
            hour_sketches,
        }
    }

    /// One row per edge and per service for the bucket starting at `minute`, holding
    /// `minutes` minutes of traffic.
    fn rows(&self, minute: EpochMillis, minutes: u64, random: &mut Random) -> Vec<MetricRow> {
        let sketches = if minutes == 1 {
            &self.minute_sketches
        } else {
            &self.hour_sketches
        };
        let metrics = |random: &mut Random| {
            let calls = (20 + random.below(200)) * minutes;
            Metrics {
                calls,
                errors: calls / 50,
                errors_4xx: calls / 100,
                latency: {
                    // A few samples of its own, so that rows do not repeat byte for byte.
                    let mut sketch = sketches[random.below(sketches.len() as u64) as usize].clone();
                    for _ in 0..3 {
                        sketch.add(0.5 + random.below(5_000) as f64 / 100.0);
                    }
                    sketch
                },
                bytes_sent: calls * 420,
                bytes_received: calls * 1_800,
                tcp_connections: 0,
                mtls_calls: calls,
                apdex_satisfied: calls - calls / 20,
                apdex_tolerating: calls / 40,
                retries: 0,
                identity_conflicts: 0,
                ..Metrics::default()
            }
        };
        let keys = self
            .edges
            .iter()
            .cloned()
            .chain(self.services.iter().map(|service| RowKey::Service {
                service: service.clone(),
            }));
        keys.map(|key| MetricRow {
            minute,
            key,
            side: Side::Server,
            metrics: metrics(random),
        })
        .collect()
    }
}

fn bytes_under(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                bytes_under(&entry.path())
            } else {
                metadata.len()
            }
        })
        .sum()
}

fn minute_tables_bytes(dir: &Path) -> u64 {
    bytes_under(&dir.join("edge_minute")) + bytes_under(&dir.join("service_minute"))
}

fn access_log_rows(count: usize, start: EpochMillis, random: &mut Random) -> Vec<AccessLogRow> {
    const PATHS: [&str; 8] = [
        "/api/cart/{id}",
        "/api/cart",
        "/api/products",
        "/api/products/{id}",
        "/checkout",
        "/healthz",
        "/api/orders/{id}",
        "/api/users/{id}/profile",
    ];
    (0..count)
        .map(|i| {
            let source = random.below(500);
            let target = random.below(500);
            let status = if random.below(50) == 0 { 503 } else { 200 };
            AccessLogRow {
                time: start + (i as i64 * HOUR_MS) / count as i64,
                source_namespace: format!("team-{:02}", source % 25),
                source_name: format!("service-{source:03}"),
                target_namespace: format!("team-{:02}", target % 25),
                target_name: format!("service-{target:03}"),
                side: Side::Server,
                protocol: Protocol::Http,
                method: if random.below(4) == 0 { "POST" } else { "GET" }.into(),
                path: PATHS[random.below(PATHS.len() as u64) as usize].into(),
                status,
                response_flags: if status == 503 { "UF" } else { "-" }.into(),
                duration_ms: 1.0 + random.below(4_000) as f64 / 100.0,
                bytes_sent: 200 + random.below(800),
                bytes_received: 500 + random.below(4_000),
                mtls: true,
                request_id: format!(
                    "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                    random.next() as u32,
                    random.below(1 << 16),
                    random.below(1 << 12),
                    random.below(1 << 12),
                    random.below(1 << 48)
                ),
                node: format!("service-{target:03}-7d9f{}-pod", target % 7),
            }
        })
        .collect()
}

async fn topology(router: &axum::Router, window: &str) -> (Duration, usize, usize) {
    let request = Request::get(format!("/api/v1/topology?window={window}"))
        .body(Body::empty())
        .unwrap();
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let elapsed = started.elapsed();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let count = |field: &str| json[field].as_array().map_or(0, Vec::len);
    (elapsed, count("nodes"), count("edges"))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Runs the bench under the allocator settings the server ships with (`src/memory.rs`:
/// no transparent huge pages, freed pages returned after 100 ms). mimalloc reads its
/// environment when the process starts, so the bench starts itself again with it set.
fn with_server_allocator_settings() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the bench's own path");
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("MIMALLOC_PURGE_DELAY", "100")
        .env("MIMALLOC_ALLOW_THP", "0")
        .exec();
    panic!("restarting the bench with the server's allocator settings: {error}");
}

fn main() {
    with_server_allocator_settings();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run());
}

async fn run() {
    let options = Options::parse();
    let mut random = Random(0x5eed_cafe_f00d_1234);
    let mesh = Mesh::new(&options, &mut random);
    let temporary = tempfile::tempdir().unwrap();
    let dir = options
        .reuse
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let dir = dir.as_path();
    let marker = dir.join("bench-now");
    let reused = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|text| text.trim().parse::<EpochMillis>().ok());
    let retention = RetentionConfig {
        minute_secs: (options.minute_hours * 3_600) as u64,
        ..RetentionConfig::default()
    };
    let store = Arc::new(
        Store::open(StoreConfig {
            maintenance_interval_secs: 0,
            retention,
            access_log: true,
            ..StoreConfig::in_dir(dir)
        })
        .await
        .unwrap(),
    );
    // Mid-hour, so that the 1 h window reads minutes of two hours, as it usually does.
    let today = chrono::Utc::now().timestamp_millis().div_euclid(DAY_MS) * DAY_MS;
    let now = reused.unwrap_or(today + 13 * HOUR_MS + 30 * MINUTE_MS + 30_000);
    let live_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
    println!(
        "mesh: {} services, {} edges; {} days, minutes for the last {} hours",
        options.services, options.edges, options.days, options.minute_hours
    );

    if reused.is_none() {
        generate(&options, &store, &mesh, &mut random, dir, now).await;
        std::fs::write(&marker, now.to_string()).unwrap();
    }
    // The collector's live minute, live in memory.
    store.publish_live_minutes(mesh.rows(live_minute, 1, &mut random));

    let clock = Arc::new(ManualClock::new(now));
    let state = AppState::new(store.clone()).with_clock(clock.clone());
    let router = router(state.clone());
    if !options.read_ahead.is_empty() {
        // What `meshscope serve` does before anyone asks: the reads below find it done.
        let started = Instant::now();
        meshscope_query::warm::watch(&state, &options.read_ahead).unwrap();
        meshscope_query::warm::read_ahead(&state).await;
        println!(
            "read ahead at start ({}): {:.1} ms",
            options.read_ahead.join(","),
            millis(started.elapsed())
        );
    }
    if let Some(window) = &options.warm_with {
        let started = Instant::now();
        topology(&router, window).await;
        println!(
            "warmed with one read of {window}: {:.1} ms",
            millis(started.elapsed())
        );
    }
    let windows = options
        .windows
        .clone()
        .unwrap_or_else(|| vec!["1h".into(), "24h".into(), format!("{}d", options.days)]);
    for window in &windows {
        let window = window.as_str();
        // The first read of a window folds every row; later ones reuse the totals of its
        // closed spans and fold only the live minute.
        let before = store.figures();
        let (cold, nodes, edges) = topology(&router, window).await;
        let after = store.figures();
        let summaries = after.block_summaries_read - before.block_summaries_read;
        let trailing = after.trailing_summaries_read - before.trailing_summaries_read;
        assert_eq!(
            (nodes, edges),
            (options.services, options.edges),
            "the {window} topology shows the whole mesh"
        );
        let mut times: Vec<Duration> = Vec::with_capacity(options.runs);
        for _ in 0..options.runs {
            times.push(topology(&router, window).await.0);
        }
        times.sort();
        let median = times[times.len() / 2];
        let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
        println!(
            "topology window={window}: first {:.1} ms ({summaries} block and {trailing} trailing-hour summaries folded); then median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms ({} runs)",
            millis(cold),
            millis(median),
            millis(p90),
            millis(times[0]),
            millis(times[times.len() - 1]),
            options.runs
        );
    }

    slide(
        &options,
        &state,
        &store,
        &mesh,
        &mut random,
        &clock,
        &marker,
    )
    .await;
}

/// A dashboard left open on the 1 h map: the clock moves on a minute at a time, the minute
/// that ended is written as the collector writes it, the windows are read ahead as the
/// server does after a write, and the first read after each turn is timed.
async fn slide(
    options: &Options,
    state: &AppState,
    store: &Store,
    mesh: &Mesh,
    random: &mut Random,
    clock: &ManualClock,
    marker: &Path,
) {
    if options.slide_minutes == 0 {
        return;
    }
    // A router of its own over the same state: what a read sees is the state's.
    let router = &router(state.clone());
    let mut turns = Vec::with_capacity(options.slide_minutes);
    let mut ahead = Vec::with_capacity(options.slide_minutes);
    let mut repeats = Vec::new();
    let mut upkeep = Vec::new();
    let mut now = clock.now_ms();
    let mut open = mesh.rows(now.div_euclid(MINUTE_MS) * MINUTE_MS, 1, random);
    for _ in 0..options.slide_minutes {
        // The next minute opens as the one that ended is written, as in the collector,
        // where the write moves where live minutes start.
        let closing = std::mem::take(&mut open);
        now += MINUTE_MS;
        clock.set(now);
        std::fs::write(marker, now.to_string()).unwrap();
        open = mesh.rows(now.div_euclid(MINUTE_MS) * MINUTE_MS, 1, random);
        store.publish_live_minutes(open.clone());
        store.append_closed(closing).await.unwrap();
        if options.upkeep {
            let started = Instant::now();
            let report = store.maintain(now).await.unwrap();
            upkeep.push(started.elapsed());
            println!("upkeep at turn {}: {report:?}", upkeep.len());
        }
        if !options.read_ahead.is_empty() {
            // The dashboard keeps every window of the run in view: without it, the windows
            // not read below would stop being read ahead ten minutes into the run.
            meshscope_query::warm::watch(state, &options.read_ahead).unwrap();
            let started = Instant::now();
            meshscope_query::warm::read_ahead(state).await;
            ahead.push(started.elapsed());
        }
        let (elapsed, nodes, edges) = topology(router, "1h").await;
        assert_eq!((nodes, edges), (options.services, options.edges));
        turns.push(elapsed);
        for _ in 0..3 {
            repeats.push(topology(router, "1h").await.0);
        }
    }
    // The last live minute is left out of the store, as at the start of a run.
    turns.sort();
    repeats.sort();
    ahead.sort();
    let at = |times: &[Duration], q: f64| {
        millis(times[((times.len() as f64 * q) as usize).min(times.len() - 1)])
    };
    println!(
        "topology window=1h, sliding {} minutes: first read after each turn median {:.1} ms, p90 {:.1} ms, max {:.1} ms; repeats median {:.1} ms, p90 {:.1} ms",
        options.slide_minutes,
        at(&turns, 0.5),
        at(&turns, 0.9),
        at(&turns, 1.0),
        at(&repeats, 0.5),
        at(&repeats, 0.9),
    );
    upkeep.sort();
    if !upkeep.is_empty() {
        println!(
            "upkeep after each write: median {:.1} ms, max {:.1} ms",
            at(&upkeep, 0.5),
            at(&upkeep, 1.0),
        );
    }
    if !ahead.is_empty() {
        println!(
            "read ahead after each write ({} windows): median {:.1} ms, max {:.1} ms",
            state.watched_windows(),
            at(&ahead, 0.5),
            at(&ahead, 1.0),
        );
    }
}

/// Writes the week: hours as single rows, then the last hours minute by minute, then one
/// maintenance pass, reporting write speed and bytes on disk on the way.
async fn generate(
    options: &Options,
    store: &Store,
    mesh: &Mesh,
    random: &mut Random,
    dir: &Path,
    now: EpochMillis,
) {
    let live_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
    let first_minute_hour =
        (live_minute - options.minute_hours * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    // A day more than the longest window, so that it starts inside the data.
    let first_hour = (now - (options.days + 1) * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    let mut hour = first_hour;
    while hour < first_minute_hour {
        store
            .append_closed(mesh.rows(hour, 60, random))
            .await
            .unwrap();
        hour += HOUR_MS;
    }

    // Closed minutes one at a time, as the collector hands them over. Rows are made
    // before the clock starts, so the figure is the store's.
    let mut write_time = Duration::ZERO;
    let mut minute_rows = 0usize;
    let mut minute = first_minute_hour;
    while minute < live_minute {
        let rows = mesh.rows(minute, 1, random);
        minute_rows += rows.len();
        let started = Instant::now();
        store.append_closed(rows).await.unwrap();
        write_time += started.elapsed();
        minute += MINUTE_MS;
    }
    let written_bytes = minute_tables_bytes(dir);
    println!(
        "write: {minute_rows} minute rows in {:.1} s: {:.0} rows/s; {:.1} bytes per row as written (one file per minute)",
        write_time.as_secs_f64(),
        minute_rows as f64 / write_time.as_secs_f64(),
        written_bytes as f64 / minute_rows as f64
    );

    let started = Instant::now();
    let report = store.maintain(now).await.unwrap();
    println!(
        "maintenance: {:.1} s ({report:?})",
        started.elapsed().as_secs_f64()
    );
    // Retention took the hour-per-row files; what is left is every minute row written.
    let kept_bytes = minute_tables_bytes(dir);
    println!(
        "disk: {:.1} bytes per minute row after compaction ({minute_rows} rows, {kept_bytes} bytes)",
        kept_bytes as f64 / minute_rows as f64
    );

    if options.access_log_entries > 0 {
        // One file per second of entries, as the collector writes them, then compacted.
        // Recent, so that the access log's one-day retention keeps them.
        let recent_hour = (live_minute - 2 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
        let entries = access_log_rows(options.access_log_entries, recent_hour, random);
        let per_file = options.access_log_entries.div_ceil(3_600).max(1);
        let started = Instant::now();
        for chunk in entries.chunks(per_file) {
            store.append_access_log(chunk.to_vec()).await.unwrap();
        }
        let elapsed = started.elapsed();
        store.maintain(now).await.unwrap();
        let bytes = bytes_under(&dir.join("access_log"));
        println!(
            "access log: {} entries in {:.1} s: {:.0} entries/s; {:.1} bytes per entry after compaction",
            options.access_log_entries,
            elapsed.as_secs_f64(),
            options.access_log_entries as f64 / elapsed.as_secs_f64(),
            bytes as f64 / options.access_log_entries as f64
        );
    }
}
