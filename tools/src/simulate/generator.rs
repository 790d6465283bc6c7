//! The traffic of a modelled mesh as Envoy would log it: each call on each hop becomes
//! access-log entries on the proxies that see it, batched per proxy and log, and counted in
//! the truth of what was sent.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use meshscope_proto::pb::envoy::data::accesslog::v3::{HttpAccessLogEntry, TcpAccessLogEntry};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::envoy::{self, Hop, Proxy};
use super::mesh::{Kind, Mesh};
use super::truth::Truth;

/// Which of a proxy's access logs an entry goes to; each is its own gRPC stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Log {
    Ingress,
    InboundHttp,
    OutboundHttp,
    OutboundTcp,
}

/// A proxy: a service's instance with a sidecar (or the ingress).
pub(super) type ProxyKey = (usize, usize);

/// The entries one log holds since it was last sent.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) http: Vec<HttpAccessLogEntry>,
    pub(super) tcp: Vec<TcpAccessLogEntry>,
}

/// Makes a mesh's calls into batched access-log entries, from a seed.
pub(super) struct Generator {
    mesh: Mesh,
    rng: SmallRng,
    ports: u16,
    pub(super) batches: BTreeMap<(ProxyKey, Log), Batch>,
    pub(super) truth: Truth,
    /// Whether a call goes on to the callee's own callees (a request's whole tree), or
    /// stops at one hop (a load spread evenly over every edge of a big mesh).
    follow_calls: bool,
    /// Every this many calls from one sidecar to another, the callee answers the first
    /// attempt 503 and the caller's proxy retries once; none when `None`.
    retry_every: Option<u64>,
    /// Calls from one sidecar to another so far, counted for `retry_every`.
    sidecar_calls: u64,
    /// Whether every call of one request's tree carries the ingress request's id, as
    /// applications that pass `x-request-id` on make it; otherwise each hop has its own.
    propagate_request_ids: bool,
}

impl Generator {
    pub(super) fn new(mesh: Mesh, seed: u64, follow_calls: bool) -> Generator {
        Generator {
            mesh,
            rng: SmallRng::seed_from_u64(seed),
            ports: 20_000,
            batches: BTreeMap::new(),
            truth: Truth::default(),
            follow_calls,
            retry_every: None,
            sidecar_calls: 0,
            propagate_request_ids: false,
        }
    }

    /// Makes the applications pass the request id on: one id for a request's whole tree.
    pub(super) fn propagate_request_ids(mut self, propagate: bool) -> Generator {
        self.propagate_request_ids = propagate;
        self
    }

    /// Makes every `every`-th call from one sidecar to another a retried one: its first
    /// attempt is answered 503 and the caller's proxy tries once more (`every` 0: never).
    pub(super) fn retry_every(mut self, every: u64) -> Generator {
        self.retry_every = (every > 0).then_some(every);
        self
    }

    fn id(&self, service: usize) -> String {
        format!(
            "{}/{}",
            self.mesh.namespace, self.mesh.services[service].name
        )
    }

    fn ephemeral(&mut self) -> u16 {
        self.ports = if self.ports >= 60_000 {
            20_000
        } else {
            self.ports + 1
        };
        self.ports
    }

    fn latency(&mut self, median_ms: f64) -> f64 {
        // Log-normal around the median, and a slow tail of 1%.
        let noise: f64 = (self.rng.random::<f64>() - 0.5) * 1.2;
        let slow = if self.rng.random_bool(0.01) {
            10.0
        } else {
            1.0
        };
        (median_ms * noise.exp() * slow).max(0.1)
    }

    /// One request entering at the ingress, and every call it causes.
    pub(super) fn request(&mut self, now: SystemTime, n: u64) {
        self.truth.requests += 1;
        let client_ip = [203, 0, 113, (n % 200) as u8 + 1];
        let client_port = self.ephemeral();
        self.hop(now, n, None, Some((client_ip, client_port)), 0, 1);
    }

    /// One call on an edge picked at random: every edge of a big mesh gets traffic
    /// without a request walking the whole graph.
    pub(super) fn edge_request(&mut self, now: SystemTime, n: u64) {
        let callers: Vec<usize> = (0..self.mesh.calls.len())
            .filter(|i| !self.mesh.calls[*i].is_empty())
            .collect();
        let caller = callers[self.rng.random_range(0..callers.len())];
        if caller == 0 {
            self.request(now, n);
            return;
        }
        self.truth.requests += 1;
        let target =
            self.mesh.calls[caller][self.rng.random_range(0..self.mesh.calls[caller].len())].0;
        let instance = self
            .rng
            .random_range(0..self.mesh.services[caller].instances.len());
        self.hop(now, n, Some((caller, instance)), None, caller, target);
    }

    /// The call from `caller` (a proxy, or the outside when `None`) to service `target`.
    fn hop(
        &mut self,
        now: SystemTime,
        n: u64,
        caller: Option<ProxyKey>,
        outside: Option<([u8; 4], u16)>,
        caller_service: usize,
        target: usize,
    ) {
        let target_kind = self.mesh.services[target].kind;
        let instance = self
            .rng
            .random_range(0..self.mesh.services[target].instances.len());
        let target_ip = self.mesh.services[target].instances[instance];
        let port = self.mesh.services[target].port;
        let paths = &self.mesh.services[target].paths;
        let template = paths[self.rng.random_range(0..paths.len())].clone();
        let path = template
            .replace("{n}", &self.rng.random_range(1..100_000u32).to_string())
            .replace(
                "{uuid}",
                &format!("{:08x}-4e29-41d4-a716-{:012x}", n as u32, n),
            );
        let median = self.mesh.services[target].latency_ms;
        let server_ms = self.latency(median);
        let error = self.rng.random_bool(self.mesh.services[target].error_rate);
        let status = if error { 500 } else { 200 };
        let caller_proxy = caller.unwrap_or((caller_service, 0));
        let caller_ip = self.mesh.services[caller_proxy.0].instances[caller_proxy.1];
        let caller_name = self.mesh.services[caller_proxy.0].name.clone();
        let host = format!(
            "{}.{}.svc.cluster.local",
            self.mesh.services[target].name, self.mesh.namespace
        );
        let upstream_local = (caller_ip, self.ephemeral());
        let request_bytes = self.rng.random_range(200..800);
        let response_bytes = self.rng.random_range(300..5_000);

        if target_kind == Kind::Database {
            let hop = Hop {
                start: now,
                latency_ms: server_ms,
                cluster: format!("outbound|{port}||{host}"),
                downstream_remote: (caller_ip, self.ephemeral()),
                downstream_local: (target_ip, port),
                upstream_local,
                upstream_remote: (target_ip, port),
                caller_cluster: None,
                peer_spiffe: None,
                method: 0,
                path: "",
                status: 0,
                request_bytes,
                response_bytes,
            };
            self.push_tcp(caller_proxy, Log::OutboundTcp, envoy::tcp_entry(&hop));
            let source = self.id(caller_proxy.0);
            let target_id = self.id(target);
            self.truth.record(&source, &target_id, "tcp", false, false);
            return;
        }

        let request_id = if self.propagate_request_ids {
            format!("sim-{n}")
        } else {
            format!("sim-{n}-{target}")
        };
        let meshed = self.mesh.has_sidecar(target);
        let retried = match (outside, self.retry_every) {
            (None, Some(every)) if meshed => {
                self.sidecar_calls += 1;
                self.sidecar_calls.is_multiple_of(every)
            }
            _ => false,
        };
        // A retried call's first attempt fails fast; the retry starts once it has.
        let failed_ms = if retried { self.latency(1.0) } else { 0.0 };
        // The client side: the ingress (a gateway) or the caller's sidecar.
        let client_hop = Hop {
            start: now,
            latency_ms: failed_ms + server_ms + 0.4,
            cluster: format!("outbound|{port}||{host}"),
            downstream_remote: outside.unwrap_or((caller_ip, 0)),
            downstream_local: if outside.is_some() {
                (caller_ip, 80)
            } else {
                (target_ip, port)
            },
            upstream_local,
            upstream_remote: (target_ip, port),
            caller_cluster: Some(&caller_name),
            peer_spiffe: None,
            method: 1,
            path: &path,
            status,
            request_bytes,
            response_bytes,
        };
        let (log, source) = if outside.is_some() {
            let ingress = self.id(caller_proxy.0);
            self.truth.record("external", &ingress, "http", true, error);
            (Log::Ingress, ingress)
        } else {
            (Log::OutboundHttp, self.id(caller_proxy.0))
        };
        let mut client_entry = envoy::http_entry(&client_hop, &request_id);
        if retried {
            envoy::set_attempts(&mut client_entry, 2);
        }
        self.push_http(caller_proxy, log, client_entry);
        let target_id = self.id(target);
        self.truth.record_attempts(
            &source,
            &target_id,
            "http",
            meshed,
            error,
            u64::from(retried),
        );
        if !meshed {
            return;
        }
        let retry_start = now + Duration::from_secs_f64(failed_ms / 1000.0);
        let server_hop = Hop {
            start: retry_start,
            latency_ms: server_ms,
            cluster: format!("inbound|{port}||"),
            downstream_remote: upstream_local,
            downstream_local: (target_ip, port),
            upstream_local: ([127, 0, 0, 6], self.ephemeral()),
            upstream_remote: ([127, 0, 0, 1], port),
            caller_cluster: Some(&caller_name),
            peer_spiffe: Some(format!(
                "spiffe://cluster.local/ns/{}/sa/{}",
                self.mesh.namespace, caller_name
            )),
            method: 1,
            path: &path,
            status,
            request_bytes,
            response_bytes,
        };
        if retried {
            // The callee's proxy logs the failed first attempt with the same request id.
            let failed_hop = Hop {
                start: now,
                latency_ms: failed_ms,
                status: 503,
                response_bytes: 120,
                downstream_remote: upstream_local,
                upstream_local: ([127, 0, 0, 6], self.ephemeral()),
                peer_spiffe: server_hop.peer_spiffe.clone(),
                cluster: server_hop.cluster.clone(),
                ..server_hop
            };
            self.push_http(
                (target, instance),
                Log::InboundHttp,
                envoy::http_entry(&failed_hop, &request_id),
            );
        }
        self.push_http(
            (target, instance),
            Log::InboundHttp,
            envoy::http_entry(&server_hop, &request_id),
        );
        if !self.follow_calls {
            return;
        }
        let calls = self.mesh.calls[target].clone();
        for (next, chance) in calls {
            if self.rng.random_bool(chance) {
                self.hop(now, n, Some((target, instance)), None, target, next);
            }
        }
    }

    fn push_http(&mut self, proxy: ProxyKey, log: Log, entry: HttpAccessLogEntry) {
        self.truth.entries += 1;
        self.batches
            .entry((proxy, log))
            .or_default()
            .http
            .push(entry);
    }

    fn push_tcp(&mut self, proxy: ProxyKey, log: Log, entry: TcpAccessLogEntry) {
        self.truth.entries += 1;
        self.batches
            .entry((proxy, log))
            .or_default()
            .tcp
            .push(entry);
    }

    /// The proxy of a service instance, as it names itself to the collector.
    pub(super) fn proxy(&self, (service, instance): ProxyKey) -> Proxy {
        let s = &self.mesh.services[service];
        Proxy {
            node_id: format!("{}-v1-{instance}", s.name),
            cluster: s.name.clone(),
            namespace: self.mesh.namespace.clone(),
            pod: format!("{}-7d9f-{instance}", s.name),
            ip: s.instances[instance],
        }
    }
}

/// The log name Envoy would report for `log` of `service`.
pub(super) fn log_name(service: &str, log: Log) -> String {
    match log {
        Log::Ingress => format!("{service}_http"),
        Log::InboundHttp => format!("{service}_inbound_http"),
        Log::OutboundHttp => format!("{service}_outbound_http"),
        Log::OutboundTcp => format!("{service}_outbound_tcp"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every third call between two sidecars is retried once: the caller's proxy logs one
    /// entry with two attempts, the callee's proxy both attempts, the first answered 503
    /// (the mesh's own errors are 500s); the truth counts the retries on the edge.
    #[test]
    fn retried_calls_are_logged_as_envoy_logs_a_retry() {
        const REQUESTS: u64 = 60;
        let mesh = Mesh::build(6, "retry", &[], 7);
        let mut generator = Generator::new(mesh, 7, true).retry_every(3);
        let now = SystemTime::now();
        for n in 0..REQUESTS {
            generator.request(now, n);
        }
        let (mut retried, mut inbound, mut failed_first) = (0u64, 0u64, 0u64);
        for ((_, log), batch) in &generator.batches {
            for entry in &batch.http {
                let common = entry.common_properties.as_ref().unwrap();
                let code = entry.response.as_ref().unwrap().response_code.unwrap();
                match log {
                    Log::OutboundHttp => {
                        retried += u64::from(common.upstream_request_attempt_count == 2)
                    }
                    Log::InboundHttp => {
                        inbound += 1;
                        failed_first += u64::from(code.value == 503);
                    }
                    _ => assert_eq!(common.upstream_request_attempt_count, 1),
                }
            }
        }
        // Each request enters through the ingress (its call to the first service is not
        // between sidecars); every other inbound entry is a call from a sidecar, or the
        // failed first attempt of one.
        let sidecar_calls = inbound - REQUESTS - failed_first;
        assert!(
            sidecar_calls >= 30,
            "{sidecar_calls} calls between sidecars"
        );
        assert_eq!(retried, sidecar_calls / 3);
        assert_eq!(failed_first, retried);
        let expected = serde_json::to_value(generator.truth.expected()).unwrap();
        let edges = expected["edges"].as_array().unwrap();
        let retries: u64 = edges.iter().map(|e| e["retries"].as_u64().unwrap()).sum();
        assert_eq!(retries, retried);
        for e in edges.iter().filter(|e| e["retries"].as_u64() > Some(0)) {
            let field = |name: &str| e[name].as_u64().unwrap();
            assert_eq!(field("calls"), field("client_calls") + field("retries"));
            assert_eq!(field("errors"), field("client_errors") + field("retries"));
        }
    }
}
