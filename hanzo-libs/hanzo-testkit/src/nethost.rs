//! A test host of the test's own, for tools granted `network: full`: a network
//! namespace (`ip netns add hanzo-t-<random>`) joined to the host by a veth pair with
//! addresses the test chooses (`10.213.x.y/30`), and servers run inside it with `ip
//! netns exec`. A sandboxed tool reaches it through its NAT like any other host, and
//! nothing is ever sent to an address outside the machine. Needs root.
//!
//! Everything (servers, namespace, veth pair) is removed when the [`TestHost`] is
//! dropped, passed or failed.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Serves `argv[1]` to every TCP connection, then closes it; prints its port.
const TCP_REPLY: &str = r#"
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(sys.argv[1].encode())
    finally:
        c.close()
"#;

/// Answers every HTTP GET with `argv[1]` (text/plain); prints its port.
const HTTP_REPLY: &str = r#"
import http.server, sys
body = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("0.0.0.0", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A network namespace with a veth pair to the host and servers inside; see the module.
pub struct TestHost {
    /// The namespace's name (`hanzo-t-<hex>`).
    pub name: String,
    /// The host's end of the veth pair.
    veth: String,
    /// The host side's address (`10.213.x.y+1`): an address of the host itself.
    pub host_side: Ipv4Addr,
    /// The test host's address (`10.213.x.y+2`).
    pub addr: Ipv4Addr,
    servers: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A /30 of 10.213.0.0/16 that no host interface uses yet.
fn free_subnet() -> (u8, u8) {
    static N: AtomicU64 = AtomicU64::new(0);
    let taken = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64;
    let mut seed = nanos ^ (u64::from(std::process::id()) << 20) ^ (N.fetch_add(1, Ordering::Relaxed) * 7919);
    for _ in 0..64 {
        let n = (seed % 16384) as u16;
        let (a, b) = ((n / 64) as u8, ((n % 64) * 4) as u8);
        if !taken.contains(&format!("10.213.{a}.{}/", b + 1)) {
            return (a, b);
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 7;
    }
    panic!("no free /30 in 10.213.0.0/16");
}

impl TestHost {
    /// Creates the namespace and the veth pair; panics (with `ip`'s message) when this
    /// host cannot, e.g. without root.
    pub fn new() -> TestHost {
        let (a, b) = free_subnet();
        let id = format!("{a:02x}{b:02x}{:04x}", std::process::id() & 0xffff);
        let host = TestHost {
            name: format!("hanzo-t-{id}"),
            veth: format!("hzt{id}"),
            host_side: Ipv4Addr::new(10, 213, a, b + 1),
            addr: Ipv4Addr::new(10, 213, a, b + 2),
            servers: Vec::new(),
        };
        let peer = format!("hzt{id}n");
        let (n, v) = (host.name.as_str(), host.veth.as_str());
        let mine = format!("{}/30", host.host_side);
        let theirs = format!("{}/30", host.addr);
        let steps: [&[&str]; 7] = [
            &["netns", "add", n],
            &[
                "link", "add", v, "type", "veth", "peer", "name", &peer, "netns", n,
            ],
            &["addr", "add", &mine, "dev", v],
            &["link", "set", v, "up"],
            &["-n", n, "addr", "add", &theirs, "dev", &peer],
            &["-n", n, "link", "set", &peer, "up"],
            &["-n", n, "link", "set", "lo", "up"],
        ];
        for step in steps {
            // `host` is dropped on panic: what was made so far is removed.
            if let Err(e) = ip(step) {
                panic!("cannot make the test host (needs root): {e}");
            }
        }
        host
    }

    /// Cuts (`false`) or restores (`true`) the link between the host and the test host:
    /// the host's end of the veth pair goes down or up, and nothing crosses meanwhile
    /// (no reset either: a partition, not a refusal).
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        if let Err(e) = ip(&["link", "set", &self.veth, state]) {
            panic!("cannot set the test host's link {state}: {e}");
        }
    }

    /// A command that runs `program` inside the test host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null());
        c
    }

    /// Starts `cmd` (made by [`command`](Self::command)), which must print its port on
    /// its first line, and keeps it until the test host is dropped.
    pub fn serve(&mut self, mut cmd: Command) -> u16 {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start a server in the test host");
        let stdout = child.stdout.take().unwrap();
        self.servers.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("the test host's server printed no port: {line:?}"))
    }

    /// A TCP server in the test host that sends `reply` to every connection; its port.
    pub fn tcp_server(&mut self, reply: &str) -> u16 {
        let mut c = self.command("python3");
        c.args(["-I", "-c", TCP_REPLY, reply]);
        self.serve(c)
    }

    /// An HTTP server in the test host that answers every GET with `body`; its port.
    pub fn http_server(&mut self, body: &str) -> u16 {
        let mut c = self.command("python3");
        c.args(["-I", "-c", HTTP_REPLY, body]);
        self.serve(c)
    }
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        // Deleting the namespace deletes the peer, and with it the pair; the host's end
        // is deleted too in case the namespace was never made.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.veth]);
    }
}

/// A TCP server on the host's loopback (`127.0.0.1`) that answers every connection
/// with `reply`: what a tool granted the network must never reach. Its port.
pub fn loopback_server(reply: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut c, reply.as_bytes());
        }
    });
    port
}
