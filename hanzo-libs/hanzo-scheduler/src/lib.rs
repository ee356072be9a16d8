//! # hanzo-scheduler
//!
//! The scheduler and resource manager of hanzo-node (see the README for the rules in
//! prose): jobs are checked at the door ([`Rejection`]: invalid, too large for the
//! node, runtime unavailable, queue full with a `Retry-After` estimate), wait in a
//! bounded priority queue (higher priority first, FIFO within a priority), and start
//! when their demand ([`Resources`]: one slot, `memory_mb`, `cpu_shares / 1024`
//! cores) fits in what `[compute.resources]` leaves free. Each job runs in its own
//! tokio task through [`hanzo_compute::Compute`]; its end frees its resources and
//! starts the next ones at once (no dispatcher loop, no polling).
//!
//! The job store and the HTTP API follow jobs through [`Hooks`]: `starting` (may
//! veto, so that a job runs only once its start is durable) and `finished`.
//!
//! ```no_run
//! # async fn f(compute: std::sync::Arc<hanzo_compute::Compute>, spec: hanzo_compute::JobSpec) {
//! use hanzo_scheduler::{NoHooks, Options, Scheduler};
//! let scheduler = Scheduler::new(compute, Default::default(), Options::default(), std::sync::Arc::new(NoHooks));
//! match scheduler.submit(hanzo_compute::Job::new(spec)).await {
//!     Ok(()) => {}
//!     Err(rejection) => eprintln!("{} {rejection}", rejection.status()),
//! }
//! # }
//! ```

#![warn(missing_docs)]

mod health;
mod hooks;
mod resources;
mod scheduler;
mod throughput;

pub use hooks::{Hooks, NoHooks};
pub use resources::Resources;
pub use scheduler::{CancelResult, Counters, Options, Permit, Rejection, Resumed, Scheduler, Snapshot};
