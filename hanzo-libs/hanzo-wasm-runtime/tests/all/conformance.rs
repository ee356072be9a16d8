//! The shared conformance suite (hanzo_compute::conformance), run twice: once with
//! the SDK's echo tools as an exports-ABI module, once as a WASI command.

use crate::util::{Node, example};
use hanzo_compute::conformance::{Fixture, Harness};
use hanzo_compute::{JobSpec, Runtime, RuntimeKind};
use std::sync::Arc;

/// Which build of the echo tools the harness runs.
pub struct WasmHarness {
    node: Node,
    module: String,
}

impl WasmHarness {
    pub fn exports() -> Self {
        WasmHarness {
            node: Node::new(),
            module: example("echo.wasm"),
        }
    }

    pub fn command() -> Self {
        WasmHarness {
            node: Node::new(),
            module: example("echo-cmd.wasm"),
        }
    }
}

impl Harness for WasmHarness {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.node.wasm.clone()
    }

    fn job(&self, fixture: Fixture) -> JobSpec {
        let function = match fixture {
            Fixture::Echo => "run",
            Fixture::Fail => "fail",
            Fixture::Spin => "spin",
            Fixture::MemoryHog => "grow",
            Fixture::BigOutput => "big_output",
            Fixture::Log => "log",
        };
        JobSpec::new(RuntimeKind::Wasm, &self.module).function(function)
    }
}

mod exports_abi {
    hanzo_compute::conformance_tests!(super::WasmHarness::exports());
}

mod wasi_command {
    hanzo_compute::conformance_tests!(super::WasmHarness::command());
}
