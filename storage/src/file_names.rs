//! What a data file's name says: the order names are made in, the temporary name a file
//! is written under, the final name that carries the times it holds, and the partition
//! its directory stands for.

use chrono::NaiveDate;
use object_store::path::Path;

use crate::model::EpochMillis;

/// File names start with a time and a counter (`<ms>-<n>`), then the writer's id when the
/// store has one (`<ms>-<n>-<writer>`), so that writers sharing a store never make the same
/// name. Each new name comes after every name seen or made before, also when the clock is
/// behind them (a restart after the clock was set back, or a test's clock). Upkeep relies
/// on the order: a day's rollup is due again when one of its hours was rolled up after it.
#[derive(Debug, Default)]
pub(crate) struct StemSequence {
    last: parking_lot::Mutex<(i64, u64)>,
    writer: String,
}

impl StemSequence {
    /// Names made by the writer `writer` (empty: names without a writer).
    pub(crate) fn for_writer(writer: &str) -> Self {
        Self {
            last: parking_lot::Mutex::default(),
            writer: writer.to_owned(),
        }
    }

    pub(crate) fn next(&self, now_ms: i64) -> String {
        let mut last = self.last.lock();
        *last = if now_ms > last.0 {
            (now_ms, 0)
        } else {
            (last.0, last.1 + 1)
        };
        match self.writer.as_str() {
            "" => format!("{}-{:06}", last.0, last.1),
            writer => format!("{}-{:06}-{writer}", last.0, last.1),
        }
    }

    /// Whether a name found in the store was made by this writer: it carries this
    /// writer's id, or none (names from before the store had writers).
    pub(crate) fn is_own(&self, name: &str) -> bool {
        writer_of(name).is_none_or(|writer| writer == self.writer)
    }

    /// Notes a name found on disk, so that new names come after it.
    pub(crate) fn observe(&self, name: &str) {
        if let Some(order) = stem_order(name) {
            let mut last = self.last.lock();
            *last = (*last).max(order);
        }
    }
}

/// The order of a file's name: the time and counter it starts with.
pub(crate) fn stem_order(name: &str) -> Option<(i64, u64)> {
    let name = name.strip_prefix('.').unwrap_or(name);
    let stem = name.split(['_', '.']).next()?;
    let (ms, rest) = stem.split_once('-')?;
    let counter = rest.split('-').next()?;
    Some((ms.parse().ok()?, counter.parse().ok()?))
}

/// The id of the writer that made a file, from its name (`<ms>-<n>-<writer>…`); `None`
/// for a name without one.
pub(crate) fn writer_of(name: &str) -> Option<&str> {
    let name = name.strip_prefix('.').unwrap_or(name);
    let stem = name.split(['_', '.']).next()?;
    let (_, rest) = stem.split_once('-')?;
    let (_, writer) = rest.split_once('-')?;
    Some(writer)
}

pub(crate) const TEMPORARY_SUFFIX: &str = ".parquet.tmp";

/// Where a file written under `stem` becomes visible. The times go in the name, so that a
/// restart knows them without opening the file.
pub(crate) fn visible_path(
    dir: &str,
    stem: &str,
    times: Option<(EpochMillis, EpochMillis)>,
) -> Path {
    match times {
        Some((lo, hi)) => Path::from(format!("{dir}/{stem}_t{lo}_{hi}.parquet")),
        None => Path::from(format!("{dir}/{stem}.parquet")),
    }
}

pub(crate) fn temporary_path(dir: &str, stem: &str) -> Path {
    Path::from(format!("{dir}/.{stem}{TEMPORARY_SUFFIX}"))
}

/// Start of the partition a path lies in, from its `date=` and optional `hour=` parts.
pub(crate) fn partition_of(path: &Path) -> Option<EpochMillis> {
    let mut date = None;
    let mut hour = 0;
    for part in path.parts() {
        let part = part.as_ref();
        if let Some(value) = part.strip_prefix("date=") {
            date = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok();
        } else if let Some(value) = part.strip_prefix("hour=") {
            hour = value.parse::<u32>().ok().filter(|h| *h < 24)?;
        }
    }
    Some(date?.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_millis())
}

/// The times a file's name says it holds, when they lie inside its partition.
pub(crate) fn times_in_name(
    name: &str,
    partition: EpochMillis,
    span: EpochMillis,
) -> Option<(EpochMillis, EpochMillis)> {
    let (_, times) = name.strip_suffix(".parquet")?.split_once("_t")?;
    let (lo, hi) = times.split_once('_')?;
    let (lo, hi) = (
        lo.parse::<EpochMillis>().ok()?,
        hi.parse::<EpochMillis>().ok()?,
    );
    let end = partition + span;
    (partition <= lo && lo <= hi && hi < end).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: EpochMillis = 3_600_000;

    #[test]
    fn times_in_a_name_are_read_only_inside_their_partition() {
        let hour = 1_763_856_000_000;
        let name = format!("1-000001_t{}_{}.parquet", hour + 60_000, hour + 120_000);
        assert_eq!(
            times_in_name(&name, hour, HOUR_MS),
            Some((hour + 60_000, hour + 120_000))
        );
        assert_eq!(times_in_name(&name, hour + HOUR_MS, HOUR_MS), None);
        assert_eq!(times_in_name("1-000001.parquet", hour, HOUR_MS), None);
        assert_eq!(times_in_name("1-000001_tx_y.parquet", hour, HOUR_MS), None);
        let reversed = format!("1-000001_t{}_{}.parquet", hour + 9, hour + 1);
        assert_eq!(times_in_name(&reversed, hour, HOUR_MS), None);
    }

    #[test]
    fn names_are_ordered_by_time_then_counter_even_when_the_clock_goes_back() {
        assert_eq!(stem_order(".12-000003.parquet.tmp"), Some((12, 3)));
        assert_eq!(stem_order("12-000004_t1_2.parquet"), Some((12, 4)));
        assert_eq!(stem_order("12-000005.json"), Some((12, 5)));
        assert_eq!(stem_order("ballast"), None);
        let stems = StemSequence::default();
        stems.observe("100-000007_t1_2.parquet");
        assert_eq!(stems.next(50), "100-000008");
        assert_eq!(stems.next(100), "100-000009");
        assert_eq!(stems.next(101), "101-000000");
    }

    #[test]
    fn a_writer_names_its_files_and_knows_them_from_others() {
        let stems = StemSequence::for_writer("collector-a1");
        let stem = stems.next(7);
        assert_eq!(stem, "7-000000-collector-a1");
        let name = format!("{stem}_t1_2.parquet");
        assert_eq!(stem_order(&name), Some((7, 0)));
        assert_eq!(writer_of(&name), Some("collector-a1"));
        assert_eq!(
            writer_of(&format!(".{stem}.parquet.tmp")),
            Some("collector-a1")
        );
        assert!(stems.is_own(&name));
        assert!(
            stems.is_own("7-000001_t1_2.parquet"),
            "a name without a writer"
        );
        assert!(!stems.is_own("7-000001-collector-b_t1_2.parquet"));
        let other = StemSequence::for_writer("b");
        other.observe(&name);
        assert_eq!(other.next(1), "7-000001-b");
    }
}
