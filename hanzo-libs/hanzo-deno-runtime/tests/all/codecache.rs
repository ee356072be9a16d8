//! Each tool's V8 code cache (`<gen>/.hanzo-code/v8_code_cache_v2`): built by the
//! prepare step without running the tool, used read-only by its jobs, never written by
//! a job, never shown to another tool, and checked before every job.

use crate::util::{Node, example, job};
use hanzo_compute::Job;
use hanzo_deno_runtime::{CACHE_GUEST, CODE_CACHE_DB, DenoRuntime};
use hanzo_sandbox::Sandbox;
use serde_json::json;
use std::path::{Path, PathBuf};

fn code_dir(rt: &DenoRuntime, hash: &str) -> PathBuf {
    rt.emit_dir(hash).join(".hanzo-code")
}

fn db(rt: &DenoRuntime, hash: &str) -> PathBuf {
    code_dir(rt, hash).join(CODE_CACHE_DB)
}

fn contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

/// Runs the job's exact sandboxed command with deno's debug log on; its stderr.
async fn debug_run(rt: &DenoRuntime, job: &Job) -> (hanzo_sandbox::ProcessOutcome, String) {
    let mut cmd = rt.command(job).expect("command");
    let at = cmd.args.iter().position(|a| a == "run").expect("deno run") + 1;
    cmd.args.insert(at, "-Ldebug".into());
    let out = Sandbox::detect().run(cmd, &job.cancel).await;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, log)
}

#[tokio::test]
async fn warm_jobs_use_the_tools_code_cache_read_only() {
    let node = Node::new();
    let tool = example("text.ts");
    let spec = job(&tool).params(json!({"text": "one two two", "top": 1}));
    let exec = node.exec(spec.clone()).await;
    assert_eq!(exec.result.unwrap()["top_words"], json!([["two", 2]]));
    let hash = exec.code_hash.unwrap();
    let dir = code_dir(&node.rt, &hash);
    let db = dir.join(CODE_CACHE_DB);
    assert!(contains(&db, &format!("file:///tmp/job/src/{hash}/text.ts")));
    assert!(contains(&db, "file:///tmp/job/hanzo_runner.mjs"));
    for side in ["-wal", "-shm"] {
        assert_eq!(
            std::fs::metadata(dir.join(format!("{CODE_CACHE_DB}{side}")))
                .unwrap()
                .len(),
            0
        );
    }
    let before = (
        std::fs::read(&db).unwrap(),
        std::fs::metadata(&db).unwrap().modified().unwrap(),
    );

    // The job's command mounts the three files read-only, and deno takes the runner's,
    // the tool's and its own lazily loaded modules' code from them: no entry is
    // compiled again (deno logs "Updating" for each it compiles), and none rejected.
    let j = Job::new(spec.clone());
    let cmd = node.rt.command(&j).unwrap();
    let mounted: Vec<_> = cmd
        .mounts
        .iter()
        .filter(|m| m.guest.contains(CODE_CACHE_DB))
        .collect();
    assert_eq!(mounted.len(), 3, "{:?}", cmd.mounts);
    assert!(mounted.iter().all(|m| !m.writable && m.host.starts_with(&dir)));
    let (out, log) = debug_run(&node.rt, &j).await;
    assert_eq!(out.result().unwrap()["top_words"], json!([["two", 2]]));
    for module in ["hanzo_runner.mjs".to_string(), format!("src/{hash}/text.ts")] {
        assert!(
            log.contains(&format!(
                "V8 code cache hit for ES module: file:///tmp/job/{module}"
            )),
            "{module} not from the code cache: {log}"
        );
    }
    assert!(log.contains("V8 code cache hit for ES module: ext:"), "{log}");
    assert!(
        !log.contains("Updating V8 code cache"),
        "something was compiled again: {log}"
    );
    assert!(!log.contains("Error using code cache"), "{log}");
    // Nothing was written to it, and the next job needs no new prepare.
    assert_eq!(
        (
            std::fs::read(&db).unwrap(),
            std::fs::metadata(&db).unwrap().modified().unwrap()
        ),
        before
    );
    let marker = std::fs::read(node.rt.emit_dir(&hash).join(".hanzo-prepared")).unwrap();
    node.exec(spec).await.result.unwrap();
    assert_eq!(
        std::fs::read(node.rt.emit_dir(&hash).join(".hanzo-prepared")).unwrap(),
        marker
    );
}

#[tokio::test]
async fn preparing_runs_none_of_the_tools_code() {
    // If the code-cache step evaluated the tool (or the runner, which would call it),
    // this would end it with exit 3 and the tool would get no code cache.
    let node = Node::new();
    let t = node.tool("exits.ts", "Deno.exit(3);\nexport function run() { return 1; }\n");
    let exec = node.exec(job(&t)).await;
    assert!(exec.result.is_err(), "{:?}", exec.result);
    let hash = exec.code_hash.unwrap();
    let db = db(&node.rt, &hash);
    assert!(
        contains(&db, &format!("file:///tmp/job/src/{hash}/exits.ts")),
        "no code cache built"
    );
}

#[tokio::test]
async fn jobs_cannot_write_their_code_cache() {
    let node = Node::new();
    let t = node.tool(
        "scribble.ts",
        &format!(
            "export function run() {{\n\
               const out: Record<string, string> = {{}};\n\
               for (const f of [\"{CODE_CACHE_DB}\", \"{CODE_CACHE_DB}-wal\", \"{CODE_CACHE_DB}-shm\"]) {{\n\
                 try {{ Deno.writeTextFileSync(`{CACHE_GUEST}/${{f}}`, \"evil\", {{ append: true }}); out[f] = \"wrote\"; }}\n\
                 catch (e) {{ out[f] = `${{(e as Error).name}}: ${{(e as Error).message}}`; }}\n\
               }}\n\
               return out;\n\
             }}\n"
        ),
    );
    // Deno's permissions refuse it ...
    let exec = node.exec(job(&t)).await;
    let hash = exec.code_hash.clone().unwrap();
    let out = exec.result.unwrap();
    for (_, v) in out.as_object().unwrap() {
        assert!(v.as_str().unwrap().contains("NotCapable"), "{out}");
    }
    let db = db(&node.rt, &hash);
    let before = std::fs::read(&db).unwrap();
    // ... and so does the sandbox alone (--allow-all): the files are mounted read-only.
    let out = crate::util::run_allow_all(&node, job(&t)).await.result().unwrap();
    for (_, v) in out.as_object().unwrap() {
        let v = v.as_str().unwrap();
        assert!(
            // Read-only (the file), or not the tool's to create (the sandbox's
            // read-only directory around it: the tool is nobody, never root).
            v.contains("Read-only file system") || v.contains("os error 30") || v.contains("os error 13"),
            "{out}"
        );
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
    for side in ["-wal", "-shm"] {
        assert_eq!(
            std::fs::metadata(format!("{}{side}", db.display()))
                .unwrap()
                .len(),
            0
        );
    }
}

#[tokio::test]
async fn a_tools_code_cache_is_its_own() {
    let node = Node::new();
    let a = node.tool("a.ts", "export const run = () => \"A-7f2e\";\n");
    let b = node.tool("b.ts", "export const run = () => \"B-7f2e\";\n");
    let ea = node.exec(job(&a)).await;
    let eb = node.exec(job(&b)).await;
    assert_eq!(
        (ea.result.unwrap(), eb.result.unwrap()),
        (json!("A-7f2e"), json!("B-7f2e"))
    );
    let (ha, hb) = (ea.code_hash.unwrap(), eb.code_hash.unwrap());
    let (da, dbb) = (db(&node.rt, &ha), db(&node.rt, &hb));
    // Each database holds its own tool, not the other (its path names the sha256).
    assert!(contains(&da, &ha) && !contains(&da, &hb));
    assert!(contains(&dbb, &hb) && !contains(&dbb, &ha));
    // B's job is shown B's code cache only, nothing from A's gen/.
    let cmd = node.rt.command(&Job::new(job(&b))).unwrap();
    let a_dir = node.rt.emit_dir(&ha);
    assert!(
        cmd.mounts.iter().all(|m| !m.host.starts_with(&a_dir)),
        "{:?}",
        cmd.mounts
    );
    assert!(
        cmd.mounts
            .iter()
            .filter(|m| m.guest.contains(CODE_CACHE_DB))
            .all(|m| m.host.starts_with(node.rt.emit_dir(&hb)))
    );
    // And B's job can import none of A's: not by the path jobs see, not by the host's.
    let probe = node.tool(
        "probe.ts",
        &format!(
            "import t from \"file://{}\" with {{ type: \"text\" }};\nexport const run = () => t.length;\n",
            da.display()
        ),
    );
    let e = node.exec(job(&probe)).await;
    let text = format!("{:?} {}", e.result, String::from_utf8_lossy(&e.logs));
    assert!(e.result.is_err(), "read A's code cache: {text}");
    assert!(
        text.contains("not found") || text.contains("No such file"),
        "{text}"
    );
}

#[tokio::test]
async fn a_damaged_code_cache_is_rebuilt_before_the_job() {
    let node = Node::new();
    let tool = example("text.ts");
    let spec = job(&tool).params(json!({"text": "a b a"}));
    let exec = node.exec(spec.clone()).await;
    let want = exec.result.unwrap();
    let hash = exec.code_hash.unwrap();
    let db = db(&node.rt, &hash);
    let good = std::fs::read(&db).unwrap();
    let marker = node.rt.emit_dir(&hash).join(".hanzo-prepared");
    // V8 checks a code cache entry's header (its V8 version, flags, source length) but
    // not its payload in release builds: a changed byte anywhere could crash deno or
    // run as code, so the node checks the whole file against the sha256 it recorded.
    type Damage = Box<dyn Fn(&Path)>;
    let damages: [(&str, Damage); 4] = [
        (
            "flipped bytes",
            Box::new(|p: &Path| {
                let mut b = std::fs::read(p).unwrap();
                let mid = b.len() / 2;
                for x in &mut b[mid..mid + 512] {
                    *x ^= 0x5a;
                }
                std::fs::write(p, b).unwrap();
            }),
        ),
        (
            "garbage",
            Box::new(|p: &Path| std::fs::write(p, vec![0xAB; 4096]).unwrap()),
        ),
        (
            "a WAL with content",
            Box::new(|p: &Path| std::fs::write(format!("{}-wal", p.display()), vec![7; 4096]).unwrap()),
        ),
        ("removed", Box::new(|p: &Path| std::fs::remove_file(p).unwrap())),
    ];
    for (what, damage) in damages {
        damage(&db);
        let again = node.exec(spec.clone()).await;
        assert_eq!(again.result.as_ref().unwrap(), &want, "{what}");
        // Prepared again: a sealed database, as its marker says.
        let rebuilt = std::fs::read(&db).unwrap();
        assert!(
            contains(&db, &format!("file:///tmp/job/src/{hash}/text.ts")),
            "{what}: not rebuilt"
        );
        assert!(
            String::from_utf8(std::fs::read(&marker).unwrap())
                .unwrap()
                .contains(&{
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(&rebuilt))
                })
        );
        assert_eq!(
            std::fs::metadata(format!("{}-wal", db.display())).unwrap().len(),
            0,
            "{what}"
        );
        assert_eq!(rebuilt.len(), good.len(), "{what}");
    }
}
