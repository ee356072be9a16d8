//! Shared libraries through the `execute_tool` ABI, loaded only in the sandboxed helper:
//! the SDK's examples built natively, and C libraries that misbehave on purpose.

use crate::util::*;
use hanzo_compute::LimitKind;
use serde_json::json;
use std::path::PathBuf;

/// A C tool library: the function (HANZO_FUNCTION) picks a behaviour; params are echoed
/// back raw inside the envelope, which works because they are JSON.
pub const C_TOOL: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *copy(const char *s) { char *p = malloc(strlen(s) + 1); strcpy(p, s); return p; }

char *execute_tool(const unsigned char *params, size_t len) {
    const char *f = getenv("HANZO_FUNCTION");
    if (!f) f = "run";
    if (params[len] != 0) return copy("{\"error\":\"params are not NUL-terminated\"}");
    if (!strcmp(f, "run")) {
        char *out = malloc(len + 16);
        snprintf(out, len + 16, "{\"ok\":%.*s}", (int)len, (const char *)params);
        return out;
    }
    if (!strcmp(f, "fail")) return copy("{\"error\":\"requested failure\"}");
    if (!strcmp(f, "null")) return NULL;
    if (!strcmp(f, "garbage")) return copy("this is not json");
    if (!strcmp(f, "two_keys")) return copy("{\"ok\":1,\"error\":\"x\"}");
    if (!strcmp(f, "print")) {
        printf("noise on stdout\n");
        fflush(stdout);
        return copy("{\"ok\":\"clean\"}");
    }
    if (!strcmp(f, "crash")) { volatile int *p = (int *)16; *p = 1; }
    if (!strcmp(f, "abort")) abort();
    if (!strcmp(f, "spin")) { volatile unsigned long n = 0; for (;;) n++; }
    if (!strcmp(f, "shadow")) {
        FILE *s = fopen("/etc/shadow", "r");
        return copy(s ? "{\"ok\":{\"shadow\":true}}" : "{\"ok\":{\"shadow\":false}}");
    }
    if (!strcmp(f, "child_and_spin")) {
        /* params: the marker, a JSON number, used as sleep's argument */
        char cmd[128];
        snprintf(cmd, sizeof cmd, "sleep %.*s &", (int)len, (const char *)params);
        system(cmd);
        volatile unsigned long n = 0; for (;;) n++;
    }
    return copy("{\"error\":\"unknown function\"}");
}

void hanzo_free_result(char *p) {
    fprintf(stderr, "hanzo_free_result called\n");
    free(p);
}
"#;

pub fn c_tool(f: &Fixtures) -> PathBuf {
    f.c_library("libctool.so", C_TOOL)
}

#[tokio::test]
async fn the_sdk_text_tools_answer_as_their_command_does() {
    let node = Node::new();
    let lib = example("libtext_tools.so");
    let cmd = example("text-tools-cmd");
    let params = json!({"text": "The quick brown fox. The lazy dog sleeps.", "top": 2});
    let via_lib = node
        .call(&lib.display().to_string(), "word_stats", params.clone())
        .await;
    let via_cmd = node.call(&cmd.display().to_string(), "word_stats", params).await;
    assert_eq!(ok(&via_lib), ok(&via_cmd));
    assert_eq!(ok(&via_lib)["sentences"], json!(2));
    assert_eq!(ok(&via_lib)["top_words"][0], json!({"count": 2, "word": "the"}));
    // The receipt names the library's bytes.
    assert_eq!(via_lib.receipt.unwrap().code_hash, sha256_file(&lib));
    // The default function is the first tool; an unknown one lists the others.
    let out = node
        .call(&lib.display().to_string(), "run", json!({"text": "a b"}))
        .await;
    assert_eq!(ok(&out)["words"], json!(2));
    let e = err(&node.call(&lib.display().to_string(), "nope", json!({})).await, 1);
    assert!(
        e.contains("unknown function `nope`; available: word_stats"),
        "{e}"
    );
    // Invalid params are the tool's own error envelope.
    let e = err(
        &node
            .call(&lib.display().to_string(), "slugify", json!({"text": 5}))
            .await,
        1,
    );
    assert!(e.contains("invalid params"), "{e}");
}

#[tokio::test]
async fn a_rust_panic_is_a_tool_failure() {
    let out = Node::new()
        .call(
            &example("libecho.so").display().to_string(),
            "panic",
            json!({"message": "on purpose"}),
        )
        .await;
    let e = err(&out, 1);
    assert!(e.contains("tool panicked: on purpose"), "{e}");
}

#[tokio::test]
async fn c_envelopes_ok_and_error() {
    let f = Fixtures::new();
    let lib = c_tool(&f).display().to_string();
    let node = Node::new();
    let params = json!({"n": [1, 2.5], "s": "é"});
    let out = node.call(&lib, "run", params.clone()).await;
    assert_eq!(ok(&out), &params);
    assert!(String::from_utf8_lossy(&out.logs).contains("hanzo_free_result called"));
    let e = err(&node.call(&lib, "fail", json!({})).await, 1);
    assert!(e.contains("requested failure"), "{e}");
    for (function, needle) in [
        ("null", "null pointer"),
        ("garbage", "invalid envelope"),
        ("two_keys", "invalid envelope"),
    ] {
        let e = err(&node.call(&lib, function, json!({})).await, 1);
        assert!(e.contains(needle), "{function}: {e}");
    }
}

#[tokio::test]
async fn what_a_library_prints_goes_to_the_logs() {
    let f = Fixtures::new();
    let lib = c_tool(&f).display().to_string();
    let out = Node::new().call(&lib, "print", json!({})).await;
    assert_eq!(ok(&out), &json!("clean"));
    assert!(String::from_utf8_lossy(&out.logs).contains("noise on stdout"));
}

#[tokio::test]
async fn crashes_are_tool_failures_and_the_node_carries_on() {
    let f = Fixtures::new();
    let lib = c_tool(&f).display().to_string();
    let node = Node::new();
    let e = err(&node.call(&lib, "crash", json!({})).await, 1);
    assert!(e.contains("crashed (SIGSEGV"), "{e}");
    let e = err(&node.call(&lib, "abort", json!({})).await, 1);
    assert!(e.contains("crashed (SIGABRT"), "{e}");
    // This test process is the node: had the library been loaded here, it would be gone.
    assert_eq!(ok(&node.call(&lib, "run", json!([1])).await), &json!([1]));
}

#[tokio::test]
async fn a_spinning_library_times_out_and_leaves_nothing() {
    let f = Fixtures::new();
    let lib = c_tool(&f).display().to_string();
    let marker = hanzo_testkit::marker();
    let params: serde_json::Value = serde_json::from_str(&marker).unwrap();
    let mut spec = job(&lib).function("child_and_spin").params(params);
    spec.limits.timeout_ms = 700;
    let out = Node::new().run(spec).await;
    limit(&out, LimitKind::Timeout);
    assert_eq!(out.result.unwrap_err().exit_code(), 3);
    hanzo_testkit::assert_no_process(&marker);
}

#[tokio::test]
async fn libraries_that_cannot_serve_are_bad_input() {
    let f = Fixtures::new();
    let node = Node::new();
    // A library without execute_tool.
    let other = f.c_library("libother.so", "int something(void) { return 1; }\n");
    let out = node.run(job(&other)).await;
    let e = err(&out, 2);
    assert!(e.contains("does not export execute_tool"), "{e}");
    // Bad input is not receipted, even though the helper ran.
    assert!(out.receipt.is_none());
    // A library needing a library the sandbox does not have.
    let dep = f.c_library("libdep.so", "int dep(void) { return 2; }\n");
    let needs = f.path().join("libneeds.so");
    let src = f.file(
        "needs.c",
        "int dep(void);\nchar *execute_tool(const unsigned char *p, unsigned long n) { dep(); return 0; }\n",
        0o644,
    );
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&needs)
        .arg(&src)
        .arg(&dep)
        .status()
        .unwrap();
    assert!(status.success());
    let e = err(&node.run(job(&needs)).await, 2);
    assert!(e.contains("cannot load the library"), "{e}");
}
