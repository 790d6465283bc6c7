//! Durability of the local disk: a file's contents are flushed (`fsync`) before it is
//! renamed into place, and every directory whose entries changed is flushed after, so
//! that after a power loss a name never points at data the disk did not get, and a rename
//! or a delete that was reported done stays done. `object_store` has no such call (a
//! remote store makes a completed upload durable by itself); this is the local disk's
//! part of the seam, and a store other than the local disk would make these calls no-ops.
//!
//! At start it also removes the staging files the local store leaves behind when a
//! process dies in the middle of an upload (`<name>#<n>`): the store's listing never shows
//! them, so nothing else would.

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::error::{Error, Result};

/// Flushes files and directories of the local store under its data directory; does
/// nothing for a remote store.
#[derive(Clone, Debug)]
pub(crate) struct LocalDurability {
    /// `None` for a remote store, whose completed uploads are durable by themselves.
    local: Option<Arc<LocalFileSystem>>,
    root: PathBuf,
}

impl LocalDurability {
    pub(crate) fn new(local: Arc<LocalFileSystem>, root: &FsPath) -> Self {
        Self {
            local: Some(local),
            root: root.to_path_buf(),
        }
    }

    /// The durability of a remote store: every call is a no-op.
    pub(crate) fn remote() -> Self {
        Self {
            local: None,
            root: PathBuf::new(),
        }
    }

    /// Flushes the contents of the file at `path` to the disk.
    pub(crate) async fn sync_file(&self, path: &Path) -> Result<()> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let file = local.path_to_filesystem(path)?;
        blocking(move || std::fs::File::open(&file)?.sync_all()).await
    }

    /// Flushes the directory holding each of `paths`, and the directories above it up to
    /// the data directory: a partition directory made for a new file is only durable once
    /// its parent's entries are.
    pub(crate) async fn sync_dirs_of(&self, paths: &[Path]) -> Result<()> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let mut dirs = BTreeSet::new();
        for path in paths {
            let file = local.path_to_filesystem(path)?;
            let mut at = file.parent();
            while let Some(dir) = at {
                if !dir.starts_with(&self.root) {
                    break;
                }
                dirs.insert(dir.to_path_buf());
                if dir == self.root {
                    break;
                }
                at = dir.parent();
            }
        }
        blocking(move || {
            // Deepest first, so that a parent is flushed after the entries below it.
            for dir in dirs.iter().rev() {
                match std::fs::File::open(dir) {
                    Ok(handle) => handle.sync_all()?,
                    // A partition directory emptied and removed meanwhile.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        })
        .await
    }

    /// Removes the local store's staging files left by an upload that never completed.
    /// Returns how many there were.
    pub(crate) async fn remove_unfinished_uploads(&self) -> Result<usize> {
        if self.local.is_none() {
            return Ok(0);
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            let mut stack = vec![root];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(path);
                    } else if is_staged_upload(&path) {
                        tracing::warn!(path = %path.display(), "removing an upload that did not finish");
                        std::fs::remove_file(&path)?;
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|error| Error::Io(std::io::Error::other(error)))?
    }
}

/// Whether a file is one of the local store's staging files: `<name>#<digits>`.
fn is_staged_upload(path: &FsPath) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.rsplit_once('#'))
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// Runs blocking file-system calls off the reactor: an `fsync` can take tens of
/// milliseconds.
async fn blocking(call: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| Error::Io(std::io::Error::other(error)))?
        .map_err(Error::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_files_are_told_by_their_numbered_suffix() {
        assert!(is_staged_upload(FsPath::new("a/.1-000001.parquet.tmp#1")));
        assert!(is_staged_upload(FsPath::new("replacing/1-000001.json#12")));
        assert!(!is_staged_upload(FsPath::new("a/1-000001.parquet")));
        assert!(!is_staged_upload(FsPath::new("a/b#")));
        assert!(!is_staged_upload(FsPath::new("a/b#x1")));
    }
}
