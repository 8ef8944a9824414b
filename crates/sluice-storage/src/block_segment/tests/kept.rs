//! Blocks the block cache keeps, whole or in part, answer as decoded
//! blocks do, are searched a group to a worker job, and are searched
//! without decompressing them.

use super::*;

/// A literal searched through [`TextMatcher`], as a regex would be: it
/// exercises the search over a span of a kept block's text.
struct LiteralText(memmem::Finder<'static>);

impl TextMatcher for LiteralText {
    fn find_at(&self, text: &[u8], start: usize) -> Option<(usize, usize)> {
        let at = start + self.0.find(&text[start..])?;
        Some((at, at + self.0.needle().len()))
    }
    fn is_match(&self, payload: &[u8]) -> bool {
        self.0.find(payload).is_some()
    }
    fn looks_around(&self) -> bool {
        false
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Blocks kept by the block cache answer exactly as decoded blocks do:
    /// after a scan of everything keeps every block, or after the same
    /// query ran once, a literal (searched directly or as a text matcher)
    /// returns the records that hold it, whether its probe wants all of a
    /// kept block's frames or some. (These random payloads put every
    /// literal in every frame: blocks kept in part are
    /// `kept_parts_answer_as_decoded_blocks`'.)
    #[test]
    fn kept_blocks_answer_as_decoded_blocks(
        recs in records(3000),
        short in proptest::collection::vec(proptest::sample::select(b"abc ".to_vec()), 1..6),
        cut in proptest::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 8usize..40)),
        layout in 0usize..LAYOUTS.len(),
        as_text in any::<bool>(),
        scan_first in any::<bool>(),
    ) {
        let fs = MemFs::new();
        let path = Path::new("/d/seg");
        write_with(&fs, path, &recs, LAYOUTS[layout]);
        let needle = needle_of(&recs, short, cut);
        let segments = crate::SegmentCache::with_block_cache(1 << 30);
        let blocks = segments.block_cache().unwrap().clone();
        let file = fs.open_read(path).unwrap();
        let segment = segments.open(&fs, path, &*file).unwrap();
        let cursor = |segment: &Arc<BlockSegment>| {
            BlockCursor::shared(segment.clone(), test_pool()).with_block_cache(blocks.clone())
        };
        let finder = Arc::new(memmem::Finder::new(&needle).into_owned());
        let literal = || {
            let mut cursor = cursor(&segment).with_literal(finder.clone());
            if as_text {
                cursor = cursor.with_text_matcher(Arc::new(LiteralText(memmem::Finder::new(&needle).into_owned())));
            }
            cursor
        };
        let want: Vec<Rec> = recs.iter().filter(|r| finder.find(&r.payload).is_some()).cloned().collect();
        if scan_first {
            prop_assert_eq!(read_all(cursor(&segment)).unwrap(), recs.clone());
            prop_assert_eq!(blocks.stats().blocks, segment.blocks().len() as u64);
        } else {
            // What the query reads in part is kept in part.
            prop_assert_eq!(read_all(literal()).unwrap(), want.clone());
        }

        let kept = literal();
        // Selected by the literal alone, every record holds it; a text
        // matcher decides each record.
        let by = if as_text { crate::cursor::Selected::Text } else { crate::cursor::Selected::Literal };
        prop_assert_eq!(crate::RecordCursor::selected_by(&kept), by);
        let hits = blocks.stats().hits;
        let got = read_all(kept).unwrap();
        prop_assert_eq!(got, want);
        // Every block the probe did not rule out was a hit.
        prop_assert!(recs.is_empty() || blocks.stats().hits > hits || blocks.stats().misses == segment.blocks().len() as u64);
    }
}

/// Words of [`worded_records`]: the first on many lines, the last on few
/// (by the square root of a uniform index, reversed).
const WORDS: [&str; 12] = [
    "started",
    "finished",
    "retrying",
    "queued",
    "evicted",
    "throttled",
    "migrated",
    "rebalanced",
    "quarantined",
    "resharded",
    "defragmented",
    "tombstoned",
];

/// Lines that begin with a word (some common, some rare) and carry one of
/// two levels, a few milliseconds apart: one sorted block of 8 or 9
/// frames, where a word's lines lie together by level, so a rare word's
/// query reads the block in part.
fn worded_records() -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(
        (0usize..WORDS.len() * WORDS.len(), 0usize..2, 0u64..3),
        8000..12000,
    )
    .prop_map(|parts| {
        let mut ms = 1_700_000_000_000u64;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, (word, level, step))| {
                ms += step;
                let word = WORDS[WORDS.len() - 1 - word.isqrt()];
                let level = ["INFO", "WARN"][level];
                Rec {
                    id: Ulid::from_parts(ms, i as u128).0,
                    flags: 0,
                    topic: b"t".to_vec(),
                    payload: format!("{word} job, level={level} n={i} took={}ms", step * 7)
                        .into_bytes(),
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Blocks kept in part answer exactly as decoded blocks do: a word's
    /// query twice (the second from the parts the first kept), another
    /// word's (other frames of the same blocks: decoded with the kept
    /// records, its parts replacing the first's), then the first again.
    #[test]
    fn kept_parts_answer_as_decoded_blocks(
        recs in worded_records(),
        first in 0usize..WORDS.len(),
        second in 0usize..WORDS.len(),
    ) {
        let (segment, blocks) = with_block_cache(&recs);
        for word in [first, second, first] {
            let finder = Arc::new(memmem::Finder::new(WORDS[word].as_bytes()).into_owned());
            let want = holding(&recs, &finder);
            for _ in 0..2 {
                let mut cursor = BlockCursor::shared(segment.clone(), test_pool())
                    .with_block_cache(blocks.clone())
                    .with_literal(finder.clone());
                prop_assert_eq!(read_from(&mut cursor).unwrap(), want.clone());
            }
        }
    }
}

/// 100,000 request lines, one in 100 an `ERROR`, each with its own trace
/// id; with `mixed`, of two topics and some flagged.
fn request_lines(mixed: bool) -> Vec<Rec> {
    request_lines_n(mixed, 100_000)
}

/// [`request_lines`], `n` of them.
fn request_lines_n(mixed: bool, n: u64) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            id: Ulid::from_parts(1_000_000 + i, 0).0,
            flags: (mixed && i % 3 == 0) as u8,
            topic: match mixed && i % 2 == 1 {
                false => b"t".to_vec(),
                true => b"bb".to_vec(),
            },
            payload: format!(
                "ts={} level={} msg=\"request done\" trace_id={}",
                1_000_000 + i,
                if i % 100 == 7 { "ERROR" } else { "INFO" },
                trace_id(i)
            )
            .into_bytes(),
        })
        .collect()
}

/// `recs` written as a block file, opened through a segment cache with a
/// block cache: the segment and that block cache.
fn with_block_cache(recs: &[Rec]) -> (Arc<BlockSegment>, Arc<crate::BlockCache>) {
    with_block_cache_in(recs, sorted)
}

/// [`with_block_cache`] with blocks of `make`'s layout.
fn with_block_cache_in(
    recs: &[Rec],
    make: MakeWriter,
) -> (Arc<BlockSegment>, Arc<crate::BlockCache>) {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    write_with(&fs, path, recs, make);
    let segments = crate::SegmentCache::with_block_cache(1 << 30);
    let blocks = segments.block_cache().unwrap().clone();
    let file = fs.open_read(path).unwrap();
    (segments.open(&fs, path, &*file).unwrap(), blocks)
}

/// The records of `recs` that hold `finder`.
fn holding(recs: &[Rec], finder: &memmem::Finder<'_>) -> Vec<Rec> {
    recs.iter()
        .filter(|r| finder.find(&r.payload).is_some())
        .cloned()
        .collect()
}

/// Blocks kept whole are searched in groups of about `KEPT_GROUP_BYTES`
/// of text, a worker job to a group rather than to a block, all through a
/// file of several times the groups kept in flight, and answer in order as
/// a job per block would.
#[test]
fn kept_blocks_are_searched_a_group_to_a_job() {
    let recs = request_lines_n(true, 350_000);
    let (segment, blocks) = with_block_cache_in(&recs, in_order);
    let pool = crate::WorkerPool::new(2).unwrap();
    let mut all =
        BlockCursor::shared(segment.clone(), pool.clone()).with_block_cache(blocks.clone());
    assert_eq!(read_from(&mut all).unwrap(), recs);
    let blocks_in_file = segment.blocks().len();
    assert!(blocks_in_file >= 24, "{blocks_in_file} blocks");
    assert_eq!(
        blocks.stats().blocks,
        blocks_in_file as u64,
        "every block kept"
    );

    let finder = Arc::new(memmem::Finder::new(b"level=ERROR").into_owned());
    let (before, hits) = (pool.submitted(), blocks.stats().hits);
    let mut errors = BlockCursor::shared(segment, pool.clone())
        .with_block_cache(blocks.clone())
        .with_literal(finder.clone());
    assert_eq!(read_from(&mut errors).unwrap(), holding(&recs, &finder));
    assert_eq!(blocks.stats().hits - hits, blocks_in_file as u64);
    // A group closes once it holds KEPT_GROUP_BYTES of text: with blocks
    // of about 1 MiB, every four or five blocks, and the last group of
    // the file may be short.
    let jobs = pool.submitted() - before;
    let text: usize = recs.iter().map(|r| r.payload.len() + 1).sum();
    assert!(
        jobs <= text.div_ceil(cursor::KEPT_GROUP_BYTES) + 1 && jobs * 3 < blocks_in_file,
        "{jobs} jobs for {blocks_in_file} blocks of {text} bytes of text"
    );
}

/// A query for a word on few lines, answered from kept blocks, searches
/// only the frames its probe wants, and counts only those as read.
#[test]
fn a_kept_block_is_searched_only_in_the_wanted_frames() {
    let recs = request_lines(false);
    let (segment, blocks) = with_block_cache(&recs);
    let mut all =
        BlockCursor::shared(segment.clone(), test_pool()).with_block_cache(blocks.clone());
    assert_eq!(read_from(&mut all).unwrap().len(), recs.len());
    let all_frames = all.frames_loaded();

    let finder = Arc::new(memmem::Finder::new(b"level=ERROR").into_owned());
    let misses = blocks.stats().misses;
    let mut errors = BlockCursor::shared(segment, test_pool())
        .with_block_cache(blocks.clone())
        .with_literal(finder.clone());
    let got = read_from(&mut errors).unwrap();
    assert_eq!(got.len(), 1_000);
    assert_eq!(got, holding(&recs, &finder));
    assert_eq!(blocks.stats().misses, misses, "every block was kept");
    assert!(
        errors.frames_loaded() * 10 < all_frames,
        "{} of {all_frames} frames",
        errors.frames_loaded()
    );
}

/// A block read in part is kept in part: the frames read and its records
/// (ids, topics, flags). The same query again is answered from the parts,
/// with no block decoded; another that wants other frames of a block
/// decodes them but no ids, and its part replaces the one before; a block
/// read whole later replaces every part.
#[test]
fn a_block_read_in_part_is_kept_for_the_next_query() {
    let recs = request_lines(true);
    let (segment, blocks) = with_block_cache(&recs);
    let blocks_in_file = segment.blocks().len() as u64;
    let query = |literal: &[u8]| {
        let finder = Arc::new(memmem::Finder::new(literal).into_owned());
        let cursor = BlockCursor::shared(segment.clone(), test_pool())
            .with_block_cache(blocks.clone())
            .with_literal(finder.clone());
        (cursor, holding(&recs, &finder))
    };
    let ask = |literal: &[u8]| {
        let (mut cursor, want) = query(literal);
        assert_eq!(read_from(&mut cursor).unwrap(), want);
        blocks.stats()
    };
    let first = ask(b"level=ERROR");
    assert!(blocks_in_file >= 2, "{blocks_in_file} blocks");
    assert_eq!(
        (first.blocks, first.parts),
        (blocks_in_file, blocks_in_file)
    );
    assert_eq!(first.hits, 0);

    // The same query: every block from its part.
    let again = ask(b"level=ERROR");
    assert_eq!(again.hits - first.hits, blocks_in_file);
    assert_eq!(again.misses, first.misses);

    // An id in another frame of one block: that block's part does not
    // hold it, its records do; its part is replaced.
    let id = trace_id(4242);
    let other = ask(id.as_bytes());
    assert_eq!((other.hits, other.misses - again.misses), (again.hits, 1));
    assert_eq!(other.record_hits - again.record_hits, 1);
    assert_eq!(other.record_misses, again.record_misses);
    assert_eq!(
        (other.blocks, other.parts),
        (blocks_in_file, blocks_in_file)
    );
    let id_again = ask(id.as_bytes());
    assert_eq!(id_again.hits - other.hits, 1);

    // A scan reads every block whole: no part is left.
    let mut all =
        BlockCursor::shared(segment.clone(), test_pool()).with_block_cache(blocks.clone());
    assert_eq!(read_from(&mut all).unwrap(), recs);
    let whole = blocks.stats();
    assert_eq!((whole.blocks, whole.parts), (blocks_in_file, 0));
    // And a block kept whole answers for any frames.
    let after = ask(b"level=ERROR");
    assert_eq!(after.hits - whole.hits, blocks_in_file);
    assert_eq!(after.misses, whole.misses);
}

/// `recs` written by a writer of `make`'s layout that keeps each block it
/// builds in a block cache: the segment, opened through a segment cache
/// with that block cache, and the block cache.
fn written_keeping(recs: &[Rec], make: MakeWriter) -> (Arc<BlockSegment>, Arc<crate::BlockCache>) {
    let fs = MemFs::new();
    let path = Path::new("/d/seg");
    let segments = crate::SegmentCache::with_block_cache(1 << 30);
    let blocks = segments.block_cache().unwrap().clone();
    fs.create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = make(fs.create_new(path).unwrap())
        .unwrap()
        .keeping_blocks_in(blocks.clone());
    for r in recs {
        let record = Record {
            id: Ulid(r.id),
            flags: r.flags,
            topic: &r.topic,
            payload: &r.payload,
        };
        w.push(record).unwrap();
    }
    w.finish().unwrap();
    let file = fs.open_read(path).unwrap();
    (segments.open(&fs, path, &*file).unwrap(), blocks)
}

/// A block file written while keeping its blocks is searched without a
/// single block decompressed, and answers as a decoded file does.
#[test]
fn blocks_kept_as_written_are_searched_without_decompressing() {
    let recs = request_lines(true);
    for make in LAYOUTS {
        let (segment, blocks) = written_keeping(&recs, make);
        let count = segment.blocks().len() as u64;
        assert!(count > 1, "several blocks");
        let stats = blocks.stats();
        assert_eq!(
            (stats.written, stats.blocks, stats.parts),
            (count, count, 0)
        );
        let cursor =
            || BlockCursor::shared(segment.clone(), test_pool()).with_block_cache(blocks.clone());
        assert_eq!(read_all(cursor()).unwrap(), recs);
        let finder = Arc::new(memmem::Finder::new(b"ERROR").into_owned());
        let mut errors = cursor().with_literal(finder.clone());
        assert_eq!(read_from(&mut errors).unwrap(), holding(&recs, &finder));
        assert!(errors.bytes_read() > 0, "kept blocks still count as read");
        let stats = blocks.stats();
        assert_eq!(stats.misses, 0, "no block was decompressed");
        assert!(stats.hits >= count);
        // The same file read without the cache: the same records.
        let plain = BlockCursor::shared(segment.clone(), test_pool());
        assert_eq!(read_all(plain).unwrap(), recs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Blocks kept as the writer built them answer exactly as blocks
    /// decoded from the file do, for a scan and for a literal, in either
    /// layout, with no block decompressed.
    #[test]
    fn blocks_kept_as_written_answer_as_decoded_blocks(
        recs in records(3000),
        short in proptest::collection::vec(proptest::sample::select(b"abc ".to_vec()), 1..6),
        cut in proptest::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 8usize..40)),
        layout in 0usize..LAYOUTS.len(),
    ) {
        let (segment, blocks) = written_keeping(&recs, LAYOUTS[layout]);
        prop_assert_eq!(blocks.stats().written, segment.blocks().len() as u64);
        let needle = needle_of(&recs, short, cut);
        let finder = Arc::new(memmem::Finder::new(&needle).into_owned());
        let cursor = || BlockCursor::shared(segment.clone(), test_pool()).with_block_cache(blocks.clone());
        prop_assert_eq!(read_all(cursor().with_literal(finder.clone())).unwrap(), holding(&recs, &finder));
        prop_assert_eq!(read_all(cursor()).unwrap(), recs.clone());
        prop_assert_eq!(blocks.stats().misses, 0);
    }
}
