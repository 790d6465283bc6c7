//! The read contract: figures over a time window, after choosing per key and minute the
//! server side when it reported, else the client side.

use crate::model::{EpochMillis, Metrics, RowKey, ServiceRef, Side};

/// A half-open window `[start, end)` in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub start: EpochMillis,
    pub end: EpochMillis,
}

/// Which rows of a table to read.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    /// Rows whose service (or, for edges, source or target) is this one.
    pub service: Option<ServiceRef>,
    /// Edge rows from this source.
    pub source: Option<ServiceRef>,
    /// Edge (or dependency) rows to this target.
    pub target: Option<ServiceRef>,
    /// Instance or endpoint name (for dependencies, the inbound endpoint).
    pub name: Option<String>,
    /// For dependencies: the outbound endpoint, at `target`.
    pub target_name: Option<String>,
    /// Only rows from this side, with no server-over-client choice; the edge API shows
    /// both sides of an edge this way.
    pub side: Option<Side>,
}

/// Figures for one key over a whole window.
#[derive(Clone, Debug)]
pub struct Aggregate {
    pub key: RowKey,
    /// `Server` when any minute of the window came from the server side.
    pub detected_by: Side,
    pub metrics: Metrics,
}

/// Figures for one key in one minute.
#[derive(Clone, Debug)]
pub struct SeriesPoint {
    pub minute: EpochMillis,
    pub detected_by: Side,
    pub metrics: Metrics,
}
