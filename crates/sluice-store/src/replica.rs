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
//! Idempotence: a name already in the store directory is
//! [`Received::AlreadyHeld`], and nothing is written (a sender's retry).
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
    ) -> Result<Begun, ReplicaError> {
        Self::begin_limited(store, name, declared_bytes, MAX_REPLICA_BYTES)
    }

    /// [`ReplicaWriter::begin`] with a size limit of `limit` bytes.
    pub(crate) fn begin_limited(
        store: &Store,
        name: &str,
        declared_bytes: Option<u64>,
        limit: u64,
    ) -> Result<Begun, ReplicaError> {
        let begun = Self::begin_uncounted(store, name, declared_bytes, limit);
        if let Ok(Begun::AlreadyHeld) = begun {
            metrics::replica_received(Received::AlreadyHeld.as_str(), 0);
        }
        counted(begun)
    }

    fn begin_uncounted(
        store: &Store,
        name: &str,
        declared_bytes: Option<u64>,
        limit: u64,
    ) -> Result<Begun, ReplicaError> {
        let meta = parse_name(name)?;
        let fs = store.fs();
        if fs.exists(&store.dir().join(name)) {
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
            // Placed meanwhile (the same batch by another route): keep
            // what is there, which is whole.
            return Ok(Received::AlreadyHeld);
        }
        fs.rename(&self.tmp, &target)
            .map_err(|e| ReplicaError::Io(StorageError::io("rename replica", &target)(e)))?;
        self.tmp = PathBuf::new();
        fs.sync_dir(&dir)
            .map_err(|e| ReplicaError::Io(StorageError::io("fsync store dir", &dir)(e)))?;
        let mut meta = self.meta.clone();
        meta.bytes = self.bytes;
        self.store.note_batch(&meta, &self.holders);
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
/// KiB: [`ReplicaWriter`] in one call. A name already held is answered
/// without reading `body`.
pub fn receive(store: &Store, name: &str, mut body: impl Read) -> Result<Received, ReplicaError> {
    let mut writer = match ReplicaWriter::begin(store, name, None)? {
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
