//! Limits: the timeout and cancellation kill the whole tree; memory and processes are
//! enforced by cgroups where the table says so (and only contained by rlimits
//! elsewhere); CPU shares reach the cgroup; peak memory is measured.

use crate::util::*;
use hanzo_compute::{CancelToken, LimitKind, ResourceLimits, Support};
use hanzo_sandbox::Exit;
use std::time::{Duration, Instant};

fn limits(f: impl FnOnce(&mut ResourceLimits)) -> ResourceLimits {
    let mut l = ResourceLimits::default();
    f(&mut l);
    l
}

fn support(mode: Mode, kind: LimitKind) -> Support {
    sandbox(mode)
        .limit_support()
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .unwrap()
        .1
}

#[tokio::test]
async fn the_timeout_kills_the_whole_tree() {
    for mode in ALL_MODES {
        let m = marker();
        for script in [
            format!("sleep {m} & sleep {m}"),
            // A shell that ignores the polite signals, busy.
            format!("trap '' TERM INT HUP; sleep {m} & while :; do :; done"),
        ] {
            let t = Instant::now();
            let o = run(mode, sh(&script).limits(limits(|l| l.timeout_ms = 300))).await;
            let took = t.elapsed();
            assert_eq!(o.exit, Exit::TimedOut, "{mode:?}: {script}: {}", err(&o));
            assert!(took >= Duration::from_millis(300), "{mode:?}: {took:?}");
            assert!(took < Duration::from_secs(3), "{mode:?}: stopped after {took:?}");
            assert_no_process(&m);
            assert!(o.result().unwrap_err().to_string().contains("300 ms"));
        }
    }
}

#[tokio::test]
async fn cancelling_kills_the_whole_tree() {
    for mode in ALL_MODES {
        let m = marker();
        let cancel = CancelToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.cancel();
        });
        let t = Instant::now();
        let o = sandbox(mode)
            .run(sh(&format!("sleep {m} & sleep {m}")), &cancel)
            .await;
        assert_eq!(o.exit, Exit::Cancelled, "{mode:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{mode:?}: {:?}",
            t.elapsed()
        );
        assert_no_process(&m);
        // A token that already fired runs nothing.
        let o = sandbox(mode).run(sh(&format!("sleep {m}")), &cancel).await;
        assert_eq!(o.exit, Exit::Cancelled);
    }
}

/// Python allocating (and touching) 10 MiB at a time, up to 400 MiB.
const HOG: &str =
    "chunks = []\nfor i in range(40):\n    chunks.append(bytearray(10 * 1024 * 1024))\nprint('survived')";

#[tokio::test]
async fn a_memory_hog_is_stopped_at_the_memory_limit() {
    for mode in ALL_MODES {
        let t = Instant::now();
        let o = run(mode, python(HOG).limits(limits(|l| l.memory_mb = 64))).await;
        match support(mode, LimitKind::Memory) {
            Support::Enforced => {
                assert_eq!(o.exit, Exit::MemoryLimit, "{mode:?}: {}", err(&o));
                let e = o.result().unwrap_err();
                assert!(e.to_string().contains("64 MiB"), "{e}");
            }
            // RLIMIT_DATA: the allocation fails inside the tool, which fails.
            _ => {
                assert_eq!(o.exit, Exit::Exited(1), "{mode:?}: {}", err(&o));
                assert!(err(&o).contains("MemoryError"), "{mode:?}: {}", err(&o));
            }
        }
        assert!(!out(&o).contains("survived"), "{mode:?}");
        eprintln!(
            "{mode:?}: memory hog under 64 MiB ended as {:?} after {:?}",
            o.exit,
            t.elapsed()
        );
    }
}

#[tokio::test]
async fn peak_memory_is_measured() {
    let code = "b = bytearray(48 * 1024 * 1024)\nprint(len(b))";
    for mode in ALL_MODES {
        let o = run(mode, python(code)).await;
        ok(mode, &o);
        if mode == Mode::BwrapOnly {
            // No cgroup, and bubblewrap's monitor does not reap the sandbox: unknown.
            assert_eq!(o.peak_memory_bytes, None);
            continue;
        }
        let peak = o.peak_memory_bytes.unwrap_or(0);
        assert!(
            (48 << 20..256 << 20).contains(&peak),
            "{mode:?}: peak {peak} bytes for a 48 MiB buffer"
        );
    }
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_the_host_can_still_fork() {
    for mode in ALL_MODES {
        // Never set off a bomb the mode cannot contain: it would exhaust the host's pids.
        assert_ne!(
            support(mode, LimitKind::Processes),
            Support::Unsupported,
            "{mode:?}"
        );
        let m = marker();
        // Every copy waits on its children, so the bomb keeps its processes alive.
        let script = format!("bomb() {{ bomb | bomb & wait; }}; sleep {m} & bomb; wait");
        let t = Instant::now();
        let o = run(
            mode,
            sh(&script)
                .pids_limit(32)
                .limits(limits(|l| l.timeout_ms = 3_000)),
        )
        .await;
        let took = t.elapsed();
        eprintln!("{mode:?}: fork bomb ended as {:?} after {took:?}", o.exit);
        match support(mode, LimitKind::Processes) {
            Support::Enforced => assert_eq!(o.exit, Exit::ProcessLimit, "{mode:?}"),
            _ => assert!(
                matches!(o.exit, Exit::TimedOut | Exit::Exited(_) | Exit::Signaled(_)),
                "{mode:?}: {:?}",
                o.exit
            ),
        }
        assert!(took < Duration::from_secs(10), "{mode:?}: {took:?}");
        assert_no_process(&m);
        let st = std::process::Command::new("/bin/true").status().unwrap();
        assert!(st.success(), "the host cannot fork after the bomb");
    }
}

#[tokio::test]
async fn the_process_limit_counts_every_process() {
    // 20 concurrent sleepers under a limit of 10 (cgroup modes; rlimits count the
    // whole user's processes, so only the cgroup can be this exact).
    for mode in [Mode::Full, Mode::CgroupsOnly] {
        let o = run(
            mode,
            sh("for i in $(seq 20); do sleep 5 & done; wait").pids_limit(10),
        )
        .await;
        assert_eq!(o.exit, Exit::ProcessLimit, "{mode:?}: {}", err(&o));
        let o = run(
            mode,
            sh("for i in $(seq 5); do sleep 0.1 & done; wait; echo ok").pids_limit(10),
        )
        .await;
        assert_eq!(ok(mode, &o).trim(), "ok", "{mode:?}");
    }
}

#[tokio::test]
async fn cpu_shares_reach_the_jobs_cgroup() {
    for mode in [Mode::Full, Mode::CgroupsOnly] {
        let sb = sandbox(mode);
        let parents = sb.cgroup_parents();
        let cpu_parent = parents
            .iter()
            .find(|p| p.join("..").join("cpu.shares").exists() || p.to_string_lossy().contains("/cpu"))
            .cloned()
            .unwrap_or_else(|| parents[0].clone());
        let prefix = format!("{}-", std::process::id());
        let watch = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                for e in std::fs::read_dir(&cpu_parent).unwrap().flatten() {
                    // Once the tool is in it, its limits are set.
                    let joined = std::fs::read_to_string(e.path().join("cgroup.procs"))
                        .is_ok_and(|p| !p.trim().is_empty());
                    if e.file_name().to_string_lossy().starts_with(&prefix) && joined {
                        for f in ["cpu.shares", "cpu.weight"] {
                            if let Ok(v) = std::fs::read_to_string(e.path().join(f)) {
                                return Some((f, v.trim().to_string()));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        });
        let o = run(mode, sh("sleep 0.5").limits(limits(|l| l.cpu_shares = 512))).await;
        ok(mode, &o);
        let seen = watch.await.unwrap().expect("the job's cgroup was never seen");
        let want = if seen.0 == "cpu.shares" { "512" } else { "20" };
        assert_eq!(seen.1, want, "{mode:?}: {}", seen.0);
    }
}

#[tokio::test]
async fn core_dumps_are_off_and_cpu_time_has_a_backstop() {
    for mode in ALL_MODES {
        let o = run(mode, sh("ulimit -c; ulimit -t")).await;
        let text = ok(mode, &o);
        let mut l = text.lines();
        assert_eq!(l.next(), Some("0"), "{mode:?}: core size");
        let cpu: u64 = l.next().unwrap().parse().unwrap();
        // 30 s of timeout on every CPU, plus one.
        assert!(cpu > 30, "{mode:?}: RLIMIT_CPU {cpu}");
    }
}
