//! The module compiler process of hanzo-wasm-runtime on its own (see
//! `hanzo_wasm_runtime::Compiler::Subprocess`); `hanzo-node __wasm-compile` is the same.

/// The node's allocator (hanzo-node's `main.rs` says why), so that the compiler's
/// `RLIMIT_DATA` is tested against what the node runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let code = hanzo_wasm_runtime::compile_main(std::env::args_os().skip(1).collect());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
