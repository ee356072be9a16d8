//! The demo's agent step (CONTRACTS §10): two example tools become named tools of the
//! demo node, and an agent at an OpenAI-compatible endpoint answers a question with
//! them. Each call is a job in the node's store with its receipt; the agent's receipt
//! binds them, and the demo checks the chain as `receipt verify --output` does.
//!
//! `scripts/demo.sh` points it at `examples/agent/stand_in_model.py` (no model can run
//! on the machines the demo is made for) unless `HANZO_DEMO_AGENT_ENDPOINT` names a
//! real one.

use crate::demo::clip;
use hanzo_agent::AgentRuntime;
use hanzo_compute::{Compute, ComputeError, Config, Job, JobSpec, Receipt, RuntimeKind, Signing};
use hanzo_jobstore::ToolSpec;
use hanzo_wasm_runtime::WasmRuntime;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// What the step needs of the demo.
pub struct AgentDemo<'a> {
    pub config: &'a Config,
    pub compute: Arc<Compute>,
    pub wasm: Option<Arc<WasmRuntime>>,
    pub agent: Option<Arc<AgentRuntime>>,
    pub examples: &'a Path,
    pub endpoint: &'a str,
    pub model: &'a str,
    pub verbose: bool,
}

/// Runs the step; returns how many things did not behave as expected.
pub async fn run(d: AgentDemo<'_>, number: usize) -> anyhow::Result<u32> {
    println!(
        "{number:>2}. an agent ({} at {}) answering with two example tools, each call a receipted job",
        d.model, d.endpoint
    );
    let Some(agent) = d.agent.clone() else {
        println!("    skipped: the agent runtime is not enabled ([compute] enabled_runtimes)\n");
        return Ok(0);
    };
    let store = match crate::node::open_store(d.config).await? {
        Ok((store, _)) => store,
        Err(hanzo_jobstore::Error::Locked(_)) => {
            println!("    skipped: a node serves from this data directory and holds its job store\n");
            return Ok(0);
        }
        Err(e) => return Err(ComputeError::internal(e).into()),
    };
    let text = json!({"type": "string"});
    for (name, module, function, description, schema) in [
        (
            "word-stats",
            "text_tools.wasm",
            "word_stats",
            "word counts and the most frequent words of a text",
            json!({"type": "object", "properties": {"text": text, "top": {"type": "integer"}}, "required": ["text"]}),
        ),
        (
            "sentiment",
            "sentiment.wasm",
            "analyze",
            "whether a text is positive or negative, with its score",
            json!({"type": "object", "properties": {"text": text}, "required": ["text"]}),
        ),
    ] {
        let path = std::fs::canonicalize(d.examples.join(module))
            .map_err(|e| ComputeError::invalid(format!("{module}: {e}")))?;
        store
            .put_tool(ToolSpec {
                name: name.into(),
                runtime: RuntimeKind::Wasm,
                source: path.display().to_string(),
                description: Some(description.into()),
                schema: Some(schema),
                output_schema: None,
                limits: Default::default(),
                function: Some(function.into()),
            })
            .await
            .map_err(ComputeError::internal)?;
    }
    // The API over the store gives the agent its tools; nothing listens.
    let _api = crate::node::local_api(d.config, d.compute.clone(), d.wasm.clone(), Some(agent), store)?;
    let file = format!(
        "endpoint = \"{}\"\nmodel = \"{}\"\nsystem = \"You review texts with your tools, then answer in one sentence.\"\ntools = [\"word-stats\", \"sentiment\"]\nmax_steps = 4\n",
        d.endpoint, d.model
    );
    let prompt = "Is this review positive, and which words does it use most? \
                  \"The node was fast, the results were excellent, and the receipts checked out.\"";
    let params = json!({ "prompt": prompt });
    println!("    agent({})", clip(&params.to_string(), 110));
    let spec = JobSpec::new(RuntimeKind::Agent, file).params(params.clone());
    let outcome = d.compute.run_job(&Job::new(spec), Signing::On).await;
    let output = match &outcome.result {
        Ok(o) => o.clone(),
        Err(e) => {
            println!("    UNEXPECTED error: {e}\n");
            return Ok(1);
        }
    };
    let mut failures = 0;
    let receipt = outcome.receipt.as_ref().map(|r| r.to_value());
    let agent_receipt = receipt.as_ref().map(Receipt::verify);
    let agent_receipt = match agent_receipt {
        Some(Ok(r)) if r.check_input(&params).is_ok() && r.check_output(&output).is_ok() => r,
        _ => {
            println!("    the agent's receipt FAILED verification\n");
            return Ok(1);
        }
    };
    for (i, step) in output["steps"].as_array().into_iter().flatten().enumerate() {
        let tool = step["tool"].as_str().unwrap_or("?");
        let verified = step
            .get("receipt")
            .filter(|r| r.is_object())
            .map(Receipt::verify)
            .is_some_and(|r| {
                r.is_ok_and(|r| {
                    r.node_id == agent_receipt.node_id
                        && r.check_input(&step["params"]).is_ok()
                        && r.check_output(&step["output"]).is_ok()
                })
            });
        let line = format!(
            "step {}: {tool}({}) -> {}",
            i + 1,
            step["params"],
            if step.get("error").is_some() {
                &step["error"]
            } else {
                &step["output"]
            }
        );
        println!("    {}", if d.verbose { line } else { clip(&line, 140) });
        if verified {
            println!(
                "      job {} receipt verified against the step's params and output",
                step["job_id"].as_str().unwrap_or("?")
            );
        } else {
            println!("      receipt FAILED verification");
            failures += 1;
        }
    }
    if output["steps"].as_array().is_none_or(|s| s.is_empty()) {
        println!("    UNEXPECTED: the agent called no tool");
        failures += 1;
    }
    let answer = output["answer"].as_str().unwrap_or("");
    println!(
        "    answer:  {}",
        if d.verbose {
            answer.to_string()
        } else {
            clip(answer, 130)
        }
    );
    println!(
        "    agent receipt verified (code {}..., the agent file's sha256), binding {} calls in order\n",
        &agent_receipt.code_hash[..12],
        output["steps"].as_array().map_or(0, Vec::len)
    );
    Ok(failures)
}
