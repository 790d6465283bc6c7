//! One minute's rows, split into shards. A closing minute is encoded shard by shard, each
//! shard's rows freed as soon as its batches exist, so a minute is never held twice in full
//! (as rows and as Arrow). A service's instance rows all fall in one shard, so the shard
//! alone makes the service's row. Smaller maps also grow in smaller steps: a map doubling
//! holds its old and new tables at once.

use std::collections::HashMap;

use meshscope_storage::{Metrics, Side};

use super::slot::{ServiceId, Slot};
use crate::hash_state::FoldHashState;

/// How many shards a minute's rows are split into.
pub(crate) const SHARDS: usize = 16;

/// Rows of the slots that map to one shard.
pub(crate) type Shard = HashMap<(Slot, Side), Metrics, FoldHashState>;

/// One minute's rows, by slot and side, in [`SHARDS`] shards.
#[derive(Clone, Default)]
pub(crate) struct MinuteRows {
    shards: [Shard; SHARDS],
}

impl MinuteRows {
    /// The row of `slot` on `side`, made empty if new. Runs once per sample added.
    #[inline]
    pub(crate) fn row(&mut self, slot: Slot, side: Side) -> &mut Metrics {
        self.shards[shard_of(&slot)]
            .entry((slot, side))
            .or_default()
    }

    /// The number of rows.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// Every row with its slot and side, shard by shard.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&(Slot, Side), &Metrics)> + Clone {
        self.shards.iter().flatten()
    }

    /// The shards, to encode whole.
    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The shards, taken out to be encoded one at a time.
    pub(crate) fn into_shards(self) -> [Shard; SHARDS] {
        self.shards
    }
}

/// Spreads ids over the shards; Fibonacci hashing, since ids are small consecutive numbers.
#[inline]
fn mix(a: ServiceId, b: u32) -> usize {
    let key = (u64::from(a) << 32) | u64::from(b);
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// The shard of a slot's row. A service's own and instance rows go by the service alone;
/// endpoints and edges, which make no row of another table, are spread further.
#[inline]
pub(crate) fn shard_of(slot: &Slot) -> usize {
    match *slot {
        Slot::Service(service) | Slot::Instance(service, _) => mix(service, 0),
        Slot::Endpoint(service, endpoint) => mix(service, endpoint.wrapping_add(1)),
        Slot::Edge(source, target, _) => mix(source, target.wrapping_add(1)),
        // A service and a name under it, twice: an endpoint and the endpoint it called, or
        // a caller instance and the callee instance.
        Slot::Dependency(source, a, target, b) | Slot::InstancePair(source, a, target, b) => {
            mix(source ^ target.rotate_left(16), a ^ b.rotate_left(16))
        }
    }
}

/// Each service's rows, per side: the sum of its instances' rows.
pub(crate) fn service_rows<'a>(
    rows: impl Iterator<Item = (&'a (Slot, Side), &'a Metrics)>,
) -> HashMap<(ServiceId, Side), Metrics, FoldHashState> {
    let mut services: HashMap<(ServiceId, Side), Metrics, FoldHashState> = HashMap::default();
    for ((slot, side), metrics) in rows {
        if let Slot::Instance(service, _) = slot {
            services
                .entry((*service, *side))
                .or_default()
                .merge(metrics);
        }
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshscope_storage::Protocol;

    #[test]
    fn a_services_instances_share_its_shard_and_endpoints_spread() {
        for service in 0..200 {
            let home = shard_of(&Slot::Service(service));
            for instance in 0..20 {
                assert_eq!(shard_of(&Slot::Instance(service, instance)), home);
            }
        }
        let mut used = [0usize; SHARDS];
        for endpoint in 0..16_000 {
            used[shard_of(&Slot::Endpoint(7, endpoint))] += 1;
        }
        // One service's endpoints alone spread over every shard, none with twice its share.
        assert!(used.iter().all(|n| (500..2_000).contains(n)), "{used:?}");
        let mut edges = [0usize; SHARDS];
        for target in 0..1_600 {
            edges[shard_of(&Slot::Edge(3, target, Protocol::Http))] += 1;
        }
        assert!(edges.iter().all(|n| (50..200).contains(n)), "{edges:?}");
    }

    #[test]
    fn rows_are_found_again_and_counted_once() {
        let mut rows = MinuteRows::default();
        for endpoint in 0..100 {
            rows.row(Slot::Endpoint(1, endpoint), Side::Server).calls += 1;
            rows.row(Slot::Endpoint(1, endpoint), Side::Server).calls += 1;
        }
        rows.row(Slot::Instance(1, 0), Side::Client).calls += 5;
        assert_eq!(rows.len(), 101);
        assert_eq!(rows.iter().map(|(_, m)| m.calls).sum::<u64>(), 205);
        assert!(rows.shards().iter().filter(|s| !s.is_empty()).count() > 8);
    }
}
