//! Both sides of an edge on their own, next to its chosen `metrics`: what the caller's
//! proxy saw (with the retries it made) and what the callee's proxy saw (with the calls
//! whose caller-cluster header and certificate disagreed), each with its response flags
//! by kind, and the requests matched across the two by request id. With a retry policy
//! the two sides differ: the caller logs one entry per request, the callee one per
//! attempt.

use std::collections::{BTreeMap, HashMap};

use meshscope_storage::{
    KeyFilter, Metrics, Protocol, RowKey, ServiceRef, Side, Table, TimeRange, WindowReader,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Result;
use crate::view::{percentiles, round3};

/// One side's figures over the window, as that side's proxy logged them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SideFigures {
    /// Requests (HTTP) or connections (TCP) this side logged: the caller's proxy logs a
    /// request once, the callee's proxy each attempt it received.
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// Calls this side's proxy logged with each response flag, by Envoy's short code
    /// (`UF`, `URX`, `UO`, `NR`, …; the kinds kept are listed in the storage crate's
    /// `response_flags`); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!({"UF": 3, "URX": 1}))]
    pub(crate) response_flags: Option<BTreeMap<String, u64>>,
}

impl SideFigures {
    pub(crate) fn from_metrics(metrics: &Metrics) -> Self {
        let [p50_ms, p95_ms, p99_ms] = percentiles(metrics);
        let flags: BTreeMap<String, u64> = metrics
            .response_flags
            .nonzero()
            .map(|(code, n)| (code.to_owned(), n))
            .collect();
        SideFigures {
            calls: metrics.calls,
            errors: metrics.errors,
            p50_ms,
            p95_ms,
            p99_ms,
            response_flags: (!flags.is_empty()).then_some(flags),
        }
    }
}

/// Both sides of an edge's requests matched by request id.
#[derive(Debug, Default, PartialEq, Serialize, ToSchema)]
pub(crate) struct Pairing {
    /// Requests whose caller's and callee's entries were both found.
    pub(crate) paired: u64,
    /// Requests only the caller's proxy logged: a callee without a proxy, or lost logs.
    pub(crate) client_only: u64,
    /// Requests only the callee's proxy logged: a caller without a proxy.
    pub(crate) server_only: u64,
    /// The mesh's own cost per request (the caller's latency minus the callee's: network
    /// and both proxies), median, over paired requests made in one attempt; null when
    /// there were none.
    pub(crate) overhead_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    pub(crate) overhead_p99_ms: Option<f64>,
}

impl Pairing {
    /// The pairing figures of an edge's client and server totals: settled requests land
    /// on the client side's rows (client only) and the server side's (paired, server
    /// only, overhead), so the two are added.
    pub(crate) fn from_totals(client: Option<&Metrics>, server: Option<&Metrics>) -> Self {
        let mut overhead = meshscope_storage::LatencySketch::new();
        let mut pairing = Pairing::default();
        for m in [client, server].into_iter().flatten() {
            pairing.paired += m.paired;
            pairing.client_only += m.client_only;
            pairing.server_only += m.server_only;
            overhead.merge(&m.overhead);
        }
        let [p50, p99] = overhead.quantiles([0.50, 0.99]);
        pairing.overhead_p50_ms = p50.map(round3);
        pairing.overhead_p99_ms = p99.map(round3);
        pairing
    }
}

/// The side-by-side figures of one edge of the map.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct EdgeSides {
    /// As the caller's proxy saw the calls; absent when it logged none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client: Option<SideFigures>,
    /// As the callee's proxy saw them; absent when it logged none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<SideFigures>,
    /// Attempts beyond the first that the caller's proxy made; 0 when none.
    pub(crate) retries: u64,
    /// Calls the callee's proxy logged with a caller-cluster header naming another
    /// service than the peer certificate; the certificate named the caller.
    pub(crate) identity_conflicts: u64,
    /// The edge's requests matched by request id across its two sides.
    pub(crate) pairing: Pairing,
}

impl EdgeSides {
    /// The figures of the client and server totals of one edge (either may be missing).
    pub(crate) fn from_totals(client: Option<&Metrics>, server: Option<&Metrics>) -> Self {
        EdgeSides {
            client: client.map(SideFigures::from_metrics),
            server: server.map(SideFigures::from_metrics),
            retries: client.map_or(0, |m| m.retries),
            identity_conflicts: server.map_or(0, |m| m.identity_conflicts),
            pairing: Pairing::from_totals(client, server),
        }
    }
}

/// An edge's ends by API id, and its protocol.
type EdgeIds = (String, String, Protocol);

/// Every edge's client and server totals over a window, by API ids.
#[derive(Default)]
pub(crate) struct EdgeSidesIndex {
    by_edge: HashMap<EdgeIds, [Option<Metrics>; 2]>,
}

impl EdgeSidesIndex {
    /// Reads each side of every edge on its own. The server side comes from rollups where
    /// they exist; the client side from minute rows (rollups keep it net of the server),
    /// so over a window longer than the minutes' retention it shows only the minutes
    /// still kept.
    pub(crate) async fn load(store: &dyn WindowReader, range: TimeRange) -> Result<Self> {
        let by_edge = side_totals(store, Table::EdgeMinute, range, None, |key| match key {
            RowKey::Edge {
                source,
                target,
                protocol,
            } => Some((source.id(), target.id(), protocol)),
            _ => None,
        })
        .await?;
        Ok(EdgeSidesIndex {
            by_edge: by_edge.into_iter().collect(),
        })
    }

    /// The side-by-side figures of the edge between two API ids.
    pub(crate) fn get(&self, source: &str, target: &str, protocol: Protocol) -> EdgeSides {
        let key = (source.to_owned(), target.to_owned(), protocol);
        match self.by_edge.get(&key) {
            Some([client, server]) => EdgeSides::from_totals(client.as_ref(), server.as_ref()),
            None => EdgeSides::default(),
        }
    }
}

/// Each key's client and server totals over a window, each side read on its own (the
/// client's from minute rows: rollups keep it net of the server), of the rows of `table`
/// that `service` is an end of (all with `None`) and that `key_of` names.
pub(crate) async fn side_totals<K: Ord>(
    store: &dyn WindowReader,
    table: Table,
    range: TimeRange,
    service: Option<&ServiceRef>,
    key_of: impl Fn(RowKey) -> Option<K>,
) -> Result<BTreeMap<K, [Option<Metrics>; 2]>> {
    let mut totals: BTreeMap<K, [Option<Metrics>; 2]> = BTreeMap::new();
    let filter = |side| KeyFilter {
        service: service.cloned(),
        side: Some(side),
        ..KeyFilter::default()
    };
    let (client_filter, server_filter) = (filter(Side::Client), filter(Side::Server));
    // The two sides are read together: each folds its own rows.
    let (client, server) = futures::try_join!(
        store.aggregate(table, range, &client_filter),
        store.aggregate(table, range, &server_filter),
    )?;
    for (slot, side, read) in [(0, Side::Client, client), (1, Side::Server, server)] {
        for aggregate in read {
            if aggregate.detected_by != side || aggregate.metrics.calls == 0 {
                continue;
            }
            let Some(key) = key_of(aggregate.key) else {
                continue;
            };
            match &mut totals.entry(key).or_default()[slot] {
                Some(total) => total.merge(&aggregate.metrics),
                none => *none = Some(aggregate.metrics),
            }
        }
    }
    Ok(totals)
}
