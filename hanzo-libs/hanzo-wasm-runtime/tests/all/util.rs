//! Shared helpers: a runtime in a temporary data directory, WAT fixture builders,
//! and the SDK examples built for wasm32-wasip1.

use hanzo_compute::config::WasmConfig;
use hanzo_compute::{Compute, ComputeError, JobOutcome, JobSpec, LimitKind, NodeKey, RuntimeKind};
use hanzo_wasm_runtime::{Compiler, WasmOptions, WasmRuntime};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A runtime and registry over a fresh data directory.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub wasm: Arc<WasmRuntime>,
    pub compute: Arc<Compute>,
}

pub fn test_config() -> WasmConfig {
    WasmConfig {
        // Fewer slots than the default keeps each test's address-space reservation small.
        max_instances: 32,
        ..WasmConfig::default()
    }
}

impl Node {
    pub fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        Self::in_dir(dir)
    }

    pub fn in_dir(dir: tempfile::TempDir) -> Node {
        Self::with_options(dir, |o| o)
    }

    /// A node whose options `tweak` changes; modules compile in the compiler process
    /// (as under hanzo-node) unless it says otherwise.
    pub fn with_options(dir: tempfile::TempDir, tweak: impl FnOnce(WasmOptions) -> WasmOptions) -> Node {
        let options = tweak(WasmOptions::new(dir.path(), test_config()).with_compiler(compiler_process()));
        let wasm = Arc::new(WasmRuntime::new(options).unwrap());
        let mut compute = Compute::new(Arc::new(NodeKey::load_or_create(dir.path()).unwrap()));
        compute.register(wasm.clone());
        Node {
            dir,
            wasm,
            compute: Arc::new(compute),
        }
    }

    /// Writes `wat` to a file in the data directory and returns its path.
    pub fn fixture(&self, name: &str, wat: &str) -> String {
        let p = self.dir.path().join(format!("{name}.wat"));
        std::fs::write(&p, wat).unwrap();
        p.display().to_string()
    }

    pub async fn run(&self, spec: JobSpec) -> JobOutcome {
        self.compute.run(spec).await
    }

    /// Runs a WAT fixture with the given params and limits tweak.
    pub async fn run_wat(&self, wat: &str, params: Value, tweak: impl FnOnce(&mut JobSpec)) -> JobOutcome {
        let path = self.fixture("fixture", wat);
        let mut spec = JobSpec::new(RuntimeKind::Wasm, path).params(params);
        tweak(&mut spec);
        self.run(spec).await
    }
}

/// The compiler process this crate builds (`src/bin/hanzo-wasm-compile.rs`).
pub fn compiler_process() -> Compiler {
    Compiler::Subprocess {
        program: env!("CARGO_BIN_EXE_hanzo-wasm-compile").into(),
        args: Vec::new(),
    }
}

/// Asserts a limit error of `kind` and returns its message.
pub fn expect_limit(out: &JobOutcome, kind: LimitKind) -> String {
    match &out.result {
        Err(e @ ComputeError::LimitExceeded { limit, .. }) if *limit == kind => {
            assert_eq!(e.exit_code(), 3);
            e.to_string()
        }
        other => panic!("expected a {kind} limit error, got {other:?}"),
    }
}

/// An exports-ABI module: memory, a bump `hanzo_alloc` from 64 KiB, `data` (plain
/// text) at offset 1024, and the given extra module fields (functions, imports).
pub fn exports_module(data: &str, fields: &str) -> String {
    let data = data.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 65536))
  (func (export "hanzo_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $len)))
    (local.get $p))
  (data (i32.const 1024) "{data}")
  {funcs}
)"#,
        imports = fields
            .lines()
            .filter(|l| l.trim_start().starts_with("(import"))
            .collect::<Vec<_>>()
            .join("\n"),
        funcs = fields
            .lines()
            .filter(|l| !l.trim_start().starts_with("(import"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The packed return value pointing at `len` bytes at offset 1024.
pub fn packed(len: usize) -> String {
    format!("(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len}))")
}

/// An exports-ABI function `name` that returns the data segment as its envelope.
pub fn returning(name: &str, envelope: &str) -> String {
    exports_module(
        envelope,
        &format!(
            r#"(func (export "{name}") (param i32 i32) (result i64) {})"#,
            packed(envelope.len())
        ),
    )
}

/// The SDK examples for wasm32-wasip1 (see [`hanzo_testkit::wasm_examples_dir`]).
pub fn examples_dir() -> &'static Path {
    hanzo_testkit::wasm_examples_dir()
}

/// Path of one built example module, as a source string.
pub fn example(file: &str) -> String {
    examples_dir().join(file).display().to_string()
}
