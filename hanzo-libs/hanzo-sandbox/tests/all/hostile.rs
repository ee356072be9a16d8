//! Hostile tools, in every mode: each tries to read, reach, write or outlive what it
//! must not, and fails, while the host stays fine.

use crate::util::*;
use hanzo_compute::{Network, ResourceLimits};
use hanzo_sandbox::Exit;
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[tokio::test]
async fn reading_etc_shadow_fails() {
    assert!(std::path::Path::new("/etc/shadow").exists());
    for mode in ALL_MODES {
        let o = run(mode, sh("cat /etc/shadow")).await;
        assert_ne!(o.exit, Exit::Exited(0), "{mode:?}: read /etc/shadow: {}", out(&o));
        assert!(o.stdout.is_empty(), "{mode:?}");
        // Without bubblewrap the file is there but unreadable (the tool is nobody);
        // with it, it does not exist at all.
        let why = if mode.bwrap() {
            "No such file"
        } else {
            "Permission denied"
        };
        assert!(err(&o).contains(why), "{mode:?}: {}", err(&o));
    }
}

/// Python connecting to 127.0.0.1:port; prints "connected" or the error.
fn connect(port: u16) -> hanzo_sandbox::ProcessSpec {
    python(&format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('connected')\nexcept OSError as e:\n    print('refused', e)"
    ))
}

/// With the network too (`network` has the rest: ::1, the NAT's gateway, the host's
/// other addresses, and a test host that is reached).
#[tokio::test]
async fn a_loopback_port_on_the_host_is_out_of_reach_with_or_without_the_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept in the background so that a connection that does get through completes.
    std::thread::spawn(move || for _ in listener.incoming() {});
    for mode in ALL_MODES {
        assert!(sandbox(mode).isolates_network(), "{mode:?}");
        let o = run(mode, connect(port)).await;
        let text = ok(mode, &o);
        assert!(text.starts_with("refused"), "{mode:?}: {text}");
        let o = run(mode, connect(port).network(Network::Full)).await;
        let text = ok(mode, &o);
        assert!(text.starts_with("refused"), "{mode:?}: Network::Full: {text}");
    }
}

#[tokio::test]
async fn writing_outside_the_work_directory_fails() {
    let target = tempfile::tempdir().unwrap();
    let victim = target.path().join("victim");
    std::fs::write(&victim, "intact").unwrap();
    for mode in ALL_MODES {
        let script = format!(
            "for p in /etc/passwd /usr/bin/hanzo-x /root/x {v}; do \
             (echo pwned >> $p) 2>/dev/null && echo \"wrote $p\"; done; echo end",
            v = victim.display()
        );
        let o = run(mode, sh(&script)).await;
        assert_eq!(ok(mode, &o).trim(), "end", "{mode:?}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "intact", "{mode:?}");
    }
    assert!(!std::path::Path::new("/usr/bin/hanzo-x").exists());
}

#[tokio::test]
async fn a_spinning_tool_times_out() {
    for mode in ALL_MODES {
        let t = Instant::now();
        let o = run(
            mode,
            python("while True: pass").limits(ResourceLimits {
                timeout_ms: 500,
                ..ResourceLimits::default()
            }),
        )
        .await;
        assert_eq!(o.exit, Exit::TimedOut, "{mode:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{mode:?}: {:?}",
            t.elapsed()
        );
    }
}

#[tokio::test]
async fn a_python_fork_bomb_is_stopped() {
    let code = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)";
    for mode in ALL_MODES {
        // Never set off a bomb the mode cannot contain: it would exhaust the host's pids.
        let (_, support, _) = sandbox(mode)
            .limit_support()
            .into_iter()
            .find(|(k, _, _)| *k == hanzo_compute::LimitKind::Processes)
            .unwrap();
        assert_ne!(support, hanzo_compute::Support::Unsupported, "{mode:?}");
        let t = Instant::now();
        let o = run(
            mode,
            python(code).pids_limit(24).limits(ResourceLimits {
                timeout_ms: 2_000,
                ..ResourceLimits::default()
            }),
        )
        .await;
        let want = if mode.cgroups() {
            Exit::ProcessLimit
        } else {
            Exit::TimedOut
        };
        assert_eq!(o.exit, want, "{mode:?}");
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "{mode:?}: {:?}",
            t.elapsed()
        );
        assert!(
            std::process::Command::new("/bin/true")
                .status()
                .unwrap()
                .success()
        );
    }
}

#[tokio::test]
async fn the_tool_cannot_signal_host_processes() {
    let me = std::process::id();
    for mode in ALL_MODES {
        let o = run(
            mode,
            sh(&format!(
                "kill -0 {me} 2>/dev/null && echo reachable || echo unreachable"
            )),
        )
        .await;
        assert_eq!(ok(mode, &o).trim(), "unreachable", "{mode:?}");
    }
}

#[tokio::test]
async fn a_daemonising_tool_does_not_outlive_its_job() {
    // The classic double fork with closed descriptors, then the tool times out.
    for mode in [Mode::Full, Mode::BwrapOnly, Mode::CgroupsOnly] {
        let m = marker();
        let script = format!("(setsid sh -c 'sleep {m}' < /dev/null > /dev/null 2>&1 &) ; sleep 10");
        let o = run(
            mode,
            sh(&script).limits(ResourceLimits {
                timeout_ms: 300,
                ..ResourceLimits::default()
            }),
        )
        .await;
        assert_eq!(o.exit, Exit::TimedOut, "{mode:?}");
        assert_no_process(&m);
    }
}
