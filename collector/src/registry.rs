//! What the collector has learned about the mesh: which proxies report and under which
//! names, which address each server listens on, and which client owns each connection.
//! This is the evidence that turns names and addresses into one service each.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use meshscope_storage::ServiceRef;
use parking_lot::{Mutex, RwLock};

/// Lookups here run several times per entry: a fast hash, not a DoS-proof one (keys are
/// bounded and come from our own parsing).
type Fast = foldhash::fast::RandomState;

use crate::config::AddressMapping;
use crate::error::{Error, Result};
use crate::identity::NodeIdentity;
use crate::names::{NamedService, SpiffeId};

/// A server's listening address, learned from its own inbound entries.
#[derive(Clone, Debug)]
pub struct Listener {
    pub service: ServiceRef,
    pub instance: String,
}

#[derive(Default)]
struct Known {
    /// Services that report for themselves.
    reporters: HashSet<ServiceRef, Fast>,
    /// `node.cluster` of each reporter (and learned cluster-name aliases) to its service.
    by_cluster: HashMap<String, ServiceRef, Fast>,
    /// Every reporter that carries each `node.cluster`: plain names such as `ingress` are
    /// often reused by meshes in other namespaces.
    reporter_clusters: HashMap<String, Vec<ServiceRef>, Fast>,
    /// (namespace, service account) of each reporter.
    by_service_account: HashMap<(String, String), ServiceRef, Fast>,
    /// Plain name to the reporters that carry it, for names without a namespace.
    by_name: HashMap<String, Vec<ServiceRef>, Fast>,
    listeners: HashMap<SocketAddr, Listener, Fast>,
}

/// Connections by their 4-tuple (client address, server address), with a bound and
/// oldest-first eviction: ports get reused, so the newest owner wins.
struct ConnectionBook {
    owners: HashMap<(SocketAddr, SocketAddr), (ServiceRef, u64), Fast>,
    /// Insertion order with the generation of each insert, so that eviction skips
    /// mappings that a newer insert refreshed.
    order: VecDeque<((SocketAddr, SocketAddr), u64)>,
    generation: u64,
    capacity: usize,
}

impl ConnectionBook {
    fn insert(&mut self, tuple: (SocketAddr, SocketAddr), owner: &ServiceRef) {
        if let Some((existing, _)) = self.owners.get(&tuple)
            && existing == owner
        {
            return;
        }
        self.generation += 1;
        self.owners.insert(tuple, (owner.clone(), self.generation));
        self.order.push_back((tuple, self.generation));
        while self.owners.len() > self.capacity || self.order.len() > 2 * self.capacity {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self.owners.get(&old).is_some_and(|(_, g)| *g == generation) {
                self.owners.remove(&old);
            }
        }
    }
}

enum Matcher {
    Net(IpNet),
    Ip(IpAddr),
    Socket(SocketAddr),
}

impl Matcher {
    fn parse(s: &str) -> Option<Matcher> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Some(Matcher::Net(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(Matcher::Ip(ip));
        }
        s.parse::<SocketAddr>().ok().map(Matcher::Socket)
    }

    /// Longer matches are more specific: a socket beats an IP beats a wide network.
    fn specificity(&self) -> u32 {
        match self {
            Matcher::Socket(_) => 1000,
            Matcher::Ip(_) => 500,
            Matcher::Net(n) => u32::from(n.prefix_len()),
        }
    }

    fn matches(&self, addr: SocketAddr) -> bool {
        match self {
            Matcher::Net(net) => net.contains(&addr.ip()),
            Matcher::Ip(ip) => *ip == addr.ip(),
            Matcher::Socket(s) => *s == addr,
        }
    }
}

/// What a cluster name in a header says about the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterLookup {
    Found(ServiceRef),
    /// Several reporters carry the name.
    Ambiguous,
    /// No reporter or alias carries it.
    Unknown,
}

pub fn parse_service_id(id: &str) -> ServiceRef {
    match id.split_once('/') {
        Some((ns, name)) => ServiceRef::service(ns, name),
        None => ServiceRef::service("", id),
    }
}

pub struct Registry {
    known: RwLock<Known>,
    connections: Mutex<ConnectionBook>,
    static_map: Vec<(Matcher, ServiceRef)>,
}

impl Registry {
    pub fn new(address_map: &[AddressMapping], connection_capacity: usize) -> Result<Registry> {
        let mut static_map = Vec::with_capacity(address_map.len());
        for mapping in address_map {
            let matcher = Matcher::parse(&mapping.matches).ok_or_else(|| {
                Error::Config(format!(
                    "address_map: `{}` is not a CIDR, IP or IP:port",
                    mapping.matches
                ))
            })?;
            static_map.push((matcher, parse_service_id(&mapping.service)));
        }
        static_map.sort_by_key(|(m, _)| std::cmp::Reverse(m.specificity()));
        Ok(Registry {
            known: RwLock::new(Known::default()),
            connections: Mutex::new(ConnectionBook {
                owners: HashMap::default(),
                order: VecDeque::new(),
                generation: 0,
                capacity: connection_capacity.max(1),
            }),
            static_map,
        })
    }

    /// Records a proxy that reports for itself (called once per stream).
    pub fn register_reporter(&self, id: &NodeIdentity) {
        {
            let known = self.known.read();
            if known.reporters.contains(&id.service)
                && (id.cluster.is_empty() || known.by_cluster.get(&id.cluster) == Some(&id.service))
            {
                return;
            }
        }
        let mut known = self.known.write();
        known.reporters.insert(id.service.clone());
        if !id.cluster.is_empty() {
            known
                .by_cluster
                .insert(id.cluster.clone(), id.service.clone());
            let owners = known
                .reporter_clusters
                .entry(id.cluster.clone())
                .or_default();
            if !owners.contains(&id.service) {
                owners.push(id.service.clone());
            }
        }
        if let Some(sa) = &id.service_account {
            known.by_service_account.insert(
                (id.service.namespace.clone(), sa.clone()),
                id.service.clone(),
            );
        }
        let same_name = known.by_name.entry(id.service.name.clone()).or_default();
        if !same_name.contains(&id.service) {
            same_name.push(id.service.clone());
        }
    }

    /// A name seen on the wire (cluster host, header) to the service it means: the
    /// reporter that carries it when one does, else the name as read.
    pub fn canonical(&self, named: &NamedService) -> ServiceRef {
        let known = self.known.read();
        match &named.namespace {
            Some(ns) => {
                let candidate = ServiceRef::service(ns.clone(), named.name.clone());
                if known.reporters.contains(&candidate) {
                    return candidate;
                }
                if let Some(alias) = known.by_cluster.get(&named.name)
                    && alias.namespace == *ns
                {
                    return alias.clone();
                }
                candidate
            }
            None => {
                if let Some(service) = known.by_cluster.get(&named.name) {
                    return service.clone();
                }
                if let Some([only]) = known.by_name.get(&named.name).map(Vec::as_slice) {
                    return only.clone();
                }
                ServiceRef::service("", named.name.clone())
            }
        }
    }

    /// The caller that a `node.cluster` in a header names, as seen by `callee`. When
    /// reporters in several namespaces carry that cluster name, the one in the callee's
    /// namespace is meant if there is exactly one; otherwise the header proves nothing.
    pub fn caller_by_cluster(&self, cluster: &str, callee: &ServiceRef) -> ClusterLookup {
        let known = self.known.read();
        match known.reporter_clusters.get(cluster).map(Vec::as_slice) {
            Some([only]) => ClusterLookup::Found(only.clone()),
            Some(several) => {
                let mut local = several.iter().filter(|s| s.namespace == callee.namespace);
                match (local.next(), local.next()) {
                    (Some(one), None) => ClusterLookup::Found(one.clone()),
                    _ => ClusterLookup::Ambiguous,
                }
            }
            None => match known.by_cluster.get(cluster) {
                Some(alias) => ClusterLookup::Found(alias.clone()),
                None => ClusterLookup::Unknown,
            },
        }
    }

    pub fn by_spiffe(&self, id: &SpiffeId) -> ServiceRef {
        let known = self.known.read();
        if let Some(service) = known
            .by_service_account
            .get(&(id.namespace.clone(), id.service_account.clone()))
        {
            return service.clone();
        }
        drop(known);
        self.canonical(&NamedService {
            namespace: Some(id.namespace.clone()),
            name: id.service_account.clone(),
        })
    }

    /// Remembers that a server reported an inbound entry on `addr`.
    pub fn learn_listener(&self, addr: SocketAddr, service: &ServiceRef, instance: &str) {
        {
            let known = self.known.read();
            if let Some(l) = known.listeners.get(&addr)
                && l.service == *service
                && l.instance == instance
            {
                return;
            }
        }
        let mut known = self.known.write();
        // Listener addresses are few (one or two per server instance), but a flood of
        // reporters must not grow this without bound.
        if known.listeners.len() >= 100_000 && !known.listeners.contains_key(&addr) {
            return;
        }
        known.listeners.insert(
            addr,
            Listener {
                service: service.clone(),
                instance: instance.to_string(),
            },
        );
    }

    pub fn listener(&self, addr: SocketAddr) -> Option<Listener> {
        self.known.read().listeners.get(&addr).cloned()
    }

    /// Learns that a caller's cluster name means the service that actually answered.
    pub fn learn_cluster_alias(&self, cluster: &str, service: &ServiceRef) {
        if cluster.is_empty() || self.known.read().by_cluster.get(cluster) == Some(service) {
            return;
        }
        let mut known = self.known.write();
        if known.by_cluster.len() < 100_000 {
            known
                .by_cluster
                .insert(cluster.to_string(), service.clone());
        }
    }

    pub fn cluster_alias(&self, cluster: &str) -> Option<ServiceRef> {
        self.known.read().by_cluster.get(cluster).cloned()
    }

    /// Records the client side of a connection: `local` is the client's own address.
    pub fn learn_connection(&self, local: SocketAddr, remote: SocketAddr, client: &ServiceRef) {
        self.connections.lock().insert((local, remote), client);
    }

    /// The client that owns the connection `peer -> local`, seen from the server.
    pub fn connection_owner(&self, peer: SocketAddr, local: SocketAddr) -> Option<ServiceRef> {
        self.connections
            .lock()
            .owners
            .get(&(peer, local))
            .map(|(s, _)| s.clone())
    }

    pub fn static_lookup(&self, addr: SocketAddr) -> Option<ServiceRef> {
        self.static_map
            .iter()
            .find(|(m, _)| m.matches(addr))
            .map(|(_, s)| s.clone())
    }

    pub fn is_reporter(&self, service: &ServiceRef) -> bool {
        self.known.read().reporters.contains(service)
    }
}
