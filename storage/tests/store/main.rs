//! The store against a real data directory: durability, server-over-client reads, rollups,
//! retention, proxy statistics and read-only SQL. One test binary, one module per concern.

mod block_summaries;
mod collector_members;
mod later_columns;
mod moving_windows;
mod proxy_metrics;
mod shared_store;
mod sql;
mod support;
mod trailing_hours;
mod upkeep;
mod upkeep_lease;
mod writes_and_reads;
