//! Name interning: while a minute is unclosed its rows are keyed by small numbers, so
//! adding an entry allocates nothing and hashes a few integers; the names come back when a
//! minute is closed or read. Each kind of name is capped, and an overflow bucket takes the
//! rest. Numbers already handed out are also kept in a per-thread cache, which spares the
//! shared lock on nearly every lookup.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use meshscope_storage::KeyRef;
use meshscope_storage::{RowKey, ServiceRef};
use parking_lot::{RwLock, RwLockReadGuard};

use super::slot::{ServiceId, Slot};
use crate::hash_state::FoldHashState;

/// The name that stands for every name past a cap.
pub const OVERFLOW: &str = "{overflow}";

/// The overflow node's id: interned first.
const OVERFLOW_SERVICE: ServiceId = 0;

/// Whether a key was folded into an overflow bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capped {
    Kept,
    Overflow,
}

/// Strings of one kind under one service, each with its number.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32, FoldHashState>,
    names: Vec<String>,
}

impl Interner {
    /// The name's number: itself while under the cap, else the overflow bucket's.
    fn intern(&mut self, name: &str, max: usize) -> (u32, Capped) {
        if let Some(&id) = self.ids.get(name) {
            return (id, Capped::Kept);
        }
        let (name, capped) = if self.ids.len() < max {
            (name, Capped::Kept)
        } else {
            (OVERFLOW, Capped::Overflow)
        };
        if let Some(&id) = self.ids.get(name) {
            return (id, capped);
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        (id, capped)
    }

    /// The name's number if it has one.
    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }
}

/// Every name interned so far: services, and each service's instances and endpoints.
pub(super) struct NameTable {
    ids: HashMap<ServiceRef, ServiceId, FoldHashState>,
    services: Vec<ServiceRef>,
    instances: Vec<Interner>,
    endpoints: Vec<Interner>,
    /// Real services interned, not counting the overflow node.
    real_services: usize,
}

impl NameTable {
    fn new() -> NameTable {
        let mut names = NameTable {
            ids: HashMap::default(),
            services: Vec::new(),
            instances: Vec::new(),
            endpoints: Vec::new(),
            real_services: 0,
        };
        names.add(ServiceRef::virtual_node(OVERFLOW));
        names
    }

    fn add(&mut self, service: ServiceRef) -> ServiceId {
        let id = self.services.len() as ServiceId;
        self.ids.insert(service.clone(), id);
        self.services.push(service);
        self.instances.push(Interner::default());
        self.endpoints.push(Interner::default());
        id
    }

    fn interner(&self, kind: NameKind, service: ServiceId) -> &Interner {
        match kind {
            NameKind::Endpoint => &self.endpoints[service as usize],
            NameKind::Instance => &self.instances[service as usize],
        }
    }

    /// The slot's key with its names, owned.
    pub(super) fn key(&self, slot: Slot) -> RowKey {
        let service = |id: ServiceId| self.services[id as usize].clone();
        match slot {
            Slot::Service(s) => RowKey::Service {
                service: service(s),
            },
            Slot::Instance(s, i) => RowKey::Instance {
                service: service(s),
                instance: self.instances[s as usize].names[i as usize].clone(),
            },
            Slot::Endpoint(s, e) => RowKey::Endpoint {
                service: service(s),
                endpoint: self.endpoints[s as usize].names[e as usize].clone(),
            },
            Slot::Edge(source, target, protocol) => RowKey::Edge {
                source: service(source),
                target: service(target),
                protocol,
            },
            Slot::Dependency(s, e, t, f) => RowKey::Dependency {
                service: service(s),
                endpoint: self.endpoints[s as usize].names[e as usize].clone(),
                target: service(t),
                target_endpoint: self.endpoints[t as usize].names[f as usize].clone(),
            },
            Slot::InstancePair(s, i, t, j) => RowKey::InstancePair {
                source: service(s),
                source_instance: self.instances[s as usize].names[i as usize].clone(),
                target: service(t),
                target_instance: self.instances[t as usize].names[j as usize].clone(),
            },
        }
    }

    /// The slot's key with its names borrowed from this table, for encoding.
    pub(super) fn key_ref(&self, slot: Slot) -> KeyRef<'_> {
        let service = |id: ServiceId| &self.services[id as usize];
        match slot {
            Slot::Service(s) => KeyRef::Service {
                service: service(s),
            },
            Slot::Instance(s, i) => KeyRef::Instance {
                service: service(s),
                instance: &self.instances[s as usize].names[i as usize],
            },
            Slot::Endpoint(s, e) => KeyRef::Endpoint {
                service: service(s),
                endpoint: &self.endpoints[s as usize].names[e as usize],
            },
            Slot::Edge(source, target, protocol) => KeyRef::Edge {
                source: service(source),
                target: service(target),
                protocol,
            },
            Slot::Dependency(s, e, t, f) => KeyRef::Dependency {
                service: service(s),
                endpoint: &self.endpoints[s as usize].names[e as usize],
                target: service(t),
                target_endpoint: &self.endpoints[t as usize].names[f as usize],
            },
            Slot::InstancePair(s, i, t, j) => KeyRef::InstancePair {
                source: service(s),
                source_instance: &self.instances[s as usize].names[i as usize],
                target: service(t),
                target_instance: &self.instances[t as usize].names[j as usize],
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum NameKind {
    Endpoint,
    Instance,
}

/// The names of a table by number, as a checkpoint keeps them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NameLists {
    pub services: Vec<ServiceRef>,
    pub instances: Vec<Vec<String>>,
    pub endpoints: Vec<Vec<String>>,
}

/// How many names of each kind are interned before the rest go to the overflow bucket.
pub(super) struct NameCaps {
    pub(super) max_services: usize,
    pub(super) max_instances_per_service: usize,
    pub(super) max_endpoints_per_service: usize,
}

/// The shared name table behind a lock, and the caps it keeps. Lookups go through the
/// calling thread's cache first.
pub(super) struct InternedNames {
    /// Tells this table's entries apart in the per-thread caches.
    id: u64,
    table: RwLock<NameTable>,
    caps: NameCaps,
}

static NEXT_NAME_TABLE: AtomicU64 = AtomicU64::new(1);

/// Names already looked up on this thread. Ids never change once given, so the copies are
/// never stale; they spare the shared lock, whose cache line would otherwise bounce between
/// cores several times per entry. Bounded: past the size it starts over.
#[derive(Default)]
struct ThreadNameCache {
    owner: u64,
    services: HashMap<ServiceRef, (ServiceId, Capped), FoldHashState>,
    names: HashMap<(NameKind, ServiceId), CachedNames, FoldHashState>,
    len: usize,
}

/// One kind of name under one service, as cached on a thread.
type CachedNames = HashMap<String, (u32, Capped), FoldHashState>;

/// Entries a thread's cache holds before it starts over.
const THREAD_CACHE_MAX: usize = 65_536;

impl ThreadNameCache {
    /// Makes the cache serve the name table `owner`, emptying it if it served another.
    fn claim(&mut self, owner: u64) {
        if self.owner != owner {
            *self = ThreadNameCache {
                owner,
                ..ThreadNameCache::default()
            };
        }
    }

    /// Counts one entry added, starting over past the size.
    fn count_one(&mut self) {
        self.len += 1;
        if self.len > THREAD_CACHE_MAX {
            self.services.clear();
            self.names.clear();
            self.len = 0;
        }
    }
}

thread_local! {
    static THREAD_CACHE: RefCell<ThreadNameCache> = RefCell::new(ThreadNameCache::default());
}

impl InternedNames {
    pub(super) fn new(caps: NameCaps) -> InternedNames {
        InternedNames {
            id: NEXT_NAME_TABLE.fetch_add(1, Ordering::Relaxed),
            table: RwLock::new(NameTable::new()),
            caps,
        }
    }

    /// The name table, read-locked, to turn slots back into names.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, NameTable> {
        self.table.read()
    }

    /// The service's number: its own while under the cap, else the virtual overflow
    /// node's, so a flood of made-up peer names cannot grow memory.
    pub(super) fn service_id(&self, service: &ServiceRef) -> (ServiceId, Capped) {
        THREAD_CACHE.with_borrow_mut(|local| {
            local.claim(self.id);
            if let Some(&found) = local.services.get(service) {
                return found;
            }
            let found = self.shared_service_id(service);
            local.count_one();
            local.services.insert(service.clone(), found);
            found
        })
    }

    fn shared_service_id(&self, service: &ServiceRef) -> (ServiceId, Capped) {
        if let Some(&id) = self.table.read().ids.get(service) {
            return (id, Capped::Kept);
        }
        let mut names = self.table.write();
        if let Some(&id) = names.ids.get(service) {
            return (id, Capped::Kept);
        }
        if names.real_services >= self.caps.max_services {
            return (OVERFLOW_SERVICE, Capped::Overflow);
        }
        names.real_services += 1;
        (names.add(service.clone()), Capped::Kept)
    }

    /// The endpoint's number under `service`, or the overflow bucket's past the cap.
    pub(super) fn endpoint_id(&self, service: ServiceId, endpoint: &str) -> (u32, Capped) {
        self.name_id(NameKind::Endpoint, service, endpoint)
    }

    /// The instance's number under `service`, or the overflow bucket's past the cap.
    pub(super) fn instance_id(&self, service: ServiceId, instance: &str) -> (u32, Capped) {
        self.name_id(NameKind::Instance, service, instance)
    }

    fn name_id(&self, kind: NameKind, service: ServiceId, name: &str) -> (u32, Capped) {
        THREAD_CACHE.with_borrow_mut(|local| {
            local.claim(self.id);
            let names = local.names.entry((kind, service)).or_default();
            if let Some(&found) = names.get(name) {
                return found;
            }
            let found = self.shared_name_id(kind, service, name);
            names.insert(name.to_string(), found);
            local.count_one();
            found
        })
    }

    fn shared_name_id(&self, kind: NameKind, service: ServiceId, name: &str) -> (u32, Capped) {
        let max = match kind {
            NameKind::Endpoint => self.caps.max_endpoints_per_service,
            NameKind::Instance => self.caps.max_instances_per_service,
        };
        {
            let names = self.table.read();
            let interner = names.interner(kind, service);
            if let Some(id) = interner.get(name) {
                return (id, Capped::Kept);
            }
            // Past the cap with the bucket made: no need to wait for the write lock.
            if interner.ids.len() > max
                && let Some(id) = interner.get(OVERFLOW)
            {
                return (id, Capped::Overflow);
            }
        }
        let mut names = self.table.write();
        let interner = match kind {
            NameKind::Endpoint => &mut names.endpoints[service as usize],
            NameKind::Instance => &mut names.instances[service as usize],
        };
        interner.intern(name, max)
    }

    /// The service behind a number.
    pub(super) fn service(&self, id: ServiceId) -> ServiceRef {
        self.table.read().services[id as usize].clone()
    }

    /// Every name interned, by number: services, and each service's instances and
    /// endpoints. What a checkpoint keeps so that its rows' numbers mean the same again.
    pub(super) fn copy(&self) -> NameLists {
        let names = self.table.read();
        NameLists {
            services: names.services.clone(),
            instances: names.instances.iter().map(|i| i.names.clone()).collect(),
            endpoints: names.endpoints.iter().map(|i| i.names.clone()).collect(),
        }
    }

    /// Gives the names of `lists` their numbers again. Only a table that holds nothing
    /// yet (the overflow node alone) takes them; false otherwise, or when the lists are
    /// not a table's (their first service is not the overflow node, or a name repeats).
    pub(super) fn restore(&self, lists: NameLists) -> bool {
        let mut names = self.table.write();
        let n = lists.services.len();
        if names.services.len() != 1
            || lists.services.first() != names.services.first()
            || lists.instances.len() != n
            || lists.endpoints.len() != n
        {
            return false;
        }
        let interner = |list: Vec<String>| {
            let ids: HashMap<String, u32, FoldHashState> = list
                .iter()
                .enumerate()
                .map(|(id, name)| (name.clone(), id as u32))
                .collect();
            (ids.len() == list.len()).then_some(Interner { ids, names: list })
        };
        let mut restored = NameTable {
            ids: HashMap::default(),
            services: Vec::with_capacity(n),
            instances: Vec::with_capacity(n),
            endpoints: Vec::with_capacity(n),
            real_services: n - 1,
        };
        for ((service, instances), endpoints) in lists
            .services
            .into_iter()
            .zip(lists.instances)
            .zip(lists.endpoints)
        {
            let (Some(instances), Some(endpoints)) = (interner(instances), interner(endpoints))
            else {
                return false;
            };
            let id = restored.services.len() as ServiceId;
            if restored.ids.insert(service.clone(), id).is_some() {
                return false;
            }
            restored.services.push(service);
            restored.instances.push(instances);
            restored.endpoints.push(endpoints);
        }
        *names = restored;
        true
    }
}
