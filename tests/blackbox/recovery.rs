use std::io::Write;

use sluice_record::{BatchEncoder, IdGenerator, Record, now_ms};

use crate::harness::*;

#[test]
fn after_kill_9_a_closed_durable_connection_has_every_line_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]);
    let input = numbered_lines(50_000, "durable");
    // The server closes its side only after everything it read is fsynced.
    send_and_wait_close(&node.durable, &input);
    node.kill9();
    node.restart();
    node.wait_records(50_000);
    assert_eq!(node.all_payloads(), lines_of(&input));
}

#[test]
fn kill_9_during_consumption_loses_nothing_and_shows_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &["--flush-age", "50ms"]);
    let mut all = Vec::new();
    for round in 0..3 {
        let input = numbered_lines(20_000, &format!("round{round}"));
        send_and_wait_close(&node.durable, &input);
        all.extend_from_slice(&input);
        // Kill while the store may be between read, write and commit.
        node.kill9();
        node.restart();
    }
    node.wait_records(60_000);
    assert_eq!(node.all_payloads(), lines_of(&all));
}

#[test]
fn a_torn_segment_tail_is_cut_quarantined_and_the_records_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ingest_dir = dir.path().join("data").join("ingest");
    std::fs::create_dir_all(&ingest_dir).unwrap();
    let segment = ingest_dir.join(format!("{}.active", ulid::Ulid::new()));
    let mut file = std::fs::File::create(&segment).unwrap();
    let mut ids = IdGenerator::new();
    let mut encoder = BatchEncoder::new();
    let mut expected = Vec::new();
    let mut good_bytes = 0;
    for batch in 0..10 {
        encoder.begin();
        let mut first = None;
        for i in 0..100 {
            let payload = format!("batch {batch} record {i}");
            let id = ids.next_at(now_ms());
            first.get_or_insert(id);
            encoder.push(Record {
                id,
                flags: 0,
                topic: b"default",
                payload: payload.as_bytes(),
            });
            expected.push(payload.into_bytes());
        }
        let bytes = encoder.finish();
        file.write_all(bytes).unwrap();
        good_bytes += bytes.len();
    }
    // A torn write: the start of one more batch, cut short.
    encoder.begin();
    encoder.push(Record {
        id: ids.next_at(now_ms()),
        flags: 0,
        topic: b"default",
        payload: b"never whole",
    });
    let torn = encoder.finish().to_vec();
    file.write_all(&torn[..torn.len() - 5]).unwrap();
    drop(file);

    let node = Node::start(dir.path(), &[]);
    node.wait_records(1000);
    assert_eq!(node.all_payloads(), expected);
    assert_eq!(node.metric("sluice_ingest_recovered_torn_tails_total"), 1.0);
    let name = segment.file_name().unwrap().to_str().unwrap();
    let quarantined = ingest_dir
        .join("quarantine")
        .join(format!("{name}.{good_bytes}.torn"));
    assert_eq!(std::fs::read(quarantined).unwrap(), &torn[..torn.len() - 5]);
    assert!(node.log().contains("cut a torn tail"));
}
