//! The go runtime's tests, with the real Go toolchain (`bash scripts/test.sh` installs
//! it): the conformance suite on both builds, the examples through both WASM ABIs and
//! natively, the build cache, hostile packages, and the build as a sandboxed step.

mod builds;
mod conformance;
mod hostile;
mod prepare;
mod tools;
mod util;
