//! The prepare steps (deno install, the code cache) are the node's work on a tool's
//! source: they run in the sandbox as its tool user, with only the directories they
//! write handed to that user, and what they made is given back to the node.

use crate::util::job;
use hanzo_compute::config::DenoConfig;
use hanzo_compute::{Job, Runtime};
use hanzo_deno_runtime::{CODE_CACHE_DB, DenoRuntime};
use hanzo_sandbox::{Options, Sandbox, ToolUser};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_steps_run_as_an_unprivileged_tool_user() {
    assert_eq!(
        std::fs::metadata("/proc/self").unwrap().uid(),
        0,
        "the suite runs as root (scripts/test.sh)"
    );
    // deno lives under /root here (0700) and the data directory is private too: the
    // sandbox stages what it shows, so nobody's bubblewrap need not reach either itself.
    let deno = hanzo_testkit::toolchain("deno");
    let data = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::detect_with(Options {
        tool_user: ToolUser::Id {
            uid: 65534,
            gid: 65534,
        },
        ..Options::default()
    });
    assert!(sandbox.isolates_filesystem(), "{:?}", sandbox.notes());
    let config = DenoConfig {
        binary: deno.display().to_string(),
    };
    let rt = DenoRuntime::new(Arc::new(sandbox), &config, data.path(), 128);
    let tools = tempfile::tempdir().unwrap();
    let tool = tools.path().join("double.ts");
    std::fs::write(
        &tool,
        "export function run(p: { x: number }) { return p.x * 2; }\n",
    )
    .unwrap();
    let spec = job(&tool.display().to_string()).params(json!({"x": 21}));
    let e = rt.execute(&Job::new(spec.clone())).await;
    assert_eq!(e.result, Ok(json!(42)), "{}", String::from_utf8_lossy(&e.logs));
    // The steps wrote as nobody: without the hand-over the code cache steps fail (and
    // the tool silently runs without one). The shared downloads stay theirs, for the
    // next prepare; the tool's own gen/ and its code cache are the node's now.
    let root = data.path().join("deno");
    // The tool's own gen/ (named by its sha256; a lease file may sit beside it).
    let gens: Vec<_> = std::fs::read_dir(root.join("gen"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 64 && e.path().is_dir())
        .collect();
    assert_eq!(gens.len(), 1, "{gens:?}");
    let code = gens[0].path().join(".hanzo-code").join(CODE_CACHE_DB);
    assert!(code.is_file(), "the code cache steps failed as nobody");
    assert_eq!(std::fs::metadata(root.join("cache/npm")).unwrap().uid(), 65534);
    for p in [gens[0].path(), code] {
        assert_eq!(std::fs::metadata(&p).unwrap().uid(), 0, "{}", p.display());
    }
    // A warm call uses what was prepared.
    assert_eq!(rt.execute(&Job::new(spec)).await.result, Ok(json!(42)));
}
