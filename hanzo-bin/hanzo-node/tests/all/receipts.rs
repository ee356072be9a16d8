//! `--receipt` and `receipt verify`: a receipt verifies, and fails after any change.

use crate::util::*;
use serde_json::{Value, json};

fn receipt_of(h: &Home) -> (String, String, Value) {
    let m = h.file("t.wat", &returning(r#"{"ok":{"sum":6}}"#));
    let path = h.path("r.json").display().to_string();
    let r = h.run(&[
        "run",
        "wasm",
        &m,
        "--params",
        r#"{"xs":[1,2,3]}"#,
        "--receipt",
        &path,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (m, path, v)
}

#[test]
fn a_receipt_verifies_with_its_code_input_and_output() {
    let h = Home::new();
    let (m, path, _) = receipt_of(&h);
    let r = h.run(&["receipt", "verify", &path]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = h.run(&[
        "receipt",
        "verify",
        &path,
        "--code",
        &m,
        "--params",
        r#"{"xs": [1, 2, 3]}"#,
        "--output",
        r#"{"sum":6}"#,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn any_altered_field_fails_verification() {
    let h = Home::new();
    let (_, path, v) = receipt_of(&h);
    for field in v.as_object().unwrap().keys().filter(|k| *k != "signature") {
        let mut t = v.clone();
        t[field] = match &t[field] {
            Value::String(s) if s.len() == 64 => json!(format!(
                "{}{}",
                &s[..63],
                if s.ends_with('0') { "1" } else { "0" }
            )),
            Value::String(s) => json!(format!("{s}!")),
            Value::Number(n) => json!(n.as_u64().unwrap_or(0) + 1),
            Value::Bool(b) => json!(!b),
            Value::Null => json!({"code": "x", "message": "y"}),
            Value::Object(_) => {
                let mut o = t[field].clone();
                o["extra"] = json!(1);
                o
            }
            Value::Array(_) => json!([]),
        };
        let altered = h.path("altered.json");
        std::fs::write(&altered, t.to_string()).unwrap();
        let r = h.run(&["receipt", "verify", altered.to_str().unwrap()]);
        assert_eq!(r.code, 1, "altering {field} went unnoticed: {}", r.stdout);
        assert!(r.error_line().starts_with("error: "), "{}", r.stderr);
    }
    let _ = path;
}

#[test]
fn wrong_data_fails_the_hash_checks() {
    let h = Home::new();
    let (_, path, _) = receipt_of(&h);
    let r = h.run(&["receipt", "verify", &path, "--params", r#"{"xs":[1,2,4]}"#]);
    assert_eq!(r.code, 1);
    assert!(r.error_line().contains("input_hash"), "{}", r.stderr);
    let r = h.run(&["receipt", "verify", &path, "--output", r#"{"sum":7}"#]);
    assert_eq!(r.code, 1);
    let other = h.file("other.wat", "(module)");
    let r = h.run(&["receipt", "verify", &path, "--code", &other]);
    assert_eq!(r.code, 1);
    assert!(r.error_line().contains("code_hash"), "{}", r.stderr);
}

#[test]
fn unreadable_receipts_are_bad_input() {
    let h = Home::new();
    assert_eq!(h.run(&["receipt", "verify", "/nonexistent.json"]).code, 2);
    let junk = h.file("junk.json", "not json");
    assert_eq!(h.run(&["receipt", "verify", &junk]).code, 2);
    let wrong = h.file("wrong.json", r#"{"hello": 1}"#);
    assert_eq!(h.run(&["receipt", "verify", &wrong]).code, 1);
}

/// A valid signature says only that some key signed: anyone can make a key. Without
/// `--node-id` the verdict names the signer and says it was not pinned; with it, another
/// signer is refused.
#[test]
fn verify_names_the_signer_and_says_whether_it_was_pinned() {
    let h = Home::new();
    let (_, path, v) = receipt_of(&h);
    let node = v["node_id"].as_str().unwrap();
    let r = h.run(&["receipt", "verify", &path]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(node), "{}", r.stdout);
    assert!(r.stdout.contains("NOT PINNED"), "{}", r.stdout);
    let r = h.run(&["receipt", "verify", &path, "--node-id", node]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("NOT PINNED"), "{}", r.stdout);
    let other = "ab".repeat(32);
    let r = h.run(&["receipt", "verify", &path, "--node-id", &other]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.error_line().contains(node) && r.error_line().contains(&other),
        "{}",
        r.stderr
    );
}

/// A receipt with a key twice: serde_json verifies the last `output_hash`, while a
/// parser that keeps the first (many do) would read a forged one under a valid
/// signature. Refused as not verifying (exit 1), at any depth.
#[test]
fn a_receipt_with_duplicate_keys_does_not_verify() {
    let h = Home::new();
    let (_, path, v) = receipt_of(&h);
    let text = std::fs::read_to_string(&path).unwrap();
    let forged = format!("\"output_hash\": \"{}\",", "0".repeat(64));
    let dup = text.replacen('{', &format!("{{{forged}"), 1);
    let dup_path = h.file("dup.json", &dup);
    let r = h.run(&["receipt", "verify", &dup_path]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.error_line().contains("duplicate key \"output_hash\""),
        "{}",
        r.stderr
    );
    // Nested, and spelled with an escape.
    let nested = serde_json::to_string(&v).unwrap().replacen(
        "\"usage\":{",
        "\"usage\":{\"wall_ms\":0,\"wall\\u005fms\":0,",
        1,
    );
    let nested_path = h.file("nested.json", &nested);
    let r = h.run(&["receipt", "verify", &nested_path]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.error_line().contains("duplicate key"), "{}", r.stderr);
}
