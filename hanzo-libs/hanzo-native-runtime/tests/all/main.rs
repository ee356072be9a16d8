//! Integration tests of the native runtime, one module per topic. Every test runs real
//! processes in the real sandbox (bubblewrap and cgroups on the test machine): fixture
//! scripts for `/bin/sh` and Debian's `/usr/bin/python3`, C libraries compiled here with
//! `cc`, the Rust SDK's examples built natively with cargo, and the `hanzo-tool-host`
//! helper of this crate.

mod builtins;
mod cdylib;
mod conformance;
mod executables;
mod hostile;
mod store;
mod util;
