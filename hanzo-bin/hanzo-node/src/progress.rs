//! The image-pull progress bar on stderr (hidden when stderr is not a terminal, so
//! scripts and tests see only the contract's lines).

use hanzo_docker_runtime::{ProgressSink, PullProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// `-q`: no progress drawn at all (set once by `main`, read where bars are made).
pub static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether progress may be drawn: not with `-q` (a bar draws only on a terminal anyway).
pub fn wanted() -> bool {
    !QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// A sink that draws one bar for the whole pull: bytes done over bytes known, summed
/// across layers.
pub fn pull_bar() -> ProgressSink {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("pulling {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let layers: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    Arc::new(move |p: PullProgress| {
        let mut layers = layers.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(layer), Some(total)) = (&p.layer, p.total) {
            layers.insert(layer.clone(), (p.current.unwrap_or(0), total));
        }
        let (done, total) = layers.values().fold((0, 0), |(d, t), (c, n)| (d + c, t + n));
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(p.status.clone());
        if p.status.starts_with("Status:") || p.status.starts_with("Digest:") {
            bar.finish_and_clear();
        }
    })
}

/// How long a step must last before its spinner is drawn: a cached build, an
/// artifact already compiled, ends well before, and nothing flickers.
const SPINNER_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

/// A spinner on stderr naming the slow step a job waits on (compiling, building, uv
/// installing), when `enabled` (a terminal, and not -q); steps shorter than
/// [`SPINNER_DELAY`] are never drawn.
pub fn steps(enabled: bool) -> hanzo_compute::progress::Progress {
    use hanzo_compute::progress::Progress;
    if !enabled {
        return Progress::default();
    }
    #[derive(Default)]
    struct State {
        /// Which step is current; a delayed draw for an older one does nothing.
        generation: u64,
        active: bool,
        bar: Option<ProgressBar>,
    }
    let state: Arc<Mutex<State>> = Arc::default();
    Progress::new(move |step| {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.generation += 1;
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
        s.active = step.is_some();
        let Some(what) = step else { return };
        let (generation, what, state) = (s.generation, what.to_string(), state.clone());
        // A plain thread: the CLI's runtime is single-threaded and busy with the job.
        std::thread::spawn(move || {
            std::thread::sleep(SPINNER_DELAY);
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if s.active && s.generation == generation {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(what);
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                s.bar = Some(bar);
            }
        });
    })
}
