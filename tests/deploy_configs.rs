//! The config files deploy/ ships are ones the binary accepts: `meshscope serve --config`
//! starts with each of them (on free ports and a scratch data directory, which the flags
//! set over the files' values) and answers /healthz. The config refuses unknown keys and
//! checks address_map entries at start, so a file that starts is one whose every key and
//! address is valid.

mod support;

use std::path::Path;

use support::Meshscope;
use support::certs::TestCa;
use support::https::HttpsClient;

fn shipped(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[tokio::test]
async fn kubernetes_config_map_toml_starts_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Meshscope::start(
        dir.path(),
        &["--config", &shipped("deploy/kubernetes/meshscope.toml")],
    )
    .await;
    assert_eq!(server.text("/healthz").await.trim(), r#"{"status":"ok"}"#);
}

/// The split form's file, as a collector (with the writer id and upkeep its pods get) and
/// as a query node; the bucket is a directory here (`--store` set over the file's).
#[tokio::test]
async fn kubernetes_scale_out_toml_starts_a_collector_and_a_query_node() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let store = format!("file://{}", bucket.display());
    let config = shipped("deploy/kubernetes/scale-out/meshscope.toml");
    let collector_dir = dir.path().join("collector");
    std::fs::create_dir_all(&collector_dir).unwrap();
    let collector = Meshscope::start(
        &collector_dir,
        &[
            "--config",
            &config,
            "--store",
            &store,
            "--role",
            "collector",
            "--writer-id",
            "meshscope-collector-0",
            "--upkeep",
            "false",
        ],
    )
    .await;
    assert_eq!(
        collector.text("/healthz").await.trim(),
        r#"{"status":"ok"}"#
    );
    let query_dir = dir.path().join("query");
    std::fs::create_dir_all(&query_dir).unwrap();
    let query = Meshscope::start(
        &query_dir,
        &["--config", &config, "--store", &store, "--role", "query"],
    )
    .await;
    assert_eq!(query.text("/healthz").await.trim(), r#"{"status":"ok"}"#);
    // It reads the (empty) bucket: a map with nothing on it.
    let topology = query.json("/api/v1/topology?window=15m").await;
    assert_eq!(topology["nodes"], serde_json::json!([]), "{topology:#}");
}

/// The VM file turns on TLS, client certificates and tokens with files under
/// /etc/meshscope: the flags point those at files made here, and everything else
/// (address_map, storage, collector) comes from the file as shipped.
#[tokio::test]
async fn vm_toml_starts_the_server_with_its_security_settings() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = TestCa::new(&certs, "ca");
    ca.issue("meshscope", &["DNS:localhost", "IP:127.0.0.1"]);
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "a-long-enough-token-for-the-test-0123456789\n").unwrap();
    let file = |name: &str| certs.join(name).display().to_string();
    let server = Meshscope::start_tls(
        dir.path(),
        &[
            "--config",
            &shipped("deploy/vm/meshscope.toml"),
            "--tls-cert",
            &file("meshscope.pem"),
            "--tls-key",
            &file("meshscope.key"),
            "--grpc-client-ca",
            &file("ca.pem"),
            "--api-token-file",
            &tokens.display().to_string(),
        ],
        HttpsClient::trusting(&certs.join("ca.pem")),
        "info",
    )
    .await;
    assert_eq!(server.text("/healthz").await.trim(), r#"{"status":"ok"}"#);
    // The file's `metrics_open = true` holds: /metrics answers without a token, and the
    // API, with the token file the flags name, does not.
    let https = server.https.as_ref().unwrap();
    let status = |path: &'static str| async move {
        https
            .request(server.http, "GET", path, None, None)
            .await
            .unwrap()
            .status
    };
    assert_eq!(status("/metrics").await, 200);
    assert_eq!(status("/api/v1/topology").await, 401);
}

/// The check above means something only if a bad address_map entry stops the server.
#[test]
fn a_bad_address_map_entry_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshscope.toml");
    let shipped_text = std::fs::read_to_string(shipped("deploy/vm/meshscope.toml")).unwrap();
    assert!(shipped_text.contains("match = \"10.20.0.0/16\""));
    // Without its [security] table, whose files exist only on a configured host.
    let (without_security, _) = shipped_text.split_once("\n[security]").unwrap();
    std::fs::write(
        &config,
        without_security.replace("match = \"10.20.0.0/16\"", "match = \"10.20.0.0/99\""),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("10.20.0.0/99"), "{stderr}");
}
