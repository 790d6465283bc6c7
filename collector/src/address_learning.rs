//! What an entry teaches the registry about the mesh: the address its server listens on,
//! and which client owns the connection it went out on. Taught before any entry is
//! resolved, so that the entries of the same message can use it.

use std::net::SocketAddr;

use crate::entry::Observation;
use crate::identity::NodeIdentity;
use crate::registry::Registry;
use crate::role::Role;

/// The listener and the connection the entries of one message last taught the registry.
/// A proxy's entries in one message come mostly over a few connections to a few
/// listeners, so an entry that teaches what the one before it taught skips the registry's
/// locks.
#[derive(Debug, Default)]
pub(crate) struct LearnedAddresses {
    listener: Option<SocketAddr>,
    connection: Option<(SocketAddr, SocketAddr)>,
}

impl LearnedAddresses {
    /// Tells `registry` what this entry teaches about the mesh, before anything is
    /// resolved: an inbound entry the reporter's listening address, an outbound entry the
    /// connection the reporter opened. Only what differs from what the entries before it
    /// in the same message taught reaches the registry.
    pub(crate) fn teach(
        &mut self,
        registry: &Registry,
        reporter: &NodeIdentity,
        role: Role,
        obs: &Observation,
    ) {
        if matches!(role, Role::Inbound | Role::Gateway)
            && let Some(local) = obs.addresses.downstream_local.get()
            && self.listener.replace(local) != Some(local)
        {
            registry.learn_listener(local, &reporter.service, &reporter.instance);
        }
        if matches!(role, Role::Outbound | Role::Gateway)
            && let (Some(local), Some(remote)) = (
                obs.addresses.upstream_local.get(),
                obs.addresses.upstream_remote.get(),
            )
            && self.connection.replace((local, remote)) != Some((local, remote))
        {
            registry.learn_connection(local, remote, &reporter.service);
        }
    }
}
