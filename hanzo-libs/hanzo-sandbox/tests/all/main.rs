//! Integration tests of the process sandbox, one module per topic (wasmtime's layout).
//! Every test runs real processes: /bin/sh, coreutils and Debian's python3.
//!
//! Most tests run in each of the four modes a host can give ([`util::Mode`]): bubblewrap
//! with cgroups, bubblewrap alone, cgroups alone, neither. The host must offer all of
//! them (root, bubblewrap installed, writable cgroups); a missing feature fails the
//! tests rather than skipping them.

mod cleanup;
mod detect;
mod filesystem;
mod hostile;
mod io;
mod limits;
mod namespaces;
mod network;
mod plain;
mod privilege;
mod session;
mod unprivileged;
mod util;
