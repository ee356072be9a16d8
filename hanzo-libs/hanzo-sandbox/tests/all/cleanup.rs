//! Nothing of a job survives `run()`: no process (however it detached), no work
//! directory, no cgroup; not even when the caller drops the run half-way.

use crate::util::*;
use hanzo_compute::{CancelToken, ResourceLimits};
use hanzo_sandbox::{Options, Sandbox};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_child_left_running_after_exit_is_killed() {
    for mode in ALL_MODES {
        let m = marker();
        let o = run(mode, sh(&format!("sleep {m} & echo '{{}}'"))).await;
        assert_eq!(o.result().unwrap(), serde_json::json!({}), "{mode:?}");
        // Checked the moment run() returns: no grace period.
        assert_no_process(&m);
    }
}

#[tokio::test]
async fn a_child_that_left_the_process_group_is_killed_too() {
    // setsid puts the sleeper in a session of its own, out of the tool's process group:
    // only a pid namespace or a cgroup still holds it. In plain mode without cgroups
    // nothing does (the capability table says so): that mode is not asserted.
    for mode in [Mode::Full, Mode::BwrapOnly, Mode::CgroupsOnly] {
        let m = marker();
        let o = run(
            mode,
            sh(&format!(
                "setsid sleep {m} > /dev/null 2>&1 < /dev/null & sleep 0.1; echo done"
            )),
        )
        .await;
        assert_eq!(ok(mode, &o).trim(), "done", "{mode:?}");
        assert_no_process(&m);
    }
}

/// Job cgroups of this test process under `parents`.
fn my_cgroups(parents: &[PathBuf]) -> Vec<PathBuf> {
    let prefix = format!("{}-", std::process::id());
    parents
        .iter()
        .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

/// A sandbox of `mode` with a work root and a cgroup parent of its own, so that other
/// tests running at the same time cannot hide or fake leftovers.
fn isolated(mode: Mode, work_root: &Path) -> Sandbox {
    Sandbox::detect_with(Options {
        work_root: work_root.into(),
        // One per call: tests of one process (cargo test) run side by side.
        cgroup_parent: format!("hanzo-test-cleanup-{}", marker()).into(),
        ..mode.options()
    })
}

#[tokio::test]
async fn work_directories_and_cgroups_are_removed_however_the_run_ends() {
    for mode in ALL_MODES {
        let root = tempfile::tempdir().unwrap();
        let sb = isolated(mode, root.path());
        let cancel = CancelToken::new();
        let quick = ResourceLimits {
            timeout_ms: 200,
            max_output_bytes: 10,
            ..ResourceLimits::default()
        };
        // Success, failure, timeout, output cap; each leaves files behind in its work
        // directory, one of them in a directory it made unreadable.
        for script in [
            "echo x > f; mkdir d; touch d/y; chmod 000 d; echo ok",
            "echo x > f; exit 4",
            "echo x > f; sleep 10",
            "echo x > f; yes",
        ] {
            let o = sb
                .run(sh(script).file("in", "x").limits(quick.clone()), &cancel)
                .await;
            assert!(
                !matches!(o.exit, hanzo_sandbox::Exit::SpawnFailed(_)),
                "{mode:?}: {:?}",
                o.exit
            );
            assert!(
                entries(root.path()).is_empty(),
                "{mode:?} {script}: {:?}",
                entries(root.path())
            );
            assert!(my_cgroups(&sb.cgroup_parents()).is_empty(), "{mode:?} {script}");
        }
        for p in sb.cgroup_parents() {
            std::fs::remove_dir(&p).unwrap();
        }
    }
}

#[tokio::test]
async fn dropping_the_run_kills_the_tool_and_cleans_up() {
    for mode in ALL_MODES {
        let root = tempfile::tempdir().unwrap();
        let sb = isolated(mode, root.path());
        let m = marker();
        let cancel = CancelToken::new();
        let run = sb.run(sh(&format!("sleep {m} & sleep {m}")), &cancel);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), run)
                .await
                .is_err()
        );
        // The clean-up finishes on a thread of its own: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && (!host_processes(&m).is_empty()
                || !entries(root.path()).is_empty()
                || !my_cgroups(&sb.cgroup_parents()).is_empty())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_no_process(&m);
        assert!(
            entries(root.path()).is_empty(),
            "{mode:?}: {:?}",
            entries(root.path())
        );
        assert!(my_cgroups(&sb.cgroup_parents()).is_empty(), "{mode:?}");
        for p in sb.cgroup_parents() {
            std::fs::remove_dir(&p).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_runs_stay_separate() {
    for mode in [Mode::Full, Mode::Plain] {
        let sb = sandbox(mode);
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let spec = sh("cat; echo \" $(cat in)\"")
                    .stdin(format!("job {i}"))
                    .file("in", format!("file {i}"));
                tokio::spawn(async move { sb.run(spec, &CancelToken::new()).await })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let o = h.await.unwrap();
            assert_eq!(ok(mode, &o).trim(), format!("job {i} file {i}"), "{mode:?}");
        }
    }
}
