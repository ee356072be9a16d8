//! The module cache (`DENO_DIR` under `<data_dir>/deno/cache`): filled by the prepare
//! step, read-only to jobs, reused by later runs, and holding nothing of one tool that
//! another can read.

use crate::util::{Node, example, job, run_allow_all, runtime_at};
use hanzo_compute::{Job, Runtime};
use hanzo_deno_runtime::CACHE_GUEST;
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
    // The transpiled tool is cached too, in the tool's own gen/ (not the shared cache).
    let hash = exec.code_hash.unwrap();
    let emit = node.rt.emit_dir(&hash);
    let js = emit.join(format!("file/tmp/job/src/{hash}/markdown.ts.js"));
    assert!(js.is_file(), "{}", js.display());
    assert!(!cache.join("gen").exists());
    let before = (tree(&cache), tree(&emit));
    // A second node on the same data directory: no download, no transpile (nothing in
    // the cache changes), and the job itself has no network anyway.
    let rt2 = runtime_at(node.data.path(), 64);
    let again = rt2.execute(&Job::new(job(&md).params(params))).await;
    assert_eq!(again.result.unwrap(), out);
    assert_eq!((tree(&cache), tree(&emit)), before);
}

#[tokio::test]
async fn jobs_cannot_write_the_cache() {
    let node = Node::new();
    let t = node.tool(
        "poison.ts",
        "export function run() {\n\
           const dir = \"/opt/hanzo/deno-cache\";\n\
           try { Deno.writeTextFileSync(`${dir}/npm/poison.js`, \"evil\"); return {wrote: true}; }\n\
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
    assert!(!node.rt.cache_dir().join("npm/poison.js").exists());
}

/// Whether any file under `dir` contains `needle`.
fn holds(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    tree_all(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

/// Every file under `dir` (sqlite caches included).
fn tree_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn tools_cannot_read_each_others_code_from_the_cache() {
    // Static imports need no read permission: whatever the sandbox shows at a path a
    // tool can name is readable, so other tools' code must not be in its view at all.
    let node = Node::new();
    let secret = "SECRET-OF-A-3f9c";
    let a = node.tool(
        "a.ts",
        &format!(
            "import * as d from \"data:application/typescript,export const D: string = '{secret}-data';\";\n\
             const s: string = \"{secret}\";\n\
             export function run() {{ return {{ s, d: d.D }}; }}\n"
        ),
    );
    let exec = node.exec(job(&a)).await;
    assert_eq!(
        exec.result.unwrap(),
        json!({"s": secret, "d": format!("{secret}-data")})
    );
    let sha = exec.code_hash.unwrap();
    // Prepared: A's transpiled code exists, in A's own gen/.
    let emit = node.rt.emit_dir(&sha);
    let a_js = emit.join(format!("file/tmp/job/src/{sha}/a.ts.js"));
    assert!(std::fs::read_to_string(&a_js).unwrap().contains(secret));
    // A cache from before: A's code in the shared gen/ (where deno used to put it).
    let legacy = node
        .rt
        .cache_dir()
        .join(format!("gen/file/tmp/job/src/{sha}/a.ts.js"));
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::copy(&a_js, &legacy).unwrap();

    let guest_js = format!("{CACHE_GUEST}/gen/file/tmp/job/src/{sha}/a.ts.js");
    let probes = [
        format!("import * as m from \"file://{guest_js}\";\nexport const run = () => (m as any).run?.();\n"),
        format!(
            "import t from \"file://{guest_js}\" with {{ type: \"text\" }};\nexport const run = () => t;\n"
        ),
        format!(
            "import t from \"file://{CACHE_GUEST}/dep_analysis_cache_v2\" with {{ type: \"text\" }};\nexport const run = () => t;\n"
        ),
        format!(
            "import t from \"file://{CACHE_GUEST}/node_analysis_cache_v2\" with {{ type: \"text\" }};\nexport const run = () => t;\n"
        ),
    ];
    for (i, probe) in probes.iter().enumerate() {
        let b = node.tool(&format!("b{i}.ts"), probe);
        let e = node.exec(job(&b)).await;
        let text = format!("{:?} {}", e.result, String::from_utf8_lossy(&e.logs));
        assert!(e.result.is_err(), "probe {i} read it: {text}");
        assert!(!text.contains(secret), "probe {i}: {text}");
        assert!(
            text.contains("not found") || text.contains("No such file"),
            "probe {i} failed for another reason: {text}"
        );
        // Nothing B's job sees on the host holds A's code (or A's sha256, which the
        // module analysis caches would have).
        let cmd = node.rt.command(&Job::new(job(&b))).unwrap();
        assert!(cmd.mounts.iter().any(|m| m.guest == format!("{CACHE_GUEST}/npm")));
        for m in &cmd.mounts {
            assert!(!m.writable, "{m:?}");
            let found = [holds(&m.host, secret.as_bytes()), holds(&m.host, sha.as_bytes())].concat();
            assert!(found.is_empty(), "{} shows {found:?}", m.guest);
        }
    }
    // The control: the same kind of import does read what the sandbox does show, with
    // no --allow-read at all.
    let c = node.tool(
        "c.ts",
        "import t from \"file:///usr/lib/os-release\" with { type: \"text\" };\nexport const run = () => t;\n",
    );
    let out = node.exec(job(&c)).await.result.unwrap();
    assert!(out.as_str().unwrap().contains("ID="), "{out}");
}
