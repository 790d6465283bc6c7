//! `/metrics` of a real `meshscope serve` fed the captured Envoy streams of the shop mesh
//! (`tests/fixtures/shop-mesh/`, replayed with `meshscope replay`): the Prometheus text format
//! holds (a HELP and a TYPE line for every family, counters end in `_total`, histograms have
//! cumulative `_bucket{le=...}` lines up to `+Inf`, a `_sum` and a `_count`, and no summary),
//! and the figures follow the input: the entries received are the capture's, the request
//! histogram counts the requests made, and the store's file figures are what is on disk.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use support::Meshscope;
use support::replayed_capture::{fixtures, replay};

/// A series' labels, sorted, without `le`.
type Labels = Vec<(String, String)>;

/// One sample line: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, checked against the text format as it is parsed.
#[derive(Debug, Default)]
struct Scrape {
    /// Family name -> its TYPE.
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(!help.trim().is_empty(), "empty HELP for {name}");
                assert!(scrape.helps.insert(name.to_owned()), "two HELP for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "{name} is a {kind}: only counters, gauges and histograms are exported"
                );
                let previous = scrape.types.insert(name.to_owned(), kind.to_owned());
                assert!(previous.is_none(), "two TYPE for {name}");
            } else if line.starts_with('#') {
                continue;
            } else {
                scrape.samples.push(parse_sample(line));
            }
        }
        scrape.check();
        scrape
    }

    fn check(&self) {
        for (family, kind) in &self.types {
            assert!(self.helps.contains(family), "{family} has no HELP line");
            if kind == "counter" {
                assert!(
                    family.ends_with("_total"),
                    "counter {family} must end in _total"
                );
            }
        }
        for sample in &self.samples {
            assert!(
                self.has_family(&sample.name),
                "{} has no TYPE line before it",
                sample.name
            );
        }
        for (family, _) in self.types.iter().filter(|(_, kind)| *kind == "histogram") {
            self.check_histogram(family);
        }
    }

    /// Whether a sample's name belongs to a declared family: its own, or a histogram's
    /// with the `_bucket`, `_sum` or `_count` suffix.
    fn has_family(&self, name: &str) -> bool {
        self.types.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .and_then(|base| self.types.get(base))
                    .is_some_and(|kind| kind == "histogram")
            })
    }

    fn check_histogram(&self, family: &str) {
        let bucket = format!("{family}_bucket");
        let count = format!("{family}_count");
        let sum = format!("{family}_sum");
        // Series are told apart by their labels without `le`.
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.name == bucket) {
            let le = sample.labels.get("le").expect("a bucket has an le label");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let key = without_le(&sample.labels);
            series.entry(key).or_default().push((bound, sample.value));
        }
        assert!(!series.is_empty(), "histogram {family} has no buckets");
        for (labels, buckets) in series {
            let mut previous = (f64::NEG_INFINITY, 0.0);
            for &(bound, value) in &buckets {
                assert!(
                    bound > previous.0,
                    "{family}{labels:?}: bounds out of order"
                );
                assert!(
                    value >= previous.1,
                    "{family}{labels:?}: buckets not cumulative"
                );
                previous = (bound, value);
            }
            assert_eq!(
                previous.0,
                f64::INFINITY,
                "{family}{labels:?}: no +Inf bucket"
            );
            let total = self.value(&count, &labels);
            assert_eq!(total, Some(previous.1), "{family}{labels:?}: _count");
            assert!(
                self.value(&sum, &labels).is_some(),
                "{family}{labels:?}: no _sum"
            );
        }
    }

    fn value(&self, name: &str, labels: &[(String, String)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && without_le(&s.labels) == labels)
            .map(|s| s.value)
    }

    /// The sum of a metric's samples whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

fn without_le(labels: &BTreeMap<String, String>) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "le")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `name{a="x",b="y"} value`, label values with `\"`, `\\` and `\n` escapes.
fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "bad metric name: {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            if c == '}' {
                end = Some(at);
                break;
            }
            if c == ',' || c == ' ' {
                continue;
            }
            let key_start = at;
            let eq = inner[key_start..].find('=').expect("label has =") + key_start;
            let key = inner[key_start..eq].to_owned();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                let (_, c) = chars.next().unwrap_or_else(|| panic!("open quote: {line}"));
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => panic!("{line}"),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            assert!(labels.insert(key, value).is_none(), "a label twice: {line}");
        }
        let end = end.unwrap_or_else(|| panic!("unclosed labels: {line}"));
        rest = &inner[end + 1..];
    }
    let value_text = rest.split_whitespace().next().expect("a value");
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text
            .parse()
            .unwrap_or_else(|e| panic!("bad value {text:?} ({e}): {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Access-log entries per kind (`http`, `tcp`) in the capture, from the counts taken of
/// the capture's own entries.
fn captured_entries() -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(fixtures().join("expected-counts.json")).unwrap();
    let counts: serde_json::Value = serde_json::from_str(&text).unwrap();
    ["http", "tcp"]
        .into_iter()
        .map(|kind| {
            let total: u64 = counts[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|group| group["count"].as_u64().unwrap())
                .sum();
            (kind.to_owned(), total as f64)
        })
        .collect()
}

/// Parquet files under `dir` and their total size.
fn parquet_files(dir: &Path) -> (usize, u64) {
    let mut found = (0, 0);
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                if path.file_name().is_some_and(|n| n == "quarantine") {
                    continue;
                }
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.0 += 1;
                found.1 += entry.metadata().unwrap().len();
            }
        }
    }
    found
}

#[tokio::test]
async fn the_text_format_holds_and_the_figures_follow_real_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Meshscope::start(dir.path(), &[]).await;

    let first = Scrape::parse(&server.text("/metrics").await);
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "meshscope_build_info",
        "meshscope_store_files",
        "meshscope_store_bytes",
        "meshscope_store_maintenance_passes_total",
        "meshscope_store_maintenance_failures_total",
    ] {
        assert!(first.types.contains_key(family), "no {family}");
    }
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(first.sum("meshscope_build_info", &version), Some(1.0));
    assert!(first.sum("process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(first.sum("process_open_fds", &[]).unwrap() >= 3.0);
    // Nothing written yet in this process: no age to tell.
    assert_eq!(
        first.sum("meshscope_store_last_write_age_seconds", &[]),
        None
    );

    replay(server.grpc);
    let expected = captured_entries();
    let deadline = Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let scrape = Scrape::parse(&server.text("/metrics").await);
        let received =
            |kind: &str| scrape.sum("meshscope_als_entries_received_total", &[("kind", kind)]);
        if received("http") == Some(expected["http"]) && received("tcp") == Some(expected["tcp"]) {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "entries received {:?}, {:?}; the capture holds {expected:?}",
            received("http"),
            received("tcp")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        scrape
            .sum("meshscope_proxy_stats_messages_received_total", &[])
            .unwrap()
            > 0.0
    );
    assert!(
        scrape
            .sum("meshscope_wal_bytes_written_total", &[])
            .unwrap()
            > 0.0
    );

    // The request histogram counts exactly the requests made on a route.
    let topology = [("route", "/api/v1/topology")];
    let before = scrape
        .sum("meshscope_http_request_duration_seconds_count", &topology)
        .unwrap_or(0.0);
    for _ in 0..3 {
        server.json("/api/v1/topology?window=5m").await;
    }
    let after = Scrape::parse(&server.text("/metrics").await);
    assert_eq!(
        after.sum("meshscope_http_request_duration_seconds_count", &topology),
        Some(before + 3.0)
    );
    assert!(after.types["meshscope_http_request_duration_seconds"] == "histogram");

    // A stop writes the open minutes; the next start counts them as they are on disk.
    let status = server.proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", server.proc.log_text());
    let (files, bytes) = parquet_files(&dir.path().join("data"));
    assert!(files > 0, "the stop wrote no file");
    let server = Meshscope::start_as("meshscope-again", dir.path(), &[]).await;
    let again = Scrape::parse(&server.text("/metrics").await);
    assert_eq!(again.sum("meshscope_store_files", &[]), Some(files as f64));
    assert_eq!(again.sum("meshscope_store_bytes", &[]), Some(bytes as f64));
}

#[test]
fn samples_and_labels_parse_with_escapes() {
    let sample = parse_sample(r#"a_total{x="1",y="q\"uo\\te"} 2.5"#);
    assert_eq!(sample.name, "a_total");
    assert_eq!(sample.labels["x"], "1");
    assert_eq!(sample.labels["y"], r#"q"uo\te"#);
    assert_eq!(sample.value, 2.5);
    let bare = parse_sample("up 1");
    assert!(bare.labels.is_empty());
    let scrape = Scrape::parse(
        "# HELP h_seconds t\n# TYPE h_seconds histogram\n\
         h_seconds_bucket{le=\"0.1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n\
         h_seconds_sum 0.3\nh_seconds_count 2\n",
    );
    assert_eq!(scrape.sum("h_seconds_count", &[]), Some(2.0));
}
