//! Docker runtime benchmark, in one run on the same daemon and image:
//!
//! - one-shot tool latency through the runtime (in process, receipts signed) against
//!   `docker run --rm -i` of the same image with the same params;
//! - throughput with 1, 2 and 8 jobs in flight.
//!
//! The image is built here from Debian's static busybox (`docker import`), so the run
//! needs no registry: `cargo run --release -p docker-bench`.

use anyhow::{Context, bail};
use hanzo_compute::config::DockerConfig;
use hanzo_compute::{Compute, JobSpec, NodeKey, RuntimeKind};
use hanzo_docker_runtime::{DockerOptions, DockerRuntime};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IMAGE: &str = "hanzo-bench/cat:1";
const SAMPLES: usize = 30;

fn sh(cmd: &str) -> anyhow::Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output()?;
    if !out.status.success() {
        bail!("`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A `cat` tool image: busybox with `cat` as its command (echoes params to stdout).
fn build_image() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("docker-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("root/bin"))?;
    std::fs::create_dir_all(dir.join("root/tmp"))?;
    std::fs::copy("/usr/bin/busybox", dir.join("root/bin/busybox")).context("needs busybox-static")?;
    std::os::unix::fs::symlink("busybox", dir.join("root/bin/cat"))?;
    sh(&format!(
        "tar -C {} -c . | docker import -c 'CMD [\"/bin/cat\"]' - {IMAGE} >/dev/null",
        dir.join("root").display()
    ))?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

const PARAMS: &str =
    r#"{"user":"alice","action":"score","values":[1,2,3,4,5],"note":"about a hundred bytes of params"}"#;

fn cli_once() -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new("docker")
        .args(["run", "--rm", "-i", "--network", "none", IMAGE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(PARAMS.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.stdout != PARAMS.as_bytes() {
        bail!("docker run returned {:?}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(t.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    sh("docker info >/dev/null").context("no Docker daemon: start dockerd first")?;
    build_image()?;
    let server = sh("docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})'")?;
    let rt = DockerRuntime::new(DockerOptions {
        config: DockerConfig {
            pull_policy: "never".into(),
            ..Default::default()
        },
        node_id: "docker-bench".into(),
    });
    let mut compute = Compute::new(Arc::new(NodeKey::generate()?));
    compute.register(Arc::new(rt));
    let compute = Arc::new(compute);
    let params: serde_json::Value = serde_json::from_str(PARAMS)?;
    let spec = JobSpec::new(RuntimeKind::Docker, IMAGE).params(params.clone());

    // Warm both paths (image cache, daemon state) before measuring.
    for _ in 0..3 {
        cli_once()?;
        compute.run(spec.clone()).await.result?;
    }
    // Interleave the two so drift in the daemon affects both alike.
    let (mut cli, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        cli.push(cli_once()?);
        let t = Instant::now();
        let out = compute.run(spec.clone()).await;
        ours.push(t.elapsed());
        if out.result? != params {
            bail!("wrong output");
        }
    }
    cli.sort();
    ours.sort();
    println!("# Docker runtime benchmark\n");
    println!("daemon: Docker {server}; image {IMAGE} (busybox cat); {SAMPLES} samples each, interleaved\n");
    println!("| path | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| `docker run --rm -i` (CLI) | {} | {} |",
        ms(percentile(&cli, 0.5)),
        ms(percentile(&cli, 0.99))
    );
    println!(
        "| hanzo-node Docker runtime (hardened, receipt signed) | {} | {} |",
        ms(percentile(&ours, 0.5)),
        ms(percentile(&ours, 0.99))
    );
    let ratio = percentile(&ours, 0.5).as_secs_f64() / percentile(&cli, 0.5).as_secs_f64();
    println!("\nratio ours/CLI at p50: {ratio:.2}x (target 0.7x or better)\n");

    println!("| jobs in flight | jobs | seconds | jobs/s |");
    println!("|---|---|---|---|");
    for in_flight in [1usize, 2, 8] {
        let total = 8 * in_flight.max(3);
        let t = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let mut tasks = Vec::new();
        for _ in 0..total {
            let (c, s, sem) = (compute.clone(), spec.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                c.run(s).await.result.is_ok()
            }));
        }
        let mut ok = 0;
        for task in tasks {
            ok += task.await? as usize;
        }
        let secs = t.elapsed().as_secs_f64();
        if ok != total {
            bail!("{} of {total} jobs failed", total - ok);
        }
        println!(
            "| {in_flight} | {total} | {secs:.2} | {:.1} |",
            total as f64 / secs
        );
    }
    Ok(())
}
