//! What the registry learned since the parked entries were last retried, so that a retry
//! pass only resolves again the entries that what was learned may name.
//!
//! A parked entry waits for one of two kinds of evidence: its caller's connection
//! (a client's outbound entry ties the connection's two addresses to the client), or a
//! name a reporter carries (a new proxy's stream, a listener or a cluster alias). The
//! first is learned all the time and is keyed, so the registry lists the connections it
//! newly tied; the second is rare, so any change to it retries every parked entry. An entry
//! whose evidence did not change would resolve to the same wait again.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::hash_state::FoldHashState;

/// A connection by its client's address and its server's address.
pub type ConnectionTuple = (SocketAddr, SocketAddr);

/// Connections newly tied to a client kept between two passes; past this many, the next
/// pass retries every parked entry instead (a burst of new connections, or a restart).
pub const CONNECTIONS_KEPT: usize = 65_536;

/// What the registry learned between two retry passes.
#[derive(Debug, Default)]
pub struct LearnedSince {
    /// Reporters, listeners or cluster aliases changed: any parked entry may now resolve.
    pub names_changed: bool,
    /// More connections were tied than [`CONNECTIONS_KEPT`]: treated as `names_changed`.
    pub too_many_connections: bool,
    /// Connections tied to a client, or to another client than before.
    pub connections: HashSet<ConnectionTuple, FoldHashState>,
}

impl LearnedSince {
    /// Records a connection tied to a client, within the bound.
    pub(crate) fn connection(&mut self, tuple: ConnectionTuple) {
        if self.connections.len() >= CONNECTIONS_KEPT {
            self.too_many_connections = true;
            self.connections = HashSet::default();
        } else if !self.too_many_connections {
            self.connections.insert(tuple);
        }
    }

    fn retries_all(&self) -> bool {
        self.names_changed || self.too_many_connections
    }

    fn is_empty(&self) -> bool {
        !self.retries_all() && self.connections.is_empty()
    }
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
        if self.previous.retries_all() || self.latest.retries_all() {
            return true;
        }
        let (Some(peer), Some(local)) = (peer, local) else {
            return false;
        };
        let tuple = (peer, local);
        self.latest.connections.contains(&tuple) || self.previous.connections.contains(&tuple)
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
    fn a_name_change_or_too_many_connections_retries_every_entry() {
        let mut recent = RecentLearning::default();
        recent.advance(LearnedSince {
            names_changed: true,
            ..LearnedSince::default()
        });
        assert!(recent.may_resolve(None, None));
        let mut learned = LearnedSince::default();
        for port in 0..=CONNECTIONS_KEPT as u32 {
            learned.connection((addr((port % 60_000) as u16), addr((port / 60_000) as u16)));
        }
        assert!(learned.too_many_connections);
        assert!(learned.connections.is_empty());
        recent.advance(learned);
        recent.advance(LearnedSince::default());
        assert!(recent.may_resolve(None, None));
        recent.advance(LearnedSince::default());
        assert!(!recent.may_resolve(None, None));
    }
}
