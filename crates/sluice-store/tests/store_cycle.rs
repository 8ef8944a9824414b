//! The gather → write → commit cycle under injected faults, in process: a
//! real HTTP API and consumer over the in-memory, fault-injecting filesystem,
//! with the ingest log on a clock the test moves.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{extract::Request, middleware::Next, response::IntoResponse};
use sluice_ingest::{IngestLog, ManualClock};
use sluice_query::{Matcher, Query};
use sluice_record::{BatchEncoder, IdGenerator, Record};
use sluice_storage::{Fs, MemFs};
use sluice_store::{Consumer, ConsumerConfig, LocalIngester, Store};

fn seal_segment(log: &IngestLog, ids: &mut IdGenerator, tag: &str, n: u32) -> Vec<String> {
    let mut segment = log.create_active().unwrap();
    let mut encoder = BatchEncoder::new();
    encoder.begin();
    let mut payloads = Vec::new();
    let mut first = None;
    for i in 0..n {
        let id = ids.next_at(sluice_record::now_ms());
        first.get_or_insert(id);
        let payload = format!("{tag} {i}");
        encoder.push(Record {
            id,
            flags: 0,
            topic: b"default",
            payload: payload.as_bytes(),
        });
        payloads.push(payload);
    }
    let last = ids.last().unwrap();
    segment
        .append(encoder.finish(), n, first.unwrap(), last)
        .unwrap();
    log.seal(segment).unwrap();
    payloads
}

fn query_all(store: &Store) -> (Vec<String>, sluice_query::QueryStats) {
    let query = Query::between(0, u64::MAX / 2, Matcher::All);
    let mut got = Vec::new();
    let scan = sluice_query::Scan::new(store.workers().clone());
    let stats = sluice_query::execute(
        &**store.fs(),
        store.dir(),
        &query,
        &scan,
        &mut |r: &Record<'_>| {
            got.push(String::from_utf8(r.payload.to_vec()).unwrap());
            true
        },
    )
    .unwrap();
    (got, stats)
}

/// An ingest log and a store on one in-memory filesystem, the log on a
/// manual clock, and the ingest API over them on a free port, whose commits
/// fail while the returned flag is up (as a network would lose them).
struct Node {
    fs: MemFs,
    clock: Arc<ManualClock>,
    log: Arc<IngestLog>,
    store: Store,
    base: String,
    fail_commits: Arc<AtomicBool>,
}

const PENDING_TIMEOUT: Duration = Duration::from_secs(60);

async fn node() -> Node {
    let fs = MemFs::new();
    let clock = ManualClock::new();
    let (log, _) = IngestLog::open_with_clock(
        Arc::new(fs.clone()),
        Path::new("/data/ingest"),
        PENDING_TIMEOUT,
        clock.clone(),
    )
    .unwrap();
    let log = Arc::new(log);
    let store = Store::open(
        Arc::new(fs.clone()),
        Path::new("/data/store"),
        sluice_storage::WorkerPool::inline(),
    )
    .unwrap();
    let fail_commits = Arc::new(AtomicBool::new(false));
    let flag = fail_commits.clone();
    let state = sluice_api::ApiState {
        ingest: Some(log.clone()),
        store: Some(store.clone()),
        workers: store.workers().clone(),
        metrics: None,
        ready: Arc::new(AtomicBool::new(true)),
        queries: Arc::new(sluice_api::admission::QueryGate::new(2, 2)),
        cluster: Arc::new(sluice_api::cluster::Cluster::solo(
            sluice_cluster::Roles {
                ingest: true,
                store: true,
            },
            "127.0.0.1:0",
        )),
        repair: None,
        push: None,
    };
    let router = sluice_api::router(state).layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let fail = flag.load(Ordering::Relaxed) && request.uri().path() == "/ingest/commit";
            async move {
                if fail {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                next.run(request).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Node {
        fs,
        clock,
        log,
        store,
        base: format!("http://{addr}"),
        fail_commits,
    }
}

/// A consumer of the ingester at `base` into `store` that never waits for
/// a lend; with `local`, that ingester is this process's own, whose
/// segments it takes by hard link.
fn consumer(store: &Store, base: String, local: Option<&Arc<IngestLog>>) -> Consumer {
    Consumer::new(
        store.clone(),
        ConsumerConfig {
            ingesters: Arc::new(vec![base.clone()]),
            poll_wait: Duration::ZERO,
            local: local.map(|log| LocalIngester {
                base,
                log: log.clone(),
            }),
            ..ConsumerConfig::default()
        },
    )
}

#[test]
fn a_failure_anywhere_in_the_store_cycle_is_retried_without_loss_or_visible_duplicates() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let Node {
            fs,
            clock,
            log,
            store,
            base,
            fail_commits,
        } = node().await;
        let consumer = consumer(&store, base, None);

        let mut ids = IdGenerator::new();
        let mut expected = Vec::new();
        for tag in ["a", "b", "c"] {
            expected.extend(seal_segment(&log, &mut ids, tag, 1000));
        }

        // 1. The store's fsync fails: nothing is committed, everything goes back.
        fs.fail_syncs(true);
        assert!(consumer.cycle().await.is_err());
        assert_eq!(
            log.counts(),
            (3, 0),
            "every segment is back in the ingest queue"
        );
        assert!(store.segments().unwrap().is_empty());
        fs.fail_syncs(false);

        // 2. The disk is full: the same.
        fs.set_capacity(Some(fs.used_bytes() + 1000));
        assert!(consumer.cycle().await.is_err());
        assert_eq!(log.counts(), (3, 0));
        assert!(store.segments().unwrap().is_empty());
        fs.set_capacity(None);

        // 3. The commits are lost: the store has the records, the segments
        //    stay pending, time out, and are consumed a second time.
        fail_commits.store(true, Ordering::Relaxed);
        assert_eq!(consumer.cycle().await.unwrap(), 3);
        assert_eq!(log.counts(), (0, 3));
        fail_commits.store(false, Ordering::Relaxed);
        clock.advance(PENDING_TIMEOUT);
        assert_eq!(consumer.cycle().await.unwrap(), 3);
        assert_eq!(log.counts(), (0, 0));

        // The store holds every record twice; a query shows each once, in order.
        let (got, stats) = query_all(&store);
        assert_eq!(stats.records_scanned, 6000, "the records are stored twice");
        assert_eq!(stats.duplicates_removed, 3000);
        assert_eq!(got, expected);
        assert_eq!(consumer.cycle().await.unwrap(), 0);
    });
}

/// An ingeststore's store takes its own ingester's segments as hard links
/// (no second copy of their bytes), through the same faults, and downloads
/// them where no link can be made.
#[test]
fn an_ingeststores_own_segments_are_taken_by_link_through_faults() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let Node {
            fs,
            clock,
            log,
            store,
            base,
            fail_commits,
        } = node().await;
        let consumer = consumer(&store, base, Some(&log));
        let mut ids = IdGenerator::new();
        let mut expected = Vec::new();
        for tag in ["a", "b", "c"] {
            expected.extend(seal_segment(&log, &mut ids, tag, 1000));
        }

        // 1. The store's fsync fails: everything goes back, and dropping the
        //    links left the ingester's files whole (consumed in full below).
        fs.fail_syncs(true);
        assert!(consumer.cycle().await.is_err());
        assert_eq!(log.counts(), (3, 0));
        assert!(store.segments().unwrap().is_empty());
        fs.fail_syncs(false);

        // 2. No room for a copy of one more byte: a download could not be
        //    written, a link needs none. The commits are lost, so the store
        //    holds the files while the ingester still lends them.
        fs.set_capacity(Some(fs.used_bytes()));
        fail_commits.store(true, Ordering::Relaxed);
        assert_eq!(consumer.cycle().await.unwrap(), 3);
        assert_eq!(log.counts(), (0, 3));
        fs.set_capacity(None);

        // 3. Lent again after the timeout: linked again, committed, and
        //    the ingester's names removed; the store's stay.
        fail_commits.store(false, Ordering::Relaxed);
        clock.advance(PENDING_TIMEOUT);
        assert_eq!(consumer.cycle().await.unwrap(), 3);
        assert_eq!(log.counts(), (0, 0));

        // 4. Where no link can be made, the segments are downloaded: a
        //    second copy, which needs room.
        fs.refuse_links(true);
        expected.extend(seal_segment(&log, &mut ids, "d", 1000));
        fs.set_capacity(Some(fs.used_bytes()));
        assert!(consumer.cycle().await.is_err());
        assert_eq!(log.counts(), (1, 0));
        fs.set_capacity(None);
        assert_eq!(consumer.cycle().await.unwrap(), 1);
        assert_eq!(log.counts(), (0, 0));

        let (got, stats) = query_all(&store);
        assert_eq!(stats.records_scanned, 7000, "a-c twice, d once");
        assert_eq!(stats.duplicates_removed, 3000);
        assert_eq!(got, expected);

        // 5. A linked segment that fails its checks goes back, and its
        //    link is not left in the store's tmp/.
        fs.refuse_links(false);
        seal_segment(&log, &mut ids, "e", 1000);
        let ingest = Path::new("/data/ingest");
        let name = fs
            .read_dir(ingest)
            .unwrap()
            .into_iter()
            .find(|e| e.name.ends_with(".flushed"))
            .unwrap()
            .name;
        let mut bytes = fs.read_all(&ingest.join(&name)).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        fs.write_all_synced(&ingest.join(&name), &bytes);
        assert!(consumer.cycle().await.is_err());
        assert_eq!(log.counts(), (1, 0));
        let tmp = fs.read_dir(Path::new("/data/store/tmp")).unwrap();
        assert!(tmp.is_empty(), "left in tmp/: {tmp:?}");
    });
}
