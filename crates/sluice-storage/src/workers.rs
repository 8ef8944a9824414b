//! The worker pool: a fixed set of OS threads that decode and build blocks
//! for every cursor and writer of the process.
//!
//! A node owns one pool ([`WorkerPool::new`], sized by `--workers`, the
//! number of cores by default) and passes it to the cursors and writers it
//! opens. Work is CPU-bound (zstd, filters, matching), so more threads than
//! cores would only add switches; fewer leave cores idle. Jobs queue in
//! FIFO order; each cursor or writer keeps a bounded number in flight
//! (`PREFETCH` blocks for a cursor, one per worker for a writer), so the
//! queue is bounded by the cursors and writers open, and memory by the
//! blocks they hold.
//!
//! A job never submits to the pool and never waits on another job, so a
//! full pool cannot deadlock. A job that panics loses only its own result:
//! [`Task::wait`] reports it, and the worker goes on with the next job.
//!
//! A pool of zero workers ([`WorkerPool::inline`]) runs each job on the
//! submitting thread, at [`WorkerPool::submit`]: for tools and tests that
//! need no parallelism.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The default size of a node's pool: the number of cores.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A fixed set of worker threads, shared by the cursors and writers of a
/// process.
pub struct WorkerPool {
    /// `None` for an inline pool, and once the pool is dropped.
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    counts: Arc<Counts>,
}

/// What the pool is doing, for its gauges.
#[derive(Debug, Default)]
struct Counts {
    /// Jobs submitted and not yet started.
    queued: AtomicUsize,
    /// Jobs running now.
    busy: AtomicUsize,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.threads.len())
            .field("queued", &self.queued())
            .field("busy", &self.busy())
            .finish()
    }
}

impl WorkerPool {
    /// A pool of `workers` threads (at least one), named `sluice-worker`.
    pub fn new(workers: usize) -> std::io::Result<Arc<WorkerPool>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let counts = Arc::new(Counts::default());
        let mut threads = Vec::with_capacity(workers.max(1));
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let counts = counts.clone();
            let thread = std::thread::Builder::new()
                .name("sluice-worker".into())
                .spawn(move || work(&rx, &counts))?;
            threads.push(thread);
        }
        Ok(Arc::new(WorkerPool {
            jobs: Some(tx),
            threads,
            counts,
        }))
    }

    /// A pool that runs every job on the submitting thread.
    pub fn inline() -> Arc<WorkerPool> {
        Arc::new(WorkerPool {
            jobs: None,
            threads: Vec::new(),
            counts: Arc::new(Counts::default()),
        })
    }

    /// Worker threads: 0 for an inline pool.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Jobs submitted and not yet started.
    pub fn queued(&self) -> usize {
        self.counts.queued.load(Ordering::Relaxed)
    }

    /// Jobs running now.
    pub fn busy(&self) -> usize {
        self.counts.busy.load(Ordering::Relaxed)
    }

    /// Run `job` on a worker; its result is [`Task::wait`]ed for.
    pub fn submit<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Task<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let run = move || {
            // The submitter may have gone (a cursor dropped mid-scan).
            let _ = tx.send(job());
        };
        match &self.jobs {
            Some(jobs) => {
                self.counts.queued.fetch_add(1, Ordering::Relaxed);
                if let Err(mpsc::SendError(run)) = jobs.send(Box::new(run)) {
                    // Every worker is gone (only after a panic escaped the
                    // worker loop, which catches them): run it here.
                    self.counts.queued.fetch_sub(1, Ordering::Relaxed);
                    run();
                }
            }
            None => {
                let _ = catch_unwind(AssertUnwindSafe(run));
            }
        }
        Task { result: rx }
    }
}

/// A worker: take jobs until the pool is dropped.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>, counts: &Counts) {
    loop {
        // The lock is held only to take one job, never while it runs.
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        counts.queued.fetch_sub(1, Ordering::Relaxed);
        counts.busy.fetch_add(1, Ordering::Relaxed);
        // A panicking job drops its result sender: its task reports it.
        let _ = catch_unwind(AssertUnwindSafe(job));
        counts.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Closing the queue ends each worker after the jobs queued before.
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The result of a job submitted to a [`WorkerPool`].
#[derive(Debug)]
pub struct Task<T> {
    result: mpsc::Receiver<T>,
}

/// A job panicked, so it has no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a worker job panicked")]
pub struct JobPanicked;

impl<T> Task<T> {
    /// Wait for the job to finish and take its result.
    pub fn wait(self) -> Result<T, JobPanicked> {
        self.result.recv().map_err(|_| JobPanicked)
    }
}

/// A pool of two workers shared by the crate's tests, so that they decode
/// and build blocks on other threads, as a node does.
#[cfg(test)]
pub(crate) fn test_pool() -> Arc<WorkerPool> {
    static POOL: std::sync::LazyLock<Arc<WorkerPool>> =
        std::sync::LazyLock::new(|| WorkerPool::new(2).expect("start test workers"));
    POOL.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_a_fixed_set_of_threads() {
        let pool = WorkerPool::new(2).unwrap();
        assert_eq!(pool.workers(), 2);
        let tasks: Vec<Task<String>> = (0..50)
            .map(|_| pool.submit(|| std::thread::current().name().unwrap_or("").to_string()))
            .collect();
        let mut names: Vec<String> = tasks.into_iter().map(|t| t.wait().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names, ["sluice-worker"]);
        assert_eq!(pool.queued() + pool.busy(), 0);
    }

    #[test]
    fn a_panicking_job_loses_only_its_result() {
        let pool = WorkerPool::new(1).unwrap();
        let failed = pool.submit(|| -> u32 { panic!("a bad block") });
        let next = pool.submit(|| 7u32);
        assert_eq!(failed.wait(), Err(JobPanicked));
        assert_eq!(next.wait(), Ok(7), "the worker survived");
    }

    #[test]
    fn an_inline_pool_runs_jobs_at_submit() {
        let pool = WorkerPool::inline();
        let here = std::thread::current().id();
        let task = pool.submit(move || std::thread::current().id() == here);
        assert_eq!(task.wait(), Ok(true));
        assert_eq!(
            pool.submit(|| -> u8 { panic!("x") }).wait(),
            Err(JobPanicked)
        );
    }

    /// Results come back to each submitter, whatever order jobs end in.
    #[test]
    fn each_task_gets_its_own_result() {
        let pool = WorkerPool::new(3).unwrap();
        let tasks: Vec<Task<u64>> = (0..200u64)
            .map(|i| {
                pool.submit(move || {
                    std::thread::yield_now();
                    i * i
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.wait(), Ok(i as u64 * i as u64));
        }
    }
}
