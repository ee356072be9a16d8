//! Percentiles of latency samples.

use std::time::Duration;

/// A latency distribution.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub n: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub mean: Duration,
    pub max: Duration,
}

impl Latency {
    /// Summarises `samples` (any order).
    pub fn of(samples: &[Duration]) -> Latency {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort_unstable();
        let sum: Duration = s.iter().sum();
        Latency {
            n: s.len(),
            p50: percentile(&s, 50.0),
            p90: percentile(&s, 90.0),
            p99: percentile(&s, 99.0),
            mean: sum / s.len() as u32,
            max: *s.last().expect("not empty"),
        }
    }
}

/// Nearest-rank percentile of sorted samples: a value that was actually observed.
/// With fewer than 100 samples p99 is the largest one.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&s);
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p90, Duration::from_millis(90));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        let few: Vec<Duration> = [3, 1, 2].map(Duration::from_millis).to_vec();
        let l = Latency::of(&few);
        assert_eq!(l.p50, Duration::from_millis(2));
        assert_eq!(l.p99, Duration::from_millis(3));
        assert_eq!(l.mean, Duration::from_millis(2));
    }
}
