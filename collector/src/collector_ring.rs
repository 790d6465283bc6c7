//! Which collector owns an entry when several share one store: the collectors found in the
//! store's member list, and an owner for every routing key by rendezvous hashing.
//!
//! Behind a load balancer, a proxy's streams reach whichever collector it picks, so the two
//! sides of one request (and every attempt of it) may reach different collectors. Each
//! collector therefore passes every entry on to the collector that owns its *routing key*
//! (the request id, or for an entry without one the connection it came over), and that
//! collector ingests it. All entries of one request meet in one collector, where they are
//! paired and resolved as one node would. See `docs/scale-out.md`.
//!
//! Rendezvous (highest random weight) hashing gives every key to the member whose hash
//! with it is highest. A member that joins takes about `1/n` of the keys and moves no other;
//! one that leaves hands its keys out evenly among the rest. Every collector computes the
//! same owner from the same member list, with no coordination beyond that list.

use std::sync::Arc;

/// One collector of the ring: its writer id and the gRPC address the others reach it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingMember {
    pub writer: String,
    pub address: String,
    /// A fixed hash of the writer id, mixed with each key.
    seed: u64,
}

impl RingMember {
    pub fn new(writer: &str, address: &str) -> RingMember {
        RingMember {
            writer: writer.to_string(),
            address: address.to_string(),
            seed: stable_hash(writer.as_bytes()),
        }
    }
}

/// Who ingests an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This collector.
    Local,
    /// The ring's member at this index.
    Peer(usize),
}

/// The collectors that share the work, as this one sees them: itself and the others.
/// With no other member every key is local, and nothing is passed on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectorRing {
    /// This collector's writer id; empty for a collector not in a ring.
    own: String,
    /// Every member, this collector among them, sorted by writer id.
    members: Vec<RingMember>,
}

impl CollectorRing {
    /// A ring of one: every key is local.
    pub fn alone() -> Arc<CollectorRing> {
        Arc::new(CollectorRing::default())
    }

    /// The ring of `members` (writer id, gRPC address) as collector `own` sees it. `own` is
    /// a member whether or not the list has it yet (its own entry may not be listed yet).
    pub fn new(own: &str, members: impl IntoIterator<Item = (String, String)>) -> CollectorRing {
        let mut members: Vec<RingMember> = members
            .into_iter()
            .map(|(writer, address)| RingMember::new(&writer, &address))
            .collect();
        if !members.iter().any(|m| m.writer == own) {
            members.push(RingMember::new(own, ""));
        }
        members.sort_by(|a, b| a.writer.cmp(&b.writer));
        members.dedup_by(|a, b| a.writer == b.writer);
        CollectorRing {
            own: own.to_string(),
            members,
        }
    }

    /// Whether another collector shares the work, so that entries may be passed on.
    pub fn is_shared(&self) -> bool {
        self.members.len() > 1
    }

    /// This collector's writer id.
    pub fn own(&self) -> &str {
        &self.own
    }

    pub fn members(&self) -> &[RingMember] {
        &self.members
    }

    pub fn member(&self, index: usize) -> &RingMember {
        &self.members[index]
    }

    /// The owner of `key`; key 0 (nothing to route by) is always local.
    pub fn owner(&self, key: u64) -> Owner {
        if key == 0 || !self.is_shared() {
            return Owner::Local;
        }
        let mut best = 0;
        let mut best_weight = 0;
        for (index, member) in self.members.iter().enumerate() {
            let weight = mix(member.seed ^ key);
            if index == 0 || weight > best_weight {
                best = index;
                best_weight = weight;
            }
        }
        if self.members[best].writer == self.own {
            Owner::Local
        } else {
            Owner::Peer(best)
        }
    }
}

/// A 64-bit hash of `bytes` that is the same in every process and every build: FNV-1a,
/// finished with [`mix`].
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(own: &str, writers: &[&str]) -> CollectorRing {
        CollectorRing::new(
            own,
            writers
                .iter()
                .map(|w| (w.to_string(), format!("{w}:11800"))),
        )
    }

    /// The writer that owns `key` in `ring`.
    fn owner_of(ring: &CollectorRing, key: u64) -> String {
        match ring.owner(key) {
            Owner::Local => ring.own.clone(),
            Owner::Peer(i) => ring.member(i).writer.clone(),
        }
    }

    #[test]
    fn every_member_names_the_same_owner_for_a_key() {
        let writers = ["collector-a", "collector-b", "collector-c"];
        for key in 1..2_000u64 {
            let key = stable_hash(&key.to_le_bytes());
            let owners: Vec<String> = writers
                .iter()
                .map(|own| owner_of(&ring(own, &writers), key))
                .collect();
            assert!(owners.iter().all(|o| o == &owners[0]), "{key}: {owners:?}");
        }
    }

    #[test]
    fn keys_spread_evenly_and_a_new_member_moves_only_its_share() {
        let three = ring(
            "collector-a",
            &["collector-a", "collector-b", "collector-c"],
        );
        let four = ring(
            "collector-a",
            &["collector-a", "collector-b", "collector-c", "collector-d"],
        );
        let keys: Vec<u64> = (0..30_000u64)
            .map(|k| stable_hash(&k.to_le_bytes()))
            .collect();
        let mut per_writer = std::collections::HashMap::<String, usize>::new();
        let mut moved = 0;
        for &key in &keys {
            let before = owner_of(&three, key);
            let after = owner_of(&four, key);
            *per_writer.entry(before.clone()).or_default() += 1;
            if before != after {
                // A key only ever moves to the new member.
                assert_eq!(after, "collector-d");
                moved += 1;
            }
        }
        for (writer, count) in &per_writer {
            // A third each, within 5% of the keys.
            assert!((9_000..11_000).contains(count), "{writer}: {count}");
        }
        // A quarter moves to the new member, within 5% of the keys.
        assert!((6_000..9_000).contains(&moved), "{moved}");
    }

    #[test]
    fn alone_or_without_a_key_everything_is_local() {
        let alone = ring("collector-a", &[]);
        assert!(!alone.is_shared());
        assert_eq!(alone.owner(42), Owner::Local);
        let shared = ring("collector-a", &["collector-a", "collector-b"]);
        assert!(shared.is_shared());
        assert_eq!(shared.owner(0), Owner::Local);
        // The collector is a member even before its own entry is listed.
        let unlisted = ring("collector-a", &["collector-b"]);
        assert_eq!(unlisted.members().len(), 2);
    }
}
