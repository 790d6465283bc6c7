//! Child `meshscope` processes for the benchmark: started from this same executable on free
//! loopback ports, waited for until they listen, and stopped with SIGINT so that they flush
//! and exit as they would in production.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A free port on the loopback address, found by binding port 0.
pub(crate) fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("finding a free port"))?;
    listener
        .local_addr()
        .map_err(Error::io("finding a free port"))
}

/// Starts `exe` with `args`, its output on our stderr and its logs at `warn`.
pub(crate) fn spawn(exe: &Path, args: &[&str]) -> Result<Child> {
    Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::io(format!("starting meshscope {}", args[0])))
}

/// A `meshscope serve` over a fresh data directory, which lives as long as the handle;
/// returns the child, its gRPC and HTTP addresses, and the directory.
pub(crate) fn spawn_serve(
    exe: &Path,
) -> Result<(Child, SocketAddr, SocketAddr, tempfile::TempDir)> {
    let grpc = free_port()?;
    let http = free_port()?;
    let data = tempfile::tempdir().map_err(Error::io("temporary data directory"))?;
    let data_dir = data.path().display().to_string();
    let serve_args = [
        "serve",
        "--grpc-addr",
        &grpc.to_string(),
        "--http-addr",
        &http.to_string(),
        "--data-dir",
        &data_dir,
    ];
    let child = spawn(exe, &serve_args)?;
    Ok((child, grpc, http, data))
}

/// Waits until something accepts connections on `addr`, at most 30 s; fails early when the
/// child exits first.
pub(crate) async fn wait_for_port(addr: SocketAddr, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child
            .try_wait()
            .map_err(Error::io("waiting for the child"))?
        {
            return Err(Error::Child(format!(
                "the child process exited before listening: {status}"
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Child(format!(
                "nothing listens on {addr} after 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the child with SIGINT and waits for it, at most 30 s; then kills it.
pub(crate) fn stop(mut child: Child) {
    // SIGINT lets meshscope flush and exit as it would in production.
    // SAFETY: kill(2) with a pid we own and a valid signal has no memory effects.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
