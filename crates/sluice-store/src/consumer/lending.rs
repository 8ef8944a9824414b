//! The lending protocol's calls, as the consumer makes them: `next`,
//! `commit` and `failed` over HTTP, and a lent segment taken into `tmp/`
//! (a hard link to this process's own ingester's file, else downloaded).

use std::{path::PathBuf, time::Duration};

use futures_util::StreamExt;
use sluice_record::Ulid;
use sluice_storage::{StorageError, store_segment::TMP_DIR};

use super::{
    ConsumeError, Consumer, DEFAULT_LEASE, DOWNLOAD_WRITE_BYTES, LEASE_HEADER,
    files::{link_lent, verify_and_sort},
};
use crate::metrics;

impl Consumer {
    /// Lend the next segment: its id and lease.
    pub(super) async fn next(
        &self,
        base: &str,
        wait: Duration,
    ) -> Result<Option<(Ulid, Duration)>, ConsumeError> {
        let http = |source| ConsumeError::Http {
            base: base.to_string(),
            what: "next",
            source,
        };
        let response = self
            .client
            .post(format!("{base}/ingest/next?wait_ms={}", wait.as_millis()))
            .send()
            .await
            .map_err(http)?;
        match response.status().as_u16() {
            204 => Ok(None),
            200 => {
                let lease = response
                    .headers()
                    .get(LEASE_HEADER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .map(Duration::from_millis)
                    .unwrap_or(DEFAULT_LEASE);
                let text = response.text().await.map_err(http)?;
                Ulid::from_string(text.trim())
                    .map(|id| Some((id, lease)))
                    .map_err(|_| ConsumeError::Status {
                        base: base.to_string(),
                        what: "next returned a bad id",
                        status: 200,
                    })
            }
            status => Err(ConsumeError::Status {
                base: base.to_string(),
                what: "next",
                status,
            }),
        }
    }

    /// Where a lent segment is taken to: the store's `tmp/`.
    pub(super) fn download_path(&self, id: Ulid) -> PathBuf {
        self.store
            .dir()
            .join(TMP_DIR)
            .join(format!("{id}.ingest.tmp"))
    }

    /// Take a lent segment into `tmp/` (a hard link to it when it is this
    /// process's own, else a download), verify it, and sort it if needed.
    /// Returns its path, size and id range.
    pub(super) async fn download(
        &self,
        base: &str,
        id: Ulid,
    ) -> Result<(PathBuf, u64, (Ulid, Ulid, u64)), ConsumeError> {
        if let Some(local) = self.config.local.as_ref().filter(|l| l.base == base) {
            let log = local.log.clone();
            let fs = self.store.fs().clone();
            let path = self.download_path(id);
            let linked = tokio::task::spawn_blocking(move || {
                let Some(bytes) = link_lent(&log, &*fs, id, &path)? else {
                    return Ok(None);
                };
                match verify_and_sort(&*fs, &path) {
                    Ok(range) => Ok::<_, ConsumeError>(Some((path, bytes, range))),
                    Err(err) => {
                        // The segment goes back to the ingester; the link
                        // would only keep its blocks on disk.
                        let _ = fs.remove_file(&path);
                        Err(err)
                    }
                }
            })
            .await
            .map_err(|e| ConsumeError::Merge(e.to_string()))?;
            match linked {
                Ok(Some(taken)) => {
                    metrics::taken("link", taken.1);
                    return Ok(taken);
                }
                Ok(None) => {}
                Err(err) => return Err(err),
            }
        }
        let taken = self.download_over_http(base, id).await?;
        metrics::taken("download", taken.1);
        Ok(taken)
    }

    /// Download a lent segment into `tmp/`, verify it, and sort it if needed.
    async fn download_over_http(
        &self,
        base: &str,
        id: Ulid,
    ) -> Result<(PathBuf, u64, (Ulid, Ulid, u64)), ConsumeError> {
        let http = |source| ConsumeError::Http {
            base: base.to_string(),
            what: "read",
            source,
        };
        let response = self
            .client
            .get(format!("{base}/ingest/read?id={id}"))
            .send()
            .await
            .map_err(http)?;
        if response.status().as_u16() != 200 {
            return Err(ConsumeError::Status {
                base: base.to_string(),
                what: "read",
                status: response.status().as_u16(),
            });
        }
        let expected = response.content_length();
        let fs = self.store.fs().clone();
        let path = self.download_path(id);
        let _ = fs.remove_file(&path);
        let mut file = fs
            .create_new(&path)
            .map_err(StorageError::io("create download", &path))?;
        let mut got = 0u64;
        let mut body = response.bytes_stream();
        // The body's chunks are gathered into writes of DOWNLOAD_WRITE_BYTES:
        // the page cache then holds the file in large folios, which a
        // query's mapping faults in 15 times fewer pages at a time than
        // the small folios of 16-64 KiB writes (BENCHMARKS.md, "Design
        // measurements").
        let mut pending = Vec::with_capacity(DOWNLOAD_WRITE_BYTES);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(http)?;
            got += chunk.len() as u64;
            pending.extend_from_slice(&chunk);
            if pending.len() >= DOWNLOAD_WRITE_BYTES {
                file.write_all(&pending)
                    .map_err(StorageError::io("write download", &path))?;
                pending.clear();
            }
        }
        file.write_all(&pending)
            .map_err(StorageError::io("write download", &path))?;
        drop(file);
        if let Some(expected) = expected
            && expected != got
        {
            return Err(ConsumeError::ShortBody {
                base: base.to_string(),
                id,
                got,
                expected,
            });
        }
        let verify_path = path.clone();
        let range = tokio::task::spawn_blocking(move || verify_and_sort(&*fs, &verify_path))
            .await
            .map_err(|e| ConsumeError::Merge(e.to_string()))??;
        Ok((path, got, range))
    }

    /// Commit a segment, naming the stores that hold its records (none:
    /// an ingester without replication counts this store alone).
    pub(super) async fn commit(
        &self,
        base: &str,
        id: Ulid,
        replicas: &[String],
    ) -> Result<(), ConsumeError> {
        let mut url = format!("{base}/ingest/commit?id={id}");
        if !replicas.is_empty() {
            url.push_str("&replicas=");
            url.push_str(&replicas.join(","));
        }
        let response = self
            .client
            .post(url)
            .send()
            .await
            .map_err(|source| ConsumeError::Http {
                base: base.to_string(),
                what: "commit",
                source,
            })?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(ConsumeError::Status {
                base: base.to_string(),
                what: "commit",
                status,
            }),
        }
    }

    pub(super) async fn post(
        &self,
        base: &str,
        what: &'static str,
        id: Ulid,
    ) -> Result<(), ConsumeError> {
        let response = self
            .client
            .post(format!("{base}/ingest/{what}?id={id}"))
            .send()
            .await
            .map_err(|source| ConsumeError::Http {
                base: base.to_string(),
                what,
                source,
            })?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(ConsumeError::Status {
                base: base.to_string(),
                what,
                status,
            }),
        }
    }
}
