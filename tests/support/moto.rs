//! An S3-compatible server for the tests that need object storage: moto's server mode,
//! from `MESHSCOPE_MOTO_SERVER` (a `moto_server` executable), else from the virtual
//! environment `scripts/test` installs it into; and a relay in front of it that a test can
//! cut, to make the store unreachable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Proc, free_port};

pub(crate) const MOTO_VERSION: &str = "5.2.6";
pub(crate) const BUCKET: &str = "meshscope";

/// The `moto_server` executable.
pub(crate) fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("MESHSCOPE_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let path = cache.join(format!("meshscope/moto-{MOTO_VERSION}/bin/moto_server"));
    assert!(
        path.exists(),
        "no moto server at {}: run scripts/test (it installs moto[server]=={MOTO_VERSION}) \
         or set MESHSCOPE_MOTO_SERVER",
        path.display()
    );
    path
}

/// An HTTP/1.1 request without a body's signature (moto does not check them): status and
/// body.
pub(crate) async fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// moto on a free port, with the bucket made.
pub(crate) async fn start_moto(dir: &Path) -> (Proc, u16) {
    let port = free_port("127.0.0.1");
    let mut command = Command::new(moto_server());
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let mut proc = Proc::spawn("moto", &mut command, dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.assert_running();
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto did not start:\n{}",
            proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = request(port, "PUT", &format!("/{BUCKET}")).await;
    assert_eq!(status, 200, "making the bucket: {body}");
    (proc, port)
}

/// Every key under `prefix` in the bucket.
pub(crate) async fn keys(port: u16, prefix: &str) -> Vec<String> {
    let (status, body) = request(
        port,
        "GET",
        &format!("/{BUCKET}?list-type=2&prefix={prefix}&max-keys=10000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split("</Key>").next())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn s3_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "meshscope-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "meshscope-test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
}

/// A TCP relay on a free loopback port in front of `127.0.0.1:target`. While cut, it
/// closes every connection it had relayed and each new one as soon as it is accepted, as
/// a store that cannot be reached does.
pub(crate) struct Relay {
    pub(crate) port: u16,
    cut: Arc<AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub(crate) async fn start(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn({
            let cut = Arc::clone(&cut);
            let cuts = cuts.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let mut cut_now = cuts.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut_now.changed() => {}
                        }
                    });
                }
            }
        });
        Relay {
            port,
            cut,
            cuts,
            task,
        }
    }

    /// Makes the target unreachable through the relay: open connections are closed.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Relays again.
    pub(crate) fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
