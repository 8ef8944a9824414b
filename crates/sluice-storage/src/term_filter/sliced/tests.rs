use super::*;

/// The sliced filter of `frames`, each a list of payloads, with word
/// trigrams (and so numbers) indexed.
fn encoded<P: AsRef<[u8]>>(frames: &[Vec<P>]) -> Vec<u8> {
    let mut builder = SliceBuilder::default();
    builder.clear(true);
    for frame in frames {
        builder.start_frame();
        for p in frame {
            builder.add(p.as_ref());
        }
    }
    let mut filter = Vec::new();
    builder.encode(&mut filter);
    filter
}

/// The frames, of `frames`, that `filter` says `literal` may be in.
fn passing(filter: &[u8], frames: usize, literal: &[u8]) -> Vec<usize> {
    let mut mask = Vec::new();
    all_frames(frames, &mut mask);
    TermProbe::new(literal).narrow_frames(filter, frames, &mut mask);
    (0..frames)
        .filter(|&f| mask[f / 64] & (1 << (f % 64)) != 0)
        .collect()
}

/// The frames of `frames` (each a list of payloads) that `literal` may
/// be in, by the sliced filter.
fn candidates(frames: &[Vec<String>], literal: &str) -> Vec<usize> {
    passing(&encoded(frames), frames.len(), literal.as_bytes())
}

fn id(i: u64) -> String {
    format!(
        "{:032x}",
        (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001
    )
}

/// 100 frames of similar lines, one level each: a level word and an id
/// lead to their frames only.
#[test]
fn words_and_ids_find_their_frames() {
    let levels = ["INFO", "DEBUG", "WARN", "ERROR"];
    let frames: Vec<Vec<String>> = (0..100u64)
        .map(|f| {
            (0..200u64)
                .map(|i| {
                    let level = levels[(f % 4) as usize];
                    format!(
                        "ts=2026-11-21T06:00:{:02}Z level={level} svc=api id={}",
                        i % 60,
                        id(f * 1000 + i)
                    )
                })
                .collect()
        })
        .collect();
    let errors = candidates(&frames, "level=ERROR");
    let want: Vec<usize> = (0..100).filter(|f| f % 4 == 3).collect();
    assert!(want.iter().all(|f| errors.contains(f)), "{errors:?}");
    assert!(
        errors.len() <= want.len() + 5,
        "{} frames pass",
        errors.len()
    );
    let one = candidates(&frames, &id(42_017));
    assert!(one.contains(&42), "{one:?}");
    assert!(one.len() <= 2, "{one:?}");
    assert_eq!(candidates(&frames, "svc=api").len(), 100);
    // Digits are not indexed as trigrams: a time passes every frame.
    assert_eq!(candidates(&frames, "06:00:77").len(), 100);
}

/// A literal shorter than a trigram has no key: it passes every frame,
/// whatever the frames hold.
#[test]
fn short_literals_never_prune() {
    let frames: Vec<Vec<String>> = (0..3)
        .map(|f| vec![format!("level=INFO msg=done n={f} {}", id(f))])
        .collect();
    assert_eq!(candidates(&frames, "ab"), [0, 1, 2]);
    assert_eq!(candidates(&frames, ""), [0, 1, 2]);
}

/// Of 2,000 ids absent from a frame of 3,000 lines with ids (every
/// hex trigram occurs, so only the 8-grams tell them apart), few pass.
#[test]
fn absent_ids_are_pruned_by_their_winnowed_grams() {
    let hex_id = super::super::tests::hex_id;
    let frame: Vec<String> = (0..3000)
        .map(|i| format!("req_id={} ok", hex_id(i)))
        .collect();
    let filter = encoded(&[frame]);
    assert_eq!(passing(&filter, 1, hex_id(17).as_bytes()), [0]);
    let passed = (10_000..12_000)
        .filter(|&i| !passing(&filter, 1, hex_id(i).as_bytes()).is_empty())
        .count();
    assert!(passed < 20, "{passed} of 2000 absent ids passed");
}

/// A builder reused for the next block must not take the keys it saw
/// for the last one as already added (its recent-keys cache).
#[test]
fn a_cleared_builder_indexes_repeated_payloads_again() {
    let line = b"level=info trace_id=4bf92f3577b34da6a3ce929d0e0e4736 done";
    let mut builder = SliceBuilder::default();
    let mut filter = Vec::new();
    for _block in 0..2 {
        builder.clear(true);
        for _frame in 0..2 {
            builder.start_frame();
            builder.add(line);
            builder.add(line);
        }
        filter.clear();
        builder.encode(&mut filter);
        assert_eq!(
            passing(&filter, 2, b"4bf92f3577b34da6a3ce929d0e0e4736"),
            [0, 1]
        );
    }
}

/// A frame of random words sets nearly every trigram row: it nearly
/// always passes, and does not make the rows of the other frames
/// denser.
#[test]
fn a_frame_of_random_words_passes_every_trigram() {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: String = (0..60_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ_"[(x % 41) as usize] as char
        })
        .collect();
    let mut frames: Vec<Vec<String>> = (0..6)
        .map(|_| vec!["level=INFO msg=done".to_string()])
        .collect();
    frames.push(vec![noise]);
    assert_eq!(candidates(&frames, "ERROR"), vec![6]);
    assert_eq!(candidates(&frames, "INFO").len(), 7);
}

/// A frame of a few times the words of the others (the tail of a
/// block's sort order, where rare templates gather) is folded onto the
/// rows like the rest: it rules out absent words, where setting every
/// row let it pass them all (in 62 of 262 blocks of the realistic
/// corpus, a frame passed any absent word).
#[test]
fn a_denser_frame_still_rules_out_absent_words() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut words = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                (0..7)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        b"ghijklmnopqrstuvwxyz"[(x % 20) as usize] as char
                    })
                    .collect()
            })
            .collect()
    };
    let mut frames: Vec<Vec<String>> = (0..8).map(|_| words(40)).collect();
    frames.push(words(100));
    let filter = encoded(&frames);
    let absent = ["quartzwy", "vexingly", "jumpiest", "zigzagging", "whomping"];
    let passed: usize = absent
        .iter()
        .map(|w| passing(&filter, frames.len(), w.as_bytes()).len())
        .sum();
    assert!(passed <= 1, "absent words passed {passed} frames");
    // Its own words still find it.
    assert!(candidates(&frames, &frames[8][99]).contains(&8));
}

/// More than 64 frames: rows span several words.
#[test]
fn frames_beyond_the_first_word_are_found() {
    let frames: Vec<Vec<String>> = (0..150)
        .map(|f| {
            vec![format!(
                "event {} happened",
                ["alpha", "bravo", "charlie"][f % 3]
            )]
        })
        .collect();
    let got = candidates(&frames, "charlie");
    let want: Vec<usize> = (0..150).filter(|f| f % 3 == 2).collect();
    assert!(want.iter().all(|f| got.contains(f)));
    assert!(got.len() < 75, "{} pass", got.len());
    assert!(candidates(&frames, "zulu").len() < 10);
}

/// The builder's branchless loop sets the bits of exactly the word
/// trigrams a probe looks for.
#[test]
fn the_builder_indexes_the_word_trigrams_a_probe_finds() {
    let text = b"ts=2026-11-21 level=ERROR id=4bf92f35deadbeef msg=\"cafe bad\" ok";
    let mut built = [0u64; MAP_BITS / 64];
    add_word_trigrams(text, &mut built);
    let mut want = [0u64; MAP_BITS / 64];
    super::super::for_each_word_trigram(text, |key| {
        for bit in trigram_bits(word_trigram_hash(key)) {
            want[bit / 64] |= 1 << (bit % 64);
        }
    });
    assert_eq!(built, want);
    assert!(want.iter().any(|&w| w != 0));
}

#[test]
fn a_status_finds_the_frames_of_its_lines() {
    // Frames of access-log lines, each of one status, as a block
    // sorted by status has them.
    let statuses = ["200", "304", "404", "500", "503"];
    let frames: Vec<Vec<String>> = (0..100u64)
        .map(|f| {
            (0..200u64)
                .map(|i| {
                    format!(
                        "10.0.{}.{} - - [21/Nov/2026:06:00:{:02} +0000] \"GET /a/{} HTTP/1.1\" {} {}",
                        f % 256,
                        i % 256,
                        i % 60,
                        f * 1000 + i,
                        statuses[(f % 5) as usize],
                        100 + i * 37 % 900,
                    )
                })
                .collect()
        })
        .collect();
    let want: Vec<usize> = (0..100).filter(|f| f % 5 == 4).collect();
    let got = candidates(&frames, "\" 503 ");
    assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
    assert!(got.len() <= want.len() + 5, "{} frames pass", got.len());
    // Without a separator on each side within the literal, the run of
    // digits may be part of a longer number: no short number. `" 503`
    // still has a prefix (its two bytes before are in the literal, and
    // the sizes' `0 503` is not it); `503` has nothing.
    let got = candidates(&frames, "\" 503");
    assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
    assert!(got.len() <= want.len() + 5, "{} frames pass", got.len());
    assert_eq!(candidates(&frames, "503").len(), 100);
}

#[test]
fn a_number_prefix_prunes_a_field_that_may_go_on() {
    // `status=5[0-9]{2}`'s literals: `status=503` may go on as
    // `status=5031`, so only its prefix can prune; other fields hold
    // the same three digits.
    let frames: Vec<Vec<String>> = (0..60u64)
        .map(|f| {
            (0..50u64)
                .map(|i| {
                    let status = [200, 404, 503][(f % 3) as usize] + (f / 3 % 2) * 1000;
                    format!(
                        "GET /x status={status} rows=5{:02} latency_ms={}",
                        i,
                        503 + i
                    )
                })
                .collect()
        })
        .collect();
    let want: Vec<usize> = (0..60).filter(|f| f % 3 == 2 && f / 3 % 2 == 0).collect();
    let got = candidates(&frames, "status=503");
    assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
    assert!(
        got.len() <= want.len() + 3,
        "{} frames pass: {got:?}",
        got.len()
    );
    // `status=150` may start `status=1503`: it passes the frames of
    // four-digit statuses (a long key holds only the first digit),
    // not those of three.
    let want: Vec<usize> = (0..60).filter(|f| f / 3 % 2 == 1).collect();
    let got = candidates(&frames, "status=150");
    assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
    assert!(
        got.len() <= want.len() + 3,
        "{} frames pass: {got:?}",
        got.len()
    );
}

#[test]
fn prefixes_are_not_probed_in_a_filter_without_them() {
    let frames: Vec<Vec<String>> = (0..10)
        .map(|f| vec![format!("status={} msg=done", 2000 + f)])
        .collect();
    let mut filter = encoded(&frames);
    let passed = |filter: &[u8]| passing(filter, 10, b"status=200");
    let got = passed(&filter);
    assert_eq!(got.len(), 10, "every frame holds `status=200`: {got:?}");
    let passed = |filter: &[u8]| passing(filter, 10, b"status=300");
    assert!(passed(&filter).is_empty());
    // The same filter without its prefix section, as a block written
    // before prefixes were indexed has it: nothing rules a frame out.
    let section = 4 + Rows::parse(&filter, 10).unwrap().prefixes.len();
    filter.truncate(filter.len() - section);
    let rows = Rows::parse(&filter, 10).unwrap();
    assert!(rows.prefix_rows.is_none() && rows.number_rows.is_some());
    assert_eq!(passed(&filter).len(), 10);
}

#[test]
fn numbers_are_not_probed_in_a_filter_without_them() {
    let frames: Vec<Vec<String>> = (0..10)
        .map(|f| vec![format!("status={} msg=done", 200 + f)])
        .collect();
    let mut filter = encoded(&frames);
    let passed = |filter: &[u8]| passing(filter, 10, b"status=205 ");
    let got = passed(&filter);
    assert!(got.contains(&5) && got.len() < 5, "{got:?}");
    // The same filter without its number and prefix sections, as a
    // block in id order has it: every frame holds the literal's word
    // trigrams, and its number is not probed.
    let rows = Rows::parse(&filter, 10).unwrap();
    let sections = 8 + rows.numbers.len() + rows.prefixes.len();
    filter.truncate(filter.len() - sections);
    assert!(Rows::parse(&filter, 10).unwrap().number_rows.is_none());
    assert_eq!(passed(&filter).len(), 10);
    // Frames without a short number: a literal with one passes none.
    let frames = vec![vec!["status=ok msg=done".to_string()]; 3];
    assert_eq!(candidates(&frames, "status=ok msg=done"), [0, 1, 2]);
    assert_eq!(candidates(&frames, "status=205 "), Vec::<usize>::new());
}

/// A filter cut short passes every frame rather than failing.
#[test]
fn a_malformed_filter_passes_everything() {
    // A word and a number: every section is probed.
    let probe = TermProbe::new(b"ERROR \" 503 ");
    for filter in [
        &[][..],
        &[9u8][..],
        &[0, 0, 0, 0, 1, 0, 0][..],
        &[1, 0, 0, 0, 0][..],
        // A number section cut short, too large, or of the wrong length.
        &[0, 0, 0, 0, 0, 0, 0, 0, 1][..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0, 0][..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0][..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0][..],
        // A prefix section cut short, or bytes after it.
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7][..],
    ] {
        let mut mask = Vec::new();
        all_frames(3, &mut mask);
        probe.narrow_frames(filter, 3, &mut mask);
        assert_eq!(mask, vec![0b111]);
    }
}

/// The areas of `rows`, as (where, how long) in memory: two `Rows` cut
/// the same filter the same way when these are equal.
fn areas(rows: &Rows<'_>) -> Vec<(usize, usize)> {
    [rows.trigrams, rows.grams, rows.numbers, rows.prefixes]
        .iter()
        .map(|area| (area.as_ptr() as usize, area.len()))
        .collect()
}

/// Cutting a filter by the counts its parse found (what a shared segment
/// keeps per block) gives the parse's rows, with and without the optional
/// sections; counts of another filter, or of a filter of other frames, do
/// not fit and pass every frame rather than misreading the rows.
#[test]
fn counts_kept_from_a_parse_cut_the_filter_as_the_parse_does() {
    let frames: Vec<Vec<String>> = (0..10)
        .map(|f| vec![format!("status={} msg=done id={}", 200 + f, id(f))])
        .collect();
    let full = encoded(&frames);
    let rows = Rows::parse(&full, 10).unwrap();
    assert!(rows.number_rows.is_some() && rows.prefix_rows.is_some());
    let without_prefixes = full[..full.len() - 4 - rows.prefixes.len()].to_vec();
    let without_numbers =
        full[..full.len() - 8 - rows.prefixes.len() - rows.numbers.len()].to_vec();
    let mut all_counts = Vec::new();
    for filter in [&full, &without_prefixes, &without_numbers] {
        let parsed = Rows::parse(filter, 10).unwrap();
        let cut = Rows::with_counts(filter, 10, parsed.counts()).unwrap();
        assert_eq!(areas(&cut), areas(&parsed));
        assert_eq!(cut.counts(), parsed.counts());
        all_counts.push(parsed.counts());
    }
    assert!(Rows::with_counts(&without_prefixes, 10, all_counts[0]).is_none());
    assert!(Rows::with_counts(&full, 10, all_counts[2]).is_none());
    assert!(Rows::with_counts(&full, 11, all_counts[0]).is_none());
}

/// Frames (as many as `count` says) of 1 to 5 payloads each: random
/// bytes, or bytes of a few letters, digits and punctuation.
fn frames_of_payloads(
    count: std::ops::Range<usize>,
) -> impl proptest::strategy::Strategy<Value = Vec<Vec<Vec<u8>>>> {
    proptest::collection::vec(
        proptest::collection::vec(super::super::tests::payload(b"ab05 E=\"x.", 64), 1..6),
        count,
    )
}

proptest::proptest! {
    #[test]
    fn a_contained_literal_keeps_its_frame(
        frames in frames_of_payloads(1..80),
        pick in proptest::prelude::any::<proptest::sample::Index>(),
        line in proptest::prelude::any::<proptest::sample::Index>(),
        start in proptest::prelude::any::<proptest::sample::Index>(),
        len in 0usize..40,
    ) {
        let filter = encoded(&frames);
        let f = pick.index(frames.len());
        let p = &frames[f][line.index(frames[f].len())];
        let from = start.index(p.len() + 1);
        let literal = &p[from..(from + len).min(p.len())];
        proptest::prop_assert!(
            passing(&filter, frames.len(), literal).contains(&f),
            "frame {} lost {:?}", f, literal
        );
    }

    #[test]
    fn kept_counts_cut_any_filter_as_its_parse(
        frames in frames_of_payloads(1..150),
    ) {
        let filter = encoded(&frames);
        let parsed = Rows::parse(&filter, frames.len()).expect("a well-formed filter");
        let cut = Rows::with_counts(&filter, frames.len(), parsed.counts()).expect("fits");
        proptest::prop_assert_eq!(areas(&cut), areas(&parsed));
    }
}
