//! A collector's place among the collectors that share a store: it writes its member file
//! (writer id and the gRPC address the others reach it at) every few seconds, lists the
//! others', and hands the list to the collector, which from then on passes each entry on to
//! the member that owns it (`docs/scale-out.md`).

use std::sync::Arc;
use std::time::Duration;

use meshscope_collector::Collector;
use meshscope_collector::collector_ring::CollectorRing;
use meshscope_storage::Store;
use tracing::warn;

/// How often the member file is written and the others' listed: well inside
/// `COLLECTOR_MEMBER_MAX_AGE_MS`, so that a live member is never left out.
pub(crate) const MEMBERSHIP_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps this collector's membership written and its view of the ring current, for as
/// long as the process runs.
pub(crate) async fn keep_ring_current(
    store: Arc<Store>,
    collector: Arc<Collector>,
    address: String,
) {
    let writer = store.writer_id().to_string();
    let mut ticks = tokio::time::interval(MEMBERSHIP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = store.publish_collector_member(&address).await {
            warn!(%error, "writing this collector's member file failed; trying again");
        }
        match store.collector_members().await {
            Ok(members) => collector.set_ring(CollectorRing::new(
                &writer,
                members.into_iter().map(|m| (m.writer, m.grpc_address)),
            )),
            // The ring stays as it was until the store answers again.
            Err(error) => warn!(%error, "listing the collectors failed; trying again"),
        }
    }
}
