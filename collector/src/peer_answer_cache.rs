//! Answers to "who is on the other end" already found in one message, reused for the
//! message's later entries that ask the same.

use meshscope_storage::Side;

use crate::aggregate::ServiceId;
use crate::attribution::PeerEvidence;
use crate::entry::Observation;
use crate::role::Role;

/// One side of a call by the aggregator's numbers: the side that reported it, the caller
/// and callee services, and the callee's instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerIds {
    pub(crate) side: Side,
    pub(crate) source: ServiceId,
    pub(crate) target: ServiceId,
    pub(crate) target_instance: u32,
    /// The caller's instance: the reporter's own on the client side; [`NO_INSTANCE`] on
    /// the server side, where the caller's instance is known only once paired.
    pub(crate) source_instance: u32,
}

/// An instance number no interned instance has: not known.
pub(crate) const NO_INSTANCE: u32 = u32::MAX;

/// Peers already named in this message, by the evidence that named them. A proxy's
/// message holds its calls to a few upstream hosts and from a few callers, so most of its
/// entries ask what an entry before them asked: the answer is then the same, without the
/// registry's locks, the names it hands out, or the aggregator's lookups.
///
/// Only answers that rest on nothing but the key are kept. A callee rests on the upstream
/// cluster and host. A caller rests on the caller-cluster header and the certificate when
/// either named it; one named by its connection or not at all is not kept, as the next
/// entry's connection is another.
#[derive(Default)]
pub(crate) struct PeerAnswerCache<'m> {
    callees: RecentAnswers<CalleeKey<'m>, PeerIds>,
    callers: RecentAnswers<CallerKey<'m>, (PeerIds, PeerEvidence, bool)>,
}

/// The upstream cluster and host.
type CalleeKey<'m> = (&'m str, Option<std::net::SocketAddr>);
/// The caller-cluster header and the certificate's URI.
type CallerKey<'m> = (Option<&'m str>, Option<&'m str>);

/// The key a callee's answer rests on.
#[inline]
fn callee_key<'m>(obs: &Observation<'m>) -> CalleeKey<'m> {
    (obs.upstream_cluster, obs.addresses.upstream_remote.get())
}

/// The key a caller's answer rests on.
#[inline]
fn caller_key<'m>(obs: &Observation<'m>) -> CallerKey<'m> {
    (obs.downstream_cluster_header, obs.peer_uri_san)
}

impl<'m> PeerAnswerCache<'m> {
    /// The peers an earlier entry of this message that asked the same was given, the
    /// evidence that named its caller and whether the header and certificate disagreed;
    /// `None` when no such answer is kept.
    #[inline]
    pub(crate) fn find(
        &self,
        role: Role,
        obs: &Observation<'m>,
    ) -> Option<(PeerIds, Option<PeerEvidence>, bool)> {
        match role {
            Role::Outbound => self.callees.get(&callee_key(obs)).map(|p| (p, None, false)),
            Role::Inbound => self
                .callers
                .get(&caller_key(obs))
                .map(|(peers, evidence, conflict)| (peers, Some(evidence), conflict)),
            Role::Gateway => None,
        }
    }

    /// Keeps the answer one entry was given, when it rests on nothing but the entry's key.
    #[inline]
    pub(crate) fn keep(
        &mut self,
        role: Role,
        obs: &Observation<'m>,
        peers: &[PeerIds],
        evidence: Option<PeerEvidence>,
        identity_conflict: bool,
    ) {
        let [peers] = peers else {
            return;
        };
        match (role, evidence) {
            (Role::Outbound, _) => self.callees.put(callee_key(obs), *peers),
            (Role::Inbound, Some(e @ (PeerEvidence::Header | PeerEvidence::Certificate))) => self
                .callers
                .put(caller_key(obs), (*peers, e, identity_conflict)),
            _ => {}
        }
    }
}

/// The last few answers, oldest replaced first: a linear scan of a few keys costs less
/// than hashing one.
struct RecentAnswers<K, V> {
    kept: Vec<(K, V)>,
    next: usize,
}

/// How many answers of each kind are kept.
const RECENT_ANSWERS: usize = 8;

impl<K, V> Default for RecentAnswers<K, V> {
    fn default() -> Self {
        RecentAnswers {
            kept: Vec::new(),
            next: 0,
        }
    }
}

impl<K: PartialEq, V: Copy> RecentAnswers<K, V> {
    /// The value kept under `key`, if any.
    #[inline]
    fn get(&self, key: &K) -> Option<V> {
        self.kept.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Keeps `value` under `key`, replacing the oldest when full.
    #[inline]
    fn put(&mut self, key: K, value: V) {
        if self.kept.len() < RECENT_ANSWERS {
            self.kept.push((key, value));
        } else {
            self.kept[self.next] = (key, value);
            self.next = (self.next + 1) % RECENT_ANSWERS;
        }
    }
}
