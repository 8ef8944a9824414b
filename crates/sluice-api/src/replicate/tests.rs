//! The handler in process: the router on a port of its own, over a store
//! on a `MemFs`.

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
};

use sluice_record::{BatchEncoder, Record, Ulid};
use sluice_storage::{Fs, MemFs, SegmentWriter, WorkerPool};
use sluice_store::Store;

const DIR: &str = "/store";

/// Serve the router with (or without) a store on `fs`; its base URL.
async fn serve(fs: &MemFs, store_role: bool) -> (String, Option<Store>) {
    let store = store_role
        .then(|| Store::open(Arc::new(fs.clone()), Path::new(DIR), WorkerPool::inline()).unwrap());
    let state = crate::ApiState {
        ingest: None,
        store: store.clone(),
        workers: WorkerPool::inline(),
        metrics: None,
        ready: Arc::new(AtomicBool::new(true)),
        queries: Arc::new(crate::admission::QueryGate::new(2, 2)),
        cluster: Arc::new(crate::cluster::Cluster::solo(
            sluice_cluster::Roles {
                ingest: false,
                store: store_role,
            },
            "127.0.0.1:0",
        )),
        repair: None,
        push: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = crate::router(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), store)
}

fn id(ms: u64) -> Ulid {
    Ulid::from_parts(ms, 1)
}

/// A batch file of `ids` (in that order), one batch of each two, and its
/// name.
fn batch_file(ids: &[Ulid]) -> (String, Vec<u8>) {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/scratch")).unwrap();
    let path = Path::new("/scratch/file.seg");
    let mut writer = SegmentWriter::create(&fs, path).unwrap();
    let mut encoder = BatchEncoder::new();
    for chunk in ids.chunks(2) {
        encoder.begin();
        for &id in chunk {
            encoder.push(Record {
                id,
                flags: 0,
                topic: b"app",
                payload: b"a line",
            });
        }
        writer
            .append(
                encoder.finish(),
                chunk.len() as u32,
                chunk[0],
                chunk[chunk.len() - 1],
            )
            .unwrap();
    }
    drop(writer);
    let name = format!("{}-{}.seg", ids[0], ids[ids.len() - 1]);
    (name, read(&fs, path))
}

fn read(fs: &MemFs, path: &Path) -> Vec<u8> {
    let file = fs.open_read(path).unwrap();
    let mut bytes = vec![0u8; file.len().unwrap() as usize];
    file.read_exact_at(&mut bytes, 0).unwrap();
    bytes
}

fn tmp_files(fs: &MemFs) -> Vec<String> {
    fs.read_dir(&Path::new(DIR).join("tmp"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

async fn put(base: &str, name: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    send(base, name, body, None).await
}

/// `put` as a store sends it: with the whole file's CRC-32, so a retry of
/// a held file is answered before its body is read.
async fn put_identified(base: &str, name: &str, body: Vec<u8>) -> (u16, String) {
    let crc32 = sluice_store::replica::Identity::of(&body).crc32;
    send(base, name, body, Some(crc32)).await
}

async fn send(
    base: &str,
    name: &str,
    body: impl Into<reqwest::Body>,
    crc32: Option<u32>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .put(format!("{base}/store/replicate"))
        .query(&[("batch", name)]);
    if let Some(crc32) = crc32 {
        request = request.header(
            sluice_store::replicate::CRC32_HEADER,
            format!("{crc32:08x}"),
        );
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_replica_is_created_then_held_and_its_bytes_are_the_senders() {
    let fs = MemFs::new();
    let (base, _) = serve(&fs, true).await;
    let (name, bytes) = batch_file(&(1..=9).map(id).collect::<Vec<_>>());
    let (status, text) = put(&base, &name, bytes.clone()).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(read(&fs, &Path::new(DIR).join(&name)), bytes);
    let (status, text) = put(&base, &name, bytes.clone()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("held already"), "{text}");
    assert!(tmp_files(&fs).is_empty());
}

#[tokio::test]
async fn a_streamed_body_is_written_chunk_by_chunk() {
    let fs = MemFs::new();
    let (base, _) = serve(&fs, true).await;
    let (name, bytes) = batch_file(&(1..=40).map(id).collect::<Vec<_>>());
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = bytes
        .chunks(7)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, text) = put(&base, &name, body).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(read(&fs, &Path::new(DIR).join(&name)), bytes);
}

#[tokio::test]
async fn refusals_have_their_status_and_leave_nothing() {
    let fs = MemFs::new();
    let (base, store) = serve(&fs, true).await;
    let (name, bytes) = batch_file(&(1..=9).map(id).collect::<Vec<_>>());

    let (status, text) = put(&base, "../x.seg", bytes.clone()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not a store segment name"), "{text}");

    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let (status, text) = put(&base, &name, corrupt).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("corrupt"), "{text}");

    let (unsorted_name, _) = batch_file(&[id(1), id(5)]);
    let (_, unsorted) = batch_file(&[id(1), id(3), id(2), id(5)]);
    let (status, text) = put(&base, &unsorted_name, unsorted).await;
    assert_eq!(status, 422, "{text}");
    assert!(tmp_files(&fs).is_empty());
    assert!(!fs.exists(&Path::new(DIR).join(&name)));

    let store = store.unwrap();
    let (held_name, held) = batch_file(&[id(20), id(21)]);
    assert_eq!(put(&base, &held_name, held.clone()).await.0, 201);
    store.set_max_disk(Some(1));
    let (status, text) = put(&base, &name, bytes.clone()).await;
    assert_eq!(status, 507, "{text}");
    assert!(text.contains("--max-disk"), "{text}");
    // A retry of what it holds is still answered.
    let (status, _) = put_identified(&base, &held_name, held).await;
    assert_eq!(status, 200);
    store.set_max_disk(None);
    assert_eq!(put(&base, &name, bytes).await.0, 201);
}

#[tokio::test]
async fn a_node_without_the_store_role_answers_404() {
    let fs = MemFs::new();
    let (base, _) = serve(&fs, false).await;
    let (name, bytes) = batch_file(&[id(1), id(2)]);
    let (status, text) = put(&base, &name, bytes).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("store role"), "{text}");
}
