//! The build is a preparation step of the node, run on tool-controlled input: it runs
//! in the sandbox, always, sees only the module's own tree, and never the job's
//! environment.

use crate::util::*;
use hanzo_compute::config::GoConfig;
use hanzo_compute::{Job, Runtime};
use hanzo_go_runtime::{GoRuntime, Target};
use hanzo_sandbox::{Options, Sandbox, ToolUser};
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAIN: &str = "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(`1`) }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_outside_the_module_is_refused() {
    for target in ["../outside", "/etc", "./../outside/."] {
        let pkg = fresh_package("replace-out", MAIN);
        // The target exists and is a module: refused for where it is, not for what.
        let outside = pkg.parent().unwrap().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        write_atomically(&outside.join("go.mod"), "module example.com/x\n\ngo 1.24\n");
        write_atomically(
            &pkg.join("go.mod"),
            &format!("module example.com/r\n\ngo 1.24\n\nreplace example.com/x => {target}\n"),
        );
        let e = run("auto", job(&pkg)).await.result.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{target}: {e}");
        let m = e.to_string();
        assert!(
            m.contains("replaces example.com/x with") && m.contains("outside the module's directory"),
            "{target}: {m}"
        );
        assert!(!m.contains('\n'), "{m}");
    }
    // Inside the module is fine.
    let pkg = fresh_package("replace-in", MAIN);
    std::fs::create_dir_all(pkg.join("x")).unwrap();
    write_atomically(&pkg.join("x/go.mod"), "module example.com/x\n\ngo 1.24\n");
    write_atomically(
        &pkg.join("go.mod"),
        "module example.com/r\n\ngo 1.24\n\nreplace example.com/x => ./x\n",
    );
    assert_eq!(run("auto", job(&pkg)).await.result, Ok(json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendored_dependency_builds_without_a_proxy() {
    // There is no module proxy: a dependency is in the module's tree, vendored.
    let pkg = fresh_package(
        "vendored",
        "package main\n\nimport (\n\t\"example.com/dep\"\n\t\"os\"\n\t\"strconv\"\n)\n\n\
         func main() { os.Stdout.WriteString(strconv.Itoa(dep.X())) }\n",
    );
    write_atomically(
        &pkg.join("go.mod"),
        "module example.com/vendored\n\ngo 1.24\n\nrequire example.com/dep v1.0.0\n",
    );
    std::fs::create_dir_all(pkg.join("vendor/example.com/dep")).unwrap();
    write_atomically(
        &pkg.join("vendor/modules.txt"),
        "# example.com/dep v1.0.0\n## explicit\nexample.com/dep\n",
    );
    write_atomically(
        &pkg.join("vendor/example.com/dep/dep.go"),
        "package dep\n\nfunc X() int { return 7 }\n",
    );
    let e = run("auto", job(&pkg)).await;
    assert_eq!(e.result, Ok(json!(7)), "{}", String::from_utf8_lossy(&e.logs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_toolchain_is_never_fetched() {
    // `go 1.99` (or a `toolchain` line) would make go download that toolchain and run
    // it; GOTOOLCHAIN=local makes it a one-line build error instead.
    let pkg = fresh_package("toolchain", MAIN);
    write_atomically(
        &pkg.join("go.mod"),
        "module example.com/tc\n\ngo 1.99\n\ntoolchain go1.99.1\n",
    );
    let e = run("auto", job(&pkg)).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("GOTOOLCHAIN=local"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_comes_from_the_node_not_from_the_host() {
    // A tool outside the repository whose go.mod replaces the SDK by a directory that
    // does not exist here: the node's own copy is built, the host path never read.
    let pkg = fresh_package(
        "sdk-user",
        "package main\n\nimport hanzo \"github.com/hanzoai/hanzo-node/hanzo-sdk/go\"\n\n\
         type t struct{}\n\n\
         func (t) Schema() hanzo.ToolSchema { return hanzo.ToolSchema{Name: \"run\"} }\n\n\
         func (t) Run(p map[string]any) (any, error) { return p[\"x\"], nil }\n\n\
         func main() { hanzo.Serve(t{}) }\n",
    );
    write_atomically(
        &pkg.join("go.mod"),
        "module example.com/sdkuser\n\ngo 1.24\n\nrequire github.com/hanzoai/hanzo-node/hanzo-sdk/go v0.0.0\n\n\
         replace github.com/hanzoai/hanzo-node/hanzo-sdk/go => ../no-such-dir/hanzo-sdk/go\n",
    );
    for native in [false, true] {
        let mut spec = job(&pkg).params(json!({"x": 42}));
        spec.native = native;
        let e = run("auto", spec).await;
        assert_eq!(
            e.result,
            Ok(json!(42)),
            "native={native}: {}",
            String::from_utf8_lossy(&e.logs)
        );
    }
    // Any other module by that directory is refused.
    write_atomically(
        &pkg.join("go.mod"),
        "module example.com/sdkuser\n\ngo 1.24\n\nreplace example.com/other => ../no-such-dir/hanzo-sdk/go\n",
    );
    let e = run("auto", job(&pkg)).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_out_of_the_tree_are_refused_before_the_build() {
    // `//go:embed secret` of a link to /etc/shadow would put the host's file in the
    // tool; a linked directory would do the same for a whole tree.
    for (name, to) in [("secret", "/etc/shadow"), ("assets", "/etc")] {
        let pkg = fresh_package(
            "embed-link",
            &format!(
                "package main\n\nimport _ \"embed\"\n\n//go:embed {name}\nvar s string\n\nfunc main() {{ print(s) }}\n"
            ),
        );
        std::os::unix::fs::symlink(to, pkg.join(name)).unwrap();
        let e = run("auto", job(&pkg)).await.result.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}

/// A stand-in for the Go toolchain: a GOROOT whose `bin/go` is a shell script. Asked
/// `env GOROOT GOVERSION` (the node's probe, on the host) it names itself; asked to
/// build, it runs `build` (a shell snippet).
fn fake_go(build: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let go = bin.join("go");
    std::fs::write(
        &go,
        format!(
            "#!/bin/sh\nif [ \"$1\" = env ]; then echo {}; echo go1.99-fake; exit 0; fi\n{build}\n",
            root.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o755)).unwrap();
    (root, go)
}

/// Prints, as one line on stderr, where the build runs and what it was given.
const EVIDENCE: &str = "echo \"evidence host=$(cat /proc/sys/kernel/hostname) net=$(readlink /proc/self/ns/net) \
mnt=$(readlink /proc/self/ns/mnt) shadow=[$(head -c 5 /etc/shadow 2>&1)] goflags=[$GOFLAGS] \
cgo=[$CGO_ENABLED] proxy=[$GOPROXY] probe=[$HANZO_PROBE]\" >&2; exit 1";

fn runtime_on(sandbox: Sandbox, go: &Path, data: &Path) -> GoRuntime {
    let config = GoConfig {
        binary: go.display().to_string(),
        ..GoConfig::default()
    };
    let wasm: Arc<dyn Runtime> = Arc::new(
        hanzo_wasm_runtime::WasmRuntime::new(hanzo_wasm_runtime::WasmOptions::new(data, Default::default()))
            .unwrap(),
    );
    GoRuntime::new(Arc::new(sandbox), wasm, &config, data, 128)
}

/// A job whose environment tries to steer the build.
fn steering_job(pkg: &Path) -> Job {
    let mut spec = job(pkg);
    for (k, v) in [
        ("GOFLAGS", "-toolexec=/bin/false"),
        ("CGO_ENABLED", "1"),
        ("GOPROXY", "http://127.0.0.1:9"),
        ("HANZO_PROBE", "leaked"),
    ] {
        spec.env.insert(k.into(), v.into());
    }
    Job::new(spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_runs_in_the_sandbox_without_the_jobs_environment() {
    let (_root, go) = fake_go(EVIDENCE);
    let rt = runtime_on(Sandbox::detect(), &go, data_dir());
    let pkg = fresh_package("evidence", MAIN);
    let e = rt.execute(&steering_job(&pkg)).await.result.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("evidence"), "{m}");
    let host_ns = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
    // bubblewrap's UTS, network and mount namespaces, not the host's.
    assert!(m.contains("host=hanzo "), "{m}");
    assert!(!m.contains(&host_ns("net").display().to_string()), "{m}");
    assert!(!m.contains(&host_ns("mnt").display().to_string()), "{m}");
    assert!(m.contains("shadow=[head: cannot open"), "{m}");
    // The node's settings, none of the job's.
    for want in ["goflags=[-mod=readonly]", "cgo=[0]", "proxy=[off]", "probe=[]"] {
        assert!(m.contains(want), "{want}: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bubblewrap_no_build_runs() {
    // The host-side build this replaces ran the package's go as the node, with the
    // node's view of the machine.
    let (_root, go) = fake_go("touch \"$(dirname \"$0\")/ran\"; exit 1");
    let plain = Sandbox::detect_with(Options {
        allow_bwrap: false,
        ..Options::default()
    });
    let rt = runtime_on(plain, &go, data_dir());
    let h = rt.health().await;
    assert!(!h.available, "{h:?}");
    assert!(h.detail.as_deref().unwrap_or("").contains("bubblewrap"), "{h:?}");
    let e = rt
        .execute(&steering_job(&fresh_package("plain", MAIN)))
        .await
        .result
        .unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(e.to_string().contains("bubblewrap"), "{e}");
    assert!(
        !go.parent().unwrap().join("ran").exists(),
        "the build ran on the host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_as_an_unprivileged_user_writes_only_what_it_is_given() {
    // The sandbox runs tools (and builds) as nobody: the output directory and the build
    // cache are handed to that user, and the finished build is given back to the node.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the suite runs as root (scripts/test.sh)"
    );
    let (_root, go) = fake_go(
        "while [ $# -gt 0 ]; do [ \"$1\" = -o ] && out=$2; shift; done\n\
         mkdir -p \"$GOCACHE\" && touch \"$GOCACHE/entry\" || exit 1\n\
         echo \"uid=$(id -u)\" > \"$out\"",
    );
    let data = tempfile::tempdir().unwrap();
    // Private (0700) like a real data dir: the sandbox stages what it shows, so nobody's
    // bubblewrap need not reach it itself.
    let sandbox = Sandbox::detect_with(Options {
        tool_user: ToolUser::Id {
            uid: 65534,
            gid: 65534,
        },
        ..Options::default()
    });
    assert!(sandbox.isolates_filesystem(), "{:?}", sandbox.notes());
    let rt = runtime_on(sandbox, &go, data.path());
    let pkg = fresh_package("nobody", MAIN);
    let built = rt.build(&pkg.to_string_lossy(), Target::Native).await.unwrap();
    assert_eq!(std::fs::read_to_string(&built.path).unwrap().trim(), "uid=65534");
    assert_eq!(std::fs::metadata(&built.path).unwrap().uid(), 0, "given back");
    let cache = data.path().join("go/cache");
    assert_eq!(std::fs::metadata(&cache).unwrap().uid(), 65534);
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("entry").exists());
    assert!(entry.is_some(), "the build wrote its cache");
    // Nothing else of the builds directory is the build user's.
    for e in std::fs::read_dir(data.path().join("go/builds"))
        .unwrap()
        .flatten()
    {
        assert_eq!(e.metadata().unwrap().uid(), 0, "{}", e.path().display());
    }
}
