//! The shared conformance suite (hanzo_compute::conformance) on one TypeScript fixture
//! tool written to a temp dir, each behaviour an exported function.

use crate::util::Node;
use hanzo_compute::conformance::{Fixture, Harness};
use hanzo_compute::{JobSpec, Runtime, RuntimeKind};
use std::sync::Arc;

const FIXTURE: &str = r#"
export function run(params: unknown): unknown { return params; }
export function fail(): never { throw new Error("requested failure"); }
export function spin(): void { let i = 0; for (;;) { i++; } }
export function hog(): number {
  const keep: number[][] = [];
  for (;;) keep.push(new Array(100_000).fill(1.5));
}
export function big_output(p: { bytes: number }): string { return "x".repeat(p.bytes); }
export function log(p: { message: string }) { console.log(p.message); return { logged: true }; }
"#;

pub struct DenoHarness {
    node: Node,
    path: String,
}

impl DenoHarness {
    pub fn new() -> Self {
        let node = Node::new();
        let path = node.tool("fixture.ts", FIXTURE);
        DenoHarness { node, path }
    }
}

impl Harness for DenoHarness {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.node.rt.clone()
    }

    fn job(&self, fixture: Fixture) -> JobSpec {
        JobSpec::new(RuntimeKind::Deno, self.path.clone()).function(match fixture {
            Fixture::Echo => "run",
            Fixture::Fail => "fail",
            Fixture::Spin => "spin",
            Fixture::MemoryHog => "hog",
            Fixture::BigOutput => "big_output",
            Fixture::Log => "log",
        })
    }
}

hanzo_compute::conformance_tests!(DenoHarness::new());
