//! The module cache (`DENO_DIR` under `<data_dir>/deno/cache`): filled by the prepare
//! step, read-only to jobs, reused by later runs.

use crate::util::{Node, example, job, run_allow_all, runtime_at};
use hanzo_compute::{Job, Runtime};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Every file under `dir` with its modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().contains("_cache_v") {
                // (sqlite analysis caches are touched on open; the modules are what matter)
                out.push((p, m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn npm_dependency_is_fetched_once_and_reused() {
    let node = Node::new();
    let md = example("markdown.ts");
    let params = json!({"markdown": "# Title\n\nSome *text* here.\n\n## Part two\n"});
    let exec = node.exec(job(&md).params(params.clone())).await;
    let out = exec.result.unwrap();
    assert_eq!(
        out["html"],
        "<h1>Title</h1>\n<p>Some <em>text</em> here.</p>\n<h2>Part two</h2>\n"
    );
    assert_eq!(
        out["headings"][1],
        json!({"level": 2, "text": "Part two", "id": "part-two"})
    );
    let cache = node.rt.cache_dir();
    assert!(cache.join("npm/registry.npmjs.org/marked/12.0.2").is_dir());
    // The transpiled tool is cached too, under a path holding its sha256.
    let hash = exec.code_hash.unwrap();
    let gen_dir = cache.join(format!("gen/file/tmp/job/src/{hash}"));
    assert!(gen_dir.join("markdown.ts.js").is_file(), "{}", gen_dir.display());
    let before = tree(&cache);
    // A second node on the same data directory: no download, no transpile (nothing in
    // the cache changes), and the job itself has no network anyway.
    let rt2 = runtime_at(node.data.path(), 64);
    let again = rt2.execute(&Job::new(job(&md).params(params))).await;
    assert_eq!(again.result.unwrap(), out);
    assert_eq!(tree(&cache), before);
}

#[tokio::test]
async fn jobs_cannot_write_the_cache() {
    let node = Node::new();
    let t = node.tool(
        "poison.ts",
        "export function run() {\n\
           const dir = \"/opt/hanzo/deno-cache\";\n\
           try { Deno.writeTextFileSync(`${dir}/gen/poison.js`, \"evil\"); return {wrote: true}; }\n\
           catch (e) { return {denied: `${e.name}: ${e.message}`}; }\n\
         }\n",
    );
    let out = node.exec(job(&t)).await.result.unwrap();
    assert!(out["denied"].as_str().unwrap().contains("NotCapable"), "{out}");
    // The sandbox alone: the cache is mounted read-only.
    let out = run_allow_all(&node, job(&t)).await.result().unwrap();
    let d = out["denied"].as_str().unwrap();
    assert!(
        d.contains("Read-only file system") || d.contains("os error 30"),
        "{d}"
    );
    assert!(!node.rt.cache_dir().join("gen/poison.js").exists());
}
