//! An in-memory filesystem for model and fault tests.
//!
//! Semantics, chosen to be at least as harsh as a journaling filesystem:
//! - written bytes are visible at once but survive [`MemFs::crash`] only up
//!   to the last `sync_data` of that file; a crash may also keep a random
//!   prefix of the unsynced bytes (a torn write) when a seed is given;
//! - creations, renames and removals are durable at once (metadata
//!   journaling), which is what the recovery rules rely on;
//! - [`MemFs::set_capacity`] makes writes fail with ENOSPC once the total
//!   size of all files would pass the limit, and [`MemFs::fail_syncs`] makes
//!   `sync_data` fail, so callers' error paths can be tested;
//! - [`MemFs::fail_after`] lets a number of mutating operations (create,
//!   write, sync, rename, remove, hard link, truncate, directory sync) succeed and fails
//!   every later one: the process "died" there. With [`MemFs::crash`] after
//!   it, a test can stop a writer at every step in turn.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use crate::fs::{DirEntry, Fs, ReadFile, WriteFile};

#[derive(Debug, Default)]
struct FileData {
    bytes: Vec<u8>,
    synced: usize,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, Arc<Mutex<FileData>>>,
    dirs: BTreeMap<PathBuf, ()>,
    capacity: Option<u64>,
    fail_syncs: bool,
    refuse_links: bool,
    /// Mutating operations left before every one fails (`None`: no limit).
    ops_left: Option<u64>,
    /// Mutating operations performed, for tests that count steps.
    ops_done: u64,
}

/// An in-memory [`Fs`] with the semantics of the module docs. Clones share
/// the same files, so a test keeps one to crash, inspect or damage what a
/// writer holding another wrote.
#[derive(Debug, Default, Clone)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl MemFs {
    /// An empty filesystem: no files, no directories, no limits.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Limit the total bytes of all files; `None` removes the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state().capacity = bytes;
    }

    /// Make every `sync_data` fail (true) or succeed (false).
    pub fn fail_syncs(&self, fail: bool) {
        self.state().fail_syncs = fail;
    }

    /// Make every `hard_link` fail (true) as it does across filesystems
    /// (EXDEV), or succeed (false), so callers' fallback can be tested.
    pub fn refuse_links(&self, refuse: bool) {
        self.state().refuse_links = refuse;
    }

    /// Let `ops` more mutating operations succeed, then fail every later
    /// one with an injected error; `None` removes the limit.
    pub fn fail_after(&self, ops: Option<u64>) {
        self.state().ops_left = ops;
    }

    /// Mutating operations performed so far.
    pub fn ops_done(&self) -> u64 {
        self.state().ops_done
    }

    /// Spend one mutating operation, or fail if none is left.
    fn spend(&self) -> io::Result<()> {
        let mut state = self.state();
        match &mut state.ops_left {
            Some(0) => return Err(io::Error::other("injected crash: no operation may follow")),
            Some(left) => *left -= 1,
            None => {}
        }
        state.ops_done += 1;
        Ok(())
    }

    /// Total bytes held by all files (a file with several names, once).
    pub fn used_bytes(&self) -> u64 {
        let state = self.state();
        let mut seen = std::collections::HashSet::new();
        state
            .files
            .values()
            .filter(|f| seen.insert(Arc::as_ptr(f)))
            .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()).bytes.len() as u64)
            .sum()
    }

    /// Simulate power loss: every file keeps its synced prefix, plus, when
    /// `torn_seed` is given, a pseudo-random part of its unsynced tail.
    pub fn crash(&self, torn_seed: Option<u64>) {
        let state = self.state();
        let mut seed = torn_seed.unwrap_or(0);
        for file in state.files.values() {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            let unsynced = f.bytes.len() - f.synced;
            let keep = match torn_seed {
                Some(_) if unsynced > 0 => {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) as usize % (unsynced + 1)
                }
                _ => 0,
            };
            let len = f.synced + keep;
            f.bytes.truncate(len);
            f.synced = len;
        }
    }

    /// Raw bytes of a file, for assertions.
    pub fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state();
        let file = state.files.get(path).ok_or_else(|| not_found(path))?;
        Ok(file.lock().unwrap_or_else(|p| p.into_inner()).bytes.clone())
    }

    /// Overwrite a file's bytes (synced), for corruption tests.
    pub fn write_all_synced(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.state();
        let file = state.files.entry(path.to_path_buf()).or_default();
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        f.bytes = bytes.to_vec();
        f.synced = bytes.len();
    }
}

struct MemWriteFile {
    fs: MemFs,
    file: Arc<Mutex<FileData>>,
}

impl WriteFile for MemWriteFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.fs.spend()?;
        let capacity = self.fs.state().capacity;
        if let Some(capacity) = capacity
            && self.fs.used_bytes() + buf.len() as u64 > capacity
        {
            return Err(enospc());
        }
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bytes
            .extend_from_slice(buf);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.spend()?;
        if self.fs.state().fail_syncs {
            return Err(io::Error::other("injected fsync failure"));
        }
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.synced = f.bytes.len();
        Ok(())
    }
}

struct MemReadFile(Arc<Mutex<FileData>>);

impl ReadFile for MemReadFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rest) = f.bytes.get(offset as usize..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).bytes.len() as u64)
    }
}

impl Fs for MemFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if !self.exists(path) {
            self.spend()?;
        }
        let mut state = self.state();
        for ancestor in path.ancestors() {
            state.dirs.insert(ancestor.to_path_buf(), ());
        }
        Ok(())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.spend()?;
        let mut state = self.state();
        if state.files.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains_key(parent) {
            return Err(not_found(parent));
        }
        let file = Arc::new(Mutex::new(FileData::default()));
        state.files.insert(path.to_path_buf(), file.clone());
        Ok(Box::new(MemWriteFile {
            fs: self.clone(),
            file,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = self
            .state()
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        Ok(Box::new(MemWriteFile {
            fs: self.clone(),
            file,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        let file = self
            .state()
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        Ok(Box::new(MemReadFile(file)))
    }

    fn map(&self, path: &Path) -> io::Result<crate::fs::Mapped> {
        self.read_all(path).map(crate::fs::Mapped::owned)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.state();
        if !state.dirs.contains_key(path) {
            return Err(not_found(path));
        }
        let mut entries = Vec::new();
        for (p, f) in &state.files {
            if p.parent() == Some(path)
                && let Some(name) = p.file_name().and_then(|n| n.to_str())
            {
                let len = f.lock().unwrap_or_else(|p| p.into_inner()).bytes.len() as u64;
                entries.push(DirEntry {
                    name: name.to_string(),
                    len,
                    is_dir: false,
                });
            }
        }
        for p in state.dirs.keys() {
            if p.parent() == Some(path)
                && let Some(name) = p.file_name().and_then(|n| n.to_str())
            {
                entries.push(DirEntry {
                    name: name.to_string(),
                    len: 0,
                    is_dir: true,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.spend()?;
        let mut state = self.state();
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.spend()?;
        self.state()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.spend()?;
        let mut state = self.state();
        if state.refuse_links {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        if state.files.contains_key(to) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", to.display()),
            ));
        }
        // Both names share the one file, as on disk: its bytes and what of
        // them is synced.
        let file = state
            .files
            .get(from)
            .cloned()
            .ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.spend()?;
        let state = self.state();
        let file = state.files.get(path).ok_or_else(|| not_found(path))?;
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        f.bytes.truncate(len as usize);
        f.synced = f.synced.min(len as usize);
        Ok(())
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        self.spend()
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state();
        state.files.contains_key(path) || state.dirs.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_link_is_one_file_under_two_names() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let mut w = fs.create_new(Path::new("/d/a")).unwrap();
        w.write_all(b"sealed").unwrap();
        w.sync_data().unwrap();
        fs.hard_link(Path::new("/d/a"), Path::new("/d/b")).unwrap();
        assert_eq!(fs.used_bytes(), 6, "the bytes are held once");
        assert!(
            fs.hard_link(Path::new("/d/a"), Path::new("/d/b")).is_err(),
            "an existing name is never replaced"
        );
        fs.remove_file(Path::new("/d/a")).unwrap();
        fs.crash(None);
        assert_eq!(fs.read_all(Path::new("/d/b")).unwrap(), b"sealed");
        fs.refuse_links(true);
        let refused = fs
            .hard_link(Path::new("/d/b"), Path::new("/d/c"))
            .unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EXDEV));
    }

    #[test]
    fn a_crash_forgets_unsynced_bytes() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let mut f = fs.create_new(Path::new("/d/a")).unwrap();
        f.write_all(b"kept").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"lost").unwrap();
        fs.crash(None);
        assert_eq!(fs.read_all(Path::new("/d/a")).unwrap(), b"kept");
    }

    #[test]
    fn a_full_disk_fails_with_enospc() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.set_capacity(Some(4));
        let mut f = fs.create_new(Path::new("/d/a")).unwrap();
        f.write_all(b"1234").unwrap();
        let err = f.write_all(b"5").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    }
}
