//! A node that is not root: no cgroups to create, no namespaces to unshare without
//! bubblewrap. The test re-runs itself as `nobody` (this test binary, one test) and
//! checks there that the sandbox degrades as its capability table says.

use crate::util::{PATH, sh};
use hanzo_compute::{CancelToken, LimitKind, Network, ResourceLimits, Support};
use hanzo_sandbox::{Exit, Options, Sandbox};
use std::os::unix::process::CommandExt;
use std::process::Command;

const AS_NOBODY: &str = "HANZO_SANDBOX_TEST_AS_NOBODY";
const NAME: &str = "unprivileged::an_unprivileged_node_runs_tools_and_says_what_it_cannot_enforce";

#[test]
fn an_unprivileged_node_runs_tools_and_says_what_it_cannot_enforce() {
    if std::env::var_os(AS_NOBODY).is_some() {
        return as_nobody();
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test drops from root to nobody"
    );
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", NAME, "--nocapture"])
        .env_clear()
        .env(AS_NOBODY, "1")
        .env("PATH", PATH)
        .current_dir("/");
    // SAFETY: setgroups/setresgid/setresuid are async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(out.status.success(), "the run as nobody failed");
    assert!(text.contains("1 passed"), "the test did not run as nobody");
}

fn support(sb: &Sandbox, kind: LimitKind) -> Support {
    sb.limit_support()
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .unwrap()
        .1
}

fn as_nobody() {
    assert_eq!(unsafe { libc::geteuid() }, 65534);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |sb: &Sandbox, spec| rt.block_on(sb.run(spec, &CancelToken::new()));

    // With bubblewrap: unprivileged, in a user namespace; no cgroups.
    let sb = Sandbox::detect();
    eprintln!("as nobody: {}\n  notes: {:?}", sb.describe(), sb.notes());
    assert!(
        sb.bwrap_version().is_some() && sb.user_namespace(),
        "{:?}",
        sb.notes()
    );
    assert!(sb.cgroup_version().is_none());
    assert!(
        sb.notes().iter().any(|n| n.starts_with("no cgroups")),
        "{:?}",
        sb.notes()
    );
    assert_eq!(sb.tool_uid(), 65534);
    assert_eq!(support(&sb, LimitKind::Memory), Support::Advisory);
    assert_eq!(support(&sb, LimitKind::Processes), Support::Advisory);
    assert_eq!(support(&sb, LimitKind::CpuShares), Support::Unsupported);
    assert_eq!(support(&sb, LimitKind::Disk), Support::Enforced);
    let o = run(&sb, sh("id -u; cat /etc/shadow 2>&1; echo $$"));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.success(), "{:?} {}", o.exit, String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "65534");
    assert!(lines[1].contains("No such file"), "{text}");
    assert!(lines[2].parse::<u32>().unwrap() <= 3, "{text}");
    // A fork bomb is contained by RLIMIT_NPROC, and the timeout ends it.
    let bomb = sh("bomb() { bomb | bomb & wait; }; sleep 60 & bomb; wait")
        .pids_limit(32)
        .limits(ResourceLimits {
            timeout_ms: 1_000,
            ..ResourceLimits::default()
        });
    // RLIMIT_NPROC counts every task of the user on the host, and other tests' tools
    // run as nobody too: the bomb may also end early, as a failure. Either way it is
    // contained and over.
    let exit = run(&sb, bomb).exit;
    assert!(
        matches!(exit, Exit::TimedOut | Exit::Exited(_) | Exit::Signaled(_)),
        "{exit:?}"
    );
    assert!(
        std::process::Command::new("/bin/true")
            .status()
            .unwrap()
            .success()
    );

    // Without bubblewrap: a plain process, and the network cannot be taken away.
    let plain = Sandbox::detect_with(Options {
        allow_bwrap: false,
        ..Options::default()
    });
    eprintln!("as nobody, plain: {}", plain.describe());
    assert!(!plain.isolates_network() && !plain.isolates_filesystem());
    assert!(plain.describe().contains("no namespaces"), "{}", plain.describe());
    let o = run(&plain, sh("id -u").network(Network::None));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "65534");

    // No namespace of its own behind NAT can be made without root: the network is
    // refused, never the host's shared.
    for sb in [&sb, &plain] {
        assert_eq!(sb.network_nat(), None, "{}", sb.describe());
        assert!(!sb.capabilities().network);
        let o = run(sb, sh("echo ran").network(Network::Full));
        assert!(matches!(o.exit, Exit::Rejected(_)), "{:?}", o.exit);
        assert!(o.stdout.is_empty());
    }
}
