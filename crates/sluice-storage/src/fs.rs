//! The filesystem trait.
//!
//! Storage code never calls `std::fs` directly: it takes an `&dyn Fs`. The
//! real implementation is [`RealFs`]; tests use [`crate::MemFs`], which keeps
//! files in memory, forgets unsynced bytes on a simulated crash, and can be
//! told to fail writes (for example with ENOSPC).
//!
//! The trait is deliberately small: what segment files need and no more.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::Path,
};

/// A file opened for appending.
pub trait WriteFile: Send {
    /// Append all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Make everything written so far durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A file opened for positional reads. Reads may run from several threads.
pub trait ReadFile: Send + Sync {
    /// Read up to `buf.len()` bytes at `offset`; 0 means end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file holds no bytes now.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fill `buf` exactly from `offset`, or fail with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name, without its directory.
    pub name: String,
    /// Its length in bytes; meaningless for a directory.
    pub len: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// The filesystem operations storage uses: [`RealFs`] in production,
/// [`crate::MemFs`] in tests (see the module docs).
pub trait Fs: Send + Sync + std::fmt::Debug + 'static {
    /// Create a directory and any missing parents; nothing if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Create a new file for writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Open an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Open an existing file for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>>;
    /// Map a sealed file (one that is never modified again) for reading.
    /// The mapping stays valid if the file is removed meanwhile.
    ///
    /// Callers map only sealed store segments: [`RealFs`]'s mapping is
    /// sound only while no one writes to or truncates the file (see the
    /// `SAFETY` comment in its implementation).
    fn map(&self, path: &Path) -> io::Result<Mapped>;
    /// Entries of a directory, sorted by name. Names that are not UTF-8 are
    /// skipped (sluice writes none).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Atomically rename, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file; open handles and mappings of it stay readable.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Give the file at `from` a second name, `to` (a hard link: one file,
    /// two names; removing either leaves the other). Fails if `to` exists,
    /// or if the two are on different filesystems (callers then copy).
    /// Only for sealed files, which no one writes to again.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Cut a file to `len` bytes and make that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Make renames and creations in a directory durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a file or directory is at `path`.
    fn exists(&self, path: &Path) -> bool;
}

/// A whole file's bytes: memory-mapped ([`RealFs`]) or owned ([`crate::MemFs`]).
pub struct Mapped(MappedBytes);

enum MappedBytes {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Mapped {
    /// Bytes held in memory, as [`crate::MemFs`] maps a file (and
    /// [`RealFs`] an empty one, which cannot be mapped).
    pub fn owned(bytes: Vec<u8>) -> Mapped {
        Mapped(MappedBytes::Owned(bytes))
    }

    /// Drop the pages that lie wholly inside `range` from this process's
    /// resident set; the page cache keeps them, and a later read maps them
    /// again. A reader calls this after it decoded a range it will not
    /// need soon (a block's compressed data), so that a mapping held for
    /// many queries keeps resident only what is read repeatedly (the block
    /// filters). Best effort: errors are ignored. Owned bytes are kept.
    // `unsafe_code` is allowed in this method alone, for MADV_DONTNEED
    // through memmap2's unchecked advice (justified at the block).
    #[allow(unsafe_code)]
    pub fn release(&self, range: std::ops::Range<usize>) {
        let MappedBytes::Mmap(map) = &self.0 else {
            return;
        };
        let page = page_size();
        let start = range.start.next_multiple_of(page);
        let end = range.end.min(map.len()) / page * page;
        if start < end {
            // SAFETY: the mapping is of a sealed segment, never modified
            // while mapped (see `RealFs::map`), so after MADV_DONTNEED a
            // read faults the same bytes back in from the page cache; no
            // reference into the mapping observes a change.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}

/// The size of a memory page in bytes (4096 if the system cannot say).
// `unsafe_code` is allowed for the one FFI call, `sysconf`.
#[allow(unsafe_code)]
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .unwrap_or(4096)
    })
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            MappedBytes::Mmap(map) => map,
            MappedBytes::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped").field("len", &self.len()).finish()
    }
}

/// The operating system's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealWriteFile(File);

impl WriteFile for RealWriteFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

struct RealReadFile(File);

impl ReadFile for RealReadFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealWriteFile(file)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(RealWriteFile(file)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(RealReadFile(File::open(path)?)))
    }

    // `unsafe_code` is allowed for the one `Mmap::map` call: memmap2 cannot
    // promise that the file stays unchanged while mapped, so the caller
    // does (see `Fs::map`).
    #[allow(unsafe_code)]
    fn map(&self, path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Mapped::owned(Vec::new()));
        }
        // SAFETY: sluice maps only sealed segments, which are written once
        // under a temporary name, renamed, and never modified or truncated
        // afterwards (only removed, which keeps the mapping valid). Another
        // process writing into the store directory is outside the contract.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped(MappedBytes::Mmap(map)))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // A file can vanish between the listing and the stat.
            let Ok(meta) = entry.metadata() else { continue };
            entries.push(DirEntry {
                name,
                len: meta.len(),
                is_dir: meta.is_dir(),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}
