use std::path::PathBuf;

use sluice_storage::{MemFs, RecordCursor, StoreSegmentWriter};

use super::plan::INPUTS_READ_AHEAD;
use super::*;

fn write(fs: &MemFs, dir: &Path, ids: &[(u64, &str)]) {
    let mut w = StoreSegmentWriter::batches(fs, dir).unwrap();
    for (i, (ms, payload)) in ids.iter().enumerate() {
        let id = Ulid::from_parts(*ms, i as u128);
        w.push(Record {
            id,
            flags: 0,
            topic: b"default",
            payload: payload.as_bytes(),
        })
        .unwrap();
    }
    w.finish().unwrap();
}

fn run(fs: &MemFs, dir: &Path, from_ms: u64, to_ms: u64, q: &str) -> (Vec<String>, QueryStats) {
    let query = Query::between(from_ms, to_ms, Matcher::new(q, false, false).unwrap());
    let mut got = Vec::new();
    let scan = Scan::new(WorkerPool::inline());
    let stats = execute(fs, dir, &query, &scan, &mut |r: &Record<'_>| {
        got.push(String::from_utf8(r.payload.to_vec()).unwrap());
        true
    })
    .unwrap();
    (got, stats)
}

#[test]
fn overlapping_segments_merge_in_order_and_ranges_prune() {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
    write(&fs, dir, &[(100, "a ERROR"), (300, "c"), (500, "e ERROR")]);
    write(&fs, dir, &[(200, "b ERROR"), (400, "d")]);
    write(&fs, dir, &[(200, "b ERROR"), (400, "d")]); // consumed twice
    write(&fs, dir, &[(10_000, "far ERROR")]);
    let (got, stats) = run(&fs, dir, 0, 1000, "ERROR");
    assert_eq!(got, ["a ERROR", "b ERROR", "e ERROR"]);
    assert_eq!(stats.segments, 3, "the segment at 10s is pruned by time");
    assert_eq!(stats.duplicates_removed, 1);
    let (got, _) = run(&fs, dir, 250, 450, "");
    assert_eq!(got, ["c", "d"]);
}

/// A regex query skips its second test only on records its cursors
/// selected with the regex itself: a case-insensitive pattern that looks
/// around (`^`) has its batch file's records selected by its required
/// literal alone, and those the merge still decides.
#[test]
fn a_regex_query_tests_again_what_its_cursors_did_not_decide() {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
    let lines = ["x 12345", "y 12345", "X 12345 z", "a x 12345", "x 1234"];
    write(
        &fs,
        dir,
        &lines
            .iter()
            .enumerate()
            .map(|(i, l)| (100 + i as u64, *l))
            .collect::<Vec<_>>(),
    );
    let search = |pattern: &str, ignore_case: bool| {
        let query = Query::between(0, 1000, Matcher::new(pattern, true, ignore_case).unwrap());
        let mut got = Vec::new();
        execute(
            &fs,
            dir,
            &query,
            &Scan::new(WorkerPool::inline()),
            &mut |r: &Record<'_>| {
                got.push(String::from_utf8(r.payload.to_vec()).unwrap());
                true
            },
        )
        .unwrap();
        got
    };
    assert_eq!(search("^x 12345", true), ["x 12345", "X 12345 z"]);
    assert_eq!(search("x 1234[0-9]", false), ["x 12345", "a x 12345"]);
}

/// A query whose cancel flag is raised stops at the next block or
/// batch of every segment, whichever kind of file: it reads a few of
/// them, not all.
#[test]
fn a_cancelled_query_stops_at_the_next_block() {
    use sluice_storage::{block_segment::BlockLayout, store_segment::SegmentKind};
    let fs = MemFs::new();
    let dir = Path::new("/store");
    sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
    let workers = WorkerPool::new(2).unwrap();
    // Two segments of about 12 MiB each, one of each kind: a dozen
    // 1 MiB batches, a dozen 1 MiB blocks in id order.
    let payload = "x".repeat(1000);
    for (kind, base) in [(SegmentKind::Batches, 0u64), (SegmentKind::Blocks, 20_000)] {
        let mut w = match kind {
            SegmentKind::Batches => StoreSegmentWriter::batches(&fs, dir).unwrap(),
            SegmentKind::Blocks => {
                StoreSegmentWriter::blocks(&fs, dir, BlockLayout::InOrder, workers.clone()).unwrap()
            }
        };
        for i in 0..12_000u64 {
            w.push(Record {
                id: Ulid::from_parts(1_000 + base + i, 0),
                flags: 0,
                topic: b"t",
                payload: payload.as_bytes(),
            })
            .unwrap();
        }
        w.finish().unwrap();
    }
    let query = Query::between(0, 100_000, Matcher::All);
    let cancel: Cancel = Arc::default();
    let scan = Scan {
        cancel: Some(cancel.clone()),
        ..Scan::new(workers)
    };
    let mut returned = 0u64;
    let stats = execute(&fs, dir, &query, &scan, &mut |_: &Record<'_>| {
        returned += 1;
        // The client goes away after the first record.
        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        true
    })
    .unwrap();
    assert!(returned >= 1);
    // Each segment stops within its block or batch under way and the
    // blocks already in flight: about 4 MiB of 24.
    assert!(
        stats.records_scanned < 6_000,
        "scanned {} of 24000 records after the cancel",
        stats.records_scanned
    );
}

/// A time range of more segments than a query opens at once is refused
/// before any is opened, with the counts; one fewer runs.
#[test]
fn a_plan_of_too_many_segments_is_refused() {
    let fs = MemFs::new();
    let dir = Path::new("/store");
    sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
    for ms in 0..=MAX_PLAN_SEGMENTS as u64 {
        write(&fs, dir, &[(1_000 + ms, "x")]);
    }
    let scan = Scan::new(WorkerPool::inline());
    let all = Query::between(0, 1_000_000, Matcher::All);
    let err = execute(&fs, dir, &all, &scan, &mut |_: &Record<'_>| true).unwrap_err();
    assert!(err.is_the_query());
    assert_eq!(
        err.to_string(),
        format!(
            "the time range holds {} store segments, more than a query opens at once ({MAX_PLAN_SEGMENTS}): narrow it with from and to",
            MAX_PLAN_SEGMENTS + 1
        )
    );
    let fewer = Query::between(1_001, 1_000_000, Matcher::All);
    let stats = execute(&fs, dir, &fewer, &scan, &mut |_: &Record<'_>| true).unwrap();
    assert_eq!(stats.records_matched, MAX_PLAN_SEGMENTS as u64);
}

/// The payloads `query` finds in `sources` (on an inline pool), and the
/// stats.
fn run_sources(fs: &dyn Fs, sources: Sources<'_>, query: &Query) -> (Vec<String>, QueryStats) {
    let scan = Scan::new(WorkerPool::inline());
    let mut got = Vec::new();
    let stats = prepare_sources(fs, sources, query, &scan)
        .unwrap()
        .run(&mut |r: &Record<'_>| {
            got.push(String::from_utf8(r.payload.to_vec()).unwrap());
            true
        });
    (got, stats)
}

/// A batch of one record, `id` with `payload`, as a segment holds it.
fn batch_of(id: Ulid, payload: &str) -> Vec<u8> {
    let mut encoder = sluice_record::BatchEncoder::new();
    encoder.begin();
    encoder.push(Record {
        id,
        flags: 0,
        topic: b"default",
        payload: payload.as_bytes(),
    });
    encoder.finish().to_vec()
}

/// Append `bytes` to the file at `path`.
fn append(fs: &MemFs, path: &Path, bytes: &[u8]) {
    let mut file = sluice_storage::Fs::open_append(fs, path).unwrap();
    file.write_all(bytes).unwrap();
}

/// An ingest segment file of `ids` (ms, payload) in the order given,
/// one batch per record, with `torn` bytes of a batch being written at
/// its end.
fn ingest_file(fs: &MemFs, path: &Path, ids: &[(u64, u128, &str)], torn: usize) {
    use sluice_storage::SegmentWriter;
    let mut writer = SegmentWriter::create(fs, path).unwrap();
    let mut last = Vec::new();
    for (ms, n, payload) in ids {
        let id = Ulid::from_parts(*ms, *n);
        let batch = batch_of(id, payload);
        writer.append(&batch, 1, id, id).unwrap();
        last = batch;
    }
    drop(writer);
    if torn > 0 {
        append(fs, path, &last[..torn.min(last.len() - 1)]);
    }
}

#[test]
fn ingest_segments_merge_with_the_store_sorted_or_not_and_growing() {
    let fs = MemFs::new();
    let store = Path::new("/store");
    let ingest = Path::new("/ingest");
    sluice_storage::Fs::create_dir_all(&fs, store).unwrap();
    sluice_storage::Fs::create_dir_all(&fs, ingest).unwrap();
    write(&fs, store, &[(100, "a"), (300, "c")]);
    // Sorted and still being written: the torn batch is not read.
    let growing = ingest.join("1.active");
    ingest_file(&fs, &growing, &[(200, 1, "b"), (400, 1, "d")], 9);
    // Out of order (origin times): sorted in memory for the query.
    let unsorted = ingest.join("2.flushed");
    ingest_file(
        &fs,
        &unsorted,
        &[(600, 1, "f"), (150, 1, "a2"), (500, 1, "e")],
        0,
    );
    // Lent since it was listed: found under its next name.
    let moved = ingest.join("3.pending");
    ingest_file(&fs, &moved, &[(700, 1, "g")], 0);
    let names = [
        LiveSegment::named(vec![growing.clone()]),
        LiveSegment::named(vec![unsorted.clone()]),
        LiveSegment::named(vec![ingest.join("3.flushed"), moved.clone()]),
        LiveSegment::named(vec![ingest.join("4.flushed")]),
    ];
    let sources = Sources {
        store: Some(store),
        ingest: &names,
        ..Sources::default()
    };
    let query = Query::between(0, 10_000, Matcher::All);
    let (got, stats) = run_sources(&fs, sources, &query);
    assert_eq!(got, ["a", "a2", "b", "c", "d", "e", "f", "g"]);
    assert!(stats.failed_segments.is_empty(), "{stats:?}");
    let planned = plan_sources(&fs, sources, &query).unwrap();
    assert_eq!(planned.len(), 1 + 3, "{planned:?}");
}

#[test]
fn an_ingest_segment_whose_id_floor_is_above_the_range_is_not_read() {
    let fs = MemFs::new();
    let ingest = Path::new("/ingest");
    sluice_storage::Fs::create_dir_all(&fs, ingest).unwrap();
    let path = ingest.join("1.active");
    ingest_file(&fs, &path, &[(5_000, 1, "later")], 0);
    // A whole batch whose body does not match its checksum: reading the
    // file fails the segment, so only a file passed over unread does not.
    let mut damaged = batch_of(Ulid::from_parts(5_001, 1), "damaged");
    *damaged.last_mut().unwrap() ^= 0xff;
    append(&fs, &path, &damaged);

    let query = Query::between(0, 1_000, Matcher::All);
    // The file, with an id floor at `ms` if given.
    let live = |floor_ms: Option<u64>| LiveSegment {
        names: vec![path.clone()],
        floor: floor_ms.map(|ms| {
            let floor = Arc::new(sluice_storage::IdFloor::new());
            floor.lower(Ulid::from_parts(ms, 0));
            floor
        }),
    };
    let run = |floor: Option<u64>| {
        let names = [live(floor)];
        let sources = Sources {
            ingest: &names,
            ..Sources::default()
        };
        let scan = Scan::new(WorkerPool::inline());
        prepare_sources(&fs, sources, &query, &scan)
            .unwrap()
            .run(&mut |_: &Record<'_>| true)
    };
    let unread = run(Some(5_000));
    assert!(unread.failed_segments.is_empty(), "{unread:?}");
    assert_eq!(unread.records_scanned, 0);
    let planned = |floor: Option<u64>| {
        let names = [live(floor)];
        let sources = Sources {
            ingest: &names,
            ..Sources::default()
        };
        plan_sources(&fs, sources, &query).unwrap().len()
    };
    assert_eq!(planned(Some(5_000)), 0, "not planned either");
    assert_eq!(planned(Some(900)), 1);
    // No floor, or one inside the range: the file is read and the damage
    // found.
    for floor in [None, Some(900)] {
        let read = run(floor);
        assert_eq!(read.failed_segments.len(), 1, "floor {floor:?}: {read:?}");
    }
}

/// What a [`RacingFs`] runs once.
type Hook = Box<dyn FnOnce(&MemFs) + Send>;

/// A file system that runs a hook once at one step of a query: right
/// after it lists `path` (a directory), or right before it opens `path`
/// (a file). What another thread does between a query's steps: a store
/// commits, an ingester writes.
struct RacingFs {
    inner: MemFs,
    path: PathBuf,
    after_listing: std::sync::Mutex<Option<Hook>>,
    before_open: std::sync::Mutex<Option<Hook>>,
}

impl RacingFs {
    fn after_listing(inner: &MemFs, dir: &Path, hook: Hook) -> RacingFs {
        RacingFs {
            inner: inner.clone(),
            path: dir.to_path_buf(),
            after_listing: std::sync::Mutex::new(Some(hook)),
            before_open: std::sync::Mutex::default(),
        }
    }

    fn before_open(inner: &MemFs, file: &Path, hook: Hook) -> RacingFs {
        RacingFs {
            inner: inner.clone(),
            path: file.to_path_buf(),
            after_listing: std::sync::Mutex::default(),
            before_open: std::sync::Mutex::new(Some(hook)),
        }
    }
}

impl std::fmt::Debug for RacingFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RacingFs")
            .field("path", &self.path)
            .finish()
    }
}

impl Fs for RacingFs {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn sluice_storage::WriteFile>> {
        self.inner.create_new(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn sluice_storage::WriteFile>> {
        self.inner.open_append(path)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn sluice_storage::ReadFile>> {
        if path == self.path
            && let Some(hook) = self.before_open.lock().unwrap().take()
        {
            hook(&self.inner);
        }
        self.inner.open_read(path)
    }
    fn map(&self, path: &Path) -> std::io::Result<sluice_storage::Mapped> {
        self.inner.map(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<sluice_storage::DirEntry>> {
        let listed = self.inner.read_dir(path)?;
        if path == self.path
            && let Some(hook) = self.after_listing.lock().unwrap().take()
        {
            hook(&self.inner);
        }
        Ok(listed)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.hard_link(from, to)
    }
    fn truncate(&self, path: &Path, len: u64) -> std::io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}

#[test]
fn a_segment_committed_while_a_query_plans_is_read_once_not_missed() {
    let fs = MemFs::new();
    let store = Path::new("/store");
    let ingest = Path::new("/ingest");
    sluice_storage::Fs::create_dir_all(&fs, store).unwrap();
    sluice_storage::Fs::create_dir_all(&fs, ingest).unwrap();
    write(&fs, store, &[(100, "stored")]);
    let lent = ingest.join("1.pending");
    ingest_file(&fs, &lent, &[(200, 0, "in flight")], 0);
    // Right after the query lists the store, a store commits the lent
    // segment: its records land in a store segment the listing did not
    // see, and the ingester removes its file.
    let racing = RacingFs::after_listing(
        &fs,
        store,
        Box::new(|fs: &MemFs| {
            write(fs, Path::new("/store"), &[(200, "in flight")]);
            sluice_storage::Fs::remove_file(fs, Path::new("/ingest/1.pending")).unwrap();
        }),
    );
    let names = [LiveSegment::named(vec![
        ingest.join("1.flushed"),
        lent.clone(),
    ])];
    let sources = Sources {
        store: Some(store),
        ingest: &names,
        ..Sources::default()
    };
    let query = Query::between(0, 10_000, Matcher::All);
    let (got, _) = run_sources(&racing, sources, &query);
    assert_eq!(got, ["stored", "in flight"]);
}

#[test]
fn an_id_floor_is_read_after_its_file_is_opened() {
    let fs = MemFs::new();
    let ingest = Path::new("/ingest");
    sluice_storage::Fs::create_dir_all(&fs, ingest).unwrap();
    let path = ingest.join("1.active");
    ingest_file(&fs, &path, &[(5_000, 1, "later")], 0);
    let floor = Arc::new(sluice_storage::IdFloor::new());
    floor.lower(Ulid::from_parts(5_000, 1));
    // As the query opens the file, its writer appends a batch inside the
    // range, lowering the floor first as a writer does. Read before the
    // open, the floor would still be above the range, and the record
    // missed.
    let racing = RacingFs::before_open(&fs, &path, {
        let (floor, path) = (floor.clone(), path.clone());
        Box::new(move |fs: &MemFs| {
            let id = Ulid::from_parts(500, 1);
            floor.lower(id);
            append(fs, &path, &batch_of(id, "in range"));
        })
    });
    let names = [LiveSegment {
        names: vec![path.clone()],
        floor: Some(floor),
    }];
    let sources = Sources {
        ingest: &names,
        ..Sources::default()
    };
    let query = Query::between(0, 1_000, Matcher::All);
    let (got, _) = run_sources(&racing, sources, &query);
    assert_eq!(got, ["in range"]);
}

mod text_search {
    use proptest::prelude::*;
    use sluice_storage::{
        Selected,
        block_segment::BlockLayout,
        store_segment::{self, ScanOptions},
    };

    use super::*;

    /// The payloads of a block file of `lines`, read back through a cursor
    /// that searches each block's text as a whole with `matcher`.
    fn selected_by_text(lines: &[String], matcher: &Matcher, layout: BlockLayout) -> Vec<String> {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
        let mut w = StoreSegmentWriter::blocks(&fs, dir, layout, WorkerPool::inline()).unwrap();
        for (i, payload) in lines.iter().enumerate() {
            w.push(Record {
                id: Ulid::from_parts(1_000 + i as u64, 0),
                flags: 0,
                topic: b"t",
                payload: payload.as_bytes(),
            })
            .unwrap();
        }
        let meta = w.finish().unwrap().unwrap();
        let mut cursor =
            store_segment::open_cursor(&fs, &dir.join(&meta.name), &options_of(matcher)).unwrap();
        // The merge takes its records as matching without testing them.
        assert_eq!(cursor.selected_by(), Selected::Text);
        let mut got = Vec::new();
        while cursor.advance().unwrap() {
            got.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
        }
        got
    }

    /// The same through a batch file (fresh data): the text matcher's
    /// required literal, where it has one, is searched over each batch
    /// body and the records holding it decided on their payload; else the
    /// matcher runs over each body, records' headers and topics included,
    /// unless the pattern looks around, when every record comes back for
    /// the merge to check (as the query's merge filter does).
    fn selected_in_batches(lines: &[String], matcher: &Matcher) -> Vec<String> {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        sluice_storage::Fs::create_dir_all(&fs, dir).unwrap();
        let mut w = StoreSegmentWriter::batches(&fs, dir).unwrap();
        for (i, payload) in lines.iter().enumerate() {
            w.push(Record {
                id: Ulid::from_parts(1_000 + i as u64, 0),
                flags: 0,
                // Topics of letters the patterns use, next to the payloads.
                topic: [&b"ab"[..], b"xa", b"b"][i % 3],
                payload: payload.as_bytes(),
            })
            .unwrap();
        }
        let meta = w.finish().unwrap().unwrap();
        let options = options_of(matcher);
        let mut cursor = store_segment::open_cursor(&fs, &dir.join(&meta.name), &options).unwrap();
        // A pattern with a required literal that it can search for, or
        // without look-around, selects exactly, and says so: the merge then
        // takes its records as matching. Any other gets every record (or
        // those holding the required literal) back, to be checked as the
        // merge does.
        let text = options.text.as_ref().unwrap();
        let exact = text.required_literal().is_some() || !text.looks_around();
        assert_eq!(cursor.selected_by() == Selected::Text, exact);
        let mut got = Vec::new();
        while cursor.advance().unwrap() {
            let payload = cursor.record().payload;
            if exact || matcher.is_match(payload) {
                got.push(String::from_utf8(payload.to_vec()).unwrap());
            }
        }
        got
    }

    /// The scan options a query with `matcher` opens its cursors with
    /// (`prepare_forward`'s): its required literal and its text matcher.
    fn options_of(matcher: &Matcher) -> ScanOptions {
        let mut options = ScanOptions::new(WorkerPool::inline());
        options.literal = matcher.required_literal().cloned();
        options.text = matcher.text_matcher();
        options
    }

    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a", "b", "ab", "x", "ba", "[^a]", "[a-c]", ".", "\\s", "\\S", "^", "$", "\\b", "*",
            "+", "?", "{1,2}", "|", "(", ")", "a", "[^x]+", "\\w", "abx", "xab", "bab",
        ])
    }

    /// A pattern of pieces, and random lines among which some hold a
    /// match of it between random bytes (where the generator can make one),
    /// so that lines that match are common, with context on both sides.
    fn pattern_and_lines() -> impl Strategy<Value = (String, Vec<String>)> {
        prop::collection::vec(piece(), 1..6).prop_flat_map(|pieces| {
            let pattern: String = pieces.concat();
            let random = "[abxAB \t]{0,12}";
            let planted: BoxedStrategy<String> = match proptest::string::string_regex(&pattern) {
                Ok(matching) => (random, matching, random)
                    .prop_map(|(before, middle, after)| format!("{before}{middle}{after}"))
                    .prop_filter("one line", |l| !l.contains(['\n', '\r']))
                    .boxed(),
                Err(_) => random.boxed(),
            };
            let line = prop_oneof![3 => random.boxed(), 1 => planted];
            (Just(pattern), prop::collection::vec(line, 1..40))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Searching a block's text as a whole selects exactly the records a
        /// per-record regex selects: for anchors, classes that can match a
        /// newline (`[^a]`, `\s`) and so run across lines, `-i`, and both
        /// block layouts.
        #[test]
        fn the_whole_text_search_selects_what_a_per_record_regex_selects(
            (pattern, lines) in pattern_and_lines(),
            ignore_case in any::<bool>(),
            in_order in any::<bool>(),
        ) {
            let Ok(matcher) = Matcher::new(&pattern, true, ignore_case) else {
                return Ok(());
            };
            let want: Vec<String> = lines.iter().filter(|l| matcher.is_match(l.as_bytes())).cloned().collect();
            let layout = if in_order { BlockLayout::InOrder } else { BlockLayout::Sorted };
            prop_assert_eq!(selected_by_text(&lines, &matcher, layout), want.clone(), "pattern {:?}", pattern);
            prop_assert_eq!(selected_in_batches(&lines, &matcher), want, "pattern {:?} in batches", pattern);
        }
    }

    /// A literal of letters (`k` and `s` among them, which a
    /// case-insensitive regex also matches to non-ASCII characters) and
    /// other bytes, and lines that hold it in mixed case, its non-ASCII
    /// variants (the Kelvin sign, the long s), and near misses.
    fn literal_and_lines() -> impl Strategy<Value = (String, Vec<String>)> {
        "[abkKsS@` -]{1,6}".prop_flat_map(|literal| {
            let random = "[abkKsS@` \u{212a}\u{17f}-]{0,12}";
            let cased = proptest::collection::vec(any::<bool>(), literal.len()).prop_map({
                let literal = literal.clone();
                move |upper| {
                    literal
                        .chars()
                        .zip(upper)
                        .map(|(c, up)| match (c, up) {
                            ('k', true) => '\u{212a}',
                            ('s', true) => '\u{17f}',
                            (c, true) => c.to_ascii_uppercase(),
                            (c, false) => c,
                        })
                        .collect::<String>()
                }
            });
            let planted = (random, cased, random).prop_map(|(a, m, b)| format!("{a}{m}{b}"));
            let line = prop_oneof![2 => random.boxed(), 1 => planted.boxed()];
            (Just(literal), prop::collection::vec(line, 1..40))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// A literal with `-i`, searched over a block's text and over batch
        /// bodies (by the ASCII case-folded finder where the literal allows
        /// it), selects exactly the records the regex crate's
        /// case-insensitive search of it selects, one record at a time.
        #[test]
        fn a_case_insensitive_literal_selects_what_a_per_record_regex_selects(
            (literal, lines) in literal_and_lines(),
            in_order in any::<bool>(),
        ) {
            let matcher = Matcher::new(&literal, false, true).unwrap();
            let regex = regex::RegexBuilder::new(&regex::escape(&literal))
                .case_insensitive(true)
                .build()
                .unwrap();
            let want: Vec<String> = lines.iter().filter(|l| regex.is_match(l)).cloned().collect();
            let per_record: Vec<String> =
                lines.iter().filter(|l| matcher.is_match(l.as_bytes())).cloned().collect();
            prop_assert_eq!(&per_record, &want, "literal {:?}", literal);
            let layout = if in_order { BlockLayout::InOrder } else { BlockLayout::Sorted };
            prop_assert_eq!(selected_by_text(&lines, &matcher, layout), want.clone(), "literal {:?}", literal);
            prop_assert_eq!(selected_in_batches(&lines, &matcher), want, "literal {:?} in batches", literal);
        }
    }

    #[test]
    fn a_case_insensitive_literal_is_found_in_any_case() {
        let lines: Vec<String> = ["an Error here", "fine", "ERROR", "terror", "err or"]
            .map(String::from)
            .to_vec();
        let matcher = Matcher::new("error", false, true).unwrap();
        assert_eq!(
            selected_by_text(&lines, &matcher, BlockLayout::Sorted),
            ["an Error here", "ERROR", "terror"]
        );
    }

    /// A batch file's records that hold a regex's required literal are
    /// decided by the regex on their payload: the literal alone would take
    /// `status=5 ok` too, and the word boundary must see the payload's end,
    /// not the next record's header.
    #[test]
    fn records_holding_the_required_literal_are_decided_by_the_regex() {
        let lines: Vec<String> = [
            "status=503",
            "status=5 ok",
            "x status=500y",
            "status=200",
            "status=599",
        ]
        .map(String::from)
        .to_vec();
        let matcher = Matcher::new(r"status=5[0-9]{2}\b", true, false).unwrap();
        let text = matcher.text_matcher().unwrap();
        assert_eq!(text.required_literal().unwrap().needle(), b"status=5");
        assert_eq!(
            selected_in_batches(&lines, &matcher),
            ["status=503", "status=599"]
        );
    }
}

/// A cursor that notes, in a log shared by several, when it is told to
/// read ahead.
struct Noted {
    name: usize,
    log: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl RecordCursor for Noted {
    fn advance(&mut self) -> Result<bool, StorageError> {
        Ok(false)
    }
    fn record(&self) -> Record<'_> {
        unreachable!("never advanced")
    }
    fn bytes_read(&self) -> u64 {
        0
    }
    fn read_ahead(&mut self) {
        self.log.lock().unwrap().push(self.name);
    }
}

/// Opening a merge input reads ahead on it, then on the input after it, in
/// that order (so the next file's search queues behind this one's), and on
/// no input the merge opened already or that failed to open.
#[test]
fn opening_an_input_reads_ahead_on_it_and_the_next() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let noted = |name| -> Option<OpenedCursor> {
        Some(Ok(Box::new(Noted {
            name,
            log: log.clone(),
        })))
    };
    let failed = Some(Err(StorageError::Io {
        op: "open",
        path: PathBuf::from("/gone"),
        source: std::io::Error::other("gone"),
    }));
    let mut cursors = vec![noted(0), noted(1), failed, noted(3), noted(4)];
    let taken = |log: &std::sync::Mutex<Vec<usize>>| std::mem::take(&mut *log.lock().unwrap());
    assert!(open_reading_ahead(&mut cursors, 0, INPUTS_READ_AHEAD).is_ok());
    assert_eq!(taken(&log), [0, 1]);
    assert!(open_reading_ahead(&mut cursors, 1, INPUTS_READ_AHEAD).is_ok());
    assert_eq!(
        taken(&log),
        [1],
        "input 2 failed to open: nothing to read ahead"
    );
    assert!(open_reading_ahead(&mut cursors, 2, INPUTS_READ_AHEAD).is_err());
    assert_eq!(taken(&log), [3]);
    assert!(open_reading_ahead(&mut cursors, 3, INPUTS_READ_AHEAD).is_ok());
    assert!(open_reading_ahead(&mut cursors, 4, INPUTS_READ_AHEAD).is_ok());
    assert_eq!(taken(&log), [3, 4, 4], "the last input has none after it");

    // A query with a limit reads ahead only on the input it opens.
    let mut cursors = vec![noted(0), noted(1), noted(2)];
    assert!(open_reading_ahead(&mut cursors, 0, 0).is_ok());
    assert_eq!(taken(&log), [0]);
}

#[test]
fn only_a_query_without_a_limit_reads_ahead_on_the_next_input() {
    let mut query = Query::between(0, u64::MAX, Matcher::new("x", false, false).unwrap());
    assert_eq!(inputs_read_ahead(&query), INPUTS_READ_AHEAD);
    query.limit = Some(10);
    assert_eq!(inputs_read_ahead(&query), 0);
}
