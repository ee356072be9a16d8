//! The runtimes' caches under a quota (`[node] cache_max_mb`): least recently used
//! entries go first, an entry a job is using is never removed, a job after eviction
//! builds again and succeeds; `cache ls` and `cache prune` through the binary. Real
//! runtimes: Python environments (PyPI), stored native tools, Deno's cache (npm).

use crate::util::{Home, Run};
use hanzo_compute::RuntimeKind;
use hanzo_compute::cache::{Cache, Pool};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A PEP 723 script needing `dep`; sleeps `params.sleep` seconds when asked.
fn script(dep: &str, module: &str) -> String {
    format!(
        r#"# /// script
# dependencies = ["{dep}"]
# ///
import time
import {module}

def run(p):
    time.sleep(p.get("sleep", 0))
    return {{"dep": "{dep}", "version": {module}.__version__}}
"#
    )
}

fn with_quota(h: &Home, mb: u64, args: &[&str]) -> Run {
    h.run_with(args, |c| {
        c.env("HANZO_NODE_CACHE_MAX_MB", mb.to_string());
    })
}

fn ls(h: &Home, mb: u64) -> Value {
    let r = with_quota(h, mb, &["cache", "ls", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()
}

/// The Python environments in the cache, by the dependency they were built for.
fn envs(h: &Home) -> Vec<(String, PathBuf)> {
    let dir = h.path("home/python/envs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let key = std::fs::read_to_string(e.path().join("hanzo-env.txt")).unwrap_or_default();
        let dep = key
            .lines()
            .find_map(|l| l.strip_prefix("dependency="))
            .unwrap_or("?")
            .to_string();
        out.push((dep, e.path()));
    }
    out.sort();
    out
}

fn deps(h: &Home) -> Vec<String> {
    envs(h).into_iter().map(|(d, _)| d).collect()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn python_environments_are_evicted_least_recently_used_first_and_rebuilt() {
    let h = Home::new();
    let pkg = h.file("packaging_tool.py", &script("packaging", "packaging"));
    let pyp = h.file("pyparsing_tool.py", &script("pyparsing", "pyparsing"));
    // Each environment takes about 1.25 MiB: one fits in 2 MiB, two do not (uv's
    // download cache, one entry of its own, goes as needed).
    let r = with_quota(&h, 2, &["run", "python", &pkg, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["dep"], "packaging");
    assert_eq!(deps(&h), ["packaging"]);
    let r = with_quota(&h, 2, &["run", "python", &pyp, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Building pyparsing's passed the quota: packaging's, the least recently used, went; the
    // new one (in use by the job that built it) stayed.
    assert_eq!(deps(&h), ["pyparsing"]);
    let listed = ls(&h, 2);
    assert!(listed["total_bytes"].as_u64().unwrap() <= 2 << 20, "{listed:#}");
    // A job whose environment was evicted builds it again and succeeds; now pyparsing's is
    // the least recently used.
    let r = with_quota(&h, 2, &["run", "python", &pkg, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["dep"], "packaging");
    assert_eq!(deps(&h), ["packaging"]);
    // Use refreshes: with a quota both fit under, using packaging's again makes
    // pyparsing's the older; a prune to a budget only one fits then keeps packaging's.
    let r = with_quota(&h, 64, &["run", "python", &pyp, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::thread::sleep(Duration::from_millis(20));
    let r = with_quota(&h, 64, &["run", "python", &pkg, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(deps(&h), ["packaging", "pyparsing"]);
    let r = with_quota(&h, 2, &["cache", "prune", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let removed: Vec<String> = r.json()["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(removed.iter().any(|p| p.contains("/python/envs/")), "{removed:?}");
    assert_eq!(deps(&h), ["packaging"], "{removed:?}");
}

#[test]
fn an_environment_in_use_is_never_removed() {
    let h = Home::new();
    let pkg = h.file("packaging_tool.py", &script("packaging", "packaging"));
    let pyp = h.file("pyparsing_tool.py", &script("pyparsing", "pyparsing"));
    // A job that holds packaging's environment for 4 s.
    let mut slow = h.cmd();
    slow.args(["run", "python", &pkg, "--params", r#"{"sleep": 4}"#])
        .env("HANZO_NODE_CACHE_MAX_MB", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let slow = slow.spawn().unwrap();
    wait_for("packaging's environment", || deps(&h) == ["packaging"]);
    // The job leases the environment right after it is renamed into place.
    std::thread::sleep(Duration::from_millis(1500));
    // Emptying the caches while it runs keeps it.
    let r = with_quota(&h, 2, &["cache", "prune", "--all", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.json();
    let env = envs(&h)[0].1.clone();
    assert_eq!(report["in_use"], serde_json::json!([env]), "{report:#}");
    assert_eq!(deps(&h), ["packaging"]);
    // So does the prune after building another environment (about 1.25 MiB each) past
    // the 2 MiB quota: the quota stays passed while the job runs, never under it.
    let r = with_quota(&h, 2, &["run", "python", &pyp, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(deps(&h), ["packaging", "pyparsing"]);
    let out = slow.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dep"], "packaging");
    // Once it has ended, the environment can go.
    let r = with_quota(&h, 2, &["cache", "prune", "--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(deps(&h).is_empty());
    assert_eq!(ls(&h, 2)["total_bytes"], 0);
}

/// A shell tool (a native program) padded to `kib` KiB with a comment, so that stored
/// copies have a known size; returns its params with `tag` added.
fn padded_tool(h: &Home, name: &str, tag: &str, kib: usize) -> String {
    let mut text =
        format!("#!/bin/sh\np=$(cat)\nprintf '{{\"tag\":\"{tag}\",\"params\":%s}}\\n' \"$p\"\nexit 0\n");
    let line = format!("# {}\n", "x".repeat(1021));
    while text.len() < kib * 1024 {
        text.push_str(&line);
    }
    let p = h.file(name, &text);
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

/// The stored native tools, by their tag.
fn stored(h: &Home) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(h.path("home/native"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // The stored copy holds `printf '{"tag":"A",...`.
        let text = std::fs::read_to_string(e.path()).unwrap();
        let tag = text.split(r#"{"tag":""#).nth(1).and_then(|t| t.split('"').next());
        out.push(tag.unwrap_or("?").to_string());
    }
    out.sort();
    out
}

#[test]
fn cache_ls_and_prune_through_the_binary() {
    let h = Home::new();
    let a = padded_tool(&h, "a.sh", "A", 1536);
    let b = padded_tool(&h, "b.sh", "B", 1536);
    let table = with_quota(&h, 2, &["cache", "ls"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    for rt in ["deno", "go", "native", "python", "total"] {
        assert!(table.stdout.contains(rt), "{}", table.stdout);
    }
    assert!(table.stdout.contains("of 2.0 MiB"), "{}", table.stdout);
    let r = with_quota(&h, 2, &["run", "native", &a, "--params", r#"{"n":1}"#]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["tag"], "A");
    assert_eq!(stored(&h), ["A"]);
    let listed = ls(&h, 2);
    let one = listed["runtimes"]["native"]["bytes"].as_u64().unwrap();
    assert!((1536 << 10..1600 << 10).contains(&one), "{listed:#}");
    assert_eq!(listed["runtimes"]["native"]["entries"], 1);
    assert_eq!(listed["total_bytes"].as_u64().unwrap(), one);
    assert_eq!(listed["quota_bytes"], 2 << 20);
    // Under the quota a prune removes nothing.
    let r = with_quota(&h, 2, &["cache", "prune"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0 removed"), "{}", r.stdout);
    assert_eq!(stored(&h), ["A"]);
    // Storing B passes 2 MiB: A goes.
    let r = with_quota(&h, 2, &["run", "native", &b, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["tag"], "B");
    assert_eq!(stored(&h), ["B"]);
    // A again: stored again, runs, and B goes.
    let r = with_quota(&h, 2, &["run", "native", &a, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(stored(&h), ["A"]);
    // Unbounded: both stay; `prune` without --all has nothing to do, --all empties.
    let r = with_quota(&h, 0, &["run", "native", &b, "--params", "{}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(stored(&h), ["A", "B"]);
    let table = with_quota(&h, 0, &["cache", "ls"]);
    assert!(table.stdout.contains("unbounded"), "{}", table.stdout);
    let r = with_quota(&h, 0, &["cache", "prune"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(stored(&h), ["A", "B"]);
    let r = with_quota(&h, 0, &["cache", "prune", "--all", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["removed"].as_array().unwrap().len(), 2);
    assert!(stored(&h).is_empty());
    // Nothing is left behind: no trash, no temporary files.
    let left: Vec<_> = std::fs::read_dir(h.path("home/native"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let r = with_quota(&h, 2, &["cache", "bogus"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// The Deno example with an npm dependency, after its cache entries were pruned: the
/// next job prepares it again (the prepared marker went with them) and succeeds.
#[test]
fn a_deno_tool_is_prepared_again_after_its_cache_was_pruned() {
    let h = Home::new();
    let md = hanzo_testkit::repo_root().join("examples/deno/markdown.ts");
    let md = md.to_str().unwrap();
    let params = r##"{"markdown": "# Hi\n"}"##;
    let first = with_quota(&h, 0, &["run", "deno", md, "--params", params]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let listed = ls(&h, 0);
    assert!(
        listed["runtimes"]["deno"]["entries"].as_u64().unwrap() >= 2,
        "{listed:#}"
    );
    // The shared downloads alone (the tool's gen/ and its marker stay), then everything.
    for all in [false, true] {
        if all {
            let r = with_quota(&h, 0, &["cache", "prune", "--all"]);
            assert_eq!(r.code, 0, "{}", r.stderr);
            assert!(!h.path("home/deno/gen").read_dir().unwrap().any(|_| true));
        } else {
            let shared = Pool::whole(RuntimeKind::Deno, h.path("home/deno/cache"));
            let r = Cache::new(vec![shared], 0).prune(0);
            assert_eq!(r.removed.len(), 1, "{r:?}");
        }
        assert!(!h.path("home/deno/cache/npm").exists());
        let again = with_quota(&h, 0, &["run", "deno", md, "--params", params]);
        assert_eq!(again.code, 0, "all={all}: {}", again.stderr);
        assert_eq!(again.json(), first.json());
    }
}

/// One Go runtime object, as in a serving node (it remembers its builds in memory):
/// a build pruned between two jobs is built again and the second job succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_build_pruned_under_a_running_runtime_is_built_again() {
    use hanzo_compute::config::{GoConfig, WasmConfig};
    use hanzo_compute::{Job, JobSpec, Runtime};
    use std::sync::Arc;
    let h = Home::new();
    let data = h.path("home");
    let pkg = h.path("gotool");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("go.mod"), "module example.com/gotool\n\ngo 1.24\n").unwrap();
    std::fs::write(
        pkg.join("main.go"),
        "package main\n\nimport (\n\t\"io\"\n\t\"os\"\n)\n\nfunc main() {\n\tb, _ := io.ReadAll(os.Stdin)\n\tos.Stdout.Write(b)\n}\n",
    )
    .unwrap();
    let sandbox = Arc::new(hanzo_sandbox::Sandbox::detect());
    let wasm = Arc::new(
        hanzo_wasm_runtime::WasmRuntime::new(hanzo_wasm_runtime::WasmOptions::new(
            &data,
            WasmConfig::default(),
        ))
        .unwrap(),
    );
    let cache = Arc::new(Cache::new(hanzo_go_runtime::cache_pools(&data), 0));
    let rt = hanzo_go_runtime::GoRuntime::new(sandbox, wasm, &GoConfig::default(), &data, 128)
        .with_cache(cache.clone());
    let job = || {
        Job::new(JobSpec::new(RuntimeKind::Go, pkg.display().to_string()).params(serde_json::json!({"n": 1})))
    };
    let first = rt.execute(&job()).await;
    assert_eq!(first.result.unwrap(), serde_json::json!({"n": 1}));
    let builds: Vec<_> = std::fs::read_dir(data.join("go/builds"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(builds.len(), 1);
    // The build and Go's build cache: both go.
    let r = cache.prune(0);
    assert_eq!(r.removed.len(), 2, "{r:?}");
    assert!(!builds[0].path().exists());
    let again = rt.execute(&job()).await;
    assert_eq!(again.result.unwrap(), serde_json::json!({"n": 1}));
    assert_eq!(rt.builds(), 2);
    assert!(builds[0].path().exists());
}
