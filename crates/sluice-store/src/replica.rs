//! The receiving side of replication: a batch file another store sends
//! (`PUT /store/replicate?batch=NAME`, see `docs/protocol-lending.md`),
//! written under the same name here.
//!
//! Write rule: the body is streamed, chunk by chunk, to
//! `tmp/NAME.replica.tmp` (created exclusively, so one receive of a name
//! runs at a time), never held in memory whole and never past
//! [`MAX_REPLICA_BYTES`]. Then every batch checksum is verified, the
//! records' ids must increase strictly (a store writes its batch files
//! sorted, so an unsorted file is refused, not sorted here), and the first
//! and last id must be the range the name gives. The file is fsynced,
//! renamed to `NAME` in the store directory, and the directory is fsynced;
//! only then is the replica [`Received::Created`], and only then does the
//! sender count it as a copy.
//!
//! Idempotence: a name is not an identity. Two batch files can share a
//! name (`<min>-<max>.seg`) and differ: a lane that merged two ingest
//! segments writes the same range as one that took only the first. So a
//! replica is [`Received::AlreadyHeld`] only when the held file of that
//! name has the same length and whole-file CRC-32 as the one sent (the
//! sender's `x-sluice-crc32`; without it the body is received and compared
//! at the end). A replica that differs from the held file of its name is
//! kept as well, under the next free name (`<min>-<max>.<n>.seg`), like a
//! local write; its records' copies share their ids and show once.
//!
//! Refusals, each counted by reason (see [`ReplicaError::reason`]): a name
//! that is not a store segment's; a body over the limit; a corrupt, unsorted
//! or mismatched file; a store over its disk limit ([`Store::over_max_disk`]);
//! an I/O failure. Every refusal after the temp file was created removes it.
//!
//! Recovery rule: a crash before the rename leaves only
//! `tmp/NAME.replica.tmp`, which was never acknowledged; [`Store::open`]
//! removes every `tmp/*.tmp` at startup
//! ([`sluice_storage::store_segment::clean_tmp`]), so it is gone on the next
//! start and the sender, which got no 201, has sent the batch elsewhere or
//! sends it again. A crash after the rename leaves a whole, verified
//! segment, perhaps not yet acknowledged: the sender's retry finds it held.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use sluice_record::{RecordIter, Ulid};
use sluice_storage::{
    SegmentMeta, SegmentScanner, StorageError, WriteFile,
    store_segment::{SEGMENT_SUFFIX, TMP_DIR},
};

use crate::{Store, metrics};

/// The largest replica accepted: 256 MiB, well above the store segments a
/// consumer cycle writes (it gathers about 16 MiB).
pub const MAX_REPLICA_BYTES: u64 = 256 << 20;

/// The suffix of a replica being received, under `tmp/`.
pub const REPLICA_TMP_SUFFIX: &str = ".replica.tmp";

/// A whole file's length and CRC-32: what makes two batch files of one
/// name the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Its length in bytes.
    pub bytes: u64,
    /// The CRC-32 of all its bytes.
    pub crc32: u32,
}

impl Identity {
    /// The identity of `bytes`.
    pub fn of(bytes: &[u8]) -> Identity {
        Identity {
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        }
    }

    /// The identity of the file at `path`, read 256 KiB at a time.
    pub fn of_file(fs: &dyn sluice_storage::Fs, path: &Path) -> std::io::Result<Identity> {
        let file = fs.open_read(path)?;
        let len = file.len()?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; (256 << 10).min(len as usize).max(1)];
        let mut offset = 0u64;
        while offset < len {
            let want = buf.len().min((len - offset) as usize);
            file.read_exact_at(&mut buf[..want], offset)?;
            hasher.update(&buf[..want]);
            offset += want as u64;
        }
        Ok(Identity {
            bytes: len,
            crc32: hasher.finalize(),
        })
    }
}

/// What a receive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The replica is now durable under its name (HTTP 201).
    Created,
    /// A segment of that name was already held; nothing was written (HTTP
    /// 200).
    AlreadyHeld,
}

impl Received {
    /// The `outcome` label of the received counter: `"created"` or
    /// `"already_held"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Received::Created => "created",
            Received::AlreadyHeld => "already_held",
        }
    }
}

/// Why a replica was refused. Nothing of it is left in the store.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The name is not a store segment's.
    #[error(
        "replica name {name:?} is not a store segment name: send the segment's file name, \
         <ulid>-<ulid>.seg or <ulid>-<ulid>.<n>.seg"
    )]
    BadName {
        /// The name as sent.
        name: String,
    },
    /// The body is larger than [`MAX_REPLICA_BYTES`].
    #[error(
        "replica {name} is over the limit of {limit} bytes ({bytes} bytes received or \
         declared): store segments are far smaller, so check what the sender sends"
    )]
    TooLarge {
        /// The replica's name.
        name: String,
        /// The bytes received (or declared) when it was refused.
        bytes: u64,
        /// [`MAX_REPLICA_BYTES`].
        limit: u64,
    },
    /// A batch is cut short, malformed or fails its checksum, or a record
    /// does not decode.
    #[error("replica {name} is corrupt: {source}; send it again from a good copy")]
    Corrupt {
        /// The replica's name.
        name: String,
        /// What verification found.
        #[source]
        source: StorageError,
    },
    /// The file's records are well formed but not what a store segment of
    /// that name holds.
    #[error("replica {name} is refused: {detail}; send the store segment file unchanged")]
    Invalid {
        /// The replica's name.
        name: String,
        /// What is wrong, with the offending ids.
        detail: String,
    },
    /// The store's segments hold more than its disk limit.
    #[error(
        "this store holds {held} bytes, over its --max-disk limit of {limit} bytes: \
         send the replica to another store"
    )]
    DiskFull {
        /// Bytes the store's segments hold.
        held: u64,
        /// The store's limit.
        limit: u64,
    },
    /// Another receive of the same name is under way.
    #[error(
        "replica {name} is being received already (tmp/{name}{REPLICA_TMP_SUFFIX} exists): \
         retry once that request has finished"
    )]
    InProgress {
        /// The replica's name.
        name: String,
    },
    /// A filesystem call failed (a full disk among them, see
    /// [`ReplicaError::reason`]).
    #[error("receive replica: {0}")]
    Io(#[source] StorageError),
}

impl ReplicaError {
    /// The `reason` label of the refused counter: `"bad_name"`,
    /// `"too_large"`, `"corrupt"` (corrupt or invalid), `"disk_full"` (over
    /// `--max-disk`, or the filesystem is full), `"in_progress"` or `"io"`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReplicaError::BadName { .. } => "bad_name",
            ReplicaError::TooLarge { .. } => "too_large",
            ReplicaError::Corrupt { .. } | ReplicaError::Invalid { .. } => "corrupt",
            ReplicaError::DiskFull { .. } => "disk_full",
            ReplicaError::Io(err) if err.is_disk_full() => "disk_full",
            ReplicaError::InProgress { .. } => "in_progress",
            ReplicaError::Io(_) => "io",
        }
    }
}

/// Count a refusal on its way out.
fn counted<T>(result: Result<T, ReplicaError>) -> Result<T, ReplicaError> {
    if let Err(err) = &result {
        metrics::replica_refused(err.reason());
        if err.reason() == "disk_full" {
            // Back-pressure, not a fault: it repeats for every replica
            // while the store is full, so the counter tells it.
            tracing::debug!(error = %err, "refused a replica: the store is full");
        } else {
            tracing::warn!(error = %err, reason = err.reason(), "refused a replica");
        }
    }
    result
}

/// What [`ReplicaWriter::begin`] found.
pub enum Begun {
    /// The name is held already: answer without reading the body.
    AlreadyHeld,
    /// Write the body to this writer, then [`ReplicaWriter::finish`].
    Writing(Box<ReplicaWriter>),
}

/// Writes one replica chunk by chunk: [`ReplicaWriter::begin`], then
/// [`ReplicaWriter::write`] for each chunk of the body, then
/// [`ReplicaWriter::finish`]. Dropped unfinished (the body failed, the
/// sender went away), it removes its temp file. Every call does blocking
/// file I/O.
pub struct ReplicaWriter {
    store: Store,
    meta: SegmentMeta,
    tmp: PathBuf,
    file: Option<Box<dyn WriteFile>>,
    bytes: u64,
    /// [`MAX_REPLICA_BYTES`], smaller in tests.
    limit: u64,
    /// Other stores the sender says hold the batch, for the manifest.
    holders: Vec<String>,
}

impl std::fmt::Debug for ReplicaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaWriter")
            .field("name", &self.meta.name)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl ReplicaWriter {
    /// Start receiving replica `name` into `store`, whose body is
    /// `declared_bytes` long if the sender said so. In order: a bad name is
    /// refused; a name already held is [`Begun::AlreadyHeld`]; a declared
    /// length over [`MAX_REPLICA_BYTES`] and a store over its disk limit
    /// are refused; otherwise `tmp/NAME.replica.tmp` is created.
    pub fn begin(
        store: &Store,
        name: &str,
        declared_bytes: Option<u64>,
        declared_crc32: Option<u32>,
    ) -> Result<Begun, ReplicaError> {
        Self::begin_limited(
            store,
            name,
            declared_bytes,
            declared_crc32,
            MAX_REPLICA_BYTES,
        )
    }

    /// [`ReplicaWriter::begin`] with a size limit of `limit` bytes.
    pub(crate) fn begin_limited(
        store: &Store,
        name: &str,
        declared_bytes: Option<u64>,
        declared_crc32: Option<u32>,
        limit: u64,
    ) -> Result<Begun, ReplicaError> {
        let begun = Self::begin_uncounted(store, name, declared_bytes, declared_crc32, limit);
        if let Ok(Begun::AlreadyHeld) = begun {
            metrics::replica_received(Received::AlreadyHeld.as_str(), 0);
        }
        counted(begun)
    }

    fn begin_uncounted(
        store: &Store,
        name: &str,
        declared_bytes: Option<u64>,
        declared_crc32: Option<u32>,
        limit: u64,
    ) -> Result<Begun, ReplicaError> {
        let meta = parse_name(name)?;
        let fs = store.fs();
        if let (Some(bytes), Some(crc32)) = (declared_bytes, declared_crc32)
            && holds_same(&**fs, store.dir(), &meta, Identity { bytes, crc32 })
        {
            return Ok(Begun::AlreadyHeld);
        }
        if let Some(bytes) = declared_bytes.filter(|&b| b > limit) {
            return Err(ReplicaError::TooLarge {
                name: name.to_string(),
                bytes,
                limit,
            });
        }
        if let Some((held, limit)) = store.over_max_disk().map_err(ReplicaError::Io)? {
            return Err(ReplicaError::DiskFull { held, limit });
        }
        let tmp_dir = store.dir().join(TMP_DIR);
        fs.create_dir_all(&tmp_dir)
            .map_err(|e| ReplicaError::Io(StorageError::io("create tmp dir", &tmp_dir)(e)))?;
        let tmp = tmp_dir.join(format!("{name}{REPLICA_TMP_SUFFIX}"));
        let file = match fs.create_new(&tmp) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ReplicaError::InProgress {
                    name: name.to_string(),
                });
            }
            Err(err) => {
                return Err(ReplicaError::Io(StorageError::io(
                    "create replica temp file",
                    &tmp,
                )(err)));
            }
        };
        Ok(Begun::Writing(Box::new(ReplicaWriter {
            store: store.clone(),
            meta,
            tmp,
            file: Some(file),
            bytes: 0,
            limit,
            holders: Vec::new(),
        })))
    }

    /// Note the other stores that hold this batch (the sender, at least),
    /// for the manifest entry written once the replica is durable.
    pub fn set_holders(&mut self, holders: Vec<String>) {
        self.holders = holders;
    }

    /// The replica's name.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Append the next chunk of the body. Past [`MAX_REPLICA_BYTES`] the
    /// replica is refused; after any error, drop the writer (which removes
    /// the temp file).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ReplicaError> {
        counted(self.write_uncounted(chunk))
    }

    fn write_uncounted(&mut self, chunk: &[u8]) -> Result<(), ReplicaError> {
        let bytes = self.bytes + chunk.len() as u64;
        if bytes > self.limit {
            self.discard();
            return Err(ReplicaError::TooLarge {
                name: self.meta.name.clone(),
                bytes,
                limit: self.limit,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(ReplicaError::Io(StorageError::io(
                "write replica",
                &self.tmp,
            )(std::io::Error::other(
                "the replica was already refused",
            ))));
        };
        file.write_all(chunk)
            .map_err(|e| ReplicaError::Io(StorageError::io("write replica", &self.tmp)(e)))?;
        self.bytes = bytes;
        Ok(())
    }

    /// The whole body was written: verify it, make it durable under its
    /// name and say so. On any error the temp file is removed.
    pub fn finish(mut self) -> Result<Received, ReplicaError> {
        let received = counted(self.finish_uncounted());
        if let Ok(received) = received {
            let bytes = if received == Received::Created {
                self.bytes
            } else {
                0
            };
            metrics::replica_received(received.as_str(), bytes);
            tracing::debug!(replica = %self.meta.name, bytes, outcome = received.as_str(), "received a replica");
        }
        received
    }

    fn finish_uncounted(&mut self) -> Result<Received, ReplicaError> {
        let fs = self.store.fs().clone();
        let mut file = self.file.take().ok_or_else(|| {
            ReplicaError::Io(StorageError::io("finish replica", &self.tmp)(
                std::io::Error::other("the replica was already refused"),
            ))
        })?;
        file.sync_data()
            .map_err(|e| ReplicaError::Io(StorageError::io("fsync replica", &self.tmp)(e)))?;
        drop(file);
        verify(&*fs, &self.tmp, &self.meta)?;
        let dir = self.store.dir().to_path_buf();
        let target = dir.join(&self.meta.name);
        if fs.exists(&target) {
            let identity = Identity::of_file(&*fs, &self.tmp)
                .map_err(|e| ReplicaError::Io(StorageError::io("read replica", &self.tmp)(e)))?;
            if holds_same(&*fs, &dir, &self.meta, identity) {
                // The same file, held already (sent before, or placed
                // meanwhile by another route).
                return Ok(Received::AlreadyHeld);
            }
        }
        // Under its name, or the next free `.n` name when another file
        // holds it, under the store's naming lock.
        let placed = sluice_storage::store_segment::place_as(
            &*fs,
            &dir,
            &self.tmp,
            &self.meta.name,
            self.meta.min,
            self.meta.max,
        )
        .map_err(ReplicaError::Io)?;
        self.tmp = PathBuf::new();
        fs.sync_dir(&dir)
            .map_err(|e| ReplicaError::Io(StorageError::io("fsync store dir", &dir)(e)))?;
        self.store.note_batch(&placed, &self.holders);
        Ok(Received::Created)
    }

    /// Give up on the replica because its body failed in transit (the
    /// sender went away): the temp file is removed, and the refusal
    /// counted as `io`.
    pub fn abort(mut self, why: &str) {
        metrics::replica_refused("io");
        tracing::warn!(replica = %self.meta.name, bytes = self.bytes, why, "a replica's body failed in transit; nothing was kept");
        self.discard();
    }

    /// Close and remove the temp file, if it is still there.
    fn discard(&mut self) {
        self.file = None;
        if self.tmp.as_os_str().is_empty() {
            return;
        }
        match self.store.fs().remove_file(&self.tmp) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(
                file = %self.tmp.display(),
                error = %err,
                "could not remove a refused replica's temp file; the next start removes it"
            ),
        }
        self.tmp = PathBuf::new();
    }
}

impl Drop for ReplicaWriter {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Receive replica `name` from `body`, read to its end in chunks of 64
/// KiB: [`ReplicaWriter`] in one call. A file held already under that name
/// with the `identity` given is answered without reading `body`.
pub fn receive(
    store: &Store,
    name: &str,
    identity: Option<Identity>,
    mut body: impl Read,
) -> Result<Received, ReplicaError> {
    let (bytes, crc32) = (identity.map(|i| i.bytes), identity.map(|i| i.crc32));
    let mut writer = match ReplicaWriter::begin(store, name, bytes, crc32)? {
        Begun::AlreadyHeld => return Ok(Received::AlreadyHeld),
        Begun::Writing(writer) => writer,
    };
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return counted(Err(ReplicaError::Io(StorageError::io(
                    "read replica body for",
                    Path::new(name),
                )(err))));
            }
        };
        writer.write(&chunk[..n])?;
    }
    writer.finish()
}

/// Whether `dir` holds a file of `meta`'s range (`<min>-<max>.seg`, or a
/// `.n` variant placed beside it) with exactly `identity`. Variants are
/// numbered from 1 without gaps, as [`store_segment::adopt`] names them,
/// so the search stops at the first name that is free.
///
/// [`store_segment::adopt`]: sluice_storage::store_segment::adopt
fn holds_same(
    fs: &dyn sluice_storage::Fs,
    dir: &Path,
    meta: &SegmentMeta,
    identity: Identity,
) -> bool {
    const MAX_VARIANTS: usize = 64;
    for n in 0..MAX_VARIANTS {
        let name = if n == 0 {
            format!("{}-{}{SEGMENT_SUFFIX}", meta.min, meta.max)
        } else {
            format!("{}-{}.{n}{SEGMENT_SUFFIX}", meta.min, meta.max)
        };
        let path = dir.join(&name);
        if !fs.exists(&path) {
            return false;
        }
        if Identity::of_file(fs, &path).ok() == Some(identity) {
            return true;
        }
    }
    false
}

/// `name` as a store segment name, refused otherwise.
fn parse_name(name: &str) -> Result<SegmentMeta, ReplicaError> {
    let bad = || ReplicaError::BadName {
        name: name.to_string(),
    };
    // A path separator or a leading dot can never parse as two ULIDs, but
    // say so explicitly: the name becomes a path.
    if name.contains(['/', '\\']) || name.starts_with('.') || !name.ends_with(SEGMENT_SUFFIX) {
        return Err(bad());
    }
    SegmentMeta::parse(name, 0).map_err(|_| bad())
}

/// Check every batch's checksum, that ids increase strictly, and that the
/// ids span exactly the name's range.
fn verify(
    fs: &dyn sluice_storage::Fs,
    path: &Path,
    meta: &SegmentMeta,
) -> Result<(), ReplicaError> {
    let name = &meta.name;
    let corrupt = |source: StorageError| {
        if source.is_corrupt() {
            ReplicaError::Corrupt {
                name: name.clone(),
                source,
            }
        } else {
            ReplicaError::Io(source)
        }
    };
    let invalid = |detail: String| ReplicaError::Invalid {
        name: name.clone(),
        detail,
    };
    let mut scanner = SegmentScanner::open(fs, path).map_err(corrupt)?;
    let mut first: Option<Ulid> = None;
    let mut last: Option<Ulid> = None;
    while let Some((header, body)) = scanner.next_batch().map_err(corrupt)? {
        for record in RecordIter::new(body, header.count) {
            let record = record.map_err(|source| {
                corrupt(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    offset: 0,
                    source,
                })
            })?;
            if let Some(last) = last.filter(|&l| record.id <= l) {
                return Err(invalid(format!(
                    "its ids are not strictly increasing: {} follows {last}",
                    record.id
                )));
            }
            if memchr::memchr(b'\n', record.payload).is_some() {
                return Err(invalid(format!(
                    "record {} holds a newline in its payload",
                    record.id
                )));
            }
            first.get_or_insert(record.id);
            last = Some(record.id);
        }
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err(invalid("it holds no record".to_string()));
    };
    if (first, last) != (meta.min, meta.max) {
        return Err(invalid(format!(
            "its ids run from {first} to {last}, but its name says {} to {}",
            meta.min, meta.max
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
