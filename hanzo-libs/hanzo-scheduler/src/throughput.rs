//! Recent completion rate, for the `Retry-After` estimate of a full queue.

use std::time::{Duration, Instant};

/// Completions are counted in windows of this length; each closed window moves the
/// estimate halfway to its own rate, so the figure follows a changing load within a
/// couple of seconds without jumping on one odd window.
const WINDOW: Duration = Duration::from_millis(500);

pub(crate) struct Throughput {
    window_start: Instant,
    count: u64,
    /// Jobs per second; 0 until a first window closed.
    rate: f64,
}

impl Throughput {
    pub(crate) fn new() -> Self {
        Throughput {
            window_start: Instant::now(),
            count: 0,
            rate: 0.0,
        }
    }

    /// One job left the node (finished, or was found unrunnable).
    pub(crate) fn record(&mut self, now: Instant) {
        self.count += 1;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            let r = self.count as f64 / elapsed.as_secs_f64();
            self.rate = if self.rate == 0.0 {
                r
            } else {
                (self.rate + r) / 2.0
            };
            self.count = 0;
            self.window_start = now;
        }
    }

    /// Jobs per second recently; `None` if nothing finished yet to tell.
    pub(crate) fn rate(&self, now: Instant) -> Option<f64> {
        let elapsed = now.saturating_duration_since(self.window_start).as_secs_f64();
        let current = if elapsed > 0.0 {
            self.count as f64 / elapsed
        } else {
            0.0
        };
        if self.rate == 0.0 {
            // No closed window yet: the open one is all there is.
            return (self.count > 0).then_some(current);
        }
        if elapsed >= 2.0 * WINDOW.as_secs_f64() {
            // Nothing (or little) finished for a while: the old rate is too hopeful.
            return Some(self.rate.min(current));
        }
        Some(self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_follows_completions_and_decays_when_they_stop() {
        let t0 = Instant::now();
        let mut t = Throughput {
            window_start: t0,
            count: 0,
            rate: 0.0,
        };
        assert_eq!(t.rate(t0), None);
        // 100 jobs over 1 s.
        for i in 1..=100 {
            t.record(t0 + Duration::from_millis(10 * i));
        }
        let r = t.rate(t0 + Duration::from_millis(1000)).unwrap();
        assert!((90.0..=110.0).contains(&r), "{r}");
        // Then nothing for 10 s: the estimate falls.
        let r = t.rate(t0 + Duration::from_secs(11)).unwrap();
        assert!(r < 1.0, "{r}");
    }
}
