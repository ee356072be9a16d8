//! `hanzo-node demo`: the README's first command. Runs the example tools (built from
//! `examples/` for wasm32-wasip1) on the embedded default configuration, printing each
//! output and its receipt, and shows two hostile tools stopped at their limits.

use crate::node::Node;
use clap::Args;
use hanzo_compute::{ComputeError, JobSpec, LimitKind, Receipt, RuntimeKind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory holding the example modules built for wasm32-wasip1.
    #[arg(long, value_name = "DIR", default_value = "target/wasm32-wasip1/release")]
    pub examples: PathBuf,
    /// A local image of the text tools (scripts/demo.sh builds one when Docker runs):
    /// adds a step that runs them in a hardened container.
    #[arg(long, value_name = "IMAGE")]
    pub docker_image: Option<String>,
}

/// What a demo step expects to happen.
enum Expect {
    Output,
    Limit(LimitKind),
}

struct Step {
    title: &'static str,
    runtime: RuntimeKind,
    /// A module file in the examples directory, or an image reference.
    module: String,
    function: &'static str,
    params: Value,
    tweak: fn(&mut JobSpec),
    expect: Expect,
}

fn steps() -> Vec<Step> {
    let text = "Hanzo runs any workload behind one job contract. Every workload gets enforced limits, \
                every workload gets a signed receipt, and hostile workloads stay in their sandbox. \
                Questions: ops@hanzo.example";
    vec![
        Step {
            title: "word statistics (Rust SDK tool, exports ABI)",
            runtime: RuntimeKind::Wasm,
            module: "text_tools.wasm".into(),
            function: "word_stats",
            params: json!({"text": text, "top": 3, "exclude_stopwords": true}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "slugify (the same tools built as a WASI command)",
            runtime: RuntimeKind::Wasm,
            module: "text-tools-cmd.wasm".into(),
            function: "slugify",
            params: json!({"text": "Decentralised Compute: Fast, Safe & Honest!"}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "sentiment scoring (a bag-of-words linear model)",
            runtime: RuntimeKind::Wasm,
            module: "sentiment.wasm".into(),
            function: "batch",
            params: json!({"texts": [
                "the node was fast and the results were excellent",
                "the job failed again, slow and frustrating",
                "not bad at all"
            ], "top_features": 2}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "deterministic profile (same output hash and fuel on every machine)",
            runtime: RuntimeKind::Wasm,
            module: "sentiment.wasm".into(),
            function: "analyze",
            params: json!({"text": "reproducible results are wonderful"}),
            tweak: |s| s.deterministic = true,
            expect: Expect::Output,
        },
        Step {
            title: "hostile: a tool that spins forever, stopped at its 250 ms timeout",
            runtime: RuntimeKind::Wasm,
            module: "echo.wasm".into(),
            function: "spin",
            params: json!({}),
            tweak: |s| s.limits.timeout_ms = 250,
            expect: Expect::Limit(LimitKind::Timeout),
        },
        Step {
            title: "hostile: a tool that allocates without bound, stopped at 32 MiB",
            runtime: RuntimeKind::Wasm,
            module: "echo.wasm".into(),
            function: "grow",
            params: json!({}),
            tweak: |s| s.limits.memory_mb = 32,
            expect: Expect::Limit(LimitKind::Memory),
        },
    ]
}

/// The container step: the text tools' `word_stats` in a hardened container.
fn docker_step(image: &str) -> Step {
    Step {
        title: "word statistics in a hardened container (no network, no capabilities, read-only root)",
        runtime: RuntimeKind::Docker,
        module: image.to_string(),
        function: "word_stats",
        params: json!({"text": "Containers too: the same tool, the same contract, the same receipt.", "top": 2}),
        tweak: |s| s.limits.memory_mb = 64,
        expect: Expect::Output,
    }
}

pub async fn run(config: Option<&Path>, args: DemoArgs) -> anyhow::Result<u8> {
    let mut all = steps();
    if let Some(image) = &args.docker_image {
        all.push(docker_step(image));
    }
    for step in all.iter().filter(|s| s.runtime == RuntimeKind::Wasm) {
        if !args.examples.join(&step.module).is_file() {
            return Err(ComputeError::invalid(format!(
                "example module {} not found in {}; build the examples first: \
                 cargo build --release --target wasm32-wasip1 -p echo -p text-tools -p sentiment \
                 (or run scripts/demo.sh)",
                step.module,
                args.examples.display()
            ))
            .into());
        }
    }
    let node = Node::build(config, None)?;
    println!("hanzo-node demo: node {}", node.compute.key().id());
    println!("data directory: {}\n", node.config.node.data_dir.display());
    let mut failures = 0;
    for step in all {
        let source = match step.runtime {
            RuntimeKind::Wasm => args.examples.join(&step.module).display().to_string(),
            _ => step.module.clone(),
        };
        let mut spec = JobSpec::new(step.runtime, source)
            .function(step.function)
            .params(step.params);
        (step.tweak)(&mut spec);
        let params = spec.params.clone();
        println!("== {}", step.title);
        println!(
            "   {} {}({})",
            step.module,
            step.function,
            serde_json::to_string(&params)?
        );
        let outcome = node.compute.run(spec).await;
        let as_expected = match (&outcome.result, &step.expect) {
            (Ok(output), Expect::Output) => {
                println!("output:  {}", serde_json::to_string_pretty(output)?);
                true
            }
            (Err(e @ ComputeError::LimitExceeded { limit, .. }), Expect::Limit(want)) if limit == want => {
                println!("stopped: {e} (exit code {})", e.exit_code());
                true
            }
            (Ok(output), Expect::Limit(_)) => {
                println!("UNEXPECTED output: {output}");
                false
            }
            (Err(e), _) => {
                println!("UNEXPECTED error: {e}");
                false
            }
        };
        match &outcome.receipt {
            Some(r) => {
                println!("receipt: {}", serde_json::to_string_pretty(&r.to_value())?);
                let verified = Receipt::verify(&r.to_value()).and_then(|r| {
                    r.check_input(&params)?;
                    match &outcome.result {
                        Ok(output) => r.check_output(output),
                        Err(_) => Ok(()),
                    }
                });
                match verified {
                    Ok(()) => println!("verified: signature and hashes check out"),
                    Err(e) => {
                        println!("receipt FAILED verification: {e}");
                        failures += 1;
                    }
                }
            }
            None => println!("receipt: none"),
        }
        if !as_expected {
            failures += 1;
        }
        println!();
    }
    if failures > 0 {
        return Err(
            ComputeError::internal(format!("{failures} demo step(s) did not behave as expected")).into(),
        );
    }
    println!("all demo steps behaved as expected; the node is still up.");
    Ok(0)
}
