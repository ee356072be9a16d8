//! `hanzo-node new`: each template builds with the real toolchain, outside the checkout,
//! and runs on the node; bad names and occupied directories are refused.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const PARAMS: &str = r#"{"name": "Ada"}"#;
const OUTPUT: &str = r#"{"message":"hello, Ada"}"#;

/// `hanzo-node new LANG NAME --dir <tempdir>/NAME [more]`; returns the project directory.
fn new_project(h: &Home, lang: &str, name: &str, more: &[&str]) -> PathBuf {
    let dir = h.path(name);
    let d = dir.display().to_string();
    let mut args = vec!["new", lang, name, "--dir", &d];
    args.extend(more);
    let r = h.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        std::fs::canonicalize(&dir).unwrap().display().to_string()
    );
    assert!(
        r.stderr.contains(&format!("created the {lang} tool {name}")),
        "{}",
        r.stderr
    );
    dir
}

/// Runs the tool with the params, asserts the output, writes and verifies a receipt
/// against `code` (what the receipt's code_hash was made from), and checks that an
/// empty name is a tool failure with the tool's message.
fn run_and_verify(h: &Home, runtime: &str, source: &str, extra: &[&str], code: &str) {
    let receipt = h.path(&format!("{runtime}-receipt.json")).display().to_string();
    let mut args = vec!["run", runtime, source, "--params", PARAMS, "--receipt", &receipt];
    args.extend(extra);
    let r = h.run(&args);
    assert_eq!(r.code, 0, "{runtime}: {}", r.stderr);
    assert_eq!(r.stdout.trim(), OUTPUT, "{runtime}");
    let v = h.run(&[
        "receipt", "verify", &receipt, "--code", code, "--params", PARAMS, "--output", OUTPUT,
    ]);
    assert_eq!(v.code, 0, "{runtime}: {}", v.stderr);
    assert!(v.stdout.contains("ok: code_hash matches"), "{}", v.stdout);
    let mut args = vec!["run", runtime, source, "--params", r#"{"name": ""}"#];
    args.extend(extra);
    assert_one_error_line(&h.run(&args), 1, "name must not be empty");
}

/// The target directory the tests build tool crates in: beside the node binary's
/// (`<target>/new-cmd-tests`), kept between runs so that a rerun compiles only the tool.
fn tool_target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_hanzo-node"));
    bin.parent().and_then(Path::parent).unwrap().join("new-cmd-tests")
}

/// The toolchain rust-toolchain.toml pins (it has the wasm32-wasip1 target); a project
/// outside the checkout would otherwise get rustup's default toolchain.
fn pinned_toolchain() -> String {
    let text = std::fs::read_to_string(hanzo_testkit::repo_root().join("rust-toolchain.toml")).unwrap();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("channel = \"")?
                .strip_suffix('"')
                .map(str::to_string)
        })
        .expect("a channel in rust-toolchain.toml")
}

#[test]
fn a_new_rust_tool_builds_to_wasm_and_runs() {
    let h = Home::new();
    let sdk = hanzo_testkit::repo_root().join("hanzo-sdk/rust");
    let sdk = std::fs::canonicalize(sdk).unwrap();
    let dir = new_project(&h, "rust", "greeter", &["--sdk-path", sdk.to_str().unwrap()]);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("hanzo-tool = {{ path = \"{}\" }}", sdk.display())),
        "{manifest}"
    );
    for f in ["src/lib.rs", "README.md", ".gitignore"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    // The README's build command; offline, since tests reach no registry (every crate
    // the SDK needs is in cargo's cache once the workspace is built).
    let out = Command::new("cargo")
        .args(["build", "--offline", "--release", "--target", "wasm32-wasip1"])
        .current_dir(&dir)
        .env("RUSTUP_TOOLCHAIN", pinned_toolchain())
        .env("CARGO_TARGET_DIR", tool_target_dir())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wasm = tool_target_dir().join("wasm32-wasip1/release/greeter.wasm");
    let wasm = wasm.display().to_string();
    run_and_verify(&h, "wasm", &wasm, &[], &wasm);
    // The exports ABI: the tool is also callable by its own name.
    let r = h.run(&["run", "wasm", &wasm, "--function", "greet", "--params", PARAMS]);
    assert_eq!(r.stdout.trim(), OUTPUT, "{}", r.stderr);
}

#[test]
fn a_rust_tool_depends_on_this_checkout_or_on_git() {
    let h = Home::new();
    // Built from a checkout, the node points a new crate at the checkout's SDK.
    let dir = new_project(&h, "rust", "auto", &[]);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = std::fs::canonicalize(hanzo_testkit::repo_root().join("hanzo-sdk/rust")).unwrap();
    assert!(
        manifest.contains(&format!("path = \"{}\"", sdk.display())),
        "{manifest}"
    );
    let dir = new_project(&h, "rust", "from-git", &["--sdk-git"]);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let dep = manifest.lines().find(|l| l.starts_with("hanzo-tool")).unwrap();
    assert!(dep.starts_with("hanzo-tool = { git = \"https://"), "{manifest}");
    assert!(manifest.contains("name = \"from-git\""), "{manifest}");
    // The library of a crate named with `-` is the `_` name, and so is its module.
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("release/from_git.wasm"), "{readme}");
    let not_sdk = h.path("empty");
    std::fs::create_dir(&not_sdk).unwrap();
    let r = h.run(&[
        "new",
        "rust",
        "x",
        "--dir",
        h.path("x").to_str().unwrap(),
        "--sdk-path",
        not_sdk.to_str().unwrap(),
    ]);
    assert_one_error_line(&r, 2, "no Cargo.toml of the hanzo-tool crate");
    assert!(!h.path("x").exists());
}

#[test]
fn a_new_go_tool_builds_without_a_module_proxy_and_runs() {
    let h = Home::new();
    let dir = new_project(&h, "go", "greeter", &[]);
    let go_mod = std::fs::read_to_string(dir.join("go.mod")).unwrap();
    assert!(
        go_mod.contains("require github.com/hanzoai/hanzo-node/hanzo-sdk/go v0.0.0"),
        "{go_mod}"
    );
    assert!(!go_mod.contains("replace"), "{go_mod}");
    let vendored = dir.join("vendor/github.com/hanzoai/hanzo-node/hanzo-sdk/go/serve.go");
    assert_eq!(
        std::fs::read(&vendored).unwrap(),
        std::fs::read(hanzo_testkit::repo_root().join("hanzo-sdk/go/serve.go")).unwrap()
    );
    let src = dir.display().to_string();
    // wasip1 on the WASM runtime, and natively in the sandbox: both verify against the
    // package directory (the node builds it again, reproducibly).
    // Compiling the 4.5 MB wasip1 module counts against the job's time: room for a
    // loaded machine.
    run_and_verify(&h, "go", &src, &["--timeout-ms", "180000"], &src);
    run_and_verify(&h, "go", &src, &["--native"], &src);
    // By hand: the project's own test, with the vendored SDK and no proxy.
    let out = Command::new(hanzo_testkit::toolchain("go"))
        .args(["test", "./..."])
        .current_dir(&dir)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=vendor")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", h.path("gocache"))
        .env("GOPATH", h.path("gopath"))
        .output()
        .expect("run go test");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_new_python_tool_runs() {
    let h = Home::new();
    let dir = new_project(&h, "python", "greeter", &[]);
    let script = dir.join("greeter.py").display().to_string();
    assert!(
        std::fs::read_to_string(&script)
            .unwrap()
            .starts_with("# /// script\n")
    );
    run_and_verify(&h, "python", &script, &[], &script);
}

#[test]
fn a_new_deno_tool_runs() {
    let h = Home::new();
    let dir = new_project(&h, "deno", "greeter", &[]);
    let script = dir.join("greeter.ts").display().to_string();
    run_and_verify(&h, "deno", &script, &[], &script);
}

#[test]
fn new_refuses_bad_names_and_occupied_directories() {
    let h = Home::new();
    let at = |name: &str| h.path(name).display().to_string();
    for (lang, name, needle) in [
        ("python", "my-tool", "Python identifier"),
        ("python", "class", "Python identifier"),
        ("rust", "fn", "crate name"),
        ("rust", "9lives", "crate name"),
        ("go", "Greeter", "Go module name"),
        ("deno", "a/b", "invalid tool name"),
    ] {
        let r = h.run(&["new", lang, name, "--dir", &at("bad")]);
        assert_one_error_line(&r, 2, needle);
        assert!(!h.path("bad").exists(), "{lang} {name}");
    }
    // A directory with anything in it is refused and left as it was.
    std::fs::create_dir(h.path("taken")).unwrap();
    std::fs::write(h.path("taken/notes.txt"), "mine").unwrap();
    let r = h.run(&["new", "deno", "tool", "--dir", &at("taken")]);
    assert_one_error_line(&r, 2, "exists and is not empty");
    assert_eq!(std::fs::read_dir(h.path("taken")).unwrap().count(), 1);
    let r = h.run(&["new", "deno", "tool", "--dir", &at("taken/notes.txt")]);
    assert_one_error_line(&r, 2, "not a directory");
    // An empty one is used.
    std::fs::create_dir(h.path("empty")).unwrap();
    let r = h.run(&["new", "deno", "tool", "--dir", &at("empty")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(h.path("empty/tool.ts").is_file());
    // Without --dir the project is ./NAME.
    let r = h.run_with(&["new", "python", "here"], |c| {
        c.current_dir(h.dir.path());
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(h.path("here/here.py").is_file());
    let r = h.run(&["new", "go", "g", "--dir", &at("g"), "--sdk-git"]);
    assert_one_error_line(&r, 2, "for rust projects only");
    let r = h.run(&["new", "cobol", "x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.starts_with("error:"), "{}", r.stderr);
}
