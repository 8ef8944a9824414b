//! Admission of queries: at most `max_running` run at once, up to
//! `max_queued` more wait in line for a slot, and the rest are refused at
//! once (503 with `Retry-After`), so a burst of queries costs a bounded
//! number of threads and a bounded amount of memory, and `/health`, the
//! lending endpoints and ingest keep answering.
//!
//! A query that waits in line and whose client goes away leaves the line.
//! A running query whose client goes away is cancelled: its [`Client`]
//! guard is dropped with the request (or with its response body), which
//! raises the cancel flag that every cursor of the scan checks. The slot
//! is freed only when the scan itself ends ([`Scanning::end`]), so no more
//! than `max_running` scans ever run, cancelled or not.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use sluice_storage::block_segment::Cancel;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics;

/// The default of queries running at once: twice the number of cores, so
/// a query waiting on its client or on a disk leaves the cores busy.
pub fn default_max_queries() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default of queries waiting in line: as many as may run.
pub fn default_query_queue() -> usize {
    default_max_queries()
}

/// How many queries may run and wait.
#[derive(Debug)]
pub struct QueryGate {
    slots: Arc<Semaphore>,
    max_running: usize,
    max_queued: usize,
    queued: AtomicUsize,
}

/// A query was refused: every slot is taken and the line is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// Queries running when it was refused.
    pub running: usize,
    /// Queries waiting in line when it was refused.
    pub queued: usize,
}

impl QueryGate {
    /// A gate of `max_running` slots (at least one) and a line of
    /// `max_queued`.
    pub fn new(max_running: usize, max_queued: usize) -> QueryGate {
        let max_running = max_running.max(1);
        QueryGate {
            slots: Arc::new(Semaphore::new(max_running)),
            max_running,
            max_queued,
            queued: AtomicUsize::new(0),
        }
    }

    /// Queries running now.
    pub fn running(&self) -> usize {
        self.max_running - self.slots.available_permits()
    }

    /// Queries waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// A slot for one query: at once, after waiting in line, or [`Busy`]
    /// when the line is full. The scan takes the [`Scanning`] half, the
    /// request (or its response body) keeps the [`Client`] half.
    pub async fn enter(&self) -> Result<(Scanning, Client), Busy> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    metrics::query_rejected();
                    return Err(Busy {
                        running: self.running(),
                        queued: self.queued(),
                    });
                }
                let waiting = InLine(&self.queued);
                self.publish();
                let permit = self.slots.clone().acquire_owned().await;
                drop(waiting);
                permit.expect("the query semaphore is never closed")
            }
        };
        self.publish();
        let cancel: Cancel = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        Ok((
            Scanning {
                _slot: Some(permit),
                cancel: cancel.clone(),
                finished: finished.clone(),
            },
            Client { cancel, finished },
        ))
    }

    /// Set the running and queued gauges.
    pub fn publish(&self) {
        metrics::queries(self.running(), self.queued());
    }
}

/// Counts a query in line until it leaves, with a slot or not.
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The scan's half of an admitted query: its slot, freed when the scan
/// ends, and the flag its cursors check.
#[derive(Debug)]
pub struct Scanning {
    _slot: Option<OwnedSemaphorePermit>,
    cancel: Cancel,
    finished: Arc<AtomicBool>,
}

impl Scanning {
    /// A scan that runs within a query admitted already: a coordinator's
    /// own part of a cluster query, which holds the coordinator's slot. It
    /// stops when its output channel closes.
    pub fn unadmitted() -> Scanning {
        Scanning {
            _slot: None,
            cancel: Arc::new(AtomicBool::new(false)),
            finished: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag the scan's cursors check.
    pub fn cancel(&self) -> Cancel {
        self.cancel.clone()
    }

    /// The scan ended: free the slot and return whether the scan was
    /// cancelled (counted as such).
    pub fn end(self) -> bool {
        self.finished.store(true, Ordering::Release);
        let cancelled = self.cancel.load(Ordering::Acquire);
        if cancelled {
            metrics::query_cancelled();
        }
        cancelled
    }
}

/// The client's half of an admitted query. Dropping it before the scan
/// ended raises the cancel flag: the client went away.
#[derive(Debug)]
pub struct Client {
    cancel: Cancel,
    finished: Arc<AtomicBool>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::Acquire) {
            self.cancel.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queries_beyond_the_slots_and_the_line_are_refused() {
        let gate = Arc::new(QueryGate::new(2, 1));
        let (a, _a) = gate.enter().await.unwrap();
        let _b = gate.enter().await.unwrap();
        assert_eq!(gate.running(), 2);
        // The third waits in line; the fourth is refused.
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(|_| ()) }
        });
        while gate.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            gate.enter().await.unwrap_err(),
            Busy {
                running: 2,
                queued: 1
            }
        );
        // A scan ends: the one in line runs.
        a.end();
        waiting.await.unwrap().unwrap();
        assert_eq!(gate.queued(), 0);
    }

    #[tokio::test]
    async fn a_client_that_leaves_the_line_frees_its_place() {
        let gate = Arc::new(QueryGate::new(1, 1));
        let _running = gate.enter().await.unwrap();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(|_| ()) }
        });
        while gate.queued() == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(gate.queued(), 0);
    }

    #[tokio::test]
    async fn a_client_that_goes_away_cancels_its_scan_unless_it_ended() {
        let gate = QueryGate::new(1, 0);
        let (scan, client) = gate.enter().await.unwrap();
        let cancel = scan.cancel();
        drop(client);
        assert!(cancel.load(Ordering::Relaxed));
        assert_eq!(gate.running(), 1, "the slot is held until the scan ends");
        assert!(scan.end(), "counted as cancelled");
        assert_eq!(gate.running(), 0);

        let (scan, client) = gate.enter().await.unwrap();
        let cancel = scan.cancel();
        assert!(!scan.end());
        drop(client);
        assert!(
            !cancel.load(Ordering::Relaxed),
            "an ended scan is not cancelled"
        );
    }
}
