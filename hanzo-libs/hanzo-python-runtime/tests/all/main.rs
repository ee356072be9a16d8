//! Integration tests of the Python runtime with the real toolchain (uv, python3) in the
//! real sandbox (bubblewrap and cgroups where the host has them), one module per topic.
//! The dependency tests install from PyPI. A missing toolchain fails the tests rather
//! than skipping them (`bash scripts/test.sh` installs uv).

mod conformance;
mod deps;
mod hostile;
mod tools;
mod util;
