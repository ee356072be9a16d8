//! `--receipt` and `receipt verify`: a receipt verifies, and fails after any change.

use crate::util::*;
use serde_json::{Value, json};
use std::path::Path;

/// `receipt verify` of the receipt at `path`, checked against the job `receipt_of` ran
/// (module `m`, its params and output), with `extra` flags.
fn verify_against_the_job(h: &Home, path: &str, m: &str, extra: &[&str]) -> Run {
    let mut args = vec!["receipt", "verify", path];
    args.extend_from_slice(extra);
    args.extend([
        "--code",
        m,
        "--params",
        r#"{"xs": [1, 2, 3]}"#,
        "--output",
        r#"{"sum":6}"#,
    ]);
    h.run(&args)
}

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
    let r = verify_against_the_job(&h, &path, &m, &[]);
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

/// A receipt the node signed in a batch (under load, one signature over a Merkle root)
/// verifies on its own, with its code, params and output, and says so; another
/// receipt's place in the batch does not.
#[test]
fn a_receipt_signed_in_a_batch_verifies_on_its_own() {
    use hanzo_compute::{NodeKey, Receipt};
    let h = Home::new();
    let (m, _, v) = receipt_of(&h);
    // The node's own key signs this receipt and two others as one batch, as the
    // node's signer does when receipts finish together.
    let key = NodeKey::load_or_create(&h.path("home")).unwrap();
    assert_eq!(v["node_id"], key.id());
    let mine: Receipt = serde_json::from_value(v.clone()).unwrap();
    let mut others = vec![mine.clone(), mine.clone()];
    others[0].job_id = "another-job".into();
    others[1].job_id = "a-third-job".into();
    let batch: Vec<Value> = Receipt::sign_all([vec![mine], others].concat(), &key)
        .into_iter()
        .map(|r| r.unwrap().to_value())
        .collect();
    assert_eq!(batch[0]["batch"]["size"], 3, "{}", batch[0]);
    let path = h.file("batch.json", &batch[0].to_string());
    let r = verify_against_the_job(&h, &path, &m, &["--node-id", key.id()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("in a batch of 3"), "{}", r.stdout);
    let mut stolen = batch[0].clone();
    stolen["batch"] = batch[1]["batch"].clone();
    let r = h.run(&["receipt", "verify", &h.file("stolen.json", &stolen.to_string())]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.error_line().contains("not in the batch"), "{}", r.stderr);
    let mut altered = batch[0].clone();
    altered["output_hash"] = json!("0".repeat(64));
    let r = h.run(&["receipt", "verify", &h.file("altered.json", &altered.to_string())]);
    assert_eq!(r.code, 1, "{}", r.stdout);
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

/// Runs `args` with `--receipt` and returns the receipt's path.
fn receipt_for(h: &Home, name: &str, args: &[&str]) -> String {
    let path = h.path(name).display().to_string();
    let mut all = args.to_vec();
    all.extend(["--receipt", &path]);
    let r = h.run(&all);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    path
}

/// `receipt verify PATH --code CODE`.
fn verify_code(h: &Home, receipt: &str, code: &str) -> Run {
    h.run(&["receipt", "verify", receipt, "--code", code])
}

#[test]
fn script_and_module_receipts_verify_against_what_ran() {
    let h = Home::new();
    let py = h.file("t.py", "def run(p):\n    return p\n");
    let r = receipt_for(&h, "py.json", &["run", "python", &py, "--params", "{}"]);
    let v = verify_code(&h, &r, &py);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(
        v.stdout.contains(&format!("ok: code_hash matches {py}")),
        "{}",
        v.stdout
    );
    let other = h.file("u.py", "def run(p):\n    return 1\n");
    assert_one_error_line(&verify_code(&h, &r, &other), 1, "code_hash does not match");
    // A directory is not a script.
    assert_one_error_line(
        &verify_code(&h, &r, h.dir.path().to_str().unwrap()),
        2,
        "is a directory",
    );
    assert_one_error_line(
        &verify_code(&h, &r, "/nonexistent/t.py"),
        2,
        "cannot read /nonexistent/t.py",
    );

    let ts = h.file("t.ts", "export function run(p: unknown) { return p; }\n");
    let r = receipt_for(&h, "ts.json", &["run", "deno", &ts, "--params", "{}"]);
    assert_eq!(verify_code(&h, &r, &ts).code, 0);
    assert_one_error_line(&verify_code(&h, &r, &py), 1, "code_hash does not match");

    // A module run by its store digest verifies against the digest (its stored bytes
    // are hashed again) and against the WAT it was added from.
    let wat = h.file("m.wat", &returning(r#"{"ok":1}"#));
    let added = h.run(&["module", "add", &wat]);
    assert_eq!(added.code, 0, "{}", added.stderr);
    let sha = added.stdout.trim();
    let r = receipt_for(&h, "wasm.json", &["run", "wasm", sha]);
    let v = verify_code(&h, &r, sha);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stdout.contains("stored module"), "{}", v.stdout);
    assert_eq!(verify_code(&h, &r, &wat).code, 0);
    let missing = format!("sha256:{}", "0".repeat(64));
    assert_one_error_line(
        &verify_code(&h, &r, &missing),
        2,
        "not in this node's module store",
    );
}

const GO_TOOL: &str = r#"package main

import (
	"encoding/json"
	"os"
)

func main() {
	var p map[string]any
	json.NewDecoder(os.Stdin).Decode(&p)
	json.NewEncoder(os.Stdout).Encode(p)
}
"#;

fn go_package(h: &Home, name: &str) -> String {
    let dir = h.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("go.mod"), "module example.com/echo\n\ngo 1.24\n").unwrap();
    std::fs::write(dir.join("main.go"), GO_TOOL).unwrap();
    dir.display().to_string()
}

/// A Go receipt names the build, not the sources: `--code DIR` builds the package
/// again (reproducibly: a copy elsewhere builds to the same bytes) and compares, for
/// the wasip1 build and the native one.
#[test]
fn a_go_receipt_verifies_against_its_package_directory() {
    let h = Home::new();
    let pkg = go_package(&h, "echo");
    // Compiling the wasip1 module counts against the job's time: room for a loaded machine.
    let wasi = receipt_for(
        &h,
        "wasi.json",
        &[
            "run",
            "go",
            &pkg,
            "--params",
            r#"{"a":1}"#,
            "--timeout-ms",
            "180000",
        ],
    );
    let v = verify_code(&h, &wasi, &pkg);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stdout.contains("the wasip1 command build of"), "{}", v.stdout);
    let native = receipt_for(
        &h,
        "native.json",
        &["run", "go", &pkg, "--native", "--params", "{}"],
    );
    let v = verify_code(&h, &native, &pkg);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stdout.contains("the native build of"), "{}", v.stdout);
    // The same sources elsewhere build to the same module.
    let copy = go_package(&h, "elsewhere/echo");
    let v = verify_code(&h, &wasi, &copy);
    assert_eq!(v.code, 0, "{}", v.stderr);
    // Changed sources do not.
    std::fs::write(
        Path::new(&copy).join("main.go"),
        GO_TOOL.replace("Encode(p)", "Encode(len(p))"),
    )
    .unwrap();
    let v = verify_code(&h, &wasi, &copy);
    assert_one_error_line(&v, 1, "code_hash does not match");
    assert!(
        v.error_line().contains("wasip1 command") && v.error_line().contains("native"),
        "{}",
        v.stderr
    );
    // A package that does not build is named as such (bad input).
    std::fs::write(
        Path::new(&copy).join("main.go"),
        "package main\nfunc main() { x }\n",
    )
    .unwrap();
    let v = verify_code(&h, &wasi, &copy);
    assert_eq!(v.code, 2, "{}", v.stderr);
    assert!(v.error_line().starts_with("error: "), "{}", v.stderr);
}

/// A locally built image (nothing is pulled) other than the busybox fixture, for a
/// Docker receipt that must not match it.
fn other_image() -> &'static str {
    use hanzo_testkit::docker::*;
    const IMAGE: &str = "hanzo-test/verify-other:latest";
    let fingerprint = sha256_hex(&[FIXTURE_VERSION.as_bytes(), b"verify-other"]);
    ensure_fixture(IMAGE, &fingerprint, |fp| {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rootfs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("marker"), "not busybox").unwrap();
        import_dir(&dir, IMAGE, &[format!("LABEL {FIXTURE_LABEL}={fp}")]);
    });
    IMAGE
}

#[test]
fn a_docker_receipt_verifies_against_its_image_in_the_local_daemon() {
    use hanzo_testkit::docker::{SCRIPT_VAR, busybox_image, docker};
    let h = Home::new();
    let image = busybox_image();
    let script = format!("{SCRIPT_VAR}=cat");
    let r = receipt_for(
        &h,
        "docker.json",
        &["run", "docker", image, "--env", &script, "--params", r#"{"a":1}"#],
    );
    let v = verify_code(&h, &r, image);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stdout.contains(&format!("image {image}")), "{}", v.stdout);
    // The image id itself.
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert_eq!(verify_code(&h, &r, &id).code, 0, "{id}");
    // Another image does not match; an image the daemon does not have, or a reference
    // that is not one, is bad input; no daemon is exit 4.
    assert_one_error_line(&verify_code(&h, &r, other_image()), 1, "code_hash does not match");
    assert_one_error_line(
        &verify_code(&h, &r, "hanzo-test/never-built:latest"),
        2,
        "not in the local Docker daemon",
    );
    assert_one_error_line(
        &verify_code(&h, &r, "Not A Reference"),
        2,
        "invalid image reference",
    );
    let v = h.run_with(&["receipt", "verify", &r, "--code", image], |c| {
        c.env("HANZO_COMPUTE_DOCKER_SOCKET", "/nonexistent/docker.sock");
    });
    assert_one_error_line(&v, 4, "no Docker daemon");
}

/// A version 1 receipt, written by the node before receipts carried an execution
/// context (issue 14), still verifies against its code, params, output and signer.
#[test]
fn a_version_1_receipt_still_verifies() {
    let h = Home::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/fixtures");
    let receipt = dir.join("receipt-v1.json").display().to_string();
    let code = dir.join("receipt-v1.wat").display().to_string();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    let node = v["node_id"].as_str().unwrap();
    let args = |output: &str| {
        vec![
            "receipt".to_string(),
            "verify".into(),
            receipt.clone(),
            "--code".into(),
            code.clone(),
            "--params".into(),
            r#"{"xs":[1,2,3]}"#.into(),
            "--output".into(),
            output.into(),
            "--node-id".into(),
            node.into(),
        ]
    };
    let run = |a: Vec<String>| h.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let r = run(args(r#"{"sum":6}"#));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(args(r#"{"sum":7}"#)).code, 1);
}
