use super::*;
use crate::{MemFs, segment_cache::SharedBatchFile};
use sluice_record::Record;
use std::sync::atomic::Ordering;

#[test]
fn names_parse_strictly() {
    let a = Ulid::from_parts(1, 1);
    let b = Ulid::from_parts(2, 1);
    assert!(SegmentMeta::parse(&format!("{a}-{b}.seg"), 0).is_ok());
    assert!(SegmentMeta::parse(&format!("{a}-{b}.3.seg"), 0).is_ok());
    assert!(SegmentMeta::parse(&format!("{b}-{a}.seg"), 0).is_err());
    assert!(SegmentMeta::parse(&format!("{a}-{b}.x.seg"), 0).is_err());
    assert!(SegmentMeta::parse("notes.txt", 0).is_err());
}

#[test]
fn written_segments_read_back_in_order_without_duplicates() {
    for format in [SegmentKind::Batches, SegmentKind::Blocks] {
        written_segment_reads_back(format);
    }
}

fn written_segment_reads_back(format: SegmentKind) {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    fs.create_dir_all(dir).unwrap();
    let mut w = StoreSegmentWriter::create(&fs, dir, format, WorkerPool::inline()).unwrap();
    let payload = vec![b'p'; 5000];
    for i in 0..1000u128 {
        let r = Record {
            id: Ulid(i / 2 + 7),
            flags: 0,
            topic: b"t",
            payload: &payload,
        };
        w.push(r).unwrap();
    }
    assert_eq!(w.duplicates(), 500);
    let meta = w.finish().unwrap().unwrap();
    assert_eq!((meta.min, meta.max), (Ulid(7), Ulid(506)));
    let (segments, strangers) = list_segments(&fs, dir).unwrap();
    assert_eq!(segments, vec![meta.clone()]);
    assert!(strangers.is_empty());
    let mut cursor = open_cursor(
        &fs,
        &dir.join(&meta.name),
        &ScanOptions::new(WorkerPool::inline()),
    )
    .unwrap();
    let mut ids = Vec::new();
    while cursor.advance().unwrap() {
        ids.push(cursor.record().id.0);
    }
    assert_eq!(ids, (7..507).collect::<Vec<_>>());
    match format {
        SegmentKind::Batches => assert_eq!(cursor.bytes_read(), meta.bytes),
        SegmentKind::Blocks => {
            assert!(cursor.bytes_read() > 0 && cursor.bytes_read() < meta.bytes)
        }
    }
}

/// A batch file of `payloads` (ids from 1) in `dir`.
fn batch_file(fs: &MemFs, dir: &Path, payloads: &[impl AsRef<str>]) -> SegmentMeta {
    let mut w = StoreSegmentWriter::batches(fs, dir).unwrap();
    for (i, payload) in payloads.iter().enumerate() {
        let id = Ulid(i as u128 + 1);
        let record = Record {
            id,
            flags: 0,
            topic: b"t",
            payload: payload.as_ref().as_bytes(),
        };
        w.push(record).unwrap();
    }
    w.finish().unwrap().unwrap()
}

/// A query's segment cache maps a sealed batch file once for every
/// query, and notes once one query verified all of it; it maps it
/// again (not verified) once a file of other content took its name,
/// and lets the mapping go when the file leaves the listing.
#[test]
fn a_batch_file_is_mapped_once_until_replaced_or_removed() {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    fs.create_dir_all(dir).unwrap();
    let meta = batch_file(&fs, dir, &["a ERROR", "b", "c ERROR"]);
    let path = dir.join(&meta.name);
    let cache = Arc::new(SegmentCache::new());
    let options = ScanOptions {
        cache: Some(cache.clone()),
        literal: Some(Arc::new(memmem::Finder::new(b"ERROR").into_owned())),
        ..ScanOptions::new(WorkerPool::inline())
    };
    let payloads = || {
        let mut cursor = open_cursor(&fs, &path, &options).unwrap();
        let mut out = Vec::new();
        while cursor.advance().unwrap() {
            out.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
        }
        out
    };
    let mapping = || {
        let file = fs.open_read(&path).unwrap();
        cache.map_batches(&fs, &path, &*file).unwrap()
    };
    let verified = |shared: &SharedBatchFile| shared.verified.load(Ordering::Acquire);
    assert!(!verified(&mapping()));
    // A read of every record, cut short, verifies only part of it.
    let every_record = ScanOptions {
        cache: Some(cache.clone()),
        ..ScanOptions::new(WorkerPool::inline())
    };
    let mut cursor = open_cursor(&fs, &path, &every_record).unwrap();
    assert!(cursor.advance().unwrap());
    drop(cursor);
    assert!(!verified(&mapping()));
    assert_eq!(payloads(), ["a ERROR", "c ERROR"]);
    let first = mapping();
    assert!(verified(&first), "a whole search verified it");
    assert_eq!(payloads(), ["a ERROR", "c ERROR"]);
    assert!(Arc::ptr_eq(&first.mapped, &mapping().mapped), "mapped once");
    // Another file under the same name (of the same ids' range).
    let other = Path::new("/other");
    fs.create_dir_all(other).unwrap();
    let replacement = batch_file(&fs, other, &["x ERROR", "y", "z"]);
    fs.rename(&other.join(&replacement.name), &path).unwrap();
    let again = mapping();
    assert!(!Arc::ptr_eq(&first.mapped, &again.mapped), "mapped again");
    assert!(!verified(&again), "not verified yet");
    // A read of every record, to the end, verifies it too.
    let mut cursor = open_cursor(&fs, &path, &every_record).unwrap();
    while cursor.advance().unwrap() {}
    drop(cursor);
    assert!(verified(&mapping()), "a whole read verified it");
    assert_eq!(payloads(), ["x ERROR"]);
    drop(again);
    let now = mapping().mapped;
    cache.retain_listed(&[]);
    assert_eq!(Arc::strong_count(&now), 1, "let go once not listed");
}

/// The first search of a shared batch file indexes its batches'
/// records, and the searches after it, which walk from that index,
/// select the same records as a search without the cache.
#[test]
fn a_batch_files_record_index_is_built_once_and_selects_the_same() {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    fs.create_dir_all(dir).unwrap();
    let payloads: Vec<String> = (0..5_000)
        .map(|i| match i % 37 {
            0 => format!("{i} an ERROR here"),
            5 => format!("{i} ERRO"),
            _ => format!("{i} fine"),
        })
        .collect();
    let meta = batch_file(&fs, dir, &payloads);
    let path = dir.join(&meta.name);
    let cache = Arc::new(SegmentCache::new());
    let search = |cache: Option<Arc<SegmentCache>>| {
        let options = ScanOptions {
            cache,
            literal: Some(Arc::new(memmem::Finder::new(b"ERROR").into_owned())),
            ..ScanOptions::new(WorkerPool::new(2).unwrap())
        };
        let mut cursor = open_cursor(&fs, &path, &options).unwrap();
        let mut out = Vec::new();
        while cursor.advance().unwrap() {
            out.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
        }
        out
    };
    let want: Vec<String> = payloads
        .iter()
        .filter(|p| p.contains("ERROR"))
        .cloned()
        .collect();
    assert_eq!(search(None), want);
    let indexed = || {
        let file = fs.open_read(&path).unwrap();
        let shared = cache.map_batches(&fs, &path, &*file).unwrap();
        let batches = shared.batches.expect("a table");
        let bodies: Vec<usize> = batches.entries().iter().map(|e| e.body().start).collect();
        assert_eq!(
            bodies,
            batch_offsets(&fs, &path),
            "the table holds every batch"
        );
        batches.indexed()
    };
    assert_eq!(indexed(), 0);
    assert_eq!(search(Some(cache.clone())), want, "the search that indexes");
    assert_eq!(
        indexed(),
        batch_offsets(&fs, &path).len(),
        "every batch indexed"
    );
    assert_eq!(search(Some(cache.clone())), want, "a search from the index");
}

/// Where each batch's body starts in the file at `path`.
fn batch_offsets(fs: &MemFs, path: &Path) -> Vec<usize> {
    let mut scanner = crate::SegmentScanner::open(fs, path).unwrap();
    let mut starts = Vec::new();
    while let Some((_, body)) = scanner.next_batch().unwrap() {
        let len = body.len();
        starts.push(scanner.offset() as usize - len);
    }
    starts
}

/// A batch file with a corrupt batch is never noted as verified: every
/// query through the cache meets the corruption again.
#[test]
fn a_corrupt_batch_file_is_verified_by_every_query() {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    fs.create_dir_all(dir).unwrap();
    let payload = format!("needle {}", "x".repeat(200));
    let meta = batch_file(&fs, dir, &vec![payload.as_str(); 20_000]);
    let path = dir.join(&meta.name);
    let mut bytes = fs.read_all(&path).unwrap();
    let at = bytes.len() * 3 / 4;
    bytes[at] ^= 0x40;
    fs.write_all_synced(&path, &bytes);
    let cache = Arc::new(SegmentCache::new());
    let searching = ScanOptions {
        cache: Some(cache.clone()),
        literal: Some(Arc::new(memmem::Finder::new(b"needle").into_owned())),
        ..ScanOptions::new(WorkerPool::inline())
    };
    let reading_all = ScanOptions {
        cache: Some(cache.clone()),
        ..ScanOptions::new(WorkerPool::inline())
    };
    for options in [&searching, &reading_all, &searching] {
        let mut cursor = open_cursor(&fs, &path, options).unwrap();
        let failed = loop {
            match cursor.advance() {
                Ok(true) => continue,
                Ok(false) => break false,
                Err(err) => break matches!(err, StorageError::Corrupt { .. }),
            }
        };
        assert!(failed, "the corruption is met");
        let file = fs.open_read(&path).unwrap();
        let shared = cache.map_batches(&fs, &path, &*file).unwrap();
        assert!(!shared.verified.load(Ordering::Acquire));
    }
}

/// A sealed batch file's cursor told to read ahead starts searching on
/// the workers before its first advance, and returns the same records
/// as one that was not told; a growing file's cursor reads nothing
/// ahead.
#[test]
fn a_batch_file_read_ahead_searches_before_the_first_advance() {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    fs.create_dir_all(dir).unwrap();
    let payloads: Vec<String> = (0..20_000)
        .map(|i| {
            let word = if i % 7 == 0 { "needle" } else { "hay" };
            format!("line {i} {word} {}", "x".repeat(180))
        })
        .collect();
    let meta = batch_file(&fs, dir, &payloads);
    let path = dir.join(&meta.name);
    let finder = Arc::new(memmem::Finder::new(b"needle").into_owned());
    let options = ScanOptions {
        literal: Some(finder.clone()),
        ..ScanOptions::new(WorkerPool::new(2).unwrap())
    };
    let read = |ahead: bool| {
        let mut cursor = open_cursor(&fs, &path, &options).unwrap();
        assert_eq!(cursor.bytes_read(), 0);
        if ahead {
            cursor.read_ahead();
            assert!(
                cursor.bytes_read() > 0,
                "read ahead before the first advance"
            );
        }
        let mut ids = Vec::new();
        while cursor.advance().unwrap() {
            ids.push(cursor.record().id);
        }
        ids
    };
    let (plain, ahead) = (read(false), read(true));
    assert_eq!(plain.len(), 20_000usize.div_ceil(7));
    assert_eq!(plain, ahead);
    let mut growing = BatchCursor::open_growing(&fs, &path)
        .unwrap()
        .with_literal(finder);
    growing.read_ahead();
    assert_eq!(growing.bytes_read(), 0, "a growing file is read in turn");
}

/// A batch that fails its checksum stops a search of the file there,
/// with a corruption error at that batch, whether its batches are
/// searched on workers (a sealed file, read ahead before its first
/// advance or not) or read in turn (a growing one); the records of the
/// batches before it come first.
#[test]
fn a_corrupt_batch_ends_a_searched_file_with_an_error() {
    for (growing, header, ahead) in [
        (false, false, false),
        (true, false, false),
        (false, true, false),
        (true, true, false),
        (false, false, true),
        (false, true, true),
    ] {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let mut w =
            StoreSegmentWriter::create(&fs, dir, SegmentKind::Batches, WorkerPool::inline())
                .unwrap();
        // 1 MiB batches: 4 MB of records make four.
        for i in 0..20_000u128 {
            let word = if i % 10 == 0 { "needle" } else { "hay" };
            let payload = format!("line {i} {word} {}", "x".repeat(180));
            w.push(Record {
                id: Ulid(i + 1),
                flags: 0,
                topic: b"t",
                payload: payload.as_bytes(),
            })
            .unwrap();
        }
        let meta = w.finish().unwrap().unwrap();
        let path = dir.join(&meta.name);
        let mut bytes = fs.read_all(&path).unwrap();
        // A byte of a body (its checksum fails), or the first byte of
        // the second batch's header (it does not parse).
        let at = match header {
            false => bytes.len() * 3 / 4,
            true => {
                let mut scanner = crate::SegmentScanner::open(&fs, &path).unwrap();
                scanner.next_batch().unwrap().unwrap();
                scanner.offset() as usize
            }
        };
        bytes[at] ^= 0x40;
        fs.write_all_synced(&path, &bytes);
        let finder = Arc::new(memmem::Finder::new(b"needle").into_owned());
        let mut cursor: Box<dyn RecordCursor> = match growing {
            false => {
                let options = ScanOptions {
                    literal: Some(finder),
                    ..ScanOptions::new(WorkerPool::inline())
                };
                open_cursor(&fs, &path, &options).unwrap()
            }
            true => Box::new(
                BatchCursor::open_growing(&fs, &path)
                    .unwrap()
                    .with_literal(finder),
            ),
        };
        if ahead {
            cursor.read_ahead();
        }
        let mut seen = 0;
        let err = loop {
            match cursor.advance() {
                Ok(true) => seen += 1,
                Ok(false) => panic!(
                    "the corrupt batch was not noticed (growing {growing}, header {header}, \
                     read ahead {ahead})"
                ),
                Err(err) => break err,
            }
        };
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(seen > 0 && seen < 2_000, "{seen} records before the error");
    }
}

proptest::proptest! {
    /// The literal prefilter returns exactly the records whose payload
    /// contains the literal, even when an occurrence spans two records.
    #[test]
    fn literal_prefilter_equals_a_per_record_search(
        payloads in proptest::collection::vec(proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 0..8), 1..300),
        needle in proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 1..4),
        blocks in proptest::bool::ANY,
    ) {
        let format = if blocks { SegmentKind::Blocks } else { SegmentKind::Batches };
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let mut w = StoreSegmentWriter::create(&fs, dir, format, WorkerPool::inline()).unwrap();
        for (i, p) in payloads.iter().enumerate() {
            w.push(Record { id: Ulid(i as u128 + 1), flags: 0, topic: b"a", payload: p }).unwrap();
        }
        let meta = w.finish().unwrap().unwrap();
        let finder = Arc::new(memmem::Finder::new(&needle).into_owned());
        let options = ScanOptions { literal: Some(finder.clone()), ..ScanOptions::new(WorkerPool::inline()) };
        let mut cursor = open_cursor(&fs, &dir.join(&meta.name), &options).unwrap();
        // So a literal query does not test its records again.
        proptest::prop_assert_eq!(cursor.selected_by(), crate::cursor::Selected::Literal);
        let mut got = Vec::new();
        while cursor.advance().unwrap() {
            got.push(cursor.record().id.0 as usize - 1);
        }
        let want: Vec<usize> = payloads.iter().enumerate().filter(|(_, p)| finder.find(p).is_some()).map(|(i, _)| i).collect();
        proptest::prop_assert_eq!(cursor.records_skipped() as usize + got.len(), payloads.len());
        proptest::prop_assert_eq!(got, want);
    }
}
