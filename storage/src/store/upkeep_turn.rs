//! Whether this node's turn at upkeep holds: on a store shared with other writers, upkeep
//! runs only while this node holds the lease ([`crate::upkeep_lease`]); on a store of its
//! own, always.

use super::{MaintenanceReport, Store};
use crate::error::Result;
use crate::model::EpochMillis;
use crate::upkeep_lease::LeaseState;

/// Gauge: 1 while this node holds the upkeep lease of its shared store, else 0.
pub const UPKEEP_LEASE_HELD_METRIC: &str = "meshscope_store_upkeep_lease_held";
/// Counter of maintenance passes skipped, or stopped part way, because another node held
/// the upkeep lease.
pub const MAINTENANCE_SKIPPED_METRIC: &str = "meshscope_store_maintenance_skipped_total";

impl Store {
    /// Claims (or renews) the upkeep lease at `now_ms`; `false`, with the holder noted in
    /// `report` and the pass counted as skipped, when another node holds it. A failed
    /// claim (the store unreachable) is an error: the pass fails and is tried again later.
    pub(crate) async fn holds_upkeep_turn(
        &self,
        now_ms: EpochMillis,
        report: &mut MaintenanceReport,
    ) -> Result<bool> {
        let Some(lease) = &self.inner.upkeep_lease else {
            return Ok(true);
        };
        let claimed = lease.claim(&*self.inner.files.object_store(), now_ms).await;
        let held = matches!(claimed, Ok(LeaseState::Held { .. }));
        metrics::gauge!(UPKEEP_LEASE_HELD_METRIC).set(if held { 1.0 } else { 0.0 });
        match claimed? {
            LeaseState::Held { term, until_ms } => {
                tracing::debug!(term, until_ms, "upkeep lease held");
                Ok(true)
            }
            LeaseState::Elsewhere { holder, until_ms } => {
                tracing::debug!(%holder, until_ms, "upkeep lease held by another node");
                metrics::counter!(MAINTENANCE_SKIPPED_METRIC).increment(1);
                report.lease_held_by = Some(holder);
                Ok(false)
            }
        }
    }
}
