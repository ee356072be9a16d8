//! Without bubblewrap (and how the tool's user is chosen): the tool still runs, in a
//! session of its own, as nobody when the node is root, in a fresh work directory.

use crate::util::*;
use hanzo_compute::{CancelToken, LimitKind, Mount, Support};
use hanzo_sandbox::{Exit, NOBODY, Options, Sandbox, ToolUser};

const PLAIN: [Mode; 2] = [Mode::CgroupsOnly, Mode::Plain];

#[tokio::test]
async fn the_tool_runs_as_nobody_in_its_own_session() {
    for mode in PLAIN {
        let code = "import os\nprint(os.getuid(), os.getgid(), os.getgroups(), os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())";
        let o = run(mode, python(code)).await;
        assert_eq!(ok(mode, &o).trim(), "65534 65534 [] True True", "{mode:?}");
    }
}

#[tokio::test]
async fn the_work_directory_is_fresh_private_and_the_cwd() {
    for mode in PLAIN {
        let spec = sh("pwd; stat -c '%a %u' .; cat data.txt lib/n.txt; ./t.sh; touch new && echo wrote")
            .file("data.txt", "hello\n")
            .file("lib/n.txt", "nested\n")
            .executable("t.sh", "#!/bin/sh\necho tool ran\n");
        let o = run(mode, spec).await;
        let text = ok(mode, &o);
        let mut l = text.lines();
        let cwd = l.next().unwrap();
        assert!(cwd.contains("/hanzo-job-"), "{mode:?}: {cwd}");
        assert_eq!(
            l.next(),
            Some("700 65534"),
            "{mode:?}: the work directory's mode and owner"
        );
        assert_eq!(
            l.collect::<Vec<_>>(),
            ["hello", "nested", "tool ran", "wrote"],
            "{mode:?}"
        );
        assert!(
            !std::path::Path::new(cwd).exists(),
            "{mode:?}: {cwd} was left behind"
        );
    }
}

#[tokio::test]
async fn mounts_need_bubblewrap() {
    for mode in PLAIN {
        let spec = sh("true").mount(Mount {
            host: "/tmp".into(),
            guest: "/data".into(),
            writable: false,
        });
        let o = run(mode, spec).await;
        match &o.exit {
            Exit::Rejected(m) => assert!(m.contains("bubblewrap"), "{m}"),
            other => panic!("{mode:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_tool_user_can_be_chosen() {
    // A chosen user, without bubblewrap.
    let chosen = Sandbox::detect_with(Options {
        allow_bwrap: false,
        allow_cgroups: false,
        tool_user: ToolUser::Id { uid: 4242, gid: 4242 },
        ..Options::default()
    });
    assert_eq!(chosen.tool_uid(), 4242);
    let (_, s, how) = chosen
        .limit_support()
        .into_iter()
        .find(|(k, _, _)| *k == LimitKind::Processes)
        .unwrap();
    assert_eq!(s, Support::Advisory, "{how}");
    assert!(how.contains("uid 4242"), "{how}");
    let o = chosen.run(sh("id -u; id -g"), &CancelToken::new()).await;
    assert_eq!(ok(Mode::Plain, &o), "4242\n4242\n");

    // With bubblewrap: the sandbox is set up by that user, and what the tool writes
    // is that user's on the host too.
    let nobody = Sandbox::detect_with(Options {
        tool_user: ToolUser::Id {
            uid: NOBODY.0,
            gid: NOBODY.1,
        },
        ..Options::default()
    });
    assert!(nobody.bwrap_version().is_some(), "{:?}", nobody.notes());
    assert!(nobody.user_namespace());
    assert_eq!(nobody.tool_uid(), 65534);
    let out_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        out_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let spec = sh("id -u; echo x > /out/f").mount(Mount {
        host: out_dir.path().into(),
        guest: "/out".into(),
        writable: true,
    });
    let o = nobody.run(spec, &CancelToken::new()).await;
    assert_eq!(ok(Mode::Full, &o).trim(), "65534");
    let meta = std::fs::metadata(out_dir.path().join("f")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
}

#[tokio::test]
async fn a_root_node_runs_tools_as_nobody_in_every_mode() {
    for mode in ALL_MODES {
        assert_eq!(sandbox(mode).tool_uid(), 65534, "{mode:?}");
        let o = run(mode, sh("id -u")).await;
        assert_eq!(ok(mode, &o).trim(), "65534", "{mode:?}");
        let d = sandbox(mode).describe();
        assert!(d.contains("tools run as nobody (65534)"), "{mode:?}: {d}");
    }
}
