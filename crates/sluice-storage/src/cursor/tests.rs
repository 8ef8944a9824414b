//! A batch file's cursor: with an id range, batches wholly outside it are
//! passed over, never a record inside it; records the workers copy out
//! read as they do from the mapping.

use super::*;
use crate::store_segment::{ScanOptions, open_cursor};
use crate::{MemFs, segment::SegmentWriter, workers::test_pool};
use proptest::prelude::*;
use sluice_record::{BatchEncoder, Record, record_bounds};

/// A batch file at `path` of `batches` (each a list of (id, payload)),
/// ids increasing.
fn write_file(fs: &MemFs, path: &Path, batches: &[Vec<(u128, String)>]) {
    let mut writer = SegmentWriter::create(fs, path).unwrap();
    let mut encoder = BatchEncoder::new();
    for batch in batches {
        encoder.begin();
        for (id, payload) in batch {
            encoder.push(Record {
                id: Ulid(*id),
                flags: 0,
                topic: b"t",
                payload: payload.as_bytes(),
            });
        }
        let (first, last) = (batch[0].0, batch[batch.len() - 1].0);
        writer
            .append(
                encoder.finish(),
                batch.len() as u32,
                Ulid(first),
                Ulid(last),
            )
            .unwrap();
    }
    writer.sync().unwrap();
}

/// The ids a cursor over `path` returns with `ids` as its range, on
/// workers or on the reading thread, with or without a literal.
fn scan(
    fs: &MemFs,
    path: &Path,
    ids: (u128, u128),
    literal: bool,
    parallel: bool,
) -> Result<(Vec<u128>, u64), StorageError> {
    scan_with(fs, path, ids, literal, parallel, None)
}

/// [`scan`], opening the file through `cache` if given (and so finding its
/// batches in the cache's batch table).
fn scan_with(
    fs: &MemFs,
    path: &Path,
    ids: (u128, u128),
    literal: bool,
    parallel: bool,
    cache: Option<Arc<crate::SegmentCache>>,
) -> Result<(Vec<u128>, u64), StorageError> {
    let options = ScanOptions {
        ids: Some((Ulid(ids.0), Ulid(ids.1))),
        cache,
        literal: literal.then(|| Arc::new(memmem::Finder::new(b"ERROR").into_owned())),
        ..ScanOptions::new(if parallel {
            test_pool()
        } else {
            WorkerPool::inline()
        })
    };
    let mut cursor = open_cursor(fs, path, &options)?;
    let mut out = Vec::new();
    while cursor.advance()? {
        out.push(cursor.record().id.0);
    }
    Ok((out, cursor.bytes_read()))
}

fn batches() -> impl Strategy<Value = Vec<Vec<(u128, String)>>> {
    prop::collection::vec(
        prop::collection::vec((1u128..20, any::<bool>()), 1..6),
        1..14,
    )
    .prop_map(|batches| {
        let mut id = 0u128;
        batches
            .into_iter()
            .map(|batch| {
                batch
                    .into_iter()
                    .map(|(gap, error)| {
                        id += gap;
                        let payload = if error { "an ERROR here" } else { "fine" };
                        (id, format!("{payload} {id}"))
                    })
                    .collect()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every record in the range (that holds the literal, with one) is
    /// returned, in order, whatever batches the range cuts.
    #[test]
    fn an_id_range_never_drops_a_record_inside_it(
        batches in batches(),
        a in 0u128..300,
        b in 0u128..300,
        literal in any::<bool>(),
        parallel in any::<bool>(),
        cached in any::<bool>(),
    ) {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/s")).unwrap();
        let path = Path::new("/s/file.seg");
        write_file(&fs, path, &batches);
        let (lo, hi) = (a.min(b), a.max(b));
        let cache = cached.then(|| Arc::new(crate::SegmentCache::new()));
        let (got, bytes_read) = scan_with(&fs, path, (lo, hi), literal, parallel, cache).unwrap();
        let all: Vec<(u128, bool)> = batches
            .iter()
            .flatten()
            .map(|(id, p)| (*id, p.contains("ERROR")))
            .collect();
        let want: Vec<u128> = all
            .iter()
            .filter(|(id, error)| (lo..=hi).contains(id) && (*error || !literal))
            .map(|(id, _)| *id)
            .collect();
        let in_range: Vec<u128> = got.iter().copied().filter(|id| (lo..=hi).contains(id)).collect();
        prop_assert_eq!(in_range, want);
        prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "in id order");
        prop_assert!(bytes_read <= fs.read_all(path).unwrap().len() as u64);
    }
}

/// Seven batches of two records each, ids 10, 11, 20, 21, ... 70, 71.
fn seven_batches() -> Vec<Vec<(u128, String)>> {
    (1..=7u128)
        .map(|b| {
            vec![
                (b * 10, format!("ERROR {b}0")),
                (b * 10 + 1, format!("ERROR {b}1")),
            ]
        })
        .collect()
}

/// Offset in the file of batch `index`'s first record id.
fn first_id_offset(file: &[u8], index: usize) -> usize {
    let mut at = 0;
    for _ in 0..index {
        at += BatchHeader::parse(&file[at..]).unwrap().frame_len();
    }
    at + sluice_record::batch::BATCH_HEADER_BYTES
}

/// A range in the middle reads fewer bytes than the file and returns the
/// records of the batches it touches; the file is not marked verified by
/// a scan that passed batches over.
#[test]
fn batches_outside_the_range_are_not_read() {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/s")).unwrap();
    let path = Path::new("/s/file.seg");
    write_file(&fs, path, &seven_batches());
    let len = fs.read_all(path).unwrap().len() as u64;
    for parallel in [false, true] {
        let (got, bytes_read) = scan(&fs, path, (35, 52), true, parallel).unwrap();
        assert_eq!(got, [30, 31, 40, 41, 50, 51], "parallel {parallel}");
        assert!(bytes_read < len * 4 / 7, "read {bytes_read} of {len}");
    }
    // Through the segment cache: a ranged search leaves the file
    // unverified, a whole one verifies it.
    let cache = Arc::new(crate::SegmentCache::new());
    let verified = || {
        let file = fs.open_read(path).unwrap();
        let shared = cache.map_batches(&fs, path, &*file).unwrap();
        shared.verified.load(Ordering::Acquire)
    };
    for ids in [Some((Ulid(35), Ulid(52))), None] {
        let options = ScanOptions {
            ids,
            cache: Some(cache.clone()),
            literal: Some(Arc::new(memmem::Finder::new(b"ERROR").into_owned())),
            ..ScanOptions::new(test_pool())
        };
        let mut cursor = open_cursor(&fs, path, &options).unwrap();
        while cursor.advance().unwrap() {}
        drop(cursor);
        assert_eq!(verified(), ids.is_none(), "range {ids:?}");
    }
}

/// A damaged first id that moves the scan's start too far, or would end
/// it early, shows as damage: the batch it is in fails its checksum when
/// it is read next (a start moved to it) or before it is trusted (an
/// end), so the scan reports it rather than leave out records in the
/// range.
#[test]
fn a_damaged_first_id_never_hides_records_in_the_range() {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/s")).unwrap();
    let path = Path::new("/s/file.seg");
    write_file(&fs, path, &seven_batches());
    let good = fs.read_all(path).unwrap();
    // Batch 4 (ids 50, 51) made to look below a range from 41: the scan
    // starts there, past 41, and reads it first. Batch 2 (ids 30, 31)
    // made to look above a range to 61: trusted, the scan would end before
    // it and leave out 40 to 61.
    for (batch, id, range) in [(4, 1u128, (41, 61)), (2, 1_000, (40, 61))] {
        let mut bad = good.clone();
        let at = first_id_offset(&bad, batch);
        bad[at..at + 16].copy_from_slice(&id.to_be_bytes());
        fs.write_all_synced(path, &bad);
        for (parallel, cached) in [(false, false), (true, false), (true, true)] {
            let cache = cached.then(|| Arc::new(crate::SegmentCache::new()));
            match scan_with(&fs, path, range, true, parallel, cache) {
                Err(StorageError::Corrupt { .. }) => {}
                other => panic!("batch {batch}, parallel {parallel}, cached {cached}: {other:?}"),
            }
        }
    }
}

/// A batch body of `n` records of varied topics, flags and lengths, and
/// where each record starts.
fn varied_body(n: usize) -> (Vec<u8>, Vec<usize>) {
    let mut encoder = BatchEncoder::new();
    encoder.begin();
    for i in 0..n {
        encoder.push(Record {
            id: Ulid(1_000 + i as u128),
            flags: (i % 2) as u8,
            topic: [&b"t"[..], b"topic", b"ab"][i % 3],
            payload: format!("line {i} {}", "x".repeat(i * 5)).as_bytes(),
        });
    }
    let body = encoder.finish()[sluice_record::batch::BATCH_HEADER_BYTES..].to_vec();
    let mut starts = Vec::new();
    let mut at = 0;
    for _ in 0..n {
        starts.push(at);
        at = record_bounds(&body, at).unwrap().1;
    }
    (body, starts)
}

/// A worker copies out a batch's selected records when they are at most
/// one in [`GATHER_ONE_IN`], and each reads from the copy as from the
/// body; more are left in the body.
#[test]
fn a_sparse_selection_is_copied_out_and_a_dense_one_is_not() {
    let (body, starts) = varied_body(8);
    let picked = [1, 6];
    let sparse = Selection::gather(&body, 8, picked.iter().map(|&i| starts[i]).collect()).unwrap();
    let gathered = sparse.gathered.as_deref().expect("2 of 8 are copied out");
    assert_eq!(sparse.starts.len(), picked.len());
    for (&at, &i) in sparse.starts.iter().zip(&picked) {
        let from_copy = decode_record(gathered, at).unwrap();
        let from_body = decode_record(&body, starts[i]).unwrap();
        assert_eq!(from_copy.0, from_body.0);
        assert_eq!(
            from_copy.1 - at,
            from_body.1 - starts[i],
            "the whole record"
        );
    }
    assert_eq!(
        gathered.len(),
        picked
            .iter()
            .map(|&i| record_bounds(&body, starts[i]).unwrap().1 - starts[i])
            .sum::<usize>()
    );

    let dense = Selection::gather(&body, 8, starts[..3].to_vec()).unwrap();
    assert!(dense.gathered.is_none(), "3 of 8 stay in the body");
    assert_eq!(dense.starts, starts[..3]);
}

/// Batches where one record in ten holds the literal (copied out by the
/// workers) and one where all do (read from the mapping) return, through a
/// cursor on workers, exactly the records that hold it: ids, flags, topics
/// and payloads.
#[test]
fn records_copied_out_by_the_workers_read_as_the_mapped_ones() {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/s")).unwrap();
    let path = Path::new("/s/file.seg");
    let mut writer = SegmentWriter::create(&fs, path).unwrap();
    let mut encoder = BatchEncoder::new();
    let mut all = Vec::new();
    let mut id = 0u128;
    for batch in 0..6 {
        encoder.begin();
        let first = id + 1;
        for i in 0..40usize {
            id += 1;
            let level = if batch == 5 || i % 10 == 3 {
                "ERROR"
            } else {
                "INFO"
            };
            let (flags, topic) = ((i % 2) as u8, ["t", "topic", "ab"][i % 3]);
            let payload = format!("{level} request {id} {}", "x".repeat(i * 7));
            encoder.push(Record {
                id: Ulid(id),
                flags,
                topic: topic.as_bytes(),
                payload: payload.as_bytes(),
            });
            all.push((id, flags, topic.to_string(), payload));
        }
        writer
            .append(encoder.finish(), 40, Ulid(first), Ulid(id))
            .unwrap();
    }
    writer.sync().unwrap();
    let options = ScanOptions {
        literal: Some(Arc::new(memmem::Finder::new(b"ERROR").into_owned())),
        ..ScanOptions::new(test_pool())
    };
    let mut cursor = open_cursor(&fs, path, &options).unwrap();
    let mut got = Vec::new();
    while cursor.advance().unwrap() {
        let r = cursor.record();
        got.push((
            r.id.0,
            r.flags,
            String::from_utf8(r.topic.to_vec()).unwrap(),
            String::from_utf8(r.payload.to_vec()).unwrap(),
        ));
    }
    let want: Vec<_> = all.into_iter().filter(|r| r.3.contains("ERROR")).collect();
    assert_eq!(want.len(), 5 * 4 + 40);
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A file read through the segment cache, whose batches come from its
    /// batch table, reads exactly as one read by walking its headers: the
    /// same records, and the same corruption at the same offset, whatever
    /// byte was damaged or however much of the tail was cut, with or
    /// without an id range.
    #[test]
    fn the_batch_table_reads_as_the_header_walk_does(
        batches in batches(),
        damage in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        cut in prop::option::of(any::<prop::sample::Index>()),
        range in prop::option::of((0u128..300, 0u128..300)),
        literal in any::<bool>(),
    ) {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/s")).unwrap();
        let path = Path::new("/s/file.seg");
        write_file(&fs, path, &batches);
        let mut bytes = fs.read_all(path).unwrap();
        if let Some((at, xor)) = damage {
            let at = at.index(bytes.len());
            bytes[at] ^= xor;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        fs.write_all_synced(path, &bytes);
        let ids = range.map_or((0, u128::MAX), |(a, b)| (a.min(b), a.max(b)));
        let outcome = |cache: Option<Arc<crate::SegmentCache>>| {
            match scan_with(&fs, path, ids, literal, true, cache) {
                Ok(read) => Ok(read),
                Err(StorageError::Corrupt { offset, .. }) => Err(Some(offset)),
                Err(_) => Err(None),
            }
        };
        let walked = outcome(None);
        let cache = Arc::new(crate::SegmentCache::new());
        prop_assert_eq!(&outcome(Some(cache.clone())), &walked, "first read through the cache");
        prop_assert_eq!(&outcome(Some(cache.clone())), &walked, "second read through the cache");
        // And the cache read it through a table.
        let file = fs.open_read(path).unwrap();
        prop_assert!(cache.map_batches(&fs, path, &*file).unwrap().batches.is_some());
    }
}
