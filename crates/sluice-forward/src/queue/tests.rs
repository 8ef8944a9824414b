use super::*;

fn batch(seq: u64, records: u64, bytes: usize) -> Batch {
    Batch::new(seq, records, vec![0; bytes])
}

#[test]
fn drop_policies_count_and_balance() {
    for (policy, kept) in [
        (OnFull::DropNewest, vec![1, 2]),
        (OnFull::DropOldest, vec![3, 4]),
    ] {
        let q = Queue::new(20, policy);
        for seq in 1..=4 {
            q.read(5, 0);
            q.push(batch(seq, 5, 10));
            assert!(q.counts().balances());
        }
        let taken: Vec<u64> = std::iter::from_fn(|| q.take(Duration::ZERO))
            .map(|b| b.seq)
            .collect();
        assert_eq!(taken, kept, "{policy:?}");
        let c = q.counts();
        assert_eq!((c.dropped_queue_full, c.in_flight), (10, 10));
        assert!(c.balances());
    }
}

#[test]
fn in_flight_batches_are_never_dropped_and_go_back_in_order() {
    let q = Queue::new(25, OnFull::DropOldest);
    for seq in 1..=2 {
        q.read(1, 0);
        q.push(batch(seq, 1, 10));
    }
    let first = q.take(Duration::ZERO).unwrap();
    let second = q.take(Duration::ZERO).unwrap();
    q.give_back(vec![second, first]);
    let order: Vec<u64> = std::iter::from_fn(|| q.take(Duration::ZERO))
        .map(|b| b.seq)
        .collect();
    assert_eq!(order, [1, 2]);
    let c = q.counts();
    assert_eq!((c.dropped(), c.resent, c.in_flight), (0, 2, 2));
    assert!(c.balances());
}

#[test]
fn a_stopped_input_is_not_held_by_a_full_queue() {
    // Nothing drains this queue (a destination that is down).
    let q = Queue::new(10, OnFull::Block);
    q.read(1, 0);
    q.push(batch(1, 1, 10));
    let (done, pushed) = mpsc::channel();
    let q2 = q.clone();
    std::thread::spawn(move || {
        q2.read(1, 0);
        q2.push(batch(2, 1, 10));
        let _ = done.send(());
    });
    q.stop_input();
    pushed
        .recv_timeout(Duration::from_secs(60))
        .expect("a push blocked on a full queue returns once the input stops");
    let c = q.counts();
    assert_eq!((c.queued, c.dropped()), (2, 0));
    assert!(c.balances());
}

/// A recorder that notes whether a push waited for room (the
/// `sluice_forward_queue_blocked` gauge went up).
#[derive(Default)]
struct BlockedSeen(Arc<std::sync::atomic::AtomicBool>);

impl ::metrics::GaugeFn for BlockedSeen {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, value: f64) {
        if value > 0.0 {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl ::metrics::Recorder for BlockedSeen {
    fn describe_counter(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn register_counter(
        &self,
        _: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Counter {
        ::metrics::Counter::noop()
    }
    fn register_gauge(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Gauge {
        if key.name() == "sluice_forward_queue_blocked" {
            ::metrics::Gauge::from_arc(Arc::new(BlockedSeen(self.0.clone())))
        } else {
            ::metrics::Gauge::noop()
        }
    }
    fn register_histogram(
        &self,
        _: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Histogram {
        ::metrics::Histogram::noop()
    }
}

#[test]
fn a_stopped_input_goes_past_a_full_queue_or_spool_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, recovered, _) = Spool::open(dir.path(), 100).unwrap();
    let queues = [
        Queue::new(10, OnFull::Block),
        Queue::with_spool(1 << 20, OnFull::Block, spool, recovered).0,
    ];
    for q in queues {
        // Full: the memory queue, or the spool (one batch fills it).
        q.read(1, 0);
        q.push(batch(1, 1, 10));
        q.stop_input();
        let seen = BlockedSeen::default();
        ::metrics::with_local_recorder(&seen, || {
            for seq in 2..=4 {
                q.read(1, 0);
                q.push(batch(seq, 1, 10));
            }
        });
        assert!(
            !seen.0.load(std::sync::atomic::Ordering::Relaxed),
            "a push after the stop waited for room"
        );
        let c = q.counts();
        assert_eq!((c.queued, c.dropped()), (4, 0));
        assert!(c.balances());
    }
}

#[test]
fn block_waits_for_room() {
    let q = Queue::new(10, OnFull::Block);
    q.read(1, 0);
    q.push(batch(1, 1, 10));
    let q2 = q.clone();
    let pusher = std::thread::spawn(move || {
        q2.read(1, 0);
        q2.push(batch(2, 1, 10));
    });
    let first = q.take(Duration::from_secs(10)).unwrap();
    pusher.join().unwrap();
    q.acked(&first);
    assert_eq!(q.take(Duration::from_secs(10)).unwrap().seq, 2);
    assert_eq!(q.counts().dropped(), 0);
}
