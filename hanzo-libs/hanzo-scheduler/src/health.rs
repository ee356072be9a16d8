//! A short-lived cache of runtime health, so that admission does not probe a
//! runtime (a Docker daemon round trip, a toolchain lookup) for every job.

use hanzo_compute::{Compute, RuntimeKind};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry {
    checked: Instant,
    /// `Err(reason)` when the runtime said it is unavailable.
    result: Result<(), String>,
    /// Someone is probing the runtime now; others use the cached answer meanwhile.
    refreshing: bool,
}

pub(crate) struct HealthCache {
    ttl: Duration,
    entries: Mutex<HashMap<RuntimeKind, Entry>>,
}

/// Clears `refreshing` if the probe is dropped half-way (the caller's future was
/// cancelled), so that the entry does not stay stale for ever.
struct Probe<'a> {
    cache: &'a HealthCache,
    kind: RuntimeKind,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.cache.lock().get_mut(&self.kind) {
            e.refreshing = false;
        }
    }
}

impl HealthCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        HealthCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RuntimeKind, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` if `kind` is registered and its (cached) health says available, else why
    /// not.
    pub(crate) async fn check(&self, compute: &Compute, kind: RuntimeKind) -> Result<(), String> {
        let Some(runtime) = compute.runtime(kind) else {
            return Err(format!("the {kind} runtime is not enabled on this node"));
        };
        {
            let mut entries = self.lock();
            if let Some(e) = entries.get_mut(&kind) {
                if e.refreshing || e.checked.elapsed() < self.ttl {
                    return e.result.clone();
                }
                e.refreshing = true;
            }
        }
        let _probe = Probe { cache: self, kind };
        let health = runtime.health().await;
        let result = if health.available {
            Ok(())
        } else {
            Err(format!(
                "the {kind} runtime is unavailable: {}",
                health.detail.as_deref().unwrap_or("no reason given")
            ))
        };
        self.lock().insert(
            kind,
            Entry {
                checked: Instant::now(),
                result: result.clone(),
                refreshing: true, // cleared by `_probe` on the way out
            },
        );
        result
    }

    /// Forgets every cached answer (the next check probes again).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}
