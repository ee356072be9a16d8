//! The stdio build of the sentiment tools: a WASI command on `wasm32-wasip1`, a plain
//! executable natively. `HANZO_FUNCTION` picks the function.
//!
//! The tools are compiled here as a module instead of being linked from the library: on wasm,
//! rustc exports the library's `hanzo_alloc` and tool symbols from any executable that links
//! it, which would make this command look like an exports-ABI module to the host.

#[path = "lib.rs"]
mod sentiment;

fn main() {
    sentiment::hanzo_main()
}
