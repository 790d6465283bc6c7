//! What a row describes, by interned names, and which table its row goes to.

use meshscope_storage::{Protocol, Table};
use serde::{Deserialize, Serialize};

/// An interned service: its number in the aggregator's name table.
pub type ServiceId = u32;

/// What a row describes, by interned names: a service, an instance or endpoint of one (by
/// its number under that service), or an edge between two services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// Not recorded by the pipeline: a service's row is made from its instances' rows.
    Service(ServiceId),
    Instance(ServiceId, u32),
    Endpoint(ServiceId, u32),
    Edge(ServiceId, ServiceId, Protocol),
    /// A service's inbound endpoint and an outbound endpoint (by its number under the
    /// callee) its proxy called while serving it.
    Dependency(ServiceId, u32, ServiceId, u32),
    /// A caller instance and a callee instance, each by its number under its service.
    InstancePair(ServiceId, u32, ServiceId, u32),
}

/// The table a slot's own row goes to.
#[inline]
pub(super) fn slot_table(slot: &Slot) -> Table {
    match slot {
        Slot::Service(_) => Table::ServiceMinute,
        Slot::Instance(..) => Table::InstanceMinute,
        Slot::Endpoint(..) => Table::EndpointMinute,
        Slot::Edge(..) => Table::EdgeMinute,
        Slot::Dependency(..) => Table::DependencyMinute,
        Slot::InstancePair(..) => Table::InstancePairMinute,
    }
}

/// Whether a slot's row goes to `table`; service rows are made from instance rows.
#[inline]
pub(super) fn feeds(slot: &Slot, table: Table) -> bool {
    matches!(
        (slot, table),
        (
            Slot::Instance(..),
            Table::ServiceMinute | Table::InstanceMinute
        ) | (Slot::Endpoint(..), Table::EndpointMinute)
            | (Slot::Edge(..), Table::EdgeMinute)
            | (Slot::Dependency(..), Table::DependencyMinute)
            | (Slot::InstancePair(..), Table::InstancePairMinute)
    )
}
