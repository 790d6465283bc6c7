//! The container image as a user runs it: built by scripts/image with this test's binary,
//! run by podman with a named volume at /data, published ports and a read-only root
//! filesystem without even a writable /tmp; two real Envoy sidecars (configured as Istio configures them) send it a
//! known mix of traffic through the published gRPC port; the map and /healthz answer
//! through the published HTTP port; `podman stop` leaves Parquet files in the volume.
//!
//! Ignored by `cargo test`: it needs podman and root. scripts/ci/image runs it (and
//! scripts/test runs that unless MESHSCOPE_SKIP_IMAGE_TEST=1).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::istio_mesh::{FAILED_CALLS, IstioMesh, NAMESPACE, OK_CALLS};
use support::{edges, files_under, free_port, get};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs podman with the repository's containers.conf unless one is set: its output, or a
/// failed test with podman's error.
fn podman(args: &[&str]) -> String {
    let mut command = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        command.env(
            "CONTAINERS_CONF",
            repo().join("deploy/image/containers.conf"),
        );
    }
    let out = command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"));
    assert!(
        out.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The image, container and volume of one run, removed when the test ends either way.
struct Podman {
    image: String,
    container: String,
    volume: String,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.container])
            .output();
        let _ = Command::new("podman")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "builds and runs the container image with podman; scripts/ci/image runs it"]
async fn image_serves_real_envoy_traffic_and_keeps_its_data_in_the_volume() {
    let envoy = support::istio_mesh::envoy_binary();
    let dir = tempfile::tempdir().unwrap();
    let run = format!("{}-{}", std::process::id(), rand_suffix());
    let names = Podman {
        image: format!("localhost/meshscope-test:{run}"),
        container: format!("meshscope-test-{run}"),
        volume: format!("meshscope-test-{run}"),
    };

    let started = Instant::now();
    let built = Command::new(repo().join("scripts/image"))
        .args([&names.image, "--binary", env!("CARGO_BIN_EXE_meshscope")])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "scripts/image failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    println!(
        "{} (built in {:.0?})",
        String::from_utf8_lossy(&built.stdout).trim(),
        started.elapsed()
    );

    // What the image promises: a non-root user, /data as its volume, meshscope as the
    // entrypoint serving on both ports.
    let config = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Cmd}} {{json .Config.Volumes}} {{json .Config.ExposedPorts}}",
        &names.image,
    ]);
    assert_eq!(
        config,
        r#"65532:65532 ["/usr/local/bin/meshscope"] ["serve"] {"/data":{}} {"11800/tcp":{},"12800/tcp":{}}"#
    );

    podman(&["volume", "create", &names.volume]);
    let grpc = free_port("127.0.0.1");
    let http = free_port("127.0.0.1");
    // As documented: the image's own command, a named volume, both ports; read-only and
    // without the scratch directories podman mounts by default, so meshscope must write
    // nowhere but /data.
    podman(&[
        "run",
        "--detach",
        "--name",
        &names.container,
        "--read-only",
        "--read-only-tmpfs=false",
        "--volume",
        &format!("{}:/data", names.volume),
        "--publish",
        &format!("127.0.0.1:{grpc}:11800"),
        "--publish",
        &format!("127.0.0.1:{http}:12800"),
        &names.image,
    ]);
    let logs = || {
        Command::new("podman")
            .args(["logs", &names.container])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, body)) = get(&format!("http://127.0.0.1:{http}/healthz")).await {
            assert!(body.contains("ok"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the container never answered /healthz:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let collector = format!("127.0.0.1:{grpc}").parse().unwrap();
    let mesh = IstioMesh::start(dir.path(), &envoy, 51, collector).await;
    mesh.send_traffic().await;
    let (source, target) = (
        format!("{NAMESPACE}/productpage"),
        format!("{NAMESPACE}/reviews"),
    );
    let want = (OK_CALLS + FAILED_CALLS, FAILED_CALLS);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = get(&format!(
            "http://127.0.0.1:{http}/api/v1/topology?window=15m"
        ))
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let topology: serde_json::Value = serde_json::from_str(&body).unwrap();
        let got = edges(&topology)
            .get(&(source.clone(), target.clone(), "http".to_string()))
            .map(|e| {
                (
                    e["metrics"]["calls"].as_u64().unwrap(),
                    e["metrics"]["errors"].as_u64().unwrap(),
                )
            });
        if got == Some(want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge {source} -> {target} never showed (calls, errors) {want:?}: {got:?}\n{body}\n{}\n{}",
            logs(),
            mesh.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Stopped the way an orchestrator stops it, meshscope writes its open minutes and
    // exits cleanly, within the time the image documents.
    let stopping = Instant::now();
    podman(&["stop", "--time", "60", &names.container]);
    let stopped_in = stopping.elapsed();
    let exit = podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &names.container,
    ]);
    assert_eq!(exit, "0", "{}", logs());
    assert!(stopped_in < Duration::from_secs(50), "{stopped_in:?}");
    let mountpoint = podman(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &names.volume,
    ]);
    let files = files_under(Path::new(&mountpoint));
    let parquet: Vec<&String> = files.iter().filter(|f| f.ends_with(".parquet")).collect();
    assert!(
        !parquet.is_empty(),
        "no Parquet files in the volume after stop: {files:?}\n{}",
        logs()
    );
    println!(
        "stopped in {stopped_in:.1?}; the volume holds {} Parquet files",
        parquet.len()
    );
}

/// A few random hex digits, so that two runs never share names.
fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:08x}")
}
