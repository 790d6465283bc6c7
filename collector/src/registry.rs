//! What the collector has learned about the mesh: which proxies report and under which
//! names, which address each server listens on, and which client owns each connection.
//! This is the evidence that turns names and addresses into one service each.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;
use meshscope_storage::ServiceRef;
use parking_lot::{Mutex, RwLock};

use crate::config::AddressMapping;
use crate::error::{Error, Result};
use crate::hash_state::FoldHashState;
use crate::identity::NodeIdentity;
use crate::learned_since::LearnedSince;
use crate::names::{NamedService, SpiffeId};

/// A server's listening address, learned from its own inbound entries.
#[derive(Clone, Debug)]
pub struct Listener {
    pub service: ServiceRef,
    pub instance: String,
}

#[derive(Clone, Default)]
struct Known {
    /// Services that report for themselves.
    reporters: HashSet<ServiceRef, FoldHashState>,
    /// `node.cluster` of each reporter (and learned cluster-name aliases) to its service.
    by_cluster: HashMap<String, ServiceRef, FoldHashState>,
    /// Every reporter that carries each `node.cluster`: plain names such as `ingress` are
    /// often reused by meshes in other namespaces.
    reporter_clusters: HashMap<String, Vec<ServiceRef>, FoldHashState>,
    /// (namespace, service account) of each reporter.
    by_service_account: HashMap<(String, String), ServiceRef, FoldHashState>,
    /// Plain name to the reporters that carry it, for names without a namespace.
    by_name: HashMap<String, Vec<ServiceRef>, FoldHashState>,
    listeners: HashMap<SocketAddr, Listener, FoldHashState>,
}

type Tuple = (SocketAddr, SocketAddr);

/// Connections by their 4-tuple (client address, server address), bounded without an
/// eviction queue: inserts go to the newer of two generations, and when it is full the
/// older one is dropped and the newer takes its place. A lookup tries the newer first, so
/// when a port is reused the newest owner wins; a connection still in use is inserted again
/// by its client's entries and so outlives any number of generations. Owners are shared:
/// a mesh has a few thousand clients and hundreds of thousands of connections.
struct ConnectionBook {
    newer: HashMap<Tuple, Arc<ServiceRef>, FoldHashState>,
    older: HashMap<Tuple, Arc<ServiceRef>, FoldHashState>,
    owners: HashMap<ServiceRef, Arc<ServiceRef>, FoldHashState>,
    per_generation: usize,
    /// What was learned since the parked entries were last retried.
    learned: LearnedSince,
}

impl ConnectionBook {
    /// Holds at least `capacity / 2` and at most `capacity` connections.
    fn new(capacity: usize) -> ConnectionBook {
        ConnectionBook {
            newer: HashMap::default(),
            older: HashMap::default(),
            owners: HashMap::default(),
            per_generation: (capacity / 2).max(1),
            learned: LearnedSince::default(),
        }
    }

    fn insert(&mut self, tuple: Tuple, owner: &ServiceRef) {
        if self.newer.get(&tuple).is_some_and(|o| **o == *owner) {
            return;
        }
        // Found in the older generation under the same owner, the answer stays the same.
        if self.older.get(&tuple).is_none_or(|o| **o != *owner) {
            self.learned.connection(tuple);
        }
        if self.newer.len() >= self.per_generation {
            self.older = std::mem::take(&mut self.newer);
            // Owners no connection names any more are let go with the generation.
            self.owners
                .retain(|_, shared| Arc::strong_count(shared) > 1);
        }
        let shared = match self.owners.get(owner) {
            Some(shared) => shared.clone(),
            None => {
                let shared = Arc::new(owner.clone());
                self.owners.insert(owner.clone(), shared.clone());
                shared
            }
        };
        self.newer.insert(tuple, shared);
    }

    fn get(&self, tuple: &Tuple) -> Option<&ServiceRef> {
        self.newer
            .get(tuple)
            .or_else(|| self.older.get(tuple))
            .map(|owner| &**owner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
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
    /// Set whenever `known` changes; taken by [`Registry::take_learned`].
    names_changed: AtomicBool,
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
            names_changed: AtomicBool::new(false),
            connections: Mutex::new(ConnectionBook::new(connection_capacity)),
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
        self.names_changed.store(true, Ordering::Relaxed);
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
        self.names_changed.store(true, Ordering::Relaxed);
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
            self.names_changed.store(true, Ordering::Relaxed);
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
        self.connections.lock().get(&(peer, local)).cloned()
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

    /// What was learned since the last call (since the start, the first time): whether
    /// any name changed, and the connections newly tied to a client. See
    /// [`crate::learned_since`].
    pub fn take_learned(&self) -> LearnedSince {
        let mut learned = std::mem::take(&mut self.connections.lock().learned);
        learned.names_changed = self.names_changed.swap(false, Ordering::Relaxed);
        learned
    }
}

/// What the registry has learned, copied under its locks for a checkpoint (maps cloned,
/// owners shared), put in the checkpoint's form outside them.
pub struct LearnedCopy {
    known: Known,
    newer: HashMap<Tuple, Arc<ServiceRef>, FoldHashState>,
    older: HashMap<Tuple, Arc<ServiceRef>, FoldHashState>,
}

/// What the registry has learned, as a checkpoint keeps it. Connections name their
/// owner by its place in `owners`; the older generation comes first.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LearnedState {
    reporters: Vec<ServiceRef>,
    by_cluster: Vec<(String, ServiceRef)>,
    reporter_clusters: Vec<(String, Vec<ServiceRef>)>,
    by_service_account: Vec<((String, String), ServiceRef)>,
    by_name: Vec<(String, Vec<ServiceRef>)>,
    listeners: Vec<(SocketAddr, ServiceRef, String)>,
    owners: Vec<ServiceRef>,
    older: Vec<(SocketAddr, SocketAddr, u32)>,
    newer: Vec<(SocketAddr, SocketAddr, u32)>,
}

impl Registry {
    /// A copy of what has been learned (the static address map is configuration).
    pub fn copy_learned(&self) -> LearnedCopy {
        let known = self.known.read().clone();
        let connections = self.connections.lock();
        LearnedCopy {
            known,
            newer: connections.newer.clone(),
            older: connections.older.clone(),
        }
    }

    /// Learns again what `state` holds, over what is known (nothing, at start).
    pub fn restore_learned(&self, state: LearnedState) {
        let mut known = self.known.write();
        self.names_changed.store(true, Ordering::Relaxed);
        known.reporters.extend(state.reporters);
        known.by_cluster.extend(state.by_cluster);
        known.reporter_clusters.extend(state.reporter_clusters);
        known.by_service_account.extend(state.by_service_account);
        known.by_name.extend(state.by_name);
        known.listeners.extend(
            state
                .listeners
                .into_iter()
                .map(|(addr, service, instance)| (addr, Listener { service, instance })),
        );
        drop(known);
        let mut book = self.connections.lock();
        for (client, server, owner) in state.older.into_iter().chain(state.newer) {
            if let Some(owner) = state.owners.get(owner as usize) {
                book.insert((client, server), owner);
            }
        }
    }
}

impl LearnedCopy {
    /// The copy in the checkpoint's form.
    pub fn into_state(self) -> LearnedState {
        let Known {
            reporters,
            by_cluster,
            reporter_clusters,
            by_service_account,
            by_name,
            listeners,
        } = self.known;
        let mut owners: Vec<ServiceRef> = Vec::new();
        let mut owner_ids: HashMap<ServiceRef, u32, FoldHashState> = HashMap::default();
        let mut numbered = |map: HashMap<Tuple, Arc<ServiceRef>, FoldHashState>| {
            map.into_iter()
                .map(|((client, server), owner)| {
                    let id = *owner_ids.entry((*owner).clone()).or_insert_with(|| {
                        owners.push((*owner).clone());
                        owners.len() as u32 - 1
                    });
                    (client, server, id)
                })
                .collect::<Vec<_>>()
        };
        let older = numbered(self.older);
        let newer = numbered(self.newer);
        LearnedState {
            reporters: reporters.into_iter().collect(),
            by_cluster: by_cluster.into_iter().collect(),
            reporter_clusters: reporter_clusters.into_iter().collect(),
            by_service_account: by_service_account.into_iter().collect(),
            by_name: by_name.into_iter().collect(),
            listeners: listeners
                .into_iter()
                .map(|(addr, l)| (addr, l.service, l.instance))
                .collect(),
            owners,
            older,
            newer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(client_port: u16) -> Tuple {
        (
            SocketAddr::from(([10, 0, 0, 1], client_port)),
            SocketAddr::from(([10, 0, 0, 2], 8080)),
        )
    }

    #[test]
    fn the_connection_book_stays_bounded_and_keeps_what_is_in_use() {
        let a = ServiceRef::service("shop", "a");
        let b = ServiceRef::service("shop", "b");
        let mut book = ConnectionBook::new(100);
        book.insert(tuple(1), &a);
        for port in 2..1_000 {
            book.insert(tuple(port), &b);
            // The client keeps using its connection: its entries learn it again.
            book.insert(tuple(1), &a);
            assert!(book.len() <= 100, "{} connections kept", book.len());
        }
        assert_eq!(book.get(&tuple(1)), Some(&a));
        assert_eq!(book.get(&tuple(999)), Some(&b));
        assert_eq!(book.get(&tuple(2)), None, "an idle connection is forgotten");
        assert!(book.len() >= 50);
        assert_eq!(book.owners.len(), 2, "owners are shared, not copied");
    }

    #[test]
    fn what_was_learned_is_learned_again_from_a_checkpoint() {
        let registry = Registry::new(&[], 100).unwrap();
        let a = ServiceRef::service("shop", "a");
        let b = ServiceRef::service("shop", "b");
        let identity = NodeIdentity {
            service: a.clone(),
            instance: "a-1".into(),
            node_id: "a-1".into(),
            cluster: "a".into(),
            service_account: Some("a-sa".into()),
            version: None,
            proxy_version: String::new(),
            instance_ips: Vec::new(),
            is_gateway: false,
        };
        registry.register_reporter(&identity);
        registry.learn_listener("10.0.0.2:8080".parse().unwrap(), &b, "b-1");
        registry.learn_cluster_alias("b-alias", &b);
        registry.learn_connection(tuple(1).0, tuple(1).1, &a);
        registry.learn_connection(tuple(2).0, tuple(2).1, &b);

        let state = registry.copy_learned().into_state();
        let mut bytes = Vec::new();
        ciborium::into_writer(&state, &mut bytes).unwrap();
        let fresh = Registry::new(&[], 100).unwrap();
        fresh.restore_learned(ciborium::from_reader(bytes.as_slice()).unwrap());

        assert!(fresh.is_reporter(&a));
        assert_eq!(fresh.cluster_alias("a"), Some(a.clone()));
        assert_eq!(fresh.cluster_alias("b-alias"), Some(b.clone()));
        assert_eq!(
            fresh.caller_by_cluster("a", &b),
            ClusterLookup::Found(a.clone())
        );
        let listener = fresh.listener("10.0.0.2:8080".parse().unwrap()).unwrap();
        assert_eq!(
            (listener.service, listener.instance.as_str()),
            (b.clone(), "b-1")
        );
        assert_eq!(fresh.connection_owner(tuple(1).0, tuple(1).1), Some(a));
        assert_eq!(fresh.connection_owner(tuple(2).0, tuple(2).1), Some(b));
        assert_eq!(fresh.connection_owner(tuple(3).0, tuple(3).1), None);
    }

    #[test]
    fn a_reused_port_belongs_to_its_newest_owner() {
        let a = ServiceRef::service("shop", "a");
        let b = ServiceRef::service("shop", "b");
        let mut book = ConnectionBook::new(4);
        book.insert(tuple(1), &a);
        book.insert(tuple(2), &a);
        // tuple(1) is now in the older generation; b reuses its port.
        book.insert(tuple(1), &b);
        assert_eq!(book.get(&tuple(1)), Some(&b));
        book.insert(tuple(3), &a);
        book.insert(tuple(4), &a);
        assert_eq!(book.get(&tuple(1)), Some(&b));
        book.insert(tuple(5), &a);
        book.insert(tuple(6), &a);
        assert_eq!(book.get(&tuple(1)), None);
        assert_eq!(
            book.owners.len(),
            1,
            "b owns nothing any more and is let go"
        );
    }
}
