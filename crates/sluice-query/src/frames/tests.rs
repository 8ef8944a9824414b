use super::*;
use proptest::prelude::*;
use sluice_record::OwnedRecord;

/// A frame as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
enum Model {
    Records(Vec<OwnedRecord>),
    Progress(Ulid),
    Stats(Map<String, Value>),
    Error(String),
    Lagged(u64),
}

impl From<Frame> for Model {
    fn from(frame: Frame) -> Model {
        match frame {
            Frame::Records(r) => Model::Records(r.iter().map(|r| r.to_owned_record()).collect()),
            Frame::Progress(id) => Model::Progress(id),
            Frame::Stats(s) => Model::Stats(s),
            Frame::Error(e) => Model::Error(e),
            Frame::Lagged(n) => Model::Lagged(n),
        }
    }
}

fn arb_record() -> impl Strategy<Value = OwnedRecord> {
    (
        any::<u128>(),
        any::<u8>(),
        proptest::collection::vec(33u8..127, 1..300),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(id, flags, mut topic, payload)| {
            topic.truncate(if id % 7 == 0 { 255 } else { 12 });
            OwnedRecord {
                id: Ulid(id),
                flags,
                topic,
                payload,
            }
        })
}

fn arb_stats() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(
        "[a-z_]{1,12}",
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            ".{0,10}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn arb_body_frame() -> impl Strategy<Value = Model> {
    prop_oneof![
        proptest::collection::vec(arb_record(), 0..6).prop_map(Model::Records),
        any::<u128>().prop_map(|id| Model::Progress(Ulid(id))),
        any::<u64>().prop_map(Model::Lagged),
    ]
}

fn arb_last_frame() -> impl Strategy<Value = Model> {
    prop_oneof![
        arb_stats().prop_map(Model::Stats),
        ".{0,40}".prop_map(Model::Error),
    ]
}

fn arb_stream() -> impl Strategy<Value = Vec<Model>> {
    (
        proptest::collection::vec(arb_body_frame(), 0..8),
        arb_last_frame(),
    )
        .prop_map(|(mut frames, last)| {
            frames.push(last);
            frames
        })
}

fn encode(frames: &[Model]) -> Vec<u8> {
    // A target no frame reaches: one records frame per model frame.
    let mut w = FrameWriter::with_target(MAX_FRAME_PAYLOAD);
    let mut out = Vec::new();
    for frame in frames {
        match frame {
            Model::Records(records) => {
                for r in records {
                    assert_eq!(w.push(&r.as_record()), Ok(None));
                }
                if records.is_empty() {
                    let mut b = BytesMut::new();
                    put_frame(&mut b, KIND_RECORDS, &[]);
                    out.extend_from_slice(&b);
                } else {
                    out.extend_from_slice(&w.flush().unwrap());
                }
            }
            Model::Progress(id) => out.extend_from_slice(&w.progress(*id)),
            Model::Stats(s) => out.extend_from_slice(&w.stats(s).unwrap()),
            Model::Error(e) => out.extend_from_slice(&w.error(e)),
            Model::Lagged(n) => out.extend_from_slice(&w.lagged(*n)),
        }
    }
    out
}

/// Decode `bytes` pushed in chunks of the given sizes (cycled), then
/// finish: the frames, and the error if any.
fn decode(bytes: &[u8], chunks: &[usize]) -> (Vec<Model>, Option<FrameError>) {
    let mut d = FrameDecoder::new();
    let mut got = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().cycle();
    fn drain(d: &mut FrameDecoder, got: &mut Vec<Model>) -> Option<FrameError> {
        loop {
            match d.next_frame() {
                Ok(Some(f)) => got.push(Model::from(f)),
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
        if let Some(e) = drain(&mut d, &mut got) {
            return (got, Some(e));
        }
    }
    d.finish();
    let err = drain(&mut d, &mut got);
    (got, err)
}

proptest! {
    #[test]
    fn any_stream_round_trips_whatever_the_chunking(
        frames in arb_stream(),
        chunks in proptest::collection::vec(1usize..200, 1..8),
    ) {
        let bytes = encode(&frames);
        let (got, err) = decode(&bytes, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn a_flipped_byte_is_detected(
        frames in arb_stream(),
        at in any::<proptest::sample::Index>(),
        xor in 1u8..=255,
        chunks in proptest::collection::vec(1usize..200, 1..4),
    ) {
        let mut bytes = encode(&frames);
        let at = at.index(bytes.len());
        bytes[at] ^= xor;
        let (_, err) = decode(&bytes, &chunks);
        prop_assert!(err.is_some(), "flip at {} of {} went unnoticed", at, bytes.len());
    }

    #[test]
    fn a_truncated_stream_is_reported(
        frames in arb_stream(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let bytes = encode(&frames);
        let cut = cut.index(bytes.len());
        let (got, err) = decode(&bytes[..cut], &[64]);
        let err = err.expect("a cut stream is an error");
        prop_assert!(
            matches!(err, FrameError::EndedInsideFrame { .. } | FrameError::EndedWithoutStats { .. }),
            "{err:?}"
        );
        // Every frame wholly before the cut came out.
        prop_assert_eq!(&got[..], &frames[..got.len()]);
        prop_assert!(err.to_string().starts_with("stream ended"));
    }

    #[test]
    fn the_writer_splits_at_its_target_and_keeps_every_record(
        records in proptest::collection::vec(arb_record(), 0..60),
        target in 1usize..2000,
    ) {
        let mut w = FrameWriter::with_target(target);
        let mut out = Vec::new();
        for r in &records {
            if let Some(b) = w.push(&r.as_record()).unwrap() {
                out.extend_from_slice(&b);
            }
        }
        out.extend_from_slice(&w.stats(&Map::new()).unwrap());
        let (got, err) = decode(&out, &[4096]);
        prop_assert_eq!(err, None);
        let mut decoded = Vec::new();
        for frame in &got[..got.len() - 1] {
            let Model::Records(rs) = frame else { panic!("{frame:?}") };
            let bytes: usize = rs.iter().map(|r| FRAME_RECORD_OVERHEAD + r.topic.len() + r.payload.len()).sum();
            let last = rs.last().unwrap();
            // A frame stops at the first record that takes it to the target.
            prop_assert!(bytes - (FRAME_RECORD_OVERHEAD + last.topic.len() + last.payload.len()) < target);
            decoded.extend(rs.iter().cloned());
        }
        prop_assert_eq!(decoded, records);
        prop_assert_eq!(&got[got.len() - 1], &Model::Stats(Map::new()));
    }
}

fn record(id: u128, topic: &'static [u8], payload: &'static [u8]) -> Record<'static> {
    Record {
        id: Ulid(id),
        flags: 0,
        topic,
        payload,
    }
}

#[test]
fn a_header_over_the_limit_is_refused_before_its_payload_arrives() {
    let mut d = FrameDecoder::new();
    let mut header = vec![KIND_RECORDS];
    header.extend_from_slice(&(MAX_FRAME_PAYLOAD as u32 + 1).to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    d.push(&header);
    let err = d.next_frame().unwrap_err();
    assert_eq!(
        err,
        FrameError::TooLarge {
            len: MAX_FRAME_PAYLOAD as u32 + 1,
            limit: MAX_FRAME_PAYLOAD,
            offset: 0
        }
    );
    // The decoder stays failed.
    d.push(b"more");
    assert_eq!(d.next_frame().unwrap_err(), err);
}

#[test]
fn errors_name_the_frame_and_what_is_wrong() {
    let mut stream = BytesMut::new();
    encode_progress(&mut stream, Ulid(7));
    let progress_len = stream.len() as u64;
    encode_error(&mut stream, "disk on fire");
    let mut bad = stream.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let (got, err) = decode(&bad, &[3]);
    assert_eq!(got, [Model::Progress(Ulid(7))]);
    let err = err.unwrap();
    assert!(matches!(err, FrameError::Checksum { offset, .. } if offset == progress_len));
    assert!(
        err.to_string().starts_with(&format!(
            "frame checksum mismatch at stream offset {progress_len}: stored 0x"
        )),
        "{err}"
    );

    let (_, err) = decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0], &[9]);
    assert_eq!(
        err.unwrap().to_string(),
        "bad frame kind 9 at stream offset 0 (expected 1 to 5)"
    );

    // A progress frame of the wrong size, correctly checksummed.
    let mut b = BytesMut::new();
    put_frame(&mut b, KIND_PROGRESS, &[1, 2, 3]);
    let (_, err) = decode(&b, &[100]);
    assert_eq!(err, Some(FrameError::BadProgress { offset: 0, len: 3 }));

    // Stats that are not an object.
    let mut b = BytesMut::new();
    put_frame(&mut b, KIND_STATS, b"[1]");
    let (_, err) = decode(&b, &[100]);
    assert!(
        matches!(err, Some(FrameError::BadStats { offset: 0, .. })),
        "{err:?}"
    );

    // A records payload that stops inside a record.
    let mut b = BytesMut::new();
    put_frame(&mut b, KIND_RECORDS, &[0; 10]);
    let (_, err) = decode(&b, &[100]);
    assert_eq!(
        err.unwrap().to_string(),
        "malformed records frame at stream offset 0: record header runs past the payload at payload offset 0"
    );

    // Bytes after the stats frame.
    let mut b = BytesMut::new();
    encode_stats(&mut b, &Map::new()).unwrap();
    let end = b.len() as u64;
    encode_progress(&mut b, Ulid(1));
    let (got, err) = decode(&b, &[100]);
    assert_eq!(got, [Model::Stats(Map::new())]);
    assert_eq!(err, Some(FrameError::AfterLast { offset: end }));

    // Frames, then the end without stats.
    let mut b = BytesMut::new();
    encode_progress(&mut b, Ulid(1));
    let (_, err) = decode(&b, &[100]);
    assert_eq!(
        err.unwrap().to_string(),
        format!("stream ended at offset {} without a stats frame", b.len())
    );
}

#[test]
fn records_frames_know_their_ids_and_order() {
    let frame = RecordsFrame::from_records([
        record(1, b"t", b"a"),
        record(5, b"topic", b""),
        record(9, b"t", b"ccc"),
    ])
    .unwrap();
    assert_eq!(frame.len(), 3);
    assert_eq!(frame.first_id(), Some(Ulid(1)));
    assert_eq!(frame.last_id(), Some(Ulid(9)));
    assert!(frame.is_strictly_increasing());
    let payloads: Vec<&[u8]> = frame.iter().map(|r| r.payload).collect();
    assert_eq!(payloads, [&b"a"[..], b"", b"ccc"]);
    let twice = RecordsFrame::from_records([record(3, b"t", b""), record(3, b"t", b"")]).unwrap();
    assert!(!twice.is_strictly_increasing());
    let empty = RecordsFrame::new(Bytes::new()).unwrap();
    assert!(empty.is_empty() && empty.first_id().is_none());
}

#[test]
fn records_that_cannot_be_framed_are_refused() {
    let mut w = FrameWriter::new();
    let big = vec![b'x'; MAX_FRAME_PAYLOAD];
    let r = Record {
        id: Ulid(4),
        flags: 0,
        topic: b"t",
        payload: &big,
    };
    assert_eq!(
        w.push(&r).unwrap_err().to_string(),
        "record 00000000000000000000000004 cannot be framed: larger than a frame"
    );
    assert!(w.push(&record(5, b"", b"")).is_err());
    assert!(!w.has_pending(), "a refused record leaves nothing behind");
    // The largest record that fits makes one frame of its own.
    let fits = vec![b'x'; MAX_FRAME_PAYLOAD - FRAME_RECORD_OVERHEAD - 1];
    w.push(&record(1, b"t", b"small")).unwrap();
    let out = w
        .push(&Record {
            id: Ulid(2),
            flags: 0,
            topic: b"t",
            payload: &fits,
        })
        .unwrap()
        .expect("the target is reached");
    let (got, err) = decode(&out, &[1 << 20]);
    assert!(matches!(err, Some(FrameError::EndedWithoutStats { .. })));
    assert_eq!(got.len(), 2, "the small record's frame was closed first");
}

#[test]
fn an_error_message_is_cut_to_a_frame_at_a_char_boundary() {
    let message = "é".repeat(MAX_FRAME_PAYLOAD / 2 + 1);
    let mut b = BytesMut::new();
    encode_error(&mut b, &message);
    let (got, err) = decode(&b, &[1 << 20]);
    assert_eq!(err, None);
    let [Model::Error(e)] = &got[..] else {
        panic!()
    };
    assert_eq!(e.len(), MAX_FRAME_PAYLOAD);
    assert!(message.starts_with(e.as_str()));
}

/// A frame of records smaller than the slack is written into the buffer
/// reserved when it opened: the buffer never grows (a copy, and past the
/// allocator's threshold a fresh mapping) while the frame fills.
#[test]
fn a_frame_is_written_without_growing_its_buffer() {
    let target = 200 << 10;
    let mut w = FrameWriter::with_target(target);
    let payload = vec![b'x'; 300];
    for frame in 0..3u128 {
        let mut opened_at = None;
        for i in 0u128.. {
            let record = Record {
                id: Ulid(frame << 64 | i),
                flags: 0,
                topic: b"app",
                payload: &payload,
            };
            let sent = w.push(&record).unwrap();
            if let Some(bytes) = sent {
                assert!(bytes.len() > target, "frame {frame} closed early");
                assert_eq!(Some(bytes.as_ptr()), opened_at, "frame {frame} moved");
                break;
            }
            let at = w.buf.as_ptr();
            let start = *opened_at.get_or_insert(at);
            assert_eq!(at, start, "frame {frame} grew at record {i}");
        }
    }
}
