//! Percentiles of latency samples.

use std::time::Duration;

/// A latency distribution, from samples in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
    pub max: Duration,
}

impl Latency {
    /// Sorts `samples` (nanoseconds) in place and summarises them.
    pub fn of(samples: &mut [u64]) -> Latency {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Latency {
            n: samples.len(),
            p50: Duration::from_nanos(percentile(samples, 50.0)),
            p99: Duration::from_nanos(percentile(samples, 99.0)),
            mean: Duration::from_nanos((sum / samples.len() as u128) as u64),
            max: Duration::from_nanos(*samples.last().expect("not empty")),
        }
    }

    /// From durations rather than nanoseconds (the process and cold-start rows).
    pub fn of_durations(samples: &[Duration]) -> Latency {
        let mut ns: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
        Latency::of(&mut ns)
    }
}

/// Nearest-rank percentile of sorted samples: a value that was actually observed,
/// which keeps p99 of a few thousand samples honest instead of interpolated.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds with one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
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
        let mut s: Vec<u64> = (1..=100).collect();
        let l = Latency::of(&mut s);
        assert_eq!(l.p50, Duration::from_nanos(50));
        assert_eq!(l.p99, Duration::from_nanos(99));
        assert_eq!(l.max, Duration::from_nanos(100));
        let mut one = vec![7];
        assert_eq!(Latency::of(&mut one).p99, Duration::from_nanos(7));
    }
}
