use std::{path::Path, sync::Arc};

use memchr::memmem;

use proptest::prelude::*;

use super::*;
use crate::{MemFs, RecordCursor, fs::Fs, workers::test_pool};
use sluice_record::Record;

mod kept;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    id: u128,
    flags: u8,
    topic: Vec<u8>,
    payload: Vec<u8>,
}

type MakeWriter = fn(Box<dyn crate::fs::WriteFile>) -> std::io::Result<BlockWriter>;

/// Writers of both layouts: sorted, and in id order.
const LAYOUTS: [MakeWriter; 2] = [sorted, in_order];

/// Sorted blocks in these tests close at 4 MiB, half the size in use, so
/// that their lines make several blocks without taking twice as long.
const TEST_BLOCK_BYTES: usize = 4 << 20;

fn sorted(file: Box<dyn crate::fs::WriteFile>) -> std::io::Result<BlockWriter> {
    Ok(BlockWriter::new(file, test_pool())?.with_block_bytes(TEST_BLOCK_BYTES))
}

fn in_order(file: Box<dyn crate::fs::WriteFile>) -> std::io::Result<BlockWriter> {
    Ok(BlockWriter::new(file, test_pool())?.with_layout(BlockLayout::InOrder))
}

fn write(fs: &MemFs, path: &Path, records: &[Rec]) -> u64 {
    write_with(fs, path, records, sorted)
}

fn write_with(fs: &MemFs, path: &Path, records: &[Rec], make: MakeWriter) -> u64 {
    fs.create_dir_all(path.parent().unwrap()).unwrap();
    let file = fs.create_new(path).unwrap();
    let mut w = make(file).unwrap();
    for r in records {
        w.push(Record {
            id: Ulid(r.id),
            flags: r.flags,
            topic: &r.topic,
            payload: &r.payload,
        })
        .unwrap();
    }
    let (mut file, len) = w.finish().unwrap();
    file.sync_data().unwrap();
    len
}

fn read_all(mut cursor: BlockCursor) -> Result<Vec<Rec>, StorageError> {
    read_from(&mut cursor)
}

/// The records a cursor returns (it stays usable for its counters).
fn read_from(cursor: &mut BlockCursor) -> Result<Vec<Rec>, StorageError> {
    let mut out = Vec::new();
    while cursor.advance()? {
        let r = cursor.record();
        out.push(Rec {
            id: r.id.0,
            flags: r.flags,
            topic: r.topic.to_vec(),
            payload: r.payload.to_vec(),
        });
    }
    Ok(out)
}

/// Records with increasing ids at times spread over `span_ms`, a few topics,
/// some flags, and payloads from a small alphabet (so literals hit).
fn records(max: usize) -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(
        (
            1u64..2_000,
            0u8..3,
            prop_oneof![Just(0u8), Just(1u8)],
            proptest::collection::vec(proptest::sample::select(b"abc \t".to_vec()), 0..200),
        ),
        0..max,
    )
    .prop_map(|parts| {
        let mut ms = 1_700_000_000_000u64;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, (step, topic, flags, payload))| {
                ms += step;
                Rec {
                    id: Ulid::from_parts(ms, i as u128).0,
                    flags,
                    topic: format!("topic{topic}").into_bytes(),
                    payload,
                }
            })
            .collect()
    })
}

#[test]
fn many_blocks_read_back_with_time_pruning() {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    let payload = vec![b'x'; 1000];
    let recs: Vec<Rec> = (0..32_000u64)
        .map(|i| Rec {
            id: Ulid::from_parts(1_000_000 + i, 0).0,
            flags: 0,
            topic: b"t".to_vec(),
            payload: payload.clone(),
        })
        .collect();
    let len = write(&fs, path, &recs);
    let segment = BlockSegment::open(&fs, path).unwrap();
    assert!(
        segment.blocks().len() >= 7,
        "{} blocks",
        segment.blocks().len()
    );
    assert_eq!(segment.records(), 32_000);
    assert_eq!(
        read_all(BlockCursor::new(segment, test_pool())).unwrap(),
        recs
    );
    // The last 1% of the time range reads one block or two (of about
    // 4,200 records each), not all of them.
    let mut cursor = BlockCursor::open(&fs, path, test_pool())
        .unwrap()
        .with_time_range(1_031_680, 1_031_999);
    let mut ids = Vec::new();
    while cursor.advance().unwrap() {
        ids.push(cursor.record().id.timestamp_ms());
    }
    assert!(ids.contains(&1_031_680) && ids.contains(&1_031_999));
    assert!(ids.len() < 8400, "read {} records for 320", ids.len());
    assert!(
        cursor.bytes_read() * 5 < len,
        "read {} of {len} bytes",
        cursor.bytes_read()
    );
}

fn trace_id(i: u64) -> String {
    format!(
        "{:032x}",
        (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001
    )
}

/// 240,000 request lines, each with its own trace id: several blocks.
fn traced_requests() -> Vec<Rec> {
    (0..240_000u64)
        .map(|i| Rec {
            id: Ulid::from_parts(1_000_000 + i, 0).0,
            flags: 0,
            topic: b"t".to_vec(),
            payload: format!("GET /page/{i} status=200 trace_id={}", trace_id(i)).into_bytes(),
        })
        .collect()
}

/// The payloads a cursor returns (it stays usable for its counters).
fn payloads(cursor: &mut BlockCursor) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while cursor.advance().unwrap() {
        out.push(cursor.record().payload.to_vec());
    }
    out
}

#[test]
fn a_rare_literal_skips_blocks_by_their_filter() {
    for (layout, make) in LAYOUTS.into_iter().enumerate() {
        rare_literal_skips_blocks(make, layout == 0);
        let fs = MemFs::new();
        write_with(&fs, Path::new("/d/seg"), &[], make);
        let header = fs.read_all(Path::new("/d/seg")).unwrap();
        assert_eq!(header[HEADER_LEN - 2..HEADER_LEN], [2, 5]);
    }
}

/// One opened segment answers query after query (as the segment cache
/// shares it): the second probe of a block finds its filter where the
/// first parse left it, and each query, of a literal in one block, in
/// several or in none, gets exactly what a segment opened for it alone
/// gets, in both layouts.
#[test]
fn a_shared_segment_probes_each_query_as_a_fresh_one() {
    for make in LAYOUTS {
        let fs = MemFs::new();
        let path = Path::new("/d/seg");
        let recs = traced_requests();
        write_with(&fs, path, &recs, make);
        let shared = Arc::new(BlockSegment::open(&fs, path).unwrap());
        assert!(shared.blocks().len() >= 3);
        let literals = [
            trace_id(4242),
            trace_id(4242),
            trace_id(239_999),
            "/page/17 ".to_string(),
            "status=200 trace_id=00".to_string(),
            "no such text".to_string(),
            trace_id(7),
        ];
        for literal in literals {
            let finder = Arc::new(memmem::Finder::new(literal.as_bytes()).into_owned());
            let mut again =
                BlockCursor::shared(shared.clone(), test_pool()).with_literal(finder.clone());
            let mut fresh = BlockCursor::open(&fs, path, test_pool())
                .unwrap()
                .with_literal(finder);
            let want = payloads(&mut fresh);
            assert_eq!(payloads(&mut again), want, "{literal}");
            assert_eq!(again.frames_loaded(), fresh.frames_loaded(), "{literal}");
        }
    }
}

/// A cursor told to read ahead probes its first blocks' filters and
/// starts decoding them before its first advance, and returns what a
/// cursor not told returns.
#[test]
fn a_block_file_read_ahead_starts_before_the_first_advance() {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    write(&fs, path, &traced_requests());
    let finder = Arc::new(memmem::Finder::new(trace_id(4242).as_bytes()).into_owned());
    let open = || {
        BlockCursor::open(&fs, path, test_pool())
            .unwrap()
            .with_literal(finder.clone())
    };
    let want = payloads(&mut open());
    assert_eq!(want.len(), 1);
    let mut ahead = open();
    assert_eq!(ahead.bytes_read(), 0);
    ahead.read_ahead();
    assert!(ahead.bytes_read() > 0, "no filter was probed ahead");
    assert_eq!(payloads(&mut ahead), want);
}

/// A block file of any other version than the one read is refused with
/// an error that names the version, never read as empty or as batches.
#[test]
fn a_file_of_another_version_is_refused_by_name() {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    write(&fs, path, &traced_requests()[..1000]);
    let written = fs.read_all(path).unwrap();
    for (major, minor) in [(2, 4), (2, 6), (3, 0), (2, 0)] {
        let mut bytes = written.clone();
        bytes[HEADER_LEN - 2..HEADER_LEN].copy_from_slice(&[major, minor]);
        assert!(is_block_segment(&bytes), "routed to the block reader");
        let err = BlockSegment::from_bytes(path, crate::Mapped::owned(bytes)).unwrap_err();
        assert!(err.is_corrupt(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("format {major}.{minor}")) && message.contains("2.5"),
            "{message}"
        );
    }
}

/// A block whose meta lacks the flag that its lines end at their newlines
/// lists their lengths (format 2.2): it is refused, not misread.
#[test]
fn a_block_that_lists_line_lengths_is_refused() {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    write(&fs, path, &traced_requests()[..1000]);
    let mut bytes = fs.read_all(path).unwrap();
    let segment = BlockSegment::open(&fs, path).unwrap();
    let entry = segment.blocks()[0];
    let at = entry.offset as usize + FRAME_HEAD + BLOCK_META_FIXED;
    bytes[at + 3] &= !((LINES_END_AT_NEWLINES >> 24) as u8);
    // The meta's checksum is made right again: only the flag is wrong.
    let meta = entry.meta_range();
    let crc = crc32fast::hash(&bytes[meta.start..meta.end - 4]);
    bytes[meta.end - 4..meta.end].copy_from_slice(&crc.to_le_bytes());
    let segment = BlockSegment::from_bytes(path, crate::Mapped::owned(bytes)).unwrap();
    let err = read_all(BlockCursor::new(segment, test_pool())).unwrap_err();
    assert!(err.to_string().contains("line lengths"), "{err}");
}

fn rare_literal_skips_blocks(make: MakeWriter, expect_sorted: bool) {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    let recs = traced_requests();
    let len = write_with(&fs, path, &recs, make);
    let rare = trace_id(4242);
    let finder = Arc::new(memmem::Finder::new(rare.as_bytes()).into_owned());
    let mut cursor = BlockCursor::open(&fs, path, test_pool())
        .unwrap()
        .with_literal(finder);
    let got = payloads(&mut cursor);
    let want: Vec<Vec<u8>> = recs
        .iter()
        .filter(|r| memmem::find(&r.payload, rare.as_bytes()).is_some())
        .map(|r| r.payload.clone())
        .collect();
    assert_eq!(got, want);
    let blocks = BlockSegment::open(&fs, path).unwrap().blocks().len() as u64;
    assert!(blocks >= 3, "{blocks} blocks");
    assert_eq!(want.len(), 1);
    assert!(
        cursor.blocks_loaded() <= 2,
        "the filter should spare blocks without the literal: loaded {} of {blocks}",
        cursor.blocks_loaded()
    );
    // A block's frames have their own filters: the id's frame is read,
    // not its whole block.
    let segment = BlockSegment::open(&fs, path).unwrap();
    let sorted = (0..segment.blocks().len()).all(|i| segment.block_is_sorted(i));
    assert_eq!(sorted, expect_sorted);
    assert!(
        cursor.frames_loaded() <= 2,
        "read {} frames",
        cursor.frames_loaded()
    );
    assert!(
        cursor.bytes_read() * 3 < len,
        "read {} of {len} bytes",
        cursor.bytes_read()
    );
}

/// A sorted block read in part reads, of its meta, the ordinals of the
/// lines of the frames it reads, not every line's: once the meta is
/// verified, a rare literal's query reads less than one block's meta.
#[test]
fn a_block_read_in_part_reads_the_ordinals_of_its_frames_only() {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    write(&fs, path, &traced_requests());
    let segment = Arc::new(BlockSegment::open(&fs, path).unwrap());
    let rare = trace_id(4242);
    let query = || {
        let finder = Arc::new(memmem::Finder::new(rare.as_bytes()).into_owned());
        BlockCursor::shared(segment.clone(), test_pool()).with_literal(finder)
    };
    // The first query verifies the metas it reads, all of them.
    assert_eq!(payloads(&mut query()).len(), 1);
    let mut cursor = query();
    assert_eq!(payloads(&mut cursor).len(), 1);
    assert_eq!((cursor.blocks_loaded(), cursor.frames_loaded()), (1, 1));
    let smallest_meta = (0..segment.blocks().len())
        .map(|i| 8 + segment.blocks()[i].meta_len as u64 - segment.filter_bytes(i).unwrap())
        .min()
        .unwrap();
    assert!(
        cursor.bytes_read() < smallest_meta,
        "read {} bytes, a block's meta less its filter is {smallest_meta}",
        cursor.bytes_read()
    );
}

#[test]
fn any_of_several_literals_reads_only_their_blocks() {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    let recs = traced_requests();
    write(&fs, path, &recs);
    let blocks = BlockSegment::open(&fs, path).unwrap().blocks().len() as u64;
    let wanted = [trace_id(4242), trace_id(70_000)];
    let literals: Vec<Vec<u8>> = wanted.iter().map(|t| t.clone().into_bytes()).collect();
    let filter_literals = literals.clone();
    let filter: RecordFilter = Arc::new(move |payload: &[u8]| {
        filter_literals
            .iter()
            .any(|l| memmem::find(payload, l).is_some())
    });
    let mut cursor = BlockCursor::open(&fs, path, test_pool())
        .unwrap()
        .with_any_of(&literals)
        .with_filter(filter);
    let got = payloads(&mut cursor);
    let want: Vec<Vec<u8>> = recs
        .iter()
        .filter(|r| {
            wanted
                .iter()
                .any(|t| memmem::find(&r.payload, t.as_bytes()).is_some())
        })
        .map(|r| r.payload.clone())
        .collect();
    assert_eq!(want.len(), 2);
    assert_eq!(got, want);
    assert!(blocks >= 3, "{blocks} blocks");
    assert!(
        cursor.blocks_loaded() <= 3,
        "only the blocks that may hold one of the ids are read: loaded {} of {blocks}",
        cursor.blocks_loaded()
    );
}

#[test]
fn zstd_sees_payload_lines() {
    // The data frames are standard zstd: decoding them in order (skipping
    // the skippable frames, as `zstd -d` does) gives one payload per line
    // (here in id order, as the lines' sort keys are all alike: `line-`
    // and a number make one word, so no number is taken for a status).
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    let recs: Vec<Rec> = (0..5000u64)
        .map(|i| Rec {
            id: Ulid::from_parts(1 + i, 0).0,
            flags: 0,
            topic: b"t".to_vec(),
            payload: format!("line-{i}").into_bytes(),
        })
        .collect();
    write(&fs, path, &recs);
    let bytes = fs.read_all(path).unwrap();
    let text = zstd::stream::decode_all(&bytes[..]).unwrap();
    let want: String = (0..5000).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(String::from_utf8(text).unwrap(), want);
}

/// The literal a property test looks for: `short`, or, given `cut`, a
/// long one cut from a record (long enough for the 8-gram filters to have
/// keys): the record, where it starts and how long.
type Cut = Option<(prop::sample::Index, prop::sample::Index, usize)>;

fn needle_of(recs: &[Rec], short: Vec<u8>, cut: Cut) -> Vec<u8> {
    match cut {
        Some((pick, start, len)) if !recs.is_empty() => {
            let payload = &recs[pick.index(recs.len())].payload;
            let from = start.index(payload.len() + 1);
            payload[from..(from + len).min(payload.len())].to_vec()
        }
        _ => short,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is written reads back exactly; with a time range and a
    /// literal, the cursor returns at least every wanted record and only
    /// records that hold the literal.
    #[test]
    fn round_trip_and_pruning_equal_a_model(
        recs in records(3000),
        from in 0u64..4_000_000,
        width in 0u64..2_000_000,
        short in proptest::collection::vec(proptest::sample::select(b"abc ".to_vec()), 1..6),
        cut in proptest::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 8usize..40)),
        layout in 0usize..LAYOUTS.len(),
    ) {
        let fs = MemFs::new();
        let path = Path::new("/d/seg");
        write_with(&fs, path, &recs, LAYOUTS[layout]);
        let needle = needle_of(&recs, short, cut);
        prop_assert_eq!(read_all(BlockCursor::open(&fs, path, test_pool()).unwrap()).unwrap(), recs.clone());

        let (from_ms, to_ms) = (1_700_000_000_000 + from, 1_700_000_000_000 + from + width);
        let finder = Arc::new(memmem::Finder::new(&needle).into_owned());
        let cursor = BlockCursor::open(&fs, path, test_pool()).unwrap()
            .with_time_range(from_ms, to_ms)
            .with_literal(finder.clone());
        let got: Vec<Rec> = read_all(cursor).unwrap()
            .into_iter()
            .filter(|r| (from_ms..=to_ms).contains(&Ulid(r.id).timestamp_ms()))
            .collect();
        let want: Vec<Rec> = recs.iter()
            .filter(|r| (from_ms..=to_ms).contains(&Ulid(r.id).timestamp_ms()))
            .filter(|r| finder.find(&r.payload).is_some())
            .cloned()
            .collect();
        prop_assert_eq!(got, want);
    }

    /// A flipped byte anywhere is an error or changes nothing; it never
    /// returns wrong records and never panics.
    #[test]
    fn a_flipped_byte_is_caught(recs in records(400), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        prop_assume!(!recs.is_empty());
        let fs = MemFs::new();
        let path = Path::new("/d/seg");
        write(&fs, path, &recs);
        let mut bytes = fs.read_all(path).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let outcome = BlockSegment::from_bytes(path, crate::Mapped::owned(bytes))
            .and_then(|segment| read_all(BlockCursor::new(segment, test_pool())));
        if let Ok(got) = outcome {
            prop_assert_eq!(got, recs);
        }
    }

    /// Reading ahead changes nothing a cursor returns, with a literal or
    /// without, on a file with a flipped byte: the same records, or the
    /// same error (one met reading ahead comes from the first advance).
    #[test]
    fn reading_ahead_returns_what_reading_in_turn_returns(
        recs in records(400),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        literal in any::<bool>(),
    ) {
        prop_assume!(!recs.is_empty());
        let fs = MemFs::new();
        let path = Path::new("/d/seg");
        write(&fs, path, &recs);
        let mut bytes = fs.read_all(path).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let Ok(segment) = BlockSegment::from_bytes(path, crate::Mapped::owned(bytes)) else {
            return Ok(());
        };
        let segment = Arc::new(segment);
        let finder = Arc::new(memmem::Finder::new(b"ab").into_owned());
        let read = |ahead: bool| {
            let mut cursor = BlockCursor::shared(segment.clone(), test_pool());
            if literal {
                cursor = cursor.with_literal(finder.clone());
            }
            if ahead {
                cursor.read_ahead();
            }
            read_all(cursor).map_err(|e| e.to_string())
        };
        prop_assert_eq!(read(true), read(false));
    }

    /// Arbitrary bytes never panic the reader.
    #[test]
    fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..400), header in any::<bool>()) {
        if header && bytes.len() >= HEADER_LEN {
            bytes[..4].copy_from_slice(&SKIPPABLE_HEADER.to_le_bytes());
            bytes[4..8].copy_from_slice(&8u32.to_le_bytes());
            bytes[8..HEADER_LEN].copy_from_slice(FILE_TAG);
        }
        if let Ok(segment) = BlockSegment::from_bytes(Path::new("/x"), crate::Mapped::owned(bytes)) {
            let _ = read_all(BlockCursor::new(segment, test_pool()));
        }
    }
}

/// Lines of four levels in random order: sorted by their sort key, the
/// lines of one level share frames, and a word on 1% of them (the ERROR
/// level) is read from a few frames, returned in id order.
#[test]
fn a_word_on_one_kind_of_line_reads_few_frames() {
    assert_reads_few_frames(150_000, b"level=ERROR", |i, mix| {
        let level = match mix % 100 {
            0 => "ERROR",
            1..=9 => "WARN",
            10..=39 => "DEBUG",
            _ => "INFO",
        };
        format!(
            "ts={} level={level} msg=\"request done\" trace_id={}",
            1_000_000 + i,
            trace_id(i)
        )
    });
}

/// Access-log lines of a few statuses in random order: sorted by status
/// first, the lines of one status share frames, although the request's
/// path comes before the status on the line; and the frames' filters find
/// a status by its number and neighbours.
#[test]
fn a_status_reads_few_frames() {
    assert_reads_few_frames(100_000, b"\" 503 ", |i, mix| {
        let status = match mix % 100 {
            0 => 503,
            1..=10 => 404,
            11..=15 => 304,
            _ => 200,
        };
        let words = ["orders", "users", "search", "items", "carts"];
        format!(
            "10.{}.{}.{} - - [21/Nov/2026:06:{:02}:{:02} +0000] \"GET /api/v1/{}/{}?q={} HTTP/1.1\" {status} {} \"-\" \"curl/8.5.0\"",
            mix % 256,
            i % 256,
            (mix >> 8) % 256,
            i / 60 % 60,
            i % 60,
            words[(mix >> 3) as usize % 5],
            i * 7 % 100_000,
            words[(mix >> 5) as usize % 5],
            mix % 60_000,
        )
    });
}

/// `count` records, record `i` (one a millisecond) of payload `payload(i,
/// mix)` with `mix` a scrambling of `i`, written as one segment: a query
/// for `literal` returns the records that hold it, in id order, from fewer
/// than a tenth of the frames.
fn assert_reads_few_frames(count: u64, literal: &[u8], payload: impl Fn(u64, u64) -> String) {
    let recs: Vec<Rec> = (0..count)
        .map(|i| Rec {
            id: Ulid::from_parts(1_000_000 + i, 0).0,
            flags: 0,
            topic: b"t".to_vec(),
            payload: payload(i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40).into_bytes(),
        })
        .collect();
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    write(&fs, path, &recs);
    let all_frames = {
        let mut cursor = BlockCursor::open(&fs, path, test_pool()).unwrap();
        assert_eq!(read_from(&mut cursor).unwrap().len(), recs.len());
        cursor.frames_loaded()
    };
    let finder = Arc::new(memmem::Finder::new(literal).into_owned());
    let mut cursor = BlockCursor::open(&fs, path, test_pool())
        .unwrap()
        .with_literal(finder);
    let got = read_from(&mut cursor).unwrap();
    let want: Vec<Rec> = recs
        .iter()
        .filter(|r| memmem::find(&r.payload, literal).is_some())
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "in id order");
    assert!(
        cursor.frames_loaded() * 10 < all_frames,
        "read {} of {all_frames} frames for {:?}",
        cursor.frames_loaded(),
        String::from_utf8_lossy(literal)
    );
}

/// An id range prunes the blocks wholly outside it, and a block's meta
/// alone gives every record's id and topic, for either layout.
#[test]
fn id_ranges_prune_blocks_and_metas_give_ids_and_topics() {
    for make in LAYOUTS {
        let fs = MemFs::new();
        let path = Path::new("/s/ids.seg");
        // 3 KB payloads: several blocks.
        let records: Vec<Rec> = (0..4_000u128)
            .map(|i| Rec {
                id: 1_000 + i * 2,
                flags: 0,
                topic: if i % 2 == 0 {
                    b"even".to_vec()
                } else {
                    b"odd".to_vec()
                },
                payload: format!("{i} {}", "p".repeat(3_000)).into_bytes(),
            })
            .collect();
        write_with(&fs, path, &records, make);
        let segment = BlockSegment::open(&fs, path).unwrap();
        let blocks = segment.blocks().to_vec();
        assert!(blocks.len() >= 3, "{} blocks", blocks.len());
        let mut meta = BlockMeta::default();
        let mut all = Vec::new();
        for b in 0..blocks.len() {
            let read = segment.read_meta(b, &mut meta).unwrap();
            assert!(read > 0);
            for (i, id) in meta.ids().iter().enumerate() {
                all.push((id.0, meta.topic(i).to_vec()));
            }
        }
        let want: Vec<(u128, Vec<u8>)> = records.iter().map(|r| (r.id, r.topic.clone())).collect();
        assert_eq!(all, want);
        // The last block's range, and one id before it: two blocks read.
        let last = blocks[blocks.len() - 1];
        let cursor = BlockCursor::new(BlockSegment::open(&fs, path).unwrap(), test_pool())
            .with_id_range(Ulid(last.min.0 - 2), last.max);
        let mut cursor = cursor;
        let got = read_from(&mut cursor).unwrap();
        assert_eq!(cursor.blocks_loaded(), 2);
        assert_eq!(got.last().map(|r| r.id), Some(last.max.0));
    }
}

/// A footer that gives a block more records than a block can hold is
/// refused when the file is opened (its checksum made right), before any
/// memory is set aside for them.
#[test]
fn a_block_of_more_records_than_a_block_holds_is_refused() {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    write(&fs, path, &traced_requests()[..100]);
    let mut bytes = fs.read_all(path).unwrap();
    let len = bytes.len();
    let frame_len = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize;
    // The footer's fields: `blocks`, then each entry, `records` and `text`.
    let fields = len - frame_len + FRAME_HEAD;
    let blocks = u32::from_le_bytes(bytes[fields..fields + 4].try_into().unwrap()) as usize;
    assert_eq!(blocks, 1);
    let count_at = fields + 4 + 8 + 4 + 4;
    let too_many = (MAX_BLOCK_RECORDS + 1) as u32;
    bytes[count_at..count_at + 4].copy_from_slice(&too_many.to_le_bytes());
    let records_at = fields + 4 + ENTRY_LEN;
    bytes[records_at..records_at + 8].copy_from_slice(&(too_many as u64).to_le_bytes());
    let crc_at = records_at + 16;
    let crc = crc32fast::hash(&bytes[fields..crc_at]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    let err = BlockSegment::from_bytes(path, crate::Mapped::owned(bytes)).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(
        err.to_string().contains("more records than a block can"),
        "{err}"
    );
}
