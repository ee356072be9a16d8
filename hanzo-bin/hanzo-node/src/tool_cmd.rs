//! `hanzo-node tool add|ls|call|rm`: named tools on a node, through its HTTP API
//! (the same client as `hanzo-node job`).

use crate::job_cmd::{Client, NodeArgs, cell, enc, finish, print_columns, resolve_source, wait_for};
use crate::run::LimitArgs;
use clap::{Args, Subcommand};
use hanzo_compute::{ComputeError, ResourceLimits, RuntimeKind};
use serde_json::{Value, json};
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum ToolCmd {
    /// Register a named tool (re-adding a name replaces it).
    Add(Box<AddArgs>),
    /// Register every tool of an MCP server as a named tool, PREFIX + its name (in
    /// lower case, other characters as `-`), with the server's schemas: the server is
    /// started here, on this machine, to list them.
    Import(Box<ImportArgs>),
    /// List the registered tools.
    Ls {
        /// Print {"tools": [...]} as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Call a tool by name; prints the job id (with --wait, its output).
    Call {
        /// The tool's name.
        name: String,
        /// The params, as JSON; checked against the tool's schema by the node. `-`
        /// reads stdin; without --params or --params-file, a stdin that is a pipe or a file.
        #[arg(long, value_name = "JSON", conflicts_with = "params_file")]
        params: Option<String>,
        /// Read the params from a file (`-`: stdin).
        #[arg(long, value_name = "PATH")]
        params_file: Option<std::path::PathBuf>,
        /// Wait for the result and print the output as `run` does (same exit codes).
        #[arg(long)]
        wait: bool,
        /// Print JSON: with --wait {"output", "usage", "receipt"} (or the error), else
        /// the node's acknowledgement {"id", "status"}.
        #[arg(long)]
        json: bool,
        /// Write the receipt to this file (waits for the result, as --wait).
        #[arg(long, value_name = "PATH")]
        receipt: Option<std::path::PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Remove a tool.
    Rm {
        /// The tool's name.
        name: String,
        /// Print {"name", "removed": true} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The name ([a-z0-9][a-z0-9_-]{0,63}).
    pub name: String,
    /// The runtime: wasm, docker, deno, python, go, native, k8s, mcp, agent.
    pub runtime: String,
    /// The source: a local WASM file (uploaded to the node), a path, an image,
    /// sha256:<hex>, an MCP server's URL or command line, or an agent file (sent as
    /// its text).
    pub source: String,
    /// The JSON Schema of the params: inline JSON, or a file holding it (an mcp tool
    /// without one takes its server's inputSchema; an agent, {"prompt"} or
    /// {"messages"}).
    #[arg(long, value_name = "FILE|JSON")]
    pub schema: Option<String>,
    /// What the tool does, for people.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The function to call (default: the runtime's choice).
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print the tool as the node stored it, as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// What every tool's name starts with ([a-z0-9][a-z0-9_-]*, e.g. `git-`).
    pub prefix: String,
    /// The runtime: mcp (only MCP servers list their tools).
    pub runtime: String,
    /// The MCP server's URL or command line.
    pub source: String,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print {"tools": [...]} (each as the node stored it) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub async fn run(config: Option<&Path>, cmd: ToolCmd) -> anyhow::Result<u8> {
    if let ToolCmd::Import(args) = cmd {
        return crate::job_cmd::report(import(config, *args).await);
    }
    crate::job_cmd::report(dispatch(config, cmd))
}

/// `tool import`: the server's tools, listed by starting (or reaching) it here as the
/// operator's `run` would, each registered with the node under PREFIX.
async fn import(config: Option<&Path>, args: ImportArgs) -> anyhow::Result<u8> {
    let kind: RuntimeKind = args.runtime.parse()?;
    if kind != RuntimeKind::Mcp {
        return Err(ComputeError::invalid(format!(
            "tool import: {kind} tools do not list themselves; import takes an mcp server"
        ))
        .into());
    }
    if args.prefix.is_empty()
        || !args
            .prefix
            .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !args
            .prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(
            ComputeError::invalid(format!("PREFIX '{}': expected [a-z0-9][a-z0-9_-]*", args.prefix)).into(),
        );
    }
    let limits = args.limits.to_limits(ResourceLimits::default().max_output_bytes);
    let client = Client::new(config, &args.node)?;
    let source = resolve_source(&client, kind, &args.source)?;
    // The operator's own runtime, as `run mcp` has: the server runs in this machine's
    // sandbox under the tool's limits.
    let cfg = crate::node::load_config(config)?;
    let sandbox =
        hanzo_sandbox::Sandbox::detect_with(hanzo_sandbox::Options::from_config(&cfg.compute.sandbox));
    let rt = hanzo_mcp::McpRuntime::new(
        std::sync::Arc::new(sandbox),
        hanzo_mcp::McpOptions {
            pids_limit: cfg.compute.sandbox.pids_limit,
            ..hanzo_mcp::McpOptions::default()
        },
    );
    let spec = hanzo_compute::JobSpec::new(RuntimeKind::Mcp, source.clone()).limits(limits.clone());
    let tools = rt.describe_all(&spec).await?;
    let mut stored = Vec::new();
    let mut failed = 0;
    for (tool, described) in tools {
        let name = import_name(&args.prefix, &tool);
        let d = match described {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped {tool}: {e}");
                failed += 1;
                continue;
            }
        };
        let mut body = json!({
            "name": name, "runtime": kind, "source": source, "function": tool,
            "schema": d.input_schema, "limits": limits,
        });
        if args.limits.max_output_bytes.is_none() {
            crate::job_cmd::unname_output_cap(&mut body);
        }
        if let Some(desc) = d.description {
            body["description"] = json!(desc);
        }
        if let Some(out) = d.output_schema {
            body["output_schema"] = out;
        }
        match client
            .call("POST", "/v1/tools", body.to_string().as_bytes())
            .and_then(|r| r.json())
        {
            Ok(t) => {
                if !args.json {
                    println!("added {name} ({tool})");
                }
                stored.push(t);
            }
            Err(e) => {
                eprintln!("skipped {tool}: {}", crate::one_line(&format!("{e:#}")));
                failed += 1;
            }
        }
    }
    if args.json {
        println!("{}", json!({ "tools": stored }));
    }
    if failed > 0 {
        return Err(crate::job_cmd::fail(
            1,
            format!("{failed} of the server's tools were not imported (named above)"),
        ));
    }
    Ok(0)
}

/// PREFIX + an MCP tool's name as a named tool's name: lower case, anything else `-`,
/// at most 64 characters.
fn import_name(prefix: &str, tool: &str) -> String {
    let mut name: String = format!("{prefix}{tool}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(64);
    name
}

fn dispatch(config: Option<&Path>, cmd: ToolCmd) -> anyhow::Result<u8> {
    match cmd {
        ToolCmd::Add(args) => add(config, *args),
        ToolCmd::Import(_) => unreachable!("tool import is async: run() takes it"),
        ToolCmd::Ls { json, node } => {
            let client = Client::new(config, &node)?;
            let list = client.call("GET", "/v1/tools", b"")?.json()?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                print_table(list["tools"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
            Ok(0)
        }
        ToolCmd::Call {
            name,
            params,
            params_file,
            wait,
            json,
            receipt,
            node,
        } => {
            let params: Value = crate::params::resolve(params.as_deref(), params_file.as_deref())?;
            let client = Client::new(config, &node)?;
            let ack = client
                .call(
                    "POST",
                    &format!("/v1/tools/{}/call", enc(&name)),
                    params.to_string().as_bytes(),
                )?
                .json()?;
            let id = ack["id"]
                .as_str()
                .ok_or_else(|| ComputeError::internal(format!("the node answered without a job id: {ack}")))?
                .to_string();
            // A receipt exists only once the job ends: asking for one is waiting.
            if !wait && receipt.is_none() {
                crate::job_cmd::print_ack(&ack, &id, json)?;
                return Ok(0);
            }
            let job = wait_for(&client, &id)?;
            let logs = client
                .call("GET", &format!("/v1/jobs/{}/logs", enc(&id)), b"")
                .map(|r| r.body)
                .unwrap_or_default();
            finish(&job, &logs, receipt.as_deref(), json)
        }
        ToolCmd::Rm { name, json, node } => {
            let client = Client::new(config, &node)?;
            client.call("DELETE", &format!("/v1/tools/{}", enc(&name)), b"")?;
            if json {
                println!("{}", json!({"name": name, "removed": true}));
            } else {
                println!("removed {name}");
            }
            Ok(0)
        }
    }
}

fn add(config: Option<&Path>, args: AddArgs) -> anyhow::Result<u8> {
    let kind: RuntimeKind = args.runtime.parse()?;
    let schema = args.schema.as_deref().map(read_schema).transpose()?;
    // The node stores these with the tool; an output cap left out is left to the node
    // (below), not taken from this machine's configuration.
    let limits = args.limits.to_limits(ResourceLimits::default().max_output_bytes);
    let client = Client::new(config, &args.node)?;
    let source = resolve_source(&client, kind, &args.source)?;
    let mut body = json!({
        "name": args.name,
        "runtime": kind,
        "source": source,
        "limits": limits,
    });
    if args.limits.max_output_bytes.is_none() {
        crate::job_cmd::unname_output_cap(&mut body);
    }
    if let Some(s) = schema {
        body["schema"] = s;
    }
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    if let Some(f) = &args.function {
        body["function"] = json!(f);
    }
    let resp = client.call("POST", "/v1/tools", body.to_string().as_bytes())?;
    let verb = if resp.status == 201 { "added" } else { "replaced" };
    let tool = resp.json()?;
    if args.json {
        println!("{}", serde_json::to_string(&tool)?);
        return Ok(0);
    }
    println!(
        "{verb} {} ({} {})",
        tool["name"].as_str().unwrap_or(&args.name),
        tool["runtime"].as_str().unwrap_or("?"),
        tool["source"].as_str().unwrap_or("?")
    );
    Ok(0)
}

/// `--schema`: inline JSON when it looks like JSON (an object or a boolean schema),
/// else the path of a file holding it.
fn read_schema(arg: &str) -> Result<Value, ComputeError> {
    let t = arg.trim_start();
    let (text, what) = if t.starts_with('{') || t == "true" || t == "false" {
        (arg.to_string(), "--schema".to_string())
    } else {
        let text = std::fs::read_to_string(arg)
            .map_err(|e| ComputeError::invalid(format!("--schema: cannot read {arg}: {e}")))?;
        (text, format!("--schema {arg}"))
    };
    serde_json::from_str(&text).map_err(|e| ComputeError::invalid(format!("{what} is not valid JSON: {e}")))
}

fn print_table(tools: &[Value]) {
    let rows: Vec<Vec<String>> = tools
        .iter()
        .map(|t| {
            ["name", "runtime", "source", "description"]
                .iter()
                .map(|k| cell(&t[*k]))
                .collect()
        })
        .collect();
    print_columns(&["NAME", "RUNTIME", "SOURCE", "DESCRIPTION"], &rows);
}
