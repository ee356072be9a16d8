//! The stdio build of the text-tools tools: a WASI command on `wasm32-wasip1`, a plain
//! executable natively. `HANZO_FUNCTION` picks the function.
//!
//! The tools are compiled here as a module instead of being linked from the library: on wasm,
//! rustc exports the library's `hanzo_alloc` and tool symbols from any executable that links
//! it, which would make this command look like an exports-ABI module to the host.

#[path = "lib.rs"]
mod text_tools;

fn main() {
    text_tools::hanzo_main()
}
