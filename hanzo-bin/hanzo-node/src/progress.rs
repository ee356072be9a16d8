//! The image-pull progress bar on stderr (hidden when stderr is not a terminal, so
//! scripts and tests see only the contract's lines).

use hanzo_docker_runtime::{ProgressSink, PullProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
