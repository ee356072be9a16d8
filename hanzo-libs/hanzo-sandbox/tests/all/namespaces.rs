//! bubblewrap's namespaces, seen from inside: the tool is a low pid in a pid namespace
//! of its own, sees no host process, has its own hostname, IPC, network (loopback
//! only) and user namespace, no capabilities, and a clean environment.

use crate::util::*;
use hanzo_compute::Network;

const BWRAP: [Mode; 2] = [Mode::Full, Mode::BwrapOnly];

#[tokio::test]
async fn the_tool_is_a_low_pid_and_sees_no_host_process() {
    for mode in BWRAP {
        let o = run(mode, sh("echo $$; ls /proc | grep -c '^[0-9]'")).await;
        let text = ok(mode, &o);
        let mut lines = text.lines();
        let pid: u32 = lines.next().unwrap().parse().unwrap();
        let visible: u32 = lines.next().unwrap().parse().unwrap();
        // bubblewrap's init is pid 1, the tool pid 2.
        assert!(pid <= 3, "{mode:?}: the tool is pid {pid}");
        // The init, the shell, ls and grep at most.
        assert!(visible <= 5, "{mode:?}: the tool sees {visible} processes");
        let me = std::process::id();
        let o = run(
            mode,
            sh(&format!("test -e /proc/{me} && echo visible || echo hidden")),
        )
        .await;
        assert_eq!(ok(mode, &o).trim(), "hidden", "{mode:?}");
    }
}

#[tokio::test]
async fn hostname_ipc_and_user_namespaces_are_private() {
    for mode in BWRAP {
        let o = run(
            mode,
            sh("hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; cat /proc/self/uid_map"),
        )
        .await;
        let text = ok(mode, &o);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "hanzo", "{mode:?}");
        let host = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            lines[1],
            host("ipc").to_string_lossy(),
            "{mode:?}: shares the host's IPC namespace"
        );
        assert_ne!(
            lines[2],
            host("uts").to_string_lossy(),
            "{mode:?}: shares the host's UTS namespace"
        );
        // In a user namespace the map has one line for the tool's uid; on the host it
        // is the identity over the whole range.
        assert!(
            !lines[3].contains("4294967295"),
            "{mode:?}: no user namespace: {}",
            lines[3]
        );
    }
}

#[tokio::test]
async fn the_tool_has_no_capabilities_and_cannot_gain_privileges() {
    for mode in ALL_MODES {
        let o = run(
            mode,
            sh("grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status"),
        )
        .await;
        let text = ok(mode, &o);
        assert!(text.contains("CapEff:\t0000000000000000"), "{mode:?}: {text}");
        assert!(text.contains("CapPrm:\t0000000000000000"), "{mode:?}: {text}");
        assert!(text.contains("NoNewPrivs:\t1"), "{mode:?}: {text}");
    }
}

#[tokio::test]
async fn without_the_network_there_is_only_loopback() {
    let interfaces = "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '";
    for mode in ALL_MODES {
        let o = run(mode, sh(interfaces)).await;
        assert_eq!(ok(mode, &o).trim(), "lo", "{mode:?}");
        // With it, a namespace of its own too (see `network`): never the host's.
        let o = run(mode, sh(interfaces).network(Network::Full)).await;
        assert_eq!(ok(mode, &o).trim(), "lo tap0", "{mode:?}: Network::Full");
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        let o = run(mode, sh("readlink /proc/self/ns/net").network(Network::Full)).await;
        assert_ne!(
            ok(mode, &o).trim(),
            me.to_string_lossy(),
            "{mode:?}: shares the host's"
        );
    }
}

#[tokio::test]
async fn the_environment_is_exactly_the_specs() {
    // The test process has plenty to leak (HOME, CARGO_*, the harness's own variables).
    // HOME and TMPDIR are the sandbox's own: the private work directory.
    assert!(std::env::vars().count() > 3);
    for mode in ALL_MODES {
        let o = run(mode, sh("env | sort").env("HANZO_JOB_ID", "j1")).await;
        let text = ok(mode, &o);
        let mut names: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
        // The shell itself adds PWD (and, on some shells, SHLVL and _).
        names.retain(|n| !matches!(*n, "PWD" | "SHLVL" | "_" | "OLDPWD"));
        assert_eq!(
            names,
            ["HANZO_JOB_ID", "HOME", "PATH", "TMPDIR"],
            "{mode:?}: {text}"
        );
        let pwd = text.lines().find_map(|l| l.strip_prefix("PWD=")).unwrap();
        assert!(text.contains(&format!("\nHOME={pwd}\n")), "{mode:?}: {text}");
    }
}

#[tokio::test]
async fn no_descriptor_of_the_node_reaches_the_tool() {
    // A descriptor this process opened without O_CLOEXEC, as a careless C library would.
    let path = std::ffi::CString::new("/etc/hostname").unwrap();
    // SAFETY: plain open(2) of a valid path; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(fd > 2);
    for mode in ALL_MODES {
        let o = run(mode, sh("ls /proc/self/fd | sort -n | tr '\\n' ' '")).await;
        let fds: Vec<i32> = ok(mode, &o)
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        // stdin, stdout, stderr, and the directory ls is reading: nothing else.
        assert_eq!(
            fds.len(),
            4,
            "{mode:?}: descriptors leaked into the tool: {fds:?}"
        );
        assert_eq!(fds[..3], [0, 1, 2], "{mode:?}");
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
}
