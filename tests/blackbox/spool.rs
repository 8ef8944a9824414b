//! The forwarder's disk spool and file sources: crashes, restarts, slow
//! destinations, rotation.

use std::{fs, io::Write, path::Path};

use crate::harness::*;

fn append(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn kill_9_of_a_forwarder_with_a_spool_delivers_every_line_read_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    // A slow destination, so the spool holds most of the stream when the
    // forwarder dies.
    let proxy = throttling_proxy(node.batch.clone(), 32 << 10);
    let destination = format!("sluice://{proxy}");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    let spool_arg = spool.to_str().unwrap();
    let input = numbered_lines(240_000, "spool");
    let lines = lines_of(&input);
    let thirds: Vec<Vec<u8>> = lines
        .chunks(80_000)
        .map(|c| c.iter().flat_map(|l| [&l[..], b"\n"].concat()).collect())
        .collect();
    let args = [
        "--file",
        log.to_str().unwrap(),
        "--spool",
        spool_arg,
        "--queue-max",
        "256KiB",
        "--batch-size",
        "64KiB",
    ];
    append(&log, &thirds[0]);
    let mut delivered_before = 0;
    for third in &thirds[1..] {
        let forwarder = Forwarder::start(&[&destination], &args);
        // Die once some of it (but not all) was acknowledged.
        wait_for("some acks", || {
            (forwarder.metric("sluice_forward_records_acked_total") > 10_000.0).then_some(())
        });
        forwarder.kill9();
        let now = node.stats(&[])["records_matched"].as_u64().unwrap();
        assert!(now >= delivered_before);
        delivered_before = now;
        append(&log, third);
    }
    assert!(
        delivered_before < 240_000,
        "the forwarder died with work left ({delivered_before} delivered)"
    );
    let forwarder = Forwarder::start(&[&destination], &args);
    node.wait_records(240_000);
    assert_eq!(node.all_payloads(), lines, "every line once, in order");
    let (status, counts) = forwarder.stop();
    assert!(
        status.success(),
        "a stopped forwarder with everything acknowledged exits 0"
    );
    assert!(counts["recovered"].as_u64().unwrap() > 0, "{counts}");
    assert_eq!(counts["dropped_spool_corrupt"], 0);
}

#[test]
fn followed_files_survive_rotation_truncation_and_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let destination = format!("sluice://{}", node.batch);
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("cp.json");
    let args = [
        "--file",
        log.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ];
    let mut expected = Vec::new();
    let write = |bytes: &[u8], expected: &mut Vec<Vec<u8>>| {
        append(&log, bytes);
        expected.extend(lines_of(bytes));
    };
    write(&numbered_lines(1000, "first"), &mut expected);
    let forwarder = Forwarder::start(&[&destination], &args);
    node.wait_records(1000);
    // Rotation by rename, with an unterminated last line in the old file.
    append(&log, b"last line of the old file");
    expected.push(b"last line of the old file".to_vec());
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    write(&numbered_lines(500, "rotated"), &mut expected);
    node.wait_records(1501);
    // A clean stop, lines written while stopped, and a restart.
    let (status, counts) = forwarder.stop();
    assert!(status.success());
    assert_eq!(counts["acked"], counts["read"]);
    write(&numbered_lines(300, "while-stopped"), &mut expected);
    let forwarder = Forwarder::start(&[&destination], &args);
    node.wait_records(1801);
    // Truncation in place (copytruncate), then new lines.
    fs::write(&log, b"").unwrap();
    wait_for("the truncation to be noticed", || {
        fs::read_to_string(&checkpoint)
            .ok()
            .filter(|c| c.contains("\"offset\":0"))
    });
    write(&numbered_lines(200, "after-truncate"), &mut expected);
    node.wait_records(2001);
    let (status, _) = forwarder.stop();
    assert!(status.success());
    assert_eq!(
        node.all_payloads(),
        expected,
        "nothing re-sent, nothing skipped"
    );
}

#[test]
fn a_slow_destination_engages_the_spool_and_the_counts_balance() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    // About 1.6 MB/s: far slower than the input.
    let proxy = throttling_proxy(node.batch.clone(), 16 << 10);
    let destination = format!("sluice://{proxy}");
    let mut total = 0;
    for (mode, spool_max, lines) in [("block", "1GiB", 50_000), ("drop-oldest", "300KiB", 50_000)] {
        let spool = dir.path().join(format!("spool-{mode}"));
        let mut forwarder = Forwarder::stdin(
            &[&destination],
            &[
                "--on-full",
                mode,
                "--queue-max",
                "128KiB",
                "--batch-size",
                "32KiB",
                "--spool",
                spool.to_str().unwrap(),
                "--spool-max",
                spool_max,
            ],
        );
        let mut stdin = forwarder.take_stdin();
        let input = numbered_lines(lines, mode);
        let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        writer.join().unwrap();
        let exited = forwarder.wait();
        let counts = exited.counts();
        let n = |k: &str| counts[k].as_u64().unwrap();
        let dropped = n("dropped_queue_full")
            + n("dropped_spool_full")
            + n("dropped_rejected")
            + n("dropped_spool_corrupt");
        assert_eq!(n("read"), lines as u64, "{mode}: {counts}");
        assert_eq!(
            n("read"),
            n("acked") + dropped,
            "{mode}: read = acked + dropped once drained"
        );
        assert_eq!((n("queued"), n("spooled"), n("in_flight")), (0, 0, 0));
        if mode == "block" {
            assert!(n("replayed") > 0, "the spool engaged: {counts}");
            assert_eq!(dropped, 0, "block never drops: {counts}");
            assert!(exited.status.success());
        } else {
            assert!(
                n("dropped_spool_full") > 0,
                "the spool overflowed: {counts}"
            );
            assert!(!exited.status.success());
        }
        let leftover: Vec<_> = fs::read_dir(&spool)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sp"))
            .collect();
        assert!(
            leftover.is_empty(),
            "{mode}: a drained spool is removed: {leftover:?}"
        );
        total += n("acked");
        node.wait_records(total);
    }
}
