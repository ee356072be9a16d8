//! The module compiler process of hanzo-wasm-runtime on its own (see
//! `hanzo_wasm_runtime::Compiler::Subprocess`); `hanzo-node __wasm-compile` is the same.

fn main() -> std::process::ExitCode {
    let code = hanzo_wasm_runtime::compile_main(std::env::args_os().skip(1).collect());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
