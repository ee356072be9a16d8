//! What a job asks of the node while it runs, and what the node has in all.

use hanzo_compute::ResourceLimits;
use hanzo_compute::config::ResourcesConfig;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of the three resources admission counts: job slots, memory and CPU.
///
/// Used both for one job's demand and for the node's capacity and use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Job slots (`max_concurrent_jobs`); every job takes one.
    pub jobs: u64,
    /// Memory in MiB (`memory_mb` of a job; `total_memory_gb` × 1024 for the node).
    pub memory_mb: u64,
    /// CPU in thousandths of a core: a job's `cpu_shares` / 1024 cores, rounded up
    /// (`total_cpu_cores` × 1000 for the node).
    pub cpu_millicores: u64,
}

impl Resources {
    /// Nothing at all.
    pub const ZERO: Resources = Resources {
        jobs: 0,
        memory_mb: 0,
        cpu_millicores: 0,
    };

    /// What a job with these limits holds while it runs: one slot, its memory
    /// ceiling, and `cpu_shares / 1024` cores (1024 shares, Docker's "one normal
    /// share", counts as one core).
    pub fn demand(limits: &ResourceLimits) -> Resources {
        Resources {
            jobs: 1,
            memory_mb: limits.memory_mb,
            cpu_millicores: (u64::from(limits.cpu_shares) * 1000).div_ceil(1024),
        }
    }

    /// What the node hands out in all (`[compute.resources]`).
    pub fn capacity(config: &ResourcesConfig) -> Resources {
        Resources {
            jobs: u64::from(config.max_concurrent_jobs),
            memory_mb: config.total_memory_gb().saturating_mul(1024),
            cpu_millicores: u64::from(config.total_cpu_cores()) * 1000,
        }
    }

    /// Whether `self` fits in `room` on all three counts.
    pub fn fits_in(&self, room: &Resources) -> bool {
        self.jobs <= room.jobs
            && self.memory_mb <= room.memory_mb
            && self.cpu_millicores <= room.cpu_millicores
    }

    /// `self + other` (saturating).
    pub fn plus(&self, other: &Resources) -> Resources {
        Resources {
            jobs: self.jobs.saturating_add(other.jobs),
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            cpu_millicores: self.cpu_millicores.saturating_add(other.cpu_millicores),
        }
    }

    /// `self - other` (saturating at zero).
    pub fn minus(&self, other: &Resources) -> Resources {
        Resources {
            jobs: self.jobs.saturating_sub(other.jobs),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            cpu_millicores: self.cpu_millicores.saturating_sub(other.cpu_millicores),
        }
    }

    /// Why `self` (a job's demand) can never fit in `capacity`, naming the first
    /// resource it exceeds and the setting behind it; `None` if it can.
    pub fn exceeds(&self, capacity: &Resources) -> Option<String> {
        if self.jobs > capacity.jobs {
            return Some(format!(
                "the node runs no jobs at all ([compute.resources] max_concurrent_jobs = {})",
                capacity.jobs
            ));
        }
        if self.memory_mb > capacity.memory_mb {
            return Some(format!(
                "the job asks for {} MiB of memory (limits.memory_mb) but the node has {} MiB in all \
                 ([compute.resources] total_memory_gb = {})",
                self.memory_mb,
                capacity.memory_mb,
                capacity.memory_mb / 1024
            ));
        }
        if self.cpu_millicores > capacity.cpu_millicores {
            return Some(format!(
                "the job asks for {} CPU cores (limits.cpu_shares / 1024) but the node has {} in all \
                 ([compute.resources] total_cpu_cores = {})",
                Millis(self.cpu_millicores),
                capacity.cpu_millicores / 1000,
                capacity.cpu_millicores / 1000
            ));
        }
        None
    }
}

/// Thousandths printed as a decimal ("1.5").
struct Millis(u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:03}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_counts_shares_as_fractions_of_a_core() {
        let mut l = ResourceLimits::default();
        assert_eq!(Resources::demand(&l).cpu_millicores, 1000);
        l.cpu_shares = 512;
        assert_eq!(Resources::demand(&l).cpu_millicores, 500);
        // Rounded up: a job never counts as free.
        l.cpu_shares = 1;
        assert_eq!(Resources::demand(&l).cpu_millicores, 1);
        assert_eq!(Resources::demand(&l).jobs, 1);
        assert_eq!(Resources::demand(&l).memory_mb, 256);
    }

    /// 10 slots, 16 GiB, 8 cores: set here, since the defaults are the machine's.
    fn sixteen_gib_eight_cores() -> ResourcesConfig {
        ResourcesConfig {
            max_concurrent_jobs: 10,
            total_memory_gb: Some(16),
            total_cpu_cores: Some(8),
            ..ResourcesConfig::default()
        }
    }

    #[test]
    fn capacity_comes_from_the_config() {
        let c = Resources::capacity(&sixteen_gib_eight_cores());
        assert_eq!(
            c,
            Resources {
                jobs: 10,
                memory_mb: 16 * 1024,
                cpu_millicores: 8000
            }
        );
    }

    #[test]
    fn exceeds_names_the_resource_and_setting() {
        let cap = Resources::capacity(&sixteen_gib_eight_cores());
        let mut l = ResourceLimits {
            memory_mb: 32 * 1024,
            ..Default::default()
        };
        let m = Resources::demand(&l).exceeds(&cap).unwrap();
        assert!(m.contains("memory") && m.contains("total_memory_gb = 16"), "{m}");
        l.memory_mb = 256;
        l.cpu_shares = 9 * 1024 + 512;
        let m = Resources::demand(&l).exceeds(&cap).unwrap();
        assert!(
            m.contains("9.5 CPU cores") && m.contains("total_cpu_cores = 8"),
            "{m}"
        );
        l.cpu_shares = 8 * 1024;
        assert_eq!(Resources::demand(&l).exceeds(&cap), None);
    }
}
