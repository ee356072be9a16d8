//! The shared conformance suite (hanzo_compute::conformance) on one fixture script whose
//! functions have the fixtures' behaviours.

use crate::util::Node;
use hanzo_compute::conformance::{Fixture, Harness};
use hanzo_compute::{JobSpec, Runtime};
use std::sync::Arc;

const FIXTURES: &str = r#"
import sys

def run(params):
    return params

def fail(params):
    raise RuntimeError("requested failure")

def spin(params):
    while True:
        pass

def grow(params):
    hog = []
    while True:
        hog.append(bytearray(1 << 20))

def big_output(params):
    return "x" * params["bytes"]

def log(params):
    print(params["message"])
    return {"logged": True}
"#;

pub struct PythonHarness {
    node: Node,
    script: std::path::PathBuf,
}

impl PythonHarness {
    pub fn new() -> Self {
        let node = Node::new();
        let script = node.script("fixtures.py", FIXTURES);
        PythonHarness { node, script }
    }
}

impl Harness for PythonHarness {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.node.rt.clone()
    }

    fn job(&self, fixture: Fixture) -> JobSpec {
        self.node.job(&self.script).function(match fixture {
            Fixture::Echo => "run",
            Fixture::Fail => "fail",
            Fixture::Spin => "spin",
            Fixture::MemoryHog => "grow",
            Fixture::BigOutput => "big_output",
            Fixture::Log => "log",
        })
    }
}

hanzo_compute::conformance_tests!(PythonHarness::new());
