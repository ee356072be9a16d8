//! `hanzo-node receipt verify PATH`: checks a receipt's signature and, given the
//! data, its hashes. `--code` takes what the receipt's `code_hash` was made from, in the
//! receipt's runtime's terms (see [`check_code`]).

use crate::node::{cache_pools, load_config};
use clap::{Args, Subcommand};
use hanzo_compute::cache::Cache;
use hanzo_compute::{ComputeError, Receipt, RuntimeKind, UnavailableRuntime};
use hanzo_docker_runtime::{DockerOptions, DockerRuntime, ImageRef};
use hanzo_go_runtime::{GoRuntime, Target};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum ReceiptCmd {
    /// Verify a receipt, or a billing record ({"receipt", "acceptance"}: a receipt and
    /// the submitter's signed acceptance of it): signatures always, the hashes for the
    /// data given. Exit 0 when it verifies, 1 when it does not, 2 when it cannot be read.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The receipt file (JSON).
    pub path: PathBuf,
    /// Check code_hash against the code, as the receipt's runtime names it: a .wasm or
    /// .wat file or sha256:<hex> of a stored module (wasm), a script file (deno, python),
    /// a Go package directory, built again here with this node's Go toolchain (go; or
    /// the built file), an image reference or id resolved by the local Docker daemon
    /// (docker, k8s; never pulled), an executable or cdylib (native).
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Check input_hash against these params (JSON).
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Check output_hash against this output (JSON).
    #[arg(long, value_name = "JSON")]
    pub output: Option<String>,
    /// Require the receipt to be signed by this node id (hex public key).
    #[arg(long, value_name = "HEX")]
    pub node_id: Option<String>,
    /// For a billing record: require the acceptance to be signed by this node id (the
    /// submitter that owes the amount).
    #[arg(long, value_name = "HEX")]
    pub submitter: Option<String>,
}

pub async fn run(config: Option<&Path>, cmd: ReceiptCmd) -> anyhow::Result<u8> {
    let ReceiptCmd::Verify(args) = cmd;
    let path = args.path.clone();
    let text = blocking(move || std::fs::read_to_string(&path))
        .await?
        .map_err(|e| ComputeError::invalid(format!("cannot read {}: {e}", args.path.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| ComputeError::invalid(format!("{} is not JSON: {e}", args.path.display())))?;
    // serde_json keeps the last of a duplicated key and verifies that; a reader keeping
    // the first would trust another value under the same signature. Readable JSON, but
    // not a receipt any node signed: it does not verify (exit 1).
    if let Err(e) = hanzo_compute::receipt::check_unique_keys(&text) {
        return fail(format!("receipt does not verify: {e}"));
    }
    // A billing record: the receipt and the acceptance that counter-signs it.
    let (value, acceptance) = if hanzo_compute::billing::BillingRecord::is_one(&value) {
        (value["receipt"].clone(), Some(value["acceptance"].clone()))
    } else {
        if args.submitter.is_some() {
            return Err(ComputeError::invalid(
                "--submitter is for a billing record ({\"receipt\", \"acceptance\"})",
            )
            .into());
        }
        (value, None)
    };
    let receipt = match Receipt::verify(&value) {
        Ok(r) => r,
        Err(e) => return fail(format!("receipt does not verify: {e}")),
    };
    let accepted = match acceptance.map(|a| hanzo_compute::billing::Acceptance::verify(&a, &receipt)) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => return fail(format!("billing record does not verify: the acceptance: {e}")),
    };
    if let (Some(a), Some(id)) = (&accepted, &args.submitter)
        && !id.eq_ignore_ascii_case(&a.submitter)
    {
        return fail(format!(
            "the acceptance was signed by node {}, not {id}",
            a.submitter
        ));
    }
    if let Some(id) = &args.node_id
        && !id.eq_ignore_ascii_case(&receipt.node_id)
    {
        return fail(format!(
            "receipt was signed by node {}, not {id}",
            receipt.node_id
        ));
    }
    let mut matched = None;
    if let Some(code) = &args.code {
        match check_code(config, &receipt, code).await? {
            Ok(what) => matched = Some(what),
            Err(mismatch) => return fail(mismatch),
        }
    }
    if let Some(p) = &args.params {
        let v = json_arg(p, "--params")?;
        if let Err(e) = receipt.check_input(&v) {
            return fail(e.to_string());
        }
    }
    let mut chain = Vec::new();
    if let Some(o) = &args.output {
        let v = json_arg(o, "--output")?;
        if let Err(e) = receipt.check_output(&v) {
            return fail(e.to_string());
        }
        // An agent's output holds its tool calls with their receipts: the agent's
        // signature covers them, and each is checked here against its own call.
        if receipt.runtime == RuntimeKind::Agent {
            match check_steps(&receipt, &v) {
                Ok(lines) => chain = lines,
                Err(why) => return fail(why),
            }
        }
    }
    let pinned = if args.node_id.is_some() {
        "the node given with --node-id".to_string()
    } else {
        // A valid signature only says some key signed it: anyone can make a key.
        format!(
            "NOT PINNED: any node's key is accepted; pass --node-id {} to require this signer",
            receipt.node_id
        )
    };
    if let Some(what) = matched {
        println!("ok: code_hash matches {what}");
    }
    let batch = match &receipt.batch {
        Some(b) => format!(" in a batch of {} (root {})", b.size, b.root),
        None => String::new(),
    };
    println!(
        "ok: receipt verifies: job {} on {} ({:?}), signed by node {}{batch} ({pinned})",
        receipt.job_id, receipt.runtime, receipt.status, receipt.node_id
    );
    for line in chain {
        println!("{line}");
    }
    if let Some(a) = accepted {
        let pinned = if args.submitter.is_some() {
            "the node given with --submitter".to_string()
        } else {
            format!(
                "NOT PINNED: pass --submitter {} to require this signer",
                a.submitter
            )
        };
        println!(
            "ok: billing record verifies: node {} accepted it{} and owes {} micro-credits (per job {}, per cpu-second {}, per GiB-second {}) ({pinned})",
            a.submitter,
            a.verdict
                .as_deref()
                .map(|v| format!(" (verdict {v})"))
                .unwrap_or_default(),
            a.amount,
            a.price.per_job,
            a.price.per_cpu_second,
            a.price.per_gib_second,
        );
    }
    Ok(0)
}

/// The steps of an agent's output (CONTRACTS §10), each against its receipt: signed
/// by the node that signed the agent's, for the params the step shows, with the output
/// (or the failure) it shows. One line per step; `Err` names the first that fails.
fn check_steps(agent: &Receipt, output: &Value) -> Result<Vec<String>, String> {
    let Some(steps) = output.get("steps").and_then(Value::as_array) else {
        return Err("the agent's output has no steps array".into());
    };
    let mut lines = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        // What the output says is printed: a tool's name as a tool could be named,
        // anything else (a model's invention) as `?`, never raw on a terminal.
        let tool = step
            .get("tool")
            .and_then(Value::as_str)
            .filter(|t| hanzo_compute::agent::AgentFile::is_tool_name(t))
            .unwrap_or("?");
        let r = match step.get("receipt") {
            None | Some(Value::Null) => {
                let why = step
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .filter(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                    .unwrap_or("no receipt");
                lines.push(format!("ok: step {n}: {tool}: nothing ran ({why}), no receipt"));
                continue;
            }
            Some(r) => {
                Receipt::verify(r).map_err(|e| format!("step {n} ({tool}): receipt does not verify: {e}"))?
            }
        };
        if !r.node_id.eq_ignore_ascii_case(&agent.node_id) {
            return Err(format!(
                "step {n} ({tool}): its receipt was signed by node {}, not the agent's node {}",
                r.node_id, agent.node_id
            ));
        }
        let params = step.get("params").unwrap_or(&Value::Null);
        r.check_input(params)
            .map_err(|e| format!("step {n} ({tool}): {e}"))?;
        if let Some(id) = step.get("job_id").and_then(Value::as_str)
            && id != r.job_id
        {
            return Err(format!(
                "step {n} ({tool}): its receipt is of another job than the step names"
            ));
        }
        match step.get("error") {
            // A step that failed: its receipt must say so, with the same error code.
            Some(e) => {
                let code = e.get("code").and_then(Value::as_str);
                if r.output_hash.is_some() || r.error.as_ref().map(|x| x.code.as_str()) != code {
                    return Err(format!(
                        "step {n} ({tool}): the step shows an error its receipt does not"
                    ));
                }
            }
            None => {
                let out = step.get("output").unwrap_or(&Value::Null);
                r.check_output(out)
                    .map_err(|e| format!("step {n} ({tool}): {e}"))?;
            }
        }
        lines.push(format!(
            "ok: step {n}: {tool} ran as job {} ({}, code {}), params and output match its receipt",
            r.job_id,
            r.runtime,
            &r.code_hash[..r.code_hash.len().min(16)]
        ));
    }
    Ok(lines)
}

/// Checks the receipt's `code_hash` against `code`, read as the receipt's runtime reads
/// a SOURCE. `Ok(Ok(what))` when it matches, `Ok(Err(why))` when it does not, `Err` when
/// the code cannot be read or resolved (bad input, exit 2; no Docker daemon or Go
/// toolchain, exit 4).
async fn check_code(
    config: Option<&Path>,
    receipt: &Receipt,
    code: &str,
) -> anyhow::Result<Result<String, String>> {
    let want = receipt.code_hash.as_str();
    let mismatch = |got: &str, what: &str| {
        Err(format!(
            "code_hash does not match: receipt has {want}, {what} hashes to {got}"
        ))
    };
    match receipt.runtime {
        RuntimeKind::Docker | RuntimeKind::K8s => {
            let (id, repo_digests) = image_digests(config, code).await?;
            // Docker receipts name the image id; a cluster's kubelet reports the id or
            // the registry's digest, depending on its container runtime.
            let accepted = std::iter::once(&id).chain(
                repo_digests
                    .iter()
                    .filter(|_| receipt.runtime == RuntimeKind::K8s),
            );
            if accepted.into_iter().any(|d| d == want) {
                Ok(Ok(format!("image {code} (sha256:{id})")))
            } else {
                Ok(mismatch(&id, &format!("image {code}, whose id")))
            }
        }
        RuntimeKind::Wasm if code.starts_with("sha256:") => {
            let bytes = stored_module(config, code).await?;
            let digest = hanzo_compute::receipt::sha256_hex(&bytes);
            Ok(if digest == want {
                Ok(format!("stored module {code}"))
            } else {
                mismatch(&digest, &format!("stored module {code}"))
            })
        }
        kind => {
            let path = PathBuf::from(code);
            let is_dir = blocking({
                let p = path.clone();
                move || p.is_dir()
            })
            .await?;
            if is_dir {
                if kind != RuntimeKind::Go {
                    return Err(ComputeError::invalid(format!(
                        "{code} is a directory; a {kind} receipt's code is a file"
                    ))
                    .into());
                }
                return go_package(config, receipt, code).await;
            }
            let bytes = blocking({
                let p = path.clone();
                move || std::fs::read(p)
            })
            .await?
            .map_err(|e| ComputeError::invalid(format!("cannot read {code}: {e}")))?;
            // A WASM receipt hashes the binary module, also when it was run from WAT.
            let digest = match kind {
                RuntimeKind::Wasm => hanzo_wasm_runtime::module_digest(&bytes)?,
                _ => hanzo_compute::receipt::sha256_hex(&bytes),
            };
            Ok(if digest == want {
                Ok(code.to_string())
            } else {
                mismatch(&digest, code)
            })
        }
    }
}

/// The image id (hex) of `code` in the local Docker daemon, and its registry digests
/// (hex). `code` is a reference (`[registry/]path[:tag][@sha256:...]`, the configured
/// default registry applied as a job's would be) or an image id `sha256:<hex>`. Nothing
/// is pulled: a verifier pulls or builds the image it means to check first.
async fn image_digests(config: Option<&Path>, code: &str) -> anyhow::Result<(String, Vec<String>)> {
    let config = load_config(config)?;
    let name = match code.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => code.to_string(),
        _ => code
            .parse::<ImageRef>()?
            .with_default_registry(&config.compute.docker.registry)
            .to_string(),
    };
    let docker = DockerRuntime::new(DockerOptions {
        config: config.compute.docker.clone(),
        // Connecting reaps the tool containers labelled with this id; an id of no node
        // leaves every node's containers alone.
        node_id: format!("receipt-verify-{}", hanzo_compute::new_job_id()),
    });
    let client = docker.client().await?;
    let image = client.inspect_image(&name).await.map_err(|e| match &e {
        // Only a 404 says the image is not there; a daemon that fails or times out is
        // the machine's problem (exit 4), not the reference's.
        hanzo_docker_runtime::bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => ComputeError::invalid(format!(
            "image {name} is not in the local Docker daemon ({}); pull or build it first",
            crate::one_line(&e.to_string())
        )),
        _ => ComputeError::Unavailable(format!(
            "the Docker daemon could not inspect {name}: {}",
            crate::one_line(&e.to_string())
        )),
    })?;
    let hex = |d: &str| {
        d.rsplit_once("sha256:")
            .map_or(d, |(_, h)| h)
            .to_ascii_lowercase()
    };
    let id = hex(image.id.as_deref().unwrap_or_default());
    let repo = image
        .repo_digests
        .unwrap_or_default()
        .iter()
        .map(|d| hex(d))
        .collect();
    Ok((id, repo))
}

/// The bytes of a module in this node's module store.
async fn stored_module(config: Option<&Path>, code: &str) -> anyhow::Result<Vec<u8>> {
    let config = load_config(config)?;
    let sha = hanzo_compute::parse_digest_source(code)?
        .ok_or_else(|| ComputeError::invalid(format!("{code} is not sha256:<64 hex digits>")))?;
    let options = hanzo_wasm_runtime::WasmOptions::new(&config.node.data_dir, config.compute.wasm.clone());
    let dir = options.module_dir.clone();
    let sha2 = sha.to_string();
    let bytes = blocking(move || hanzo_wasm_runtime::ModuleStore::open(dir)?.read(&sha2))
        .await??
        .ok_or_else(|| ComputeError::invalid(format!("module {code} is not in this node's module store")))?;
    Ok(bytes)
}

/// Builds the Go package `dir` as a job would have run it (the wasip1 build the node's
/// `[compute.go] abi` picks, then the native one) until a build's sha256 is the
/// receipt's. Go builds are reproducible (`-trimpath`, no VCS stamp, the module's own
/// tree, the SDK this node embeds) for one Go version and target platform, so another
/// node's receipt matches only when it built with the same toolchain. A build the
/// node has cached is not built again.
async fn go_package(
    config: Option<&Path>,
    receipt: &Receipt,
    dir: &str,
) -> anyhow::Result<Result<String, String>> {
    let config = load_config(config)?;
    let go_config = config.compute.go.clone();
    // Probing the sandbox and asking go for its version run processes: off the async worker.
    let (go, version) = blocking(move || -> Result<(GoRuntime, String), ComputeError> {
        let data_dir = config.node.data_dir.clone();
        crate::secure::data_dir(&data_dir)?;
        let sandbox =
            hanzo_sandbox::Sandbox::detect_with(hanzo_sandbox::Options::from_config(&config.compute.sandbox));
        let cache = Arc::new(Cache::new(cache_pools(&data_dir), config.node.cache_max_mb));
        // Building runs no module: the WASM runtime is not needed.
        let no_wasm = Arc::new(UnavailableRuntime::new(RuntimeKind::Wasm, "not used to build"));
        let go = GoRuntime::new(
            Arc::new(sandbox),
            no_wasm,
            &config.compute.go,
            &data_dir,
            config.compute.sandbox.pids_limit,
        )
        .with_cache(cache);
        let version = go.toolchain()?.version.clone();
        Ok((go, version))
    })
    .await??;
    let wasi = match go_config.abi.as_str() {
        "exports" => Target::WasiExports,
        "command" => Target::WasiCommand,
        _ => {
            let d = PathBuf::from(dir);
            if blocking(move || has_exports_files(&d)).await? {
                Target::WasiExports
            } else {
                Target::WasiCommand
            }
        }
    };
    let mut tried = Vec::new();
    for (target, name) in [(wasi, target_name(wasi)), (Target::Native, "native")] {
        let built = go.build(dir, target).await?;
        if built.sha256 == receipt.code_hash {
            return Ok(Ok(format!("the {name} build of {dir} ({version})")));
        }
        tried.push(format!("{name} {}", built.sha256));
    }
    Ok(Err(format!(
        "code_hash does not match: receipt has {}, the builds of {dir} with {version} hash to {}; \
         a Go build is the same only from the same module tree with the same Go version",
        receipt.code_hash,
        tried.join(", ")
    )))
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::WasiCommand => "wasip1 command",
        Target::WasiExports => "wasip1 exports",
        Target::Native => "native",
    }
}

/// Whether the package has files for the Go SDK's `hanzo_exports` build tag, which
/// makes the go runtime build the exports ABI (as `hanzo_go_runtime` decides it).
fn has_exports_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.ends_with(".go")
                && !name.ends_with("_test.go")
                && std::fs::read_to_string(e.path()).is_ok_and(|text| {
                    text.lines()
                        .take_while(|l| !l.starts_with("package "))
                        .any(|l| l.starts_with("//go:build") && l.contains("hanzo_exports"))
                })
        })
    })
}

/// Runs blocking file work off the async worker.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ComputeError::internal(e).into())
}

fn json_arg(text: &str, flag: &str) -> Result<Value, ComputeError> {
    serde_json::from_str(text).map_err(|e| ComputeError::invalid(format!("{flag} is not valid JSON: {e}")))
}

fn fail(msg: String) -> anyhow::Result<u8> {
    eprintln!("error: {}", crate::one_line(&msg));
    Ok(1)
}
