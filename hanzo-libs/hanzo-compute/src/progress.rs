//! What a job is waiting on before its tool runs: the slow first-run steps (compiling
//! a module, building a Go package, uv installing a tool's dependencies, deno fetching
//! them), announced by the runtimes so that a person at a terminal sees why `run`
//! takes a minute the first time.
//!
//! The runtimes announce every such step, cached or not; the listener (the CLI's
//! spinner) decides what is worth drawing (it shows only steps that last, on a
//! terminal). Nothing here reaches a receipt or the API: it is for people.

use std::fmt;
use std::sync::Arc;

type PhaseFn = dyn Fn(Option<&str>) + Send + Sync;

/// Where a job's phases go; the default listens to nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<PhaseFn>>);

impl Progress {
    /// A listener called with `Some(what)` when a step begins and `None` when it ends.
    pub fn new(f: impl Fn(Option<&str>) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(f)))
    }

    /// A step begins; the guard ends it when dropped (on every path out, errors
    /// included, so a failed build does not leave a spinner turning).
    pub fn step(&self, what: &str) -> Step {
        if let Some(f) = &self.0 {
            f(Some(what));
        }
        Step(self.0.clone())
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(active)"
        } else {
            "Progress(none)"
        })
    }
}

/// A step in progress; ends when dropped.
#[must_use = "the step ends when this guard is dropped"]
pub struct Step(Option<Arc<PhaseFn>>);

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            f(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_step_ends_when_its_guard_drops() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let p = {
            let seen = seen.clone();
            Progress::new(move |s| seen.lock().unwrap().push(s.map(str::to_string)))
        };
        {
            let _s = p.step("compiling");
        }
        fn fails(p: &Progress) -> Result<(), ()> {
            let _s = p.step("building");
            Err(())
        }
        assert!(fails(&p).is_err());
        assert_eq!(
            *seen.lock().unwrap(),
            [Some("compiling".into()), None, Some("building".into()), None]
        );
        // The default listens to nothing and costs nothing.
        drop(Progress::default().step("x"));
    }
}
