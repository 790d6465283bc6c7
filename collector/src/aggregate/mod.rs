//! Per-minute aggregation: a minute is held here until it is due to be written, a few
//! seconds after it ends, then handed to the store. Entries that come later, within the
//! late allowance, gather in a small set of late rows for that minute, written as further
//! rows of it when the allowance has passed. So memory holds one minute in full, not as many
//! as the allowance spans.
//!
//! One idea per module, each using only the ones listed before it:
//! - `slot`: what a row describes, by interned names;
//! - `sample`: what one entry adds to a row;
//! - `interned_names`: names to small numbers and back, capped, with per-thread caches;
//! - `minute_rows`: one minute's rows, in shards;
//! - `aggregator`: the [`Aggregator`], its held minutes, and recording samples into them;
//! - `closing`: closing minutes and encoding them for the store;
//! - `unclosed_reads`: reads of the minutes not yet closed;
//! - `checkpoint_rows`: the unclosed minutes copied for a checkpoint, and put back.

mod aggregator;
mod checkpoint_rows;
mod closing;
mod interned_names;
mod minute_rows;
mod sample;
mod slot;
mod unclosed_reads;

pub use aggregator::{Aggregator, Limits, Recorded};
pub use checkpoint_rows::{CheckpointRow, UnclosedCopy, UnclosedRows};
pub use interned_names::{Capped, OVERFLOW};
pub use sample::{PairFigures, Sample, SettledCall, add_pair, add_sample, add_settled};
pub use slot::{ServiceId, Slot};
