//! Integration tests of the Docker runtime against a real daemon, one module per topic
//! (wasmtime's layout). No image is pulled from the internet: the fixtures are built here
//! from local files (busybox-static, the SDK examples compiled as static executables), and
//! the registry tests run Debian's `docker-registry` on 127.0.0.1.
//!
//! A missing daemon fails the tests rather than skipping them:
//! `source scripts/docker.sh && ensure_docker` installs and starts one.

mod cleanup;
mod conformance;
mod daemon;
mod hostile;
mod images;
mod services;
mod tools;
mod util;
