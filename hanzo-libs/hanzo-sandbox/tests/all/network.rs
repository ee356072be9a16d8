//! `Network::Full` gets the network, not the host: in every mode and with each NAT
//! (slirp4netns, pasta), the tool has a network namespace of its own, reaches a test
//! host (a network namespace with a veth pair made by the test, `hanzo_testkit::
//! nethost`) through the NAT, and reaches nothing of the host itself: not its
//! loopback (127.0.0.1, ::1), not the NAT's gateway (which NATs map to the host's
//! loopback unless told not to), not the host's other addresses.
//!
//! Traffic goes only to loopback and to the test's own namespace: a probe of the
//! gateway is made only once the tool has seen the reject route that keeps it in its
//! own namespace (pasta would otherwise relay it to the real address of that name).

use crate::util::*;
use hanzo_compute::Network;
use hanzo_sandbox::{Exit, NAT_GATEWAY, NatChoice, ProcessSpec, Sandbox};
use hanzo_testkit::nethost::{TestHost, loopback_server};
use std::net::TcpListener;
use std::sync::OnceLock;

const NATS: [NatChoice; 2] = [NatChoice::Slirp4netns, NatChoice::Pasta];

/// The sandbox of `mode` with `nat`; panics if this host cannot provide it.
fn nat_sandbox(mode: Mode, nat: NatChoice) -> &'static Sandbox {
    static CELLS: [[OnceLock<Sandbox>; 2]; 4] = [const { [const { OnceLock::new() }; 2] }; 4];
    let i = ALL_MODES.iter().position(|m| *m == mode).unwrap();
    let j = NATS.iter().position(|n| *n == nat).unwrap();
    CELLS[i][j].get_or_init(|| {
        let sb = Sandbox::detect_with(hanzo_sandbox::Options {
            nat,
            ..mode.options()
        });
        let name = sb.network_nat().unwrap_or_else(|| {
            panic!(
                "{mode:?}: no {nat:?} ({:?}); run `source scripts/sandbox.sh && ensure_sandbox_tools`",
                sb.notes()
            )
        });
        let want = if nat == NatChoice::Pasta {
            "pasta"
        } else {
            "slirp4netns"
        };
        assert!(name.starts_with(want), "{mode:?}: {name}");
        assert_eq!(sb.bwrap_version().is_some(), mode.bwrap(), "{:?}", sb.notes());
        assert_eq!(sb.cgroup_version().is_some(), mode.cgroups(), "{:?}", sb.notes());
        assert!(sb.capabilities().network, "{mode:?}");
        sb
    })
}

/// A Python tool that connects to each `(family, address, port)` and prints one line
/// per target: `connected <reply>` or `refused <error>`. A target named `gateway`
/// is probed only if the tool's namespace has the reject route for it.
fn prober(targets: &[(&str, String, u16)]) -> ProcessSpec {
    let list: Vec<String> = targets
        .iter()
        .map(|(f, a, p)| format!("({f:?}, {a:?}, {p})"))
        .collect();
    python(&format!(
        r#"
import socket
def rejected(addr):
    # /proc/net/route: the gateway's host route with RTF_REJECT (0x200).
    want = "%08X" % int.from_bytes(socket.inet_aton(addr), "little")
    for line in open("/proc/net/route").read().splitlines()[1:]:
        f = line.split()
        if f[1] == want and int(f[3], 16) & 0x200:
            return True
    return False
for fam, addr, port in [{}]:
    if fam == "gateway" and not rejected(addr):
        print("unsafe: no reject route for", addr)
        continue
    family = socket.AF_INET6 if fam == "v6" else socket.AF_INET
    s = socket.socket(family)
    s.settimeout(3)
    try:
        s.connect((addr, port))
        print("connected", s.recv(64).decode())
    except OSError as e:
        print("refused", addr, type(e).__name__, e.errno)
    finally:
        s.close()
"#,
        list.join(", ")
    ))
    .network(Network::Full)
}

/// The regression test of the hole: with the host's network namespace shared, a tool
/// granted the network reached the host's loopback (the node's own API).
#[tokio::test]
async fn a_granted_network_cannot_reach_the_host() {
    let host = TestHost::new();
    let v4 = loopback_server("host loopback");
    let l6 = TcpListener::bind("[::1]:0").expect("the host has no ::1");
    let v6 = l6.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l6.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut c, b"host ::1");
        }
    });
    // A host address that is not loopback (the host's end of the test's veth pair):
    // what listens on 0.0.0.0 or a bridge address is the host too.
    let lh = TcpListener::bind((host.host_side, 0)).unwrap();
    let vh = lh.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in lh.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut c, b"host address");
        }
    });
    let targets = [
        ("v4", "127.0.0.1".to_string(), v4),
        ("v6", "::1".to_string(), v6),
        ("gateway", NAT_GATEWAY.to_string(), v4),
        ("v4", host.host_side.to_string(), vh),
    ];
    for mode in ALL_MODES {
        for nat in NATS {
            let o = nat_sandbox(mode, nat)
                .run(prober(&targets), &Default::default())
                .await;
            let text = ok(mode, &o);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), targets.len(), "{mode:?} {nat:?}: {text}");
            for (line, t) in lines.iter().zip(&targets) {
                assert!(
                    line.starts_with("refused"),
                    "{mode:?} {nat:?}: reached the host at {}:{}: {line}",
                    t.1,
                    t.2
                );
            }
        }
    }
}

#[tokio::test]
async fn a_granted_network_reaches_a_test_host_through_the_nat() {
    let mut host = TestHost::new();
    let port = host.tcp_server("hello from the test host");
    let targets = [("v4", host.addr.to_string(), port)];
    for mode in ALL_MODES {
        for nat in NATS {
            let sb = nat_sandbox(mode, nat);
            let o = sb.run(prober(&targets), &Default::default()).await;
            assert_eq!(
                ok(mode, &o).trim(),
                "connected hello from the test host",
                "{mode:?} {nat:?}"
            );
            // Its own namespace: loopback and the NAT's tap, none of the host's
            // interfaces; DNS goes to the NAT's forwarder (bubblewrap's own
            // resolv.conf; a plain run sees the host's file).
            let o = sb
                .run(
                    sh(
                        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '; \
                        echo; cat /etc/resolv.conf",
                    )
                    .network(Network::Full),
                    &Default::default(),
                )
                .await;
            let text = ok(mode, &o);
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("lo tap0 "), "{mode:?} {nat:?}: {text}");
            if mode.bwrap() {
                assert_eq!(
                    lines.next(),
                    Some("nameserver 10.0.2.3"),
                    "{mode:?} {nat:?}: {text}"
                );
            }
        }
        // Without the network, the test host is out of reach: only loopback.
        let none = prober(&targets).network(Network::None);
        let o = run(mode, none).await;
        let text = ok(mode, &o);
        assert!(text.starts_with("refused"), "{mode:?}: {text}");
    }
}

/// The NAT is stopped with every run, and leaves the host's mounts alone: slirp4netns's
/// `--enable-sandbox`, run in the host's mount namespace, unmounted every
/// `/run/netns/*` (destroying the namespaces `ip netns` had made).
#[tokio::test]
async fn the_nat_is_gone_when_the_run_ends() {
    let named = TestHost::new();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!("/run/netns/{} ", named.name))
    };
    assert!(mounted(), "the test host's namespace is not mounted");
    let me = std::process::id() as i32;
    let nats = || -> Vec<i32> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ppid ..."
            let Some((comm, rest)) = stat.split_once(") ") else {
                continue;
            };
            let ppid: i32 = rest.split(' ').nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            if ppid == me && (comm.ends_with("(slirp4netns") || comm.ends_with("(pasta")) {
                v.push(pid);
            }
        }
        v
    };
    for mode in [Mode::Full, Mode::Plain] {
        for nat in NATS {
            let sb = nat_sandbox(mode, nat);
            let o = sb
                .run(sh("echo up").network(Network::Full), &Default::default())
                .await;
            assert_eq!(ok(mode, &o).trim(), "up");
            assert_eq!(
                nats(),
                Vec::<i32>::new(),
                "{mode:?} {nat:?}: the NAT outlived the run"
            );
            // A dropped run (a caller's timeout) stops its NAT too.
            let spec = sh("sleep 30").network(Network::Full);
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                sb.run(spec, &Default::default()),
            )
            .await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !nats().is_empty() && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(
                nats(),
                Vec::<i32>::new(),
                "{mode:?} {nat:?}: a dropped run left its NAT"
            );
            assert!(
                mounted(),
                "{mode:?} {nat:?}: the NAT unmounted the host's /run/netns"
            );
        }
    }
}

#[tokio::test]
async fn without_a_nat_the_network_is_refused_not_shared() {
    let sb = Sandbox::detect_with(hanzo_sandbox::Options {
        nat: NatChoice::Off,
        ..Mode::Full.options()
    });
    assert_eq!(sb.network_nat(), None);
    assert!(!sb.capabilities().network);
    assert!(
        sb.describe().contains("network: full refused"),
        "{}",
        sb.describe()
    );
    let o = sb
        .run(sh("echo ran").network(Network::Full), &Default::default())
        .await;
    match &o.exit {
        Exit::Rejected(why) => assert!(why.contains("network: full"), "{why}"),
        other => panic!("ran with the host's network? {other:?} {}", out(&o)),
    }
    assert!(o.stdout.is_empty());
}
