//! The Go SDK's example tools through every path: the WASI command, the exports ABI
//! (both on the WASM runtime) and the native build (process sandbox).

use crate::util::*;
use hanzo_go_runtime::Target;
use serde_json::json;

fn text() -> serde_json::Value {
    json!({"text": "The cat and the hat. The END, the end!", "top": 3, "stopwords": ["and"]})
}

fn expected() -> serde_json::Value {
    json!({
        "total_words": 8,
        "unique_words": 4,
        "top": [{"word": "the", "count": 4}, {"word": "end", "count": 2}, {"word": "cat", "count": 1}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordfreq_gives_the_same_answer_on_every_path() {
    let src = example("wordfreq");
    for (abi, native) in [("command", false), ("exports", false), ("auto", true)] {
        let mut spec = job(&src).params(text());
        spec.native = native;
        let e = run(abi, spec.clone()).await;
        assert_eq!(
            e.result,
            Ok(expected()),
            "{abi} native={native}: logs {}",
            String::from_utf8_lossy(&e.logs)
        );
        assert_eq!(e.code_hash.as_ref().map(String::len), Some(64));
        // The exports build also answers by its tool's own name.
        if abi == "exports" {
            let e = run(abi, spec.function("word_freq")).await;
            assert_eq!(e.result, Ok(expected()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_the_exports_abi_when_the_package_has_it() {
    let rt = runtime("auto");
    let exports = rt
        .build(&example("wordfreq").to_string_lossy(), Target::WasiExports)
        .await
        .unwrap();
    let command = rt
        .build(&example("wordfreq").to_string_lossy(), Target::WasiCommand)
        .await
        .unwrap();
    assert_ne!(exports.sha256, command.sha256);
    let e = run("auto", job(&example("wordfreq")).params(text())).await;
    assert_eq!(e.code_hash.as_deref(), Some(exports.sha256.as_str()));
    // A package without exports files runs as a command.
    let built = rt
        .build(&fixture().to_string_lossy(), Target::WasiCommand)
        .await
        .unwrap();
    let e = run("auto", job(&fixture()).function("echo").params(json!({"a": 1}))).await;
    assert_eq!(e.result, Ok(json!({"a": 1})));
    assert_eq!(e.code_hash.as_deref(), Some(built.sha256.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_failure_keeps_its_message_on_every_path() {
    for (abi, native) in [("command", false), ("exports", false), ("auto", true)] {
        let mut spec = job(&example("wordfreq")).params(json!({"text": "x", "top": -1}));
        spec.native = native;
        let e = run(abi, spec).await.result.unwrap_err();
        assert_eq!(e.exit_code(), 1, "{abi}: {e}");
        assert!(e.to_string().contains("top must not be negative"), "{abi}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_example_logs_apart_from_its_output() {
    let e = run("auto", job(&example("echo")).params(json!({"hello": "world"}))).await;
    assert_eq!(e.result, Ok(json!({"hello": "world"})));
    assert!(String::from_utf8_lossy(&e.logs).contains("1 top-level keys"));
}
