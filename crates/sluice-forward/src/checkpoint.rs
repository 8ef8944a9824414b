//! How far each followed file has been read and made safe, so that a
//! restart neither re-sends nor skips.
//!
//! A file is known by its device and inode ([`SourceKey`]), not its name, so
//! rotation by rename is followed. Every batch carries the offset just past
//! its last line. [`Progress`] advances a file's checkpoint to a batch's
//! offset once that batch and every earlier batch of the same file are
//! *safe*: written to the spool when there is one, otherwise acknowledged or
//! dropped (and counted).
//!
//! The checkpoint file is JSON, replaced atomically (temp file, fsync,
//! rename, fsync of the directory):
//!
//! ```json
//! {"version":1,"files":[{"path":"/var/log/app.log","dev":2049,"ino":1311,"offset":52311}]}
//! ```
//!
//! Without a spool, a `kill -9` can lose the checkpoint's last advance, and
//! the batches acknowledged after it are read and sent again with new ids;
//! with a spool the spool's own frames carry the offsets and the restart is
//! exact.

use std::{
    collections::{HashMap, VecDeque},
    fs, io,
    path::{Path, PathBuf},
};

use crate::spool::{SourceKey, SourcePos};

/// One file of the checkpoint: how far it is safe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCheckpoint {
    /// The path the file was read under (a file rotated while the
    /// forwarder was stopped has the name it was found under).
    pub path: PathBuf,
    /// The file's device (`st_dev`).
    pub dev: u64,
    /// The file's inode (`st_ino`).
    pub ino: u64,
    /// Bytes from the file's start that are safe: a restart reads on from
    /// here.
    pub offset: u64,
}

impl FileCheckpoint {
    /// The file's device and inode.
    pub fn key(&self) -> SourceKey {
        SourceKey {
            dev: self.dev,
            ino: self.ino,
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileCheckpoint>,
}

/// Read a checkpoint file; a missing file is an empty checkpoint.
pub fn load(path: &Path) -> io::Result<Vec<FileCheckpoint>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let file: CheckpointFile = serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "checkpoint {} is not valid ({e}); move it away to start over",
                path.display()
            ),
        )
    })?;
    Ok(file.files)
}

/// Replace the checkpoint file atomically.
pub fn store(path: &Path, files: &[FileCheckpoint]) -> io::Result<()> {
    let body = serde_json::to_vec(&CheckpointFile {
        version: 1,
        files: files.to_vec(),
    })
    .map_err(io::Error::other)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = fs::File::create(&tmp)?;
        io::Write::write_all(&mut file, &body)?;
        file.sync_data()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[derive(Debug)]
struct SourceProgress {
    path: PathBuf,
    /// Everything before this offset is safe.
    safe: u64,
    /// Batches not yet safe, in the order they were made: (seq, end, safe).
    pending: VecDeque<(u64, u64, bool)>,
    /// The follower has moved on from this file.
    closed: bool,
}

/// The safe offset of every file being followed.
#[derive(Debug, Default)]
pub struct Progress {
    sources: HashMap<SourceKey, SourceProgress>,
}

impl Progress {
    /// A follower (re)opened `key` at `offset`. After a truncation the old
    /// pending batches no longer describe this file's bytes: forget them.
    pub fn open(&mut self, key: SourceKey, path: &Path, offset: u64) {
        self.sources.insert(
            key,
            SourceProgress {
                path: path.to_path_buf(),
                safe: offset,
                pending: VecDeque::new(),
                closed: false,
            },
        );
    }

    /// The follower finished `key` (it was rotated away and read to its end).
    pub fn close(&mut self, key: SourceKey) {
        if let Some(source) = self.sources.get_mut(&key) {
            source.closed = true;
        }
        self.forget_finished();
    }

    /// A batch of `pos.key` ending at `pos.end` was made.
    pub fn made(&mut self, seq: u64, pos: SourcePos) {
        if let Some(source) = self.sources.get_mut(&pos.key) {
            source.pending.push_back((seq, pos.end, false));
        }
    }

    /// The batch is safe (spooled, acknowledged or dropped).
    pub fn safe(&mut self, seq: u64, pos: SourcePos) {
        let Some(source) = self.sources.get_mut(&pos.key) else {
            return;
        };
        if let Some(entry) = source.pending.iter_mut().find(|e| e.0 == seq) {
            entry.2 = true;
        }
        while let Some(&(_, end, true)) = source.pending.front() {
            source.safe = source.safe.max(end);
            source.pending.pop_front();
        }
        if source.closed {
            self.forget_finished();
        }
    }

    fn forget_finished(&mut self) {
        self.sources
            .retain(|_, s| !(s.closed && s.pending.is_empty()));
    }

    /// The checkpoint to write: every file followed now, or with batches
    /// not yet safe, at its safe offset, sorted by path and inode.
    pub fn snapshot(&self) -> Vec<FileCheckpoint> {
        let mut files: Vec<FileCheckpoint> = self
            .sources
            .iter()
            .map(|(key, s)| FileCheckpoint {
                path: s.path.clone(),
                dev: key.dev,
                ino: key.ino,
                offset: s.safe,
            })
            .collect();
        files.sort_by(|a, b| (&a.path, a.ino).cmp(&(&b.path, b.ino)));
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SourceKey = SourceKey { dev: 1, ino: 9 };

    fn at(end: u64) -> SourcePos {
        SourcePos { key: KEY, end }
    }

    #[test]
    fn the_checkpoint_advances_only_over_a_safe_prefix() {
        let mut p = Progress::default();
        p.open(KEY, Path::new("/l"), 5);
        for (seq, end) in [(1, 10), (2, 20), (3, 30)] {
            p.made(seq, at(end));
        }
        p.safe(2, at(20));
        assert_eq!(p.snapshot()[0].offset, 5);
        p.safe(1, at(10));
        assert_eq!(p.snapshot()[0].offset, 20);
        p.close(KEY);
        assert_eq!(p.snapshot().len(), 1, "kept while a batch is pending");
        p.safe(3, at(30));
        assert!(p.snapshot().is_empty());
    }

    #[test]
    fn checkpoint_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        assert!(load(&path).unwrap().is_empty());
        let files = vec![FileCheckpoint {
            path: "/var/log/a.log".into(),
            dev: 3,
            ino: 4,
            offset: 99,
        }];
        store(&path, &files).unwrap();
        assert_eq!(load(&path).unwrap(), files);
        fs::write(&path, b"{").unwrap();
        assert!(load(&path).is_err());
    }
}
