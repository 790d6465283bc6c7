//! Which node runs upkeep on a shared store: a lease kept in the store itself, so that of
//! the nodes told to run upkeep (compaction, rollups, retention) on one bucket, one at a
//! time does, and another takes over when the holder stops renewing (it died, or lost
//! the store).
//!
//! The lease is a numbered sequence of terms, each a small JSON object
//! `upkeep-lease/term-<n>.json` naming its holder and when the term ends, by the holder's
//! clock. A term is taken by creating its object only if no object of that name exists
//! (`PutMode::Create`: `If-None-Match: *` on S3, a hard link on a local directory), which
//! at most one node achieves; so the lease needs nothing beyond what every store
//! `object_store` offers. The holder renews by taking the next term before its own ends;
//! another node takes the next term only once the newest has ended, plus
//! [`LEASE_CLOCK_GRACE_MS`] for the two machines' clocks. A node about to take a term first
//! deletes the terms that would fall out of the last [`TERMS_KEPT`].
//!
//! What it guarantees: no two nodes ever hold the same term. Two nodes believe they hold
//! the lease at once only if the holder keeps working past the end of its term by more
//! than the grace (a pass stuck for minutes, or clocks further apart than the grace); the
//! holder renews before each table of a pass, and stops the pass when the lease has moved,
//! so that window is one table's upkeep at most.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::EpochMillis;

/// The directory, under the store's root, that holds the lease's terms.
pub const UPKEEP_LEASE_DIR: &str = "upkeep-lease";

/// How far apart two nodes' clocks may be: a term is taken over only this long after it
/// ended by the taker's clock.
pub const LEASE_CLOCK_GRACE_MS: i64 = 5_000;

/// Terms kept after a new one is taken (the others are deleted): enough to tell, reading
/// the store, who held the lease lately.
const TERMS_KEPT: u64 = 4;

/// The shortest term, whatever the interval: a term must outlast one table's upkeep.
const MIN_TERM_MS: i64 = 15_000;

/// One term of the lease, as its object holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Term {
    holder: String,
    /// When the term ends, by the holder's clock (epoch milliseconds).
    until_ms: EpochMillis,
}

/// Who holds the lease, as a claim found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// This node holds it, in term `term`, until `until_ms`.
    Held { term: u64, until_ms: EpochMillis },
    /// Another node holds it, until `until_ms` by its clock.
    Elsewhere {
        holder: String,
        until_ms: EpochMillis,
    },
}

/// This node's claim on the upkeep lease of one store.
#[derive(Debug)]
pub(crate) struct UpkeepLease {
    holder: String,
    term_ms: i64,
}

impl UpkeepLease {
    /// A claim by `holder` (the node's writer id), each term lasting three upkeep
    /// intervals of `interval_secs`, and at least fifteen seconds.
    pub(crate) fn new(holder: &str, interval_secs: u64) -> UpkeepLease {
        let three_intervals = (interval_secs as i64).saturating_mul(3_000);
        UpkeepLease {
            holder: holder.to_owned(),
            term_ms: three_intervals.max(MIN_TERM_MS),
        }
    }

    /// Takes the lease at `now_ms` (by this node's clock), or renews it: a new term when
    /// no term exists, when this node holds the newest, or when the newest has ended (plus
    /// the grace). Returns who holds it after the claim.
    pub(crate) async fn claim(
        &self,
        store: &dyn ObjectStore,
        now_ms: EpochMillis,
    ) -> Result<LeaseState> {
        let terms = listed_terms(store).await?;
        let newest = match terms.last() {
            Some(&n) => Some((n, read_term(store, n).await?)),
            None => None,
        };
        let next = match &newest {
            None => 1,
            Some((n, Some(term))) if term.holder != self.holder => {
                if now_ms <= term.until_ms.saturating_add(LEASE_CLOCK_GRACE_MS) {
                    return Ok(LeaseState::Elsewhere {
                        holder: term.holder.clone(),
                        until_ms: term.until_ms,
                    });
                }
                n + 1
            }
            // This node's own term, or one that cannot be read (deleted meanwhile, or
            // damaged): a damaged term must not stop upkeep for good.
            Some((n, _)) => n + 1,
        };
        let term = Term {
            holder: self.holder.clone(),
            until_ms: now_ms.saturating_add(self.term_ms),
        };
        let body = serde_json::to_vec(&term)
            .map_err(|error| Error::ObjectStore(format!("encoding a lease term: {error}")))?;
        // The terms that will be too old are deleted before the new one is written, so that
        // a listing never finds more than `TERMS_KEPT`: deleted after, there would be one
        // more for a moment. Whoever takes the term, these are past.
        for old in terms.into_iter().filter(|n| n + TERMS_KEPT <= next) {
            match store.delete(&term_path(old)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => tracing::debug!(%error, term = old, "deleting an old lease term"),
            }
        }
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store
            .put_opts(&term_path(next), PutPayload::from(body), create)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                // Another node took this term first.
                let taken = read_term(store, next).await?.unwrap_or(Term {
                    holder: String::new(),
                    until_ms: now_ms,
                });
                return Ok(LeaseState::Elsewhere {
                    holder: taken.holder,
                    until_ms: taken.until_ms,
                });
            }
            Err(error) => return Err(error.into()),
        }
        Ok(LeaseState::Held {
            term: next,
            until_ms: term.until_ms,
        })
    }
}

fn term_path(n: u64) -> Path {
    Path::from(format!("{UPKEEP_LEASE_DIR}/term-{n:020}.json"))
}

/// The numbers of the terms in the store, in order.
async fn listed_terms(store: &dyn ObjectStore) -> Result<Vec<u64>> {
    let listed: Vec<_> = store
        .list(Some(&Path::from(UPKEEP_LEASE_DIR)))
        .try_collect()
        .await?;
    let mut terms: Vec<u64> = listed
        .iter()
        .filter_map(|object| {
            let name = object.location.filename()?;
            name.strip_prefix("term-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    terms.sort_unstable();
    Ok(terms)
}

/// Term `n`, or `None` when it is gone or cannot be read as a term.
async fn read_term(store: &dyn ObjectStore, n: u64) -> Result<Option<Term>> {
    let bytes = match store.get(&term_path(n)).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    match serde_json::from_slice(&bytes) {
        Ok(term) => Ok(Some(term)),
        Err(error) => {
            tracing::warn!(%error, term = n, "an upkeep lease term cannot be read; taken as ended");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    const T: EpochMillis = 1_764_000_000_000;

    #[tokio::test]
    async fn one_node_holds_the_lease_until_its_term_ends_unrenewed() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = UpkeepLease::new("collector-a", 60);
        let b = UpkeepLease::new("collector-b", 60);
        // Three intervals of 60 s.
        let term_ms = 180_000;
        assert_eq!(
            a.claim(&*store, T).await.unwrap(),
            LeaseState::Held {
                term: 1,
                until_ms: T + term_ms
            }
        );
        let elsewhere = LeaseState::Elsewhere {
            holder: "collector-a".into(),
            until_ms: T + term_ms,
        };
        assert_eq!(b.claim(&*store, T + 1).await.unwrap(), elsewhere);
        // Renewed by its holder: a new term, later end.
        assert_eq!(
            a.claim(&*store, T + 60_000).await.unwrap(),
            LeaseState::Held {
                term: 2,
                until_ms: T + 60_000 + term_ms
            }
        );
        // The holder stops renewing: held until its term ends plus the grace, then
        // taken over.
        let ends = T + 60_000 + term_ms;
        assert!(matches!(
            b.claim(&*store, ends + LEASE_CLOCK_GRACE_MS).await.unwrap(),
            LeaseState::Elsewhere { .. }
        ));
        assert_eq!(
            b.claim(&*store, ends + LEASE_CLOCK_GRACE_MS + 1)
                .await
                .unwrap(),
            LeaseState::Held {
                term: 3,
                until_ms: ends + LEASE_CLOCK_GRACE_MS + 1 + term_ms
            }
        );
        // The old holder, back, finds the lease moved.
        assert!(matches!(
            a.claim(&*store, ends + LEASE_CLOCK_GRACE_MS + 2).await.unwrap(),
            LeaseState::Elsewhere { holder, .. } if holder == "collector-b"
        ));
    }

    #[tokio::test]
    async fn of_two_nodes_taking_an_ended_term_at_once_one_wins() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let nodes: Vec<UpkeepLease> = (0..8)
            .map(|i| UpkeepLease::new(&format!("node-{i}"), 60))
            .collect();
        let claims =
            futures::future::join_all(nodes.iter().map(|node| node.claim(&*store, T))).await;
        let held: Vec<_> = claims
            .iter()
            .filter(|c| matches!(c, Ok(LeaseState::Held { .. })))
            .collect();
        assert_eq!(held.len(), 1, "{claims:?}");
    }

    #[tokio::test]
    async fn old_terms_are_deleted_and_a_damaged_one_does_not_stop_upkeep() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = UpkeepLease::new("a", 60);
        for i in 0..10 {
            a.claim(&*store, T + i).await.unwrap();
        }
        assert_eq!(listed_terms(&*store).await.unwrap(), vec![7, 8, 9, 10]);
        store
            .put(&term_path(11), PutPayload::from_static(b"not json"))
            .await
            .unwrap();
        let b = UpkeepLease::new("b", 60);
        assert!(matches!(
            b.claim(&*store, T + 20).await.unwrap(),
            LeaseState::Held { term: 12, .. }
        ));
    }
}
