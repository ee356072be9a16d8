//! The go runtime's tests, with the real Go toolchain (`bash scripts/test.sh` installs
//! it): the conformance suite on both builds, the examples through both WASM ABIs and
//! natively, the build cache, and hostile packages.

mod builds;
mod conformance;
mod hostile;
mod tools;
mod util;
