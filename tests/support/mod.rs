//! Shared by the end-to-end tests: the meshscope binary on free loopback ports, child
//! processes that die with the test, and a small HTTP client.

#![allow(dead_code)]

pub(crate) mod captured_streams;
pub(crate) mod certs;
pub(crate) mod https;
pub(crate) mod istio_mesh;
pub(crate) mod moto;
pub(crate) mod replayed_capture;
pub(crate) mod retry_mesh;
pub(crate) mod rows;
pub(crate) mod simulated;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A child process killed when dropped, also when a test panics.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    pub(crate) log: PathBuf,
}

impl Proc {
    /// Waits up to 30 s until the Envoy this process runs answers `LIVE` on its admin
    /// address `admin`; panics with its log when it dies or never does.
    pub(crate) async fn wait_envoy_live(&mut self, admin: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.assert_running();
            if let Ok((200, body)) = get(&format!("http://{admin}/ready")).await
                && body.trim() == "LIVE"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn spawn(name: &str, command: &mut Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks the process to stop the way an operator or an orchestrator does (SIGTERM) and
    /// waits for it to exit.
    pub(crate) fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "cannot signal {}", self.name);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {within:?}:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit.
    pub(crate) fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// How it exited, if it has.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub(crate) fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on `ip`, found by binding port 0.
pub(crate) fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Meshscope {
    pub(crate) proc: Proc,
    pub(crate) grpc: SocketAddr,
    pub(crate) http: SocketAddr,
    /// Set when the server serves HTTPS: the client that trusts its CA.
    pub(crate) https: Option<https::HttpsClient>,
}

impl Meshscope {
    pub(crate) async fn start(dir: &Path, extra: &[&str]) -> Meshscope {
        Self::start_as("meshscope", dir, extra).await
    }

    /// Serves on free ports with its data in `dir/data` and its log in `dir/{name}.log`.
    pub(crate) async fn start_as(name: &str, dir: &Path, extra: &[&str]) -> Meshscope {
        Self::start_with_env(name, dir, extra, &[]).await
    }

    /// `start_as`, with these environment variables set too.
    pub(crate) async fn start_with_env(
        name: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Meshscope {
        Self::start_with(name, dir, extra, None, "info", env).await
    }

    /// Serves over TLS (the flags in `extra`), reached through `https`, logging at `log`.
    pub(crate) async fn start_tls(
        dir: &Path,
        extra: &[&str],
        https: https::HttpsClient,
        log: &str,
    ) -> Meshscope {
        Self::start_with("meshscope", dir, extra, Some(https), log, &[]).await
    }

    /// `start_with_env`, taking gRPC streams on `grpc` (a free port the caller picked, so
    /// that it can name it in the flags).
    pub(crate) async fn start_on(
        name: &str,
        dir: &Path,
        grpc: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Meshscope {
        Self::start_at(name, dir, grpc, extra, None, "info", env).await
    }

    async fn start_with(
        name: &str,
        dir: &Path,
        extra: &[&str],
        https: Option<https::HttpsClient>,
        log: &str,
        env: &[(&str, &str)],
    ) -> Meshscope {
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap();
        Self::start_at(name, dir, grpc, extra, https, log, env).await
    }

    async fn start_at(
        name: &str,
        dir: &Path,
        grpc: SocketAddr,
        extra: &[&str],
        https: Option<https::HttpsClient>,
        log: &str,
        env: &[(&str, &str)],
    ) -> Meshscope {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap();
        let data = dir.join("data");
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshscope"));
        command
            .arg("serve")
            .arg("--grpc-addr")
            .arg(grpc.to_string())
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", log);
        let mut proc = Proc::spawn(name, &mut command, dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            proc.assert_running();
            let up = match &https {
                Some(client) => client
                    .request(http, "GET", "/healthz", None, None)
                    .await
                    .is_ok(),
                None => get(&format!("http://{http}/healthz")).await.is_ok(),
            };
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "meshscope did not come up:\n{}",
                proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Meshscope {
            proc,
            grpc,
            http,
            https,
        }
    }

    /// GET `path` over HTTP or HTTPS, whichever the server serves.
    async fn get(&self, path: &str) -> Result<(u16, String), String> {
        match &self.https {
            Some(client) => client
                .request(self.http, "GET", path, None, None)
                .await
                .map(|answer| (answer.status, answer.body)),
            None => get(&format!("http://{}{path}", self.http)).await,
        }
    }

    pub(crate) async fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    pub(crate) async fn text(&self, path: &str) -> String {
        self.get(path).await.unwrap().1
    }
}

/// GET a URL: status and body.
pub(crate) async fn get(url: &str) -> Result<(u16, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Starts `envoy` with `config` (one worker, warnings only, logging into `log_dir`) as
/// `envoy-<name>`, and waits until its admin address `admin` answers `LIVE`.
pub(crate) async fn start_envoy(
    envoy: &str,
    name: &str,
    config: &Path,
    admin: &str,
    log_dir: &Path,
) -> Proc {
    let mut command = Command::new(envoy);
    command.arg("-c").arg(config).args([
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        "warn",
    ]);
    let mut proc = Proc::spawn(&format!("envoy-{name}"), &mut command, log_dir);
    proc.wait_envoy_live(admin).await;
    proc
}

/// Edges of a topology as (source, target, protocol) -> edge JSON.
pub(crate) fn edges(
    topology: &serde_json::Value,
) -> std::collections::BTreeMap<(String, String, String), serde_json::Value> {
    topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["source"].as_str().unwrap().to_string(),
                    e["target"].as_str().unwrap().to_string(),
                    e["protocol"].as_str().unwrap().to_string(),
                ),
                e.clone(),
            )
        })
        .collect()
}

/// Runs `meshscope sql ARGS...`: exit code, stdout, stderr.
pub(crate) fn meshscope_sql(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .arg("sql")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MESHSCOPE_CONFIG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Every file under `dir`, relative to it, sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}
