//! The build cache, build errors, and a missing toolchain.

use crate::util::*;
use hanzo_compute::config::GoConfig;
use hanzo_compute::{Job, Runtime};
use hanzo_go_runtime::{GoRuntime, Target};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_is_built_once_and_rebuilt_when_it_changes() {
    let rt = runtime("auto");
    let src = fresh_package(
        "cache",
        "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(`1`) }\n",
    );
    let a = rt
        .build(&src.to_string_lossy(), Target::WasiCommand)
        .await
        .unwrap();
    let mtime = std::fs::metadata(&a.path).unwrap().modified().unwrap();
    // A second runtime on the same data directory (a restarted node) finds it too.
    let other = GoRuntime::new(sandbox(), runtime_wasm(), &GoConfig::default(), data_dir(), 128);
    let b = other
        .build(&src.to_string_lossy(), Target::WasiCommand)
        .await
        .unwrap();
    assert_eq!(a.path, b.path);
    assert_eq!(
        std::fs::metadata(&b.path).unwrap().modified().unwrap(),
        mtime,
        "rebuilt"
    );
    assert_eq!(run("auto", job(&src)).await.result, Ok(json!(1)));
    write_atomically(
        &src.join("main.go"),
        "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(`2`) }\n",
    );
    let c = rt
        .build(&src.to_string_lossy(), Target::WasiCommand)
        .await
        .unwrap();
    assert_ne!(c.path, a.path);
    assert_eq!(run("auto", job(&src)).await.result, Ok(json!(2)));
}

fn runtime_wasm() -> std::sync::Arc<dyn Runtime> {
    std::sync::Arc::new(
        hanzo_wasm_runtime::WasmRuntime::new(hanzo_wasm_runtime::WasmOptions::new(
            data_dir(),
            Default::default(),
        ))
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_build_once() {
    let src = fresh_package(
        "concurrent",
        "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(`\"c\"`) }\n",
    );
    let rt = std::sync::Arc::new(GoRuntime::new(
        sandbox(),
        runtime_wasm(),
        &GoConfig::default(),
        data_dir(),
        128,
    ));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (rt, spec) = (rt.clone(), job(&src));
        tasks.push(tokio::spawn(
            async move { rt.execute(&Job::new(spec)).await.result },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(json!("c")));
    }
    assert_eq!(rt.builds(), 1);
    // Warm calls only hash the sources.
    assert_eq!(rt.execute(&Job::new(job(&src))).await.result, Ok(json!("c")));
    assert_eq!(rt.builds(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_error_is_bad_input_in_one_line() {
    let src = package("broken", "package main\n\nfunc main() { undefinedThing() }\n");
    let e = run("auto", job(&src)).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("go build failed") && msg.contains("undefined: undefinedThing"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_are_not_packages_are_refused() {
    for (source, why) in [
        ("/nonexistent/pkg".to_string(), "cannot read"),
        (
            fixture().join("main.go").to_string_lossy().to_string(),
            "not a directory",
        ),
    ] {
        let e = run(
            "auto",
            hanzo_compute::JobSpec::new(hanzo_compute::RuntimeKind::Go, &source),
        )
        .await
        .result
        .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
    let mut spec = job(&fixture()).function("echo");
    spec.native = true;
    spec.deterministic = true;
    assert_eq!(run("auto", spec).await.result.unwrap_err().exit_code(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_toolchain_is_unavailable() {
    let config = GoConfig {
        binary: "/nonexistent/go".into(),
        ..GoConfig::default()
    };
    let rt = GoRuntime::new(sandbox(), runtime_wasm(), &config, data_dir(), 128);
    let h = rt.health().await;
    assert!(!h.available);
    assert!(h.detail.unwrap().contains("install Go"));
    let e = rt.execute(&Job::new(job(&fixture()))).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_run_in_the_sandbox_here() {
    // This machine has bubblewrap and runs the tests as root: the build must be
    // sandboxed, or the cache and source-tree mounts above were never exercised.
    assert!(runtime("auto").builds_sandboxed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_reach_outside_their_tree_are_refused() {
    let main = "package main\n\nfunc main() {}\n";
    // A link to a host file (say, the node's key) would be read and built.
    let linked = fresh_package("linked", main);
    std::os::unix::fs::symlink("/etc/hostname", linked.join("x.go")).unwrap();
    let e = run("auto", job(&linked)).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // A replace of a module by the node's data directory, relative or absolute.
    let data = data_dir().display().to_string();
    for target in [data.clone(), pathdiff(&data)] {
        let pkg = fresh_package("replacing", main);
        write_atomically(
            &pkg.join("go.mod"),
            &format!("module example.com/r\n\ngo 1.24\n\nreplace example.com/none => {target}\n"),
        );
        let e = run("auto", job(&pkg)).await.result.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{target}: {e}");
        assert!(
            e.to_string().contains("outside the module's directory"),
            "{target}: {e}"
        );
    }
    // A package inside the data directory itself.
    let inside = data_dir().join("pkg-inside");
    std::fs::create_dir_all(&inside).unwrap();
    write_atomically(&inside.join("go.mod"), "module example.com/in\n\ngo 1.24\n");
    write_atomically(&inside.join("main.go"), main);
    let e = run("auto", job(&inside)).await.result.unwrap_err();
    assert!(e.to_string().contains("data directory"), "{e}");
}

/// `target` relative to a fresh fixture package (`../../..` up to `/`, then down).
fn pathdiff(target: &str) -> String {
    let from = fresh_package("probe", "package main\n\nfunc main() {}\n");
    let ups = from.components().count() - 1;
    format!("{}{}", "../".repeat(ups), target.trim_start_matches('/'))
}
