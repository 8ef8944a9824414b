//! Property tests: random values in every encoding, split anywhere, and
//! random bytes.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;

/// A msgpack value model, with a flag choosing wide (non-minimal) encodings.
#[derive(Debug, Clone)]
enum Mv {
    Nil,
    Bool(bool),
    Int(i64),
    F64(f64),
    Str(String, bool),
    Bin(Vec<u8>),
    Arr(Vec<Mv>, bool),
    Map(Vec<(String, Mv)>, bool),
    Time(u32, u32),
}

fn mv() -> impl Strategy<Value = Mv> {
    let leaf = prop_oneof![
        Just(Mv::Nil),
        any::<bool>().prop_map(Mv::Bool),
        any::<i64>().prop_map(Mv::Int),
        any::<f64>().prop_map(Mv::F64),
        (".{0,40}", any::<bool>()).prop_map(|(s, w)| Mv::Str(s, w)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Mv::Bin),
        (any::<u32>(), 0u32..1_000_000_000).prop_map(|(s, n)| Mv::Time(s, n)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (
                proptest::collection::vec(inner.clone(), 0..6),
                any::<bool>()
            )
                .prop_map(|(v, w)| Mv::Arr(v, w)),
            (proptest::collection::vec(inner, 0..6), any::<bool>()).prop_map(|(v, w)| Mv::Map(
                v.into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("k{i}"), v))
                    .collect(),
                w
            )),
        ]
    })
}

fn enc(v: &Mv, out: &mut Vec<u8>) {
    match v {
        Mv::Nil => out.push(0xc0),
        Mv::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Mv::Int(i) => {
            rmp::encode::write_sint(out, *i).unwrap();
        }
        Mv::F64(f) => rmp::encode::write_f64(out, *f).unwrap(),
        Mv::Str(s, wide) => {
            if *wide {
                out.push(0xdb);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            } else {
                rmp::encode::write_str(out, s).unwrap();
            }
        }
        Mv::Bin(b) => rmp::encode::write_bin(out, b).unwrap(),
        Mv::Time(s, n) => out.extend_from_slice(&W::default().et(*s, *n).0),
        Mv::Arr(items, wide) => {
            if *wide {
                out.push(0xdd);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            } else {
                rmp::encode::write_array_len(out, items.len() as u32).unwrap();
            }
            items.iter().for_each(|i| enc(i, out));
        }
        Mv::Map(pairs, wide) => {
            if *wide {
                out.push(0xdf);
                out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
            } else {
                rmp::encode::write_map_len(out, pairs.len() as u32).unwrap();
            }
            for (k, v) in pairs {
                rmp::encode::write_str(out, k).unwrap();
                enc(v, out);
            }
        }
    }
}

/// What the record JSON should hold for a value.
fn expected(v: &Mv) -> Json {
    match v {
        Mv::Nil => Json::Null,
        Mv::Bool(b) => json!(b),
        Mv::Int(i) => json!(i),
        // Through serde_json's own float parser, as the decoded side is.
        Mv::F64(f) if f.is_finite() => serde_json::from_str(&format!("{f:?}")).unwrap(),
        Mv::F64(_) => Json::Null,
        Mv::Str(s, _) => json!(s),
        Mv::Bin(b) => json!(String::from_utf8_lossy(b)),
        Mv::Time(s, n) => serde_json::from_str(&format!("{s}.{n:09}")).unwrap(),
        Mv::Arr(items, _) => Json::Array(items.iter().map(expected).collect()),
        Mv::Map(pairs, _) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), expected(v)))
                .collect(),
        ),
    }
}

fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 4096,
        max_decompressed_bytes: 8192,
        max_entries_per_frame: 64,
        max_depth: 8,
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut scratch = Scratch::new();
        for limits in [Limits::default(), small_limits()] {
            let mut rest = &data[..];
            while let Ok(Some(n)) = frame_len(rest, &limits) {
                prop_assert!(n > 0 && n <= rest.len());
                let _ = decode_frame(&rest[..n], &limits, &mut scratch, |e| {
                    assert!(serde_json::from_slice::<Json>(e.payload).is_ok());
                });
                rest = &rest[n..];
            }
            let _ = decode_frame(&data, &limits, &mut scratch, |_| {});
        }
    }

    #[test]
    fn random_frames_split_anywhere_are_found_exactly(
        values in proptest::collection::vec(mv(), 1..6),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for v in &values {
            enc(v, &mut stream);
            ends.push(stream.len());
        }
        // Feed the stream in pieces cut at random points through one
        // resumable scanner, draining each frame it reports.
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let limits = Limits::default();
        let mut scanner = FrameScanner::new();
        let (mut start, mut found) = (0, Vec::new());
        for cut in cuts {
            while let Some(n) = scanner.scan(&stream[start..cut], &limits).unwrap() {
                start += n;
                found.push(start);
            }
        }
        prop_assert_eq!(&found, &ends);
        // And the stateless frame_len agrees on every frame and prefix.
        let mut begin = 0;
        for &end in &ends {
            prop_assert_eq!(frame_len(&stream[begin..], &limits), Ok(Some(end - begin)));
            let mid = begin + (end - begin) / 2;
            if mid > begin {
                prop_assert_eq!(frame_len(&stream[begin..mid], &limits), Ok(None));
            }
            begin = end;
        }
    }

    #[test]
    fn forward_frames_of_random_records_decode_to_the_same_json(
        records in proptest::collection::vec(proptest::collection::vec(mv(), 0..6), 0..5),
        times in proptest::collection::vec(1u32..u32::MAX, 5),
        wide in any::<bool>(),
    ) {
        let maps: Vec<Mv> = records
            .into_iter()
            .map(|v| Mv::Map(v.into_iter().enumerate().map(|(i, v)| (format!("f{i}"), v)).collect(), wide))
            .collect();
        let mut frame = W::default().arr(3).s("prop").0;
        rmp::encode::write_array_len(&mut frame, maps.len() as u32).unwrap();
        for (m, t) in maps.iter().zip(&times) {
            frame.extend_from_slice(&W::default().arr(2).et(*t, 0).0);
            enc(m, &mut frame);
        }
        frame.extend_from_slice(&W::default().map(1).s("chunk").s("c").0);
        let limits = Limits { max_depth: 16, ..Limits::default() };
        let (info, got) = decode_with(&frame, &limits).unwrap();
        prop_assert_eq!(info.events as usize, maps.len());
        for ((g, m), t) in got.iter().zip(&maps).zip(&times) {
            prop_assert_eq!(&g.record, &expected(m));
            prop_assert_eq!(g.time_ns, Some(i64::from(*t) * 1_000_000_000));
        }
    }
}
