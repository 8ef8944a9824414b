//! A regex's literal set prunes a block file's blocks and frames through
//! the term filter, and never loses a matching record.

use std::path::PathBuf;

use proptest::prelude::*;
use sluice_storage::{
    MemFs, RecordCursor, StoreSegmentWriter,
    block_segment::{BlockCursor, BlockLayout},
    store_segment::{self, ScanOptions},
};

use super::*;

/// A block file of `lines` (one record a millisecond) in a store
/// directory; returns its path.
fn write_blocks(fs: &MemFs, lines: &[String], layout: BlockLayout) -> PathBuf {
    let dir = Path::new("/store");
    sluice_storage::Fs::create_dir_all(fs, dir).unwrap();
    let mut w = StoreSegmentWriter::blocks(fs, dir, layout, WorkerPool::inline()).unwrap();
    for (i, payload) in lines.iter().enumerate() {
        w.push(Record {
            id: Ulid::from_parts(1_000 + i as u64, 0),
            flags: 0,
            topic: b"t",
            payload: payload.as_bytes(),
        })
        .unwrap();
    }
    dir.join(w.finish().unwrap().unwrap().name)
}

/// The scan options a forward query sets for `matcher` (see
/// `prepare_forward`): its required literal, its literal set's probe, and
/// its text matcher.
fn options(matcher: &Matcher) -> ScanOptions {
    let mut options = ScanOptions::new(WorkerPool::inline());
    options.literal = matcher.required_literal().cloned();
    options.any_of = matcher
        .required_any_of()
        .map(|literals| Arc::new(AnyOfProbe::new(literals)));
    options.text = matcher.text_matcher();
    options
}

/// Lines of a few kinds (levels, statuses written several ways, numbers
/// with and without separators), from a seed: several frames' worth.
fn lines(seed: u64, count: usize) -> Vec<String> {
    let mut x = seed | 1;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let levels = ["INFO", "WARN", "ERROR", "FATAL", "error", "Error", "info"];
    let statuses = ["200", "204", "404", "500", "503", "599", "5", "50", "5000"];
    let extras = [
        "",
        "ab",
        "abc",
        "x1",
        "5 5",
        "(a|b)c",
        "deadline exceeded after 4123ms",
        "bc ac",
    ];
    (0..count)
        .map(|i| {
            let s = statuses[next(statuses.len())];
            let status = match next(5) {
                0 => format!("status={s}"),
                1 => format!("\"{s}\""),
                2 => format!("\" {s} \""),
                3 => format!("status={s},"),
                _ => format!(" {s}"),
            };
            format!(
                "{} GET /a/{i} {status} took={}ms {}",
                levels[next(levels.len())],
                next(2000),
                extras[next(extras.len())]
            )
        })
        .collect()
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "status=",
        "5[0-9]{2}",
        "[0-9]{2}",
        "[0-9]+",
        " ",
        "\"",
        ",",
        "(ERROR|FATAL)",
        "(?i)error",
        "(?:WARN|INFO) ",
        "took=",
        "ms",
        "4[0-9]{3}",
        "(a|b)c",
        ".",
        "x",
        "[05]{1,3}",
        "5",
        "deadline exceeded",
        "\\b",
        "GET /a/",
        "[a-z]+",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Literal-set pruning never drops a matching record: a block file
    /// read through a cursor with the regex's required literal, literal
    /// set and text matcher returns exactly the records the regex matches,
    /// for either layout.
    #[test]
    fn literal_set_pruning_never_drops_a_matching_record(
        pieces in prop::collection::vec(piece(), 1..5),
        ignore_case in any::<bool>(),
        seed in any::<u64>(),
        in_order in any::<bool>(),
    ) {
        let pattern: String = pieces.concat();
        let matcher = Matcher::new(&pattern, true, ignore_case).unwrap();
        let lines = lines(seed, 2_000);
        let layout = if in_order { BlockLayout::InOrder } else { BlockLayout::Sorted };
        let fs = MemFs::new();
        let path = write_blocks(&fs, &lines, layout);
        let mut cursor = store_segment::open_cursor(&fs, &path, &options(&matcher)).unwrap();
        let mut got = Vec::new();
        while cursor.advance().unwrap() {
            got.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
        }
        let want: Vec<String> = lines.iter().filter(|l| matcher.is_match(l.as_bytes())).cloned().collect();
        prop_assert_eq!(got, want, "pattern {:?}, -i {}", pattern, ignore_case);
    }
}

/// The frames and blocks a cursor reads for `matcher` (with its literal
/// set or without), and the payloads it returns.
fn read_with(
    fs: &MemFs,
    path: &Path,
    matcher: &Matcher,
    with_set: bool,
) -> (u64, u64, Vec<String>) {
    let mut cursor = BlockCursor::open(fs, path, WorkerPool::inline()).unwrap();
    if let Some(literal) = matcher.required_literal() {
        cursor = cursor.with_literal(literal.clone());
    }
    if with_set {
        let literals = matcher.required_any_of().expect("a literal set");
        cursor = cursor.with_any_of_probe(Arc::new(AnyOfProbe::new(literals)));
    }
    cursor = cursor.with_text_matcher(matcher.text_matcher().unwrap());
    let mut got = Vec::new();
    while cursor.advance().unwrap() {
        got.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
    }
    (cursor.blocks_loaded(), cursor.frames_loaded(), got)
}

/// A status range over access-log lines where only a few lines, close in
/// time, have a 5xx status: the literal set (`status=500 ` to
/// `status=599 `, whose numbers the filters index) reads the block and
/// frame that hold them, and next to nothing else, where the required
/// literal `status=5` alone (no number key: `s=5` is not a word trigram)
/// reads every frame.
///
/// Not exactly one frame: each of the 100 literals may pass a frame it is
/// not in, where its number's three bits fall in rows a frame's own
/// numbers set (a frame of few numbers has 64 rows), so a set of many
/// numbers passes more such frames than one number does (here one frame,
/// in the other block).
///
/// Without the space after it, `status=5[0-9]{2}` matches `status=5000`
/// too, so its literals cannot claim a number with a separator after:
/// they prune by `status=` alone, as the required literal does.
#[test]
fn a_status_range_reads_only_the_frame_that_holds_it() {
    let words = ["orders", "users", "search", "items", "carts"];
    let statuses = [200, 200, 200, 204, 301, 304, 404];
    let lines: Vec<String> = (0..200_000usize)
        .map(|i| {
            let mix = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            let status = match i {
                // A burst of errors in one block.
                20_000..20_040 => 503,
                20_040..20_045 => 502,
                _ => statuses[mix as usize % statuses.len()],
            };
            format!(
                "10.0.{}.{} GET /api/v1/{}/{} status={status} \"{status}\" took={}ms bytes={}",
                mix % 256,
                i % 256,
                words[(mix >> 8) as usize % words.len()],
                i * 7 % 100_000,
                mix % 900,
                10_000 + mix % 60_000,
            )
        })
        .collect();
    let fs = MemFs::new();
    let path = write_blocks(&fs, &lines, BlockLayout::Sorted);
    let all_frames = {
        let mut cursor = BlockCursor::open(&fs, &path, WorkerPool::inline()).unwrap();
        while cursor.advance().unwrap() {}
        cursor.frames_loaded()
    };

    for pattern in ["status=5[0-9]{2} ", "status=5[0-9]{2},? "] {
        let matcher = Matcher::new(pattern, true, false).unwrap();
        // 100 literals, and 200 with the optional comma.
        let set = matcher.required_any_of().map_or(0, |set| set.len());
        assert!((100..=200).contains(&set), "{pattern}: {set} literals");
        let want: Vec<String> = lines
            .iter()
            .filter(|l| matcher.is_match(l.as_bytes()))
            .cloned()
            .collect();
        assert_eq!(want.len(), 45, "{pattern}");
        let (blocks, frames, got) = read_with(&fs, &path, &matcher, true);
        assert_eq!(got, want, "{pattern}");
        assert!(blocks <= 2, "{pattern}: read {blocks} blocks");
        assert!(
            frames <= 3 && frames * 20 < all_frames,
            "{pattern}: read {frames} of {all_frames} frames"
        );
        let (blocks, frames, got) = read_with(&fs, &path, &matcher, false);
        assert_eq!(got, want, "{pattern}");
        assert!(
            blocks >= 2,
            "{pattern}: the required literal alone read {blocks} blocks"
        );
        assert_eq!(frames, all_frames, "{pattern}: the required literal alone");
    }
}
