//! The simulated mesh: services in layers with fan-out, instances, endpoints, per-edge
//! latency and error rates, an ingress, a service without a sidecar and a TCP database.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const NAMES: [&str; 16] = [
    "frontend",
    "catalog",
    "cart",
    "checkout",
    "users",
    "inventory",
    "recommendations",
    "reviews",
    "search",
    "auth",
    "shipping",
    "pricing",
    "orders",
    "notifications",
    "ratings",
    "images",
];

const PATHS: [&str; 8] = [
    "/",
    "/api/v1/items/{n}",
    "/api/v1/items",
    "/api/v1/users/{n}/profile",
    "/health",
    "/api/v1/orders/{uuid}",
    "/api/v1/search",
    "/static/app.js",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The edge proxy: the server of outside clients, the client of the first tier.
    Ingress,
    /// A service with a sidecar: both sides of its calls report.
    Meshed,
    /// A service without a sidecar: only its callers report.
    Bare,
    /// A TCP database without a sidecar.
    Database,
}

#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) port: u16,
    /// Instance addresses; each instance of a meshed service is its own proxy.
    pub(crate) instances: Vec<[u8; 4]>,
    pub(crate) paths: Vec<String>,
    /// Median latency of a call to this service, in ms.
    pub(crate) latency_ms: f64,
    pub(crate) error_rate: f64,
}

#[derive(Debug)]
pub(crate) struct Mesh {
    pub(crate) namespace: String,
    pub(crate) services: Vec<Service>,
    /// `calls[i]` lists the services that service `i` calls, with the chance of each call.
    pub(crate) calls: Vec<Vec<(usize, f64)>>,
}

/// How big a mesh to model, past its number of services.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Shape {
    /// Services each meshed service calls (when it has that many after it); by default one
    /// to three.
    pub(crate) fan_out: Option<usize>,
    /// Distinct endpoints per service; by default a few of a handful of typical paths.
    pub(crate) endpoints: Option<usize>,
}

impl Mesh {
    /// `size` services in all (at least 5): an ingress, layers of meshed services, one
    /// service without a sidecar and a database.
    pub(crate) fn build(size: usize, namespace: &str, names: &[String], seed: u64) -> Mesh {
        Mesh::build_shaped(size, namespace, names, seed, Shape::default())
    }

    pub(crate) fn build_shaped(
        size: usize,
        namespace: &str,
        names: &[String],
        seed: u64,
        shape: Shape,
    ) -> Mesh {
        let size = size.max(5);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut services = Vec::with_capacity(size);
        let mut add = |name: String, kind: Kind, rng: &mut SmallRng| {
            let index = services.len();
            let instances = match kind {
                Kind::Ingress | Kind::Bare | Kind::Database => 1,
                Kind::Meshed => rng.random_range(1..=3),
            };
            services.push(Service {
                name,
                kind,
                port: match kind {
                    Kind::Database => 5432,
                    _ => 8080,
                },
                // 10.1.x.y for the first 256 services as before, then 10.2.x.y and on.
                instances: (0..instances)
                    .map(|i| [10, 1 + (index >> 8) as u8, index as u8, 10 + i as u8])
                    .collect(),
                paths: match shape.endpoints {
                    Some(n) => (0..n.max(1))
                        .map(|k| format!("/api/v1/resource{k}/{{n}}"))
                        .collect(),
                    None => PATHS
                        .iter()
                        .copied()
                        .filter(|_| rng.random_bool(0.6))
                        .chain(std::iter::once("/"))
                        .map(String::from)
                        .collect(),
                },
                latency_ms: rng.random_range(2.0..40.0),
                error_rate: if rng.random_bool(0.3) {
                    rng.random_range(0.01..0.08)
                } else {
                    0.0
                },
            });
        };
        add("ingress".into(), Kind::Ingress, &mut rng);
        let meshed = size - 3;
        for i in 0..meshed {
            let name = match (names.get(i), NAMES.get(i)) {
                (Some(n), _) => n.clone(),
                (None, Some(n)) => n.to_string(),
                (None, None) => format!("svc-{i}"),
            };
            add(name, Kind::Meshed, &mut rng);
        }
        add("payments".into(), Kind::Bare, &mut rng);
        add("db".into(), Kind::Database, &mut rng);

        // Layers: the ingress calls the first meshed service; each meshed service calls a
        // few of the ones after it, so the graph flows one way.
        let mut calls = vec![Vec::new(); services.len()];
        calls[0].push((1, 1.0));
        let bare = services.len() - 2;
        let db = services.len() - 1;
        for i in 1..=meshed {
            let later: Vec<usize> = (i + 1..=meshed).collect();
            let fan_out = shape
                .fan_out
                .unwrap_or_else(|| rng.random_range(1..=3))
                .min(later.len());
            for k in 0..fan_out {
                let pick = later[(k * 7 + i) % later.len()];
                if !calls[i].iter().any(|(t, _)| *t == pick) {
                    calls[i].push((pick, rng.random_range(0.3..1.0)));
                }
            }
        }
        // Every service is called by someone earlier, so every one shows on the map.
        for i in 2..=meshed {
            if !calls.iter().any(|c| c.iter().any(|(t, _)| *t == i)) {
                let caller = rng.random_range(1..i);
                calls[caller].push((i, rng.random_range(0.3..1.0)));
            }
        }
        // Somebody pays and somebody stores.
        calls[1].push((bare, 0.3));
        calls[meshed].push((db, 0.8));
        calls[1].push((db, 0.2));
        Mesh {
            namespace: namespace.to_string(),
            services,
            calls,
        }
    }

    pub(crate) fn has_sidecar(&self, index: usize) -> bool {
        matches!(self.services[index].kind, Kind::Ingress | Kind::Meshed)
    }
}
