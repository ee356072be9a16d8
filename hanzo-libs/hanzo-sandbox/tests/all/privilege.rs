//! A root node's tools are never host root, whatever the mode: not in a user namespace,
//! not without capabilities. What a tool that was host uid 0 could do, and must not:
//! open the kernel's global settings (`/proc/sys`, `/proc/sysrq-trigger`) for writing,
//! leave setuid-root files in its writable mounts. And nothing a job sets in the
//! environment (`LD_PRELOAD`) applies to a process on the host side; and a mount whose
//! path gained a symlink after it was checked is refused, not followed.

use crate::util::*;
use hanzo_compute::{CancelToken, Mount};
use hanzo_sandbox::{Exit, Options, ProcessSpec, Sandbox, ToolUser};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// A directory everyone may write (the tool's user differs from the test's).
fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// The host uid (real, effective, saved, fs) of `pid`, from the host's /proc.
fn host_uids(pid: i32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|u| u.parse().unwrap())
        .collect()
}

/// What the hostile tool does: prints which kernel knobs it could open for writing
/// (opening only: nothing is ever written), leaves a setuid file in /out, prints the
/// mount options of /out, then waits (so the host can look at it) until /out/go
/// appears or 10 s pass.
const HOSTILE: &str = r##"
import os, sys, time
for p in ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"]:
    try:
        fd = os.open(p, os.O_WRONLY)
        os.close(fd)
        print("OPENED", p)
    except OSError as e:
        print("refused", p, e.errno)
if os.path.isdir("/out"):
    with open("/out/suid", "w") as f:
        f.write("#!/bin/sh\nid\n")
    try:
        os.chmod("/out/suid", 0o4755)
    except OSError as e:
        print("chmod refused", e.errno)
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == "/out":
            print("mount", f[5])
print("uid", os.getuid())
sys.stdout.flush()
t = time.time()
while time.time() - t < 10 and not os.path.exists("/out/go") and not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
"##;

#[tokio::test]
async fn a_tool_is_never_host_root_and_cannot_touch_kernel_settings_or_leave_setuid_root_files() {
    for mode in ALL_MODES {
        let out = shared_dir();
        let go = out.path().join("go");
        let m = marker();
        let mut spec = python(HOSTILE).arg(go.to_str().unwrap()).arg(&m);
        if mode.bwrap() {
            spec = spec.mount(Mount {
                host: out.path().into(),
                guest: "/out".into(),
                writable: true,
            });
        }
        let sb = sandbox(mode);
        assert_ne!(sb.tool_uid(), 0, "{mode:?}: {}", sb.describe());
        let run = tokio::spawn(async move { sb.run(spec, &CancelToken::new()).await });
        // Seen from the host: the tool's process and every one of its uids.
        let t = Instant::now();
        let pids = loop {
            let p = host_processes(&m)
                .into_iter()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("python"))
                })
                .collect::<Vec<_>>();
            if !p.is_empty() || t.elapsed() > Duration::from_secs(5) {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(!pids.is_empty(), "{mode:?}: the tool was never seen on the host");
        for pid in pids {
            assert_eq!(host_uids(pid), [65534; 4], "{mode:?}: host uids of the tool");
        }
        std::fs::write(&go, "").unwrap();
        let o = run.await.unwrap();
        let text = ok(mode, &o);
        assert!(!text.contains("OPENED"), "{mode:?}: {text}");
        assert_eq!(text.matches("refused /proc/").count(), 3, "{mode:?}: {text}");
        assert!(text.contains("uid 65534"), "{mode:?}: {text}");
        if mode.bwrap() {
            let opts = text.lines().find_map(|l| l.strip_prefix("mount ")).unwrap();
            let opts: Vec<&str> = opts.split(',').collect();
            assert!(
                opts.contains(&"nosuid") && opts.contains(&"nodev") && opts.contains(&"rw"),
                "{mode:?}: /out is mounted {opts:?}"
            );
            // On the host, the file is the tool user's: its setuid bit grants nothing
            // that user does not already have.
            let meta = std::fs::metadata(out.path().join("suid")).unwrap();
            assert_eq!(meta.uid(), 65534, "{mode:?}");
            assert_eq!(meta.gid(), 65534, "{mode:?}");
            assert!(
                !(meta.uid() == 0 && meta.mode() & 0o4000 != 0),
                "{mode:?}: a setuid-root file"
            );
        }
    }
}

#[tokio::test]
async fn the_tool_uid_is_configurable_and_root_is_refused() {
    let sb = Sandbox::detect_with(Options {
        tool_user: ToolUser::Id { uid: 4242, gid: 4343 },
        ..Options::default()
    });
    assert!(sb.bwrap_version().is_some(), "{:?}", sb.notes());
    assert_eq!(sb.tool_uid(), 4242);
    assert!(sb.describe().contains("uid 4242"), "{}", sb.describe());
    let out = shared_dir();
    let spec = sh("id -u; id -g; echo x > /out/f").mount(Mount {
        host: out.path().into(),
        guest: "/out".into(),
        writable: true,
    });
    let o = sb.run(spec, &CancelToken::new()).await;
    assert_eq!(ok(Mode::Full, &o), "4242\n4343\n");
    let meta = std::fs::metadata(out.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4242, 4343));

    // uid 0 is never honoured: the tool runs as nobody, and the notes say why.
    let sb = Sandbox::detect_with(Options {
        tool_user: ToolUser::Id { uid: 0, gid: 0 },
        ..Options::default()
    });
    assert_eq!(sb.tool_uid(), 65534);
    assert!(
        sb.notes().iter().any(|n| n.contains("refused")),
        "{:?}",
        sb.notes()
    );
    let o = sb.run(sh("id -u"), &CancelToken::new()).await;
    assert_eq!(ok(Mode::Full, &o).trim(), "65534");
}

#[tokio::test]
async fn a_toolchain_under_a_root_only_directory_still_runs() {
    // Like deno or uv under /root (mode 0700): the tool's user may not enter the
    // directory, but the node shows it the toolchain anyway.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let bin = home.path().join("tools/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::set_permissions(home.path().join("tools"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tool = bin.join("hello");
    std::fs::write(&tool, "#!/bin/sh\necho toolchain ran as $(id -u)\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    for mode in [Mode::Full, Mode::BwrapOnly] {
        let spec = ProcessSpec::new(&tool).env("PATH", PATH).ro_path(&bin);
        let o = run(mode, spec).await;
        assert_eq!(ok(mode, &o).trim(), "toolchain ran as 65534", "{mode:?}");
    }
}

/// A shared object whose constructor leaves a marker file in `dir` naming the uid and
/// mount namespace of whatever process loaded it.
fn marker_library(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("mark.c");
    let so = dir.join("libmark.so");
    std::fs::write(
        &src,
        format!(
            r#"#include <stdio.h>
#include <unistd.h>
#include <limits.h>
__attribute__((constructor)) static void mark(void) {{
    char ns[PATH_MAX] = {{0}}, path[PATH_MAX];
    readlink("/proc/self/ns/mnt", ns, sizeof ns - 1);
    snprintf(path, sizeof path, "{dir}/loaded-%d", (int)getpid());
    FILE *f = fopen(path, "w");
    if (f) {{ fprintf(f, "uid %d %s\n", (int)getuid(), ns); fclose(f); }}
}}
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let st = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .expect("cc is needed to build the test's shared object");
    assert!(st.success());
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o755)).unwrap();
    so
}

#[tokio::test]
async fn the_jobs_loader_variables_never_reach_a_host_side_process() {
    let dir = shared_dir();
    let so = marker_library(dir.path());
    // The library itself works: loaded by a host process, it leaves its marker.
    let st = std::process::Command::new("/bin/true")
        .env("LD_PRELOAD", &so)
        .status()
        .unwrap();
    assert!(st.success());
    let loaded = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("loaded-"))
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let seen = loaded(dir.path());
    assert_eq!(seen.len(), 1, "the marker library does not work");
    std::fs::remove_file(&seen[0]).unwrap();

    for mode in [Mode::Full, Mode::BwrapOnly] {
        // The variable reaches the tool, inside the sandbox, where the library's path
        // does not exist: nothing on the host side (bubblewrap, running as root or as
        // the tool's user in the host's mount namespace) loads it.
        for var in ["LD_PRELOAD", "LD_AUDIT"] {
            let o = run(mode, sh(&format!("echo ${var}")).env(var, so.to_str().unwrap())).await;
            assert_eq!(ok(mode, &o).trim(), so.to_str().unwrap(), "{mode:?}");
            assert!(
                loaded(dir.path()).is_empty(),
                "{mode:?} {var}: loaded on the host side"
            );
        }
        // Shown inside the sandbox, the library loads there, into the tool only.
        let o = run(
            mode,
            sh("true").env("LD_PRELOAD", so.to_str().unwrap()).mount(Mount {
                host: dir.path().into(),
                guest: dir.path().to_string_lossy().into(),
                writable: true,
            }),
        )
        .await;
        ok(mode, &o);
        let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        for f in loaded(dir.path()) {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(text.starts_with("uid 65534 "), "{mode:?}: {text}");
            assert!(
                !text.contains(&*host_ns.to_string_lossy()),
                "{mode:?}: loaded in the host's namespace: {text}"
            );
            std::fs::remove_file(f).unwrap();
        }
    }
    // Without bubblewrap the tool itself is a host process: refused.
    for mode in [Mode::CgroupsOnly, Mode::Plain] {
        for var in ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH"] {
            let o = run(mode, sh("true").env(var, so.to_str().unwrap())).await;
            match &o.exit {
                Exit::Rejected(m) => assert!(m.contains(var), "{mode:?}: {m}"),
                other => panic!("{mode:?} {var}: expected a refusal, got {other:?}"),
            }
        }
    }
    assert!(loaded(dir.path()).is_empty());
}

#[tokio::test]
async fn a_mount_whose_path_became_a_symlink_is_refused() {
    let shared = shared_dir();
    std::fs::create_dir(shared.path().join("out")).unwrap();
    std::fs::set_permissions(shared.path().join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
    for mode in [Mode::Full, Mode::BwrapOnly] {
        // A first job, with the shared directory writable, plants out -> /etc.
        let o = run(
            mode,
            sh("rm -rf /shared/out && ln -s /etc /shared/out && echo planted").mount(Mount {
                host: shared.path().into(),
                guest: "/shared".into(),
                writable: true,
            }),
        )
        .await;
        assert_eq!(ok(mode, &o).trim(), "planted", "{mode:?}");
        assert!(shared.path().join("out").is_symlink());
        // A second job mounts <dir>/out, a path its caller checked while it was a
        // directory: refused, and /etc is never shown.
        let o = run(
            mode,
            sh("cat /data/passwd").mount(Mount {
                host: shared.path().join("out"),
                guest: "/data".into(),
                writable: false,
            }),
        )
        .await;
        assert!(!out(&o).contains("root:"), "{mode:?}: saw /etc/passwd");
        match &o.exit {
            Exit::Rejected(m) => assert!(m.contains("symbolic link"), "{mode:?}: {m}"),
            other => panic!("{mode:?}: expected a refusal, got {other:?}: {}", err(&o)),
        }
        // A symlink further up the path is refused too.
        let o = run(
            mode,
            sh("ls /data").mount(Mount {
                host: shared.path().join("out/ssl"),
                guest: "/data".into(),
                writable: false,
            }),
        )
        .await;
        assert!(matches!(o.exit, Exit::Rejected(_)), "{mode:?}: {:?}", o.exit);
        std::fs::remove_file(shared.path().join("out")).unwrap();
        std::fs::create_dir(shared.path().join("out")).unwrap();
        std::fs::set_permissions(shared.path().join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
}

#[tokio::test]
async fn a_runtimes_directory_is_handed_to_the_tool_without_following_symlinks() {
    let sb = sandbox(Mode::Full);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep"), "root's").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("cache");
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/f"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("a/link")).unwrap();
    sb.hand_to_tool(&dir).unwrap();
    for p in [
        dir.clone(),
        dir.join("a"),
        dir.join("a/b"),
        dir.join("a/b/f"),
        dir.join("a/link"),
    ] {
        assert_eq!(
            std::fs::symlink_metadata(&p).unwrap().uid(),
            65534,
            "{}",
            p.display()
        );
    }
    // What the symlink points to is untouched.
    assert_eq!(std::fs::metadata(outside.path()).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(outside.path().join("keep")).unwrap().uid(), 0);
    // And a tool can now write there through a writable mount.
    let o = run(
        Mode::Full,
        sh("echo y > /cache/a/b/g && echo wrote").mount(Mount {
            host: dir.clone(),
            guest: "/cache".into(),
            writable: true,
        }),
    )
    .await;
    assert_eq!(ok(Mode::Full, &o).trim(), "wrote");
    // A directory created on demand is the tool's too.
    sb.hand_to_tool(&cache.path().join("new/deeper")).unwrap();
    assert_eq!(
        std::fs::metadata(cache.path().join("new/deeper")).unwrap().uid(),
        65534
    );
}
