//! PEP 723 dependencies: installed by uv from PyPI on the first run, reused from the
//! cache on the next, one environment per dependency set, built once under
//! concurrency, nothing half-built left by a failure, read-only for the job, and no
//! package code run while installing.

use crate::util::{Node, alone_in_process, err, examples, lock_files, ok};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::time::{Instant, SystemTime};

/// The inode and modification time of an environment directory and of its marker:
/// a rebuild (build in a temporary directory, rename into place) changes both.
fn identity(p: &std::path::Path) -> (u64, SystemTime, SystemTime) {
    let m = std::fs::metadata(p).unwrap();
    let marker = std::fs::metadata(p.join("hanzo-env.txt")).unwrap();
    (m.ino(), m.modified().unwrap(), marker.modified().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_installs_second_reuses_other_sets_get_their_own() {
    let n = Node::new();
    let table = examples().join("table.py");
    let params = json!({"rows": [["Oslo", 3.5], ["Rome", 14]], "headers": ["city", "temp"]});
    assert!(n.envs().is_empty());

    let t = Instant::now();
    let ex = n.run(n.job(&table).params(params.clone())).await;
    let cold = t.elapsed();
    let out = ok(&ex).clone();
    let text = out["table"].as_str().unwrap();
    assert!(
        text.contains("| city") && text.contains("| Oslo") && text.contains("14"),
        "{text}"
    );
    let envs = n.envs();
    assert_eq!(envs.len(), 1, "{envs:?}");
    let before = identity(&envs[0]);
    let canonical = std::fs::read_to_string(envs[0].join("hanzo-env.txt")).unwrap();
    assert!(canonical.contains("dependency=tabulate>=0.9"), "{canonical}");

    // Make a rebuild visible even within the file system's timestamp granularity.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t = Instant::now();
    let ex = n.run(n.job(&table).params(params.clone())).await;
    let warm = t.elapsed();
    assert_eq!(ok(&ex), &out);
    assert_eq!(n.envs(), envs, "no new environment");
    assert_eq!(identity(&envs[0]), before, "the environment was rebuilt");

    // Another script with the same set (spelled differently) shares the environment.
    let same = n.script(
        "same.py",
        "# /// script\n# requires-python = \">=3.8\"\n# dependencies = [\"Tabulate >= 0.9\"]\n# ///\nimport tabulate\ndef run(p): return tabulate.__version__\n",
    );
    let ex = n.run(n.job(&same)).await;
    assert_eq!(ok(&ex), &out["tabulate"]);
    assert_eq!(n.envs(), envs);

    // A different set makes a different environment, without the first one's package.
    let other = n.script(
        "slug.py",
        "# /// script\n# dependencies = [\"python-slugify\"]\n# ///\nimport importlib.util\nfrom slugify import slugify\ndef run(p):\n    return {'slug': slugify(p['s']), 'tabulate': importlib.util.find_spec('tabulate') is not None}\n",
    );
    let ex = n
        .run(n.job(&other).params(json!({"s": "Héllo Wörld, ça va?"})))
        .await;
    assert_eq!(ok(&ex), &json!({"slug": "hello-world-ca-va", "tabulate": false}));
    assert_eq!(n.envs().len(), 2);
    assert_eq!(identity(&envs[0]), before);
    assert!(n.leftovers().is_empty());
    assert!(lock_files(&n).is_empty(), "{:?}", lock_files(&n));
    eprintln!("timing: table.py cold env {cold:?}, cached env {warm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_runs_build_one_environment() {
    let n = std::sync::Arc::new(Node::new());
    let p = n.script(
        "conc.py",
        "# /// script\n# dependencies = [\"text-unidecode\"]\n# ///\nfrom text_unidecode import unidecode\ndef run(p): return unidecode(p['s'])\n",
    );
    let mut tasks = Vec::new();
    for i in 0..4 {
        let n = n.clone();
        let spec = n.job(&p).params(json!({"s": format!("Ça {i}")}));
        tasks.push(tokio::spawn(async move { n.run(spec).await }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let ex = t.await.unwrap();
        assert_eq!(ok(&ex), &json!(format!("Ca {i}")));
    }
    // A second build of the same key would have failed to rename onto the first.
    assert_eq!(n.envs().len(), 1);
    assert!(n.leftovers().is_empty());
    assert!(lock_files(&n).is_empty(), "{:?}", lock_files(&n));
}

#[tokio::test]
async fn a_failed_install_is_bad_input_and_leaves_nothing() {
    let n = Node::new();
    let ex = n
        .run_script(
            "nope.py",
            "# /// script\n# dependencies = [\"hanzo-no-such-package-zz9\"]\n# ///\ndef run(p): return 1\n",
            json!({}),
        )
        .await;
    let e = err(&ex);
    assert_eq!(e.exit_code(), 2, "{e}");
    let m = e.to_string();
    assert!(
        m.contains("hanzo-no-such-package-zz9") && !m.contains('\n'),
        "{m}"
    );
    assert!(n.envs().is_empty(), "{:?}", n.envs());
    assert!(n.leftovers().is_empty(), "{:?}", n.leftovers());
    // A version that does not exist.
    let ex = n
        .run_script(
            "nover.py",
            "# /// script\n# dependencies = [\"tabulate==0.0.0.1\"]\n# ///\ndef run(p): return 1\n",
            json!({}),
        )
        .await;
    assert_eq!(err(&ex).exit_code(), 2, "{}", err(&ex));
    assert!(n.envs().is_empty() && n.leftovers().is_empty());
    assert!(lock_files(&n).is_empty(), "{:?}", lock_files(&n));
}

/// docopt 0.6.2, its only release, is published as a source distribution only: installing
/// it would run its setup.py. Wheels-only refuses it, and nothing is left.
#[tokio::test]
async fn source_distributions_are_not_built() {
    let n = Node::new();
    let ex = n
        .run_script(
            "sdist.py",
            "# /// script\n# dependencies = [\"docopt\"]\n# ///\ndef run(p): return 1\n",
            json!({}),
        )
        .await;
    let e = err(&ex);
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("no usable wheels"), "{e}");
    assert!(n.envs().is_empty() && n.leftovers().is_empty());
}

#[tokio::test]
async fn the_environment_is_read_only_for_the_job() {
    let n = Node::new();
    let ex = n
        .run_script(
            "tamper.py",
            "# /// script\n# dependencies = [\"text-unidecode\"]\n# ///\nimport os, text_unidecode\ndef run(p):\n    d = os.path.dirname(text_unidecode.__file__)\n    try:\n        open(os.path.join(d, '__init__.py'), 'a').write('raise SystemExit')\n        return 'tampered'\n    except OSError as e:\n        return type(e).__name__\n",
            json!({}),
        )
        .await;
    // Refused either way: the mount is read-only (EROFS, OSError) and, as tools run as
    // nobody, the environment is not theirs either (EACCES, PermissionError).
    let refused = ok(&ex);
    assert!(
        refused == &json!("OSError") || refused == &json!("PermissionError"),
        "{refused}"
    );
}

#[tokio::test]
async fn no_dependencies_run_without_an_environment() {
    let n = Node::new();
    let src = "import sys\ndef run(p): return sys.prefix == sys.base_prefix\n";
    let p = n.script("bare.py", src);
    let t = Instant::now();
    let ex = n.run(n.job(&p)).await;
    let first = t.elapsed();
    assert_eq!(ok(&ex), &json!(true), "not in a virtual environment");
    let t = Instant::now();
    let ex = n.run(n.job(&p)).await;
    let second = t.elapsed();
    assert_eq!(ok(&ex), &json!(true));
    assert!(!n.rt.envs_dir().exists(), "no cache was created");
    eprintln!("timing: no-deps run {first:?}, again {second:?}");
}

/// Builds the wheel `hanzo-pth-probe 1.0` into a simple index under `argv[1]` and serves
/// it on a free port, printing the port. The wheel ships a `.pth` file, which
/// `site` runs at every start of an interpreter whose site-packages holds it: it marks
/// the process environment (`HANZO_PTH_RAN`) and tries to write `PTH-RAN` into
/// `sys.prefix` (the environment) and `$UV_CACHE_DIR`, both writable while installing.
const PTH_INDEX: &str = r#"
import base64, functools, hashlib, http.server, os, sys, zipfile
root = sys.argv[1]
hook = '''import os, sys
os.environ["HANZO_PTH_RAN"] = "1"
for d in (sys.prefix, os.environ.get("UV_CACHE_DIR")):
    if d:
        try:
            open(os.path.join(d, "PTH-RAN"), "w").close()
        except OSError:
            pass
'''
info = "hanzo_pth_probe-1.0.dist-info"
files = {
    "hanzo_pth_probe/__init__.py": "def hello(s):\n    return 'hello ' + s\n",
    "hanzo_pth_hook.py": hook,
    "hanzo_pth_probe.pth": "import hanzo_pth_hook\n",
    info + "/METADATA": "Metadata-Version: 2.1\nName: hanzo-pth-probe\nVersion: 1.0\n",
    info + "/WHEEL": "Wheel-Version: 1.0\nGenerator: hanzo-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append("%s,sha256=%s,%d" % (path, digest, len(text.encode())))
files[info + "/RECORD"] = "\n".join(record + [info + "/RECORD,,"]) + "\n"
wheel = "hanzo_pth_probe-1.0-py3-none-any.whl"
os.makedirs(os.path.join(root, "hanzo-pth-probe"))
with zipfile.ZipFile(os.path.join(root, "hanzo-pth-probe", wheel), "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
with open(os.path.join(root, "hanzo-pth-probe", "index.html"), "w") as f:
    f.write('<html><body><a href="%s">%s</a></body></html>' % (wheel, wheel))
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The index server of [`PTH_INDEX`]; kills it when the test ends, passed or not.
struct Server {
    child: std::process::Child,
    /// The index's files, removed with the server.
    _index: tempfile::TempDir,
    /// The test host it runs on (a network namespace of the test's own, reached
    /// through the sandbox's NAT), removed after the server.
    _host: hanzo_testkit::nethost::TestHost,
}

impl Server {
    /// Starts the server on a test host; returns it and its `address:port`.
    fn start() -> (Server, String) {
        let index = tempfile::tempdir().unwrap();
        let python = hanzo_testkit::toolchain("python3");
        let host = hanzo_testkit::nethost::TestHost::new();
        let mut child = host
            .command(&python.display().to_string())
            .args(["-I", "-c", PTH_INDEX])
            .arg(index.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port: u16 = line.trim().parse().expect("the index server's port");
        let at = format!("{}:{port}", host.addr);
        let server = Server {
            child,
            _index: index,
            _host: host,
        };
        (server, at)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The regression test for package code run at install time: uv's `--compile-bytecode`
/// started the new environment's python with `site` on, so a wheel's `.pth` ran with the
/// network and the shared uv cache writable (and could rewrite other packages there).
/// The `.pth` must not run while installing, must run in the job (so this test would
/// see it), and the package must still import; its bytecode is compiled.
#[tokio::test]
async fn a_pth_file_in_a_wheel_does_not_run_at_install() {
    if !alone_in_process("deps::a_pth_file_in_a_wheel_does_not_run_at_install") {
        return;
    }
    // Served from a test host (a network namespace of the test's own): the install
    // step's network reaches other hosts through the sandbox's NAT, never the host's
    // loopback.
    let (server, at) = Server::start();
    // SAFETY: this test is alone in its process (checked above) and no other thread
    // reads the environment while it is changed, before the runtime exists.
    unsafe {
        for k in ["UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_OFFLINE"] {
            std::env::remove_var(k);
        }
        std::env::set_var("UV_INDEX_URL", format!("http://{at}/"));
    }

    let n = Node::new();
    let ex = n
        .run_script(
            "probe.py",
            "# /// script\n# dependencies = [\"hanzo-pth-probe\"]\n# ///\nimport os, hanzo_pth_probe\ndef run(p):\n    return {'hello': hanzo_pth_probe.hello(p['s']), 'pth': os.environ.get('HANZO_PTH_RAN')}\n",
            json!({"s": "x"}),
        )
        .await;
    drop(server);
    // Installed and working, and the .pth is live: it ran when the job's python started.
    assert_eq!(ok(&ex), &json!({"hello": "hello x", "pth": "1"}));
    let envs = n.envs();
    assert_eq!(envs.len(), 1, "{envs:?}");
    let uv_cache = n._data.path().join("python").join("uv-cache");
    assert!(uv_cache.is_dir(), "{}", uv_cache.display());
    for dir in [&envs[0], &uv_cache] {
        let marker = dir.join("PTH-RAN");
        assert!(
            !marker.exists(),
            "the wheel's .pth ran during the install: {}",
            marker.display()
        );
    }
    // Bytecode was compiled (by the separate step), for the package and the hook module.
    let lib = std::fs::read_dir(envs[0].join("lib"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let site = lib.join("site-packages");
    for (dir, module) in [
        (site.join("hanzo_pth_probe"), "__init__."),
        (site.clone(), "hanzo_pth_hook."),
    ] {
        let pyc: Vec<String> = std::fs::read_dir(dir.join("__pycache__"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            pyc.iter().any(|f| f.starts_with(module) && f.ends_with(".pyc")),
            "no bytecode for {module}py in {}: {pyc:?}",
            dir.display()
        );
    }
    assert!(n.leftovers().is_empty() && lock_files(&n).is_empty());
}

/// A job's environment steers only its tool, never the installer: `UV_INDEX_URL`
/// pointing at an index that has the package would make the install succeed if it
/// reached uv. The node's own index (the operator's `UV_INDEX_URL`) is a closed
/// loopback port, so nothing leaves the machine either way.
#[tokio::test]
async fn the_jobs_environment_never_reaches_the_installer() {
    if !alone_in_process("deps::the_jobs_environment_never_reaches_the_installer") {
        return;
    }
    let (server, at) = Server::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // SAFETY: alone in this process (checked above), before the runtime exists.
    unsafe {
        for k in ["UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_OFFLINE"] {
            std::env::remove_var(k);
        }
        std::env::set_var("UV_INDEX_URL", format!("http://127.0.0.1:{closed}/"));
    }
    let n = Node::new();
    let p = n.script(
        "steer.py",
        "# /// script\n# dependencies = [\"hanzo-pth-probe\"]\n# ///\nimport hanzo_pth_probe\ndef run(p): return 1\n",
    );
    let mut spec = n.job(&p);
    for (k, v) in [
        ("UV_INDEX_URL", format!("http://{at}/")),
        ("UV_DEFAULT_INDEX", format!("http://{at}/")),
        ("UV_NO_CONFIG", "0".into()),
        ("PIP_INDEX_URL", format!("http://{at}/")),
    ] {
        spec.env.insert(k.into(), v);
    }
    let ex = n.run(spec).await;
    drop(server);
    let e = err(&ex);
    assert!(e.to_string().contains("cannot install"), "{e}");
    assert!(n.envs().is_empty() && n.leftovers().is_empty());
}

/// Installing runs uv on tool-controlled input (the dependency list), so it runs in the
/// sandbox or not at all: without bubblewrap the job is refused (exit 4), and uv never
/// starts on the host. (`UV_OFFLINE` keeps a uv that did start from the network.)
#[tokio::test]
async fn without_bubblewrap_nothing_is_installed() {
    if !alone_in_process("deps::without_bubblewrap_nothing_is_installed") {
        return;
    }
    // SAFETY: alone in this process (checked above), before the runtime exists.
    unsafe { std::env::set_var("UV_OFFLINE", "1") };
    let plain = hanzo_sandbox::Sandbox::detect_with(hanzo_sandbox::Options {
        allow_bwrap: false,
        ..Default::default()
    });
    let n = Node::with_sandbox(std::sync::Arc::new(plain), &Default::default());
    let ex = n
        .run_script(
            "plain.py",
            "# /// script\n# dependencies = [\"tabulate\"]\n# ///\ndef run(p): return 1\n",
            json!({}),
        )
        .await;
    let e = err(&ex);
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(e.to_string().contains("bubblewrap"), "{e}");
    assert!(n.envs().is_empty() && n.leftovers().is_empty());
}
