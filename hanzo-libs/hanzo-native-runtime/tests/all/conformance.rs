//! The shared conformance suite, three times: fixture scripts (the stdio contract), the
//! SDK's `echo` tools as a natively built cdylib (the `execute_tool` ABI, in the helper),
//! and the same tools as a natively built stdio command.

use crate::util::{Fixtures, example, runtime};
use hanzo_compute::conformance::{Fixture, Harness};
use hanzo_compute::{JobSpec, Runtime, RuntimeKind};
use std::sync::Arc;

/// Scripts for `/bin/sh` and Debian's `/usr/bin/python3`, one per fixture.
pub struct ScriptHarness {
    files: Fixtures,
}

impl ScriptHarness {
    pub fn new() -> Self {
        let files = Fixtures::new();
        files.script("echo", "#!/bin/sh\nexec cat\n");
        files.script("fail", "#!/bin/sh\necho 'requested failure' >&2\nexit 1\n");
        files.script("spin", "#!/bin/sh\nwhile :; do :; done\n");
        // `b"x" * n` writes every byte: the memory is really committed.
        files.script(
            "hog",
            "#!/usr/bin/python3\nchunks = []\nwhile True:\n    chunks.append(b\"x\" * (1 << 20))\n",
        );
        files.script(
            "big",
            "#!/usr/bin/python3\nimport json, sys\nn = json.load(sys.stdin)[\"bytes\"]\nsys.stdout.write(json.dumps(\"x\" * n))\n",
        );
        files.script(
            "log",
            "#!/usr/bin/python3\nimport json, sys\np = json.load(sys.stdin)\nprint(p[\"message\"], file=sys.stderr)\nprint(json.dumps({\"logged\": True}))\n",
        );
        ScriptHarness { files }
    }
}

impl Harness for ScriptHarness {
    fn runtime(&self) -> Arc<dyn Runtime> {
        runtime()
    }

    fn job(&self, fixture: Fixture) -> JobSpec {
        let name = match fixture {
            Fixture::Echo => "echo",
            Fixture::Fail => "fail",
            Fixture::Spin => "spin",
            Fixture::MemoryHog => "hog",
            Fixture::BigOutput => "big",
            Fixture::Log => "log",
        };
        JobSpec::new(
            RuntimeKind::Native,
            self.files.path().join(name).display().to_string(),
        )
    }
}

/// The SDK's `echo` example, natively built: as a cdylib or as its stdio command.
pub struct EchoHarness {
    source: String,
}

impl EchoHarness {
    pub fn cdylib() -> Self {
        EchoHarness {
            source: example("libecho.so").display().to_string(),
        }
    }

    pub fn command() -> Self {
        EchoHarness {
            source: example("echo-cmd").display().to_string(),
        }
    }
}

impl Harness for EchoHarness {
    fn runtime(&self) -> Arc<dyn Runtime> {
        runtime()
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
        JobSpec::new(RuntimeKind::Native, self.source.clone()).function(function)
    }
}

mod scripts {
    hanzo_compute::conformance_tests!(super::ScriptHarness::new());
}

mod cdylib {
    hanzo_compute::conformance_tests!(super::EchoHarness::cdylib());
}

mod command {
    hanzo_compute::conformance_tests!(super::EchoHarness::command());
}
