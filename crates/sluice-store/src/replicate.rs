//! Replication, the sending side: after a lane wrote a store segment, it
//! streams the durable file to RF−1 other ready stores before it commits
//! (`PUT /store/replicate?batch=NAME`; the receiver is `replica.rs`).
//!
//! Targets come from [`placement::rank`] over the stores the view offers
//! (live, `ready`, not this one). The first RF−1 are sent to at once; one
//! that fails (an error, a refusal, the deadline) is replaced by the next
//! in rendezvous order, until RF−1 have the file or no store is left. The
//! file is read 256 KiB at a time: never a whole segment in memory.
//!
//! A receiver answers 201 (written, durable) or 200 (it already held that
//! segment: a retry); both count as a replica. Anything else, or no answer
//! before [`Replication::timeout`], counts as a failure of that target.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream::FuturesUnordered};
use sluice_storage::Fs;

use crate::{
    lane::{self, Fanout},
    metrics,
    placement::{self, Candidate},
};

/// Where a store finds the other stores, and its own name in commits.
pub trait ReplicaSource: Send + Sync {
    /// This store's node id: the first replica a commit names.
    fn self_id(&self) -> String;
    /// The stores that can take a replica now: live, `ready`, not this one.
    fn targets(&self) -> Vec<Candidate>;
    /// Every store the view knows, live or dead, this one included: what
    /// repair counts a batch's live holders against. By default this store
    /// and the [`targets`](ReplicaSource::targets), all live.
    fn stores(&self) -> Vec<StoreState> {
        let me = StoreState {
            candidate: Candidate {
                id: self.self_id(),
                api: String::new(),
                weight: 1,
            },
            live: true,
            accepts: false,
        };
        std::iter::once(me)
            .chain(self.targets().into_iter().map(|candidate| StoreState {
                candidate,
                live: true,
                accepts: true,
            }))
            .collect()
    }
}

/// Where [`Replication::send_ranked`] sends a file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Targets<'a> {
    /// The stores to try, in order.
    pub(crate) ranked: &'a [&'a Candidate],
    /// How many must take it.
    pub(crate) want: usize,
    /// Other stores known to hold it already.
    pub(crate) holders: &'a [String],
}

/// A store as the view shows it, for repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreState {
    /// Its id, API address and placement weight.
    pub candidate: Candidate,
    /// Gossip says it is alive (its data can be read).
    pub live: bool,
    /// It takes replicas now (live, `ready`).
    pub accepts: bool,
}

/// How a lane replicates.
#[derive(Clone)]
pub struct Replication {
    /// Copies of each segment on distinct stores, this one included
    /// (`--replication-factor`).
    pub rf: u32,
    /// The other stores.
    pub source: Arc<dyn ReplicaSource>,
    /// How long one target may take to answer for one segment.
    pub timeout: Duration,
}

/// The default deadline of one replica.
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(30);
/// The header that carries a replica's whole-file CRC-32, in hex.
pub const CRC32_HEADER: &str = "x-sluice-crc32";
/// Bytes read from the segment per chunk sent.
const CHUNK_BYTES: usize = 256 << 10;

/// Why a segment could not be replicated enough.
#[derive(Debug, thiserror::Error)]
#[error(
    "segment {segment}: {got} of the {want} other replicas written ({tried} stores tried); last failure: {last}"
)]
pub struct ReplicateError {
    /// The segment's file name.
    pub segment: String,
    /// Replicas wanted on other stores (RF−1).
    pub want: usize,
    /// Replicas written.
    pub got: usize,
    /// Stores tried.
    pub tried: usize,
    /// What went wrong last.
    pub last: String,
}

impl Replication {
    /// Other stores needed: RF−1.
    pub fn others(&self) -> usize {
        lane::others(self.rf)
    }

    /// Send `dir/name` to RF−1 other stores. Returns their node ids.
    pub(crate) async fn send(
        &self,
        client: &reqwest::Client,
        fs: &Arc<dyn Fs>,
        dir: &Path,
        name: &str,
    ) -> Result<Vec<String>, ReplicateError> {
        let want = self.others();
        if want == 0 {
            return Ok(Vec::new());
        }
        let candidates = self.source.targets();
        let ranked = placement::rank(name, &candidates);
        let targets = Targets {
            ranked: &ranked,
            want,
            holders: &[],
        };
        self.send_ranked(client, fs, dir, name, targets).await
    }

    /// Send `dir/name` to `want` of `ranked`, in order: the first `want` at
    /// once, each failure replaced by the next. `holders` are other stores
    /// known to hold the batch already, named to the receivers for their
    /// manifests with this one. Returns the node ids that took it.
    pub(crate) async fn send_ranked(
        &self,
        client: &reqwest::Client,
        fs: &Arc<dyn Fs>,
        dir: &Path,
        name: &str,
        targets: Targets<'_>,
    ) -> Result<Vec<String>, ReplicateError> {
        let Targets {
            ranked,
            want,
            holders,
        } = targets;
        let me = self.source.self_id();
        let mut from = vec![me.clone()];
        from.extend(holders.iter().filter(|h| **h != me).cloned());
        let from = from.join(",");
        let from = from.as_str();
        let path = dir.join(name);
        // Receivers tell a retry of this file from another file of the
        // same name by its length and CRC-32 (see `replica.rs`).
        let crc32 = {
            let (fs, path) = (fs.clone(), path.clone());
            tokio::task::spawn_blocking(move || crate::replica::Identity::of_file(&*fs, &path))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|identity| identity.crc32)
        };
        let outgoing = Outgoing {
            path: &path,
            name,
            from,
            crc32,
        };
        let outgoing = &outgoing;
        // The target choice and its fallback rule are the lane's
        // (`lane::Fanout`), which the simulation drives too.
        let (mut fanout, first) = Fanout::start(ranked.to_vec(), want);
        let mut running = FuturesUnordered::new();
        let mut last = "no ready store to send to".to_string();
        for target in first {
            running.push(self.one(client, fs, outgoing, target));
        }
        while let Some((target, result)) = running.next().await {
            match result {
                Ok(()) => fanout.succeeded(target),
                Err(why) => {
                    tracing::warn!(segment = name, target = %target.id, api = %target.api, error = %why, "replica failed; trying the next store");
                    last = format!("{}: {why}", target.id);
                    if let Some(next_target) = fanout.failed() {
                        running.push(self.one(client, fs, outgoing, next_target));
                    }
                }
            }
        }
        match fanout.outcome() {
            Ok(done) => Ok(done.into_iter().map(|c| c.id.clone()).collect()),
            Err(short) => {
                metrics::replication_failed("too_few_stores");
                Err(ReplicateError {
                    segment: name.to_string(),
                    want,
                    got: short.got,
                    tried: short.tried,
                    last,
                })
            }
        }
    }

    /// Send the file to one target; its id with the outcome.
    async fn one<'t>(
        &self,
        client: &reqwest::Client,
        fs: &Arc<dyn Fs>,
        outgoing: &Outgoing<'_>,
        target: &'t Candidate,
    ) -> (&'t Candidate, Result<(), String>) {
        let started = Instant::now();
        let sent = tokio::time::timeout(self.timeout, put(client, fs, outgoing, target)).await;
        let result = match sent {
            Err(_) => {
                metrics::replication_failed("timeout");
                Err(format!("no answer in {:?}", self.timeout))
            }
            Ok(Err((reason, why))) => {
                metrics::replication_failed(reason);
                Err(why)
            }
            Ok(Ok(bytes)) => {
                metrics::replicated(&target.id, bytes, started.elapsed());
                Ok(())
            }
        };
        (target, result)
    }
}

/// `PUT http://API/store/replicate?batch=NAME` with the file as the body.
/// Returns the bytes sent, or a failure reason (for the counter) and why.
/// A file on its way to other stores.
struct Outgoing<'a> {
    path: &'a Path,
    name: &'a str,
    /// The stores named as holders to the receivers.
    from: &'a str,
    /// The whole file's CRC-32, if it could be read.
    crc32: Option<u32>,
}

async fn put(
    client: &reqwest::Client,
    fs: &Arc<dyn Fs>,
    outgoing: &Outgoing<'_>,
    target: &Candidate,
) -> Result<u64, (&'static str, String)> {
    let Outgoing {
        path,
        name,
        from,
        crc32,
    } = *outgoing;
    let file = {
        let (fs, owned) = (fs.clone(), path.to_path_buf());
        tokio::task::spawn_blocking(move || fs.open_read(&owned).and_then(|f| Ok((f.len()?, f))))
            .await
            .map_err(|e| ("io", e.to_string()))?
            .map_err(|e| ("io", format!("open {}: {e}", path.display())))?
    };
    let (len, file) = file;
    let file: Arc<dyn sluice_storage::ReadFile> = Arc::from(file);
    let chunks = futures_util::stream::unfold(0u64, move |offset| {
        let file = file.clone();
        async move {
            if offset >= len {
                return None;
            }
            let want = CHUNK_BYTES.min((len - offset) as usize);
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, offset).map(|()| buf)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
            Some((read, offset + want as u64))
        }
    });
    let url = format!("http://{}/store/replicate", target.api);
    let mut request = client
        .put(url)
        .query(&[("batch", name), ("from", from)])
        .header(reqwest::header::CONTENT_LENGTH, len);
    if let Some(crc32) = crc32 {
        request = request.header(CRC32_HEADER, format!("{crc32:08x}"));
    }
    let response = request
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .map_err(|e| ("unreachable", format!("{}: {e}", target.api)))?;
    match response.status().as_u16() {
        200 | 201 => Ok(len),
        507 => Err(("disk_full", format!("{} is full (507)", target.api))),
        status => {
            let body = response.text().await.unwrap_or_default();
            Err((
                "refused",
                format!("{} answered {status}: {}", target.api, body.trim()),
            ))
        }
    }
}
