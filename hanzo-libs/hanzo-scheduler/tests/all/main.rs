//! Integration tests of the scheduler, on the real WASM runtime and on a gated test
//! runtime that finishes jobs only when told to (for precise control of timing).

mod admission;
mod agents;
mod backpressure;
mod burst;
mod cancel;
mod hooks;
mod order;
mod util;
