use super::*;
use sluice_record::{BatchEncoder, Record};
use sluice_storage::MemFs;

fn log(fs: &MemFs, timeout: Duration) -> (IngestLog, StartupReport) {
    IngestLog::open(Arc::new(fs.clone()), Path::new("/data/ingest"), timeout).unwrap()
}

fn write_segment(log: &IngestLog, n: u32) -> ActiveSegment {
    let mut seg = log.create_active().unwrap();
    let mut enc = BatchEncoder::new();
    enc.begin();
    for i in 0..n {
        enc.push(Record {
            id: Ulid(i as u128 + 1),
            flags: 0,
            topic: b"default",
            payload: b"x",
        });
    }
    seg.append(enc.finish(), n, Ulid(1), Ulid(n as u128))
        .unwrap();
    seg
}

/// The id floor `query_segments` gives for segment `id`; `None` when
/// it gives none (or does not list the segment).
fn floor_of(log: &IngestLog, id: Ulid) -> Option<Ulid> {
    log.query_segments()
        .unwrap()
        .into_iter()
        .find(|s| s.names[0].to_string_lossy().contains(&id.to_string()))
        .and_then(|s| s.floor)
        .and_then(|f| f.get())
}

#[test]
fn a_segment_written_here_carries_its_id_floor_until_committed() {
    let fs = MemFs::new();
    let (log, _) = log(&fs, Duration::from_secs(60));
    let seg = write_segment(&log, 3);
    let id = seg.id();
    assert_eq!(floor_of(&log, id), Some(Ulid(1)), "while active");
    log.seal(seg).unwrap();
    assert_eq!(floor_of(&log, id), Some(Ulid(1)), "once flushed");
    assert_eq!(log.next().unwrap(), Some(id));
    assert_eq!(floor_of(&log, id), Some(Ulid(1)), "while lent");
    log.commit(id).unwrap();
    assert!(log.state().floors.is_empty(), "committed: forgotten");

    // A segment found on disk at startup has no floor: its ids are
    // read from the file.
    let seg = write_segment(&log, 2);
    let id = seg.id();
    log.seal(seg).unwrap();
    drop(log);
    let (log, _) = self::log(&fs, Duration::from_secs(60));
    let listed = log.query_segments().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].floor.is_none());
    assert_eq!(floor_of(&log, id), None);
}

#[test]
fn lend_commit_and_fail_follow_the_state_machine() {
    let fs = MemFs::new();
    let (log, _) = log(&fs, Duration::from_secs(60));
    let seg = write_segment(&log, 3);
    let id = seg.id();
    assert_eq!(log.next().unwrap(), None, "an active segment is not lent");
    log.seal(seg).unwrap();
    assert_eq!(log.next().unwrap(), Some(id));
    assert_eq!(log.next().unwrap(), None);
    log.failed(id).unwrap();
    assert_eq!(log.next().unwrap(), Some(id));
    assert!(log.pending_path(id).is_ok());
    log.commit(id).unwrap();
    assert!(matches!(log.commit(id), Err(LogError::NotPending(_))));
    assert_eq!(log.counts(), (0, 0));
}

#[test]
fn a_commit_naming_fewer_stores_than_rf_is_refused_and_stays_lent() {
    let fs = MemFs::new();
    let (log, _) = log(&fs, Duration::from_secs(60));
    log.set_replication_factor(2);
    let seg = write_segment(&log, 1);
    let id = seg.id();
    log.seal(seg).unwrap();
    assert_eq!(log.next().unwrap(), Some(id));
    for named in [None, Some(""), Some("s1"), Some("s1, s1,")] {
        let err = log.commit_replicated(id, named).unwrap_err();
        assert!(
            matches!(
                err,
                LogError::TooFewReplicas {
                    named: 1,
                    rf: 2,
                    ..
                }
            ),
            "{named:?}: {err}"
        );
    }
    assert!(
        log.pending_path(id).is_ok(),
        "a refused commit keeps the lend"
    );
    assert_eq!(log.commit_replicated(id, Some("s1,s2")).unwrap(), 2);
    assert_eq!(log.counts(), (0, 0));
    assert_eq!(distinct_replicas(Some("a,b,a, ,c")), 3);
}

#[test]
fn a_clock_with_ids_makes_the_same_increasing_ids_every_run() {
    let make = || {
        let clock = ManualClock::with_ids(7);
        let a = clock.new_id();
        clock.advance(Duration::from_millis(5));
        (a, clock.new_id(), clock.new_id())
    };
    let (a, b, c) = make();
    assert!(a < b && b < c);
    assert_eq!(make(), (a, b, c));
    assert_ne!(
        ManualClock::with_ids(8).new_id(),
        ManualClock::with_ids(7).new_id()
    );
}

#[test]
fn a_pending_segment_times_out_and_is_lent_again() {
    let fs = MemFs::new();
    let (log, _) = log(&fs, Duration::ZERO);
    let seg = write_segment(&log, 1);
    let id = seg.id();
    log.seal(seg).unwrap();
    assert_eq!(log.next().unwrap(), Some(id));
    assert_eq!(
        log.next().unwrap(),
        Some(id),
        "the timed-out segment comes back"
    );
}

#[test]
fn restart_recovers_active_and_pending_segments() {
    let fs = MemFs::new();
    let (log1, _) = log(&fs, Duration::from_secs(60));
    let mut active = write_segment(&log1, 2);
    active.sync().unwrap();
    let lent = write_segment(&log1, 1);
    let lent_id = lent.id();
    log1.seal(lent).unwrap();
    assert_eq!(log1.next().unwrap(), Some(lent_id));
    let empty = log1.create_active().unwrap();
    std::mem::forget(active);
    std::mem::forget(empty);
    fs.crash(None);
    let (log2, report) = log(&fs, Duration::from_secs(60));
    assert_eq!(report.recovered_active, 2);
    assert_eq!(report.empty_removed, 1);
    assert_eq!(report.pending_returned, 1);
    assert_eq!(log2.counts(), (2, 0));
}

#[test]
fn a_seal_whose_directory_sync_fails_still_lends_the_flushed_file() {
    let fs = MemFs::new();
    let (log, _) = log(&fs, Duration::from_secs(60));
    let seg = write_segment(&log, 2);
    let id = seg.id();
    // The file's sync and the rename succeed, the directory's sync fails.
    fs.fail_after(Some(2));
    assert!(log.seal(seg).is_err());
    fs.fail_after(None);
    assert!(fs.exists(&log.path(id, FLUSHED)));
    assert_eq!(floor_of(&log, id), Some(Ulid(1)), "queried as flushed");
    assert_eq!(log.next().unwrap(), Some(id), "lent as any flushed file");
}

#[test]
fn a_seal_whose_rename_fails_leaves_the_active_file_and_forgets_its_floor() {
    let fs = MemFs::new();
    let (log, _) = log(&fs, Duration::from_secs(60));
    let seg = write_segment(&log, 2);
    let id = seg.id();
    fs.fail_after(Some(1));
    assert!(log.seal(seg).is_err());
    fs.fail_after(None);
    assert!(fs.exists(&log.path(id, ACTIVE)), "for the next start");
    assert!(log.state().floors.is_empty());
    assert_eq!(log.next().unwrap(), None);
    let listed = log.query_segments().unwrap();
    assert_eq!(listed.len(), 1, "still queried, read from the file");
    assert!(listed[0].floor.is_none());
}

#[test]
fn a_batch_lowers_the_floor_to_its_smallest_id_whatever_its_order() {
    use crate::{listener::IngestConfig, sink::SegmentSink};
    let fs = MemFs::new();
    let (log, _) = log(&fs, Duration::from_secs(60));
    let log = Arc::new(log);
    let mut sink = SegmentSink::new(log.clone(), &IngestConfig::default());
    sink.begin();
    for id in [50u128, 30, 90] {
        sink.push(Record {
            id: Ulid(id),
            flags: 0,
            topic: b"default",
            payload: b"x",
        });
    }
    let id = sink.write(false).unwrap().expect("a batch was written");
    assert_eq!(floor_of(&log, id), Some(Ulid(30)));
}
