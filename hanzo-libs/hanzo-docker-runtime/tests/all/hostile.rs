//! Hostile tools: each tries to break out of a limit or the sandbox, and must be stopped
//! with the right error while the host (and the next job) stay fine.

use crate::util::*;
use hanzo_compute::config::DockerConfig;
use hanzo_compute::{ComputeError, Job, LimitKind, Network, Signing};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_tool_times_out_and_its_container_is_removed() {
    let node = Node::new();
    for spec in [
        echo_job("spin"),                                    // a busy loop in PID 2 (under the init)
        script_job("sleep 1000"),                            // a process sleeping in a syscall
        script_job("trap '' TERM INT; while :; do :; done"), // a shell that ignores signals
    ] {
        let mut spec = spec;
        spec.limits.timeout_ms = 500;
        let t = Instant::now();
        let out = node.run(spec).await;
        let took = t.elapsed();
        let msg = expect_limit(&out, LimitKind::Timeout);
        assert!(msg.contains("500 ms"), "{msg}");
        assert!(took < Duration::from_secs(10), "stopped after {took:?}");
        assert!(out.receipt.is_some(), "a timed-out run is receipted");
        assert_gone(&out.job_id);
        eprintln!("timeout of 500 ms: the job ended after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_hits_the_memory_limit() {
    let node = Node::new();
    // busybox `tail` keeps a line without end in memory: 500 MB of zeros under 32 MiB.
    let mut spec = script_job("head -c 500m /dev/zero | tail");
    spec.limits.memory_mb = 32;
    spec.limits.timeout_ms = 30_000;
    let t = Instant::now();
    let out = node.run(spec).await;
    let msg = expect_limit(&out, LimitKind::Memory);
    assert!(msg.contains("32 MiB"), "{msg}");
    eprintln!("busybox memory hog under 32 MiB stopped after {:?}", t.elapsed());
    // The verdict does not rest on the daemon's OOMKilled flag alone (it races with the
    // exit on a loaded host): the node read the container's memory cgroup while it ran,
    // and saw it reach the limit. Where this host shows the cgroup, that read is known.
    if let Some(peak) = out.usage.peak_memory_bytes {
        assert!(peak >= 31 << 20, "peak {peak} bytes is not at the 32 MiB limit");
    } else {
        assert!(
            !cgroup_visible(),
            "the host shows docker's cgroups, yet the memory hog's peak was not read"
        );
    }
    assert_gone(&out.job_id);

    // The same with the echo tools' `grow`, and the node is still fine afterwards.
    let mut spec = echo_job("grow");
    spec.limits.memory_mb = 32;
    let out = node.run(spec).await;
    expect_limit(&out, LimitKind::Memory);
    assert_gone(&out.job_id);
    let out = node.run(echo_job("run").params(json!({"after": "oom"}))).await;
    assert_eq!(expect_ok(&out), json!({"after": "oom"}));
}

/// Whether this host shows docker's container cgroups where the runtime looks (cgroup
/// v1 or v2, cgroupfs or systemd driver).
fn cgroup_visible() -> bool {
    [
        "/sys/fs/cgroup/memory/docker",
        "/sys/fs/cgroup/memory/system.slice",
        "/sys/fs/cgroup/system.slice",
        "/sys/fs/cgroup/docker",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).is_dir())
}

/// `pids.current` of a container's cgroup, where this host's layout is known.
fn pids_current(container: &str) -> Option<u64> {
    [
        format!("/sys/fs/cgroup/pids/docker/{container}/pids.current"),
        format!("/sys/fs/cgroup/pids/system.slice/docker-{container}.scope/pids.current"),
        format!("/sys/fs/cgroup/system.slice/docker-{container}.scope/pids.current"),
        format!("/sys/fs/cgroup/docker/{container}/pids.current"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .and_then(|s| s.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_contained() {
    let node = Node::new();
    let mut spec = script_job("bomb() { bomb | bomb & }; bomb; sleep 60; echo '{}'");
    spec.limits.timeout_ms = 5_000;
    let job = Job::new(spec);
    let t = Instant::now();
    let compute = node.compute.clone();
    let run = {
        let job = job.clone();
        tokio::spawn(async move { compute.run_job(&job, Signing::On).await })
    };
    // Watch the container's process count from the host while the bomb goes off.
    let container = wait_for_container(&job.id, Duration::from_secs(20)).await;
    let mut peak = 0;
    while !run.is_finished() {
        if let Some(n) = pids_current(&container) {
            peak = peak.max(n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = run.await.unwrap();
    let took = t.elapsed();
    eprintln!(
        "fork bomb: ended after {took:?} with {:?}; peak pids.current seen from the host: {peak}",
        out.result
    );
    // The kernel's pids.events shows the limit refused forks, so the job is named
    // for it (exit 3, "processes").
    expect_limit(&out, LimitKind::Processes);
    assert!(
        took < Duration::from_secs(30),
        "the bomb was stopped after {took:?}"
    );
    assert!(peak <= 256, "the pids limit (256) was exceeded: {peak}");
    assert_gone(&job.id);
    // The host can still fork.
    let status = std::process::Command::new("true")
        .status()
        .expect("the host can fork");
    assert!(status.success());
    let out = node.run(echo_job("run").params(json!({"after": "bomb"}))).await;
    assert_eq!(expect_ok(&out), json!({"after": "bomb"}));
}

/// A TCP server on every host address that answers each connection with one line.
struct HostServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostServer {
    fn start() -> HostServer {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            let _ = conn.write_all(b"hanzo-net-ok\n");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        HostServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_is_off_unless_granted() {
    let node = Node::new();
    let server = HostServer::start();
    let port = server.port;

    // Control: with the network granted, the tool reaches the host through its gateway,
    // so the refusals below are the sandbox's doing, not an unreachable server.
    let mut spec = script_job(&format!(
        r#"gw=$(ip route | awk '/^default/ {{print $3}}'); r=$(nc -w 3 "$gw" {port} </dev/null) || {{ echo "nc to $gw failed" >&2; exit 1; }}; printf '{{"gateway":"%s","reply":"%s"}}' "$gw" "$r""#
    ));
    spec.network = Network::Full;
    let out = node.run(spec).await;
    let reached = expect_ok(&out);
    assert_eq!(reached["reply"], "hanzo-net-ok");
    let gateway = reached["gateway"].as_str().unwrap().to_string();

    // Default: only a loopback interface, and every connection fails.
    for target in [gateway.as_str(), "127.0.0.1"] {
        let out = node
            .run(script_job(&format!(
                r#"echo "interfaces: $(awk -F: 'NR > 2 {{gsub(/ /, "", $1); printf "%s ", $1}}' /proc/net/dev)" >&2; if r=$(nc -w 3 {target} {port} </dev/null 2>&1); then printf '{{"reply":"%s"}}' "$r"; else echo "no connection to {target}: $r" >&2; exit 1; fi"#
            )))
            .await;
        let msg = expect_tool_failure(&out);
        assert!(msg.contains(&format!("no connection to {target}")), "{msg}");
        let logs = String::from_utf8_lossy(&out.logs);
        assert!(logs.contains("interfaces: lo \n"), "{logs}");
        eprintln!("network none, {target}: {msg}");
        assert_gone(&out.job_id);
    }
}

const FS_PROBE: &str = r#"if touch /x 2>/dev/null; then r=true; else r=false; fi; if touch /tmp/x; then t=true; else t=false; fi; cp /bin/busybox /tmp/bb; if /tmp/bb true 2>/dev/null; then e=true; else e=false; fi; m=$(awk '$2 == "/" {print $4}' /proc/mounts | cut -d, -f1); printf '{"root_writable":%s,"tmp_writable":%s,"tmp_exec":%s,"root_mount":"%s"}' $r $t $e $m"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_filesystem_is_read_only_and_tmp_is_writable_scratch() {
    let node = Node::new();
    // As the default user, and as root: a root without capabilities owns `/` and could
    // write there but for the read-only mount.
    for user in [None, Some("0:0")] {
        let mut spec = script_job(FS_PROBE);
        spec.user = user.map(str::to_string);
        let out = node.run(spec).await;
        assert_eq!(
            expect_ok(&out),
            json!({"root_writable": false, "tmp_writable": true, "tmp_exec": false, "root_mount": "ro"}),
            "user {user:?}"
        );
        assert_gone(&out.job_id);
    }
}

const DISK_PROBE: &str = r#"if head -c 20000000 /dev/zero > /tmp/f 2>/dev/null; then w=true; else w=false; fi; printf '{"wrote_20mb":%s,"file_kb":%s,"tmp_size_kb":%s}' $w $(du -k /tmp/f | cut -f1) $(df -k /tmp | awk 'NR == 2 {print $2}')"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_space_is_bounded_by_disk_mb() {
    let node = Node::new();
    let mut spec = script_job(DISK_PROBE);
    spec.limits.disk_mb = 8;
    let out = node.run(spec).await;
    let probe = expect_ok(&out);
    eprintln!("disk_mb 8: {probe}");
    assert_eq!(probe["wrote_20mb"], false);
    assert_eq!(probe["tmp_size_kb"], 8 * 1024);
    assert!(probe["file_kb"].as_u64().unwrap() <= 8 * 1024);
    assert_gone(&out.job_id);
}

/// `disk_mb: 0` must not turn into a tmpfs `size=0`, which the kernel reads as "no limit".
/// Either the job is refused as bad input, or its /tmp really holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_disk_mb_is_not_unlimited_scratch() {
    let node = Node::new();
    let mut spec = script_job(DISK_PROBE);
    spec.limits.disk_mb = 0;
    let out = node.run(spec).await;
    match &out.result {
        Err(ComputeError::InvalidInput(_)) => {}
        Ok(probe) => assert_eq!(
            probe["wrote_20mb"], false,
            "disk_mb 0 gave an unlimited /tmp: {probe}"
        ),
        Err(other) => panic!("unexpected {other:?}"),
    }
    assert_gone(&out.job_id);
}

const PRIVS_PROBE: &str = r#"p=$(grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status | awk '{printf "\"%s\":\"%s\",", substr($1, 1, length($1) - 1), $2}'); printf '{%s"uid":"%s","gid":"%s","groups":"%s"}' "$p" "$(id -u)" "$(id -g)" "$(id -G)""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capabilities_and_an_unprivileged_user() {
    let node = Node::new();
    for (user, uid) in [(None, "65534"), (Some("0:0"), "0")] {
        let mut spec = script_job(PRIVS_PROBE);
        spec.user = user.map(str::to_string);
        let out = node.run(spec).await;
        let p: BTreeMap<String, String> = serde_json::from_value(expect_ok(&out)).unwrap();
        eprintln!("user {user:?}: {p:?}");
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(p[cap], "0000000000000000", "{cap} as {user:?}");
        }
        assert_eq!(p["NoNewPrivs"], "1");
        assert_eq!(p["Seccomp"], "2", "the daemon's seccomp filter is on");
        assert_eq!(p["uid"], uid);
        assert_eq!(p["gid"], uid);
        assert_eq!(p["groups"], uid, "no supplementary groups");
        assert_gone(&out.job_id);
    }
}

/// One value of a container's cgroup, trying the cgroup v1 (cgroupfs driver) and v2
/// (systemd or cgroupfs driver) layouts; `file` is `controller/file` for v1.
fn cgroup_value(container: &str, file: &str) -> Option<String> {
    let (controller, name) = file.split_once('/').unwrap_or(("", file));
    [
        format!("/sys/fs/cgroup/{controller}/docker/{container}/{name}"),
        format!("/sys/fs/cgroup/system.slice/docker-{container}.scope/{name}"),
        format!("/sys/fs/cgroup/docker/{container}/{name}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

/// What the kernel applied to the container: cgroup v1 or v2, whichever this host runs.
fn assert_kernel_limits(id: &str, memory: i64) {
    if let Some(limit) = cgroup_value(id, "memory/memory.limit_in_bytes") {
        assert_eq!(limit, memory.to_string());
        if let Some(memsw) = cgroup_value(id, "memory/memory.memsw.limit_in_bytes") {
            assert_eq!(
                memsw,
                memory.to_string(),
                "memory plus swap equals memory: no swap"
            );
        }
        assert_eq!(cgroup_value(id, "pids/pids.max").as_deref(), Some("100"));
        assert_eq!(cgroup_value(id, "cpu/cpu.shares").as_deref(), Some("512"));
        assert_eq!(cgroup_value(id, "cpu/cpu.cfs_quota_us").as_deref(), Some("50000"));
        eprintln!("cgroup v1 limits checked");
    } else if let Some(limit) = cgroup_value(id, "memory.max") {
        assert_eq!(limit, memory.to_string());
        if let Some(swap) = cgroup_value(id, "memory.swap.max") {
            assert_eq!(swap, "0", "no swap");
        }
        assert_eq!(cgroup_value(id, "pids.max").as_deref(), Some("100"));
        assert_eq!(cgroup_value(id, "cpu.max").as_deref(), Some("50000 100000"));
        eprintln!("cgroup v2 limits checked");
    } else {
        eprintln!("note: this host's cgroup layout is unknown; the kernel's limits were not read");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_sees_a_hardened_container() {
    let node = Node::with_config(DockerConfig {
        pids_limit: 100,
        ..test_config()
    });
    let mut spec = script_job("sleep 60");
    spec.limits.memory_mb = 64;
    spec.limits.cpu_shares = 512;
    spec.limits.disk_mb = 16;
    spec.limits.timeout_ms = 60_000;
    let job = Job::new(spec);
    let compute = node.compute.clone();
    let run = {
        let job = job.clone();
        tokio::spawn(async move { compute.run_job(&job, Signing::On).await })
    };
    let id = wait_for_container(&job.id, Duration::from_secs(20)).await;
    // Listed once created; inspect it once started.
    let c = &wait_until_running(&id, Duration::from_secs(20)).await;
    let h = &c["HostConfig"];
    let mib = 1024 * 1024;
    assert_eq!(h["NetworkMode"], "none");
    assert_eq!(h["CapDrop"], json!(["ALL"]));
    assert!(h["CapAdd"].is_null(), "{}", h["CapAdd"]);
    assert_eq!(h["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(h["Privileged"], false);
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["PidsLimit"], 100);
    assert_eq!(h["Memory"], 64 * mib);
    assert_eq!(h["MemorySwap"], 64 * mib);
    assert_eq!(h["CpuShares"], 512);
    assert_eq!(h["CpuPeriod"], 100_000);
    assert_eq!(h["CpuQuota"], 50_000);
    assert_eq!(h["Init"], true);
    assert!(h["Binds"].is_null(), "{}", h["Binds"]);
    assert!(
        h["Devices"].is_null() || h["Devices"] == json!([]),
        "{}",
        h["Devices"]
    );
    let tmpfs = h["Tmpfs"]["/tmp"].as_str().unwrap();
    assert!(tmpfs.contains("size=16m") && tmpfs.contains("noexec"), "{tmpfs}");
    let cfg = &c["Config"];
    assert_eq!(cfg["User"], "65534:65534");
    assert_eq!(cfg["NetworkDisabled"], true);
    let labels = &cfg["Labels"];
    assert_eq!(labels["hanzo.managed"], "true");
    assert_eq!(labels["hanzo.node"], node.id.as_str());
    assert_eq!(labels["hanzo.job"], job.id.as_str());
    assert_eq!(labels["hanzo.kind"], "tool");
    assert_eq!(c["Name"], format!("/hanzo-tool-{}", job.id));
    assert_kernel_limits(&id, 64 * mib);
    job.cancel.cancel();
    let out = run.await.unwrap();
    assert_eq!(out.result.unwrap_err(), ComputeError::Cancelled);
    assert_gone(&job.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_past_the_cap_is_an_output_limit() {
    let node = Node::new();
    let mut spec = script_job("yes 'an endless stream of output'");
    spec.limits.max_output_bytes = 1 << 20;
    spec.limits.timeout_ms = 30_000;
    let t = Instant::now();
    let out = node.run(spec).await;
    let msg = expect_limit(&out, LimitKind::Output);
    assert!(msg.contains("1048576"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert_gone(&out.job_id);
    eprintln!("endless stdout capped at 1 MiB after {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_process_does_not_keep_the_job_alive() {
    let node = Node::new();
    // The background sleep keeps stdout open; when the tool's main process exits, the
    // init ends and takes the sleep with it.
    let mut spec = script_job(r#"sleep 100 & echo '{"main": "done"}'"#);
    spec.limits.timeout_ms = 20_000;
    let t = Instant::now();
    let out = node.run(spec).await;
    assert_eq!(expect_ok(&out), json!({"main": "done"}));
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert_gone(&out.job_id);
}
