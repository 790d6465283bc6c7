//! Per-minute aggregation: a minute is held here until it is due to be written, a few
//! seconds after it ends, then handed to the store. Entries that come later, within the
//! late allowance, gather in a small set of late rows for that minute, written as further
//! rows of it when the allowance has passed. So memory holds one minute in full, not as many
//! as the allowance spans.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use meshscope_storage::batch::{ClosedBatch, KeyRef, RowBuilder, from_batch};
use meshscope_storage::files::hour_of;
use meshscope_storage::sketch::Binned;
use meshscope_storage::{
    EpochMillis, MetricRow, Metrics, OpenMinutes, Protocol, RecordBatch, RowKey, ServiceRef, Side,
    Table,
};
use parking_lot::{Mutex, RwLock};

/// What one entry contributes to a row.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub error: bool,
    pub error_4xx: bool,
    pub latency: Binned,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub tcp: bool,
    pub mtls: bool,
}

pub fn add_sample(metrics: &mut Metrics, sample: &Sample, apdex_threshold_ms: f64) {
    metrics.calls += 1;
    metrics.errors += u64::from(sample.error);
    metrics.errors_4xx += u64::from(sample.error_4xx);
    metrics.latency.add_binned(sample.latency);
    metrics.bytes_sent += sample.bytes_sent;
    metrics.bytes_received += sample.bytes_received;
    metrics.tcp_connections += u64::from(sample.tcp);
    metrics.mtls_calls += u64::from(sample.mtls);
    if !sample.error {
        let latency_ms = sample.latency.millis();
        if latency_ms <= apdex_threshold_ms {
            metrics.apdex_satisfied += 1;
        } else if latency_ms <= 4.0 * apdex_threshold_ms {
            metrics.apdex_tolerating += 1;
        }
    }
}

// Names are interned: rows are keyed by small numbers while a minute is open, so adding
// an entry allocates nothing and hashes a few integers. The names come back when a minute
// is closed or read.
use crate::minute_rows::{Fast, MinuteRows, Shard};

/// An interned service.
pub type ServiceId = u32;

/// What a row describes, by interned names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Not recorded by the pipeline: a service's row is made from its instances' rows.
    Service(ServiceId),
    Instance(ServiceId, u32),
    Endpoint(ServiceId, u32),
    Edge(ServiceId, ServiceId, Protocol),
}

/// Caps that keep the key space bounded whatever the proxies send.
pub struct Limits {
    pub max_endpoints_per_service: usize,
    pub max_instances_per_service: usize,
    pub max_services: usize,
    pub apdex_threshold_ms: f64,
}

pub const OVERFLOW: &str = "{overflow}";

/// A closing minute's shards of rows, to encode.
type MinuteShards = (i64, Vec<Arc<Shard>>);

/// A minute on its way to the store's files, encoded outside the lock shard by shard.
/// Each shard is read from its rows until its batches exist, then from them, so that its
/// rows are freed at once rather than after the write: holding a whole minute as rows and
/// as batches at once was the peak of memory.
#[derive(Default)]
struct Closing {
    /// The shards not yet encoded.
    rows: Vec<Arc<Shard>>,
    /// The batches of the shards encoded, on their way to the store.
    encoded: Vec<ClosedBatch>,
}

#[derive(Default)]
struct Inner {
    /// Minutes not yet written.
    minutes: BTreeMap<i64, MinuteRows>,
    /// Entries for minutes already written, not yet read: kept until the late allowance
    /// has passed, then written beside the minute's first rows.
    late: BTreeMap<i64, MinuteRows>,
    /// Minutes before this one are written: their entries go to `late`.
    written_before: i64,
    /// Minutes handed to the store but not yet in its files: still read, no longer added to.
    closing: BTreeMap<i64, Closing>,
    /// Minutes before this one are closed: entries for them are too late.
    closed_before: i64,
}

/// Strings of one kind under one service, each with its number.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32, Fast>,
    names: Vec<String>,
}

impl Interner {
    /// The name's number: itself while under the cap, else the overflow bucket's.
    fn intern(&mut self, name: &str, max: usize) -> (u32, Capped) {
        if let Some(&id) = self.ids.get(name) {
            return (id, Capped::Kept);
        }
        let (name, capped) = if self.ids.len() < max {
            (name, Capped::Kept)
        } else {
            (OVERFLOW, Capped::Overflow)
        };
        if let Some(&id) = self.ids.get(name) {
            return (id, capped);
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        (id, capped)
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }
}

/// Names seen, capped per kind; an overflow bucket takes the rest.
struct Names {
    ids: HashMap<ServiceRef, ServiceId, Fast>,
    services: Vec<ServiceRef>,
    instances: Vec<Interner>,
    endpoints: Vec<Interner>,
    /// Real services interned, not counting the overflow node.
    real_services: usize,
}

impl Names {
    fn new() -> Names {
        let mut names = Names {
            ids: HashMap::default(),
            services: Vec::new(),
            instances: Vec::new(),
            endpoints: Vec::new(),
            real_services: 0,
        };
        names.add(ServiceRef::virtual_node(OVERFLOW));
        names
    }

    fn add(&mut self, service: ServiceRef) -> ServiceId {
        let id = self.services.len() as ServiceId;
        self.ids.insert(service.clone(), id);
        self.services.push(service);
        self.instances.push(Interner::default());
        self.endpoints.push(Interner::default());
        id
    }

    fn interner(&self, kind: NameKind, service: ServiceId) -> &Interner {
        match kind {
            NameKind::Endpoint => &self.endpoints[service as usize],
            NameKind::Instance => &self.instances[service as usize],
        }
    }

    fn key(&self, slot: Slot) -> RowKey {
        let service = |id: ServiceId| self.services[id as usize].clone();
        match slot {
            Slot::Service(s) => RowKey::Service {
                service: service(s),
            },
            Slot::Instance(s, i) => RowKey::Instance {
                service: service(s),
                instance: self.instances[s as usize].names[i as usize].clone(),
            },
            Slot::Endpoint(s, e) => RowKey::Endpoint {
                service: service(s),
                endpoint: self.endpoints[s as usize].names[e as usize].clone(),
            },
            Slot::Edge(source, target, protocol) => RowKey::Edge {
                source: service(source),
                target: service(target),
                protocol,
            },
        }
    }

    fn key_ref(&self, slot: Slot) -> KeyRef<'_> {
        let service = |id: ServiceId| &self.services[id as usize];
        match slot {
            Slot::Service(s) => KeyRef::Service {
                service: service(s),
            },
            Slot::Instance(s, i) => KeyRef::Instance {
                service: service(s),
                instance: &self.instances[s as usize].names[i as usize],
            },
            Slot::Endpoint(s, e) => KeyRef::Endpoint {
                service: service(s),
                endpoint: &self.endpoints[s as usize].names[e as usize],
            },
            Slot::Edge(source, target, protocol) => KeyRef::Edge {
                source: service(source),
                target: service(target),
                protocol,
            },
        }
    }
}

/// The table a slot's own row goes to.
fn slot_table(slot: &Slot) -> Table {
    match slot {
        Slot::Service(_) => Table::ServiceMinute,
        Slot::Instance(..) => Table::InstanceMinute,
        Slot::Endpoint(..) => Table::EndpointMinute,
        Slot::Edge(..) => Table::EdgeMinute,
    }
}

/// Whether a slot's row goes to `table`; service rows are made from instance rows.
fn feeds(slot: &Slot, table: Table) -> bool {
    matches!(
        (slot, table),
        (
            Slot::Instance(..),
            Table::ServiceMinute | Table::InstanceMinute
        ) | (Slot::Endpoint(..), Table::EndpointMinute)
            | (Slot::Edge(..), Table::EdgeMinute)
    )
}

/// The overflow node's id: interned first.
const OVERFLOW_SERVICE: ServiceId = 0;

pub struct Aggregator {
    /// Tells this aggregator's entries apart in the per-thread caches.
    id: u64,
    inner: Mutex<Inner>,
    names: RwLock<Names>,
    limits: Limits,
}

static NEXT_AGGREGATOR: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum NameKind {
    Endpoint,
    Instance,
}

/// Names already looked up on this thread. Ids never change once given, so the copies are
/// never stale; they spare the shared lock, whose cache line would otherwise bounce between
/// cores several times per entry. Bounded: past the size it starts over.
#[derive(Default)]
struct LocalIds {
    owner: u64,
    services: HashMap<ServiceRef, (ServiceId, Capped), Fast>,
    names: HashMap<(NameKind, ServiceId), LocalNames, Fast>,
    len: usize,
}

type LocalNames = HashMap<String, (u32, Capped), Fast>;

const LOCAL_IDS_MAX: usize = 65_536;

impl LocalIds {
    fn claim(&mut self, owner: u64) {
        if self.owner != owner {
            *self = LocalIds {
                owner,
                ..LocalIds::default()
            };
        }
    }

    fn count_one(&mut self) {
        self.len += 1;
        if self.len > LOCAL_IDS_MAX {
            self.services.clear();
            self.names.clear();
            self.len = 0;
        }
    }
}

thread_local! {
    static LOCAL: RefCell<LocalIds> = RefCell::new(LocalIds::default());
}

/// What `Aggregator::record` did with samples it did not simply add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// In minutes closed for good: not added.
    pub too_late: usize,
    /// In minutes already written: added to their late rows.
    pub late: usize,
}

/// Whether a key was folded into an overflow bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capped {
    Kept,
    Overflow,
}

impl Aggregator {
    pub fn new(limits: Limits) -> Aggregator {
        Aggregator {
            id: NEXT_AGGREGATOR.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(Inner::default()),
            names: RwLock::new(Names::new()),
            limits,
        }
    }

    pub fn apdex_threshold_ms(&self) -> f64 {
        self.limits.apdex_threshold_ms
    }

    /// The service to record under: itself while under the cap, else the virtual
    /// overflow node, so a flood of made-up peer names cannot grow memory.
    pub fn service_id(&self, service: &ServiceRef) -> (ServiceId, Capped) {
        LOCAL.with_borrow_mut(|local| {
            local.claim(self.id);
            if let Some(&found) = local.services.get(service) {
                return found;
            }
            let found = self.shared_service_id(service);
            local.count_one();
            local.services.insert(service.clone(), found);
            found
        })
    }

    fn shared_service_id(&self, service: &ServiceRef) -> (ServiceId, Capped) {
        if let Some(&id) = self.names.read().ids.get(service) {
            return (id, Capped::Kept);
        }
        let mut names = self.names.write();
        if let Some(&id) = names.ids.get(service) {
            return (id, Capped::Kept);
        }
        if names.real_services >= self.limits.max_services {
            return (OVERFLOW_SERVICE, Capped::Overflow);
        }
        names.real_services += 1;
        (names.add(service.clone()), Capped::Kept)
    }

    /// The endpoint's number under `service`, or the overflow bucket's past the cap.
    pub fn endpoint_id(&self, service: ServiceId, endpoint: &str) -> (u32, Capped) {
        self.name_id(NameKind::Endpoint, service, endpoint)
    }

    pub fn instance_id(&self, service: ServiceId, instance: &str) -> (u32, Capped) {
        self.name_id(NameKind::Instance, service, instance)
    }

    fn name_id(&self, kind: NameKind, service: ServiceId, name: &str) -> (u32, Capped) {
        LOCAL.with_borrow_mut(|local| {
            local.claim(self.id);
            let names = local.names.entry((kind, service)).or_default();
            if let Some(&found) = names.get(name) {
                return found;
            }
            let found = self.shared_name_id(kind, service, name);
            names.insert(name.to_string(), found);
            local.count_one();
            found
        })
    }

    fn shared_name_id(&self, kind: NameKind, service: ServiceId, name: &str) -> (u32, Capped) {
        let max = match kind {
            NameKind::Endpoint => self.limits.max_endpoints_per_service,
            NameKind::Instance => self.limits.max_instances_per_service,
        };
        {
            let names = self.names.read();
            let interner = names.interner(kind, service);
            if let Some(id) = interner.get(name) {
                return (id, Capped::Kept);
            }
            // Past the cap with the bucket made: no need to wait for the write lock.
            if interner.ids.len() > max
                && let Some(id) = interner.get(OVERFLOW)
            {
                return (id, Capped::Overflow);
            }
        }
        let mut names = self.names.write();
        let interner = match kind {
            NameKind::Endpoint => &mut names.endpoints[service as usize],
            NameKind::Instance => &mut names.instances[service as usize],
        };
        interner.intern(name, max)
    }

    /// The service behind an id.
    pub fn service(&self, id: ServiceId) -> ServiceRef {
        self.names.read().services[id as usize].clone()
    }

    /// Adds samples; says how many fell in minutes already closed (they are not added) and
    /// how many in minutes already written (added to their late rows).
    pub fn record(&self, samples: &[(i64, Slot, Side, Sample)]) -> Recorded {
        let threshold = self.limits.apdex_threshold_ms;
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut recorded = Recorded::default();
        // Samples of one message nearly all fall in one minute: find it once per run.
        for run in samples.chunk_by(|a, b| a.0 == b.0) {
            let minute = run[0].0;
            if minute < inner.closed_before {
                recorded.too_late += run.len();
                continue;
            }
            let rows = if minute < inner.written_before {
                recorded.late += run.len();
                inner.late.entry(minute).or_default()
            } else {
                inner.minutes.entry(minute).or_default()
            };
            for (_, slot, side, sample) in run {
                add_sample(rows.row(*slot, *side), sample, threshold);
            }
        }
        recorded
    }

    /// Hands over, encoded for the store, every minute before `first_unwritten` and the
    /// late rows of minutes before `first_open`; entries for minutes before `first_open`
    /// are refused from then on. The written minutes stay readable until
    /// `finish_closing`, which the caller calls once the store holds them (or has failed
    /// to), so that no read misses them in between. The encoding runs outside the lock
    /// that entries wait on, and straight from the open rows, a shard at a time.
    pub fn close(
        &self,
        first_unwritten: i64,
        first_open: i64,
    ) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        self.close_after(first_unwritten, first_open, || ())
    }

    /// `close`, calling `switched` once the minutes no longer take entries as main rows
    /// (or at all) and before they are encoded.
    pub fn close_after(
        &self,
        first_unwritten: i64,
        first_open: i64,
        switched: impl FnOnce(),
    ) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        let (written, late) = self.begin_closing(first_unwritten, first_open);
        switched();
        let mut batches = Vec::new();
        for (minute, shards) in written {
            for shard in shards {
                batches.extend(self.encode_shard(minute, shard)?);
            }
        }
        let names = self.names.read();
        for (minute, rows) in late {
            minute_batches(&names, minute, rows.shards(), &mut batches)?;
        }
        Ok(batches)
    }

    /// Moves the minutes to write into `closing` as shards of rows, and takes the late
    /// rows whose allowance has passed.
    fn begin_closing(
        &self,
        first_unwritten: i64,
        first_open: i64,
    ) -> (Vec<MinuteShards>, BTreeMap<i64, MinuteRows>) {
        let first_unwritten = first_unwritten.max(first_open);
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let keep = inner.minutes.split_off(&first_unwritten);
        let written = std::mem::replace(&mut inner.minutes, keep);
        inner.written_before = inner.written_before.max(first_unwritten);
        let keep = inner.late.split_off(&first_open);
        let late = std::mem::replace(&mut inner.late, keep);
        inner.closed_before = inner.closed_before.max(first_open);
        let written = written
            .into_iter()
            .map(|(minute, rows)| {
                let shards: Vec<Arc<Shard>> = rows
                    .into_shards()
                    .into_iter()
                    .filter(|shard| !shard.is_empty())
                    .map(Arc::new)
                    .collect();
                let closing = Closing {
                    rows: shards.clone(),
                    encoded: Vec::new(),
                };
                inner.closing.insert(minute, closing);
                (minute, shards)
            })
            .collect();
        (written, late)
    }

    /// Encodes one shard of a closing minute; from then on reads find it as batches, and
    /// its rows are freed.
    fn encode_shard(
        &self,
        minute: i64,
        shard: Arc<Shard>,
    ) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        let mut encoded = Vec::new();
        minute_batches(&self.names.read(), minute, [&*shard], &mut encoded)?;
        let done = {
            let mut inner = self.inner.lock();
            let closing = inner.closing.entry(minute).or_default();
            let at = closing.rows.iter().position(|s| Arc::ptr_eq(s, &shard));
            closing.encoded.extend(encoded.iter().cloned());
            at.map(|at| closing.rows.swap_remove(at))
        };
        // The shard's last holders: freed here, outside the lock.
        drop((done, shard));
        Ok(encoded)
    }

    /// `close` with nothing written early: every minute is held until `first_open`.
    pub fn close_before(&self, first_open: i64) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        self.close(first_open, first_open)
    }

    /// Rows held: the minutes not yet written and the late rows.
    pub fn open_row_count(&self) -> usize {
        let inner = self.inner.lock();
        inner
            .minutes
            .values()
            .chain(inner.late.values())
            .map(MinuteRows::len)
            .sum()
    }

    /// Forgets the minutes `close_before` handed out.
    pub fn finish_closing(&self) {
        let closing = std::mem::take(&mut self.inner.lock().closing);
        // Freed outside the lock: dropping a large minute takes a while.
        drop(closing);
    }

    /// A copy of the rows held (late rows last), for tests and benchmarks.
    pub fn snapshot(&self) -> Vec<MetricRow> {
        let inner = self.inner.lock();
        let names = self.names.read();
        let mut rows = Vec::new();
        for (minute, closing) in &inner.closing {
            push_rows(
                &names,
                *minute,
                closing.rows.iter().flat_map(|s| s.iter()),
                &mut rows,
            );
            for closed in &closing.encoded {
                // Encoded by this aggregator a moment ago: they read back.
                if let Ok(decoded) = from_batch(closed.table, &closed.batch) {
                    rows.extend(decoded);
                }
            }
        }
        for (minute, keys) in inner.minutes.iter().chain(&inner.late) {
            push_rows(&names, *minute, keys.iter(), &mut rows);
        }
        rows
    }

    /// The first minute that still accepts entries.
    pub fn closed_before(&self) -> i64 {
        self.inner.lock().closed_before
    }

    /// Closes everything, for shutdown.
    pub fn drain(&self) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        let (closing, open, late) = {
            let mut inner = self.inner.lock();
            (
                std::mem::take(&mut inner.closing),
                std::mem::take(&mut inner.minutes),
                std::mem::take(&mut inner.late),
            )
        };
        let names = self.names.read();
        let mut batches = Vec::new();
        for (minute, closing) in closing {
            batches.extend(closing.encoded);
            let shards: Vec<&Shard> = closing.rows.iter().map(|s| &**s).collect();
            minute_batches(&names, minute, shards, &mut batches)?;
        }
        for (minute, rows) in open.iter().chain(&late) {
            minute_batches(&names, *minute, rows.shards(), &mut batches)?;
        }
        Ok(batches)
    }

    /// The rows of `tables` in one open or closing minute, copied under one hold of the
    /// lock (so that the tables agree) and only for the copy, not for the Arrow encoding;
    /// and, of a closing minute's shards already encoded, their batches of each table.
    fn rows_of(&self, minute: i64, tables: &[Table]) -> MinuteRead {
        let inner = self.inner.lock();
        let wanted =
            |((slot, _), _): &(&(Slot, Side), &Metrics)| tables.iter().any(|t| feeds(slot, *t));
        let copy = |(k, m): (&(Slot, Side), &Metrics)| (*k, m.clone());
        if let Some(rows) = inner.minutes.get(&minute) {
            return MinuteRead {
                rows: rows.iter().filter(wanted).map(copy).collect(),
                encoded: Vec::new(),
            };
        }
        let Some(closing) = inner.closing.get(&minute) else {
            return MinuteRead::default();
        };
        MinuteRead {
            rows: closing
                .rows
                .iter()
                .flat_map(|s| s.iter())
                .filter(wanted)
                .map(copy)
                .collect(),
            encoded: tables
                .iter()
                .map(|table| {
                    closing
                        .encoded
                        .iter()
                        .filter(|b| b.table == *table)
                        .map(|b| b.batch.clone())
                        .collect()
                })
                .collect(),
        }
    }
}

impl OpenMinutes for Aggregator {
    fn open_batches(
        &self,
        tables: &[Table],
        from: EpochMillis,
    ) -> meshscope_storage::Result<Vec<Vec<RecordBatch>>> {
        let minutes: Vec<i64> = {
            let inner = self.inner.lock();
            inner
                .closing
                .keys()
                .chain(inner.minutes.keys())
                .copied()
                .filter(|m| *m >= from)
                .collect()
        };
        let mut builders: Vec<RowBuilder> = tables.iter().map(|t| RowBuilder::new(*t)).collect();
        let mut encoded: Vec<Vec<RecordBatch>> = tables.iter().map(|_| Vec::new()).collect();
        // One minute at a time, so that at most one minute of these tables is copied.
        for minute in minutes {
            let MinuteRead {
                rows,
                encoded: read,
            } = self.rows_of(minute, tables);
            for (into, batches) in encoded.iter_mut().zip(read) {
                into.extend(batches);
            }
            let names = self.names.read();
            for (table, builder) in tables.iter().zip(&mut builders) {
                if *table == Table::ServiceMinute {
                    let services = service_rows(rows.iter().map(|(key, m)| (key, m)));
                    for ((service, side), metrics) in &services {
                        builder.push(
                            minute,
                            names.key_ref(Slot::Service(*service)),
                            *side,
                            metrics,
                        );
                    }
                } else {
                    for ((slot, side), metrics) in &rows {
                        if feeds(slot, *table) {
                            builder.push(minute, names.key_ref(*slot), *side, metrics);
                        }
                    }
                }
            }
        }
        builders
            .into_iter()
            .zip(encoded)
            .map(|(builder, mut batches)| {
                if !builder.is_empty() {
                    batches.push(builder.finish()?);
                }
                Ok(batches)
            })
            .collect()
    }
}

/// What a read of one minute found: rows not yet encoded, and per table asked, the
/// batches of a closing minute's shards already encoded.
#[derive(Default)]
struct MinuteRead {
    rows: Vec<((Slot, Side), Metrics)>,
    encoded: Vec<Vec<RecordBatch>>,
}

/// Each service's rows, per side: the sum of its instances' rows.
fn service_rows<'a>(
    rows: impl Iterator<Item = (&'a (Slot, Side), &'a Metrics)>,
) -> HashMap<(ServiceId, Side), Metrics, Fast> {
    let mut services: HashMap<(ServiceId, Side), Metrics, Fast> = HashMap::default();
    for ((slot, side), metrics) in rows {
        if let Slot::Instance(service, _) = slot {
            services
                .entry((*service, *side))
                .or_default()
                .merge(metrics);
        }
    }
    services
}

/// One minute's rows with their names, and each service's row made from its instances'.
fn push_rows<'a>(
    names: &Names,
    minute: i64,
    keys: impl Iterator<Item = (&'a (Slot, Side), &'a Metrics)> + Clone,
    rows: &mut Vec<MetricRow>,
) {
    let services = service_rows(keys.clone());
    for (&(slot, side), metrics) in keys {
        rows.push(MetricRow {
            minute,
            key: names.key(slot),
            side,
            metrics: metrics.clone(),
        });
    }
    for ((service, side), metrics) in services {
        rows.push(MetricRow {
            minute,
            key: names.key(Slot::Service(service)),
            side,
            metrics,
        });
    }
}

/// Rows of one minute, from whole shards, encoded per table, each service's row made from
/// its instances'. A service's instances share a shard, so any set of whole shards makes
/// whole service rows.
fn minute_batches<'a>(
    names: &Names,
    minute: i64,
    shards: impl IntoIterator<Item = &'a Shard> + Clone,
    out: &mut Vec<ClosedBatch>,
) -> meshscope_storage::Result<()> {
    let keys = || shards.clone().into_iter().flatten();
    let builder_of = |table: Table| Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
    let services = service_rows(keys());
    let mut rows = [0usize; Table::ALL.len()];
    for ((slot, _), _) in keys() {
        rows[builder_of(slot_table(slot))] += 1;
    }
    rows[builder_of(Table::ServiceMinute)] += services.len();
    let mut builders =
        Table::ALL.map(|table| RowBuilder::with_capacity(table, rows[builder_of(table)]));
    for (&(slot, side), metrics) in keys() {
        let key = names.key_ref(slot);
        builders[builder_of(key.table())].push(minute, key, side, metrics);
    }
    let service_builder = &mut builders[builder_of(Table::ServiceMinute)];
    for ((service, side), metrics) in services {
        service_builder.push(
            minute,
            names.key_ref(Slot::Service(service)),
            side,
            &metrics,
        );
    }
    for (table, builder) in Table::ALL.into_iter().zip(builders) {
        if !builder.is_empty() {
            out.push(ClosedBatch {
                table,
                hour: hour_of(minute),
                batch: builder.finish()?,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the store would read back from closed batches.
    fn decoded(batches: &[ClosedBatch]) -> Vec<MetricRow> {
        batches
            .iter()
            .flat_map(|b| meshscope_storage::batch::from_batch(b.table, &b.batch).unwrap())
            .collect()
    }

    fn limits() -> Limits {
        Limits {
            max_endpoints_per_service: 2,
            max_instances_per_service: 2,
            max_services: 3,
            apdex_threshold_ms: 100.0,
        }
    }

    #[test]
    fn apdex_counts_satisfied_and_tolerating_and_never_errors() {
        let mut m = Metrics::default();
        let cases = [
            (50.0, false),  // satisfied
            (100.0, false), // satisfied at T
            (250.0, false), // tolerating
            (400.0, false), // tolerating at 4T
            (401.0, false), // frustrated
            (10.0, true),   // fast but failed: frustrated
        ];
        for (latency_ms, error) in cases {
            let sample = Sample {
                latency: Binned::new(latency_ms),
                error,
                ..Default::default()
            };
            add_sample(&mut m, &sample, 100.0);
        }
        assert_eq!((m.calls, m.errors), (6, 1));
        assert_eq!((m.apdex_satisfied, m.apdex_tolerating), (2, 2));
    }

    #[test]
    fn minutes_close_in_order_and_late_rows_are_refused() {
        let agg = Aggregator::new(limits());
        let (a, _) = agg.service_id(&ServiceRef::service("", "a"));
        let key = Slot::Service(a);
        let sample = Sample::default();
        assert_eq!(
            agg.record(&[
                (0, key, Side::Server, sample),
                (60_000, key, Side::Server, sample),
                (60_000, key, Side::Client, sample),
            ]),
            Recorded::default()
        );
        assert_eq!(
            agg.open_row_count(),
            3,
            "one row in minute 0, two in minute 1"
        );
        let closed = decoded(&agg.close_before(60_000).unwrap());
        assert_eq!(
            agg.open_row_count(),
            2,
            "a closing minute is no longer open"
        );
        assert_eq!(
            agg.open_batches(&[Table::ServiceMinute], 60_000).unwrap()[0].len(),
            0,
            "open service rows are made from instance rows only"
        );
        let closing = agg.open_batches(&[Table::ServiceMinute], 0).unwrap();
        assert_eq!(
            closing[0].iter().map(RecordBatch::num_rows).sum::<usize>(),
            1,
            "a closing minute is read from the batches on their way to the store"
        );
        assert_eq!(
            agg.snapshot().len(),
            3,
            "a closing minute stays readable until the store has it"
        );
        agg.finish_closing();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].minute, 0);
        assert_eq!(
            closed[0].key,
            RowKey::Service {
                service: ServiceRef::service("", "a")
            }
        );
        // Minute 0 is closed: a late row for it is refused, minute 1 still takes rows.
        assert_eq!(
            agg.record(&[
                (0, key, Side::Server, sample),
                (60_000, key, Side::Server, sample),
            ]),
            Recorded {
                too_late: 1,
                late: 0
            }
        );
        let open = agg.snapshot();
        assert_eq!(open.len(), 2, "server and client rows of minute 1");
        let server = open.iter().find(|r| r.side == Side::Server).unwrap();
        assert_eq!(server.metrics.calls, 2);
        assert_eq!(decoded(&agg.drain().unwrap()).len(), 2);
        assert!(agg.snapshot().is_empty());
    }

    #[test]
    fn entries_for_a_written_minute_become_its_late_rows() {
        let agg = Aggregator::new(limits());
        let (a, _) = agg.service_id(&ServiceRef::service("", "a"));
        let (b, _) = agg.service_id(&ServiceRef::service("", "b"));
        let edge = Slot::Edge(a, b, Protocol::Http);
        let slow = Sample {
            latency: Binned::new(900.0),
            error: true,
            ..Sample::default()
        };
        agg.record(&[(0, edge, Side::Server, Sample::default())]);
        agg.record(&[(60_000, edge, Side::Server, Sample::default())]);
        // Minute 0 is written, minute 1 not yet; nothing is closed for good.
        let written = decoded(&agg.close(60_000, 0).unwrap());
        agg.finish_closing();
        assert_eq!(written.len(), 1);
        assert_eq!((written[0].minute, written[0].metrics.calls), (0, 1));
        assert_eq!(agg.open_row_count(), 1, "only minute 1 is held");
        assert_eq!(
            agg.record(&[
                (0, edge, Side::Server, slow),
                (0, edge, Side::Server, slow),
                (60_000, edge, Side::Server, Sample::default()),
            ]),
            Recorded {
                too_late: 0,
                late: 2
            }
        );
        assert_eq!(
            agg.open_batches(&[Table::EdgeMinute], 0).unwrap()[0][0].num_rows(),
            1,
            "late rows are not read before they are written"
        );
        // Writing minute 1 leaves minute 0's late rows alone until its allowance passes.
        let written = decoded(&agg.close(120_000, 0).unwrap());
        agg.finish_closing();
        assert_eq!(written.len(), 1);
        assert_eq!((written[0].minute, written[0].metrics.calls), (60_000, 2));
        let late = decoded(&agg.close(120_000, 60_000).unwrap());
        assert_eq!(late.len(), 1);
        let row = &late[0];
        assert_eq!((row.minute, row.side), (0, Side::Server));
        assert_eq!((row.metrics.calls, row.metrics.errors), (2, 2));
        assert_eq!(row.metrics.latency.count(), 2);
        assert_eq!(agg.open_row_count(), 0);
        assert_eq!(
            agg.record(&[(0, edge, Side::Server, slow)]),
            Recorded {
                too_late: 1,
                late: 0
            },
            "past the allowance, minute 0 is closed for good"
        );
    }

    #[test]
    fn caps_fold_the_rest_into_overflow() {
        let agg = Aggregator::new(limits());
        let (svc, _) = agg.service_id(&ServiceRef::service("", "a"));
        let ids: Vec<_> = ["/1", "/2", "/3", "/4", "/1"]
            .iter()
            .map(|e| agg.endpoint_id(svc, e))
            .collect();
        assert_eq!(
            ids,
            vec![
                (0, Capped::Kept),
                (1, Capped::Kept),
                (2, Capped::Overflow),
                (2, Capped::Overflow),
                (0, Capped::Kept),
            ]
        );
        agg.record(&[(0, Slot::Endpoint(svc, 2), Side::Server, Sample::default())]);
        assert_eq!(
            agg.snapshot()[0].key,
            RowKey::Endpoint {
                service: ServiceRef::service("", "a"),
                endpoint: OVERFLOW.to_string()
            }
        );
        for name in ["b", "c"] {
            assert_eq!(
                agg.service_id(&ServiceRef::service("", name)).1,
                Capped::Kept
            );
        }
        let (overflow, how) = agg.service_id(&ServiceRef::service("", "d"));
        assert_eq!(how, Capped::Overflow);
        assert_eq!(agg.service(overflow), ServiceRef::virtual_node(OVERFLOW));
        // Names under the cap keep their numbers.
        assert_eq!(
            agg.service_id(&ServiceRef::service("", "a")),
            (svc, Capped::Kept)
        );
    }

    #[test]
    fn a_service_row_is_the_sum_of_its_instance_rows() {
        let agg = Aggregator::new(limits());
        let (a, _) = agg.service_id(&ServiceRef::service("", "a"));
        let (one, _) = agg.instance_id(a, "10.0.0.1:80");
        let (two, _) = agg.instance_id(a, "10.0.0.2:80");
        let slow = Sample {
            latency: Binned::new(300.0),
            error: true,
            ..Default::default()
        };
        let fast = Sample {
            latency: Binned::new(3.0),
            ..Default::default()
        };
        agg.record(&[
            (0, Slot::Instance(a, one), Side::Server, fast),
            (0, Slot::Instance(a, one), Side::Server, fast),
            (0, Slot::Instance(a, two), Side::Server, slow),
            (0, Slot::Instance(a, two), Side::Client, fast),
            (60_000, Slot::Instance(a, two), Side::Client, fast),
        ]);
        // What a read sees before the minute closes: the same rows, straight from here.
        let open = agg.open_batches(&[Table::ServiceMinute], 0).unwrap();
        let read = meshscope_storage::batch::from_batch(Table::ServiceMinute, &open[0][0]).unwrap();
        let calls = |minute: i64, side: Side| {
            read.iter()
                .find(|r| r.minute == minute && r.side == side)
                .map(|r| (r.metrics.calls, r.metrics.errors, r.metrics.latency.count()))
        };
        assert_eq!(read.len(), 3);
        assert_eq!(calls(0, Side::Server), Some((3, 1, 3)));
        assert_eq!(calls(0, Side::Client), Some((1, 0, 1)));
        assert_eq!(calls(60_000, Side::Client), Some((1, 0, 1)));
        let later = agg.open_batches(&[Table::InstanceMinute], 60_000).unwrap();
        assert_eq!(
            later[0][0].num_rows(),
            1,
            "minutes before `from` are left out"
        );
        let rows = decoded(&agg.close_before(60_000).unwrap());
        let service = |side| {
            rows.iter()
                .find(|r| r.side == side && matches!(r.key, RowKey::Service { .. }))
                .map(|r| &r.metrics)
                .unwrap()
        };
        assert_eq!(rows.len(), 5, "three instance rows and two service rows");
        let server = service(Side::Server);
        assert_eq!((server.calls, server.errors), (3, 1));
        assert_eq!(server.latency.count(), 3);
        assert!(server.latency.quantile(1.0).unwrap() > 290.0);
        assert_eq!(service(Side::Client).calls, 1);
    }

    /// A row as a line of key and counts.
    fn line(r: &MetricRow) -> String {
        let m = &r.metrics;
        format!(
            "{:?} {:?} {} {} {}",
            r.key,
            r.side,
            m.calls,
            m.errors,
            m.latency.count()
        )
    }

    /// Every row of a minute, by table, as reads see it: sorted lines of key and counts.
    fn read_all(agg: &Aggregator) -> Vec<Vec<String>> {
        let open = agg.open_batches(&Table::ALL, 0).unwrap();
        open.iter()
            .zip(Table::ALL)
            .map(|(batches, table)| {
                let mut lines: Vec<String> = batches
                    .iter()
                    .flat_map(|b| from_batch(table, b).unwrap())
                    .map(|r| line(&r))
                    .collect();
                lines.sort();
                lines
            })
            .collect()
    }

    #[test]
    fn a_minute_read_halfway_through_its_encoding_gives_every_row_once() {
        let agg = Aggregator::new(Limits {
            max_endpoints_per_service: 100,
            max_instances_per_service: 10,
            max_services: 100,
            apdex_threshold_ms: 100.0,
        });
        let mut samples = Vec::new();
        for s in 0..40 {
            let (service, _) = agg.service_id(&ServiceRef::service("ns", format!("svc-{s}")));
            let (next, _) = agg.service_id(&ServiceRef::service("ns", format!("svc-{}", s + 1)));
            for i in 0..3 {
                let (instance, _) = agg.instance_id(service, &format!("10.0.{s}.{i}:80"));
                let (endpoint, _) = agg.endpoint_id(service, &format!("/api/{i}"));
                let sample = Sample {
                    latency: Binned::new(f64::from(s * 3 + i)),
                    error: i == 2,
                    ..Sample::default()
                };
                for _ in 0..=i {
                    samples.push((0, Slot::Instance(service, instance), Side::Server, sample));
                    samples.push((0, Slot::Endpoint(service, endpoint), Side::Server, sample));
                    samples.push((
                        0,
                        Slot::Edge(service, next, Protocol::Http),
                        Side::Client,
                        sample,
                    ));
                }
            }
        }
        agg.record(&samples);
        let before = read_all(&agg);
        assert_eq!(before[0].len(), 40, "a service row each");
        assert_eq!(before[1].len(), 120, "three instance rows each");

        let (mut written, _) = agg.begin_closing(60_000, 60_000);
        let (minute, shards) = written.pop().unwrap();
        assert!(shards.len() > 4, "40 services spread over shards");
        let half = shards.len() / 2;
        for shard in shards.into_iter().take(half) {
            agg.encode_shard(minute, shard).unwrap();
        }
        let halfway = read_all(&agg);
        assert_eq!(
            halfway, before,
            "half rows, half batches: the same rows, once each"
        );
        assert_eq!(
            agg.snapshot().len(),
            before.iter().map(Vec::len).sum::<usize>()
        );
        // A minute not yet in the store's files when the server stops is written whole,
        // the encoded shards and the rest.
        let batches = agg.drain().unwrap();
        let mut drained: Vec<String> = decoded(&batches)
            .iter()
            .filter(|r| matches!(r.key, RowKey::Service { .. }))
            .map(line)
            .collect();
        drained.sort();
        assert_eq!(drained, before[0]);
        assert_eq!(
            decoded(&batches).len(),
            before.iter().map(Vec::len).sum::<usize>()
        );
    }
}
