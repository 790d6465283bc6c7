//! Parquet files that cannot be read, found at start and moved aside to
//! `<data-dir>/quarantine/` (under the same relative path, with a `.reason` file beside
//! each), so that the rest is served. Each is logged with its reason and counted in
//! `/metrics` (`meshscope_quarantined_files_total{kind="parquet"}`).
//!
//! What is checked is what a reader needs before it reads a row: the footer (a file cut
//! short or overwritten at its end has none) and that every column chunk it lists lies
//! within the file. Damage inside a page the footer still describes shows only when the
//! page is read.

use std::path::{Path as FsPath, PathBuf};

use datafusion::parquet::file::metadata::ParquetMetaDataReader;

/// The directory, under the data directory, that damaged files are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The counter of files moved aside, labelled by `kind`.
pub const QUARANTINED_METRIC: &str = "meshscope_quarantined_files_total";

/// Makes the counter appear in `/metrics` at 0 before any file is moved aside.
pub(crate) fn register() {
    metrics::counter!(QUARANTINED_METRIC, "kind" => "parquet").increment(0);
}

/// Why the Parquet file at `file` cannot be read, or `None` when its footer is whole.
pub(crate) fn parquet_damage(file: &FsPath) -> Option<String> {
    let handle = match std::fs::File::open(file) {
        Ok(handle) => handle,
        Err(error) => return Some(format!("cannot open: {error}")),
    };
    let size = match handle.metadata() {
        Ok(metadata) => metadata.len(),
        Err(error) => return Some(format!("cannot read its size: {error}")),
    };
    let metadata = match ParquetMetaDataReader::new().parse_and_finish(&handle) {
        Ok(metadata) => metadata,
        Err(error) => return Some(format!("unreadable footer: {error}")),
    };
    for group in metadata.row_groups() {
        for column in group.columns() {
            let (start, length) = column.byte_range();
            if start.checked_add(length).is_none_or(|end| end > size) {
                return Some(format!(
                    "a column chunk lies past the end of the file ({start}+{length} > {size} bytes)"
                ));
            }
        }
    }
    None
}

/// Moves `file`, which lies at `relative` under `data_dir`, to the quarantine directory
/// with a note of `reason`, and counts it. Returns where it went.
pub(crate) fn move_aside(
    data_dir: &FsPath,
    file: &FsPath,
    relative: &str,
    reason: &str,
) -> std::io::Result<PathBuf> {
    let destination = data_dir.join(QUARANTINE_DIR).join(relative);
    if let Some(parent) = destination.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(file, &destination)?;
    let mut note = destination.clone().into_os_string();
    note.push(".reason");
    std::fs::write(&note, format!("{reason}\n"))?;
    for dir in [destination.parent(), file.parent()].into_iter().flatten() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    metrics::counter!(QUARANTINED_METRIC, "kind" => "parquet").increment(1);
    tracing::error!(
        file = relative,
        quarantined_to = %destination.display(),
        reason,
        "a damaged Parquet file was moved aside; the rest is served"
    );
    Ok(destination)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_whole_footer_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.parquet");
        std::fs::write(&file, b"PAR1 not a parquet file at all").unwrap();
        assert!(parquet_damage(&file).unwrap().contains("footer"));
        std::fs::write(&file, b"").unwrap();
        assert!(parquet_damage(&file).is_some());
    }
}
