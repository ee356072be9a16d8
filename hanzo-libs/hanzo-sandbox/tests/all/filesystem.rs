//! The filesystem a bubblewrap sandbox shows: a read-only root with only the requested
//! host paths, a private `/tmp` holding the work directory (the current directory),
//! both capped at `disk_mb`, and the job's mounts.

use crate::util::*;
use hanzo_compute::{Mount, Network, ResourceLimits};
use hanzo_sandbox::{Exit, GUEST_WORKDIR, SYSTEM_RO_PATHS};
use std::path::Path;

const BWRAP: [Mode; 2] = [Mode::Full, Mode::BwrapOnly];

#[tokio::test]
async fn the_root_holds_only_what_was_asked_for() {
    let mut want: Vec<String> = SYSTEM_RO_PATHS
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| p.trim_start_matches('/').split('/').next().unwrap().to_string())
        .chain(["dev", "proc", "tmp"].map(String::from))
        .collect();
    want.sort();
    want.dedup();
    for mode in BWRAP {
        let o = run(
            mode,
            sh("ls -A / | tr '\\n' ' '; echo; ls -A /etc | tr '\\n' ' '"),
        )
        .await;
        let text = ok(mode, &o);
        let mut lines = text.lines();
        let mut root: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        root.sort();
        assert_eq!(root, want, "{mode:?}");
        assert_eq!(
            lines.next().unwrap().trim(),
            "alternatives ld.so.cache",
            "{mode:?}: /etc"
        );
    }
}

#[tokio::test]
async fn symlinked_system_directories_stay_symlinks() {
    // Hosts with a merged /usr (Debian 12, CI): a host without one fails here rather
    // than passing without checking anything.
    assert!(
        Path::new("/bin").is_symlink(),
        "this test needs a host with a merged /usr (/bin -> usr/bin)"
    );
    for mode in BWRAP {
        let o = run(mode, sh("readlink /bin")).await;
        assert_eq!(
            ok(mode, &o).trim(),
            std::fs::read_link("/bin").unwrap().to_string_lossy(),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn the_work_directory_is_the_cwd_and_holds_the_files() {
    for mode in BWRAP {
        let spec = sh("pwd; cat data.txt; cat lib/nested.txt; ./tool.sh; touch new && echo wrote")
            .file("data.txt", "hello\n")
            .file("lib/nested.txt", "nested\n")
            .executable("tool.sh", "#!/bin/sh\necho tool ran\n");
        let o = run(mode, spec).await;
        assert_eq!(
            ok(mode, &o),
            format!("{GUEST_WORKDIR}\nhello\nnested\ntool ran\nwrote\n"),
            "{mode:?}"
        );
        // A program among the work files runs by its relative path.
        let o = run(
            mode,
            hanzo_sandbox::ProcessSpec::new("./t").executable("t", "#!/bin/sh\necho direct\n"),
        )
        .await;
        assert_eq!(ok(mode, &o).trim(), "direct", "{mode:?}");
    }
}

#[tokio::test]
async fn nothing_outside_tmp_is_writable() {
    for mode in BWRAP {
        let script = "for p in /x /usr/x /etc/x /bin/x /dev/x /proc/x; do \
                      touch $p 2>/dev/null && echo \"wrote $p\"; done; \
                      touch /tmp/x /dev/shm/x && echo scratch-ok";
        let o = run(mode, sh(script)).await;
        assert_eq!(ok(mode, &o).trim(), "scratch-ok", "{mode:?}");
    }
}

#[tokio::test]
async fn scratch_space_is_capped_at_disk_mb() {
    for mode in BWRAP {
        for dir in [".", "/tmp", "/dev/shm"] {
            let spec = sh(&format!(
                "head -c 3145728 /dev/zero > {dir}/big; echo status $?; du -k {dir}/big | cut -f1"
            ))
            .limits(ResourceLimits {
                disk_mb: 2,
                ..ResourceLimits::default()
            });
            let o = run(mode, spec).await;
            let text = ok(mode, &o);
            assert!(text.starts_with("status 1"), "{mode:?} {dir}: {text}");
            let kib: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
            assert!(kib <= 2048, "{mode:?} {dir}: {kib} KiB written under a 2 MiB cap");
            assert!(err(&o).contains("No space left"), "{mode:?}: {}", err(&o));
        }
    }
}

#[tokio::test]
async fn mounts_are_read_only_unless_writable() {
    let host = tempfile::tempdir().unwrap();
    // Writable by whichever user the mode runs tools as (nobody, without a pids cgroup).
    std::fs::set_permissions(host.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::write(host.path().join("in.txt"), "from host\n").unwrap();
    std::fs::write(host.path().join("prog"), "#!/bin/sh\necho mounted program\n").unwrap();
    std::fs::set_permissions(
        host.path().join("prog"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for mode in BWRAP {
        let ro = Mount {
            host: host.path().into(),
            guest: "/data".into(),
            writable: false,
        };
        let o = run(
            mode,
            sh("cat /data/in.txt; touch /data/x 2>/dev/null || echo refused").mount(ro.clone()),
        )
        .await;
        assert_eq!(ok(mode, &o), "from host\nrefused\n", "{mode:?}");
        // A mount inside the work directory, next to the work files.
        let inside = Mount {
            guest: format!("{GUEST_WORKDIR}/input"),
            ..ro.clone()
        };
        let o = run(
            mode,
            sh("cat input/in.txt local")
                .mount(inside)
                .file("local", "local\n"),
        )
        .await;
        assert_eq!(ok(mode, &o), "from host\nlocal\n", "{mode:?}");
        // A program can come from a mount.
        let mut spec = hanzo_sandbox::ProcessSpec::new("/data/prog").mount(ro);
        spec.env.insert("PATH".into(), PATH.into());
        assert_eq!(
            ok(mode, &run(mode, spec).await).trim(),
            "mounted program",
            "{mode:?}"
        );

        let rw = Mount {
            host: host.path().into(),
            guest: "/out".into(),
            writable: true,
        };
        let o = run(mode, sh("echo result > /out/result.txt").mount(rw)).await;
        ok(mode, &o);
        assert_eq!(
            std::fs::read_to_string(host.path().join("result.txt")).unwrap(),
            "result\n",
            "{mode:?}"
        );
        std::fs::remove_file(host.path().join("result.txt")).unwrap();
    }
}

#[tokio::test]
async fn name_resolution_files_come_only_with_the_network() {
    assert!(
        Path::new("/etc/hosts").exists(),
        "this test needs the host's /etc/hosts"
    );
    for mode in BWRAP {
        let o = run(mode, sh("test -e /etc/hosts && echo present || echo absent")).await;
        assert_eq!(ok(mode, &o).trim(), "absent", "{mode:?}");
        let o = run(
            mode,
            sh("test -e /etc/hosts && echo present || echo absent").network(Network::Full),
        )
        .await;
        assert_eq!(ok(mode, &o).trim(), "present", "{mode:?}");
    }
}

#[tokio::test]
async fn a_failing_sandbox_set_up_is_a_spawn_failure_not_a_tool_failure() {
    // "a" is both a file and a directory: bubblewrap cannot build that work directory.
    for mode in BWRAP {
        let spec = sh("echo never").file("a", "x").file("a/b", "y");
        let o = run(mode, spec).await;
        match &o.exit {
            Exit::SpawnFailed(m) => assert!(m.contains("bwrap"), "{mode:?}: {m}"),
            other => panic!("{mode:?}: expected a spawn failure, got {other:?}: {}", err(&o)),
        }
        assert_eq!(o.result().unwrap_err().exit_code(), 5);
    }
}
