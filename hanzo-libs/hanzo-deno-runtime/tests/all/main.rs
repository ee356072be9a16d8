//! Integration tests of the Deno runtime with the real deno, bubblewrap and cgroups, one
//! module per topic. A missing deno or bubblewrap fails the tests rather than skipping
//! them (`bash scripts/test.sh` installs the toolchains).

mod cache;
mod codecache;
mod conformance;
mod hostile;
mod permissions;
mod prepare;
mod tools;
mod util;
