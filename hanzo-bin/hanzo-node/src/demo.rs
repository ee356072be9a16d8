//! `hanzo-node demo`: the README's first command. Runs the example tools on the embedded
//! default configuration — the Rust ones built for wasm32-wasip1 on the WASM runtime,
//! the TypeScript, Python and Go ones on their runtimes in the process sandbox, a
//! built-in tool, and (with a daemon) a container — printing each output and its
//! receipt, and shows hostile tools stopped at their limits or walls.

use crate::node::Node;
use clap::Args;
use hanzo_compute::{ComputeError, JobSpec, LimitKind, Receipt, RuntimeKind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory holding the example modules built for wasm32-wasip1.
    #[arg(long, value_name = "DIR", default_value = "target/wasm32-wasip1/release")]
    pub examples: PathBuf,
    /// A local image of the text tools (scripts/demo.sh builds one when Docker runs):
    /// adds a step that runs them in a hardened container.
    #[arg(long, value_name = "IMAGE")]
    pub docker_image: Option<String>,
    /// The repository's examples directory (the TypeScript, Python and Go tools).
    #[arg(long, value_name = "DIR", default_value = "examples")]
    pub sources: PathBuf,
    /// Also start three nodes on 127.0.0.1 that place a job on each other, verify the
    /// peer's receipt, and survive the death of the peer running a job.
    #[arg(long)]
    pub network: bool,
    /// With --network: a hanzo-node built with the `failpoints` feature
    /// (scripts/demo.sh builds one), run as a lying node that verified jobs catch.
    #[arg(long, value_name = "PATH")]
    pub liar: Option<PathBuf>,
    /// An installed `mcp-server-time` (the MCP reference server from PyPI;
    /// scripts/demo.sh installs one): adds steps calling it as a sandboxed MCP server,
    /// started and then warm.
    #[arg(long, value_name = "PATH")]
    pub mcp_server: Option<PathBuf>,
    /// An OpenAI-compatible chat-completions endpoint (`http://127.0.0.1:11434/v1`):
    /// adds a step where an agent answers a question with two example tools as named
    /// tools (scripts/demo.sh starts a stand-in when none is given).
    #[arg(long, value_name = "URL")]
    pub agent_endpoint: Option<String>,
    /// The model the agent step asks for at --agent-endpoint.
    #[arg(long, value_name = "NAME", default_value = "stand-in")]
    pub agent_model: String,
}

/// What a demo step expects to happen.
enum Expect {
    Output,
    Limit(LimitKind),
    /// The tool fails (exit 1): what it tried is not there for it.
    Refused,
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

/// A hostile Python tool: reads the host's password hashes.
const READ_SHADOW_PY: &str =
    "def run(params):\n    with open('/etc/shadow') as f:\n        return f.read()\n";

/// A hostile TypeScript tool: phones home (to the node's own API port, on loopback).
const CONNECT_TS: &str = "export async function run() {\n  const c = await Deno.connect({ hostname: '127.0.0.1', port: 3690 });\n  c.close();\n  return 'connected';\n}\n";

/// The process runtimes' steps; `hostile` is a directory holding the hostile scripts.
fn process_steps(hostile: &Path) -> Vec<Step> {
    let csv = "city,temp_c,rain_mm\nOslo,3.5,60\nRome,14.1,70\nCairo,22.5,2\nLima,19.0,1";
    vec![
        Step {
            title: "text statistics (TypeScript on Deno, permissions deny-all, in the process sandbox)",
            runtime: RuntimeKind::Deno,
            module: "deno/text.ts".into(),
            function: "run",
            params: json!({"text": "Deno tools run with no permissions unless the job grants them. Deno is fast.", "top": 3}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "CSV column statistics (Python, standard library only, in the process sandbox)",
            runtime: RuntimeKind::Python,
            module: "python/csv_stats.py".into(),
            function: "run",
            params: json!({"csv": csv}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "word frequencies (Go SDK tool, built once to wasip1, on the WASM runtime)",
            runtime: RuntimeKind::Go,
            module: "go/wordfreq".into(),
            function: "run",
            params: json!({"text": "the quick brown fox jumps over the lazy dog the end", "top": 2}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "the same Go tool built natively (--native), in the process sandbox",
            runtime: RuntimeKind::Go,
            module: "go/wordfreq".into(),
            function: "run",
            params: json!({"text": "the quick brown fox jumps over the lazy dog the end", "top": 2}),
            tweak: |s| s.native = true,
            expect: Expect::Output,
        },
        Step {
            title: "a built-in Rust tool (sha256), run in the sandboxed tool host",
            runtime: RuntimeKind::Native,
            module: "builtin:hash".into(),
            function: "run",
            params: json!({"text": "hello, hanzo"}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "hostile: a Python tool reading /etc/shadow, which the sandbox does not show",
            runtime: RuntimeKind::Python,
            module: hostile.join("read_shadow.py").display().to_string(),
            function: "run",
            params: json!({}),
            tweak: |_| {},
            expect: Expect::Refused,
        },
        Step {
            title: "hostile: a TypeScript tool connecting to the host's loopback without a network grant",
            runtime: RuntimeKind::Deno,
            module: hostile.join("connect.ts").display().to_string(),
            function: "run",
            params: json!({}),
            tweak: |_| {},
            expect: Expect::Refused,
        },
        Step {
            title: "hostile: a Python tool that spins forever, its whole process tree killed at 500 ms",
            runtime: RuntimeKind::Python,
            module: hostile.join("spin.py").display().to_string(),
            function: "run",
            params: json!({}),
            tweak: |s| s.limits.timeout_ms = 500,
            expect: Expect::Limit(LimitKind::Timeout),
        },
    ]
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
        // Before the spinning tool: compiling echo.wasm is part of a job's time,
        // and this step leaves it compiled, so the 250 ms below are all spinning.
        Step {
            title: "hostile: a tool that allocates without bound, stopped at 32 MiB",
            runtime: RuntimeKind::Wasm,
            module: "echo.wasm".into(),
            function: "grow",
            params: json!({}),
            tweak: |s| s.limits.memory_mb = 32,
            expect: Expect::Limit(LimitKind::Memory),
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

/// The MCP steps: a tool of a reference MCP server from PyPI, started in the process
/// sandbox, then called again on the same warm server.
fn mcp_steps(server: &Path) -> Vec<Step> {
    let server = server.display().to_string();
    vec![
        Step {
            title: "the time in Paris from an MCP server (mcp-server-time, PyPI), started in the process sandbox",
            runtime: RuntimeKind::Mcp,
            module: server.clone(),
            function: "get_current_time",
            params: json!({"timezone": "Europe/Paris"}),
            tweak: |_| {},
            expect: Expect::Output,
        },
        Step {
            title: "the same MCP server, warm: the process started above serves this call too",
            runtime: RuntimeKind::Mcp,
            module: server,
            function: "convert_time",
            params: json!({"source_timezone": "Europe/Paris", "time": "09:30", "target_timezone": "Asia/Tokyo"}),
            tweak: |_| {},
            expect: Expect::Output,
        },
    ]
}

/// The first 12 hex digits of a hash or key, as `docker images` shows ids.
fn clip_hex(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// At most `max` characters of `text`, with `...` when cut (compact lines stay one line).
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

/// `verbose`: each output pretty-printed and each receipt whole, instead of a line each.
pub async fn run(config: Option<&Path>, args: DemoArgs, verbose: bool) -> anyhow::Result<u8> {
    let mut all = steps();
    if let Some(image) = &args.docker_image {
        all.push(docker_step(image));
    }
    for step in all.iter().filter(|s| s.runtime == RuntimeKind::Wasm) {
        if !args.examples.join(&step.module).is_file() {
            return Err(ComputeError::invalid(format!(
                "example module {} not found in {}; build the examples first: \
                 rustup target add wasm32-wasip1, then cargo build --release --target wasm32-wasip1 \
                 -p echo -p text-tools -p sentiment (or run scripts/demo.sh, which does both)",
                step.module,
                args.examples.display()
            ))
            .into());
        }
    }
    let node = Node::build(config, None, false).await?;
    println!(
        "hanzo-node demo: node {} (data directory {}){}\n",
        node.compute.key().id(),
        node.config.node.data_dir.display(),
        if verbose {
            ""
        } else {
            "; -v prints whole outputs and receipts"
        }
    );
    // The hostile scripts live in the data directory for the demo's length.
    let hostile = node.config.node.data_dir.join("demo");
    std::fs::create_dir_all(&hostile)
        .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", hostile.display())))?;
    for (name, text) in [
        ("read_shadow.py", READ_SHADOW_PY),
        ("connect.ts", CONNECT_TS),
        ("spin.py", "def run(params):\n    while True:\n        pass\n"),
    ] {
        std::fs::write(hostile.join(name), text)
            .map_err(|e| ComputeError::internal(format!("cannot write the demo's {name}: {e}")))?;
    }
    // Process runtimes whose toolchain is missing here are skipped, saying why
    // (scripts/demo.sh installs them all).
    let mut skipped = Vec::new();
    for step in process_steps(&hostile) {
        let health = match node.compute.runtime(step.runtime) {
            Some(rt) => rt.health().await,
            None => hanzo_compute::Health::unavailable(node.unavailable_reason(step.runtime)),
        };
        if health.available {
            all.push(step);
        } else if !skipped.contains(&step.runtime) {
            skipped.push(step.runtime);
            println!(
                "skipping the {} steps: {}\n",
                step.runtime,
                health.detail.unwrap_or_default()
            );
        }
    }
    if let Some(server) = &args.mcp_server {
        all.extend(mcp_steps(server));
    }
    let mut failures = 0;
    let count = all.len();
    for (n, step) in all.into_iter().enumerate() {
        let source = match step.runtime {
            RuntimeKind::Wasm => args.examples.join(&step.module).display().to_string(),
            RuntimeKind::Deno | RuntimeKind::Python | RuntimeKind::Go => {
                args.sources.join(&step.module).display().to_string()
            }
            _ => step.module.clone(),
        };
        let mut spec = JobSpec::new(step.runtime, source)
            .function(step.function)
            .params(step.params);
        (step.tweak)(&mut spec);
        let params = spec.params.clone();
        println!("{:>2}. {}", n + 1, step.title);
        let call = format!(
            "{} {}({})",
            step.module,
            step.function,
            serde_json::to_string(&params)?
        );
        println!("    {}", if verbose { call } else { clip(&call, 110) });
        let outcome = node.compute.run(spec).await;
        let (as_expected, line) = match (&outcome.result, &step.expect) {
            (Ok(output), Expect::Output) => {
                let text = if verbose {
                    serde_json::to_string_pretty(output)?
                } else {
                    clip(&serde_json::to_string(output)?, 110)
                };
                (true, format!("output:  {text}"))
            }
            (Err(e @ ComputeError::LimitExceeded { limit, .. }), Expect::Limit(want)) if limit == want => {
                (true, format!("stopped: {e} (exit code {})", e.exit_code()))
            }
            (Err(e @ ComputeError::ToolFailed(_)), Expect::Refused) => {
                (true, format!("refused: {e} (exit code {})", e.exit_code()))
            }
            (Ok(output), Expect::Limit(_) | Expect::Refused) => {
                (false, format!("UNEXPECTED output: {output}"))
            }
            (Err(e), _) => (false, format!("UNEXPECTED error: {e}")),
        };
        println!("    {}", if verbose { line } else { clip(&line, 140) });
        match &outcome.receipt {
            Some(r) => {
                if verbose {
                    println!("    receipt: {}", serde_json::to_string_pretty(&r.to_value())?);
                }
                let verified = Receipt::verify(&r.to_value()).and_then(|r| {
                    r.check_input(&params)?;
                    match &outcome.result {
                        Ok(output) => r.check_output(output),
                        Err(_) => Ok(()),
                    }
                });
                match verified {
                    Ok(()) => println!(
                        "    receipt verified (node {}..., code {}..., {:.1} ms)",
                        clip_hex(&r.node_id),
                        clip_hex(&r.code_hash),
                        r.usage.wall_time_ms
                    ),
                    Err(e) => {
                        println!("    receipt FAILED verification: {e}");
                        failures += 1;
                    }
                }
            }
            None => println!("    receipt: none"),
        }
        if !as_expected {
            failures += 1;
        }
        println!();
    }
    if let Some(endpoint) = &args.agent_endpoint {
        failures += crate::demo_agent::run(
            crate::demo_agent::AgentDemo {
                config: &node.config,
                compute: Arc::new(node.compute),
                wasm: node.wasm.clone(),
                agent: node.agent.clone(),
                examples: &args.examples,
                endpoint,
                model: &args.agent_model,
                verbose,
            },
            count + 1,
        )
        .await?;
    }
    if args.network {
        let (data_dir, examples, liar) = (
            node.config.node.data_dir.clone(),
            args.examples.clone(),
            args.liar.clone(),
        );
        failures +=
            tokio::task::spawn_blocking(move || crate::demo_net::run(&data_dir, &examples, liar.as_deref()))
                .await
                .map_err(ComputeError::internal)??;
    }
    if failures > 0 {
        return Err(
            ComputeError::internal(format!("{failures} demo step(s) did not behave as expected")).into(),
        );
    }
    println!("all demo steps behaved as expected; the node is still up.");
    Ok(0)
}
