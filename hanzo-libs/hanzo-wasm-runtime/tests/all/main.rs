//! Integration tests of the WASM runtime, one module per topic (wasmtime's layout).
//! Fixtures are small inline WAT; the SDK examples are built from source.

mod abi;
mod compile;
mod concurrency;
mod conformance;
mod determinism;
mod iloop;
mod limits;
mod module_store;
mod sdk;
mod stack_overflow;
mod util;
mod wasi;
