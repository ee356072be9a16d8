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
    let builds = data_dir().join("go/builds");
    let left: Vec<_> = std::fs::read_dir(builds)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "half-built files left: {left:?}");
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
