//! The simulated mesh behind `meshscope serve --demo` (issue 6). Placeholder until the
//! simulator lands: `serve` calls `run_demo` with the collector's gRPC address and a
//! future that resolves when the demo must stop sending.

use std::future::Future;
use std::net::SocketAddr;

pub(crate) async fn run_demo(
    _grpc_addr: SocketAddr,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    anyhow::bail!("demo not available yet")
}
