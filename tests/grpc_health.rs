//! The gRPC port answers the standard health service (`grpc.health.v1.Health`) as a real
//! gRPC client asks it: SERVING while `meshscope serve` runs, for the server and for each
//! receiver, and NOT_SERVING to a watcher as soon as a stop is asked, before the port
//! closes.

mod support;

use std::process::Command;
use std::time::Duration;

use support::Meshscope;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::test]
async fn serving_while_up_and_not_serving_once_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Meshscope::start(dir.path(), &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    for service in [
        "",
        "envoy.service.accesslog.v3.AccessLogService",
        "envoy.service.metrics.v3.MetricsService",
    ] {
        let answer = client.check(request(service)).await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = client.check(request("no.such.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut watch = client.watch(request("")).await.unwrap().into_inner();
    let first: HealthCheckResponse = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(server.proc.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the watcher hears of the stop")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    // The watch is the last open stream: closing it lets the server drain at once.
    drop(watch);
    drop(client);
    let status = server.proc.wait();
    assert!(status.success(), "{status:?}\n{}", server.proc.log_text());
}
