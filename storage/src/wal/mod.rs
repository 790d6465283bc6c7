//! A write-ahead log of opaque records: segments of length-prefixed, CRC-checked records
//! under one directory, appended to through a shared buffer and made durable by group
//! commit, then read back in order at start.
//!
//! It lives in the storage crate because it is a file format and a durability mechanism,
//! like the Parquet files beside it, and because nothing in it depends on what the records
//! hold: a record is a stream number, a time and bytes. The collector decides what it logs
//! (the protobuf messages proxies send) and how to replay them; the store only keeps them
//! safe and hands them back. Records are grouped by stream, and each stream's header (what
//! the collector needs to read its later records) is written again at the start of every
//! segment the stream writes into, so that a segment can be read, and older ones deleted,
//! on its own.

mod commit;
pub mod direct_file;
mod error;
pub mod reader;
pub mod record;
pub mod segment;
pub mod stats;
pub mod writer;

pub use commit::SLOW_DISK_ENV;
pub use error::WalError;
pub use reader::{ReadRecord, ReplaySummary, SkippedSegments, read_log, read_log_from};
pub use record::{Position, RecordKind, StreamId};
pub use segment::SegmentInfo;
pub use writer::{SyncPolicy, WalConfig, WalWriter};
