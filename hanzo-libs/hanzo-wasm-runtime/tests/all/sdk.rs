//! The Rust SDK's example tools, built from source, through both ABIs.

use crate::util::*;
use hanzo_compute::{JobSpec, RuntimeKind};
use serde_json::{Value, json};

async fn call(node: &Node, module: &str, function: &str, params: Value) -> Value {
    let out = node
        .run(
            JobSpec::new(RuntimeKind::Wasm, example(module))
                .function(function)
                .params(params),
        )
        .await;
    let receipt = out.receipt.expect("receipt");
    hanzo_compute::Receipt::verify(&receipt.to_value()).unwrap();
    out.result.unwrap_or_else(|e| panic!("{module} {function}: {e}"))
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. The dog sleeps. Write to ops@example.com!";

#[tokio::test]
async fn text_tools_give_the_same_answer_through_both_abis() {
    let node = Node::new();
    let params = json!({"text": TEXT, "top": 3});
    let exports = call(&node, "text_tools.wasm", "word_stats", params.clone()).await;
    let command = call(&node, "text-tools-cmd.wasm", "word_stats", params).await;
    assert_eq!(exports, command);
    assert_eq!(exports["sentences"], json!(3), "{exports}");
    assert_eq!(
        exports["top_words"][0],
        json!({"count": 3, "word": "the"}),
        "{exports}"
    );
    let slug = call(
        &node,
        "text_tools.wasm",
        "slugify",
        json!({"text": "Hello, Wörld! 2026"}),
    )
    .await;
    assert!(slug.to_string().contains("hello"), "{slug}");
    let emails = call(&node, "text_tools.wasm", "extract_emails", json!({"text": TEXT})).await;
    assert!(emails.to_string().contains("ops@example.com"), "{emails}");
}

#[tokio::test]
async fn sentiment_scores_text() {
    let node = Node::new();
    let good = call(
        &node,
        "sentiment.wasm",
        "analyze",
        json!({"text": "a wonderful, fast and reliable node"}),
    )
    .await;
    let bad = call(
        &node,
        "sentiment.wasm",
        "analyze",
        json!({"text": "slow, broken and terrible"}),
    )
    .await;
    let negated = call(
        &node,
        "sentiment.wasm",
        "analyze",
        json!({"text": "not good at all"}),
    )
    .await;
    assert_eq!(good["label"], json!("positive"), "{good}");
    assert_eq!(bad["label"], json!("negative"), "{bad}");
    assert_ne!(negated["label"], json!("positive"), "{negated}");
    let via_command = call(
        &node,
        "sentiment-cmd.wasm",
        "analyze",
        json!({"text": "a wonderful, fast and reliable node"}),
    )
    .await;
    assert_eq!(good, via_command);
}

#[tokio::test]
async fn bad_params_are_reported_by_the_tool() {
    let node = Node::new();
    let out = node
        .run(
            JobSpec::new(RuntimeKind::Wasm, example("text_tools.wasm"))
                .function("word_stats")
                .params(json!({"txet": 1})),
        )
        .await;
    let e = out.result.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("invalid params"), "{e}");
}
