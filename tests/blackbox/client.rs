//! The client library: an acknowledged Writer and a resumable Scanner.

use std::io::Write;

use sluice_client::{Guarantee, Scanner, Writer, WriterConfig};

use crate::harness::*;

#[test]
fn the_writer_delivers_lines_and_a_failed_batch_is_retried_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]);
    let mut config = WriterConfig::new(node.batch.clone());
    config.guarantee = Guarantee::Fsync;
    config.topic = "app".into();
    config.batch_bytes = 64 << 10;
    let mut writer = Writer::new(config);
    let first = numbered_lines(10_000, "writer");
    writer.write_all(&first).unwrap();
    writer.flush().unwrap();
    assert_eq!(writer.acked_records(), 10_000);

    // The node dies: the next batch fails and is kept, not lost.
    node.kill9();
    writer.write_all(b"during the outage\n").unwrap();
    assert!(writer.flush().is_err());
    node.restart();
    assert_eq!(writer.retry(), 0, "the retry is acknowledged");
    assert_eq!(writer.acked_records(), 10_001);
    assert!(writer.take_failed().is_empty());
    drop(writer);

    node.wait_records(10_001);
    let mut expected = lines_of(&first);
    expected.push(b"during the outage".to_vec());
    assert_eq!(node.all_payloads(), expected);
}

#[test]
fn the_scanner_pages_in_order_and_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let input = numbered_lines(25_000, "scan");
    send_and_wait_close(&node.fast, &input);
    node.wait_records(25_000);
    let expected = lines_of(&input);

    let all: Vec<Vec<u8>> = Scanner::new(&node.api, "1h", "")
        .page_size(1000)
        .map(|e| e.unwrap().payload)
        .collect();
    assert_eq!(all, expected);

    // Stop after 5000, checkpoint the cursor, resume in a new scanner.
    let mut scanner = Scanner::new(&node.api, "1h", "").page_size(1500);
    let head: Vec<Vec<u8>> = scanner
        .by_ref()
        .take(5000)
        .map(|e| e.unwrap().payload)
        .collect();
    let checkpoint = scanner.cursor();
    let tail: Vec<Vec<u8>> = Scanner::new(&node.api, "1h", "")
        .after(checkpoint)
        .map(|e| e.unwrap().payload)
        .collect();
    assert_eq!(head, expected[..5000]);
    assert_eq!(tail, expected[5000..]);
}
