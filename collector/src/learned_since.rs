//! What the registry learned since the parked entries were last retried, so that a retry
//! pass only resolves again the entries that what was learned may name.
//!
//! A parked entry waits for one of two kinds of evidence: its caller's connection
//! (a client's outbound entry ties the connection's two addresses to the client), or a
//! name a reporter carries (a new proxy's stream, a listener or a cluster alias). The
//! first is learned all the time and is keyed, so the registry marks the connections it
//! newly tied in a set of bits; the second is rare, so any change to it retries every parked entry. An entry
//! whose evidence did not change would resolve to the same wait again.

use std::hash::BuildHasher;
use std::net::SocketAddr;

/// A connection by its client's address and its server's address.
pub type ConnectionTuple = (SocketAddr, SocketAddr);

/// Bits in a pass's set of connections (128 KiB). The set answers "maybe" for a connection
/// learned and, falsely, for a few others (about one in twenty when 50,000 were learned
/// in a pass); a false "maybe" costs one resolve that finds the same wait again.
const CONNECTION_BITS: usize = 1 << 20;

/// What the registry learned between two retry passes.
#[derive(Debug, Default)]
pub struct LearnedSince {
    /// Reporters, listeners or cluster aliases changed: any parked entry may now resolve.
    pub names_changed: bool,
    /// Connections tied to a client, or to another client than before, as bits set by
    /// their hash; empty (no allocation) until one is learned.
    connections: Vec<u64>,
}

impl LearnedSince {
    /// Records a connection tied to a client: a hash and one bit set, so that a mesh
    /// opening connections by the hundred thousand a second pays little for it.
    pub(crate) fn connection(&mut self, tuple: ConnectionTuple) {
        if self.connections.is_empty() {
            self.connections = vec![0; CONNECTION_BITS / 64];
        }
        let bit = bit_of(&tuple);
        self.connections[bit / 64] |= 1 << (bit % 64);
    }

    fn may_hold(&self, tuple: &ConnectionTuple) -> bool {
        if self.connections.is_empty() {
            return false;
        }
        let bit = bit_of(tuple);
        self.connections[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn is_empty(&self) -> bool {
        !self.names_changed && self.connections.is_empty()
    }
}

/// The bit of a connection: a fixed hash, the same in every set.
fn bit_of(tuple: &ConnectionTuple) -> usize {
    foldhash::fast::FixedState::default().hash_one(tuple) as usize % CONNECTION_BITS
}

/// What was learned over the last two passes. Two, because an entry is resolved (and
/// found waiting) a moment before it is parked: what is learned in that moment was taken
/// by one pass before the entry was in the queue, and the next pass still sees it.
#[derive(Debug, Default)]
pub struct RecentLearning {
    previous: LearnedSince,
    latest: LearnedSince,
}

impl RecentLearning {
    /// Moves on by one pass: `learned` is what the registry learned since the last one.
    pub fn advance(&mut self, learned: LearnedSince) {
        self.previous = std::mem::replace(&mut self.latest, learned);
    }

    /// Nothing was learned in the last two passes: no parked entry can resolve before its
    /// wait is over.
    pub fn is_quiet(&self) -> bool {
        self.previous.is_empty() && self.latest.is_empty()
    }

    /// Whether an entry seen on the connection from `peer` to `local` (its downstream
    /// addresses, when read) may resolve now.
    pub fn may_resolve(&self, peer: Option<SocketAddr>, local: Option<SocketAddr>) -> bool {
        if self.previous.names_changed || self.latest.names_changed {
            return true;
        }
        let (Some(peer), Some(local)) = (peer, local) else {
            return false;
        };
        let tuple = (peer, local);
        self.latest.may_hold(&tuple) || self.previous.may_hold(&tuple)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_connection_learned_is_seen_for_two_passes_then_forgotten() {
        let mut recent = RecentLearning::default();
        assert!(recent.is_quiet());
        let mut learned = LearnedSince::default();
        learned.connection((addr(1), addr(2)));
        recent.advance(learned);
        assert!(recent.may_resolve(Some(addr(1)), Some(addr(2))));
        assert!(!recent.may_resolve(Some(addr(2)), Some(addr(1))));
        assert!(!recent.may_resolve(Some(addr(1)), None));
        recent.advance(LearnedSince::default());
        assert!(recent.may_resolve(Some(addr(1)), Some(addr(2))));
        recent.advance(LearnedSince::default());
        assert!(!recent.may_resolve(Some(addr(1)), Some(addr(2))));
        assert!(recent.is_quiet());
    }

    #[test]
    fn a_name_change_retries_every_entry_for_two_passes() {
        let mut recent = RecentLearning::default();
        recent.advance(LearnedSince {
            names_changed: true,
            ..LearnedSince::default()
        });
        assert!(recent.may_resolve(None, None));
        recent.advance(LearnedSince::default());
        assert!(recent.may_resolve(None, None));
        recent.advance(LearnedSince::default());
        assert!(!recent.may_resolve(None, None));
    }

    /// Of connections never learned, few are taken for learned ones.
    #[test]
    fn few_connections_not_learned_are_taken_for_learned_ones() {
        let mut learned = LearnedSince::default();
        for port in 0..50_000u16 {
            learned.connection((addr(port), addr(8080)));
        }
        let mut recent = RecentLearning::default();
        recent.advance(learned);
        assert!((0..50_000u16).all(|port| recent.may_resolve(Some(addr(port)), Some(addr(8080)))));
        let false_maybes = (0..50_000u16)
            .filter(|port| recent.may_resolve(Some(addr(*port)), Some(addr(9090))))
            .count();
        assert!(false_maybes < 50_000 / 10, "{false_maybes} of 50,000");
    }
}
