//! The worker pool: a fixed set of OS threads that decode and build blocks
//! for every cursor and writer of the process.
//!
//! A node owns one pool ([`WorkerPool::new`], sized by `--workers`, the
//! number of cores by default) and passes it to the cursors and writers it
//! opens. Work is CPU-bound (zstd, filters, matching), so more threads than
//! cores would only add switches; fewer leave cores idle. Each cursor or
//! writer keeps a bounded number of jobs in flight (a block cursor at most
//! `JOBS_AHEAD`, of which `PREFETCH` decode; a batch cursor `BATCHES_AHEAD`
//! groups; a writer one per worker), so the queue is bounded by the
//! cursors and writers open, and memory by the blocks they hold.
//!
//! Two queues, each FIFO, each with its own threads: *foreground* jobs (a
//! query's blocks) run on `sluice-worker` threads, *background* ones
//! (compaction's) on `sluice-bg-work` threads, as many of each, whose
//! nice value is raised by [`BACKGROUND_NICE`]. A query therefore never
//! waits behind compaction's blocks, queued or running, and while one runs
//! the kernel gives its threads the cores: under sustained ingest,
//! compaction's jobs took as much CPU during a query as the query's own
//! when both ran at the same priority, on the same threads. With no query, background threads have
//! the cores to themselves, so compaction still keeps up.
//! [`WorkerPool::background`] gives the handle compaction submits through.
//!
//! A lower priority alone did not keep compaction off the cores during a
//! query: a query's threads wait on one another (the reader on the
//! workers, the workers on the reader's next batches), and in each such
//! gap a background thread ran a job of several milliseconds that the
//! woken query thread then waited behind (`perf sched`: nice-10 background
//! threads ran a quarter of the CPU time while a query under ingest ran).
//! So while a query scans ([`WorkerPool::foreground_scan`]) background
//! threads start no job, for at most [`BACKGROUND_YIELD`] at a time, after
//! which each runs one: compaction slows under a steady stream of queries
//! but never stops. A job already running when a query starts pauses at
//! its next [`yield_to_queries`] (a block build calls it between frames),
//! for at most [`BACKGROUND_YIELD`] over the whole job: otherwise a build
//! begun just before the query ran its tens of milliseconds beside it.
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
    time::{Duration, Instant},
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

/// How much lower than the process's the priority of background threads
/// is (their nice value is raised by this much): a weight about a tenth of
/// a foreground thread's, so compaction yields the cores to queries and
/// ingest while they need them, and has them otherwise.
pub const BACKGROUND_NICE: i32 = 10;

/// How long, at most, a background thread waits for the queries scanning
/// to end before it starts its next job anyway (see the module docs).
pub const BACKGROUND_YIELD: Duration = Duration::from_millis(250);

/// What the handles and the threads share.
#[derive(Debug, Default)]
struct Shared {
    queues: Mutex<Queues>,
    /// Signalled when a foreground job is queued or the pool closes.
    foreground_ready: Condvar,
    /// Signalled when a background job is queued or the pool closes.
    background_ready: Condvar,
    /// Jobs submitted and not yet started.
    queued: AtomicUsize,
    /// Jobs running now.
    busy: AtomicUsize,
    /// Worker threads of each kind: 0 for an inline pool.
    workers: usize,
    /// Queries scanning now (their [`ForegroundScan`]s).
    scans: AtomicUsize,
    /// Signalled when the last scan ends or the pool closes: what a job
    /// paused in [`yield_to_queries`] waits on (apart from
    /// `background_ready`, whose one wake-up per queued job it would
    /// otherwise take from an idle background thread).
    scans_ended: Condvar,
    /// Times a background thread held back a queued job, or paused a
    /// running one, for a query.
    yields: AtomicUsize,
    /// [`BACKGROUND_YIELD`], but for tests.
    yield_at_most: Duration,
    /// Jobs submitted since the pool started, of either kind.
    submitted: AtomicUsize,
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
    /// A pool of `workers` foreground threads (at least one), named
    /// `sluice-worker`, and as many background ones, `sluice-bg-work`;
    /// the handle submits foreground jobs.
    pub fn new(workers: usize) -> std::io::Result<Arc<WorkerPool>> {
        Self::yielding_at_most(workers, BACKGROUND_YIELD)
    }

    /// [`WorkerPool::new`] whose background threads wait for queries at
    /// most `yield_at_most` before each job.
    fn yielding_at_most(
        workers: usize,
        yield_at_most: Duration,
    ) -> std::io::Result<Arc<WorkerPool>> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            workers,
            yield_at_most,
            ..Shared::default()
        });
        let mut owner = Owner {
            shared: shared.clone(),
            threads: Vec::with_capacity(2 * workers),
        };
        for background in [false, true] {
            for _ in 0..workers {
                let shared = shared.clone();
                let name = if background {
                    "sluice-bg-work"
                } else {
                    "sluice-worker"
                };
                let thread = std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || {
                        if background {
                            lower_this_threads_priority();
                        }
                        work(&shared, background)
                    })?;
                owner.threads.push(thread);
            }
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

    /// A handle to the same pool whose jobs run on its background threads,
    /// at a lower priority: what compaction submits through.
    pub fn background(&self) -> Arc<WorkerPool> {
        Arc::new(WorkerPool {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
            background: true,
        })
    }

    /// Worker threads of each kind (those a handle's jobs run on): 0 for
    /// an inline pool.
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

    /// Times a background thread held a queued job back, or paused a
    /// running one ([`yield_to_queries`]), for a query to end.
    pub fn background_yields(&self) -> usize {
        self.shared.yields.load(Ordering::Relaxed)
    }

    /// Jobs submitted since the pool started, foreground and background
    /// (each one wakes a thread, unless they are all busy).
    pub fn submitted(&self) -> usize {
        self.shared.submitted.load(Ordering::Relaxed)
    }

    /// Mark a query scanning until the returned guard is dropped: the
    /// background threads start no job meanwhile, for at most
    /// [`BACKGROUND_YIELD`] each time (see the module docs).
    pub fn foreground_scan(&self) -> ForegroundScan {
        self.shared.scans.fetch_add(1, Ordering::SeqCst);
        ForegroundScan {
            shared: self.shared.clone(),
        }
    }

    /// Run `job` on a worker; its result is [`Task::wait`]ed for.
    pub fn submit<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Task<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let run = move || {
            // The submitter may have gone (a cursor dropped mid-scan).
            let _ = tx.send(job());
        };
        self.shared.submitted.fetch_add(1, Ordering::Relaxed);
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
        match self.background {
            true => self.shared.background_ready.notify_one(),
            false => self.shared.foreground_ready.notify_one(),
        }
        Task { result: rx }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A query scanning, from [`WorkerPool::foreground_scan`]: background
/// threads hold their jobs back until every such guard is dropped.
#[derive(Debug)]
pub struct ForegroundScan {
    shared: Arc<Shared>,
}

impl Drop for ForegroundScan {
    fn drop(&mut self) {
        if self.shared.scans.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the lock, so that no background thread is between its
            // check of `scans` and its wait. Only a thread holding back a
            // queued job waits for the scans to end on `background_ready`;
            // with none queued, the idle ones are left asleep (waking both
            // at the end of every query cost two switches on the other
            // core).
            let queues = self.shared.lock();
            if !queues.background.is_empty() {
                self.shared.background_ready.notify_all();
            }
            self.shared.scans_ended.notify_all();
        }
    }
}

/// Raise the calling thread's nice value by [`BACKGROUND_NICE`]. Where
/// the system refuses, the thread goes on at the process's priority:
/// compaction then only competes with queries, as it always did.
pub fn lower_this_threads_priority() {
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(err) = rustix::process::setpriority_process(Some(tid), now + BACKGROUND_NICE) {
        tracing::debug!(error = %err, "could not lower a background thread's priority");
    }
}

thread_local! {
    /// On a background thread running a job: its pool, and how much of
    /// the job's [`BACKGROUND_YIELD`] is left for [`yield_to_queries`].
    static RUNNING_BACKGROUND: std::cell::RefCell<Option<(Arc<Shared>, Duration)>> =
        const { std::cell::RefCell::new(None) };
}

/// Called by a long job between its steps: on a background thread, while
/// a query scans, wait until no query scans, for at most what is left of
/// the job's [`BACKGROUND_YIELD`]. Anywhere else (a foreground or inline
/// job, or no query), return at once.
pub fn yield_to_queries() {
    RUNNING_BACKGROUND.with_borrow_mut(|running| {
        let Some((shared, left)) = running.as_mut() else {
            return;
        };
        if left.is_zero() || shared.scans.load(Ordering::SeqCst) == 0 {
            return;
        }
        shared.yields.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut queues = shared.lock();
        loop {
            let waited = started.elapsed();
            if waited >= *left || shared.scans.load(Ordering::SeqCst) == 0 || queues.closed {
                *left = left.saturating_sub(waited);
                return;
            }
            queues = shared
                .scans_ended
                .wait_timeout(queues, *left - waited)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    });
}

/// A worker: take jobs from its queue (the background one if
/// `background`) until the pool closes and the queue is empty.
fn work(shared: &Arc<Shared>, background: bool) {
    let ready = match background {
        true => &shared.background_ready,
        false => &shared.foreground_ready,
    };
    // When this background thread began to hold its next job back.
    let mut yielding_since: Option<Instant> = None;
    loop {
        // The lock is held only to take one job, never while it runs.
        let job = {
            let mut queues = shared.lock();
            loop {
                if background
                    && !queues.background.is_empty()
                    && !queues.closed
                    && shared.scans.load(Ordering::SeqCst) > 0
                {
                    let since = *yielding_since.get_or_insert_with(|| {
                        shared.yields.fetch_add(1, Ordering::Relaxed);
                        Instant::now()
                    });
                    let left = shared.yield_at_most.saturating_sub(since.elapsed());
                    if !left.is_zero() {
                        queues = ready
                            .wait_timeout(queues, left)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                        continue;
                    }
                }
                let queue = match background {
                    true => &mut queues.background,
                    false => &mut queues.foreground,
                };
                if let Some(job) = queue.pop_front() {
                    yielding_since = None;
                    break job;
                }
                if queues.closed {
                    return;
                }
                queues = ready.wait(queues).unwrap_or_else(|p| p.into_inner());
            }
        };
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        shared.busy.fetch_add(1, Ordering::Relaxed);
        if background {
            RUNNING_BACKGROUND.set(Some((shared.clone(), shared.yield_at_most)));
        }
        // A panicking job drops its result sender: its task reports it.
        let _ = catch_unwind(AssertUnwindSafe(job));
        RUNNING_BACKGROUND.set(None);
        shared.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Closing the queues ends each worker after the jobs queued before.
        self.shared.lock().closed = true;
        self.shared.foreground_ready.notify_all();
        self.shared.background_ready.notify_all();
        self.shared.scans_ended.notify_all();
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

    /// A foreground job runs while every background thread is held, and
    /// background jobs run on their own threads, at a lower priority.
    #[test]
    fn foreground_jobs_never_wait_for_background_ones() {
        let pool = WorkerPool::new(1).unwrap();
        let background = pool.background();
        // Hold the one background thread, with another job queued behind.
        let (release, held) = mpsc::channel::<()>();
        let busy = background.submit(move || held.recv().ok());
        let queued = background.submit(|| {
            let tid = rustix::thread::gettid();
            let name = std::thread::current().name().unwrap_or("").to_string();
            (
                name,
                rustix::process::getpriority_process(Some(tid)).unwrap(),
            )
        });
        let query = pool.submit(|| {
            let tid = rustix::thread::gettid();
            let name = std::thread::current().name().unwrap_or("").to_string();
            (
                name,
                rustix::process::getpriority_process(Some(tid)).unwrap(),
            )
        });
        let (name, nice) = query.wait().unwrap();
        assert_eq!(name, "sluice-worker");
        release.send(()).unwrap();
        busy.wait().unwrap();
        let (background_name, background_nice) = queued.wait().unwrap();
        assert_eq!(background_name, "sluice-bg-work");
        // Where the system allows it (it always allows lowering one's own
        // priority, unless the thread is already at the lowest).
        if nice + BACKGROUND_NICE <= 19 {
            assert_eq!(background_nice, nice + BACKGROUND_NICE);
        }
    }

    /// Until background threads held jobs back `n` times (bounded: 10 s).
    fn wait_for_yields(pool: &WorkerPool, n: usize) {
        for _ in 0..10_000 {
            if pool.background_yields() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// While a query scans, a queued background job waits; it runs once
    /// the scan ends.
    #[test]
    fn background_jobs_wait_while_a_query_scans() {
        let pool = WorkerPool::yielding_at_most(1, Duration::from_secs(3600)).unwrap();
        let scan = pool.foreground_scan();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let job = pool.background().submit({
            let ran = ran.clone();
            move || ran.store(true, Ordering::SeqCst)
        });
        // The background thread has seen the job and held it back.
        wait_for_yields(&pool, 1);
        assert_eq!(pool.background_yields(), 1);
        // Foreground jobs still run.
        assert_eq!(pool.submit(|| 5).wait(), Ok(5));
        assert!(
            !ran.load(Ordering::SeqCst),
            "a background job ran during a scan"
        );
        drop(scan);
        job.wait().unwrap();
        assert!(ran.load(Ordering::SeqCst));
    }

    /// A query that never ends holds each background job back only for
    /// the pool's yield, then the job runs: compaction never stops.
    #[test]
    fn background_jobs_run_after_their_yield_during_an_endless_scan() {
        let pool = WorkerPool::yielding_at_most(2, Duration::from_millis(1)).unwrap();
        let _scan = pool.foreground_scan();
        let background = pool.background();
        let jobs: Vec<Task<u32>> = (0..20).map(|i| background.submit(move || i)).collect();
        let done: Vec<u32> = jobs.into_iter().map(|t| t.wait().unwrap()).collect();
        assert_eq!(done, (0..20).collect::<Vec<_>>());
        assert!(pool.background_yields() >= 1);
    }

    /// A background job already running when a query starts pauses at its
    /// next yield point until the scan ends; a foreground job never does.
    #[test]
    fn a_running_background_job_pauses_at_its_yield_point_during_a_scan() {
        let pool = WorkerPool::yielding_at_most(1, Duration::from_secs(3600)).unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let passed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let job = pool.background().submit({
            let passed = passed.clone();
            move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                yield_to_queries();
                passed.store(true, Ordering::SeqCst);
            }
        });
        started_rx.recv().unwrap();
        let scan = pool.foreground_scan();
        go_tx.send(()).unwrap();
        wait_for_yields(&pool, 1);
        assert_eq!(
            pool.background_yields(),
            1,
            "the job reached its yield point"
        );
        assert_eq!(
            pool.submit(|| {
                yield_to_queries();
                5
            })
            .wait(),
            Ok(5)
        );
        assert!(
            !passed.load(Ordering::SeqCst),
            "the job went on during the scan"
        );
        drop(scan);
        job.wait().unwrap();
        assert!(passed.load(Ordering::SeqCst));
    }

    /// A job paused at its yield point does not take the wake-up meant for
    /// an idle background thread: a job queued meanwhile is seen (and held
    /// back for the scan) by the idle thread at once.
    #[test]
    fn a_paused_job_leaves_queued_jobs_to_the_idle_threads() {
        let pool = WorkerPool::yielding_at_most(2, Duration::from_secs(3600)).unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let paused = pool.background().submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            yield_to_queries();
        });
        started_rx.recv().unwrap();
        let scan = pool.foreground_scan();
        go_tx.send(()).unwrap();
        wait_for_yields(&pool, 1);
        let queued = pool.background().submit(|| 7);
        wait_for_yields(&pool, 2);
        assert_eq!(
            pool.background_yields(),
            2,
            "the idle thread saw the queued job"
        );
        drop(scan);
        paused.wait().unwrap();
        assert_eq!(queued.wait(), Ok(7));
    }

    /// During a scan that never ends, a job's yield points together wait
    /// no longer than the pool's yield: the first spends it, and the rest
    /// return at once, so the job always finishes.
    #[test]
    fn a_jobs_yield_points_wait_at_most_the_yield_in_all() {
        let pool = WorkerPool::yielding_at_most(1, Duration::from_millis(20)).unwrap();
        let _scan = pool.foreground_scan();
        let job = pool.background().submit(|| {
            for _ in 0..1_000 {
                yield_to_queries();
            }
        });
        job.wait().unwrap();
        // One yield before the job started, one inside it.
        assert_eq!(pool.background_yields(), 2);
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
