//! A segment file written around the page cache (`O_DIRECT`, on Linux). Each group of
//! records is copied once into an aligned staging buffer, behind the part of the last block
//! already written, padded with zeroes to whole blocks and written at that block's offset.
//! The kernel hands the bytes to the device without copying them into cached pages, which
//! was the log's largest cost on the ingest path (`copy_folio_from_iter_atomic`, about a
//! tenth of the collector's CPU at its highest rate), and the log no longer fills the page
//! cache with pages nobody reads until a restart.
//!
//! The padding is overwritten by the next group. A file closed there ends in fewer than one
//! block of zeroes after its last record, which a scan reads as a clean end
//! ([`crate::wal::segment::scan`]). Filesystems that refuse `O_DIRECT` (tmpfs, some network
//! filesystems) get a plain file instead; the records and the guarantees are the same.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// The block size writes are aligned to: the largest logical block size of common
/// devices, so that it is a multiple of any of them.
pub const BLOCK: usize = 4096;

/// An open segment written around the page cache; see the module's documentation.
pub(super) struct DirectFile {
    file: File,
    /// Over-allocated by [`BLOCK`] so that a window starting at an aligned address fits.
    staging: Vec<u8>,
    /// Where the window starts in `staging`: its first aligned byte.
    window_at: usize,
    /// The file offset of the window's first byte, a multiple of [`BLOCK`].
    block_start: u64,
    /// Bytes at the window's start that belong in the file at `block_start`: the written
    /// part of the last block, or bytes given to [`DirectFile::create`] not written yet.
    tail_len: usize,
}

impl DirectFile {
    /// Creates the empty file `path` for writing around the page cache, with `first` (the
    /// segment's magic bytes) to be written with the first group; `None` when the
    /// filesystem refuses `O_DIRECT` or the platform has none (the file may then exist,
    /// empty, for a plain open to take over).
    pub(super) fn create(path: &Path, first: &[u8]) -> io::Result<Option<DirectFile>> {
        let Some(file) = open_direct(path)? else {
            return Ok(None);
        };
        let mut direct = DirectFile {
            file,
            staging: Vec::new(),
            window_at: 0,
            block_start: 0,
            tail_len: 0,
        };
        direct.reserve(first.len());
        direct.window_mut(first.len()).copy_from_slice(first);
        direct.tail_len = first.len();
        Ok(Some(direct))
    }

    /// Writes `bytes` after everything written before; returns once the device has them
    /// (a write around the cache does not return before), though not its volatile cache:
    /// [`DirectFile::sync_data`] is still what makes them survive a power loss.
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let total = self.tail_len + bytes.len();
        let padded = total.div_ceil(BLOCK) * BLOCK;
        self.reserve(padded);
        let tail_len = self.tail_len;
        let window = &mut self.staging[self.window_at..self.window_at + padded];
        window[tail_len..total].copy_from_slice(bytes);
        window[total..].fill(0);
        write_all_at(&self.file, window, self.block_start)?;
        let whole = total / BLOCK * BLOCK;
        window.copy_within(whole..total, 0);
        self.block_start += whole as u64;
        self.tail_len = total - whole;
        Ok(())
    }

    pub(super) fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub(super) fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    pub(super) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    /// Makes room for a window of `len` bytes, keeping the tail at the window's start.
    fn reserve(&mut self, len: usize) {
        if self.staging.len() >= self.window_at + len && !self.staging.is_empty() {
            return;
        }
        let mut staging = vec![0u8; (len + BLOCK).next_power_of_two().max(4 * BLOCK)];
        let window_at = staging.as_ptr().align_offset(BLOCK);
        let tail = self.window_at..self.window_at + self.tail_len;
        staging[window_at..window_at + self.tail_len].copy_from_slice(&self.staging[tail]);
        self.staging = staging;
        self.window_at = window_at;
    }

    fn window_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.staging[self.window_at..self.window_at + len]
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> io::Result<Option<File>> {
    Ok(None)
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups of every size around the block size end up in the file one after the other,
    /// with nothing but zeroes after them, fewer than a block.
    #[test]
    fn groups_land_back_to_back_whatever_their_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let Some(mut file) = DirectFile::create(&path, b"MAGIC").unwrap() else {
            eprintln!("this filesystem refuses O_DIRECT; nothing to check here");
            return;
        };
        let mut expected = b"MAGIC".to_vec();
        let sizes = [1, 4090, 6, 4096, 8191, 3 * BLOCK + 17, 100_000, 0, 5];
        for (n, size) in sizes.into_iter().enumerate() {
            let group: Vec<u8> = (0..size).map(|i| (i * 7 + n + 1) as u8 | 1).collect();
            file.append(&group).unwrap();
            expected.extend_from_slice(&group);
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(&on_disk[..expected.len()], &expected[..], "after group {n}");
            let padding = &on_disk[expected.len()..];
            assert!(padding.iter().all(|b| *b == 0));
            assert!(padding.len() < BLOCK);
            assert_eq!(on_disk.len() % BLOCK, 0);
        }
    }
}
