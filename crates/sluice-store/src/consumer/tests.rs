//! The consumer's checks of what it takes, and its sort.

use super::{files::verify_and_sort, *};
use sluice_storage::{Fs, MemFs, SegmentWriter};
use std::path::Path;

/// A batch of one record, built by hand: the encoder refuses (in debug
/// builds) the newline this test needs.
fn one_record_batch(id: Ulid, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&id.0.to_be_bytes());
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    body.push(b't');
    body.extend_from_slice(payload);
    let mut batch = b"SLB1".to_vec();
    batch.extend_from_slice(&(body.len() as u32).to_le_bytes());
    batch.extend_from_slice(&1u32.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&batch[4..12]);
    crc.update(&body);
    batch.extend_from_slice(&crc.finalize().to_le_bytes());
    batch.extend_from_slice(&body);
    batch
}

/// A downloaded segment whose record holds a newline is refused where
/// it crosses into the store, naming the record; a good one passes.
#[test]
fn a_payload_with_a_newline_is_refused_at_verify() {
    let fs = MemFs::new();
    Fs::create_dir_all(&fs, Path::new("/d")).unwrap();
    let id = Ulid::from_parts(1_000, 7);
    for (name, payload, refused) in [
        ("good", &b"one line"[..], false),
        ("bad", &b"two\nlines"[..], true),
    ] {
        let path = Path::new("/d").join(name);
        let mut writer = SegmentWriter::create(&fs, &path).unwrap();
        writer
            .append(&one_record_batch(id, payload), 1, id, id)
            .unwrap();
        drop(writer);
        match verify_and_sort(&fs, &path) {
            Ok(range) => {
                assert!(!refused, "{name}: accepted");
                assert_eq!(range, (id, id, 1));
            }
            Err(err) => {
                assert!(refused, "{name}: {err}");
                assert!(
                    matches!(err, ConsumeError::NewlineInPayload { id: got, .. } if got == id),
                    "{err}"
                );
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// A download whose records are out of id order (an HTTP push's
    /// shared lane) is rewritten sorted: the same records, each whole,
    /// in id order, whatever the batches.
    #[test]
    fn an_unsorted_download_is_rewritten_sorted(
        records in proptest::collection::vec(
            (0u64..50, 0u64..1_000_000, "[a-z]{1,8}", "[ -~]{0,40}"),
            1..200,
        ),
        batch_size in 1usize..50,
    ) {
        let fs = MemFs::new();
        Fs::create_dir_all(&fs, Path::new("/d")).unwrap();
        let path = Path::new("/d/seg");
        let mut want = Vec::new();
        let mut writer = SegmentWriter::create(&fs, path).unwrap();
        for (i, chunk) in records.chunks(batch_size).enumerate() {
            let mut encoder = sluice_record::BatchEncoder::new();
            encoder.begin();
            let (mut first, mut last) = (Ulid(u128::MAX), Ulid(0));
            for (j, (ms, random, topic, payload)) in chunk.iter().enumerate() {
                // Unique ids, in no order.
                let id = Ulid::from_parts(*ms, u128::from(*random) << 16 | (i * 64 + j) as u128);
                first = first.min(id);
                last = last.max(id);
                encoder.push(sluice_record::Record {
                    id,
                    flags: 0,
                    topic: topic.as_bytes(),
                    payload: payload.as_bytes(),
                });
                want.push((id, topic.clone(), payload.clone()));
            }
            writer.append(encoder.finish(), chunk.len() as u32, first, last).unwrap();
        }
        drop(writer);
        let (min, max, count) = verify_and_sort(&fs, path).unwrap();
        want.sort();
        proptest::prop_assert_eq!((min, max, count), (want[0].0, want[want.len() - 1].0, want.len() as u64));
        let mut got = Vec::new();
        let mut scanner = sluice_storage::SegmentScanner::open(&fs, path).unwrap();
        while let Some((header, body)) = scanner.next_batch().unwrap() {
            for record in sluice_record::RecordIter::new(body, header.count) {
                let record = record.unwrap();
                got.push((
                    record.id,
                    String::from_utf8(record.topic.to_vec()).unwrap(),
                    String::from_utf8(record.payload.to_vec()).unwrap(),
                ));
            }
        }
        proptest::prop_assert_eq!(got, want);
    }
}
