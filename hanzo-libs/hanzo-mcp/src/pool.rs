//! The warm servers: a server is started once and serves call after call, instead of
//! a process per call. Bounded (`max_servers` live at once, busy or idle), evicted when
//! idle too long, and never shared across what sets a server apart: its command line,
//! its environment, mounts, network and limits, and who asked (this node's jobs, or one
//! peer's), since a server keeps state between calls.
//!
//! A server serves one call at a time, so that a call's deadline, logs and output cap
//! are its own: a second call to the same server starts a second server, up to the
//! bound, past which it waits for one to come free (within its own deadline).

use crate::client::Server;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// What must be alike for two calls to share a server (canonical JSON).
pub(crate) type Key = String;

/// What waiting for a place gave.
pub(crate) enum Place {
    /// A place for a new server.
    Granted(OwnedSemaphorePermit),
    /// An idle server came back: look again (it may be the one wanted).
    Freed,
    /// The job was cancelled.
    Cancelled,
    /// The job's deadline passed.
    Deadline,
}

struct Idle {
    key: Key,
    server: Server,
    since: Instant,
}

/// The warm servers of one runtime.
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
    slots: Arc<Semaphore>,
    /// Told when a server is given back (it holds its place while idle).
    returned: tokio::sync::Notify,
    idle_timeout: Duration,
    reaper: std::sync::Once,
}

impl Pool {
    pub(crate) fn new(max_servers: usize, idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max_servers.max(1))),
            returned: tokio::sync::Notify::new(),
            idle_timeout,
            reaper: std::sync::Once::new(),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many servers are idle and how many are alive in all.
    pub(crate) fn counts(&self, max_servers: usize) -> (usize, usize) {
        let idle = self.idle().len();
        (
            idle,
            max_servers - self.slots.available_permits().min(max_servers),
        )
    }

    /// An idle server of `key` that is still alive, most recently used first; dead ones
    /// met on the way are dropped (which kills what is left of them).
    pub(crate) fn take(&self, key: &Key) -> Option<Server> {
        let mut idle = self.idle();
        while let Some(i) = idle.iter().rposition(|i| &i.key == key) {
            let entry = idle.remove(i);
            if entry.server.alive() {
                return Some(entry.server);
            }
        }
        None
    }

    /// A place for one more server, by `deadline`: a free one, else the place of the
    /// longest-idle server (of any key), else the first to come free; or word that an
    /// idle server came back meanwhile (the caller looks for one of its own first).
    pub(crate) async fn place(&self, deadline: Instant, cancel: &hanzo_compute::CancelToken) -> Place {
        loop {
            // Registered before looking, so a return in between is not missed.
            let returned = self.returned.notified();
            if let Ok(p) = self.slots.clone().try_acquire_owned() {
                return Place::Granted(p);
            }
            let oldest = {
                let mut idle = self.idle();
                let i = idle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.since)
                    .map(|(i, _)| i);
                i.map(|i| idle.remove(i))
            };
            match oldest {
                // Its permit comes free once it is stopped.
                Some(entry) => {
                    entry.server.stop(None).await;
                }
                None => {
                    return tokio::select! {
                        p = self.slots.clone().acquire_owned() => match p {
                            Ok(p) => Place::Granted(p),
                            Err(_) => Place::Deadline,
                        },
                        _ = returned => Place::Freed,
                        _ = cancel.cancelled() => Place::Cancelled,
                        _ = tokio::time::sleep_until(deadline) => Place::Deadline,
                    };
                }
            }
        }
    }

    /// Gives a server back after a call that left it healthy.
    pub(crate) fn put(self: &Arc<Pool>, key: Key, server: Server) {
        self.idle().push(Idle {
            key,
            server,
            since: Instant::now(),
        });
        self.returned.notify_waiters();
        self.reaper.call_once(|| {
            let pool = Arc::downgrade(self);
            let every = (self.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(30));
            tokio::spawn(reap(pool, every));
        });
    }
}

/// Stops servers idle for longer than the pool's timeout, until the pool is gone.
async fn reap(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let expired: Vec<Idle> = {
            let mut idle = pool.idle();
            let now = Instant::now();
            let (old, keep): (Vec<Idle>, Vec<Idle>) = idle
                .drain(..)
                .partition(|i| now.duration_since(i.since) >= pool.idle_timeout || !i.server.alive());
            *idle = keep;
            old
        };
        drop(pool);
        for i in expired {
            i.server.stop(None).await;
        }
    }
}
