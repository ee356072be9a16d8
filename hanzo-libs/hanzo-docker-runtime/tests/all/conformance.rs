//! The shared conformance suite (hanzo_compute::conformance) on the echo image: the SDK's
//! echo tools as a static executable `FROM scratch`, the function chosen by `HANZO_FUNCTION`.

use crate::util::{Node, echo_job};
use hanzo_compute::conformance::{Fixture, Harness};
use hanzo_compute::{JobSpec, Runtime};
use std::sync::Arc;

pub struct DockerHarness {
    node: Node,
}

impl DockerHarness {
    pub fn new() -> Self {
        DockerHarness { node: Node::new() }
    }
}

impl Harness for DockerHarness {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.node.rt.clone()
    }

    fn job(&self, fixture: Fixture) -> JobSpec {
        echo_job(match fixture {
            Fixture::Echo => "run",
            Fixture::Fail => "fail",
            Fixture::Spin => "spin",
            Fixture::MemoryHog => "grow",
            Fixture::BigOutput => "big_output",
            Fixture::Log => "log",
        })
    }
}

hanzo_compute::conformance_tests!(DockerHarness::new());
