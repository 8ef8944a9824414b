//! The receiver on a `MemFs`: created, already held, every refusal (and the
//! temp file gone after each), and a crash mid-receive.

use std::{path::Path, sync::Arc};

use sluice_record::{BatchEncoder, Record, Ulid};
use sluice_storage::{Fs, MemFs, SegmentWriter, WorkerPool, store_segment::list_segments};

use super::*;

const DIR: &str = "/store";

fn store(fs: &MemFs) -> Store {
    Store::open(Arc::new(fs.clone()), Path::new(DIR), WorkerPool::inline()).unwrap()
}

fn id(ms: u64) -> Ulid {
    Ulid::from_parts(ms, 7)
}

/// The bytes of a batch file holding `ids` in the given order, two records
/// a batch.
fn batch_file(ids: &[Ulid]) -> Vec<u8> {
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
                payload: format!("line {id}").as_bytes(),
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
    read(&fs, path)
}

fn read(fs: &MemFs, path: &Path) -> Vec<u8> {
    let file = fs.open_read(path).unwrap();
    let mut bytes = vec![0u8; file.len().unwrap() as usize];
    file.read_exact_at(&mut bytes, 0).unwrap();
    bytes
}

fn name(first: Ulid, last: Ulid) -> String {
    format!("{first}-{last}.seg")
}

fn ids() -> Vec<Ulid> {
    (1..=5).map(id).collect()
}

/// The names in `tmp/`.
fn tmp_files(fs: &MemFs) -> Vec<String> {
    fs.read_dir(&Path::new(DIR).join(TMP_DIR))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn segment_names(fs: &MemFs) -> Vec<String> {
    list_segments(fs, Path::new(DIR))
        .unwrap()
        .0
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[test]
fn a_replica_is_created_under_its_name_with_its_bytes() {
    let fs = MemFs::new();
    let store = store(&fs);
    let bytes = batch_file(&ids());
    let name = name(id(1), id(5));
    let got = receive(&store, &name, None, &bytes[..]).unwrap();
    assert_eq!(got, Received::Created);
    assert_eq!(read(&fs, &Path::new(DIR).join(&name)), bytes);
    assert_eq!(segment_names(&fs), vec![name]);
    assert!(tmp_files(&fs).is_empty());
}

#[test]
fn a_numbered_name_is_accepted() {
    let fs = MemFs::new();
    let store = store(&fs);
    let name = format!("{}-{}.2.seg", id(1), id(5));
    assert_eq!(
        receive(&store, &name, None, &batch_file(&ids())[..]).unwrap(),
        Received::Created
    );
    assert_eq!(segment_names(&fs), vec![name]);
}

/// A body that fails the test if it is read: a retry of a held name must
/// not be read.
struct Unread;

impl Read for Unread {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("the body of a replica already held was read");
    }
}

#[test]
fn a_name_already_held_is_answered_without_reading_or_writing() {
    let fs = MemFs::new();
    let store = store(&fs);
    let bytes = batch_file(&ids());
    let name = name(id(1), id(5));
    assert_eq!(
        receive(&store, &name, None, &bytes[..]).unwrap(),
        Received::Created
    );
    let ops = fs.ops_done();
    assert_eq!(
        receive(&store, &name, Some(Identity::of(&bytes)), Unread).unwrap(),
        Received::AlreadyHeld
    );
    assert_eq!(fs.ops_done(), ops, "a retry wrote something");
    assert_eq!(read(&fs, &Path::new(DIR).join(&name)), bytes);
}

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let fs = MemFs::new();
    let store = store(&fs);
    let good = name(id(1), id(5));
    for bad in [
        "",
        "x.seg",
        "../etc/passwd",
        &format!("../{good}"),
        &format!("tmp/{good}"),
        &format!("{}-{}.seg", id(5), id(1)),
        &format!("{}-{}.x.seg", id(1), id(5)),
        &format!("{good}.replica.tmp"),
        &format!("{}-{}", id(1), id(5)),
    ] {
        let err = receive(&store, bad, None, Unread).unwrap_err();
        assert!(matches!(err, ReplicaError::BadName { .. }), "{bad}: {err}");
        assert_eq!(err.reason(), "bad_name");
        assert!(err.to_string().contains("<ulid>-<ulid>.seg"), "{err}");
    }
    assert!(tmp_files(&fs).is_empty());
    assert!(segment_names(&fs).is_empty());
}

#[test]
fn a_corrupt_replica_is_refused_and_its_temp_file_removed() {
    let fs = MemFs::new();
    let store = store(&fs);
    let name = name(id(1), id(5));
    let good = batch_file(&ids());
    let mut flipped = good.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 0x40;
    let cut = &good[..good.len() - 4];
    for (what, bytes) in [("flipped", &flipped[..]), ("cut", cut), ("empty", &[][..])] {
        let err = receive(&store, &name, None, bytes).unwrap_err();
        assert_eq!(err.reason(), "corrupt", "{what}: {err}");
        assert!(err.to_string().contains(&name), "{what}: {err}");
        assert!(tmp_files(&fs).is_empty(), "{what}: {:?}", tmp_files(&fs));
        assert!(segment_names(&fs).is_empty(), "{what}");
    }
}

#[test]
fn an_unsorted_or_mismatched_replica_is_refused() {
    let fs = MemFs::new();
    let store = store(&fs);
    let unsorted = batch_file(&[id(1), id(3), id(2), id(5)]);
    let err = receive(&store, &name(id(1), id(5)), None, &unsorted[..]).unwrap_err();
    assert!(matches!(err, ReplicaError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("not strictly increasing"), "{err}");
    let repeated = batch_file(&[id(1), id(2), id(2), id(5)]);
    let err = receive(&store, &name(id(1), id(5)), None, &repeated[..]).unwrap_err();
    assert_eq!(err.reason(), "corrupt", "{err}");
    let err = receive(&store, &name(id(1), id(6)), None, &batch_file(&ids())[..]).unwrap_err();
    assert!(err.to_string().contains("but its name says"), "{err}");
    assert!(tmp_files(&fs).is_empty());
    assert!(segment_names(&fs).is_empty());
}

#[test]
fn a_replica_over_the_size_limit_is_refused_and_removed() {
    let fs = MemFs::new();
    let store = store(&fs);
    let name = name(id(1), id(5));
    // Declared too large: refused before the temp file is created.
    let err = match ReplicaWriter::begin(&store, &name, Some(MAX_REPLICA_BYTES + 1), None) {
        Err(err) => err,
        Ok(_) => panic!("a declared length over the limit was accepted"),
    };
    assert_eq!(err.reason(), "too_large");
    assert!(tmp_files(&fs).is_empty());
    // Streamed past the limit: refused at the chunk that passes it.
    let limit = 4096;
    let Begun::Writing(mut writer) =
        ReplicaWriter::begin_limited(&store, &name, None, None, limit).unwrap()
    else {
        panic!("not held yet");
    };
    let chunk = vec![0u8; 1000];
    let mut refused = None;
    for _ in 0..10 {
        if let Err(err) = writer.write(&chunk) {
            refused = Some(err);
            break;
        }
    }
    let err = refused.expect("the limit was not enforced");
    assert!(
        matches!(
            err,
            ReplicaError::TooLarge {
                bytes: 5000,
                limit: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "too_large");
    assert_eq!(writer.bytes(), 4000);
    assert!(tmp_files(&fs).is_empty(), "refusing removes the temp file");
    drop(writer);
    assert!(segment_names(&fs).is_empty());
}

#[test]
fn a_store_over_its_disk_limit_refuses_replicas() {
    let fs = MemFs::new();
    let store = store(&fs);
    let first = batch_file(&ids());
    receive(&store, &name(id(1), id(5)), None, &first[..]).unwrap();
    let held = first.len() as u64;
    assert_eq!(store.disk_bytes().unwrap(), held);

    store.set_max_disk(Some(held));
    assert_eq!(
        store.over_max_disk().unwrap(),
        None,
        "at the limit is not over it"
    );
    let second: Vec<Ulid> = (10..=12).map(id).collect();
    receive(
        &store,
        &name(id(10), id(12)),
        None,
        &batch_file(&second)[..],
    )
    .unwrap();

    let clone = store.clone();
    clone.set_max_disk(Some(held));
    let third: Vec<Ulid> = (20..=22).map(id).collect();
    let err = receive(&store, &name(id(20), id(22)), None, Unread).unwrap_err();
    assert!(
        matches!(err, ReplicaError::DiskFull { limit, .. } if limit == held),
        "{err}"
    );
    assert_eq!(err.reason(), "disk_full");
    assert!(err.to_string().contains("--max-disk"), "{err}");
    // A retry of a batch it holds is still answered.
    assert_eq!(
        receive(
            &store,
            &name(id(1), id(5)),
            Some(Identity::of(&batch_file(&ids()))),
            Unread
        )
        .unwrap(),
        Received::AlreadyHeld
    );
    store.set_max_disk(None);
    assert_eq!(
        receive(&store, &name(id(20), id(22)), None, &batch_file(&third)[..]).unwrap(),
        Received::Created
    );
    assert!(tmp_files(&fs).is_empty());
}

#[test]
fn a_full_filesystem_is_a_disk_full_refusal() {
    let fs = MemFs::new();
    let store = store(&fs);
    fs.set_capacity(Some(fs.used_bytes() + 10));
    let err = receive(&store, &name(id(1), id(5)), None, &batch_file(&ids())[..]).unwrap_err();
    assert_eq!(err.reason(), "disk_full", "{err}");
    fs.set_capacity(None);
    assert!(tmp_files(&fs).is_empty());
}

#[test]
fn a_failed_fsync_refuses_the_replica_and_leaves_nothing() {
    let fs = MemFs::new();
    let store = store(&fs);
    fs.fail_syncs(true);
    let err = receive(&store, &name(id(1), id(5)), None, &batch_file(&ids())[..]).unwrap_err();
    assert_eq!(err.reason(), "io", "{err}");
    fs.fail_syncs(false);
    assert!(tmp_files(&fs).is_empty());
    assert!(segment_names(&fs).is_empty());
}

#[test]
fn a_second_receive_of_the_same_name_waits_for_the_first() {
    let fs = MemFs::new();
    let store = store(&fs);
    let name = name(id(1), id(5));
    let bytes = batch_file(&ids());
    let Begun::Writing(mut first) = ReplicaWriter::begin(&store, &name, None, None).unwrap() else {
        panic!("not held yet");
    };
    first.write(&bytes[..10]).unwrap();
    let err = receive(&store, &name, None, &bytes[..]).unwrap_err();
    assert_eq!(err.reason(), "in_progress", "{err}");
    first.write(&bytes[10..]).unwrap();
    assert_eq!(first.finish().unwrap(), Received::Created);
    assert_eq!(
        receive(&store, &name, Some(Identity::of(&bytes)), Unread).unwrap(),
        Received::AlreadyHeld
    );
}

#[test]
fn a_writer_dropped_unfinished_removes_its_temp_file() {
    let fs = MemFs::new();
    let store = store(&fs);
    let bytes = batch_file(&ids());
    let Begun::Writing(mut writer) =
        ReplicaWriter::begin(&store, &name(id(1), id(5)), None, None).unwrap()
    else {
        panic!("not held yet");
    };
    writer.write(&bytes).unwrap();
    assert_eq!(tmp_files(&fs).len(), 1);
    drop(writer);
    assert!(tmp_files(&fs).is_empty());
    assert!(segment_names(&fs).is_empty());
}

#[test]
fn a_crash_mid_receive_leaves_only_a_temp_file_that_the_next_start_removes() {
    let fs = MemFs::new();
    let store = store(&fs);
    let name = name(id(1), id(5));
    let bytes = batch_file(&ids());
    let Begun::Writing(mut writer) = ReplicaWriter::begin(&store, &name, None, None).unwrap()
    else {
        panic!("not held yet");
    };
    writer.write(&bytes).unwrap();
    assert_eq!(tmp_files(&fs), vec![format!("{name}{REPLICA_TMP_SUFFIX}")]);
    // The process dies here: nothing runs the writer's drop.
    std::mem::forget(writer);
    fs.crash(Some(3));
    let store = self::store(&fs);
    assert!(
        tmp_files(&fs).is_empty(),
        "startup removes unfinished replicas"
    );
    assert!(segment_names(&fs).is_empty());
    assert_eq!(
        receive(&store, &name, None, &bytes[..]).unwrap(),
        Received::Created
    );
}

#[test]
fn another_file_of_a_held_name_is_kept_beside_it_and_a_retry_of_either_is_held() {
    // Two lanes can write the same range differently: one took ingest
    // segment A alone, the other merged A with B, whose ids fall inside
    // A's range. The second file must not be taken for the first.
    let fs = MemFs::new();
    let store = store(&fs);
    let name = name(id(1), id(5));
    let alone = batch_file(&[id(1), id(5)]);
    let merged = batch_file(&ids());
    assert_eq!(
        receive(&store, &name, Some(Identity::of(&alone)), &alone[..]).unwrap(),
        Received::Created
    );
    assert_eq!(
        receive(&store, &name, Some(Identity::of(&merged)), &merged[..]).unwrap(),
        Received::Created,
        "a differing file of a held name was taken as held"
    );
    let mut names: Vec<String> = sluice_storage::store_segment::list_segments(&fs, store.dir())
        .unwrap()
        .0
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    let mut want = vec![name.clone(), name.replace(".seg", ".1.seg")];
    want.sort();
    assert_eq!(names, want);
    for file in [&alone, &merged] {
        assert_eq!(
            receive(&store, &name, Some(Identity::of(file)), Unread).unwrap(),
            Received::AlreadyHeld
        );
        // Without the sender's identity the body is read and compared.
        assert_eq!(
            receive(&store, &name, None, &file[..]).unwrap(),
            Received::AlreadyHeld
        );
    }
}
