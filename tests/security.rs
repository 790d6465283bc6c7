//! The security settings against the real binary: TLS on both listeners, client
//! certificates on the gRPC one, the SPIFFE check of what a stream's node claims, and bearer
//! tokens on the HTTP API. Each refusal is shown: plaintext to a TLS port, no client
//! certificate, a certificate from another CA, a node claiming another identity than its
//! certificate, no token, a wrong token, a `read` token on SQL; and no token ever shows in
//! the log.

mod support;

use std::collections::HashMap;
use std::path::Path;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier as AlsIdentifier;
use envoy_types::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use envoy_types::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier as MetricsIdentifier;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use support::Meshscope;
use support::certs::{CertFiles, TestCa};
use support::https::HttpsClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const TOKEN_ALL: &str = "tok-all-5d0c9e1f2a7b4c3d";
const TOKEN_READ: &str = "tok-read-8e2f6a1b9c0d3e4f";
const TOKEN_SQL: &str = "tok-sql-1a2b3c4d5e6f7a8b";
const TOKEN_WRONG: &str = "tok-wrong-0f9e8d7c6b5a4f3e";

struct Pki {
    ca: TestCa,
    server: CertFiles,
    frontend: CertFiles,
    foreign: CertFiles,
}

fn make_pki(dir: &Path) -> Pki {
    let ca = TestCa::new(dir, "mesh-ca");
    let server = ca.issue("meshscope", &["DNS:localhost", "IP:127.0.0.1"]);
    let frontend = ca.issue(
        "frontend",
        &["URI:spiffe://cluster.local/ns/shop/sa/frontend"],
    );
    let other_ca = TestCa::new(dir, "other-ca");
    let foreign = other_ca.issue(
        "foreign",
        &["URI:spiffe://cluster.local/ns/shop/sa/frontend"],
    );
    Pki {
        ca,
        server,
        frontend,
        foreign,
    }
}

fn node(id: &str, meta: &[(&str, &str)]) -> Node {
    let fields: HashMap<String, Value> = meta
        .iter()
        .map(|(key, value)| {
            (
                key.to_string(),
                Value {
                    kind: Some(Kind::StringValue(value.to_string())),
                },
            )
        })
        .collect();
    Node {
        id: id.into(),
        cluster: "frontend".into(),
        metadata: Some(Struct { fields }),
        ..Default::default()
    }
}

/// A gRPC channel to `addr`: plaintext when `tls` is `None`, else TLS trusting `ca` and
/// presenting `client` when given.
async fn channel(
    addr: std::net::SocketAddr,
    tls: Option<(&Path, Option<&CertFiles>)>,
) -> Result<Channel, tonic::transport::Error> {
    let Some((ca, client)) = tls else {
        return Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await;
    };
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some(client) = client {
        config = config.identity(Identity::from_pem(
            std::fs::read(&client.cert).unwrap(),
            std::fs::read(&client.key).unwrap(),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect()
        .await
}

/// Sends one metrics message as `node`; the stream's final status.
async fn report_metrics(channel: Channel, node: Node) -> Result<(), tonic::Status> {
    let message = StreamMetricsMessage {
        identifier: Some(MetricsIdentifier { node: Some(node) }),
        envoy_metrics: Vec::new(),
    };
    MetricsServiceClient::new(channel)
        .stream_metrics(tokio_stream::iter([message]))
        .await
        .map(|_| ())
}

/// Sends one access-log message (no entries) as `node`; the stream's final status.
async fn report_access_log(channel: Channel, node: Node) -> Result<(), tonic::Status> {
    let message = StreamAccessLogsMessage {
        identifier: Some(AlsIdentifier {
            node: Some(node),
            log_name: "frontend_inbound_http".into(),
        }),
        log_entries: None,
    };
    AccessLogServiceClient::new(channel)
        .stream_access_logs(tokio_stream::iter([message]))
        .await
        .map(|_| ())
}

/// The value of one series of meshscope's `/metrics`, 0 when absent.
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_and_no_token_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# people\n{TOKEN_ALL}\n{TOKEN_READ} read\n{TOKEN_SQL} sql\n"),
    )
    .unwrap();
    let ca = pki.ca.files.cert.clone();
    let https = HttpsClient::trusting(&ca);
    let (cert, key, tokens_path) = (
        pki.server.cert.display().to_string(),
        pki.server.key.display().to_string(),
        tokens.display().to_string(),
    );
    let ca_path = ca.display().to_string();
    let server = Meshscope::start_tls(
        dir.path(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--grpc-client-ca",
            &ca_path,
            "--strict-reporter-identity",
            "--api-token-file",
            &tokens_path,
        ],
        https.clone(),
        "debug",
    )
    .await;
    let frontend_node = || {
        node(
            "frontend-1",
            &[("NAMESPACE", "shop"), ("SERVICE_ACCOUNT", "frontend")],
        )
    };

    // gRPC: plaintext, no client certificate, a certificate from another CA.
    let plaintext = match channel(server.grpc, None).await {
        Ok(channel) => report_metrics(channel, frontend_node()).await.is_err(),
        Err(_) => true,
    };
    assert!(plaintext, "plaintext gRPC to the TLS port must fail");
    for (what, client) in [
        ("no client certificate", None),
        ("foreign", Some(&pki.foreign)),
    ] {
        let refused = match channel(server.grpc, Some((&ca, client))).await {
            Ok(channel) => report_metrics(channel, frontend_node()).await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "{what}: the handshake must fail");
    }

    // A good certificate whose node claims what the certificate says is taken; one whose
    // node claims another service account is refused, on either service.
    let good = channel(server.grpc, Some((&ca, Some(&pki.frontend))))
        .await
        .unwrap();
    report_metrics(good.clone(), frontend_node()).await.unwrap();
    let impostor = node(
        "impostor-1",
        &[("NAMESPACE", "shop"), ("SERVICE_ACCOUNT", "payments")],
    );
    let status = report_metrics(good.clone(), impostor.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("spiffe://cluster.local/ns/shop/sa/frontend"),
        "{status:?}"
    );
    let status = report_access_log(good.clone(), impostor).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let other_namespace = node(
        "frontend-2",
        &[("NAMESPACE", "payments"), ("SERVICE_ACCOUNT", "frontend")],
    );
    let status = report_access_log(good, other_namespace).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // HTTP: plaintext to the TLS port gets no HTTP answer.
    assert!(
        support::get(&format!("http://{}/healthz", server.http))
            .await
            .is_err(),
        "plaintext HTTP to the TLS port must fail"
    );
    let ask = |method: &'static str, path: &'static str, token: Option<&'static str>| {
        let https = https.clone();
        let addr = server.http;
        let body = (method == "POST").then_some(r#"{"sql": "SELECT 1 AS one"}"#);
        async move {
            https
                .request(addr, method, path, token, body)
                .await
                .unwrap()
        }
    };
    let health = ask("GET", "/healthz", None).await;
    assert_eq!(health.status, 200, "{health:?}");
    let csp = health.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    assert_eq!(health.headers["x-content-type-options"], "nosniff");
    assert!(health.headers.get("access-control-allow-origin").is_none());

    for token in [None, Some(TOKEN_WRONG)] {
        let refused = ask("GET", "/api/v1/topology?window=5m", token).await;
        assert_eq!(refused.status, 401, "{token:?}: {refused:?}");
        let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
        assert!(body["error"].is_string(), "{body}");
        assert_eq!(
            refused.headers["www-authenticate"],
            "Bearer realm=\"meshscope\""
        );
        assert_eq!(
            refused.headers["x-content-type-options"], "nosniff",
            "refusals carry the security headers too"
        );
        assert_eq!(ask("GET", "/metrics", token).await.status, 401);
        assert_eq!(ask("POST", "/api/v1/sql", token).await.status, 401);
    }
    for token in [TOKEN_READ, TOKEN_SQL, TOKEN_ALL] {
        let topology = ask("GET", "/api/v1/topology?window=5m", Some(token)).await;
        assert_eq!(topology.status, 200, "{token}: {topology:?}");
        assert_eq!(ask("GET", "/metrics", Some(token)).await.status, 200);
    }
    let proxies = ask("GET", "/api/v1/proxies", Some(TOKEN_READ)).await;
    let proxies: serde_json::Value = serde_json::from_str(&proxies.body).unwrap();
    let ids: Vec<&str> = proxies["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["frontend-1"],
        "only the proxy that reported as itself"
    );

    let narrow = ask("POST", "/api/v1/sql", Some(TOKEN_READ)).await;
    assert_eq!(narrow.status, 403, "{narrow:?}");
    let body: serde_json::Value = serde_json::from_str(&narrow.body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("sql"), "{body}");
    assert_eq!(
        ask("GET", "/api/v1/tables", Some(TOKEN_READ)).await.status,
        403
    );
    for token in [TOKEN_SQL, TOKEN_ALL] {
        let answer = ask("POST", "/api/v1/sql", Some(token)).await;
        assert_eq!(answer.status, 200, "{token}: {answer:?}");
        assert!(answer.body.contains("\"one\":1"), "{answer:?}");
    }

    // What was refused is counted: each stream's identity check exactly, each refused
    // handshake at least once (a client may try again).
    let metrics = ask("GET", "/metrics", Some(TOKEN_READ)).await.body;
    for (outcome, want) in [("match", 1.0), ("mismatch", 3.0)] {
        let name = format!("meshscope_reporter_identity_checks_total{{outcome=\"{outcome}\"}}");
        assert_eq!(series(&metrics, &name), want, "{name}\n{metrics}");
    }
    for (listener, reason) in [
        ("grpc", "not_tls"),
        ("grpc", "no_client_certificate"),
        ("grpc", "bad_certificate"),
        ("http", "not_tls"),
    ] {
        let name = format!(
            "meshscope_tls_handshakes_failed_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        );
        assert!(series(&metrics, &name) >= 1.0, "{name}\n{metrics}");
    }

    let log = server.proc.log_text();
    assert!(
        log.contains("a proxy reports as another identity"),
        "mismatches are logged:\n{log}"
    );
    for token in [TOKEN_ALL, TOKEN_READ, TOKEN_SQL, TOKEN_WRONG] {
        assert!(!log.contains(token), "a token is in the log:\n{log}");
    }
    // Only the distinctive tails too: a token cut or escaped in a log line still shows.
    for token in [TOKEN_ALL, TOKEN_READ, TOKEN_SQL, TOKEN_WRONG] {
        assert!(!log.contains(&token[token.len() - 12..]), "{log}");
    }
}
