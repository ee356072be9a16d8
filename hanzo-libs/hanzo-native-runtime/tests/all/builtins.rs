//! The built-in tools, run through the runtime (in the sandboxed helper), with real
//! inputs, checked against independent implementations where there are some (Python's
//! hashlib and base64), and with bad params (exit code 2).

use crate::util::*;
use hanzo_compute::LimitKind;
use serde_json::{Value, json};
use sha2::Digest;
use std::process::Command;

async fn call(name: &str, params: Value) -> hanzo_compute::JobOutcome {
    Node::new()
        .run(job(format!("builtin:{name}")).params(params))
        .await
}

/// Python's answer to a one-line expression over `data` (bytes).
fn python(expr: &str, data: &[u8]) -> String {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            &format!("import sys, hashlib, hmac, base64; data = sys.stdin.buffer.read(); print({expr})"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .expect("python3");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_listing_has_names_descriptions_and_schemas() {
    let all = hanzo_native_runtime::builtins();
    let names: Vec<&str> = all.iter().map(|b| b.name).collect();
    assert_eq!(names, ["hash", "json-query", "base64", "json-canonical", "uuid"]);
    for b in &all {
        assert!(b.description.len() > 20, "{}", b.name);
        assert_eq!(b.input_schema["type"], "object");
        assert_eq!(b.input_schema["additionalProperties"], false);
    }
    // Serialisable as the node lists them.
    let v = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(v["name"], "hash");
    assert!(v["input_schema"]["properties"]["algorithm"].is_object());
}

#[tokio::test]
async fn hash_agrees_with_python() {
    let text = "héllo, wörld ✓\n".repeat(100);
    for (alg, py) in [
        ("sha256", "sha256"),
        ("sha512", "sha512"),
        ("sha224", "sha224"),
        ("sha384", "sha384"),
    ] {
        let out = call("hash", json!({"text": text, "algorithm": alg})).await;
        let want = python(&format!("hashlib.{py}(data).hexdigest()"), text.as_bytes());
        assert_eq!(ok(&out)["digest"], json!(want), "{alg}");
        assert_eq!(ok(&out)["bytes"], json!(text.len()));
    }
    let out = call(
        "hash",
        json!({"text": text, "key": "s3cret", "algorithm": "sha512"}),
    )
    .await;
    let want = python("hmac.new(b's3cret', data, 'sha512').hexdigest()", text.as_bytes());
    assert_eq!(ok(&out)["digest"], json!(want));
    assert_eq!(ok(&out)["hmac"], json!(true));
    // Binary data through base64, digest out in base64.
    let data: Vec<u8> = (0..=255u8).collect();
    let b64 = python("base64.b64encode(data).decode()", &data);
    let out = call("hash", json!({"base64": b64, "encoding": "base64"})).await;
    let want = python("base64.b64encode(hashlib.sha256(data).digest()).decode()", &data);
    assert_eq!(ok(&out)["digest"], json!(want));
}

#[tokio::test]
async fn hash_rejects_bad_params() {
    for (params, needle) in [
        (json!({}), "exactly one of"),
        (json!({"text": "a", "base64": "YQ=="}), "exactly one of"),
        (json!({"text": "a", "algorithm": "md5"}), "md5"),
        (json!({"base64": "***"}), "base64"),
        (json!({"text": 5}), "invalid type"),
        (json!({"text": "a", "salt": "x"}), "unknown field `salt`"),
        (json!("just a string"), "invalid params"),
    ] {
        let out = call("hash", params.clone()).await;
        let e = err(&out, 2);
        assert!(e.contains(needle), "{params}: {e}");
        assert!(!e.contains('\n'));
    }
}

#[tokio::test]
async fn json_query_paths_and_pointers() {
    let doc = json!({
        "items": [
            {"name": "disk", "price": 120, "tags": ["hw"]},
            {"name": "cpu", "price": 300, "tags": ["hw", "fast"]},
            {"name": "support", "price": 50, "meta": {"name": "nested"}}
        ],
        "total": 470
    });
    for (query, want) in [
        (".items[*].name", json!(["disk", "cpu", "support"])),
        ("$.items[-1].price", json!([50])),
        (".items[0:2].price", json!([120, 300])),
        ("..name", json!(["disk", "cpu", "support", "nested"])),
        (".items[*].tags[*]", json!(["hw", "hw", "fast"])),
        ("/items/1/tags/1", json!(["fast"])),
        ("/items/7", json!([])),
        (".total", json!([470])),
    ] {
        let out = call("json-query", json!({"document": doc, "query": query})).await;
        assert_eq!(ok(&out)["matches"], want, "{query}");
        assert_eq!(ok(&out)["count"], json!(want.as_array().unwrap().len()));
    }
    for (query, needle) in [
        (".items[", "missing ']'"),
        ("/a~9", "~"),
        (".items[x]", "not an index"),
    ] {
        let e = err(
            &call("json-query", json!({"document": doc, "query": query})).await,
            2,
        );
        assert!(e.contains(needle), "{query}: {e}");
    }
    let e = err(&call("json-query", json!({"query": "."})).await, 2);
    assert!(e.contains("document"), "{e}");
}

#[tokio::test]
async fn base64_round_trips_and_agrees_with_python() {
    let text = "binary? no: ünïcödé & symbols <>/?+";
    let out = call("base64", json!({"encode": text})).await;
    let want = python("base64.b64encode(data).decode()", text.as_bytes());
    assert_eq!(ok(&out)["base64"], json!(want));
    let url = call(
        "base64",
        json!({"encode": text, "url_safe": true, "padding": false}),
    )
    .await;
    let want = python(
        "base64.urlsafe_b64encode(data).decode().rstrip('=')",
        text.as_bytes(),
    );
    assert_eq!(ok(&url)["base64"], json!(want));
    let back = call("base64", json!({"decode": ok(&url)["base64"], "url_safe": true})).await;
    assert_eq!(ok(&back)["text"], json!(text));
    let bin = call("base64", json!({"decode": "AP8="})).await;
    assert_eq!(ok(&bin), &json!({"bytes": 2, "hex": "00ff", "text": null}));
    let e = err(&call("base64", json!({"decode": "not base64!"})).await, 2);
    assert!(e.contains("base64"), "{e}");
    err(&call("base64", json!({"encode": "a", "decode": "YQ=="})).await, 2);
}

#[tokio::test]
async fn json_canonical_matches_the_receipts_hashing() {
    let doc = json!({"z": [3, 1.5, {"b": null, "a": "x"}], "a": {"y": true, "x": -0.0}});
    let out = call("json-canonical", json!({"document": doc})).await;
    let canonical = hanzo_compute::canonical::to_string(&doc);
    assert_eq!(ok(&out)["canonical"], json!(canonical));
    assert!(canonical.starts_with(r#"{"a":{"x":"#), "{canonical}");
    assert_eq!(
        ok(&out)["sha256"],
        json!(hex::encode(sha2::Sha256::digest(canonical.as_bytes())))
    );
    // The receipt's input_hash is the same function of the params.
    let receipt = out.receipt.as_ref().unwrap();
    let params = json!({"document": doc});
    assert_eq!(
        receipt.input_hash,
        hex::encode(sha2::Sha256::digest(hanzo_compute::canonical::to_vec(&params)))
    );
}

#[tokio::test]
async fn uuid_gives_distinct_v4_uuids() {
    let out = call("uuid", json!({"count": 20, "uppercase": true})).await;
    let uuids: Vec<String> = serde_json::from_value(ok(&out)["uuids"].clone()).unwrap();
    assert_eq!(uuids.len(), 20);
    let unique: std::collections::BTreeSet<_> = uuids.iter().collect();
    assert_eq!(unique.len(), 20);
    for u in &uuids {
        let valid = python("__import__('uuid').UUID(data.decode()).version", u.as_bytes());
        assert_eq!(valid, "4", "{u}");
        assert_eq!(u, &u.to_uppercase());
    }
    err(&call("uuid", json!({"count": 0})).await, 2);
    err(&call("uuid", json!({"count": "3"})).await, 2);
}

#[tokio::test]
async fn builtins_are_held_to_the_jobs_limits() {
    // 10 000 UUIDs are ~400 KB of output: over a 64 KiB cap, a limit error.
    let mut spec = job("builtin:uuid").params(json!({"count": 10000}));
    spec.limits.max_output_bytes = 64 * 1024;
    let out = Node::new().run(spec).await;
    limit(&out, LimitKind::Output);
}

#[tokio::test]
async fn builtin_code_hashes_name_the_helper_and_the_tool() {
    let node = Node::new();
    let a = node.run(job("builtin:uuid")).await.receipt.unwrap().code_hash;
    let b = node.run(job("builtin:uuid")).await.receipt.unwrap().code_hash;
    let c = node
        .run(job("builtin:hash").params(json!({"text": ""})))
        .await
        .receipt
        .unwrap()
        .code_hash;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let helper = sha256_file(std::path::Path::new(HELPER));
    let want = hex::encode(sha2::Sha256::digest(format!(
        "hanzo-native-builtin:uuid:{helper}"
    )));
    assert_eq!(a, want);
}

#[tokio::test]
async fn unknown_builtins_are_rejected() {
    rejected(
        &Node::new().run(job("builtin:md5")).await,
        "unknown built-in tool 'md5'",
    );
    rejected(&Node::new().run(job("builtin:")).await, "hash, json-query");
}
