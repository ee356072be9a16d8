//! Prometheus text exposition of the node's jobs, queue and resources.

use hanzo_compute::RuntimeKind;
use hanzo_jobstore::Counts;
use hanzo_scheduler::Snapshot;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the job-duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Durations of the jobs that ran since the node started, per runtime.
#[derive(Default)]
pub(crate) struct Durations(Mutex<BTreeMap<RuntimeKind, Histogram>>);

impl Durations {
    pub(crate) fn observe(&self, runtime: RuntimeKind, secs: f64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let h = m.entry(runtime).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    fn snapshot(&self) -> BTreeMap<RuntimeKind, Histogram> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) fn render(
    counts: &Counts,
    snap: &Snapshot,
    durations: &Durations,
    health: &crate::hooks::StoreHealth,
) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "# HELP hanzo_jobs Jobs in the store by runtime and status.");
    let _ = writeln!(o, "# TYPE hanzo_jobs gauge");
    for ((runtime, status), n) in counts {
        let _ = writeln!(o, "hanzo_jobs{{runtime=\"{runtime}\",status=\"{status}\"}} {n}");
    }
    let gauges: [(&str, &str, u64); 9] = [
        (
            "hanzo_queue_depth",
            "Jobs waiting in the queue.",
            snap.queued as u64,
        ),
        (
            "hanzo_queue_capacity",
            "Jobs the queue holds at most.",
            snap.queue_capacity as u64,
        ),
        ("hanzo_jobs_running", "Jobs running now.", snap.running as u64),
        (
            "hanzo_resources_in_use_jobs",
            "Job slots in use.",
            snap.in_use.jobs,
        ),
        (
            "hanzo_resources_in_use_memory_mb",
            "Memory held by running jobs, MiB.",
            snap.in_use.memory_mb,
        ),
        (
            "hanzo_resources_in_use_cpu_millicores",
            "CPU held by running jobs, millicores.",
            snap.in_use.cpu_millicores,
        ),
        (
            "hanzo_resources_capacity_jobs",
            "Job slots in all.",
            snap.capacity.jobs,
        ),
        (
            "hanzo_resources_capacity_memory_mb",
            "Memory the node hands out, MiB.",
            snap.capacity.memory_mb,
        ),
        (
            "hanzo_resources_capacity_cpu_millicores",
            "CPU the node hands out, millicores.",
            snap.capacity.cpu_millicores,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP hanzo_jobs_rejected_total Submissions refused at the door, by code."
    );
    let _ = writeln!(o, "# TYPE hanzo_jobs_rejected_total counter");
    for (code, n) in &snap.counters.rejected {
        let _ = writeln!(o, "hanzo_jobs_rejected_total{{code=\"{code}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP hanzo_store_write_failures_total Job store writes that failed for good (after retries), by operation."
    );
    let _ = writeln!(o, "# TYPE hanzo_store_write_failures_total counter");
    let failures = health.failures();
    for op in ["start", "finish", "submit"] {
        let n = failures.get(op).copied().unwrap_or(0);
        let _ = writeln!(o, "hanzo_store_write_failures_total{{op=\"{op}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP hanzo_job_duration_seconds Wall time of jobs that ran, by runtime."
    );
    let _ = writeln!(o, "# TYPE hanzo_job_duration_seconds histogram");
    for (runtime, h) in durations.snapshot() {
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "hanzo_job_duration_seconds_bucket{{runtime=\"{runtime}\",le=\"{le}\"}} {}",
                h.counts[i]
            );
        }
        let _ = writeln!(
            o,
            "hanzo_job_duration_seconds_bucket{{runtime=\"{runtime}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            o,
            "hanzo_job_duration_seconds_sum{{runtime=\"{runtime}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            o,
            "hanzo_job_duration_seconds_count{{runtime=\"{runtime}\"}} {}",
            h.count
        );
    }
    out
}
