//! `Network::Full`: a network namespace of the tool's own, connected to other hosts by
//! user-mode NAT, never the host's own namespace.
//!
//! Sharing the host's network namespace would hand the tool everything that listens on
//! the host's loopback (the node's own API, which could then be asked for a job with
//! host mounts; databases; Docker's API on a TCP port) and the host's abstract Unix
//! sockets. So a granted network is, like Docker's bridge, a namespace of its own:
//!
//! 1. the node (root) creates the namespace itself, from a thread of its own
//!    (`unshare(CLONE_NEWNET)` affects only that thread), keeps a descriptor to it and
//!    brings its loopback up. It is owned by the host's user namespace, so no tool,
//!    even "root" in bubblewrap's user namespace, can change its routes or interfaces;
//! 2. a user-mode NAT is attached to it: `slirp4netns` (preferred), else `pasta`. It
//!    makes a `tap0` with `10.0.2.100/24`, a default route through `10.0.2.2`, and
//!    forwards DNS sent to `10.0.2.3` to the host's resolver. Each connection the tool
//!    makes is re-made by the NAT process, from the host, as an ordinary socket;
//! 3. the NAT's "gateway is the host's loopback" mapping is off
//!    (`--disable-host-loopback`, `--no-map-gw`), and pasta's port forwarding is off
//!    in both directions (`-t/-u/-T/-U none`: its default would forward every port
//!    bound on the host's loopback into the namespace's);
//! 4. once the NAT is up, the namespace gets reject routes for every IPv4 address of
//!    the host and for the gateway: what listens on the host's other addresses
//!    (`0.0.0.0`, a bridge address) is out of reach too. IPv6 is not routed at all;
//! 5. the tool's process (bubblewrap, or the plain tool) joins the namespace with
//!    `setns` between `fork` and `exec`, before it drops to the tool's user: the
//!    network is up before the tool's first instruction.
//!
//! The NAT process is moved into the job's cgroup (its memory and CPU are the job's),
//! and dies with the run (`--exit-fd` for slirp4netns, a kill for both) and with the
//! node (`PR_SET_PDEATHSIG`, and slirp4netns's `--exit-fd`).
//!
//! Why slirp4netns first: its gateway (`10.0.2.2`) and DNS (`10.0.2.3`) are virtual
//! and never leave the machine, it confines itself (`--enable-sandbox`: an empty root
//! and no capabilities but `CAP_NET_BIND_SERVICE`; `--enable-seccomp`), and it signals
//! readiness and exit through descriptors. Debian 12's pasta (2023-03) has neither
//! signal, must stay root to join a namespace it did not create (`--runas 0`), copies
//! the host's addresses and gateway unless told otherwise, and relays traffic for its
//! gateway address to the real address of that name (the reject route stops it).

use crate::SandboxError;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which user-mode NAT gives `Network::Full` its connectivity ([`Options::nat`]).
///
/// [`Options::nat`]: crate::Options::nat
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NatChoice {
    /// slirp4netns when installed, else pasta.
    #[default]
    Auto,
    /// slirp4netns only.
    Slirp4netns,
    /// pasta (passt) only.
    Pasta,
    /// None: `Network::Full` is refused.
    Off,
}

/// The tool's address inside its namespace.
pub const NAT_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The NAT's gateway address (virtual: it never reaches the host's loopback).
pub const NAT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The NAT's DNS forwarder, named in the sandbox's `/etc/resolv.conf`.
pub const NAT_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// How long a NAT may take to come up.
const READY_PATIENCE: Duration = Duration::from_secs(5);

/// The PATH the NAT processes are looked up in and started with.
const NAT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Slirp4netns,
    Pasta,
}

impl Kind {
    fn program(self) -> &'static str {
        match self {
            Kind::Slirp4netns => "slirp4netns",
            Kind::Pasta => "pasta",
        }
    }
}

/// A user-mode NAT found on this host and known to work (probed by [`Nat::detect`]).
#[derive(Debug, Clone)]
pub(crate) struct Nat {
    kind: Kind,
    path: PathBuf,
    version: String,
    /// slirp4netns: `--enable-sandbox` and `--enable-seccomp` are available.
    confine: Vec<&'static str>,
    /// pasta: the flag that stops it mapping the gateway to the host's loopback.
    no_map_gw: &'static str,
}

impl Nat {
    /// Finds and probes the NAT `choice` allows (a namespace is created and connected
    /// once); `Err` says why `Network::Full` cannot be had here.
    pub(crate) fn detect(choice: NatChoice, euid: u32) -> Result<Nat, String> {
        let kinds: &[Kind] = match choice {
            NatChoice::Off => return Err("user-mode NAT disabled by options".into()),
            NatChoice::Auto => &[Kind::Slirp4netns, Kind::Pasta],
            NatChoice::Slirp4netns => &[Kind::Slirp4netns],
            NatChoice::Pasta => &[Kind::Pasta],
        };
        if euid != 0 {
            // The namespace must be owned by the host's user namespace, so that the
            // tool can never reconfigure it; only root can make one.
            return Err("needs a root node (it creates the tool's network namespace)".into());
        }
        let mut why = Vec::new();
        for &kind in kinds {
            match Nat::find(kind).and_then(|n| n.probe().map(|()| n)) {
                Ok(n) => return Ok(n),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    fn find(kind: Kind) -> Result<Nat, String> {
        let name = kind.program();
        let path = std::env::split_paths(NAT_PATH)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("{name} is not installed"))?;
        let text = |arg: &str| {
            Command::new(&path)
                .arg(arg)
                .env_clear()
                .env("PATH", NAT_PATH)
                .stdin(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
                .map_err(|e| format!("cannot run {}: {e}", path.display()))
        };
        let help = text("--help")?;
        let version = text("--version")?
            .lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix("slirp4netns version ")
                    .or_else(|| l.strip_prefix("pasta "))
                    .map(str::to_string)
            })
            .filter(|v| v != "unknown version")
            .unwrap_or_default();
        let needs: &[&str] = match kind {
            Kind::Slirp4netns => &[
                "--disable-host-loopback",
                "--exit-fd",
                "--ready-fd",
                "--netns-type",
            ],
            Kind::Pasta => &["--netns", "--config-net", "--dns-forward", "--tcp-ns", "--runas"],
        };
        if let Some(missing) = needs.iter().find(|f| !help.contains(*f)) {
            return Err(format!("{name} {version} is too old (no {missing})"));
        }
        let confine = ["--enable-sandbox", "--enable-seccomp"]
            .into_iter()
            .filter(|f| kind == Kind::Slirp4netns && help.contains(f))
            .collect();
        // Newer pasta spells it --map-host-loopback none (and keeps --no-map-gw as an
        // alias); one of them is required, or the gateway would be the host.
        let no_map_gw = if help.contains("--no-map-gw") {
            "--no-map-gw"
        } else if help.contains("--map-host-loopback") {
            "--map-host-loopback=none"
        } else if kind == Kind::Pasta {
            return Err(format!("{name} {version} cannot be kept off the host's loopback"));
        } else {
            ""
        };
        Ok(Nat {
            kind,
            path,
            version,
            confine,
            no_map_gw,
        })
    }

    /// Connects one namespace and takes it down again.
    fn probe(&self) -> Result<(), String> {
        let name = self.kind.program();
        let mut ns = self
            .start()
            .map_err(|e| format!("{name} cannot be started: {e}"))?;
        ns.wait_ready()
            .map_err(|e| format!("{name} did not come up: {e}"))
    }

    /// `slirp4netns 1.2.0`.
    pub(crate) fn name(&self) -> String {
        if self.version.is_empty() {
            self.kind.program().to_string()
        } else {
            format!("{} {}", self.kind.program(), self.version)
        }
    }

    /// Creates a namespace and starts the NAT on it (not waiting: see
    /// [`NetNs::wait_ready`]).
    ///
    /// Must run on a thread that outlives the run (the NAT dies with it).
    pub(crate) fn start(&self) -> Result<NetNs, SandboxError> {
        let ns = new_netns().map_err(SandboxError::io("cannot create a network namespace"))?;
        let nsfd = ns.as_raw_fd();
        let netns_path = format!("/proc/self/fd/{nsfd}");
        let mut cmd = Command::new(&self.path);
        let mut inherit = vec![nsfd];
        let mut ready = None;
        let mut exit = None;
        let mut keep = Vec::new();
        match self.kind {
            Kind::Slirp4netns => {
                let (ready_r, ready_w) =
                    crate::sys::pipe().map_err(SandboxError::io("cannot make a pipe"))?;
                let (exit_r, exit_w) = crate::sys::pipe().map_err(SandboxError::io("cannot make a pipe"))?;
                cmd.args(["--configure", "--mtu=65520", "--disable-host-loopback"]);
                cmd.args(&self.confine);
                cmd.arg(format!("--ready-fd={}", ready_w.as_raw_fd()));
                // slirp4netns exits when this pipe's other end closes: when the run
                // ends, or the node dies however it dies.
                cmd.arg(format!("--exit-fd={}", exit_r.as_raw_fd()));
                cmd.args(["--netns-type=path", &netns_path, "tap0"]);
                inherit.extend([ready_w.as_raw_fd(), exit_r.as_raw_fd()]);
                keep.extend([ready_w, exit_r]);
                ready = Some(ready_r);
                exit = Some(exit_w);
            }
            Kind::Pasta => {
                let a = NAT_ADDRESS.to_string();
                let g = NAT_GATEWAY.to_string();
                let d = NAT_DNS.to_string();
                cmd.args([
                    "--runas",
                    "0",
                    "--netns",
                    &netns_path,
                    "--config-net",
                    "-I",
                    "tap0",
                ]);
                // Addresses of our own: by default pasta copies the host's address and
                // gateway, and traffic for the gateway would go to the real one.
                cmd.args(["-a", &a, "-n", "24", "-g", &g, self.no_map_gw]);
                // No port forwarding either way: the default (auto) forwards every port
                // bound on the host into the namespace's loopback (-T, -U), and every
                // port the tool binds onto the host's addresses (-t, -u).
                cmd.args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"]);
                cmd.args(["--dns-forward", &d, "-4", "-f", "-q"]);
            }
        }
        cmd.env_clear()
            .env("PATH", NAT_PATH)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, unshare, mount, setsid, prctl).
        unsafe {
            cmd.pre_exec(move || {
                // A mount namespace of its own whose mounts propagate nowhere.
                // slirp4netns's --enable-sandbox makes only "/" private before it
                // detaches the old root: run as root in the host's mount namespace, that
                // unmount propagates to the host's shared mounts (it removed every
                // `ip netns` namespace's /run/netns mount here, destroying them).
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                for &fd in inherit.iter() {
                    crate::sys::child::keep_across_exec(fd)?;
                }
                // Out of the node's process group and session, and dead with the node.
                libc::setsid();
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let child = cmd
            .spawn()
            .map_err(SandboxError::io(format!("cannot start {}", self.path.display())))?;
        drop(keep);
        Ok(NetNs {
            ns,
            child,
            kind: self.kind,
            ready,
            exit,
        })
    }
}

/// A tool's network namespace and the NAT process serving it. Dropping it stops the
/// NAT (a blocking wait of a moment: drop it off the async threads); the namespace
/// goes when its last process and this descriptor are gone.
#[derive(Debug)]
pub(crate) struct NetNs {
    ns: OwnedFd,
    child: Child,
    kind: Kind,
    /// slirp4netns writes `1` here once the namespace is configured.
    ready: Option<OwnedFd>,
    /// Held open for as long as slirp4netns must run.
    exit: Option<OwnedFd>,
}

impl NetNs {
    /// The namespace's descriptor, for `setns` in the tool's process.
    pub(crate) fn fd(&self) -> RawFd {
        self.ns.as_raw_fd()
    }

    /// The NAT's pid.
    pub(crate) fn nat_pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Blocks until the NAT has configured the namespace (at most 5 s), then closes
    /// the routes to the host's own addresses.
    pub(crate) fn wait_ready(&mut self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + READY_PATIENCE;
        let fail = |what: String| SandboxError::Io {
            what,
            source: io::Error::from(io::ErrorKind::TimedOut),
        };
        let program = self.kind.program();
        match self.ready.take() {
            Some(r) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut p = libc::pollfd {
                    fd: r.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut p, 1, left.as_millis() as libc::c_int) };
                let mut b = [0u8; 1];
                // SAFETY: reading one byte into a one-byte buffer.
                let got = n > 0 && unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) } == 1;
                if !got || b[0] != b'1' {
                    return Err(fail(self.died_or(program, "signalled no readiness")));
                }
            }
            None => loop {
                // pasta has no readiness signal: its default route appears once it
                // has configured the namespace.
                if in_netns(self.fd(), has_default_route)
                    .map_err(SandboxError::io("cannot look into the network namespace"))?
                {
                    break;
                }
                if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                    return Err(fail(self.died_or(program, "configured no route in 5 s")));
                }
                std::thread::sleep(Duration::from_millis(2));
            },
        }
        // The host's addresses are read here, in the node's namespace.
        let mut addrs = host_addresses();
        addrs.push(NAT_GATEWAY);
        in_netns(self.fd(), move || close_routes(&addrs)).map_err(SandboxError::io(
            "cannot close the network namespace's routes to the host",
        ))
    }

    fn died_or(&mut self, program: &str, otherwise: &str) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("{program} exited ({status})"),
            _ => format!("{program} {otherwise}"),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.exit.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `/etc/resolv.conf` a sandbox with the network sees: the NAT's forwarder (the
/// host's own may be a loopback resolver, out of reach from the namespace).
pub(crate) fn resolv_conf() -> String {
    format!("nameserver {NAT_DNS}\n")
}

/// Runs `f` on a thread of its own that has joined the namespace `ns` (network
/// namespaces are per thread; the node's own threads never change theirs).
fn in_netns<T: Send>(ns: RawFd, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace descriptor we hold, for this thread only.
            if unsafe { libc::setns(ns, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

/// A new network namespace with its loopback up, held by a descriptor.
fn new_netns() -> io::Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare of the network namespace affects this thread only, and the
            // thread ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a NUL-terminated path; the descriptor is owned below.
            let fd = unsafe {
                libc::open(
                    c"/proc/thread-self/ns/net".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd was just opened and is owned by nothing else.
            let ns = unsafe { OwnedFd::from_raw_fd(fd) };
            loopback_up()?;
            Ok(ns)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Brings `lo` up in the calling thread's namespace.
fn loopback_up() -> io::Result<()> {
    let sock = inet_socket()?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the calling thread's namespace has an IPv4 default route.
fn has_default_route() -> io::Result<bool> {
    let table = std::fs::read_to_string("/proc/thread-self/net/route")?;
    Ok(table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3
            && f[1] == "00000000"
            && u16::from_str_radix(f[3], 16).is_ok_and(|flags| flags & libc::RTF_GATEWAY != 0)
    }))
}

/// The host's IPv4 addresses but loopback's (which the namespace has its own of).
fn host_addresses() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below; we only read its entries.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let a = (*cur).ifa_addr;
            if !a.is_null() && i32::from((*a).sa_family) == libc::AF_INET {
                let sin = &*(a as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() && !out.contains(&ip) {
                    out.push(ip);
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// Adds reject routes for `addrs` (the host's own IPv4 addresses and the NAT's
/// gateway) in the calling thread's namespace. A connection to any of them then fails
/// at once in the tool's namespace (`EHOSTUNREACH`) and never reaches the NAT, which
/// would make it from the host, where those addresses are the host itself.
fn close_routes(addrs: &[Ipv4Addr]) -> io::Result<()> {
    let sock = inet_socket()?;
    for &ip in addrs {
        reject_route(&sock, ip)?;
    }
    Ok(())
}

fn reject_route(sock: &OwnedFd, ip: Ipv4Addr) -> io::Result<()> {
    let sin = |a: Ipv4Addr| {
        // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
        let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        s.sin_family = libc::AF_INET as libc::sa_family_t;
        s.sin_addr.s_addr = u32::from(a).to_be();
        // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes).
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(s) }
    };
    // SAFETY: rtentry is plain data (and a null rt_dev); all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sin(ip);
    rt.rt_genmask = sin(Ipv4Addr::BROADCAST);
    rt.rt_flags = libc::RTF_UP | libc::RTF_HOST | libc::RTF_REJECT;
    // SAFETY: SIOCADDRT reads the rtentry we pass.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) } != 0 {
        let e = io::Error::last_os_error();
        // The same address on two host interfaces.
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}
