//! The proxies that report their own statistics: what each said about itself when it last
//! connected, under a cap on how many are remembered.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use serde::Serialize;

use crate::model::EpochMillis;

/// Proxies remembered at most by default; new ones past it are not registered.
const DEFAULT_MAX_PROXIES: usize = 10_000;

/// What a proxy said about itself when it last connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyInfo {
    pub id: String,
    pub service: String,
    pub instance: String,
    pub envoy_version: String,
    pub last_seen: EpochMillis,
}

/// The registry of reporting proxies, by id. Readers list it; the collector fills it.
pub struct ProxyRegistry {
    max_proxies: usize,
    proxies: RwLock<BTreeMap<String, ProxyInfo>>,
}

impl Default for ProxyRegistry {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PROXIES)
    }
}

impl ProxyRegistry {
    /// An empty registry that remembers `max_proxies` proxies at most.
    pub fn new(max_proxies: usize) -> Self {
        Self {
            max_proxies,
            proxies: RwLock::new(BTreeMap::new()),
        }
    }

    /// Records that a proxy reported; returns false when the registry is full.
    pub fn see_proxy(&self, info: ProxyInfo) -> bool {
        let mut proxies = self.proxies.write();
        if !proxies.contains_key(&info.id) && proxies.len() >= self.max_proxies {
            return false;
        }
        proxies.insert(info.id.clone(), info);
        true
    }

    /// Marks a known proxy as seen now, without changing what it said about itself.
    pub fn touch(&self, id: &str, now: EpochMillis) {
        if let Some(p) = self.proxies.write().get_mut(id) {
            p.last_seen = p.last_seen.max(now);
        }
    }

    /// Every registered proxy, by id.
    pub fn proxies(&self) -> Vec<ProxyInfo> {
        self.proxies.read().values().cloned().collect()
    }

    /// The registered proxy of `id`, if any.
    pub fn proxy(&self, id: &str) -> Option<ProxyInfo> {
        self.proxies.read().get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_capped() {
        let m = ProxyRegistry::new(1);
        let info = |id: &str| ProxyInfo {
            id: id.into(),
            service: "s".into(),
            instance: "i".into(),
            envoy_version: "1".into(),
            last_seen: 0,
        };
        assert!(m.see_proxy(info("a")));
        assert!(!m.see_proxy(info("b")));
        assert!(m.see_proxy(info("a")));
        assert_eq!(m.proxies().len(), 1);
    }
}
