//! The shared conformance suite, on the wasip1 build (WASM runtime) and on the native
//! build (process sandbox).

use crate::util::*;
use hanzo_compute::JobSpec;
use hanzo_compute::conformance::{Fixture, Harness};
use std::sync::Arc;

fn function(f: Fixture) -> &'static str {
    match f {
        Fixture::Echo => "echo",
        Fixture::Fail => "fail",
        Fixture::Spin => "spin",
        Fixture::MemoryHog => "hog",
        Fixture::BigOutput => "big",
        Fixture::Log => "log",
    }
}

struct Go {
    native: bool,
}

impl Harness for Go {
    fn runtime(&self) -> Arc<dyn hanzo_compute::Runtime> {
        runtime("auto")
    }
    fn job(&self, f: Fixture) -> JobSpec {
        let mut spec = job(&fixture()).function(function(f));
        spec.native = self.native;
        spec
    }
}

mod wasip1 {
    use super::*;
    hanzo_compute::conformance_tests!(Go { native: false });
}

mod native {
    use super::*;
    hanzo_compute::conformance_tests!(Go { native: true });
}
