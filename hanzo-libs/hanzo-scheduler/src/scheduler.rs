//! The scheduler proper: a bounded priority queue, admission against the node's
//! capacity, one task per running job, cancellation.
//!
//! There is no dispatcher loop. Whatever changes the state (a submit, a job ending,
//! a cancel, a resume) takes the one lock, updates the queue and the resources in
//! use, and "pumps": starts every queued job that may start now, each in its own
//! task. Nothing polls and nothing sleeps; per job the cost is a few map operations
//! and a task spawn.

use crate::health::HealthCache;
use crate::throughput::Throughput;
use crate::{Hooks, Resources};
use hanzo_compute::config::ResourcesConfig;
use hanzo_compute::{
    CancelToken, Compute, ComputeError, Job, JobOutcome, JobSpec, RuntimeKind, Signing, Usage,
};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// How the scheduler behaves; [`Default`] gives the values documented per field.
#[derive(Debug, Clone)]
pub struct Options {
    /// Jobs that may wait in the queue (running ones not counted); a submit beyond it
    /// is refused with [`Rejection::QueueFull`]. Default 10,000.
    pub queue_capacity: usize,
    /// How many later jobs may start ahead of a queued job that does not fit yet
    /// (backfill) before the scheduler holds everything behind it until it fits.
    /// 0 is strict head-of-line order. Default 32.
    pub backfill_limit: u32,
    /// How far past a blocked head the scheduler looks for a job that fits, so that
    /// one event never scans a long queue. Default 64.
    pub backfill_window: usize,
    /// How long a runtime's health answer is trusted. Default 2 s.
    pub health_ttl: Duration,
    /// Whether executions get signed receipts. Default on.
    pub signing: Signing,
    /// The shortest `Retry-After` given with [`Rejection::QueueFull`]. Default 1 s
    /// (HTTP's resolution).
    pub min_retry_after: Duration,
    /// The longest `Retry-After`. Default 60 s.
    pub max_retry_after: Duration,
    /// Agents (CONTRACTS §10) a client started that may run at once. An agent holds
    /// no job slot, memory or CPU of the node: it waits on its model and on its tool
    /// calls, which are jobs holding their own, so an agent waiting on a child can
    /// never keep that child from starting. Agents started by agents (`Job::depth` >
    /// 0) take no place either: their root holds one. Default 8.
    pub max_agents: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue_capacity: 10_000,
            backfill_limit: 32,
            backfill_window: 64,
            health_ttl: Duration::from_secs(2),
            signing: Signing::On,
            min_retry_after: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            max_agents: 8,
        }
    }
}

/// Why a job was not accepted. Nothing was queued and no hook is called; the caller
/// answers its client (see [`status`](Rejection::status) for the HTTP mapping).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The queue is full; try again after `retry_after` (estimated from how fast jobs
    /// have been finishing). HTTP 429 with `Retry-After`.
    #[error("the job queue is full ({capacity} jobs waiting); retry after {} s", retry_after.as_secs())]
    QueueFull {
        /// When a retry has a fair chance, rounded up to whole seconds.
        retry_after: Duration,
        /// The queue's capacity.
        capacity: usize,
    },

    /// The job's limits exceed what the node has in all: it could never run here.
    #[error("the job can never run on this node: {0}")]
    TooLarge(String),

    /// The job's runtime is not enabled on this node, or its health check says it
    /// cannot run jobs now (no daemon, no toolchain); the reason says which.
    #[error("{0}")]
    RuntimeUnavailable(String),

    /// The job spec is malformed (`JobSpec::validate` failed).
    #[error("invalid job: {0}")]
    Invalid(String),

    /// A job with this id is already queued or running.
    #[error("a job with id {0} is already queued or running")]
    Duplicate(String),
}

impl Rejection {
    /// The HTTP status an API answers with: 429, 422, 503, 400, 409.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::QueueFull { .. } => 429,
            Rejection::TooLarge(_) => 422,
            Rejection::RuntimeUnavailable(_) => 503,
            Rejection::Invalid(_) => 400,
            Rejection::Duplicate(_) => 409,
        }
    }

    /// A stable machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::QueueFull { .. } => "queue_full",
            Rejection::TooLarge(_) => "too_large",
            Rejection::RuntimeUnavailable(_) => "runtime_unavailable",
            Rejection::Invalid(_) => "invalid_input",
            Rejection::Duplicate(_) => "duplicate",
        }
    }

    /// The matching [`ComputeError`], for recording the job as failed.
    pub fn to_compute_error(&self) -> ComputeError {
        match self {
            Rejection::RuntimeUnavailable(m) => ComputeError::Unavailable(m.clone()),
            Rejection::Invalid(m) => ComputeError::InvalidInput(m.clone()),
            other => ComputeError::InvalidInput(other.to_string()),
        }
    }
}

/// What [`Scheduler::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelResult {
    /// The job was queued; it is removed and will never start.
    /// [`Hooks::finished`] was called with `Cancelled` before this returned.
    Dequeued,
    /// The job is running (or about to): its cancel token fired and the runtime is
    /// stopping its instance, process or container. `finished` follows with the
    /// outcome (`Cancelled`, unless it finished first).
    Stopping,
    /// No such job is queued or running: unknown, or already finished.
    NotFound,
}

/// What [`Scheduler::resume`] did with the jobs it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Jobs put in the queue.
    pub queued: usize,
    /// Jobs that can no longer run here (runtime gone, too large, invalid); each got
    /// [`Hooks::finished`] with the reason.
    pub failed: usize,
    /// Jobs skipped because one with the same id is already queued or running.
    pub duplicates: usize,
}

/// Counters since the scheduler was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Jobs accepted into the queue (submitted or resumed).
    pub accepted: u64,
    /// Submits refused, by [`Rejection::code`].
    pub rejected: BTreeMap<&'static str, u64>,
    /// Jobs whose execution began (`starting` returned `true`).
    pub started: u64,
    /// Jobs that ran and ended, whatever the outcome.
    pub finished: u64,
    /// Jobs not run because `starting` returned `false`.
    pub skipped: u64,
    /// Jobs cancelled while queued.
    pub cancelled_queued: u64,
    /// Resumed jobs failed because they could no longer run.
    pub failed_unrunnable: u64,
}

/// A consistent picture of the scheduler, for metrics and `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Jobs waiting.
    pub queued: usize,
    /// Jobs waiting, per priority.
    pub queued_by_priority: BTreeMap<i32, usize>,
    /// The queue's capacity.
    pub queue_capacity: usize,
    /// Jobs holding resources (starting or running).
    pub running: usize,
    /// Running jobs per runtime.
    pub running_by_runtime: BTreeMap<RuntimeKind, usize>,
    /// Resources held by running jobs.
    pub in_use: Resources,
    /// What the node hands out in all.
    pub capacity: Resources,
    /// Counters since start.
    pub counters: Counters,
    /// Jobs finishing per second, recently (0 when unknown).
    pub throughput_per_sec: f64,
}

/// Queue order: highest priority first, then submission order.
type QueueKey = (Reverse<i32>, u64);

/// The agents' queue order: agents started by agents first (they take no place, so
/// nothing holds them), then as [`QueueKey`].
type AgentKey = (bool, Reverse<i32>, u64);

/// Where a queued job waits.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In the queue of jobs that hold resources.
    Jobs(QueueKey),
    /// In the agents' queue: agents hold none, so they wait apart and hold up no job.
    Agents(AgentKey),
}

struct Queued {
    job: Job,
    demand: Resources,
    /// Whether it takes one of the agent places ([`Options::max_agents`]).
    agent: bool,
    /// How many later jobs started ahead of this one while it did not fit.
    bypassed: u32,
}

struct Running {
    cancel: CancelToken,
    demand: Resources,
    agent: bool,
    runtime: RuntimeKind,
}

struct State {
    queue: BTreeMap<QueueKey, Queued>,
    /// Agents waiting: for an agent place ([`Options::max_agents`]) when a client
    /// started them, for nothing when an agent did. Apart from `queue`, so that an
    /// agent waiting for a place is never the head that holds up its own tool calls.
    agent_queue: BTreeMap<AgentKey, Queued>,
    queued_ids: HashMap<String, Place>,
    queued_by_priority: BTreeMap<i32, usize>,
    /// Outstanding [`Permit`]s: queue places promised but not yet filled.
    reserved: usize,
    running: HashMap<String, Running>,
    running_by_runtime: BTreeMap<RuntimeKind, usize>,
    in_use: Resources,
    /// Running jobs holding an agent place.
    agents: usize,
    next_seq: u64,
    counters: Counters,
    throughput: Throughput,
}

struct Inner {
    compute: Arc<Compute>,
    hooks: Arc<dyn Hooks>,
    options: Options,
    capacity: Resources,
    handle: Handle,
    health: HealthCache,
    state: Mutex<State>,
}

/// The scheduler and resource manager. Cheap to clone (all clones share one queue).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// A place in the queue, promised by [`Scheduler::reserve`]: the job was checked and
/// fits in the queue, and [`submit`](Permit::submit) cannot fail for lack of room.
/// This lets an API persist the job between the check and the enqueue without ever
/// holding an acknowledged job it cannot queue. Dropping it gives the place back.
pub struct Permit {
    inner: Arc<Inner>,
    used: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.used {
            self.inner.lock().reserved -= 1;
        }
    }
}

impl Permit {
    /// Queues `job` (the one whose spec was checked) in the promised place. Fails
    /// only if a job with the same id is already queued or running, or if `job`
    /// asks for more than the node has (a different spec than the one checked).
    pub fn submit(mut self, job: Job) -> Result<(), Rejection> {
        self.used = true;
        let demand = demand(&job);
        let inner = self.inner.clone();
        let starts = {
            let mut st = inner.lock();
            st.reserved -= 1;
            if let Some(why) = demand.exceeds(&inner.capacity) {
                return Err(inner.count_rejection(&mut st, Rejection::TooLarge(why)));
            }
            if st.queued_ids.contains_key(&job.id) || st.running.contains_key(&job.id) {
                return Err(inner.count_rejection(&mut st, Rejection::Duplicate(job.id)));
            }
            st.enqueue(job, demand);
            inner.pump(&mut st)
        };
        inner.spawn_all(starts);
        Ok(())
    }
}

impl Scheduler {
    /// A scheduler running jobs through `compute` within `resources`, reporting to
    /// `hooks`. Jobs run as tasks on the current tokio runtime.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn new(
        compute: Arc<Compute>,
        resources: ResourcesConfig,
        options: Options,
        hooks: Arc<dyn Hooks>,
    ) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                compute,
                hooks,
                capacity: Resources::capacity(&resources),
                handle: Handle::current(),
                health: HealthCache::new(options.health_ttl),
                options,
                state: Mutex::new(State {
                    queue: BTreeMap::new(),
                    agent_queue: BTreeMap::new(),
                    queued_ids: HashMap::new(),
                    queued_by_priority: BTreeMap::new(),
                    reserved: 0,
                    running: HashMap::new(),
                    running_by_runtime: BTreeMap::new(),
                    in_use: Resources::ZERO,
                    agents: 0,
                    next_seq: 0,
                    counters: Counters::default(),
                    throughput: Throughput::new(),
                }),
            }),
        }
    }

    /// What the node hands out in all.
    pub fn capacity(&self) -> Resources {
        self.inner.capacity
    }

    /// The registry jobs run through.
    pub fn compute(&self) -> &Arc<Compute> {
        &self.inner.compute
    }

    /// Checks a job and promises it a place in the queue: valid spec, fits the node's
    /// capacity at all, runtime available (health cached for
    /// [`Options::health_ttl`]), room in the queue.
    pub async fn reserve(&self, spec: &JobSpec) -> Result<Permit, Rejection> {
        let inner = &self.inner;
        if let Err(e) = inner.check(spec).await {
            let mut st = inner.lock();
            return Err(inner.count_rejection(&mut st, e));
        }
        let mut st = inner.lock();
        if st.queued() + st.reserved >= inner.options.queue_capacity {
            let e = Rejection::QueueFull {
                retry_after: inner.retry_after(&st),
                capacity: inner.options.queue_capacity,
            };
            return Err(inner.count_rejection(&mut st, e));
        }
        st.reserved += 1;
        Ok(Permit {
            inner: inner.clone(),
            used: false,
        })
    }

    /// Checks and queues `job` ([`reserve`](Self::reserve) then
    /// [`Permit::submit`]). It starts as soon as it is first in line and fits.
    pub async fn submit(&self, job: Job) -> Result<(), Rejection> {
        self.reserve(&job.spec).await?.submit(job)
    }

    /// Puts back jobs that were accepted before a restart (the store's recovery, in
    /// its order: priority, then age). They are queued even beyond the queue's
    /// capacity, since they were acknowledged; those that can no longer run here get
    /// [`Hooks::finished`] with the reason instead.
    pub async fn resume(&self, jobs: impl IntoIterator<Item = Job>) -> Resumed {
        let inner = &self.inner;
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for job in jobs {
            match inner.check(&job.spec).await {
                Ok(()) => ok.push(job),
                Err(e) => failed.push((job, e)),
            }
        }
        let mut report = Resumed {
            failed: failed.len(),
            ..Resumed::default()
        };
        // All in under one lock before pumping, so that the first job cannot start
        // ahead of a more urgent one later in the list.
        let starts = {
            let mut st = inner.lock();
            for job in ok {
                if st.queued_ids.contains_key(&job.id) || st.running.contains_key(&job.id) {
                    report.duplicates += 1;
                    continue;
                }
                let demand = demand(&job);
                st.enqueue(job, demand);
                report.queued += 1;
            }
            st.counters.failed_unrunnable += failed.len() as u64;
            inner.pump(&mut st)
        };
        inner.spawn_all(starts);
        for (job, why) in failed {
            let outcome = not_run(&job, why.to_compute_error());
            inner.hooks.finished(&job, &outcome).await;
        }
        report
    }

    /// Cancels a job: a queued one is removed (and `finished` called with
    /// `Cancelled`); a running one is told to stop through its cancel token, which
    /// every runtime honours by killing the instance, process or container.
    pub async fn cancel(&self, id: &str) -> CancelResult {
        let inner = &self.inner;
        let (job, starts) = {
            let mut st = inner.lock();
            if let Some(place) = st.queued_ids.remove(id) {
                let q = st.dequeue(place);
                st.counters.cancelled_queued += 1;
                // It may have been the blocked head holding others back.
                let starts = inner.pump(&mut st);
                (q.job, starts)
            } else if let Some(r) = st.running.get(id) {
                r.cancel.cancel();
                return CancelResult::Stopping;
            } else {
                return CancelResult::NotFound;
            }
        };
        inner.spawn_all(starts);
        job.cancel.cancel();
        // In a task of its own, so that the hook runs even if our caller goes away.
        let hooks = inner.hooks.clone();
        let task = inner.handle.spawn(async move {
            let outcome = not_run(&job, ComputeError::Cancelled);
            hooks.finished(&job, &outcome).await;
        });
        let _ = task.await;
        CancelResult::Dequeued
    }

    /// Whether a job with this id is queued or running.
    pub fn contains(&self, id: &str) -> bool {
        let st = self.inner.lock();
        st.queued_ids.contains_key(id) || st.running.contains_key(id)
    }

    /// The queue, the resources in use and the counters, consistent with each other.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.inner.lock();
        Snapshot {
            queued: st.queued(),
            queued_by_priority: st.queued_by_priority.clone(),
            queue_capacity: self.inner.options.queue_capacity,
            running: st.running.len(),
            running_by_runtime: st.running_by_runtime.clone(),
            in_use: st.in_use,
            capacity: self.inner.capacity,
            counters: st.counters.clone(),
            throughput_per_sec: st.throughput.rate(Instant::now()).unwrap_or(0.0),
        }
    }

    /// Forgets cached runtime health, e.g. after the operator started a daemon.
    pub fn refresh_health(&self) {
        self.inner.health.clear();
    }
}

impl State {
    /// Jobs waiting, in both queues.
    fn queued(&self) -> usize {
        self.queue.len() + self.agent_queue.len()
    }

    fn enqueue(&mut self, job: Job, demand: Resources) {
        let agent = takes_agent_place(&job);
        let (priority, seq) = (Reverse(job.spec.priority), self.next_seq);
        self.next_seq += 1;
        *self.queued_by_priority.entry(job.spec.priority).or_default() += 1;
        self.counters.accepted += 1;
        let id = job.id.clone();
        let q = Queued {
            job,
            demand,
            agent,
            bypassed: 0,
        };
        let place = if q.job.spec.runtime == RuntimeKind::Agent {
            let key = (agent, priority, seq);
            self.agent_queue.insert(key, q);
            Place::Agents(key)
        } else {
            let key = (priority, seq);
            self.queue.insert(key, q);
            Place::Jobs(key)
        };
        self.queued_ids.insert(id, place);
    }

    /// Removes a queued job (its id is already out of `queued_ids`).
    fn dequeue(&mut self, place: Place) -> Queued {
        let q = match place {
            Place::Jobs(key) => self.queue.remove(&key),
            Place::Agents(key) => self.agent_queue.remove(&key),
        }
        .expect("queued_ids and the queues agree");
        let prio = q.job.spec.priority;
        if let Some(n) = self.queued_by_priority.get_mut(&prio) {
            *n -= 1;
            if *n == 0 {
                self.queued_by_priority.remove(&prio);
            }
        }
        q
    }

    /// Takes a queued job's resources and moves it to `running`.
    fn admit(&mut self, place: Place) -> (Job, Resources) {
        let q = self.dequeue(place);
        self.queued_ids.remove(&q.job.id);
        self.in_use = self.in_use.plus(&q.demand);
        self.agents += usize::from(q.agent);
        *self.running_by_runtime.entry(q.job.spec.runtime).or_default() += 1;
        self.running.insert(
            q.job.id.clone(),
            Running {
                cancel: q.job.cancel.clone(),
                demand: q.demand,
                agent: q.agent,
                runtime: q.job.spec.runtime,
            },
        );
        (q.job, q.demand)
    }

    /// Gives back a running job's resources.
    fn release(&mut self, id: &str) {
        if let Some(r) = self.running.remove(id) {
            self.in_use = self.in_use.minus(&r.demand);
            self.agents -= usize::from(r.agent);
            if let Some(n) = self.running_by_runtime.get_mut(&r.runtime) {
                *n -= 1;
                if *n == 0 {
                    self.running_by_runtime.remove(&r.runtime);
                }
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code that can panic runs under this lock; should one ever, the state is
        // still consistent between statements, and the node must keep scheduling.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn check(&self, spec: &JobSpec) -> Result<(), Rejection> {
        spec.validate().map_err(|e| Rejection::Invalid(e.to_string()))?;
        if spec.runtime != RuntimeKind::Agent
            && let Some(why) = Resources::demand(&spec.limits).exceeds(&self.capacity)
        {
            return Err(Rejection::TooLarge(why));
        }
        self.health
            .check(&self.compute, spec.runtime)
            .await
            .map_err(Rejection::RuntimeUnavailable)
    }

    fn count_rejection(&self, st: &mut State, e: Rejection) -> Rejection {
        *st.counters.rejected.entry(e.code()).or_default() += 1;
        e
    }

    /// Time for the queue to drain at the recent completion rate, within the
    /// configured bounds, in whole seconds (rounded up); when nothing has finished
    /// yet to go by, 5 s.
    fn retry_after(&self, st: &State) -> Duration {
        let o = &self.options;
        let estimate = match st.throughput.rate(Instant::now()) {
            Some(rate) if rate > 0.0 => Duration::from_secs_f64((st.queued() as f64 / rate).min(86_400.0)),
            Some(_) => o.max_retry_after,
            None => Duration::from_secs(5),
        };
        let secs = estimate
            .clamp(o.min_retry_after, o.max_retry_after)
            .as_secs_f64()
            .ceil();
        Duration::from_secs(secs as u64)
    }

    /// Admits every job that may start now, in order; returns them for spawning
    /// (outside the lock).
    ///
    /// Rule: the first job in line starts when it fits. When it does not, jobs behind
    /// it (within [`Options::backfill_window`]) that fit may start ahead of it, but
    /// only [`Options::backfill_limit`] of them in all; after that nothing starts until
    /// it does, so a large job waits at most for that many small ones plus the jobs
    /// already running.
    fn pump(&self, st: &mut State) -> Vec<(Job, Resources)> {
        let mut starts = Vec::new();
        // Agents first: they hold none of the node's resources, so they hold up no
        // job. Those an agent started come first and need no place; then those a
        // client started, while places are free.
        while let Some((&key, q)) = st.agent_queue.first_key_value() {
            if q.agent && st.agents >= self.options.max_agents {
                break;
            }
            starts.push(st.admit(Place::Agents(key)));
        }
        loop {
            let room = self.capacity.minus(&st.in_use);
            if room.jobs == 0 {
                break;
            }
            let fits = |q: &Queued| q.demand.fits_in(&room);
            let Some((&head_key, head)) = st.queue.first_key_value() else {
                break;
            };
            if fits(head) {
                starts.push(st.admit(Place::Jobs(head_key)));
                continue;
            }
            if head.bypassed >= self.options.backfill_limit {
                break;
            }
            let Some(key) = st
                .queue
                .iter()
                .skip(1)
                .take(self.options.backfill_window)
                .find(|(_, q)| fits(q))
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(head) = st.queue.get_mut(&head_key) {
                head.bypassed += 1;
            }
            starts.push(st.admit(Place::Jobs(key)));
        }
        starts
    }

    fn spawn_all(self: &Arc<Self>, starts: Vec<(Job, Resources)>) {
        for (job, _) in starts {
            let inner = self.clone();
            self.handle.spawn(run(inner, job));
        }
    }
}

/// Frees a job's resources when dropped, whatever way its task ends (even by a
/// panicking hook), and starts whatever may start next.
struct Release {
    inner: Arc<Inner>,
    id: String,
    ran: Option<bool>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let starts = {
            let mut st = self.inner.lock();
            st.release(&self.id);
            match self.ran {
                Some(true) => st.counters.finished += 1,
                Some(false) => st.counters.skipped += 1,
                None => {}
            }
            st.throughput.record(Instant::now());
            self.inner.pump(&mut st)
        };
        self.inner.spawn_all(starts);
    }
}

/// One job's task: ask the hooks, run, free the resources, report.
async fn run(inner: Arc<Inner>, job: Job) {
    let mut release = Release {
        inner: inner.clone(),
        id: job.id.clone(),
        ran: None,
    };
    if !inner.hooks.starting(&job).await {
        release.ran = Some(false);
        return;
    }
    inner.lock().counters.started += 1;
    let outcome = if job.cancel.is_cancelled() {
        // Cancelled while `starting` was being recorded: nothing of it ran.
        not_run(&job, ComputeError::Cancelled)
    } else {
        // A runtime must never panic, but if one does the node keeps its resources
        // accounted for and the job still gets an outcome.
        let mut fut = std::pin::pin!(inner.compute.run_job(&job, inner.options.signing));
        let caught = std::future::poll_fn(|cx| {
            match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(Poll::Ready(o)) => Poll::Ready(Ok(o)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(panic) => Poll::Ready(Err(panic)),
            }
        })
        .await;
        caught.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            not_run(
                &job,
                ComputeError::internal(format!("the {} runtime panicked: {what}", job.spec.runtime)),
            )
        })
    };
    release.ran = Some(true);
    drop(release);
    inner.hooks.finished(&job, &outcome).await;
}

/// What a job holds while it runs. An agent holds nothing of the node's capacity
/// (see [`Options::max_agents`]); its tool calls are jobs that hold their own.
fn demand(job: &Job) -> Resources {
    if job.spec.runtime == RuntimeKind::Agent {
        Resources::ZERO
    } else {
        Resources::demand(&job.spec.limits)
    }
}

/// Whether a job takes one of the agent places: an agent a client started.
fn takes_agent_place(job: &Job) -> bool {
    job.spec.runtime == RuntimeKind::Agent && job.depth == 0
}

/// The outcome of a job that ran nothing: no usage, no logs, no receipt.
fn not_run(job: &Job, error: ComputeError) -> JobOutcome {
    JobOutcome {
        job_id: job.id.clone(),
        result: Err(error),
        usage: Usage::default(),
        logs: Vec::new(),
        receipt: None,
    }
}
