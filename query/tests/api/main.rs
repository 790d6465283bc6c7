//! The HTTP API over a real store fed with a small known mesh (`mesh`): exact JSON for
//! what the UI and users' scripts rely on. One test binary, one module per concern.
//!
//! Large answers are pinned whole as JSON snapshots (`snapshots/`, reviewed by hand when
//! they change); the figures that follow from the rows fed in (calls, errors, Apdex,
//! latencies, which side is believed) are asserted by hand as well, so that a snapshot
//! never hides why a number is what it is. The clock is fixed, so the answers are the same
//! on every run.

mod edges;
mod endpoint_dependencies;
mod instance_pairs;
mod mesh;
mod parameters;
mod services;
mod serving;
mod support;
mod topology;
