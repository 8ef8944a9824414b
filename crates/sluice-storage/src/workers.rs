//! The worker pool: a fixed set of OS threads that decode and build blocks
//! for every cursor and writer of the process.
//!
//! A node owns one pool ([`WorkerPool::new`], sized by `--workers`, the
//! number of cores by default) and passes it to the cursors and writers it
//! opens. Work is CPU-bound (zstd, filters, matching), so more threads than
//! cores would only add switches; fewer leave cores idle. Each cursor or
//! writer keeps a bounded number of jobs in flight (`PREFETCH` blocks for a
//! cursor, one per worker for a writer), so the queue is bounded by the
//! cursors and writers open, and memory by the blocks they hold.
//!
//! Two queues, each FIFO: a worker takes a *foreground* job (a query's
//! blocks) before any *background* one (compaction's), so a query waits at
//! most for the background jobs already running, not for every block a
//! large compaction has queued. [`WorkerPool::background`] gives the handle
//! compaction submits through; the threads are the same.
//!
//! A job never submits to the pool and never waits on another job, so a
//! full pool cannot deadlock. A job that panics loses only its own result:
//! [`Task::wait`] reports it, and the worker goes on with the next job.
//!
//! A pool of zero workers ([`WorkerPool::inline`]) runs each job on the
//! submitting thread, at [`WorkerPool::submit`]: for tools and tests that
//! need no parallelism.

use std::{
    collections::VecDeque,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
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

/// A handle to a fixed set of worker threads, shared by the cursors and
/// writers of a process; it submits foreground jobs, or background ones
/// (see [`WorkerPool::background`]). The threads end when the last handle
/// is dropped, after the jobs queued before.
pub struct WorkerPool {
    shared: Arc<Shared>,
    /// Joins the threads when the last handle goes.
    _owner: Arc<Owner>,
    background: bool,
}

/// What the handles and the threads share.
#[derive(Debug, Default)]
struct Shared {
    queues: Mutex<Queues>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
    /// Jobs submitted and not yet started.
    queued: AtomicUsize,
    /// Jobs running now.
    busy: AtomicUsize,
    /// Worker threads: 0 for an inline pool.
    workers: usize,
}

#[derive(Default)]
struct Queues {
    foreground: VecDeque<Job>,
    background: VecDeque<Job>,
    closed: bool,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("foreground", &self.foreground.len())
            .field("background", &self.background.len())
            .field("closed", &self.closed)
            .finish()
    }
}

/// Owns the threads: closes the queues and joins them when dropped.
struct Owner {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.workers())
            .field("queued", &self.queued())
            .field("busy", &self.busy())
            .field("background", &self.background)
            .finish()
    }
}

impl WorkerPool {
    /// A pool of `workers` threads (at least one), named `sluice-worker`;
    /// the handle submits foreground jobs.
    pub fn new(workers: usize) -> std::io::Result<Arc<WorkerPool>> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            workers,
            ..Shared::default()
        });
        let mut owner = Owner {
            shared: shared.clone(),
            threads: Vec::with_capacity(workers),
        };
        for _ in 0..workers {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name("sluice-worker".into())
                .spawn(move || work(&shared))?;
            owner.threads.push(thread);
        }
        Ok(Arc::new(WorkerPool {
            shared,
            _owner: Arc::new(owner),
            background: false,
        }))
    }

    /// A pool that runs every job on the submitting thread.
    pub fn inline() -> Arc<WorkerPool> {
        let shared = Arc::new(Shared::default());
        Arc::new(WorkerPool {
            shared: shared.clone(),
            _owner: Arc::new(Owner {
                shared,
                threads: Vec::new(),
            }),
            background: false,
        })
    }

    /// A handle to the same threads whose jobs wait behind every
    /// foreground one: what compaction submits through.
    pub fn background(&self) -> Arc<WorkerPool> {
        Arc::new(WorkerPool {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
            background: true,
        })
    }

    /// Worker threads: 0 for an inline pool.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// Jobs submitted and not yet started.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Jobs running now.
    pub fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// Run `job` on a worker; its result is [`Task::wait`]ed for.
    pub fn submit<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Task<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let run = move || {
            // The submitter may have gone (a cursor dropped mid-scan).
            let _ = tx.send(job());
        };
        if self.shared.workers == 0 {
            let _ = catch_unwind(AssertUnwindSafe(run));
            return Task { result: rx };
        }
        let mut queues = self.shared.lock();
        match self.background {
            true => queues.background.push_back(Box::new(run)),
            false => queues.foreground.push_back(Box::new(run)),
        }
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        drop(queues);
        self.shared.ready.notify_one();
        Task { result: rx }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A worker: take jobs, foreground first, until the pool closes and its
/// queues are empty.
fn work(shared: &Shared) {
    loop {
        // The lock is held only to take one job, never while it runs.
        let job = {
            let mut queues = shared.lock();
            loop {
                if let Some(job) = queues.foreground.pop_front() {
                    break job;
                }
                if let Some(job) = queues.background.pop_front() {
                    break job;
                }
                if queues.closed {
                    return;
                }
                queues = shared.ready.wait(queues).unwrap_or_else(|p| p.into_inner());
            }
        };
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        shared.busy.fetch_add(1, Ordering::Relaxed);
        // A panicking job drops its result sender: its task reports it.
        let _ = catch_unwind(AssertUnwindSafe(job));
        shared.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Closing the queues ends each worker after the jobs queued before.
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
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
    /// Run `job` on the calling thread, as a task: for a job smaller than
    /// a worker's wake-up and the handoff of its result. A panic is
    /// reported by [`Task::wait`], as a worker's is.
    pub fn run_here(job: impl FnOnce() -> T) -> Task<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        if let Ok(result) = catch_unwind(AssertUnwindSafe(job)) {
            let _ = tx.send(result);
        }
        Task { result: rx }
    }

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
    fn a_job_run_here_gives_its_result_or_its_panic() {
        let here = std::thread::current().id();
        let task = Task::run_here(move || std::thread::current().id() == here);
        assert_eq!(task.wait(), Ok(true));
        let panicked: Task<()> = Task::run_here(|| panic!("a job that fails"));
        assert_eq!(panicked.wait(), Err(JobPanicked));
    }

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

    /// A foreground job queued behind background ones runs first.
    #[test]
    fn foreground_jobs_run_before_queued_background_ones() {
        let pool = WorkerPool::new(1).unwrap();
        let background = pool.background();
        // Hold the one worker until every job is queued.
        let (release, held) = mpsc::channel::<()>();
        let busy = pool.submit(move || held.recv().ok());
        let order = Arc::new(Mutex::new(Vec::new()));
        let log = |name: &'static str| {
            let order = order.clone();
            move || order.lock().unwrap().push(name)
        };
        let tasks = [
            background.submit(log("compaction 1")),
            background.submit(log("compaction 2")),
            pool.submit(log("query")),
        ];
        release.send(()).unwrap();
        busy.wait().unwrap();
        for task in tasks {
            task.wait().unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["query", "compaction 1", "compaction 2"]
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
