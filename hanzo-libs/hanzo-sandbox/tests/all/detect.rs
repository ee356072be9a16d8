//! Detection and the capability report: what the host offers, and a table that never
//! claims a limit the mode cannot enforce.

use crate::util::*;
use hanzo_compute::{LimitKind, Support};
use hanzo_sandbox::{CgroupVersion, Controller, MemoryRlimit, Options, Sandbox};

#[test]
fn this_host_offers_bubblewrap_with_namespaces_and_writable_cgroups() {
    let sb = sandbox(Mode::Full);
    assert!(sb.user_namespace(), "no user namespace: {:?}", sb.notes());
    assert!(sb.isolates_network() && sb.isolates_filesystem());
    assert_eq!(
        sb.controllers(),
        vec![Controller::Memory, Controller::Pids, Controller::Cpu],
        "{:?}",
        sb.notes()
    );
    let d = sb.describe();
    assert!(d.starts_with("bubblewrap "), "{d}");
    assert!(d.contains("user, pid, mount, net"), "{d}");
    let v = if sb.cgroup_version() == Some(CgroupVersion::V1) {
        "cgroup v1"
    } else {
        "cgroup v2"
    };
    assert!(d.contains(&format!("{v} (memory, pids, cpu)")), "{d}");
    for p in sb.cgroup_parents() {
        assert!(p.ends_with("hanzo"), "{}", p.display());
    }
}

#[test]
fn every_mode_reports_every_limit() {
    for mode in ALL_MODES {
        let table = sandbox(mode).limit_support();
        for kind in LimitKind::ALL {
            let rows: Vec<_> = table.iter().filter(|(k, _, _)| *k == kind).collect();
            assert_eq!(rows.len(), 1, "{mode:?}: {kind} appears {} times", rows.len());
            assert!(!rows[0].2.is_empty(), "{mode:?}: {kind} has no explanation");
        }
        let caps = sandbox(mode).capabilities();
        assert_eq!(caps.limits.len(), LimitKind::ALL.len());
        assert_eq!(caps.mounts, mode.bwrap());
    }
}

fn support(mode: Mode, kind: LimitKind) -> (Support, String) {
    let (_, s, how) = sandbox(mode)
        .limit_support()
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .unwrap();
    (s, how)
}

#[test]
fn the_table_says_what_each_mode_enforces() {
    use LimitKind::*;
    use Support::*;
    for mode in ALL_MODES {
        let expect = |kind, want: Support| {
            let (got, how) = support(mode, kind);
            assert_eq!(got, want, "{mode:?} {kind}: {how}");
        };
        expect(Timeout, Enforced);
        expect(Output, Enforced);
        expect(Fuel, Unsupported);
        expect(NetworkBandwidth, Unsupported);
        expect(Memory, if mode.cgroups() { Enforced } else { Advisory });
        expect(CpuShares, if mode.cgroups() { Enforced } else { Unsupported });
        expect(Disk, if mode.bwrap() { Enforced } else { Unsupported });
        // Without cgroups only RLIMIT_NPROC is left, which never binds root: the tool
        // must then run as another user (nobody, in plain mode).
        let procs = match (mode.cgroups(), sandbox(mode).tool_uid()) {
            (true, _) => Enforced,
            (false, 0) => Unsupported,
            (false, _) => Advisory,
        };
        expect(Processes, procs);
    }
    let (_, how) = support(Mode::Plain, LimitKind::Memory);
    assert!(how.contains("RLIMIT_DATA"), "{how}");
    let (_, how) = support(Mode::Full, LimitKind::Memory);
    assert!(how.contains("no swap") || how.contains("swap.max"), "{how}");
}

#[test]
fn plain_mode_runs_tools_as_nobody_and_says_so() {
    let sb = sandbox(Mode::Plain);
    assert_eq!(sb.tool_uid(), 65534);
    let d = sb.describe();
    assert!(d.contains("no filesystem isolation"), "{d}");
    assert!(d.contains("nobody"), "{d}");
    assert!(d.contains("RLIMIT_DATA") && d.contains("RLIMIT_NPROC"), "{d}");
    assert!(
        sb.notes().iter().any(|n| n.contains("bubblewrap disabled")),
        "{:?}",
        sb.notes()
    );
    // Root can still give the tool a network namespace of its own.
    assert!(sb.isolates_network());
}

#[test]
fn the_memory_rlimit_is_the_callers_choice() {
    let off = Sandbox::detect_with(Options {
        allow_bwrap: false,
        allow_cgroups: false,
        memory_rlimit: MemoryRlimit::Off,
        ..Options::default()
    });
    let (_, s, how) = off
        .limit_support()
        .into_iter()
        .find(|(k, _, _)| *k == LimitKind::Memory)
        .unwrap();
    assert_eq!(s, Support::Unsupported, "{how}");
    assert!(!off.describe().contains("RLIMIT_DATA"), "{}", off.describe());
}

#[test]
fn a_missing_bwrap_is_reported_and_the_sandbox_still_works() {
    let sb = Sandbox::detect_with(Options {
        bwrap_path: Some("/nonexistent/bwrap".into()),
        ..Options::default()
    });
    assert!(sb.bwrap_version().is_none());
    assert!(
        sb.notes().iter().any(|n| n.contains("/nonexistent/bwrap")),
        "{:?}",
        sb.notes()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let o = rt.block_on(sb.run(sh("echo fine"), &hanzo_compute::CancelToken::new()));
    assert_eq!(ok(Mode::CgroupsOnly, &o).trim(), "fine");
}
