//! Following files (`--file PATH`): appends, rotation and truncation.
//!
//! A follower reads its file to the end, then polls. At the end of the file
//! it looks at the path again:
//! - a different inode means the file was rotated by rename: the old file
//!   is read to its end once more, its unterminated last line (if any) is a
//!   line, and the follower moves to the new file from offset 0;
//! - a size below the offset read so far means it was truncated in place
//!   (copytruncate): the follower starts again from offset 0, and a partial
//!   line read before the truncation is discarded;
//! - a missing path means the file was moved and not yet recreated: the
//!   follower keeps reading the old file until the path comes back.
//!
//! Where to start comes from the checkpoint (see [`crate::checkpoint`]) and
//! the spool: the file's inode, if known, resumes at its offset. If the
//! checkpoint names an older inode of the same path, that file was rotated
//! while the forwarder was down; it is looked for beside the path (for
//! example `app.log.1`), and its unread rest is sent first.

use std::{
    fs::{self, File},
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
    },
    time::Duration,
};

use crate::spool::SourceKey;

/// What a reader thread hands the batcher.
#[derive(Debug)]
pub enum Input {
    /// More bytes of the current source.
    Data(Vec<u8>),
    /// From now on the bytes come from `key`, starting at `offset`.
    Source {
        /// The file.
        key: SourceKey,
        /// Its path: the followed one, or the name a file rotated while
        /// the forwarder was stopped was found under.
        path: PathBuf,
        /// Where reading starts, in bytes from the file's start.
        offset: u64,
        /// What became of the previous source.
        previous: PreviousSource,
    },
    /// The follower stopped (shutdown): close the open batch, but leave an
    /// unterminated line unread; the next run reads it whole.
    Stopped,
    /// Following failed (the path names the file); the batcher closes its
    /// batch and returns the error.
    Error(io::Error),
}

/// What became of the source before an [`Input::Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousSource {
    /// There was none.
    None,
    /// It was read to its end: its unterminated last line is a line.
    Finished,
    /// It was truncated: a partial line read from it is discarded.
    Truncated,
}

/// Where a follower starts.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Offsets known for inodes of this path (checkpoint and spool).
    pub offsets: Vec<(SourceKey, u64)>,
}

impl Resume {
    fn offset_of(&self, key: SourceKey) -> Option<u64> {
        self.offsets
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, o)| *o)
            .max()
    }
}

/// The device and inode of a file's metadata.
pub fn key_of(meta: &fs::Metadata) -> SourceKey {
    SourceKey {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

const CHUNK_BYTES: usize = crate::defaults::READ_CHUNK_BYTES;

/// Follow `path` until `stop` is set, sending what is read to `out`.
pub fn follow(
    path: PathBuf,
    resume: Resume,
    poll: Duration,
    stop: Arc<AtomicBool>,
    out: SyncSender<Input>,
) {
    if let Err(err) = follow_inner(&path, &resume, poll, &stop, &out) {
        let _ = out.send(Input::Error(io::Error::new(
            err.kind(),
            format!("follow {}: {err}", path.display()),
        )));
        return;
    }
    let _ = out.send(Input::Stopped);
}

fn follow_inner(
    path: &Path,
    resume: &Resume,
    poll: Duration,
    stop: &AtomicBool,
    out: &SyncSender<Input>,
) -> io::Result<()> {
    let send = |input: Input| {
        out.send(input)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "batcher is gone"))
    };
    // Wait for the file to exist.
    let mut warned = false;
    let (mut file, mut key) = loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match File::open(path) {
            Ok(file) => {
                let key = key_of(&file.metadata()?);
                break (file, key);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !warned {
                    tracing::warn!(path = %path.display(), "file to follow does not exist yet; waiting for it");
                    warned = true;
                }
                std::thread::sleep(poll);
            }
            Err(e) => return Err(e),
        }
    };
    let mut previous = PreviousSource::None;
    // Unread rest of a file rotated away while we were down.
    for &(old, offset) in &resume.offsets {
        if old == key {
            continue;
        }
        if let Some(rotated) = find_by_key(path, old)? {
            let mut old_file = File::open(&rotated)?;
            if old_file.metadata()?.len() > offset {
                tracing::info!(file = %rotated.display(), offset, "reading the rest of a file rotated while the forwarder was stopped");
                old_file.seek(SeekFrom::Start(offset))?;
                send(Input::Source {
                    key: old,
                    path: rotated,
                    offset,
                    previous,
                })?;
                let mut offset = offset;
                if !read_to_end(&mut old_file, &mut offset, stop, &send)? {
                    return Ok(());
                }
                previous = PreviousSource::Finished;
            }
        }
    }
    let mut offset = resume.offset_of(key).unwrap_or(0);
    if file.metadata()?.len() < offset {
        tracing::warn!(path = %path.display(), offset, "file is shorter than its checkpoint (truncated while stopped); reading it from the start");
        offset = 0;
    }
    file.seek(SeekFrom::Start(offset))?;
    send(Input::Source {
        key,
        path: path.to_path_buf(),
        offset,
        previous,
    })?;
    loop {
        if !read_to_end(&mut file, &mut offset, stop, &send)? {
            return Ok(());
        }
        // At the end: rotated, truncated, or just quiet?
        match fs::metadata(path) {
            Ok(meta) if key_of(&meta) != key => {
                // Rotated: drain what was written before the rename.
                if !read_to_end(&mut file, &mut offset, stop, &send)? {
                    return Ok(());
                }
                match File::open(path) {
                    Ok(new) => {
                        let new_key = key_of(&new.metadata()?);
                        tracing::info!(path = %path.display(), "file was rotated; following the new one");
                        file = new;
                        key = new_key;
                        offset = 0;
                        send(Input::Source {
                            key,
                            path: path.to_path_buf(),
                            offset,
                            previous: PreviousSource::Finished,
                        })?;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(_) if file.metadata()?.len() < offset => {
                tracing::info!(path = %path.display(), offset, "file was truncated; reading it from the start");
                file.seek(SeekFrom::Start(0))?;
                offset = 0;
                send(Input::Source {
                    key,
                    path: path.to_path_buf(),
                    offset,
                    previous: PreviousSource::Truncated,
                })?;
                continue;
            }
            // Quiet, or moved away and not yet recreated.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

/// Read until the end of the file. Returns false when stopping.
fn read_to_end(
    file: &mut File,
    offset: &mut u64,
    stop: &AtomicBool,
    send: &impl Fn(Input) -> io::Result<()>,
) -> io::Result<bool> {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let mut chunk = vec![0u8; CHUNK_BYTES];
        let n = match file.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(true);
        }
        chunk.truncate(n);
        *offset += n as u64;
        send(Input::Data(chunk))?;
    }
}

/// A file beside `path` with the given device and inode.
fn find_by_key(path: &Path, key: SourceKey) -> io::Result<Option<PathBuf>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
            && key_of(&meta) == key
        {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write, sync::mpsc};

    /// Collect the text a follower sends until `until` bytes arrived.
    fn collect(rx: &mpsc::Receiver<Input>, until: usize) -> (Vec<u8>, Vec<PreviousSource>) {
        let (mut text, mut sources) = (Vec::new(), Vec::new());
        while text.len() < until {
            match rx
                .recv_timeout(Duration::from_secs(20))
                .expect("follower output")
            {
                Input::Data(d) => text.extend_from_slice(&d),
                Input::Source { previous, .. } => sources.push(previous),
                other => panic!("unexpected {other:?}"),
            }
        }
        (text, sources)
    }

    #[test]
    fn follows_appends_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        fs::write(&path, b"one\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(16);
        let follower = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                follow(path, Resume::default(), Duration::from_millis(5), stop, tx)
            })
        };
        assert_eq!(
            collect(&rx, 4),
            (b"one\n".to_vec(), vec![PreviousSource::None])
        );
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(collect(&rx, 4).0, b"two\n");
        // Rotate by rename; the old file gets one last line first.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"last")
            .unwrap();
        fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        fs::write(&path, b"new\n").unwrap();
        let (text, sources) = collect(&rx, 8);
        assert_eq!(text, b"lastnew\n");
        assert_eq!(sources, [PreviousSource::Finished]);
        // Truncate in place.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more\n")
            .unwrap();
        assert_eq!(collect(&rx, 5).0, b"more\n");
        fs::write(&path, b"x\n").unwrap();
        let (text, sources) = collect(&rx, 2);
        assert_eq!(
            (text, sources),
            (b"x\n".to_vec(), vec![PreviousSource::Truncated])
        );
        stop.store(true, Ordering::Relaxed);
        follower.join().unwrap();
    }

    #[test]
    fn a_file_rotated_while_stopped_is_finished_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        fs::write(&path, b"a\nb\n").unwrap();
        let old = key_of(&fs::metadata(&path).unwrap());
        fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        fs::write(&path, b"c\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(16);
        let resume = Resume {
            offsets: vec![(old, 2)],
        };
        let follower = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || follow(path, resume, Duration::from_millis(5), stop, tx))
        };
        let (text, sources) = collect(&rx, 4);
        assert_eq!(text, b"b\nc\n");
        assert_eq!(sources, [PreviousSource::None, PreviousSource::Finished]);
        stop.store(true, Ordering::Relaxed);
        follower.join().unwrap();
    }
}
