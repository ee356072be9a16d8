//! What the sandbox costs: `run()` of `/bin/true` and of `python3 -c pass` in each mode,
//! against the same program started bare (fork, exec, wait), plus `Sandbox::detect`.
//!
//! ```sh
//! cargo run --release -p hanzo-sandbox --example overhead [RUNS]
//! ```
//!
//! Prints the median, 90th percentile and mean wall time per run, and each mode's
//! ratio to bare. Run it on a quiet machine: the figures are milliseconds.

use hanzo_compute::CancelToken;
use hanzo_sandbox::{Options, ProcessSpec, Sandbox};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Stats {
    median: f64,
    p90: f64,
    mean: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Stats {
        median: ms(v[v.len() / 2]),
        p90: ms(v[v.len() * 9 / 10]),
        mean: v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64,
    }
}

fn bare(program: &str, args: &[&str], runs: usize) -> Stats {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        v.push(t.elapsed());
        assert!(st.success());
    }
    stats(v)
}

async fn sandboxed(sb: &Sandbox, program: &str, args: &[&str], runs: usize) -> Stats {
    let mut v = Vec::with_capacity(runs);
    let cancel = CancelToken::new();
    for _ in 0..runs {
        let spec = ProcessSpec::new(program).args(args.iter().copied());
        let t = Instant::now();
        let o = sb.run(spec, &cancel).await;
        v.push(t.elapsed());
        assert!(
            o.success(),
            "{:?}: {}",
            o.exit,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    stats(v)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let modes = [
        ("bubblewrap + cgroups", true, true),
        ("bubblewrap only", true, false),
        ("cgroups only", false, true),
        ("plain (rlimits)", false, false),
    ];
    let mut sandboxes = Vec::new();
    for (name, bwrap, cgroups) in modes {
        let t = Instant::now();
        let sb = Sandbox::detect_with(Options {
            allow_bwrap: bwrap,
            allow_cgroups: cgroups,
            ..Options::default()
        });
        println!(
            "detect ({name}): {:.1} ms -> {}",
            t.elapsed().as_secs_f64() * 1000.0,
            sb.describe()
        );
        sandboxes.push((name, sb));
    }
    println!("\n{runs} runs each; wall time per run in ms (median / p90 / mean), ratio of medians to bare\n");
    for (program, args) in [("/bin/true", vec![]), ("/usr/bin/python3", vec!["-c", "pass"])] {
        // Warm the page cache and the allocator before measuring.
        bare(program, &args, 5);
        let base = bare(program, &args, runs);
        println!(
            "{program} {}\n  {:<22} {:>7.2} {:>7.2} {:>7.2}",
            args.join(" "),
            "bare",
            base.median,
            base.p90,
            base.mean
        );
        for (name, sb) in &sandboxes {
            sandboxed(sb, program, &args, 5).await;
            let s = sandboxed(sb, program, &args, runs).await;
            println!(
                "  {:<22} {:>7.2} {:>7.2} {:>7.2}   x{:.2}  (+{:.2} ms)",
                name,
                s.median,
                s.p90,
                s.mean,
                s.median / base.median,
                s.median - base.median
            );
        }
    }
}
