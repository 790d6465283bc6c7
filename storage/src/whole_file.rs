//! A small local file written whole or not at all: under a temporary name, flushed
//! (`fsync`), renamed into place, and its directory flushed, so that a crash or a power
//! loss at any point leaves the old file or the new one, never a part.

use std::path::Path;

use crate::Result;

/// Writes `bytes` as `dir/name` (making `dir` if needed): a temporary `.<name>.tmp` is
/// written and flushed, renamed to `name`, and `dir` flushed. If `crash_point` is given,
/// the process can be made to die there (`MESHSCOPE_CRASH_AT`), once the temporary file is
/// flushed and before the rename. On error the temporary file is removed and `name` is
/// as it was.
pub fn write_whole_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    crash_point: Option<&'static str>,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        if let Some(point) = crash_point {
            crate::crash_point::reached(point);
        }
        std::fs::rename(&temporary, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    Ok(written?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("made");
        write_whole_file(&sub, "a.bin", b"first", None).unwrap();
        write_whole_file(&sub, "a.bin", b"second", None).unwrap();
        assert_eq!(std::fs::read(sub.join("a.bin")).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.bin"]);
    }
}
