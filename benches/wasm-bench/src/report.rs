//! The markdown report.

use crate::env::Facts;
use crate::stats::{Latency, ms, us};
use std::fmt::Write;
use std::time::Duration;

/// How the run was set up.
pub struct Method {
    pub params: &'static str,
    pub calls: usize,
    pub warmup: usize,
    pub rounds: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub throughput_calls: usize,
    pub cold_runs: usize,
    pub pooling: bool,
    pub keep_resident: usize,
    /// Whether our runtime (and so the floor) resets slots with `PAGEMAP_SCAN`.
    pub pagemap_scan: bool,
}

/// Executions per second.
pub struct Throughput {
    pub signed: f64,
    /// 3a's receipts over its signatures (batch signing).
    pub receipts_per_signature: f64,
    pub unsigned: f64,
    /// 3b with one worker.
    pub unsigned_one: f64,
    pub floor: f64,
    /// 3c with one thread.
    pub floor_one: f64,
    /// The floor with wasmtime's default pool settings.
    pub floor_defaults: f64,
    pub extism: f64,
}

/// The in-process cold start, over `runs` fresh runtimes.
pub struct Cold {
    pub create: Latency,
    pub first_call: Latency,
    pub total: Latency,
    /// `compilations()` of every cold runtime, summed: must be 0.
    pub compilations: u64,
}

/// The whole CLI process.
pub struct Cli {
    pub run: Latency,
    pub version: Latency,
    /// Whether the precompiled artifact was left untouched by the timed runs.
    pub artifact_reused: bool,
}

pub struct Results {
    pub facts: Facts,
    pub load_start: String,
    pub load_end: String,
    /// The share of the machine's CPU other processes used during the run.
    pub others: Option<f64>,
    pub method: Method,
    pub signed: Latency,
    pub unsigned: Latency,
    pub floor: Latency,
    pub floor_defaults: Latency,
    pub floor_reused: Latency,
    pub extism: Latency,
    pub extism_fresh: Latency,
    pub signature: Latency,
    pub ring_signature: Latency,
    pub throughput: Throughput,
    pub cold: Cold,
    pub cli: Cli,
    pub elapsed: Duration,
}

/// The ratio target for ours (no signing) over the floor, at p50.
pub const FLOOR_RATIO_TARGET: f64 = 2.0;
/// The first-call target.
pub const FIRST_CALL_TARGET: Duration = Duration::from_millis(5);
/// Issue 17: a signed call costs at most this times (unsigned call + one signature).
pub const SIGNED_OVERHEAD_TARGET: f64 = 1.1;
/// Issue 17: signed throughput at least this share of Extism's.
pub const THROUGHPUT_SHARE_TARGET: f64 = 0.5;
/// Issue 17: `run wasm` within this many times `--version`.
pub const CLI_RATIO_TARGET: f64 = 1.5;

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn rate(r: f64) -> String {
    // Thousands separated, so 123456 reads at a glance.
    let n = r.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn render(r: &Results) -> String {
    let f = &r.facts;
    let m = &r.method;
    let mut s = String::new();
    // `write!` to a String cannot fail.
    let mut w = |line: String| {
        let _ = writeln!(s, "{line}");
    };
    w("## hanzo-node WASM runtime benchmark".into());
    w(String::new());
    w(format!(
        "- **Machine:** {}, nproc {}, {} RAM, Linux {}; load average (1/5/15 min) {} at start, {} at end; \
         other processes (and hypervisor steal) used {} of the machine's CPU during the run",
        f.cpu,
        f.nproc,
        f.memory,
        f.kernel,
        r.load_start,
        r.load_end,
        r.others
            .map_or("an unknown share".into(), |o| format!("{:.0}%", o * 100.0))
    ));
    w(format!(
        "- **Software:** hanzo-node {} (git {}), wasmtime {}, extism {} (guest extism-pdk {}), {}",
        f.node_version, f.git, f.wasmtime, f.extism, f.extism_pdk, f.rustc
    ));
    w(format!(
        "- **Workload:** the `echo` example's `run` (exports ABI, wasm32-wasip1, release) with {}-byte params \
         `{}`; Extism runs `benches/extism-echo`, which parses and re-serialises the same JSON",
        m.params.len(),
        m.params
    ));
    w(format!(
        "- **Method:** latency rows: {} timed calls each after {} warm-up calls, interleaved in {} rounds so \
         background load hits every row alike; ours on a tokio current_thread runtime, the floor and Extism \
         on the calling thread. Pooling allocator in our runtime: {}; ours and the floor keep {} MiB of each \
         memory and table resident and reset the pages a guest wrote (`PAGEMAP_SCAN`: {}). Total run time {:.0} s.",
        m.calls,
        m.warmup,
        m.rounds,
        if m.pooling { "yes" } else { "**no** (fell back)" },
        m.keep_resident >> 20,
        if m.pagemap_scan {
            "yes"
        } else if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            "**no**: swap is on, so all kept-resident bytes are reset"
        } else {
            "**no**: not available on this kernel, so all kept-resident bytes are reset"
        },
        r.elapsed.as_secs_f64()
    ));
    w(String::new());

    w("### Warm latency, one call at a time".into());
    w(String::new());
    w("| # | path | p50 µs | p99 µs | mean µs | p50 vs floor |".into());
    w("|---|---|---:|---:|---:|---:|".into());
    let rows = [
        ("1", "ours: `compute.run(spec)`, receipt signed", &r.signed),
        ("2", "ours: `compute.run_job(&job, Signing::Off)`", &r.unsigned),
        (
            "4",
            "bare wasmtime floor: fresh instance per call, our pool settings, no limits/JSON/receipt",
            &r.floor,
        ),
        (
            "4a",
            "the floor with wasmtime's default pool settings (context)",
            &r.floor_defaults,
        ),
        (
            "4b",
            "bare wasmtime, one instance reused for every call (context)",
            &r.floor_reused,
        ),
        (
            "5",
            "Extism: `plugin.call::<&str, &str>(\"run\", params)`, plugin reused",
            &r.extism,
        ),
        (
            "5b",
            "Extism: a fresh `Plugin::new_from_compiled` per call (our isolation)",
            &r.extism_fresh,
        ),
        (
            "—",
            "component: ed25519 signature of one receipt (`NodeKey::sign_hex`, ed25519-dalek)",
            &r.signature,
        ),
        (
            "—",
            "component: the same signature with ring (context)",
            &r.ring_signature,
        ),
    ];
    for (n, name, l) in rows {
        // A component is part of a call, not an alternative to one.
        let vs_floor = match n {
            "—" => "—".to_string(),
            _ => format!("{:.2}x", ratio(l.p50, r.floor.p50)),
        };
        w(format!(
            "| {n} | {name} | {} | {} | {} | {vs_floor} |",
            us(l.p50),
            us(l.p99),
            us(l.mean),
        ));
    }
    w(String::new());

    w(format!(
        "### Throughput (3a, 3b and 3e take turns, two rounds of {} executions each; the other rows run {} at once, the 1-worker rows half)",
        rate((m.throughput_calls / 4) as f64),
        rate(m.throughput_calls as f64)
    ));
    w(String::new());
    w("| # | path | executions/s |".into());
    w("|---|---|---:|".into());
    let t = &r.throughput;
    let tasks = format!(
        "tokio multi_thread ({} workers), {} tasks in flight",
        m.workers, m.concurrency
    );
    w(format!(
        "| 3a | ours, receipt signed; {tasks}; {:.1} receipts per signature | {} |",
        t.receipts_per_signature,
        rate(t.signed)
    ));
    w(format!(
        "| 3b | ours, `Signing::Off`; {tasks} | {} |",
        rate(t.unsigned)
    ));
    w(format!(
        "| 3b₁ | 3b with 1 worker (scaling reference) | {} |",
        rate(t.unsigned_one)
    ));
    w(format!(
        "| 3c | bare wasmtime floor (our pool settings), {} OS threads (context) | {} |",
        m.workers,
        rate(t.floor)
    ));
    w(format!(
        "| 3c₁ | 3c with 1 OS thread (scaling reference) | {} |",
        rate(t.floor_one)
    ));
    w(format!(
        "| 3d | the floor with wasmtime's default pool settings (nothing kept resident, no pagemap scan), \
         {} OS threads (context) | {} |",
        m.workers,
        rate(t.floor_defaults)
    ));
    w(format!(
        "| 3e | Extism, {} OS threads with one plugin each (context) | {} |",
        m.workers,
        rate(t.extism)
    ));
    w(String::new());

    w("### First call after a restart, module already in the store".into());
    w(String::new());
    w("| # | measure | p50 ms | max ms | runs |".into());
    w("|---|---|---:|---:|---:|".into());
    let c = &r.cold;
    w(format!(
        "| 6a | `WasmRuntime::new` over the existing data dir | {} | {} | {} |",
        ms(c.create.p50),
        ms(c.create.max),
        c.create.n
    ));
    w(format!(
        "| 6b | first call on that runtime (`compute.run`, signed) | {} | {} | {} |",
        ms(c.first_call.p50),
        ms(c.first_call.max),
        c.first_call.n
    ));
    w(format!(
        "| 6a+b | runtime creation to first result | {} | {} | {} |",
        ms(c.total.p50),
        ms(c.total.max),
        c.total.n
    ));
    w(format!(
        "| 6c | whole process: `hanzo-node run wasm sha256:… --params …` | {} | {} | {} |",
        ms(r.cli.run.p50),
        ms(r.cli.run.max),
        r.cli.run.n
    ));
    w(format!(
        "| — | whole process: `hanzo-node --version` (process floor) | {} | {} | {} |",
        ms(r.cli.version.p50),
        ms(r.cli.version.max),
        r.cli.version.n
    ));
    w(String::new());
    w(format!(
        "`compilations()` summed over the {} cold runtimes: **{}**. CLI runs reused the stored artifact \
         (not rewritten): **{}**.",
        m.cold_runs,
        c.compilations,
        if r.cli.artifact_reused { "yes" } else { "no" }
    ));
    w(String::new());

    w("### Targets".into());
    w(String::new());
    w("| target | figure | |".into());
    w("|---|---:|---|".into());
    let floor_ratio = ratio(r.unsigned.p50, r.floor.p50);
    w(format!(
        "| ours without signing / floor, p50 ≤ {FLOOR_RATIO_TARGET:.0}x | {floor_ratio:.2}x (p99 {:.2}x) | {} |",
        ratio(r.unsigned.p99, r.floor.p99),
        met(floor_ratio <= FLOOR_RATIO_TARGET)
    ));
    w(format!(
        "| first call after restart < {} ms (6b) | {} ms p50, {} ms max | {} |",
        FIRST_CALL_TARGET.as_millis(),
        ms(c.first_call.p50),
        ms(c.first_call.max),
        met(c.first_call.p50 < FIRST_CALL_TARGET)
    ));
    w(format!(
        "| no compilation on a cold runtime | {} | {} |",
        c.compilations,
        met(c.compilations == 0)
    ));
    let unsigned_vs_extism = (
        ratio(r.unsigned.p50, r.extism.p50),
        ratio(r.unsigned.p99, r.extism.p99),
    );
    w(format!(
        "| ours without signing below Extism's reused plugin, p50 and p99 (#17) | {:.2}x, {:.2}x | {} |",
        unsigned_vs_extism.0,
        unsigned_vs_extism.1,
        met(unsigned_vs_extism.0 < 1.0 && unsigned_vs_extism.1 < 1.0)
    ));
    let signed_overhead = ratio(r.signed.p50, r.unsigned.p50 + r.signature.p50);
    w(format!(
        "| signed ≤ {SIGNED_OVERHEAD_TARGET}x (unsigned + one signature), p50 (#17) | {signed_overhead:.2}x | {} |",
        met(signed_overhead <= SIGNED_OVERHEAD_TARGET)
    ));
    let share = t.signed / t.extism;
    w(format!(
        "| signed throughput ≥ {THROUGHPUT_SHARE_TARGET}x Extism's (#17) | {share:.2}x | {} |",
        met(share >= THROUGHPUT_SHARE_TARGET)
    ));
    let cli_ratio = ratio(r.cli.run.p50, r.cli.version.p50);
    w(format!(
        "| `run wasm` ≤ {CLI_RATIO_TARGET}x `--version`, p50 (#17) | {cli_ratio:.2}x | {} |",
        met(cli_ratio <= CLI_RATIO_TARGET)
    ));
    w(format!(
        "| ours (signed) vs Extism, p50 | {:.2}x | no target |",
        ratio(r.signed.p50, r.extism.p50)
    ));
    w(format!(
        "| ours (no signing) vs Extism, p50 | {:.2}x | no target |",
        ratio(r.unsigned.p50, r.extism.p50)
    ));
    w(format!(
        "| ours (no signing) vs Extism with a fresh plugin per call, p50 | {:.2}x | no target |",
        ratio(r.unsigned.p50, r.extism_fresh.p50)
    ));
    w(format!(
        "| cost of a signed receipt and a new job per call, p50 (row 1 − row 2) | {} µs | no target |",
        us(r.signed.p50.saturating_sub(r.unsigned.p50))
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_grouped() {
        assert_eq!(rate(0.4), "0");
        assert_eq!(rate(999.0), "999");
        assert_eq!(rate(1000.0), "1,000");
        assert_eq!(rate(123_456.7), "123,457");
    }
}
