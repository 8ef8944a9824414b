//! Refused frames and what they cost: error messages, limits, memory.

use super::*;

fn err_of(frame: &[u8], limits: &Limits) -> String {
    decode_frame(frame, limits, &mut Scratch::new(), |_| {})
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_say_what_is_wrong() {
    let l = Limits::default();
    assert_eq!(
        err_of(&W::default().arr(2).s("t").map(0).0, &l),
        "unknown event mode: second element is a map"
    );
    assert_eq!(
        err_of(&W::default().arr(3).raw(&[1]).u32(T).map(0).0, &l),
        "tag is not a string (got a int)"
    );
    assert_eq!(
        err_of(&W::default().arr(3).raw(&[0xa1, 0xff]).u32(T).map(0).0, &l),
        "tag is not valid utf-8"
    );
    assert_eq!(
        err_of(&[0x01], &l),
        "frame is a int, expected an array (or nil for a heartbeat)"
    );
    assert_eq!(
        err_of(b"[", &l),
        "frame starts with '[' or '{': JSON forward frames are not supported, send msgpack"
    );
    assert_eq!(
        err_of(&W::default().arr(2).s("t").u32(T).0, &l),
        "Message frame has 2 elements, expected 3 or 4"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").u32(T).s("x").0, &l),
        "record is a str, expected a map"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").s("x").map(0).0, &l),
        "entry is a int, expected [time, record]"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").bin8(&[0x92, 0x01]).map(0).0, &l),
        "msgpack value truncated at offset 2 of the packed entries"
    );
    assert_eq!(
        err_of(
            &W::default().arr(2).s("t").arr(1).arr(2).s("now").map(0).0,
            &l
        ),
        "event time is a str, expected EventTime (ext 0), an integer or a float"
    );
    assert_eq!(
        err_of(
            &W::default()
                .arr(3)
                .s("t")
                .bin8(b"")
                .map(1)
                .s("compressed")
                .s("zstd")
                .0,
            &l
        ),
        "unsupported compression \"zstd\": only \"gzip\" (and \"text\") are supported"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").bin8(b"").s("x").0, &l),
        "options is a str, expected a map or nil"
    );
    assert_eq!(
        err_of(&[0xc0, 0xc0], &l),
        "1 trailing bytes after the frame's value"
    );
    let few = Limits {
        max_entries_per_frame: 1,
        ..l
    };
    let two = W::default()
        .arr(2)
        .s("t")
        .arr(2)
        .arr(2)
        .raw(&[1])
        .map(0)
        .arr(2)
        .raw(&[1])
        .map(0)
        .0;
    assert!(
        err_of(&two, &few)
            .starts_with("frame carries at least 2 entries, more than the limit of 1")
    );
    let packed_two = W::default()
        .arr(2)
        .s("t")
        .bin8(
            &W::default()
                .arr(2)
                .raw(&[1])
                .map(0)
                .arr(2)
                .raw(&[1])
                .map(0)
                .0,
        )
        .0;
    assert!(err_of(&packed_two, &few).starts_with("frame carries at least 2 entries"));
    let shallow = Limits { max_depth: 5, ..l };
    let deep = W::default()
        .arr(3)
        .s("t")
        .u32(T)
        .map(1)
        .s("a")
        .map(1)
        .s("b")
        .map(1)
        .s("c")
        .map(1)
        .s("d")
        .map(0)
        .0;
    assert_eq!(
        err_of(&deep, &shallow),
        "map or array nesting deeper than 5 levels (--fluent-max-depth)"
    );
    assert_eq!(
        frame_len(&deep, &shallow),
        Err(FluentError::TooDeep { limit: 5 })
    );
    let signal = W::default()
        .arr(3)
        .s("t")
        .bin8(b"")
        .map(1)
        .s("fluent_signal")
        .raw(&[1])
        .0;
    assert!(
        err_of(&signal, &l).starts_with("fluent_signal 1 (metrics or traces) is not supported")
    );
}

#[test]
fn gzip_bomb_is_refused_quickly_with_bounded_memory() {
    let bomb = gzip(&vec![b'a'; 32 << 20]);
    let frame = W::default()
        .arr(3)
        .s("t")
        .bin32(&bomb)
        .map(1)
        .s("compressed")
        .s("gzip")
        .0;
    let limits = Limits {
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut scratch = Scratch::new();
    let start = std::time::Instant::now();
    let err = decode_frame(&frame, &limits, &mut scratch, |_| panic!("no events")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "decompressed chunk exceeds 1048576 bytes (possible gzip bomb); \
         raise --fluent-max-decompressed if the sender is trusted"
    );
    assert!(
        scratch.capacity() <= (1 << 20) + (128 << 10),
        "{}",
        scratch.capacity()
    );
    eprintln!(
        "a {}-byte bomb refused in {:?}",
        bomb.len(),
        start.elapsed()
    );
    scratch.trim(64 << 10);
    assert_eq!(scratch.capacity(), 0);
}

#[test]
fn scratch_is_reused_across_frames() {
    let frame = W::default().arr(3).s("t").u32(T).map(1).s("k").s("value").0;
    let mut scratch = Scratch::new();
    decode_frame(&frame, &Limits::default(), &mut scratch, |_| {}).unwrap();
    let cap = scratch.capacity();
    for _ in 0..100 {
        decode_frame(&frame, &Limits::default(), &mut scratch, |_| {}).unwrap();
    }
    assert_eq!(scratch.capacity(), cap);
}
