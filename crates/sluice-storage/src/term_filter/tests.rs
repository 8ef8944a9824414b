use super::*;
use proptest::prelude::*;

/// A payload of fewer than `max` bytes: any bytes, or only bytes of
/// `alphabet`, which repeat grams and tie hashes as log lines do.
pub(super) fn payload(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max),
        proptest::collection::vec(prop::sample::select(alphabet), 0..max),
    ]
}

#[test]
fn distinct_keys_are_counted_within_a_few_percent() {
    let mut bitmap = Vec::new();
    assert_eq!(distinct_estimate(&[], &mut bitmap), 0);
    assert_eq!(distinct_estimate(&[9], &mut bitmap), 1);
    assert_eq!(distinct_estimate(&[9, 9, 9, 9], &mut bitmap), 1);
    for distinct in [10u64, 1_000, 80_000] {
        // Each key twice or more, as the chosen grams of a block are.
        let keys: Vec<u64> = (0..distinct * 5 / 2)
            .map(|i| gram_hash(&(i % distinct).to_le_bytes()))
            .collect();
        let estimate = distinct_estimate(&keys, &mut bitmap) as f64;
        let error = (estimate - distinct as f64).abs() / distinct as f64;
        assert!(
            error < 0.05,
            "{distinct} distinct keys estimated as {estimate}"
        );
    }
}

/// Ids from a simple generator: every hex trigram occurs, so only the
/// 8-grams can tell the frames apart.
pub(super) fn hex_id(i: u64) -> String {
    format!(
        "{:032x}",
        (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001
    )
}

#[test]
fn a_32_character_id_always_has_four_winnowed_keys() {
    for i in 0..2000 {
        let probe = TermProbe::new(hex_id(i).as_bytes());
        assert!(
            probe.winnowed.len() >= 4,
            "{} has {:?}",
            hex_id(i),
            probe.winnowed
        );
    }
}

#[test]
fn only_8_grams_of_id_bytes_are_keys() {
    // No 8-gram of id bytes: a time, an address, words with spaces.
    for literal in [
        "03/Dec/2026:08:26:01 +0000",
        "127.100.200.250:8080",
        "ab cd ef gh ij kl mn",
    ] {
        assert!(
            TermProbe::new(literal.as_bytes()).winnowed.is_empty(),
            "{literal}"
        );
    }
    // A UUID's last group and a request id have some; every key is the
    // hash of one of their 8-grams of id bytes.
    for literal in [
        "63174106-7a80-489f-acf9-1dab21c8c800",
        "request_id=0a674b2f0549a05d",
    ] {
        let probe = TermProbe::new(literal.as_bytes());
        let id_grams: Vec<u64> = literal
            .as_bytes()
            .windows(GRAM)
            .filter(|g| g.iter().all(|&b| ID_BYTE[b as usize] == 1))
            .map(gram_hash)
            .collect();
        assert!(!probe.winnowed.is_empty(), "{literal}");
        assert!(
            probe.winnowed.iter().all(|k| id_grams.contains(k)),
            "{literal}"
        );
    }
}

/// Each window's minimum, the obvious way: of the 8-grams of id bytes in
/// the window, none when it has none.
fn window_minima(bytes: &[u8]) -> Vec<u64> {
    let hashes: Vec<Option<u64>> = bytes
        .windows(GRAM)
        .map(|g| {
            g.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                .then(|| gram_hash(g))
        })
        .collect();
    let mut minima: Vec<u64> = hashes
        .windows(WINDOW)
        .filter_map(|w| w.iter().flatten().min().copied())
        .collect();
    minima.dedup();
    minima
}

proptest! {
    /// The rolling scan finds exactly the trigrams with no digit that are
    /// not three hex letters.
    #[test]
    fn word_trigrams_are_those_without_digits_or_only_hex(
        bytes in proptest::collection::vec(prop::sample::select(b"09afAFgz .=\n".to_vec()), 0..40),
    ) {
        let mut got = Vec::new();
        for_each_word_trigram(&bytes, |key| got.push(key));
        let hex = |b: u8| b.is_ascii_hexdigit() && !b.is_ascii_digit();
        let want: Vec<u32> = bytes
            .windows(3)
            .filter(|w| !w.iter().any(u8::is_ascii_digit) && !w.iter().all(|&b| hex(b)))
            .map(|w| (w[0] as u32) << 16 | (w[1] as u32) << 8 | w[2] as u32)
            .collect();
        prop_assert_eq!(got, want);
    }

    /// The keys appended for a run of payloads are exactly their
    /// windows' minima, for every length around the window, with
    /// repeated grams (ties) as log lines have: scratch space is
    /// reused, and a key is skipped only if appended before.
    #[test]
    fn winnowing_picks_each_windows_minimum(
        texts in proptest::collection::vec(
            payload(b"ab -", 80),
            1..4,
        ),
    ) {
        // Whichever code the CPU runs, and the portable code.
        let mut scratch = Winnowing::default();
        let mut portable_scratch = Winnowing::default();
        let mut got = Vec::new();
        let mut portable = Vec::new();
        let mut want = Vec::new();
        for text in &texts {
            winnow(text, &mut scratch, &mut got);
            winnow_portable(text, &mut portable_scratch, &mut portable);
            want.extend(window_minima(text));
        }
        for keys in [&mut got, &mut portable, &mut want] {
            keys.sort_unstable();
            keys.dedup();
        }
        prop_assert_eq!(&got, &want, "{:?}", texts);
        prop_assert_eq!(&portable, &want, "{:?}", texts);
    }
}

#[test]
fn short_numbers_need_a_separator_on_each_side() {
    let numbers = |bytes: &[u8], edges| {
        let mut out = Vec::new();
        for_each_short_number(bytes, edges, |key| {
            let [_, _, _, before, d1, d2, d3, after] = key.to_be_bytes();
            let shown = |b: u8| if b == 0 { '|' } else { b as char };
            let digits: String = [d1, d2, d3]
                .iter()
                .filter(|&&b| b != 0)
                .map(|&b| b as char)
                .collect();
            out.push(format!("{}{digits}{}", shown(before), shown(after)));
        });
        out
    };
    let line = b"10.0.3.17 - - [21/Nov/2026:06:00:07 +0000] \"GET /a/503 HTTP/1.1\" 503 0 rt=1.5 n=1234 \"k\":42";
    assert_eq!(
        numbers(line, true),
        [":06:", ":00:", ":07 ", " 503 ", " 0 ", ":42|"],
        "not parts of addresses, paths, dates, decimals, nor long numbers"
    );
    assert_eq!(numbers(b"7 x 8", true), ["|7 ", " 8|"]);
    // A literal's edges are not separators: its first and last runs may
    // continue in a payload.
    assert_eq!(numbers(b"7 x 8", false), Vec::<String>::new());
    assert_eq!(numbers(b"\" 503 ", false), [" 503 "]);
    // Leading zeros count.
    let mut keys = std::collections::HashSet::new();
    for_each_short_number(b" 5 05 005 ", false, |key| {
        keys.insert(key);
    });
    assert_eq!(keys.len(), 3);
}

/// A prefix key as text: its context, then its three digits (exact), its
/// first digit and `x` (first-digit) or `+` (long).
fn shown_prefix(key: u64) -> String {
    let [tag, b4, b3, b2, b1, d1, d2, d3] = key.to_be_bytes();
    let tag = (tag as u64) << 56;
    let two_bytes = tag == EXACT_TAG || tag == FIRST_DIGIT_TAGS[0] || tag == LONG_TAGS[0];
    let context = match two_bytes {
        true => vec![b2, b1],
        false => vec![b4, b3, b2, b1],
    };
    let digits = if tag == EXACT_TAG {
        vec![d1, d2, d3]
    } else {
        assert_eq!([d1, d2], [0, 0]);
        let mark = match FIRST_DIGIT_TAGS.contains(&tag) {
            true => b'x',
            false => {
                assert!(LONG_TAGS.contains(&tag), "tag {tag:#x}");
                b'+'
            }
        };
        vec![d3, mark]
    };
    String::from_utf8([context, digits].concat()).unwrap()
}

#[test]
fn number_prefixes_are_runs_of_three_digits_or_more_in_context() {
    let prefixes = |bytes: &[u8]| {
        let mut out = Vec::new();
        for_each_number_key(bytes, true, |_| {}, |key| out.push(shown_prefix(key)));
        out
    };
    let line = b"10.0.3.17 [21/Nov/2026:06:00:07] \"GET /a/503 HTTP/1.1\" 503 10245 rt=1.5 status=5031 n=12 \"k\":423";
    assert_eq!(
        prefixes(line),
        ["\" 503", "\" 5x", ".1\" 5x", "503 1+", "tus=5+", "\"k\":4x"],
        "runs of three digits or more after a separator, not parts of addresses or paths; \
         the two-byte context only after a space that follows no letter or digit"
    );
    // The context must lie in the payload.
    assert_eq!(prefixes(b"503 x"), Vec::<String>::new());
    assert_eq!(prefixes(b"ab 503 x"), Vec::<String>::new());
    assert_eq!(prefixes(b"a] 503 x"), ["] 503", "] 5x"]);
    // Three digits and a hex letter are an id's start; and a `.`, a
    // decimal's whole part.
    assert_eq!(prefixes(b"x id=503e1"), [" id=5+"]);
    assert_eq!(prefixes(b"x ms=503.25"), [" ms=5+"]);
    // A prefix's key is apart from every short number's.
    let (mut numbers, mut keys) = (Vec::new(), Vec::new());
    for_each_number_key(b"a] 503 ", true, |k| numbers.push(k), |k| keys.push(k));
    assert!(!keys.is_empty() && numbers.iter().all(|n| !keys.contains(n)));
}

#[test]
fn a_literal_probes_the_prefixes_any_payload_holding_it_has() {
    let probed = |literal: &[u8]| {
        let (mut and, mut open) = (Vec::new(), Vec::new());
        for_each_literal_prefix(
            literal,
            |key| and.push(shown_prefix(key)),
            |exact, long| open.push(format!("{} or {}", shown_prefix(exact), shown_prefix(long))),
        );
        (and, open)
    };
    let none = Vec::<String>::new;
    let texts = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    // A run of four digits or more is long in any payload.
    assert_eq!(probed(b"status=5031"), (texts(&["tus=5+"]), none()));
    // Three digits that end the literal may go on.
    assert_eq!(
        probed(b"status=503"),
        (none(), texts(&["tus=5x or tus=5+"]))
    );
    assert_eq!(probed(b"status=503 "), (texts(&["tus=5x"]), none()));
    assert_eq!(probed(b"\" 503 "), (texts(&["\" 503", "\" 5x"]), none()));
    assert_eq!(
        probed(b"\" 503"),
        (none(), texts(&["\" 503 or \" 5+", "\" 5x or \" 5+"]))
    );
    assert_eq!(probed(b"x id=503a"), (texts(&[" id=5+"]), none()));
    // Too little context, too few digits, or no separator before.
    for literal in [&b"=503"[..], b"tus=50", b"status=x503", b"503", b"s=503"] {
        assert_eq!(probed(literal), (none(), none()), "{literal:?}");
    }
}

/// The short numbers and the number prefixes of `bytes`, found one byte
/// at a time.
fn number_keys_byte_by_byte(bytes: &[u8], edges_separate: bool) -> (Vec<u64>, Vec<u64>) {
    let (mut out, mut prefixes) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let edge = |b: Option<&u8>| match b {
            Some(&b) => is_separator(b).then_some(b),
            None => edges_separate.then_some(0),
        };
        let before = edge(start.checked_sub(1).and_then(|b| bytes.get(b)));
        let after = edge(bytes.get(i));
        if let (Some(before), Some(after)) = (before, after)
            && i - start <= 3
        {
            let digits = bytes[start..i].iter().fold(0u64, |k, &d| k << 8 | d as u64);
            out.push((before as u64) << 32 | digits << 8 | after as u64);
        }
        for kind in 0..2 {
            let context = [2, 4][kind];
            if before.is_none() || i - start < 3 || start < context {
                break;
            }
            let (far, near) = (bytes[start - 2], bytes[start - 1]);
            if context == 2 && (!(near == b' ' || near == b'\t') || far.is_ascii_alphanumeric()) {
                continue;
            }
            // Nearest byte lowest.
            let mut key = 0;
            for back in 1..=context {
                key |= (bytes[start - back] as u64) << (24 + 8 * (back - 1));
            }
            let hex_after = bytes.get(i).is_some_and(|b| b"abcdefABCDEF.".contains(b));
            let first = bytes[start] as u64;
            if i - start == 3 && !hex_after {
                let digits = bytes[start..i].iter().fold(0u64, |k, &d| k << 8 | d as u64);
                if kind == 0 {
                    prefixes.push(EXACT_TAG | key | digits);
                }
                prefixes.push(FIRST_DIGIT_TAGS[kind] | key | first);
            } else {
                prefixes.push(LONG_TAGS[kind] | key | first);
            }
        }
    }
    (out, prefixes)
}

#[test]
fn digit_bytes_are_found_eight_at_a_time() {
    for b in 0..=255u8 {
        let chunk = u64::from_le_bytes([b'x', b, 0xFF, b'0', b'9', b'/', b':', 0x80]);
        let want = (b.is_ascii_digit() as u64) << 15 | 0x80 << 24 | 0x80 << 32;
        assert_eq!(digit_bytes(chunk), want, "byte {b:#x}");
    }
}

proptest! {
    #[test]
    fn short_numbers_are_found_as_byte_by_byte(
        bytes in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(b"0123456789 =:\".x/\0".to_vec()),
                any::<u8>(),
            ],
            0..40,
        ),
        edges_separate in any::<bool>(),
    ) {
        let (mut found, mut prefixes) = (Vec::new(), Vec::new());
        for_each_number_key(
            &bytes,
            edges_separate,
            |key| found.push(key),
            |key| prefixes.push(key),
        );
        prop_assert_eq!((found, prefixes), number_keys_byte_by_byte(&bytes, edges_separate));
    }
}
