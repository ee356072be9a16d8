//! `hanzo-node new rust|go|python|deno NAME [--dir PATH]`: a ready-to-build tool project
//! for a tool author, outside any hanzo-node checkout. The templates are embedded
//! (`templates/`), and so is the Go SDK this binary was built with, which a Go project
//! gets vendored: the node builds Go packages without a module proxy, so a dependency
//! it cannot find in the module's own tree fails to build.

use clap::{Args, ValueEnum};
use hanzo_compute::ComputeError;
use std::path::{Path, PathBuf};

/// The language of the new tool.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// A Rust crate using the `hanzo-tool` SDK, built to a WASM module (wasm32-wasip1).
    Rust,
    /// A Go `main` package using the Go SDK (vendored), built by the node's go runtime.
    Go,
    /// A Python script with a PEP 723 block, for the python runtime.
    Python,
    /// A TypeScript module for the deno runtime.
    Deno,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The tool's language.
    #[arg(value_enum)]
    pub language: Language,
    /// The tool's name: the crate (rust), module (go), script (python: NAME.py, deno: NAME.ts).
    pub name: String,
    /// The project directory (default ./NAME); created if missing, refused unless empty.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// rust: depend on the SDK at this directory (a hanzo-node checkout's hanzo-sdk/rust).
    /// Default: the checkout this binary was built from, when it is still there; else git.
    #[arg(long, value_name = "PATH", conflicts_with = "sdk_git")]
    pub sdk_path: Option<PathBuf>,
    /// rust: depend on the SDK from the project's git repository, even when a checkout is here.
    #[arg(long)]
    pub sdk_git: bool,
}

/// The workspace manifest, for its `repository`: the Rust SDK's git dependency until the
/// crate is published.
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The project's git repository (`[workspace.package] repository`).
fn repository() -> Result<&'static str, ComputeError> {
    WORKSPACE_MANIFEST
        .lines()
        .find_map(|l| l.trim().strip_prefix("repository = \"")?.strip_suffix('"'))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ComputeError::internal("the workspace manifest names no repository"))
}

mod template {
    pub const RUST_CARGO: &str = include_str!("../templates/rust/Cargo.toml.tmpl");
    pub const RUST_LIB: &str = include_str!("../templates/rust/lib.rs.tmpl");
    pub const RUST_README: &str = include_str!("../templates/rust/README.md.tmpl");
    pub const RUST_GITIGNORE: &str = include_str!("../templates/rust/gitignore.tmpl");
    pub const GO_MOD: &str = include_str!("../templates/go/go.mod.tmpl");
    pub const GO_MAIN: &str = include_str!("../templates/go/main.go.tmpl");
    pub const GO_TEST: &str = include_str!("../templates/go/main_test.go.tmpl");
    pub const GO_MODULES_TXT: &str = include_str!("../templates/go/modules.txt.tmpl");
    pub const GO_README: &str = include_str!("../templates/go/README.md.tmpl");
    pub const PYTHON_TOOL: &str = include_str!("../templates/python/tool.py.tmpl");
    pub const PYTHON_README: &str = include_str!("../templates/python/README.md.tmpl");
    pub const DENO_TOOL: &str = include_str!("../templates/deno/tool.ts.tmpl");
    pub const DENO_README: &str = include_str!("../templates/deno/README.md.tmpl");
}

/// The Go SDK's files as the Go runtime embeds them: its go.mod, and the package's
/// non-test files (what `go mod vendor` copies).
fn go_sdk_file(name: &str) -> Option<&'static str> {
    hanzo_go_runtime::sdk::FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

fn go_sdk_sources() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    hanzo_go_runtime::sdk::FILES
        .iter()
        .filter(|(n, _)| *n != "go.mod")
}

/// The version the vendored SDK is required at. No version is published yet; v0.0.0 is
/// what this repository's own examples require, and a vendored module's version is
/// never looked up (`-mod=vendor`).
const GO_SDK_VERSION: &str = "v0.0.0";

pub async fn run(args: NewArgs) -> anyhow::Result<u8> {
    // Files are written off the async worker.
    tokio::task::spawn_blocking(move || create(args))
        .await
        .map_err(ComputeError::internal)?
}

fn create(args: NewArgs) -> anyhow::Result<u8> {
    check_name(args.language, &args.name)?;
    if args.language != Language::Rust && (args.sdk_path.is_some() || args.sdk_git) {
        return Err(ComputeError::invalid("--sdk-path and --sdk-git are for rust projects only").into());
    }
    let files = match args.language {
        Language::Rust => rust_files(&args.name, sdk_dependency(&args)?)?,
        Language::Go => go_files(&args.name)?,
        Language::Python => vec![
            (
                format!("{}.py", args.name),
                fill(template::PYTHON_TOOL, &args.name, &[]),
            ),
            ("README.md".into(), fill(template::PYTHON_README, &args.name, &[])),
        ],
        Language::Deno => vec![
            (
                format!("{}.ts", args.name),
                fill(template::DENO_TOOL, &args.name, &[]),
            ),
            ("README.md".into(), fill(template::DENO_README, &args.name, &[])),
        ],
    };
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    write_project(&dir, &files)?;
    let shown = std::fs::canonicalize(&dir).unwrap_or(dir);
    println!("{}", shown.display());
    let lang = args
        .language
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    eprintln!("created the {lang} tool {} in {}", args.name, shown.display());
    for step in next_steps(args.language, &args.name, &shown) {
        eprintln!("  {step}");
    }
    eprintln!("(see README.md there)");
    Ok(0)
}

/// What to type next, for stderr.
fn next_steps(language: Language, name: &str, dir: &Path) -> Vec<String> {
    match language {
        Language::Rust => vec![
            format!("cd {}", dir.display()),
            "rustup target add wasm32-wasip1".into(),
            "cargo build --release --target wasm32-wasip1".into(),
            format!(
                "hanzo-node run wasm target/wasm32-wasip1/release/{}.wasm --params '{{\"name\": \"Ada\"}}'",
                name.replace('-', "_")
            ),
        ],
        Language::Go => vec![
            format!("cd {}", dir.display()),
            "hanzo-node run go . --params '{\"name\": \"Ada\"}'".into(),
        ],
        Language::Python => vec![format!(
            "hanzo-node run python {}/{name}.py --params '{{\"name\": \"Ada\"}}'",
            dir.display()
        )],
        Language::Deno => vec![format!(
            "hanzo-node run deno {}/{name}.ts --params '{{\"name\": \"Ada\"}}'",
            dir.display()
        )],
    }
}

/// Refuses a NAME the language cannot use (exit 2).
fn check_name(language: Language, name: &str) -> Result<(), ComputeError> {
    let first_ok = |c: char, extra: &str| c.is_ascii_alphabetic() || extra.contains(c);
    let rest_ok = |s: &str, extra: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    let mut chars = name.chars();
    let first = chars.next();
    let rest = chars.as_str();
    let (ok, rule) = match language {
        // A cargo package name; its library (`-` as `_`) must be a Rust identifier.
        Language::Rust => (
            first.is_some_and(|c| first_ok(c, ""))
                && rest_ok(rest, "_-")
                && !RUST_RESERVED.contains(&name.replace('-', "_").as_str()),
            "a crate name: a letter, then letters, digits, _ or -; not a Rust keyword or a crate it uses",
        ),
        // The module path (and the directory): lower case, as Go module paths are.
        Language::Go => (
            first.is_some_and(|c| c.is_ascii_lowercase())
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c)),
            "a Go module name: a lower-case letter, then lower-case letters, digits, _ or -",
        ),
        // The script is imported as a module named after it.
        Language::Python => (
            first.is_some_and(|c| first_ok(c, "_")) && rest_ok(rest, "_") && !PYTHON_KEYWORDS.contains(&name),
            "a Python identifier (letters, digits and _, not starting with a digit) that is not a keyword",
        ),
        Language::Deno => (
            first.is_some_and(|c| first_ok(c, "_")) && rest_ok(rest, "_-"),
            "a letter or _, then letters, digits, _ or -",
        ),
    };
    if ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(ComputeError::invalid(format!(
            "invalid tool name {name:?}: expected {rule}, at most 64 characters"
        )))
    }
}

/// Names a Rust tool crate cannot have: keywords (the library is `use`d by its name),
/// the standard crates, and the crates the template depends on.
const RUST_RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "crate",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "async",
    "await",
    "dyn",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "test",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "hanzo_tool",
    "hanzo_tool_macros",
    "serde",
    "serde_json",
    "schemars",
];

const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def",
    "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
    "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// `template` with `{{name}}` and each `{{key}}` of `more` replaced.
fn fill(template: &str, name: &str, more: &[(&str, &str)]) -> String {
    let mut out = template.replace("{{name}}", name);
    for (k, v) in more {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

/// The `hanzo-tool = ...` lines of the Rust project's Cargo.toml.
fn sdk_dependency(args: &NewArgs) -> Result<String, ComputeError> {
    let git_line = format!("hanzo-tool = {{ git = {} }}", toml_string(repository()?)?);
    let path = match (&args.sdk_path, args.sdk_git) {
        (Some(p), _) => {
            let dir = std::fs::canonicalize(p)
                .map_err(|e| ComputeError::invalid(format!("--sdk-path {}: {e}", p.display())))?;
            if !is_rust_sdk(&dir) {
                return Err(ComputeError::invalid(format!(
                    "--sdk-path {}: no Cargo.toml of the hanzo-tool crate there (it is hanzo-sdk/rust in a hanzo-node checkout)",
                    p.display()
                )));
            }
            Some(dir)
        }
        (None, true) => None,
        (None, false) => checkout_sdk(),
    };
    Ok(match path {
        Some(dir) => {
            let dir = dir
                .to_str()
                .ok_or_else(|| ComputeError::invalid(format!("{} is not UTF-8", dir.display())))?;
            format!(
                "# The Rust SDK from a hanzo-node checkout: it is not on crates.io yet.\n\
                 # Without a checkout, take it from git instead:\n\
                 # {git_line}\n\
                 hanzo-tool = {{ path = {} }}",
                toml_string(dir)?
            )
        }
        None => format!(
            "# The Rust SDK from git: it is not on crates.io yet. From a hanzo-node checkout instead:\n\
             # hanzo-tool = {{ path = \"/path/to/hanzo-node/hanzo-sdk/rust\" }}\n\
             {git_line}"
        ),
    })
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn toml_string(s: &str) -> Result<String, ComputeError> {
    serde_json::to_string(s).map_err(ComputeError::internal)
}

/// The Rust SDK in the checkout this binary was built from, if it is still there.
fn checkout_sdk() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hanzo-sdk/rust");
    let dir = std::fs::canonicalize(dir).ok()?;
    is_rust_sdk(&dir).then_some(dir)
}

fn is_rust_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "name = \"hanzo-tool\""))
}

fn rust_files(name: &str, sdk_dependency: String) -> Result<Vec<(String, String)>, ComputeError> {
    let lib = name.replace('-', "_");
    let more = [("lib", lib.as_str()), ("sdk_dependency", sdk_dependency.as_str())];
    Ok(vec![
        ("Cargo.toml".into(), fill(template::RUST_CARGO, name, &more)),
        ("src/lib.rs".into(), fill(template::RUST_LIB, name, &more)),
        ("README.md".into(), fill(template::RUST_README, name, &more)),
        (".gitignore".into(), fill(template::RUST_GITIGNORE, name, &more)),
    ])
}

/// The Go SDK's module path and Go version, from its go.mod.
fn go_sdk() -> Result<(&'static str, &'static str), ComputeError> {
    let field = |key: &str| {
        go_sdk_file("go.mod")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ComputeError::internal(format!("the embedded Go SDK go.mod has no {key}line")))
    };
    Ok((field("module ")?, field("go ")?))
}

fn go_files(name: &str) -> Result<Vec<(String, String)>, ComputeError> {
    let (module, go_version) = go_sdk()?;
    let more = [
        ("sdk_module", module),
        ("sdk_version", GO_SDK_VERSION),
        ("go_version", go_version),
    ];
    let mut files = vec![
        ("go.mod".into(), fill(template::GO_MOD, name, &more)),
        ("main.go".into(), fill(template::GO_MAIN, name, &more)),
        ("main_test.go".into(), fill(template::GO_TEST, name, &more)),
        ("README.md".into(), fill(template::GO_README, name, &more)),
        (
            "vendor/modules.txt".into(),
            fill(template::GO_MODULES_TXT, name, &more),
        ),
    ];
    for (file, text) in go_sdk_sources() {
        files.push((format!("vendor/{module}/{file}"), text.to_string()));
    }
    Ok(files)
}

/// Writes `files` (relative paths) under `dir`, which must be missing or empty. On a
/// failure, what was written is removed again.
fn write_project(dir: &Path, files: &[(String, String)]) -> Result<(), ComputeError> {
    let created = match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut entries = std::fs::read_dir(dir)
                .map_err(|e| ComputeError::invalid(format!("cannot read {}: {e}", dir.display())))?;
            if entries.next().is_some() {
                return Err(ComputeError::invalid(format!(
                    "{} exists and is not empty; choose another --dir",
                    dir.display()
                )));
            }
            false
        }
        Ok(_) => {
            return Err(ComputeError::invalid(format!(
                "{} exists and is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| ComputeError::invalid(format!("cannot create {}: {e}", dir.display())))?;
            true
        }
        Err(e) => {
            return Err(ComputeError::invalid(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    let written = files.iter().try_for_each(|(rel, text)| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)
    });
    if let Err(e) = written {
        // The directory was empty (or ours): everything in it is ours to remove.
        if created {
            let _ = std::fs::remove_dir_all(dir);
        } else if let Ok(rd) = std::fs::read_dir(dir) {
            for entry in rd.flatten() {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        return Err(ComputeError::internal(format!(
            "cannot write the project in {}: {e}",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_go_sdk_file_is_vendored() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hanzo-sdk/go");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".go") && !n.ends_with("_test.go"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<&str> = go_sdk_sources().map(|(n, _)| *n).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "update FILES in hanzo-go-runtime's sdk.rs");
        let (module, version) = go_sdk().unwrap();
        assert_eq!(module, "github.com/hanzoai/hanzo-node/hanzo-sdk/go");
        assert!(version.starts_with("1."), "{version}");
    }

    #[test]
    fn names_follow_each_language() {
        for (lang, good, bad) in [
            (
                Language::Rust,
                &["greeter", "my-tool", "T2"][..],
                &["2x", "fn", "my.tool", "", "std", "a b"][..],
            ),
            (
                Language::Go,
                &["greeter", "my-tool", "t_2"],
                &["Greeter", "2x", "a/b", ""],
            ),
            (
                Language::Python,
                &["greeter", "_t", "Tool2"],
                &["my-tool", "class", "2x", ""],
            ),
            (
                Language::Deno,
                &["greeter", "my-tool", "_x"],
                &["2x", "a.b", "a/b", ""],
            ),
        ] {
            for n in good {
                assert!(check_name(lang, n).is_ok(), "{lang:?} {n}");
            }
            for n in bad {
                let e = check_name(lang, n).unwrap_err();
                assert_eq!(e.exit_code(), 2, "{lang:?} {n}");
            }
        }
        assert!(check_name(Language::Deno, &"x".repeat(65)).is_err());
    }

    #[test]
    fn the_checkout_sdk_is_found_and_written_as_a_toml_path() {
        let sdk = checkout_sdk().expect("built from a checkout");
        assert!(sdk.ends_with("hanzo-sdk/rust"), "{}", sdk.display());
        assert_eq!(toml_string("/a \"b\"\\c").unwrap(), r#""/a \"b\"\\c""#);
    }
}
